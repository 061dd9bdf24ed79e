#!/usr/bin/env python
"""Score a detections cache before and after the detector's steps after decoding, through COCOEvaluator.

A finished evaluation's detections (``TEST.DETECTIONS_CACHE``, dive_d2/evaluation/detections_cache.py) can be
given the steps that follow the inversion afterwards, in about a second per image instead of inverting again
(35-70 s per image on 2 CPU cores): the box refinement (``MODEL.DIVE.INVERSION.REFINE_BOXES``,
dive_d2/inversion/box_refinement.py) and the class decision (``RECLASSIFY_BOXES``, box_classes.py) only change
what DIVE returns from the image and its inverted detections (the error-map candidates,
``ERROR_MAP_CANDIDATES``, error_map_candidates.py, as well). This reads the cache records of every image of
``DATASETS.TEST`` (an image missing from the cache is an error), applies the steps the config turns on that
the records do not carry yet with ``DIVE.finish_detections``, the method the detector itself calls, and
reports COCOEvaluator's table for the cached and for the finished ("refined") detections. Results go to
``OUTPUT_DIR/cached/`` and ``OUTPUT_DIR/refined/`` (each readable by tools/objects_found.py). With nothing left
to apply it stops with an error; ``--score-only`` reports the cached detections alone, as they are.

``--finished-results`` (no cache) reads finished detections instead: the ``coco_instances_results.json`` files
that COCOEvaluator wrote (this tool's ``OUTPUT_DIR/refined/``, or an evaluation's ``inference/``), each image's
detections marked with every step before the joint-layout scores (``JOINT_LAYOUT_TOP_K``,
joint_layout_scores.py), the only one left to apply; the two tables are then "cached" (the file's detections
as they are) and "refined". ``--finished-rescored`` says the files carry the joint-layout scores too (the class
alternatives, ``CLASS_ALTERNATIVES_FACTOR``, are left), ``--finished-alternated`` the class alternatives as well
(only the prior scores, ``PRIOR_SCORE_WEIGHT``, prior_scores.py, are left).

``--ground-truth-boxes`` (no cache) gives the class decision the dataset's own boxes instead: each image's
ground-truth boxes, class 0 and score 1, marked refined and with candidates, so that only the class decision and
its score apply (``RECLASSIFY_BOXES`` must be on). Its table, ``OUTPUT_DIR/ground_truth_boxes/``, is the AP the
steps after the inversion reach with perfect boxes: what is left to win by placing boxes better.

    .venv/bin/python tools/refine_cached_detections.py --config-file configs/shapes/dive.yaml \
      --weights weights/shapes/dive.pth --cache docs/results/detection/shapes_val_full_cache \
      OUTPUT_DIR output/refined_shapes_val_full
    # the class decision given the ground-truth boxes, images 0-199:
    .venv/bin/python tools/refine_cached_detections.py --config-file configs/shapes/dive.yaml \
      --weights weights/shapes/dive.pth --ground-truth-boxes --images 0 200 OUTPUT_DIR output/oracle_boxes
    # images 100-499 only (the REFINE_* defaults were chosen on images 0-99):
    .venv/bin/python tools/refine_cached_detections.py ... --images 100 400 OUTPUT_DIR output/refined_100to500
    # the joint-layout scores on the finished detections of a run of this tool:
    .venv/bin/python tools/refine_cached_detections.py --config-file configs/shapes/dive.yaml \
      --weights weights/shapes/dive.pth --finished-results output/refined_shapes_val_full/refined/\
    coco_instances_results.json MODEL.DIVE.INVERSION.JOINT_LAYOUT_TOP_K 8 OUTPUT_DIR output/joint_shapes_val_full
    # the box refinement alone (as session 27 measured it):
    .venv/bin/python tools/refine_cached_detections.py ... MODEL.DIVE.INVERSION.RECLASSIFY_BOXES False \
      MODEL.DIVE.INVERSION.ERROR_MAP_CANDIDATES False OUTPUT_DIR ...
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
from collections import defaultdict

import torch
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
from detectron2.evaluation import COCOEvaluator
from detectron2.evaluation.testing import print_csv_format
from detectron2.structures import Boxes, BoxMode, Instances
from detectron2.utils.logger import setup_logger
from tqdm import tqdm

import dive_d2  # noqa: F401  (registers datasets and models)
from dive_d2.data import prepare_datasets_from_config
from dive_d2.data.from_config import register_first_images
from dive_d2.evaluation.coco_slices import instances_from_results
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


def ground_truth_output(record: dict, device: torch.device) -> dict:
    """A dataset record's objects as DIVE output: its boxes (XYXY, pixels of the record's height x width), class
    0 and score 1 each (the class decision chooses the class; a box without a latent cell keeps class 0), marked
    so that ``DIVE.finish_detections`` neither refines them nor adds candidates."""
    for key in ("height", "width", "image_id"):
        if key not in record:
            raise KeyError(f"--ground-truth-boxes: dataset record {record.get('file_name', '?')} has no {key!r}")
    boxes = [BoxMode.convert(list(annotation["bbox"]), annotation["bbox_mode"], BoxMode.XYXY_ABS)
             for annotation in record.get("annotations", [])]
    instances = Instances((record["height"], record["width"]))
    instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32, device=device).reshape(-1, 4))
    instances.scores = torch.ones(len(boxes), device=device)
    instances.pred_classes = torch.zeros(len(boxes), dtype=torch.int64, device=device)
    return {"instances": instances, "refined_boxes": 1, "candidate_boxes": 1}


FINISHED_STEPS = ("refined_boxes", "candidate_boxes", "reclassified_boxes")


def read_finished_results(paths: list[str], dataset: str) -> dict[int, list[dict]]:
    """{image_id: [COCO result, ...]} of COCOEvaluator results files (``bbox`` XYWH in pixels, ``category_id``
    mapped to the dataset's contiguous classes); an image found in two files is an error."""
    to_contiguous = MetadataCatalog.get(dataset).get("thing_dataset_id_to_contiguous_id", None)
    by_image = defaultdict(list)
    source = {}
    for path in paths:
        with open(path) as f:
            results = json.load(f)
        if not isinstance(results, list) or any(not {"image_id", "bbox", "score", "category_id"} <= set(result)
                                                for result in results):
            raise ValueError(f"{path}: not a COCOEvaluator results file (a list of objects with image_id, bbox, "
                             "score and category_id)")
        for result in results:
            image_id, category = result["image_id"], result["category_id"]
            if source.setdefault(image_id, path) != path:
                raise ValueError(f"image_id {image_id} has detections in both {source[image_id]} and {path}")
            if to_contiguous is not None and category not in to_contiguous:
                raise KeyError(f"{path}: category_id {category} is not a category of {dataset}")
            by_image[image_id].append({**result, "category_id": to_contiguous[category] if to_contiguous
                                       else category})
    return by_image


def finished_output(results: list[dict], item: dict, device: torch.device, rescored: bool = False,
                    alternated: bool = False) -> dict:
    """One image's finished detections (COCO results of ``read_finished_results``) as DIVE output at the image's
    output size, marked with every step before the joint-layout scores (``rescored``: with those too;
    ``alternated``: with the class alternatives as well)."""
    instances = instances_from_results(results, item["height"], item["width"], torch.float32, device)
    steps = (FINISHED_STEPS + (("joint_layout_scores",) if rescored or alternated else ())
             + (("class_alternatives",) if alternated else ()))
    return {"instances": instances, **dict.fromkeys(steps, 1)}


def main(argv: list[str] | None = None) -> dict[str, dict[str, dict]]:
    """Returns {dataset: {"cached": COCOEvaluator results, "refined": ...}} ("refined" absent with
    --score-only; {dataset: {"ground_truth_boxes": ...}} with --ground-truth-boxes)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True, help="the DIVE weights the cached detections were made with")
    parser.add_argument("--cache", help="a TEST.DETECTIONS_CACHE folder (needed unless --ground-truth-boxes)")
    parser.add_argument("--fingerprint", default="", help="which fingerprint's files, when the folder holds several")
    parser.add_argument("--images", type=int, nargs=2, metavar=("START", "COUNT"),
                        help="evaluate records START .. START+COUNT-1 of each test dataset instead of all")
    parser.add_argument("--score-only", action="store_true",
                        help="report the cached detections as they are, without applying any step")
    parser.add_argument("--finished-results", metavar="JSON", action="append",
                        help="apply the joint-layout scores to the finished detections of a COCOEvaluator results "
                             "file instead of reading a cache (repeat for several files)")
    parser.add_argument("--finished-rescored", action="store_true",
                        help="with --finished-results: the files carry the joint-layout scores too (a default "
                             "evaluation's results), so only the class alternatives are left to apply")
    parser.add_argument("--finished-alternated", action="store_true",
                        help="with --finished-results: the files carry the class alternatives too (a default "
                             "evaluation's results before the prior scores), so only the prior scores are left")
    parser.add_argument("--ground-truth-boxes", action="store_true",
                        help="give the class decision each image's ground-truth boxes instead of cached detections")
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
    if (args.finished_rescored or args.finished_alternated) and not args.finished_results:
        parser.error("--finished-rescored and --finished-alternated describe --finished-results files: give them")
    if args.finished_rescored and args.finished_alternated:
        parser.error("give one of --finished-rescored (the class alternatives are left) and --finished-alternated "
                     "(only the prior scores are left)")
    model = load_model(cfg, args.weights)
    finished_results = {}
    if args.finished_results:
        if args.cache or args.ground_truth_boxes:
            parser.error("--finished-results reads no cache and no ground truth: drop --cache and "
                         "--ground-truth-boxes")
        if args.finished_alternated and model.prior_scores is None and not args.score_only:
            raise ValueError("--finished-alternated leaves the prior scores only to apply: set "
                             "MODEL.DIVE.INVERSION.PRIOR_SCORE_WEIGHT > 0 (or add --score-only)")
        if (args.finished_rescored and model.class_alternatives is None and model.prior_scores is None
                and not args.score_only):
            raise ValueError("--finished-rescored leaves the class alternatives (and the prior scores) only to apply: "
                             "set MODEL.DIVE.INVERSION.CLASS_ALTERNATIVES_FACTOR > 0 or PRIOR_SCORE_WEIGHT > 0 (or "
                             "add --score-only)")
        if (not (args.finished_rescored or args.finished_alternated) and model.joint_layout_scores is None
                and not args.score_only):
            raise ValueError("--finished-results applies the joint-layout scores (and the class alternatives and "
                             "the prior scores, if on): set MODEL.DIVE.INVERSION.JOINT_LAYOUT_TOP_K > 0 (or add "
                             "--score-only)")
        later = [name for name, on in (("the class alternatives", model.class_alternatives is not None),
                                       ("the prior scores", model.prior_scores is not None)) if on]
        left = " and ".join(["the prior scores"] if args.finished_alternated else
                            later if args.finished_rescored else ["the joint-layout scores", *later])
        finished_results = {dataset: read_finished_results(args.finished_results, dataset) for dataset in datasets}
        records = {}
        logger.info("applying %s to the finished detections of %s", left, ", ".join(args.finished_results))
        stages = ("cached",) if args.score_only else ("cached", "refined")
    elif args.ground_truth_boxes:
        if args.cache or args.score_only:
            parser.error("--ground-truth-boxes reads no cache: drop --cache and --score-only")
        if model.box_classes is None:
            raise ValueError("--ground-truth-boxes measures the class decision: turn on "
                             "MODEL.DIVE.INVERSION.RECLASSIFY_BOXES")
        records = {}
        logger.info("giving the class decision each image's ground-truth boxes")
        stages = ("ground_truth_boxes",)
    else:
        if not args.cache:
            parser.error("--cache is required (unless --ground-truth-boxes)")
        records = cache_records(args.cache, args.fingerprint)
        logger.info("%s: %d cached image(s)", args.cache, len(records))
        steps = {"refined_boxes": model.box_refinement is not None,
                 "candidate_boxes": model.box_candidates is not None,
                 "reclassified_boxes": model.box_classes is not None,
                 "joint_layout_scores": model.joint_layout_scores is not None,
                 "class_alternatives": model.class_alternatives is not None,
                 "prior_scores": model.prior_scores is not None}
        missing = [step for step, configured in steps.items()
                   if configured and not all(record["extra"].get(step) for record in records.values())]
        if not args.score_only and not missing:
            raise ValueError(f"{args.cache}: its records carry every step the config turns on (REFINE_BOXES "
                             f"{steps['refined_boxes']}, ERROR_MAP_CANDIDATES {steps['candidate_boxes']}, "
                             f"RECLASSIFY_BOXES {steps['reclassified_boxes']}, JOINT_LAYOUT_TOP_K > 0 "
                             f"{steps['joint_layout_scores']}, CLASS_ALTERNATIVES_FACTOR > 0 "
                             f"{steps['class_alternatives']}, PRIOR_SCORE_WEIGHT > 0 {steps['prior_scores']}), "
                             "so nothing is left to apply; add "
                             "--score-only to report them as they are")
        logger.info("applying to the cached detections: %s", ", ".join(missing) or "nothing (--score-only)")
        stages = ("cached",) if args.score_only else ("cached", "refined")

    results = {}
    for dataset in datasets:
        evaluators = {name: COCOEvaluator(dataset, tasks=("bbox",), output_dir=os.path.join(cfg.OUTPUT_DIR, name))
                      for name in stages}
        for evaluator in evaluators.values():
            evaluator.reset()
        truth = ({record["image_id"]: record for record in DatasetCatalog.get(dataset)} if args.ground_truth_boxes
                 else {})
        images, absent = 0, []  # --finished-results: images the files hold no line for
        for batch in tqdm(build_detection_test_loader(cfg, dataset), desc=dataset, unit="batch"):
            if args.finished_results:
                images += len(batch)
                absent += [item["image_id"] for item in batch if item["image_id"] not in finished_results[dataset]]
                given = [finished_output(finished_results[dataset].get(item["image_id"], []), item, model.device,
                                         args.finished_rescored, args.finished_alternated) for item in batch]
                evaluators["cached"].process(batch, given)
                if args.score_only:
                    continue
            elif args.ground_truth_boxes:
                given = [ground_truth_output(truth[item["image_id"]], model.device) for item in batch]
            else:
                keys = [image_key(item) for item in batch]
                missing = [item.get("image_id") for item, key in zip(batch, keys, strict=True) if key not in records]
                if missing:
                    raise KeyError(f"{args.cache}: no cached detections for image_id {missing} of {dataset} (same "
                                   "pixels and output size); run the evaluation with TEST.DETECTIONS_CACHE first")
                given = [output_from_record(records[key], model.device) for key in keys]
                evaluators["cached"].process(batch, given)
                if args.score_only:
                    continue
            finished = [dict(output) for output in given]
            with torch.no_grad(), tf32_allowed(model.allow_tf32):
                model.finish_detections(model.first_stage.encode(model.preprocess_images(batch)), finished)
            evaluators[stages[-1]].process(batch, finished)
        if absent:
            # COCOEvaluator writes no line for an image without detections, so an absent image is legal, but a
            # file of another slice or split looks the same: say how many were read as empty.
            logger.warning("%s: %d of %d image(s) have no detections in the --finished-results files and are "
                           "evaluated as having none (image_id %s%s)", dataset, len(absent), images, absent[:10],
                           " ..." if len(absent) > 10 else "")
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
