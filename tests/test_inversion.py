"""Detection by inversion on a tiny random model: gradients, output contract, seeds, batch independence."""

import math

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances, pairwise_iou

from dive_d2.inversion import LayoutInversion, best_restarts, pool_detections, replay_checks, restart_seed
from dive_d2.inversion.assembly import assemble_layout, run_objects
from dive_d2.inversion.parameterisations import BoxSlots, EmbeddingSequence, annealed_smoothing
from dive_d2.inversion.polish import polish_layout
from dive_d2.layout import LayoutTokenizer

from .test_dive_training import make_input, tiny_cfg

TINY_INVERSION = ("MODEL.DIVE.INVERSION.MAX_STEPS", "6", "MODEL.DIVE.INVERSION.NUM_PAIRS", "4",
                  "MODEL.DIVE.INVERSION.PAIRS_PER_STEP", "2", "MODEL.DIVE.INVERSION.MONITOR_PAIRS", "2",
                  "MODEL.DIVE.INVERSION.MONITOR_PERIOD", "2", "MODEL.DIVE.INVERSION.PATIENCE", "2",
                  # each test turns on the steps after decoding it checks (the joint-layout scores, the class
                  # alternatives and the prior scores: their own tests)
                  "MODEL.DIVE.INVERSION.JOINT_LAYOUT_TOP_K", "0",
                  "MODEL.DIVE.INVERSION.CLASS_ALTERNATIVES_FACTOR", "0.0",
                  "MODEL.DIVE.INVERSION.PRIOR_SCORE_WEIGHT", "0.0")
# The prior configs/shapes/dive.yaml builds (tiny_cfg builds the image config's epsilon prior): a tiny model saved
# for an evaluation under that config must fit it, or the inference loader refuses the file.
DETECTOR_PRIOR = ("MODEL.DIVE.PRIOR.PARAMETERISATION", "token_posterior")


def tiny_model(*opts):
    torch.manual_seed(0)
    return build_model(tiny_cfg(*TINY_INVERSION, *opts)).eval()


def test_straight_through_gradient_reaches_the_continuous_embeddings():
    model = tiny_model()
    vocabulary = model.layout_encoder.vocabulary().detach()
    layout = EmbeddingSequence(torch.randn(2, model.tokenizer.sequence_length, 16), model.tokenizer.allowed_tokens())
    snapped = layout.embeddings(vocabulary, torch.arange(2), snap=True)
    tokens = layout.tokens(vocabulary)
    assert torch.allclose(snapped, vocabulary[tokens], atol=1e-6), "the forward value is not the snapped row"
    weights = torch.randn_like(snapped)
    (snapped * weights).sum().backward()
    assert torch.equal(layout.values.grad, weights), "straight-through must pass the gradient unchanged"


def test_box_slots_show_the_models_real_tokens_and_pass_gradients_to_boxes_and_classes():
    model = tiny_model()
    tokenizer = model.tokenizer
    vocabulary = model.layout_encoder.vocabulary().detach()
    classes = torch.tensor([[0, 2, tokenizer.num_classes, 1]])  # slot 2 starts empty
    boxes = torch.tensor([[[0.1, 0.1, 0.5, 0.4], [0.5, 0.5, 0.9, 0.8], [0.2, 0.2, 0.3, 0.3], [0.0, 0.6, 0.3, 1.0]]])
    layout = BoxSlots(model, classes, boxes)
    tokens = layout.tokens(vocabulary)
    decoded = tokenizer.decode(tokens[0], 64, 64)
    assert decoded.slots.tolist() == [0, 1, 3] and decoded.classes.tolist() == [0, 2, 1]
    grid_px = 64 / (tokenizer.grid_size - 1)
    assert torch.allclose(decoded.boxes, boxes[0, [0, 1, 3]] * 64, atol=grid_px / 2 + 0.7)
    assert (tokens[0, 6:9] == tokenizer.none_token).all()
    snapped = layout.embeddings(vocabulary, torch.arange(1), snap=True)
    assert torch.allclose(snapped, vocabulary[tokens], atol=1e-5), "the models must see real tokens"
    (snapped * torch.randn_like(snapped)).sum().backward()
    assert layout.box_logits.grad.abs().sum() > 0 and layout.class_logits.grad.abs().sum() > 0


