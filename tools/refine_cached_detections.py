#!/usr/bin/env python
"""Score a detections cache before and after the detector's steps after decoding, through COCOEvaluator.

A finished evaluation's detections (``TEST.DETECTIONS_CACHE``, dive_d2/evaluation/detections_cache.py) can be
given the steps that follow the inversion afterwards, in about a second per image instead of inverting again
(35-70 s per image on 2 CPU cores): the box refinement (``MODEL.DIVE.INVERSION.REFINE_BOXES``,
dive_d2/inversion/box_refinement.py) and the class decision (``RECLASSIFY_BOXES``, box_classes.py) only change
what DIVE returns from the image and its inverted detections. This reads the cache records of every image of
``DATASETS.TEST`` (an image missing from the cache is an error), applies the steps the config turns on that
the records do not carry yet with ``DIVE.finish_detections``, the method the detector itself calls, and
reports COCOEvaluator's table for the cached and for the finished ("refined") detections. Results go to
``OUTPUT_DIR/cached/`` and ``OUTPUT_DIR/refined/`` (each readable by tools/objects_found.py). With nothing left
to apply it stops with an error; ``--score-only`` reports the cached detections alone, as they are.

    .venv/bin/python tools/refine_cached_detections.py --config-file configs/shapes/dive.yaml \
      --weights weights/shapes/dive.pth --cache docs/results/detection/shapes_val_full_cache \
      OUTPUT_DIR output/refined_shapes_val_full
    # images 100-499 only (the REFINE_* defaults were chosen on images 0-99):
    .venv/bin/python tools/refine_cached_detections.py ... --images 100 400 OUTPUT_DIR output/refined_100to500
    # the box refinement alone (as session 27 measured it):
    .venv/bin/python tools/refine_cached_detections.py ... MODEL.DIVE.INVERSION.RECLASSIFY_BOXES False OUTPUT_DIR ...
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil

import torch
from detectron2.data import MetadataCatalog, build_detection_test_loader
from detectron2.evaluation import COCOEvaluator
from detectron2.evaluation.testing import print_csv_format
from detectron2.utils.logger import setup_logger
from tqdm import tqdm

import dive_d2  # noqa: F401  (registers datasets and models)
from dive_d2.data import prepare_datasets_from_config
from dive_d2.data.from_config import register_first_images
from dive_d2.evaluation.detections_cache import image_key, output_from_record, read_records
from dive_d2.inversion import tf32_allowed
from dive_d2.loading import load_config, load_model


def cache_records(directory: str, fingerprint: str) -> dict[str, dict]:
    """The records of one fingerprint's files in ``directory``; ``fingerprint`` may be a prefix or "" when the
    folder holds a single fingerprint."""
    paths = sorted(glob.glob(os.path.join(glob.escape(directory), f"{glob.escape(fingerprint)}*.jsonl")))
    fingerprints = sorted({os.path.basename(path).split(".")[0] for path in paths})
    if not fingerprints:
        raise FileNotFoundError(f"{directory}: no detections cache files (*.jsonl) matching {fingerprint!r}")
    if len(fingerprints) > 1:
        raise ValueError(f"{directory} holds the detections of several fingerprints {fingerprints}; choose one "
                         "with --fingerprint")
    return read_records(paths)


def main(argv: list[str] | None = None) -> dict[str, dict[str, dict]]:
    """Returns {dataset: {"cached": COCOEvaluator results, "refined": ...}} ("refined" absent with
    --score-only)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True, help="the DIVE weights the cached detections were made with")
    parser.add_argument("--cache", required=True, help="a TEST.DETECTIONS_CACHE folder")
    parser.add_argument("--fingerprint", default="", help="which fingerprint's files, when the folder holds several")
    parser.add_argument("--images", type=int, nargs=2, metavar=("START", "COUNT"),
                        help="evaluate records START .. START+COUNT-1 of each test dataset instead of all")
    parser.add_argument("--score-only", action="store_true",
                        help="report the cached detections as they are, without applying any step")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config options")
    args = parser.parse_args(argv)
    setup_logger()  # Detectron2's: COCOEvaluator's tables
    setup_logger(name="dive_d2")
    logger = setup_logger(name="refine_cached_detections")

    cfg = load_config(args.config_file, args.opts)
    prepare_datasets_from_config(cfg)
    datasets = list(cfg.DATASETS.TEST)
    if args.images:
        datasets = [register_first_images(name, args.images[1], args.images[0]) for name in datasets]
    model = load_model(cfg, args.weights)
    records = cache_records(args.cache, args.fingerprint)
    logger.info("%s: %d cached image(s)", args.cache, len(records))
    steps = {"refined_boxes": model.box_refinement is not None, "candidate_boxes": model.box_candidates is not None,
             "reclassified_boxes": model.box_classes is not None}
    missing = [step for step, configured in steps.items()
               if configured and not all(record["extra"].get(step) for record in records.values())]
    if not args.score_only and not missing:
        raise ValueError(f"{args.cache}: its records carry every step the config turns on (REFINE_BOXES "
                         f"{steps['refined_boxes']}, ERROR_MAP_CANDIDATES {steps['candidate_boxes']}, RECLASSIFY_BOXES "
                         f"{steps['reclassified_boxes']}), so nothing is "
                         "left to apply; add --score-only to report them as they are")
    logger.info("applying to the cached detections: %s", ", ".join(missing) or "nothing (--score-only)")
    stages = ("cached",) if args.score_only else ("cached", "refined")

    results = {}
    for dataset in datasets:
        evaluators = {name: COCOEvaluator(dataset, tasks=("bbox",), output_dir=os.path.join(cfg.OUTPUT_DIR, name))
                      for name in stages}
        for evaluator in evaluators.values():
            evaluator.reset()
        for batch in tqdm(build_detection_test_loader(cfg, dataset), desc=dataset, unit="batch"):
            keys = [image_key(item) for item in batch]
            missing = [item.get("image_id") for item, key in zip(batch, keys, strict=True) if key not in records]
            if missing:
                raise KeyError(f"{args.cache}: no cached detections for image_id {missing} of {dataset} (same "
                               "pixels and output size); run the evaluation with TEST.DETECTIONS_CACHE first")
            cached = [output_from_record(records[key], model.device) for key in keys]
            evaluators["cached"].process(batch, cached)
            if args.score_only:
                continue
            refined = [dict(output) for output in cached]
            with torch.no_grad(), tf32_allowed(model.allow_tf32):
                model.finish_detections(model.first_stage.encode(model.preprocess_images(batch)), refined)
            evaluators["refined"].process(batch, refined)
        results[dataset] = {}
        for name, evaluator in evaluators.items():
            logger.info("%s, %s detections:", dataset, name)
            results[dataset][name] = evaluator.evaluate()
            print_csv_format(results[dataset][name])
            # COCOEvaluator writes the ground truth's json into the first folder only; tools/objects_found.py
            # reads it next to the results.
            ground_truth = MetadataCatalog.get(dataset).get("json_file", "")
            folder = os.path.join(cfg.OUTPUT_DIR, name)
            if ground_truth and os.path.dirname(os.path.abspath(ground_truth)) != os.path.abspath(folder):
                shutil.copy(ground_truth, folder)
    return results


if __name__ == "__main__":
    main()
