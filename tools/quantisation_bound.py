#!/usr/bin/env python
"""Upper bound that the layout grid puts on any DIVE result: COCO AP of perfectly decoded ground truth.

    python tools/quantisation_bound.py --dataset dive_shapes_val --grid-sizes 17 33 65

For each grid size, every ground-truth layout of the dataset is encoded with the real tokenizer
(``MODEL.DIVE.NUM_SLOTS`` slots; extra objects dropped as the tokenizer does) and decoded back. The decoded
boxes, with score 1, are evaluated by pycocotools against the original boxes. Also prints the largest box
error the grid causes, in pixels of the dataset's images.
"""

import argparse
import contextlib
import io

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import dive_d2  # noqa: F401  (registers datasets)
from dive_d2.data import ground_truth_layout
from dive_d2.layout import LayoutTokenizer


def coco_ground_truth(dicts, num_classes):
    images, annotations = [], []
    for d in dicts:
        images.append({"id": d["image_id"], "height": d["height"], "width": d["width"]})
        for a in d["annotations"]:
            x, y, w, h = BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYWH_ABS)
            annotations.append({"id": len(annotations) + 1, "image_id": d["image_id"], "category_id": a["category_id"],
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations,
                    "categories": [{"id": i} for i in range(num_classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="dive_shapes_val")
    parser.add_argument("--grid-sizes", type=int, nargs="+", default=[17, 33, 65])
    parser.add_argument("--num-slots", type=int, default=4)
    args = parser.parse_args()

    dicts = DatasetCatalog.get(args.dataset)
    num_classes = len(MetadataCatalog.get(args.dataset).thing_classes)
    ground_truth = coco_ground_truth(dicts, num_classes)
    height, width = dicts[0]["height"], dicts[0]["width"]
    print(f"{args.dataset}: {len(dicts)} images of {height}x{width}, {args.num_slots} slots")
    print("| grid | max error x, y (px) | AP | AP50 | AP75 |")
    print("|---|---|---|---|---|")
    for grid_size in args.grid_sizes:
        tokenizer = LayoutTokenizer(num_classes, grid_size, args.num_slots)
        detections = []
        for d in dicts:
            boxes, classes = ground_truth_layout(d)
            decoded = tokenizer.decode(tokenizer.encode(boxes, classes, d["height"], d["width"]),
                                       d["height"], d["width"])
            for box, cls in zip(decoded.boxes.tolist(), decoded.classes.tolist(), strict=True):
                detections.append({"image_id": d["image_id"], "category_id": cls, "score": 1.0,
                                   "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
        with contextlib.redirect_stdout(io.StringIO()):
            evaluation = COCOeval(ground_truth, ground_truth.loadRes(detections), "bbox")
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        ap, ap50, ap75 = (100 * evaluation.stats[i] for i in range(3))
        err_x, err_y = tokenizer.max_quantisation_error_px(height, width)
        print(f"| {grid_size} | {err_x:.2f}, {err_y:.2f} | {ap:.1f} | {ap50:.1f} | {ap75:.1f} |")


if __name__ == "__main__":
    main()