def test_box_smoothing_keeps_the_forward_tokens_and_damps_the_fine_corner_gradient():
    from dive_d2.modeling.layout_encoder import fourier_features

    points = torch.rand(5, 2)
    assert torch.equal(fourier_features(points, 4, smoothing=0.0), fourier_features(points, 4))
    smoothed = fourier_features(points, 4, smoothing=0.1)
    # Jitter-averaged features: the finest term shrinks most; the raw coordinates are unchanged.
    assert torch.equal(smoothed[:, :2], points)
    finest_sin = slice(2 + 3, 2 + 4 * 2, 4)  # x and y at the finest frequency, pi * 2**3
    expected = fourier_features(points, 4)[:, finest_sin] * math.exp(-0.5 * (math.pi * 8 * 0.1) ** 2)
    assert torch.allclose(smoothed[:, finest_sin], expected, atol=1e-6)
    model = tiny_model()
    vocabulary = model.layout_encoder.vocabulary().detach()
    classes, boxes = torch.tensor([[0, 1, 2, 0]]), torch.tensor([[[0.1, 0.1, 0.5, 0.4]] * 4])
    weights = torch.randn(1, model.tokenizer.sequence_length, vocabulary.shape[1])
    gradients = []
    for smoothing in (0.0, 0.05):
        layout = BoxSlots(model, classes, boxes, smoothing=smoothing)
        snapped = layout.embeddings(vocabulary, torch.arange(1), snap=True)
        assert torch.allclose(snapped, vocabulary[layout.tokens(vocabulary)], atol=1e-5)
        (snapped * weights).sum().backward()
        gradients.append(layout.box_logits.grad.clone())
    assert not torch.allclose(gradients[0], gradients[1]), "smoothing must change the corner gradient"
    free = tiny_model("MODEL.DIVE.LAYOUT_ENCODER.COORDINATE_EMBEDDING", "free")
    with pytest.raises(ValueError, match="fourier"):
        free.layout_encoder.corner_embeddings(torch.rand(3, 2), smoothing=0.05)


def test_annealed_smoothing_decays_geometrically_and_reaches_every_step_of_the_search():
    values = [annealed_smoothing(step, 0.2, 0.05, 4) for step in range(7)]
    assert values[0] == pytest.approx(0.2) and values[4:] == pytest.approx([0.05] * 3)
    assert values[2] == pytest.approx(0.1), "geometric: half way, the geometric mean"
    assert all(earlier > later for earlier, later in zip(values[:4], values[1:5], strict=True))
    with pytest.raises(ValueError, match="BOX_SMOOTHING"):
        LayoutInversion(parameterisation="box", box_smoothing=0.0, box_smoothing_start=0.2)
    model = tiny_model("MODEL.DIVE.INVERSION.PARAMETERISATION", "box", "MODEL.DIVE.INVERSION.BOX_SMOOTHING", "0.05",
                       "MODEL.DIVE.INVERSION.BOX_SMOOTHING_START", "0.2",
                       "MODEL.DIVE.INVERSION.BOX_SMOOTHING_ANNEAL_STEPS", "4", "MODEL.DIVE.INVERSION.PATIENCE", "0")
    corner_embeddings, seen = model.layout_encoder.corner_embeddings, []

    def recording(points, smoothing=0.0):
        if points.requires_grad:  # the steps' corners, not the vocabulary's grid or the monitor's checks
            seen.append(smoothing)
        return corner_embeddings(points, smoothing)

    model.layout_encoder.corner_embeddings = recording
    latents = model.first_stage.encode(model.preprocess_images([make_input(3, 64, 64, [], [])]))
    with torch.enable_grad():
        model.inversion(model, latents, [0])
    assert seen == pytest.approx(values[:6]), "each step must use its scheduled smoothing"
    seen.clear()
    model.inversion.box_smoothing_start = 0.0
    with torch.enable_grad():
        model.inversion(model, latents, [0])
    assert seen == pytest.approx([0.05] * 6)


@pytest.mark.parametrize("parameterisation", ["embedding", "box"])
def test_eval_forward_returns_instances_for_mixed_inputs(parameterisation):
    model = tiny_model("MODEL.DIVE.INVERSION.PARAMETERISATION", parameterisation)
    inputs = [
        make_input(3, 64, 64, [], []) | {"image_id": 1},
        make_input(1, 40, 72, [], [], seed=1) | {"image_id": 2, "height": 80, "width": 144},  # grey, rescaled
        make_input(4, 50, 50, [], [], seed=2) | {"image_id": 3},  # RGBA
    ]
    inputs.append({"image": torch.zeros(3, 48, 48, dtype=torch.uint8), "image_id": 4})  # empty image
    with torch.no_grad():  # as in Detectron2's inference_on_dataset
        outputs = model(inputs)
    assert len(outputs) == 4
    for item, output in zip(inputs, outputs, strict=True):
        instances = output["instances"]
        assert isinstance(instances, Instances)
        expected_size = (item.get("height", item["image"].shape[1]), item.get("width", item["image"].shape[2]))
        assert instances.image_size == expected_size
        assert {"pred_boxes", "scores", "pred_classes"} <= set(instances.get_fields())
        boxes = instances.pred_boxes.tensor
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert ((instances.pred_classes >= 0) & (instances.pred_classes < 3)).all()
        assert 1 <= output["inversion_steps"] <= 6
    assert not any(p.grad is not None for p in model.parameters()), "inversion changed or touched the model"


@pytest.mark.parametrize("parameterisation,initialisation", [("embedding", "random"), ("box", "random"),
                                                               ("box", "prior"), ("box", "error_map")])
def test_same_seed_same_detections_whatever_the_batch(parameterisation, initialisation):
    model = tiny_model("MODEL.DIVE.INVERSION.PARAMETERISATION", parameterisation, "MODEL.DIVE.INVERSION.INIT",
                       initialisation, "MODEL.DIVE.INVERSION.PRIOR_INIT_STEPS", "3")
    images = [make_input(3, 64, 64, [], [], seed=s) | {"image_id": s} for s in range(3)]

    def detections(batch):
        with torch.no_grad():
            return [(o["instances"].pred_boxes.tensor.tolist(), o["instances"].pred_classes.tolist(),
                     o["inversion_steps"]) for o in model(batch)]

    together = detections(images)
    alone = [detections([image])[0] for image in images]
    reordered = detections([images[2], images[0]])
    assert together == alone
    assert reordered == [together[2], together[0]]
    assert detections(images) == together


