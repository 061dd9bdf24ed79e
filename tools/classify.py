#!/usr/bin/env python
"""Classify a registered dataset or an image folder with DIVE inversion and/or Diffusion Classifier's
enumeration on the same class-conditional diffusion model; print top-1 accuracy and cost.

    python tools/classify.py --config-file configs/classification/patches.yaml \
        --weights weights/classification/patches.pth --dataset dive_patches_val \
        --methods inversion enumeration adaptive --num-images 120 --num-classes 120 30

    python tools/classify.py ... --image-folder my_images/   # <class name>/*.png, or a flat folder
        # class names: DATASETS.CLASS_NAMES if given, else those of the config's DATASETS.TRAIN[0]

All methods run on the same images in the same process, one after another, batch by batch
(``--batch-size``), so their wall times compare. ``--num-classes K`` restricts the candidates to K classes
spread evenly over the model's classes (indices round(i * N / K)) and the images to those classes; several
values give the scaling of cost with the number of classes. ``--num-images`` keeps that many images,
evenly spaced over the (class-sorted) split. Cost per image is in network evaluations: forwards (samples
through the UNet) and backwards (inversion only). Each finished row is written to ``--output`` at once.
"""

import argparse
import json
import os

import torch
from detectron2.data import DatasetCatalog, MetadataCatalog

from dive_d2.classification import CLASSIFICATION_METHODS, build_classifier, classify_dataset
from dive_d2.data import load_image_folder, model_class_names
from dive_d2.loading import load_config, load_model


def spread(count: int, keep: int) -> list[int]:
    """``keep`` indices of ``range(count)`` spread evenly (all of them if keep >= count)."""
    if keep <= 0 or keep >= count:
        return list(range(count))
    return sorted({round(i * count / keep) for i in range(keep)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dataset", default="", help="a registered classification dataset (default: the config's "
                        "test split, e.g. dive_patches_val)")
    source.add_argument("--image-folder", default="", help="<class name>/<image> subfolders, or only images")
    parser.add_argument("--methods", nargs="+", default=["inversion", "enumeration"], choices=CLASSIFICATION_METHODS)
    parser.add_argument("--num-classes", nargs="+", type=int, default=[0], help="candidate class counts (0: all)")
    parser.add_argument("--num-images", type=int, default=0, help="images kept, evenly spaced (0: all)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--output", default="", help="json file for the rows (written after each row)")
    parser.add_argument("--predictions", default="", help="csv: file, method, candidate classes, predicted class")
    parser.add_argument("--plot", default="", help="png: seconds per image and accuracy against the class count")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="extra config KEY VALUE pairs")
    args = parser.parse_args()

    cfg = load_config(args.config_file, args.opts)
    model = load_model(cfg, args.weights)
    if args.image_folder:
        dataset = args.image_folder
        class_names = model_class_names(cfg)  # DATASETS.CLASS_NAMES, else the training split's classes
        records = load_image_folder(args.image_folder, class_names)
    else:
        dataset = args.dataset or "dive_patches_val"
        records = DatasetCatalog.get(dataset)
        class_names = MetadataCatalog.get(dataset).thing_classes
    if len(class_names) != model.num_classes:
        raise ValueError(f"{dataset} has {len(class_names)} classes, the model {model.num_classes}")

    rows, predictions = [], []
    for num_classes in args.num_classes:
        classes = spread(model.num_classes, num_classes)
        chosen = [r for r in records if r["label"] < 0 or r["label"] in classes]
        chosen = [chosen[i] for i in spread(len(chosen), args.num_images)]
        for method in args.methods:
            classifier = build_classifier(cfg, method)
            report = classify_dataset(model, chosen, classifier, args.batch_size, torch.tensor(classes))
            images = len(chosen)
            row = {"method": method, "classes": len(classes), "images": images, "top1": report.accuracy,
                   "seconds_per_image": report.seconds / images, "forwards_per_image": report.cost.forwards / images,
                   "backwards_per_image": report.cost.backwards / images,
                   "mean_stop_step": sum(report.stop_steps) / images, "dataset": dataset}
            rows.append(row)
            predictions += [(r["file_name"], method, len(classes), class_names[p])
                            for r, p in zip(chosen, report.predictions, strict=True)]
            if args.predictions:
                write_predictions(predictions, args.predictions)
            print(f"{method:12s} classes {len(classes):4d}  images {images:5d}  top-1 {row['top1']:6.2f}  "
                  f"s/image {row['seconds_per_image']:7.3f}  forwards/image {row['forwards_per_image']:8.1f}  "
                  f"backwards/image {row['backwards_per_image']:7.1f}  mean stop step {row['mean_stop_step']:6.1f}",
                  flush=True)
            if args.output:
                os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
                with open(args.output, "w") as f:
                    json.dump({"config": args.config_file, "weights": args.weights, "opts": args.opts,
                               "rows": rows}, f, indent=2)

    print("\n| method | classes | images | top-1 (%) | s / image | forwards / image | backwards / image "
          "| mean stop step |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['classes']} | {r['images']} | {r['top1']:.1f} | {r['seconds_per_image']:.3f} "
              f"| {r['forwards_per_image']:.0f} | {r['backwards_per_image']:.0f} | {r['mean_stop_step']:.1f} |")

    if args.plot:
        plot_scaling(rows, args.plot)


def write_predictions(predictions: list[tuple], path: str) -> None:
    """One csv line per image and run: file, method, number of candidate classes, predicted class name."""
    import csv

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name", "method", "candidate_classes", "predicted_class"])
        writer.writerows(predictions)


def plot_scaling(rows: list[dict], path: str) -> None:
    """Seconds per image (log scale) and top-1 against the number of candidate classes, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (time_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["classes"])
        classes = [r["classes"] for r in mine]
        time_axis.plot(classes, [r["seconds_per_image"] for r in mine], marker="o", label=method)
        accuracy_axis.plot(classes, [r["top1"] for r in mine], marker="o", label=method)
    time_axis.set(xlabel="candidate classes", ylabel="seconds per image", yscale="log", title="cost")
    accuracy_axis.set(xlabel="candidate classes", ylabel="top-1 (%)", title="accuracy")
    for axis in (time_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
