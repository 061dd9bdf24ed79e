#!/usr/bin/env python
"""DIVE's COCO AP as a function of the step budget and of early stopping, from one recorded run.

    python tools/evaluate_inversion.py --config-file configs/shapes/dive.yaml \
        --weights weights/shapes/dive.pth --dataset dive_shapes_val --num-images 16 \
        --budgets 50 100 200 300 --patience 3 5 --scores leave_one_out constant \
        --output output/eval/shapes_default \
        [MODEL.DIVE.INVERSION.KEY VALUE ...]

The images are inverted once, without early stopping, for max(--budgets) steps with the monitor history
recorded. Because every image is inverted independently and stopping only freezes an image, the layout
that a run with a smaller budget or a finite patience would return is read off that history
(``dive_d2.inversion.replay_checks``). Each setting's detections go through Detectron2's COCOEvaluator on
the same registered subset, once per ``--scores`` variant (default: the configured score). Prints one row
per setting and score: AP, AP50, AP75 and the mean stopping step; and the measured seconds per
optimisation step per image. With ``--gap-pairs``, two more columns say whose fault a miss is
(``dive_d2.evaluation.objective_gap``): the fraction of images whose found layout has a loss no higher than
the ground truth's on held-out pairs, and the mean relative loss gap (found / true - 1). The "area/true"
column is the summed area of an image's found boxes over that of its true boxes, averaged over images with
objects: above 1, the found layouts cover more of the image than the objects do.
With ``MODEL.DIVE.INVERSION.RESTARTS`` R > 1 every run of an image is recorded and replayed, and each
setting returns the image's run whose replayed best check has the lowest monitor loss, as the engine does.
``--restart-counts`` k1 k2 ... (each <= R) adds rows for the best of each image's first k runs: what
``RESTARTS`` k returns, read off the same recording (restart r's seed does not depend on R).
``--selections best pooled`` scores each setting both ways ``RESTART_SELECTION`` allows: the best run, and
the objects of the first k runs pooled (``dive_d2.inversion.pool_detections``; each run at its replayed best
check). Pooled rows have no loss-gap columns (there is no single returned layout), and their "area/true" is
that of the pooled boxes.
``--polish-sweeps 0 2`` scores every best-run setting unpolished and after up to 2 sweeps of the discrete
local search (``dive_d2/inversion/polish.py``, what ``POLISH_SWEEPS`` 2 returns); its rows report the
polishing's seconds per image (only layouts not polished before are timed).
With ``MODEL.DIVE.INVERSION.REFINE_BOXES`` (on in the benchmarks' configs since session 27) and
``RECLASSIFY_BOXES`` (since session 28) every setting's detections are finished as the detector finishes them
(``DIVE.finish_detections``: dive_d2/inversion/box_refinement.py, box_classes.py); the "area/true" column stays
that of the inverted boxes. Add ``MODEL.DIVE.INVERSION.REFINE_BOXES False MODEL.DIVE.INVERSION.RECLASSIFY_BOXES
False`` to score the inversion alone, as every measurement before session 27 did.
"""

import argparse
import json
import os
import time

import torch
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import Boxes, Instances
from detectron2.utils.logger import setup_logger
from tqdm import tqdm

import dive_d2  # noqa: F401  (registers datasets and models)
from dive_d2.data import ground_truth_layout, prepare_datasets_from_config
from dive_d2.data.from_config import register_first_images
from dive_d2.evaluation import objective_gap
from dive_d2.inversion import RESTART_SELECTIONS, SCORES, best_restarts, pool_detections, replay_checks
from dive_d2.loading import load_config, load_model