def test_monitor_keeps_the_best_layout_and_records_stopping():
    model = tiny_model()
    latents = model.first_stage.encode(model.preprocess_images([make_input(3, 64, 64, [], [])]))
    inversion = LayoutInversion(max_steps=12, num_pairs=4, pairs_per_step=2, monitor_pairs=2, monitor_period=2,
                                patience=2, record_history=True)
    with torch.enable_grad():
        result = inversion(model, latents, [0])
    losses = torch.stack([check.loss for check in result.history])
    assert torch.isclose(result.monitor_loss, losses.min(0).values).all()
    best_check = int(losses[:, 0].argmin())
    assert torch.equal(result.tokens[0].cpu(), result.history[best_check].tokens[0])
    assert result.stop_step[0] == result.history[-1].step


@pytest.mark.parametrize("parameterisation", ["embedding", "box"])
def test_restarts_return_each_images_best_single_run(parameterisation):
    model = tiny_model()
    latents = model.first_stage.encode(model.preprocess_images(
        [make_input(3, 64, 64, [], [], seed=s) for s in range(2)]))
    settings = dict(max_steps=6, num_pairs=4, pairs_per_step=2, monitor_pairs=2, monitor_period=2, patience=2,
                    parameterisation=parameterisation)
    with torch.enable_grad():
        restarted = LayoutInversion(restarts=3, record_history=True, **settings)(model, latents, [7, 8])
        single = [LayoutInversion(**settings)(model, latents[image : image + 1].expand(3, -1, -1, -1),
                                               [restart_seed(seed, r) for r in range(3)])
                  for image, seed in enumerate([7, 8])]
    assert single[0].tokens.unique(dim=0).shape[0] > 1, "restarts did not start from different points"
    for image, runs in enumerate(single):
        best = int(runs.monitor_loss.argmin())
        assert torch.equal(restarted.tokens[image], runs.tokens[best])
        # Same run and layout; batches of 6 and 3 runs may sum in another order (multi-threaded kernels), so the
        # loss can differ in its last bits (seen on a loaded 2-core machine: 2.3892 against 2.3892).
        assert torch.isclose(restarted.monitor_loss[image], runs.monitor_loss[best], rtol=1e-5, atol=0.0)
        assert restarted.stop_step[image] == runs.stop_step[best]
        assert restarted.history_row(image) == 3 * image + best
        assert torch.equal(restarted.run_tokens[image], runs.tokens), "every run's layout, for pooling"
    assert len(restarted.history[0].loss) == 6
    with torch.enable_grad():
        plain = LayoutInversion(**settings)(model, latents, [7, 8])
    assert torch.equal(plain.tokens, torch.stack([runs.tokens[0] for runs in single])), "restart 0 is the plain run"
    with torch.enable_grad():
        two = LayoutInversion(restarts=2, **settings)(model, latents, [7, 8])
    first_two = best_restarts(torch.cat([runs.monitor_loss for runs in single]), 3, considered=2)
    assert torch.equal(two.tokens, torch.stack([single[int(run) // 3].tokens[int(run) % 3] for run in first_two])), \
        "RESTARTS 2 is the best of the first two runs of RESTARTS 3 (what tools/evaluate_inversion.py replays)"


def test_best_restarts_picks_the_lowest_loss_among_the_considered_runs():
    losses = torch.tensor([3.0, 2.0, 1.0, 5.0, 4.0, 4.0])  # two images, three runs each, image-major
    assert best_restarts(losses, 3).tolist() == [2, 4]  # the tie at image 1 goes to the earlier restart
    assert best_restarts(losses, 3, considered=2).tolist() == [1, 4]
    assert best_restarts(losses, 3, considered=1).tolist() == [0, 3]
    with pytest.raises(ValueError, match="1 to 3 restarts"):
        best_restarts(losses, 3, considered=4)


def detections_of(boxes, classes, scores, size=(64, 64)):
    instances = Instances(size)
    instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    instances.pred_classes = torch.tensor(classes, dtype=torch.int64)
    instances.scores = torch.tensor(scores, dtype=torch.float32)
    return instances


def test_pooling_merges_an_object_that_several_runs_found_and_keeps_the_rest():
    square = [10.0, 10.0, 30.0, 30.0]
    shifted = [12.0, 10.0, 32.0, 30.0]  # IoU 0.82 with square
    far = [40.0, 40.0, 60.0, 60.0]
    runs = [detections_of([square, far], [0, 1], [0.9, 0.4]),
            detections_of([shifted, shifted], [0, 2], [0.6, 0.8]),  # same box, other class: another object
            detections_of([], [], []),
            detections_of([square, square], [0, 0], [0.5, 0.3])]  # one run counts once per object
    pooled = pool_detections(runs, iou_threshold=0.5)
    # Run 0's square leads and takes run 1's shifted square and run 3's better square; run 3's second square
    # cannot join (run 3 is in that cluster already), so it is an object of its own.
    assert pooled.pred_boxes.tensor.tolist() == [square, shifted, far, square]
    assert pooled.pred_classes.tolist() == [0, 2, 1, 0]
    assert pooled.scores.tolist() == pytest.approx([(0.9 + 0.6 + 0.5) / 4, 0.8 / 4, 0.4 / 4, 0.3 / 4])
    assert len(pool_detections(runs, iou_threshold=0.9)) == 5, "shifted no longer matches square at IoU 0.9"
    assert len(pool_detections([detections_of([], [], [])] * 2)) == 0
    with pytest.raises(ValueError, match="IoU threshold"):
        pool_detections(runs, iou_threshold=0.0)


def test_pooling_with_the_max_score_keeps_each_cluster_best_member():
    square, shifted, far = [10.0, 10.0, 30.0, 30.0], [12.0, 10.0, 32.0, 30.0], [40.0, 40.0, 60.0, 60.0]
    runs = [detections_of([square, far], [0, 1], [0.6, 0.4]), detections_of([shifted], [0], [0.9])]
    pooled = pool_detections(runs, iou_threshold=0.5, score="max")
    assert pooled.pred_boxes.tensor.tolist() == [shifted, far], "run 1's better square leads its cluster"
    assert pooled.scores.tolist() == pytest.approx([0.9, 0.4])
    alone = detections_of([far, square, square], [1, 0, 0], [0.2, 0.7, 0.5])
    again = pool_detections([alone], score="max")
    assert again.scores.tolist() == pytest.approx([0.7, 0.5, 0.2]), "one run pooled is that run, re-sorted"
    assert again.pred_boxes.tensor.tolist() == [square, square, far]
    with pytest.raises(ValueError, match="pooled score"):
        pool_detections(runs, score="median")


def test_pooled_passes_are_the_pool_of_separate_runs_with_each_prior_weight():
    images = [make_input(3, 64, 64, [], [], seed=s) | {"image_id": s} for s in range(2)]
    opts = ("MODEL.DIVE.INVERSION.RECLASSIFY_SCORE", "layout", "MODEL.DIVE.INVERSION.ERROR_MAP_CANDIDATES", "False")

    def detections(*extra):
        with torch.no_grad():
            return tiny_model(*opts, *extra)(images)

    main, other = detections("MODEL.DIVE.INVERSION.PRIOR_WEIGHT", "0.0"), detections(
        "MODEL.DIVE.INVERSION.PRIOR_WEIGHT", "1.0")
    assert any(not torch.equal(a["instances"].pred_boxes.tensor, b["instances"].pred_boxes.tensor)
               for a, b in zip(main, other, strict=True)), "the prior weight should change some detections"
    both = detections("MODEL.DIVE.INVERSION.PRIOR_WEIGHT", "0.0", "MODEL.DIVE.INVERSION.POOLED_PASS_PRIOR_WEIGHTS",
                      "(1.0,)", "MODEL.DIVE.INVERSION.POOLED_PASS_IOU", "0.6")
    for alone, extra, pooled in zip(main, other, both, strict=True):
        expected = pool_detections([alone["instances"], extra["instances"]], 0.6, "mean")
        assert torch.equal(pooled["instances"].pred_boxes.tensor, expected.pred_boxes.tensor)
        assert torch.equal(pooled["instances"].scores, expected.scores)
        assert torch.equal(pooled["instances"].pred_classes, expected.pred_classes)
        assert pooled["inversion_steps"] == alone["inversion_steps"]
        assert pooled["pooled_pass_steps"] == extra["inversion_steps"]
    with pytest.raises(ValueError, match="POOLED_PASS_SCORE"):
        tiny_model("MODEL.DIVE.INVERSION.POOLED_PASS_SCORE", "median")


def test_pooled_restarts_contain_the_best_run_and_equal_it_with_one_restart():
    # The layout's own scores (the benchmarks' configs replace them after decoding: RECLASSIFY_SCORE
    # explained_share), so no error-map boxes, which only those scores rank.
    opts = ("MODEL.DIVE.INVERSION.PARAMETERISATION", "box", "MODEL.DIVE.INVERSION.SCORE", "constant",
            "MODEL.DIVE.INVERSION.RECLASSIFY_SCORE", "layout", "MODEL.DIVE.INVERSION.ERROR_MAP_CANDIDATES", "False")
    images = [make_input(3, 64, 64, [], [], seed=s) | {"image_id": s} for s in range(2)]

    def detections(*extra):
        with torch.no_grad():
            return [o["instances"] for o in tiny_model(*opts, *extra)(images)]

    one = ("MODEL.DIVE.INVERSION.RESTARTS", "1")
    for best, pooled in zip(detections(*one), detections(*one, "MODEL.DIVE.INVERSION.RESTART_SELECTION", "pooled"),
                            strict=True):
        assert torch.equal(best.pred_boxes.tensor, pooled.pred_boxes.tensor)
        assert torch.equal(best.scores, pooled.scores)
    three = ("MODEL.DIVE.INVERSION.RESTARTS", "3")
    for best, pooled in zip(detections(*three), detections(*three, "MODEL.DIVE.INVERSION.RESTART_SELECTION",
                                                           "pooled"), strict=True):
        assert len(pooled) >= len(best)
        # Every object of the best run is in the pool: as its own box, or merged into a same-class box.
        overlap = pairwise_iou(best.pred_boxes, pooled.pred_boxes)
        same_class = best.pred_classes[:, None] == pooled.pred_classes[None, :]
        assert ((overlap >= 0.5) & same_class).any(dim=1).all()
        assert ((pooled.scores > 0) & (pooled.scores <= 1)).all(), "constant score pools to a vote fraction"


def test_every_score_variant_gives_valid_confidences():
    for score in ("leave_one_out", "margin", "constant"):
        model = tiny_model("MODEL.DIVE.INVERSION.SCORE", score, "MODEL.DIVE.INVERSION.MAX_STEPS", "2",
                           "MODEL.DIVE.INVERSION.RECLASSIFY_SCORE", "layout",
                           "MODEL.DIVE.INVERSION.ERROR_MAP_CANDIDATES", "False")
        with torch.no_grad():
            outputs = model([make_input(3, 64, 64, [], [], seed=s) | {"image_id": s} for s in range(3)])
        scores = torch.cat([o["instances"].scores for o in outputs])
        assert ((scores >= 0) & (scores <= 1)).all(), score
        if score == "constant":
            assert (scores == 1).all()


def test_leave_one_out_score_rises_with_the_evidence():
    from dive_d2.inversion import leave_one_out_scores

    model = tiny_model()
    latents = model.first_stage.encode(model.preprocess_images([make_input(3, 64, 64, [], [])]))
    tokens = model.tokenizer.encode(torch.tensor([[0.0, 0, 32, 32], [32, 32, 64, 64]]), torch.tensor([0, 1]), 64, 64)
    scores = leave_one_out_scores(model, model.inversion, latents, tokens, torch.tensor([0, 1]), temperature=0.01)
    monitor = model.inversion.monitor_pairs_for(model, latents)
    vocabulary = model.layout_encoder.vocabulary().detach()
    with torch.no_grad():
        full = model.inversion.posterior_loss(model, latents, vocabulary[tokens][None], *monitor)
        for slot, score in enumerate(scores):
            without = tokens.clone()
            without[3 * slot : 3 * slot + 3] = model.tokenizer.none_token
            rise = model.inversion.posterior_loss(model, latents, vocabulary[without][None], *monitor) - full
            assert torch.isclose(score, torch.sigmoid(rise / 0.01)[0], atol=1e-5)


@pytest.mark.parametrize("data", ["registered", "coco_json"])
def test_eval_only_through_train_net_reports_coco_and_stopping_steps(tmp_path, data):
    from detectron2.checkpoint import DetectionCheckpointer

    from dive_d2.data import BENCHMARK_SPLITS
    from dive_d2.data.benchmarks import write_split

    from .helpers import REPO_ROOT, TINY_DIVE_OPTS, load_tool

    model = tiny_model(*DETECTOR_PRIOR)
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("tiny")
    config = f"{REPO_ROOT}/configs/shapes/dive.yaml"
    opts = ["--eval-only", "MODEL.WEIGHTS", str(tmp_path / "tiny.pth"), "DATASETS.TEST_LIMIT", "2",
            *TINY_DIVE_OPTS, *TINY_INVERSION]
    if data == "coco_json":  # a user's COCO-format data, with the model's classes matched by name
        write_split(BENCHMARK_SPLITS["dive_shapes_val"], str(tmp_path / "images"), str(tmp_path / "ann.json"),
                    num_images=3)
        opts += ["DATASETS.COCO_TEST.JSON", str(tmp_path / "ann.json"), "DATASETS.COCO_TEST.IMAGES",
                 str(tmp_path / "images")]
    train_net = load_tool("train_net")
    results = train_net.main(train_net.default_argument_parser().parse_args(
        ["--config-file", config, *opts, "OUTPUT_DIR", str(tmp_path / "out")]))
    assert {"AP", "AP50", "AP75"} <= set(results["bbox"])
    assert results["inversion"]["images"] == 2 and 1 <= results["inversion"]["mean_stop_step"] <= 6
    (evaluated,) = [path.name for path in (tmp_path / "out" / "inference").iterdir()]  # one per dataset
    assert evaluated.startswith("coco_test_ann_" if data == "coco_json" else "dive_shapes_val"), evaluated


def test_replaying_the_history_gives_what_a_stopped_run_returns():
    model = tiny_model()
    latents = model.first_stage.encode(model.preprocess_images(
        [make_input(3, 64, 64, [], [], seed=s) for s in range(2)]))
    settings = dict(max_steps=16, num_pairs=4, pairs_per_step=2, monitor_pairs=2, monitor_period=2)
    with torch.enable_grad():
        long_run = LayoutInversion(patience=100, record_history=True, **settings)(model, latents, [0, 1])
        stopped = LayoutInversion(patience=2, **settings)(model, latents, [0, 1])
        short = LayoutInversion(patience=100, **(settings | {"max_steps": 6}))(model, latents, [0, 1])
    losses = torch.stack([check.loss for check in long_run.history])
    steps = [check.step for check in long_run.history]
    for run, patience, budget in ((stopped, 2, None), (short, None, 6)):
        best, stop = replay_checks(losses, steps, patience, budget)
        assert torch.equal(stop, run.stop_step)
        replayed = torch.stack([long_run.history[int(b)].tokens[i] for i, b in enumerate(best)])
        assert torch.equal(replayed, run.tokens.cpu())


def test_objective_gap_compares_found_and_true_layouts_on_the_same_pairs():
    from dive_d2.evaluation import objective_gap

    model = tiny_model()
    tokenizer = model.tokenizer
    latents = torch.randn(2, model.first_stage.channels, 8, 8)
    truth = tokenizer.encode(torch.tensor([[4.0, 4.0, 30.0, 30.0]]), torch.tensor([1]), 64, 64)
    empty = torch.full_like(truth, tokenizer.none_token)
    found_loss, true_loss = objective_gap(model, latents, torch.stack([truth, empty]), torch.stack([truth, truth]),
                                          num_pairs=4)
    assert found_loss.shape == true_loss.shape == (2,)
    assert found_loss[0] == true_loss[0], "the same layout on the same pairs must give the same loss"
    assert found_loss[1] != true_loss[1]


def test_polish_descends_to_the_layout_a_loss_prefers_and_stops_when_nothing_changes():
    tokenizer = LayoutTokenizer(num_classes=3, grid_size=9, num_slots=2)
    target = (2, 3, 3, 7, 7)

    def loss_of(candidates):
        calls.append(len(candidates))
        losses = []
        for candidate in candidates:
            layout = tokenizer.decode(candidate, 8, 8)
            first = [i for i, slot in enumerate(layout.slots.tolist()) if slot == 0]
            if not first:
                losses.append(100.0)
                continue
            box = layout.boxes[first[0]].tolist()
            losses.append(sum(abs(a - b) for a, b in zip(box, target[1:], strict=True))
                          + 5.0 * (int(layout.classes[first[0]]) != target[0]) + 3.0 * (len(layout.slots) - 1))
        return torch.tensor(losses)

    start = tokenizer.encode(torch.tensor([[1.0, 2.0, 4.0, 5.0], [0.0, 0.0, 2.0, 2.0]]), torch.tensor([0, 1]), 8, 8)
    calls = []
    unchanged, loss = polish_layout(start, loss_of, tokenizer, sweeps=0, shifts=(2, 1))
    assert torch.equal(unchanged, start) and loss == 16.0
    calls = []
    polished, loss = polish_layout(start, loss_of, tokenizer, sweeps=20, shifts=(2, 1))
    assert loss == 0.0
    assert torch.equal(polished, tokenizer.encode(torch.tensor([target[1:]]), torch.tensor([target[0]]), 8, 8))
    assert len(calls) < 1 + 20 * 2, "polishing must stop after a sweep that changes nothing"


def test_assembly_adds_the_objects_the_loss_wants_from_all_runs_and_stops():
    tokenizer = LayoutTokenizer(num_classes=3, grid_size=9, num_slots=3)

    def layout(*objects):
        boxes = torch.tensor([box for _, box in objects], dtype=torch.float32).reshape(-1, 4)
        return tokenizer.encode(boxes, torch.tensor([cls for cls, _ in objects], dtype=torch.int64), 8, 8)

    def triple(cls, box):
        return tuple(layout((cls, box))[:3].tolist())

    a, b, c, wrong = (0, [1.0, 1.0, 3.0, 3.0]), (1, [4.0, 4.0, 7.0, 6.0]), (2, [0.0, 5.0, 2.0, 8.0]), (0, [5, 0, 8, 2])
    # Three runs: each finds part of the truth {a, b, c}, two also a wrong object; one repeats a.
    runs = torch.stack([layout(a, wrong), layout(b, a), layout(wrong, c)])
    assert run_objects(runs, tokenizer) == [triple(*a), triple(*wrong), triple(*b), triple(*c)]
    truth = {triple(*a), triple(*b), triple(*c)}
    calls = []

    cost = {triple(*a): 3.0, triple(*b): 2.0, triple(*c): 1.0}

    def loss_of(layouts):  # each missing true object costs its cost, a wrong one 1.5
        calls.append(len(layouts))
        losses = []
        for candidate in layouts:
            held = {tuple(candidate[3 * s : 3 * s + 3].tolist()) for s in range(3)} - {(tokenizer.none_token,) * 3}
            missing = sum(cost[t] for t in truth - held)
            losses.append(missing + 1.5 * len(held - truth))
        return torch.tensor(losses)

    assembled, loss = assemble_layout(runs, loss_of, tokenizer)
    assert loss == 0.0 and calls == [1, 4, 3, 2], "empty layout, then one candidate per remaining object and slot"
    assert torch.equal(assembled, layout(a, b, c)), "objects fill the slots in the order they lower the loss"
    calls.clear()
    assembled, loss = assemble_layout(runs[:1], loss_of, tokenizer)  # a, then the wrong object would cost more
    assert torch.equal(assembled, layout(a)) and loss == 3.0 and calls == [1, 2, 1]
    empty = torch.full((2, tokenizer.sequence_length), tokenizer.none_token)
    assert torch.equal(assemble_layout(empty, loss_of, tokenizer)[0], empty[0]), "no objects: the empty layout"


def test_polished_inversion_returns_a_layout_no_worse_on_the_monitor():
    model = tiny_model("MODEL.DIVE.INVERSION.PARAMETERISATION", "box")
    latents = model.first_stage.encode(model.preprocess_images(
        [make_input(3, 64, 64, [], [], seed=s) for s in range(2)]))
    with torch.enable_grad():
        plain = model.inversion(model, latents, [0, 1])
        model.inversion.polish_sweeps = 2
        polished = model.inversion(model, latents, [0, 1])
    assert (polished.monitor_loss <= plain.monitor_loss * (1 + 1e-5)).all()
    assert (polished.monitor_loss < plain.monitor_loss).any(), "a random model's layout has moves that help"
    assert torch.equal(polished.run_tokens, plain.run_tokens), "the runs themselves are not polished"
    vocabulary = model.layout_encoder.vocabulary().detach()
    with torch.no_grad():
        again = model.inversion.posterior_loss(model, latents, vocabulary[polished.tokens],
                                               *model.inversion.monitor_pairs_for(model, latents))
    assert torch.allclose(again.cpu(), polished.monitor_loss, rtol=1e-4)
    with pytest.raises(ValueError, match="POLISH"):
        LayoutInversion(polish_sweeps=1, polish_shifts=(0,))


def test_slot_evidence_is_each_slots_loss_rise_and_zero_for_empty_slots():
    tokenizer = LayoutTokenizer(num_classes=2, grid_size=8, num_slots=3)
    layouts = tokenizer.encode(torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.9, 0.9]]), torch.tensor([0, 1]),
                               1, 1)[None].repeat(2, 1)
    layouts[1, 0:3] = tokenizer.none_token  # run 1: slot 0 empty, slot 1 an object, slot 2 empty
    weights = torch.tensor([1.0, -0.5, 2.0])
    calls = []

    def layout_loss(rows, candidates):
        calls.append(rows.clone())
        present = (candidates[:, 0::3] != tokenizer.none_token).float()
        return -(present * weights).sum(1) + rows.float()  # a per-run offset: evidence must cancel it

    from dive_d2.inversion.reseeding import slot_evidence
    evidence = slot_evidence(layouts, torch.arange(2), layout_loss, tokenizer.none_token, tokenizer.num_slots)
    assert evidence.tolist() == [[1.0, -0.5, 0.0], [0.0, -0.5, 0.0]]
    assert calls[0].tolist() == [0] * 4 + [1] * 4


def test_reseeding_restarts_only_the_weakest_slot_and_clears_its_optimiser_state():
    from dive_d2.inversion.reseeding import SlotReseeding
    model = tiny_model("MODEL.DIVE.INVERSION.PARAMETERISATION", "box")
    vocabulary = model.layout_encoder.vocabulary().detach()
    slots = model.tokenizer.num_slots
    classes = torch.zeros(2, slots, dtype=torch.int64)
    boxes = torch.tensor([0.2, 0.2, 0.6, 0.6]).repeat(2, slots, 1)
    layout = BoxSlots(model, classes, boxes)
    optimizer = torch.optim.Adam(layout.parameters, lr=0.1)
    (layout.class_logits.square().sum() + layout.box_logits.sin().sum()).backward()
    optimizer.step()
    weights = torch.tensor([[1.0, -0.5, 2.0, 0.3], [1.0, 0.5, 2.0, 0.3]])[:, :slots]  # run 1: every slot helps

    def layout_loss(rows, layouts):
        present = (layouts[:, 0::3] != model.tokenizer.none_token).float()
        return -(present * weights[rows]).sum(1)

    drawn = (torch.tensor(2), torch.tensor([0.1, 0.3, 0.4, 0.9]))
    requests = []

    def new_slot(run, steps_done):
        requests.append((run, steps_done))
        return drawn

    reseeding = SlotReseeding(layout, vocabulary, layout_loss, new_slot, period=2, max_steps=6)
    before = [p.detach().clone() for p in layout.parameters]
    moments = [optimizer.state[p]["exp_avg"].clone() for p in layout.parameters]
    reseeding(3, torch.tensor([True, True]), optimizer)  # not a reseeding step
    reseeding(6, torch.tensor([True, True]), optimizer)  # too late: a new slot would get no steps
    assert all(torch.equal(p, b) for p, b in zip(layout.parameters, before, strict=True)) and not requests
    reseeding(4, torch.tensor([True, True]), optimizer)
    assert requests == [(0, 4)], "only run 0 has a slot whose removal does not raise the loss"
    assert reseeding.reseeded.tolist() == [1, 0]
    expected = BoxSlots(model, torch.tensor([[2]]), drawn[1][None, None])
    changed = torch.zeros(2, slots, dtype=torch.bool)
    changed[0, 1] = True
    for parameter, old, moment, fresh in zip(layout.parameters, before, moments,
                                             [expected.class_logits, expected.box_logits], strict=True):
        assert torch.equal(parameter[0, 1], fresh[0, 0])
        assert torch.equal(parameter[~changed], old[~changed])
        assert (optimizer.state[parameter]["exp_avg"][0, 1] == 0).all()
        assert (optimizer.state[parameter]["exp_avg_sq"][0, 1] == 0).all()
        assert torch.equal(optimizer.state[parameter]["exp_avg"][~changed], moment[~changed])
    with pytest.raises(ValueError, match="RESEED_PERIOD"):
        LayoutInversion(reseed_period=10, parameterisation="embedding")


def test_reseeded_inversion_changes_the_search_and_keeps_images_independent_of_the_batch():
    opts = ("MODEL.DIVE.INVERSION.PARAMETERISATION", "box", "MODEL.DIVE.INVERSION.PATIENCE", "0")
    plain, reseeded = tiny_model(*opts), tiny_model(*opts, "MODEL.DIVE.INVERSION.RESEED_PERIOD", "2")
    latents = plain.first_stage.encode(plain.preprocess_images(
        [make_input(3, 64, 64, [], [], seed=s) for s in range(3)]))
    with torch.enable_grad():
        together = reseeded.inversion(reseeded, latents, [0, 1, 2])
        alone = [reseeded.inversion(reseeded, latents[i : i + 1], [i]) for i in range(3)]
        without = plain.inversion(plain, latents, [0, 1, 2])
    assert torch.equal(together.tokens, torch.cat([result.tokens for result in alone]))
    assert not torch.equal(together.tokens, without.tokens), "reseeding never changed a layout"


def test_error_map_starts_follow_the_map_and_spread_over_it():
    from dive_d2.inversion.error_map import box_mask, error_map_slots

    mask = box_mask(torch.tensor([[0.25, 0.25, 0.5, 0.75], [0.8, 0.8, 0.9, 0.9]]), 4, 4)
    assert mask.nonzero().tolist() == [[1, 1], [2, 1], [3, 3]]  # (row, column): cells whose centre is inside
    assert not box_mask(torch.zeros(0, 4), 4, 4).any()
    error_map = torch.zeros(16, 16)
    error_map[3, 12] = 1.0  # one object, top right
    error_map[12, 2] = 0.5  # another, bottom left
    classes, boxes = error_map_slots(torch.Generator().manual_seed(3), error_map, 4, num_classes=3)
    cells = ((boxes[:, :2] + boxes[:, 2:]) / 2 * 16).floor().long()  # (x, y) cell of each centre
    sides = boxes[:, 2:] - boxes[:, :2]
    assert classes.shape == (4,) and ((classes >= 0) & (classes < 3)).all()
    assert ((sides >= 0.1) & (sides <= 0.4)).all()
    # A slot's box (at least 1.6 cells wide) clears its cell, so the second slot starts on the other object.
    assert sorted(cells[:2].tolist()) == [[2, 12], [12, 3]]
    again = error_map_slots(torch.Generator().manual_seed(3), error_map, 4, num_classes=3)
    assert torch.equal(again[0], classes) and torch.equal(again[1], boxes)
    _, uniform = error_map_slots(torch.Generator().manual_seed(3), torch.zeros(16, 16), 4, num_classes=3)
    uniform_centres = (uniform[:, :2] + uniform[:, 2:]) / 2
    assert ((uniform_centres >= 0.1) & (uniform_centres <= 0.9)).all()


def test_empty_layout_error_map_averages_to_the_empty_layouts_denoising_error():
    from dive_d2.inversion.error_map import empty_layout_error_map

    model = tiny_model("MODEL.DIVE.INVERSION.PARAMETERISATION", "box", "MODEL.DIVE.INVERSION.INIT", "error_map")
    latents = model.first_stage.encode(model.preprocess_images(
        [make_input(3, 64, 64, [], [], seed=s) for s in range(2)]))
    timesteps, noise, _ = model.inversion.monitor_pairs_for(model, latents)
    with torch.no_grad():
        maps = empty_layout_error_map(model, latents, timesteps, noise)
        empty = torch.full((model.tokenizer.sequence_length,), model.tokenizer.none_token)
        vocabulary = model.layout_encoder.vocabulary()
        expected = torch.stack([
            model.image_denoising_error(image[None].expand(len(timesteps), -1, -1, -1),
                                        vocabulary[empty][None].expand(len(timesteps), -1, -1), timesteps,
                                        noise).mean() for image in latents])
    assert maps.shape == (2, *latents.shape[-2:])
    assert torch.allclose(maps.mean(dim=(1, 2)), expected, rtol=1e-5)
    assert not torch.allclose(maps[0], maps[1]), "each image has its own map"


def test_error_map_initialisation_starts_slots_on_the_map_and_needs_box_slots():
    model = tiny_model("MODEL.DIVE.INVERSION.PARAMETERISATION", "box", "MODEL.DIVE.INVERSION.INIT", "error_map")
    error_maps = torch.zeros(2, 8, 8)
    error_maps[0, 0, 0] = 1.0  # image 0: only the top-left cell
    error_maps[1, 7, 7] = 1.0  # image 1: only the bottom-right cell
    _, boxes = model.inversion.initial_slots(model, [5, 6], torch.device("cpu"), error_maps)
    first_centres = (boxes[:, 0, :2] + boxes[:, 0, 2:]) / 2
    assert (first_centres[0] <= 1 / 8).all() and (first_centres[1] >= 7 / 8).all()
    with pytest.raises(ValueError, match="one error map per start"):
        model.inversion.initial_slots(model, [5, 6, 7], torch.device("cpu"), error_maps)
    with pytest.raises(ValueError, match="error_map"):
        tiny_model("MODEL.DIVE.INVERSION.PARAMETERISATION", "embedding", "MODEL.DIVE.INVERSION.INIT", "error_map")
