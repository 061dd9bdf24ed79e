#!/usr/bin/env python
"""Where do the restarts lose objects: in the runs, or in choosing among them?

Reads a recording of ``tools/evaluate_inversion.py`` with ``MODEL.DIVE.INVERSION.RESTARTS`` R > 1 (its
``history.pth``; give the same config, weights, slice and KEY VALUE options) and, for every image, takes
each run's best layout at the recorded budget. It counts the ground-truth objects that some same-class
box of a layout overlaps at IoU >= ``--iou`` (``dive_d2.evaluation.objects_found``), for the run each rule
picks:

- monitor: the lowest monitor loss (the detector's ``RESTART_SELECTION best``);
- held-out: the lowest posterior loss on ``--pairs`` held-out (t, noise) pairs over the whole schedule
  (``dive_d2.evaluation.held_out_loss``): the choice a noise-free monitor would make;
- assembled: not a run but one layout built from the runs' objects, greedily adding the object that lowers
  the posterior loss on the monitor's pairs most (``dive_d2/inversion/assembly.py``; a choice among objects
  instead of among runs);
- oracle: the run that found the most objects (needs the ground truth: an upper bound for any choice);
- union: objects any of the R runs found (an upper bound for pooling).

It also says how often the truth's held-out loss is below that of every run (the models prefer the truth
to all R runs' answers). Forward passes only: about R x (pairs + 1) layouts per image, and for the assembly
up to NUM_SLOTS x (the runs' distinct objects) layouts on the monitor's pairs.

    .venv/bin/python tools/restart_headroom.py --config-file configs/shapes/dive.yaml \
      --weights weights/shapes/dive.pth --start-image 24 --num-images 24 \
      --recording output/s15/control_images24_r4 MODEL.DIVE.INVERSION.RESTARTS 4
"""

from __future__ import annotations

import argparse
import json

import torch
from detectron2.data import DatasetMapper
from detectron2.utils.logger import setup_logger
from tqdm import tqdm

import dive_d2  # noqa: F401  (registers datasets and models)
from dive_d2.data import ground_truth_layout
from dive_d2.evaluation import held_out_loss
from dive_d2.evaluation.objects_found import found_objects
from dive_d2.evaluation.recordings import load_recorded_runs
from dive_d2.inversion.assembly import assemble_layout

RULES = ("monitor", "held-out", "assembled", "oracle", "union")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--dataset", default="dive_shapes_val")
    parser.add_argument("--start-image", type=int, default=0)
    parser.add_argument("--num-images", type=int, required=True)
    parser.add_argument("--recording", required=True, help="an evaluate_inversion --output folder (history.pth)")
    parser.add_argument("--pairs", type=int, default=128, help="held-out (t, noise) pairs")
    parser.add_argument("--iou", type=float, default=0.5)
    parser.add_argument("--json", help="write the counts and per-image details here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="the recording's KEY VALUE options")
    args = parser.parse_args()
    setup_logger(name="dive_d2")

    recorded = load_recorded_runs(args.recording, args.config_file, args.weights, args.dataset, args.start_image,
                                  args.num_images, args.opts)
    model, dataset_dicts = recorded.model, recorded.dataset_dicts
    restarts = recorded.tokens.shape[1]
    mapper = DatasetMapper(recorded.cfg, is_train=False)

    counts = dict.fromkeys(RULES, 0)
    total, truth_below_all, held_out_agrees = 0, 0, 0
    details = []
    for image, record in enumerate(tqdm(dataset_dicts, desc="images", unit="image")):
        tokens, monitor = recorded.tokens[image], recorded.monitor[image]
        true_boxes, true_classes = ground_truth_layout(record)
        truth = model.tokenizer.encode(true_boxes, true_classes, record["height"], record["width"])
        with torch.no_grad():
            latents = model.first_stage.encode(model.preprocess_images([mapper(record)]))
            # The runs' layouts and the truth, on the same held-out pairs, in one batch.
            losses_held_out = held_out_loss(model, latents.expand(restarts + 1, -1, -1, -1),
                                            torch.cat([tokens, truth[None]]).to(model.device), args.pairs)
            assembled, _ = assemble_layout(tokens, model.inversion.monitor_loss_of(model, latents, chunk=8),
                                           model.tokenizer)
        held_out, true_loss = losses_held_out[:restarts], losses_held_out[restarts]
        found = []
        for layout in tokens:
            decoded = model.tokenizer.decode(layout, record["height"], record["width"])
            found.append(found_objects(true_boxes, true_classes, decoded.boxes, decoded.classes, args.iou))
        found = torch.stack(found)  # (R, K)
        decoded = model.tokenizer.decode(assembled, record["height"], record["width"])
        found_assembled = found_objects(true_boxes, true_classes, decoded.boxes, decoded.classes, args.iou)
        counts["assembled"] += int(found_assembled.sum())
        chosen = {"monitor": int(monitor.argmin()), "held-out": int(held_out.argmin()),
                  "oracle": int(found.sum(1).argmax())}
        for rule, run in chosen.items():
            counts[rule] += int(found[run].sum())
        counts["union"] += int(found.any(0).sum())
        total += len(true_classes)
        truth_below_all += int(true_loss < held_out.min())
        held_out_agrees += int(chosen["held-out"] == chosen["monitor"])
        details.append({"image": args.start_image + image, "objects": len(true_classes),
                        "found_per_run": found.sum(1).tolist(), "monitor_loss": monitor.tolist(),
                        "assembled": {"objects": len(decoded.classes), "found": int(found_assembled.sum())},
                        "held_out_loss": held_out.tolist(), "true_held_out_loss": float(true_loss)})

    images = len(dataset_dicts)
    print(f"\n{images} images ({args.dataset} {args.start_image}..{args.start_image + images - 1}), {total} objects, "
          f"{restarts} runs each, IoU >= {args.iou:g}: objects found by the run each rule picks")
    for rule in RULES:
        print(f"  {rule:<9} {counts[rule]:3d} of {total}")
    print(f"held-out pick = monitor pick in {held_out_agrees} of {images} images; the truth's held-out loss is "
          f"below every run's in {truth_below_all} of {images}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"recording": args.recording, "weights": args.weights, "opts": args.opts, "iou": args.iou,
                       "pairs": args.pairs, "objects": total, "found": counts,
                       "held_out_agrees_with_monitor": held_out_agrees, "truth_below_every_run": truth_below_all,
                       "images": details}, handle, indent=1)


if __name__ == "__main__":
    main()
