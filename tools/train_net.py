#!/usr/bin/env python
"""Train or evaluate any dive_d2 config with Detectron2's DefaultTrainer and COCOEvaluator.

    python tools/train_net.py --config-file configs/shapes/faster_rcnn_R18_FPN.yaml
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS path/to/model.pth
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS ... \
        DATASETS.COCO_TEST.JSON my.json DATASETS.COCO_TEST.IMAGES my_images/
"""

import json
import logging
import os

import torch
from detectron2.config import get_cfg
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import dive_d2  # noqa: F401  (registers datasets and models)
from dive_d2 import add_dive_config
from dive_d2.data import ClassificationMapper, build_train_mapper, prepare_datasets_from_config
from dive_d2.evaluation import CachedDetector, ClassificationEvaluator, InversionStatsEvaluator
from dive_d2.loading import InferenceCheckpointer
from dive_d2.solver import build_optimizer


class Trainer(DefaultTrainer):
    """DefaultTrainer with COCOEvaluator (for DIVE also the inversion's stopping steps, and a detections
    cache that makes its evaluations resumable), the optimizer chosen by SOLVER.OPTIMIZER, and a
    layout-only data mapper when only a prior trains. A DiffusionClassifier reads classification splits
    and reports top-1 accuracy instead."""

    @classmethod
    def build_train_loader(cls, cfg):
        return build_detection_train_loader(cfg, mapper=build_train_mapper(cfg))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        classifier = cfg.MODEL.META_ARCHITECTURE == "DiffusionClassifier"
        mapper = ClassificationMapper(cfg.INPUT.FORMAT) if classifier else None
        return build_detection_test_loader(cfg, dataset_name, mapper=mapper, batch_size=cfg.TEST.IMS_PER_BATCH)

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        # DIVE's evaluation takes hours on a CPU: keep every finished image so a rerun resumes (TEST.DETECTIONS_CACHE).
        if cfg.MODEL.META_ARCHITECTURE == "DIVE" and cfg.TEST.DETECTIONS_CACHE:
            model = CachedDetector.from_config(cfg, model)
        return super().test(cfg, model, evaluators)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if cfg.MODEL.META_ARCHITECTURE == "DiffusionClassifier":
            return ClassificationEvaluator()
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        coco = COCOEvaluator(dataset_name, tasks=("bbox",), output_dir=output_folder)
        if cfg.MODEL.META_ARCHITECTURE == "DIVE":
            return DatasetEvaluators([coco, InversionStatsEvaluator()])
        return coco


def setup(args):
    cfg = get_cfg()
    add_dive_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    prepare_datasets_from_config(cfg)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger("dive_d2").warning("MODEL.DEVICE=%s but CUDA is not available: using cpu", cfg.MODEL.DEVICE)
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="dive_d2")
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        InferenceCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results = Trainer.test(cfg, model)
        if comm.is_main_process():
            with open(os.path.join(cfg.OUTPUT_DIR, "eval_results.json"), "w") as f:
                json.dump(results, f, indent=2)
        return results
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
