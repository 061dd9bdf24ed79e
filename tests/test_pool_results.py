"""tools/pool_results.py: finished evaluations pooled after the fact, as DIVE's pooled passes pool them."""

import json

import pytest

from .helpers import load_tool

CATEGORIES = [{"id": 0, "name": "square"}, {"id": 1, "name": "disc"}]


def write_run(folder, image_ids, annotations, detections):
    folder.mkdir(parents=True)
    truth = {"images": [{"id": i, "height": 64, "width": 64, "file_name": f"{i}.png"} for i in image_ids],
             "annotations": [{"id": n + 1, "iscrowd": 0, "area": a["bbox"][2] * a["bbox"][3], **a}
                             for n, a in enumerate(annotations)],
             "categories": CATEGORIES}
    (folder / "split_coco_format.json").write_text(json.dumps(truth))
    (folder / "coco_instances_results.json").write_text(json.dumps(detections))
    return folder


def detection(image_id, category, bbox, score):
    return {"image_id": image_id, "category_id": category, "bbox": bbox, "score": score}


def test_pooling_two_passes_adds_the_object_only_the_second_found(tmp_path):
    tool = load_tool("pool_results")
    truth = [{"image_id": 1, "category_id": 0, "bbox": [10, 10, 20, 20]},
             {"image_id": 2, "category_id": 1, "bbox": [30, 30, 16, 16]}]
    square, disc = [10.0, 10.0, 20.0, 20.0], [30.25, 30.0, 16.0, 16.0]
    # The main pass in two folders (images 1 and 2), the second in one; only the second finds the disc.
    main = [write_run(tmp_path / "main_a", [1], truth[:1], [detection(1, 0, square, 0.5)]),
            write_run(tmp_path / "main_b", [2], truth[1:], [detection(2, 0, [0.0, 0.0, 8.0, 8.0], 0.7)])]
    second = write_run(tmp_path / "second", [1, 2], truth,
                       [detection(1, 0, [11.0, 10.0, 20.0, 20.0], 0.8), detection(2, 1, disc, 0.6)])
    out = tmp_path / "pooled"
    metrics = tool.main(["--pass", *map(str, main), "--pass", str(second), "--score", "max", "--output-dir",
                         str(out)])
    pooled = json.loads((out / "coco_instances_results.json").read_text())
    by_image = {i: sorted((d["category_id"], d["bbox"], d["score"]) for d in pooled if d["image_id"] == i)
                for i in (1, 2)}
    # Image 1: both passes found the square (IoU 0.9); the second pass's box leads, with its higher score.
    assert by_image[1] == [(0, [11.0, 10.0, 20.0, 20.0], pytest.approx(0.8))]
    # Image 2: the main pass's false square and the second pass's disc, each as written.
    assert by_image[2] == [(0, [0.0, 0.0, 8.0, 8.0], pytest.approx(0.7)), (1, disc, pytest.approx(0.6))]
    assert metrics["AP50"] == pytest.approx(100.0), "both objects found, each class's only detection ranked first"
    truth_out = json.loads((out / "pooled_coco_format.json").read_text())
    assert [image["id"] for image in truth_out["images"]] == [1, 2]

    mean = tool.pool_runs([tool.merge_runs([tool.read_run(f) for f in main]), tool.read_run(second)], 0.5, "mean")[1]
    assert sorted(d["score"] for d in mean) == pytest.approx([0.3, 0.35, 0.65])


def test_pooling_refuses_passes_of_different_images(tmp_path):
    tool = load_tool("pool_results")
    truth = [{"image_id": 1, "category_id": 0, "bbox": [10, 10, 20, 20]}]
    one = write_run(tmp_path / "one", [1], truth, [])
    other = write_run(tmp_path / "other", [2], [{**truth[0], "image_id": 2}], [])
    with pytest.raises(ValueError, match="pass 1 evaluates other images"):
        tool.main(["--pass", str(one), "--pass", str(other), "--output-dir", str(tmp_path / "out")])
    with pytest.raises(SystemExit):
        tool.main(["--pass", str(one), "--output-dir", str(tmp_path / "out")])