def coco_ap(dataset: str, inputs: list[dict], outputs: list[dict], output_dir: str) -> dict[str, float]:
    evaluator = COCOEvaluator(dataset, tasks=("bbox",), output_dir=output_dir)
    evaluator.reset()
    evaluator.process(inputs, outputs)
    return dict(evaluator.evaluate()["bbox"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--dataset", default="dive_shapes_val")
    parser.add_argument("--num-images", type=int, default=16, help="the first N images of the dataset")
    parser.add_argument("--start-image", type=int, default=0,
                        help="skip this many images first (a held-out slice: images start .. start + N - 1)")
    parser.add_argument("--batch-size", type=int, default=4, help="images inverted together")
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 200, 300])
    parser.add_argument("--patience", type=int, nargs="*", default=[5], help="early-stopping settings to replay")
    parser.add_argument("--scores", nargs="+", default=None, choices=SCORES,
                        help="score variants to rank each setting's detections with (default: the config's SCORE)")
    parser.add_argument("--gap-pairs", type=int, default=128,
                        help="held-out pairs for the found-vs-true loss comparison (dive_d2.evaluation.objective_gap); "
                             "0 skips it")
    parser.add_argument("--restart-counts", type=int, nargs="*", default=None,
                        help="with RESTARTS R: also report the best of the first k restarts for each k (<= R); "
                             "default: R only")
    parser.add_argument("--selections", nargs="+", default=None, choices=RESTART_SELECTIONS,
                        help="with RESTARTS R: what each setting returns of the restarts (default: the config's "
                             "RESTART_SELECTION)")
    parser.add_argument("--polish-sweeps", type=int, nargs="*",
                        help="score the best run's layout after each of these numbers of polishing sweeps "
                             "(dive_d2/inversion/polish.py; 0: unpolished); default: the config's POLISH_SWEEPS")
    parser.add_argument("--rescore", action="store_true",
                        help="score the inversion recorded in --output/history.pth (same options) instead of "
                             "inverting again")
    parser.add_argument("--output", required=True,
                        help="folder for results.json, the recorded inversion (history.pth) and COCO files")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="extra config KEY VALUE pairs")
    args = parser.parse_args()
    setup_logger(name="dive_d2")

    max_steps = max(args.budgets)
    cfg = load_config(args.config_file, [*args.opts, "MODEL.DIVE.INVERSION.MAX_STEPS", str(max_steps),
                                         "MODEL.DIVE.INVERSION.PATIENCE", str(max_steps + 1)])
    prepare_datasets_from_config(cfg)
    model = load_model(cfg, args.weights)
    model.inversion.record_history = True
    polish_sweeps = args.polish_sweeps or [model.inversion.polish_sweeps]
    model.inversion.polish_sweeps = 0  # the recording is of the search; settings are polished when scored
    subset = register_first_images(args.dataset, args.num_images, args.start_image)
    mapper = DatasetMapper(cfg, is_train=False)
    dataset_dicts = DatasetCatalog.get(subset)
    records = [mapper(record) for record in dataset_dicts]

    restarts = model.inversion.restarts
    history_path = os.path.join(args.output, "history.pth")
    recorded = torch.load(history_path, weights_only=False) if args.rescore else None
    if recorded is not None and (recorded["opts"] != args.opts or len(recorded["histories"]) != len(records) * restarts
                                 or recorded["histories"][0][-1][0] != max_steps):
        raise ValueError(f"{history_path} was recorded with other settings (opts {recorded['opts']}, "
                         f"{len(recorded['histories'])} images); run without --rescore to invert again")
    histories, latents_per_image, seconds = [], [], 0.0
    for start in tqdm(range(0, len(records), args.batch_size), desc="inverting", unit="batch",
                      disable=recorded is not None):
        batch = records[start : start + args.batch_size]
        began = time.perf_counter()
        with torch.no_grad():
            latents = model.first_stage.encode(model.preprocess_images(batch))
        latents_per_image.extend(latents[index : index + 1] for index in range(len(batch)))
        if recorded is not None:
            continue
        with torch.enable_grad():
            result = model.inversion(model, latents, [model.image_seed(item) for item in batch])
        seconds += time.perf_counter() - began
        for index in range(len(batch) * restarts):  # one history per run, image-major
            histories.append([(c.step, c.loss[index], c.tokens[index], c.embeddings[index]) for c in result.history])
    if recorded is not None:
        histories, seconds = recorded["histories"], recorded["seconds"]
    else:
        os.makedirs(args.output, exist_ok=True)
        # The inversion is the expensive part: keep it even if scoring fails later.
        torch.save({"histories": histories, "seconds": seconds, "opts": args.opts}, history_path)
    steps = [step for step, *_ in histories[0]]

    restart_counts = args.restart_counts or [restarts]
    if any(not 1 <= count <= restarts for count in restart_counts):
        raise ValueError(f"--restart-counts {restart_counts} must lie in 1..RESTARTS ({restarts})")
    settings = [(f"budget {budget}", None, budget) for budget in args.budgets]
    settings += [(f"patience {patience} (max {max_steps})", patience, max_steps) for patience in args.patience]
    if restarts > 1:
        settings = [(f"{name}, best of {count}", patience, budget, count)
                    for count in restart_counts for name, patience, budget in settings]
    else:
        settings = [(*setting, 1) for setting in settings]
    scores = args.scores or [model.score]
    selections = args.selections or [model.restart_selection]
    score_cache: dict[tuple, object] = {}
    gap_cache: dict[tuple, tuple[float, float]] = {}
    rows = []
    true_areas = [float(Boxes(ground_truth_layout(record)[0]).area().sum()) for record in dataset_dicts]
    losses = torch.stack([torch.stack([loss for _, loss, _, _ in history]) for history in histories], dim=1)
    jobs = [(setting, score, selection, sweeps) for setting in settings for score in scores
            for selection in selections for sweeps in (polish_sweeps if selection == "best" else [0])]
    polish_cache: dict[tuple, torch.Tensor] = {}
    vocabulary = model.layout_encoder.vocabulary().detach().cpu()

    polish_seconds = 0.0  # of the current setting's newly polished layouts

    def polished(image: int, tokens: torch.Tensor, sweeps: int) -> torch.Tensor:
        nonlocal polish_seconds
        key = (image, tuple(tokens.tolist()), sweeps)
        if key not in polish_cache:
            began = time.perf_counter()
            polish_cache[key] = model.inversion.polish(model, latents_per_image[image], tokens[None].to(model.device),
                                                       sweeps)[0][0].cpu()
            polish_seconds += time.perf_counter() - began
        return polish_cache[key]

    def run_detections(score: str, image: int, run: int, check: int) -> Instances:
        _, _, tokens, embeddings = histories[run][check]
        return layout_detections(score, image, tokens, embeddings)

    def layout_detections(score: str, image: int, tokens: torch.Tensor, embeddings: torch.Tensor) -> Instances:
        key = (score, image, tuple(tokens.tolist()))
        if key not in score_cache:
            with torch.no_grad():
                score_cache[key] = model.detections(records[image], latents_per_image[image], tokens.to(model.device),
                                                    embeddings.to(model.device)).to("cpu")
        return score_cache[key]

    for (name, patience, budget, count), score, selection, sweeps in tqdm(jobs, desc="scoring settings"):
        model.score = score
        best, stop = replay_checks(losses, steps, patience, budget)
        runs = best_restarts(losses[best, torch.arange(len(histories))], restarts, count)
        stop = stop[runs]
        outputs, gaps, area_ratios = [], [], []
        polish_seconds = 0.0
        for image, run in enumerate(runs.tolist()):
            if selection == "pooled":
                first_runs = range(image * restarts, image * restarts + count)
                detections = pool_detections([run_detections(score, image, r, int(best[r])) for r in first_runs],
                                             model.pool_iou)
                outputs.append({"instances": detections})
                if true_areas[image] > 0:
                    area_ratios.append(float(detections.pred_boxes.area().sum()) / true_areas[image])
                continue
            _, _, tokens, embeddings = histories[run][int(best[run])]
            if sweeps > 0:
                polished_tokens = polished(image, tokens, sweeps)
                if not torch.equal(polished_tokens, tokens):  # as the engine returns it: snapped rows
                    tokens, embeddings = polished_tokens, vocabulary[polished_tokens]
            if args.gap_pairs > 0:
                gap_key = (image, tuple(tokens.tolist()))
                if gap_key not in gap_cache:
                    truth = model.tokenizer.encode(*ground_truth_layout(dataset_dicts[image]),
                                                   dataset_dicts[image]["height"], dataset_dicts[image]["width"])
                    found, true = objective_gap(model, latents_per_image[image], tokens[None].to(model.device),
                                                truth[None].to(model.device), args.gap_pairs)
                    gap_cache[gap_key] = (float(found), float(true))
                gaps.append(gap_cache[gap_key])
            if true_areas[image] > 0:
                found = model.tokenizer.decode(tokens, dataset_dicts[image]["height"], dataset_dicts[image]["width"])
                area_ratios.append(float(Boxes(found.boxes).area().sum()) / true_areas[image])
            outputs.append({"instances": layout_detections(score, image, tokens, embeddings)})
        for image, output in enumerate(outputs):  # as the detector returns them (REFINE_BOXES, RECLASSIFY_BOXES)
            model.finish_detections(latents_per_image[image], [output])
        metrics = coco_ap(subset, records, outputs, args.output)
        rows.append({"setting": name + (f", polished x{sweeps}" if sweeps else ""), "score": score,
                     "selection": selection, "polish_sweeps": sweeps, "AP": metrics["AP"],
                     "AP50": metrics["AP50"], "AP75": metrics["AP75"], "mean_stop_step": float(stop.float().mean()),
                     "detections_per_image": sum(len(o["instances"]) for o in outputs) / len(outputs),
                     "box_area_over_true": sum(area_ratios) / max(len(area_ratios), 1)})
        if sweeps:
            rows[-1]["polish_seconds_per_image"] = polish_seconds / len(records)
        if gaps:
            found_losses, true_losses = torch.tensor(gaps).T
            rows[-1]["found_not_worse_than_truth"] = float((found_losses <= true_losses).float().mean())
            rows[-1]["mean_relative_gap"] = float((found_losses / true_losses - 1).mean())

    seconds_per_step = seconds / (len(records) * max_steps)
    print(f"\n{len(records)} images of {args.dataset}; {seconds_per_step:.3f} s per step per image "
          f"({seconds / len(records):.1f} s per image for {max_steps} steps)")
    print(f"{'setting':<40} {'score':<14} {'selection':<9} {'AP':>6} {'AP50':>6} {'AP75':>6} {'mean step':>9} "
          f"{'dets/img':>8} {'area/true':>9} {'found<=true':>11} {'loss gap':>8}")
    for row in rows:
        gap = (f" {row['found_not_worse_than_truth']:11.2f} {100 * row['mean_relative_gap']:+7.1f}%"
               if "mean_relative_gap" in row else "")
        print(f"{row['setting']:<40} {row['score']:<14} {row['selection']:<9} {row['AP']:6.1f} {row['AP50']:6.1f} "
              f"{row['AP75']:6.1f} {row['mean_stop_step']:9.1f} {row['detections_per_image']:8.2f} "
              f"{row['box_area_over_true']:9.2f}{gap}"
              + (f"  (polishing {row['polish_seconds_per_image']:.1f} s/image)" if "polish_seconds_per_image" in row
                 else ""))
    with open(os.path.join(args.output, "results.json"), "w") as handle:
        json.dump({"dataset": args.dataset, "start_image": args.start_image, "num_images": len(records),
                   "weights": args.weights,
                   "opts": args.opts, "seconds_per_step_per_image": seconds_per_step,
                   "classes": MetadataCatalog.get(subset).thing_classes, "rows": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
