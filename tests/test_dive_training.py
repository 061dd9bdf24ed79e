"""DIVE in training mode: finite losses on any input, learning, freezing switches, weight round trips, and
training through tools/train_net.py on COCO-format data with --resume."""

import json
import math
import os

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

from dive_d2 import add_dive_config
from dive_d2.layout import LayoutTokenizer, random_object_moves
from dive_d2.modeling.denoising import ranking_loss
from dive_d2.modeling.layout_prior import rounding_loss
from dive_d2.modeling.spatial_layout import layout_occupancy

from .helpers import REPO_ROOT, TINY_DIVE_OPTS, load_tool


def tiny_cfg(*opts):
    cfg = get_cfg()
    add_dive_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, "configs", "shapes", "dive_image.yaml"))
    cfg.merge_from_list([*TINY_DIVE_OPTS, "MODEL.DIVE.TRAIN_PRIOR", "True", *opts])
    return cfg


def make_input(channels, height, width, boxes, classes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    instances = Instances((height, width))
    instances.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    instances.gt_classes = torch.tensor(classes, dtype=torch.int64)
    image = torch.randint(0, 256, (channels, height, width), generator=generator, dtype=torch.uint8)
    return {"image": image, "height": height, "width": width, "instances": instances}


def detector_inputs() -> list[dict]:
    """Two unannotated images for the detector's eval path: a 64 x 64 one, and a 40 x 72 grey one whose detections
    are asked at 80 x 144 (another output size)."""
    return [make_input(3, 64, 64, [], [], seed=0) | {"image_id": 0},
            make_input(1, 40, 72, [], [], seed=5) | {"image_id": 5, "height": 80, "width": 144}]


def detections_with_and_without(model, inputs: list[dict], *steps: str) -> tuple[list, list, torch.Tensor]:
    """The detector's eval outputs on ``inputs`` with every step, and with the DIVE attributes named in ``steps``
    set to None (restored after), plus the images' latents (B, C, h, w) to finish the second outputs with."""
    with torch.no_grad():
        finished = model(inputs)
        kept = [getattr(model, step) for step in steps]
        for step in steps:
            setattr(model, step, None)
        try:
            without = model(inputs)
        finally:
            for step, module in zip(steps, kept, strict=True):
                setattr(model, step, module)
        latents = model.first_stage.encode(model.preprocess_images(inputs))
    return finished, without, latents


def mixed_batch():
    return [
        make_input(3, 64, 64, [[4, 4, 20, 30], [30, 30, 60, 50]], [0, 2]),
        make_input(1, 40, 72, [[10, 5, 30, 35]], [1], seed=1),  # grey, not square
        make_input(4, 50, 50, [], [], seed=2),  # RGBA, no objects
    ]


def test_training_forward_gives_finite_losses_for_any_input():
    torch.manual_seed(0)
    model = build_model(tiny_cfg())
    model.train()
    losses = model(mixed_batch())
    assert set(losses) == {"loss_image", "loss_prior"}
    for name, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), name
    sum(losses.values()).backward()
    assert model.unet.conv_in.weight.grad is not None and model.prior.input_projection.weight.grad is not None
    assert model.layout_encoder.class_rows.grad is not None


def test_rounding_term_trains_the_prior_only_and_favours_the_true_rows():
    model = build_model(tiny_cfg("MODEL.DIVE.TRAIN_IMAGE_MODEL", "False", "MODEL.DIVE.PRIOR.ROUNDING_WEIGHT", "0.5"))
    model.train()
    losses = model(mixed_batch())
    assert set(losses) == {"loss_prior", "loss_prior_rounding"}
    assert torch.isfinite(losses["loss_prior_rounding"]) and losses["loss_prior_rounding"] > 0
    losses["loss_prior_rounding"].backward()
    assert model.prior.input_projection.weight.grad.abs().sum() > 0

    vocabulary = model.layout_encoder.vocabulary().detach()
    allowed = model.tokenizer.allowed_tokens()
    tokens = model.layout_tokens(mixed_batch())
    on_truth = rounding_loss(vocabulary[tokens], vocabulary, allowed, tokens)
    shifted = tokens.clone()
    corners = ~model.tokenizer.class_positions()[None] & (tokens != model.tokenizer.none_token)
    shifted[corners] += 1  # each real corner moved to the next grid token
    on_neighbour = rounding_loss(vocabulary[shifted], vocabulary, allowed, tokens)
    assert (on_truth < on_neighbour)[:2].all(), "estimates on the true rows must cost less than on other rows"
    with pytest.raises(ValueError, match="ROUNDING_WEIGHT"):
        build_model(tiny_cfg("MODEL.DIVE.PRIOR.ROUNDING_WEIGHT", "-1"))


def test_bad_image_shape_is_a_clear_error():
    model = build_model(tiny_cfg())
    model.train()
    bad = make_input(3, 32, 32, [[1, 1, 9, 9]], [0])
    bad["image"] = bad["image"][None]
    with pytest.raises(ValueError, match=r"batched_inputs\[0\]\['image'\].*\(1, 3, 32, 32\)"):
        model([bad])


def test_freezing_switches():
    image_only = build_model(tiny_cfg("MODEL.DIVE.TRAIN_PRIOR", "False"))
    image_only.train()
    assert set(image_only(mixed_batch())) == {"loss_image"}
    assert not any(p.requires_grad for p in image_only.prior.parameters())

    prior_only = build_model(tiny_cfg("MODEL.DIVE.TRAIN_IMAGE_MODEL", "False"))
    prior_only.train()
    assert set(prior_only(mixed_batch())) == {"loss_prior"}
    assert not any(p.requires_grad for p in prior_only.unet.parameters())
    assert not any(p.requires_grad for p in prior_only.layout_encoder.parameters())


def train_steps(model, batch: list[dict], loss_name: str, steps: int) -> None:
    """``steps`` AdamW steps (lr 3e-3) of the trainable parameters on one training loss of ``batch``."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(steps):
        loss = model(batch)[loss_name]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def fixed_errors(model, batch):
    """Both denoising errors on fixed timesteps and noise (so that two calls are comparable)."""
    generator = torch.Generator().manual_seed(123)
    with torch.no_grad():
        tokens = model.layout_tokens(batch)
        latents = model.first_stage.encode(model.preprocess_images(batch))
        embeddings = model.layout_encoder.embed_tokens(tokens)
        timesteps = torch.tensor([50, 300, 700])
        image_noise = torch.randn(latents.shape, generator=generator)
        prior_noise = torch.randn(embeddings.shape, generator=generator)
        return (model.image_denoising_error(latents, embeddings, timesteps, image_noise).mean().item(),
                model.prior_denoising_error(embeddings, timesteps, prior_noise).mean().item())


def test_a_few_steps_lower_both_losses():
    torch.manual_seed(0)
    model = build_model(tiny_cfg())
    model.train()
    batch = mixed_batch()
    image_before, prior_before = fixed_errors(model, batch)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(40):
        loss = sum(model(batch).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    image_after, prior_after = fixed_errors(model, batch)
    assert image_after < 0.8 * image_before
    assert prior_after < 0.8 * prior_before


def test_layout_occupancy_covers_each_class_boxes_pixels():
    tokenizer = LayoutTokenizer(3, 65, 4)
    boxes = torch.tensor([[0.0, 0.0, 32.0, 16.0], [32.0, 32.0, 64.0, 64.0], [40.0, 0.0, 60.0, 20.0]])
    tokens = torch.stack([tokenizer.encode(boxes, torch.tensor([1, 2, 2]), 64, 64),
                          tokenizer.encode(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), 64, 64)])
    occupancy = layout_occupancy(tokenizer, tokens, 32, 32)  # half the 64 px frame per side
    assert occupancy.shape == (2, 3, 32, 32)
    expected = torch.zeros(3, 32, 32)
    expected[1, :8, :16] = 1
    expected[2, 16:, 16:] = 1
    expected[2, :10, 20:30] = 1
    assert torch.equal(occupancy[0], expected)
    assert occupancy[1].sum() == 0, "an empty layout covers nothing"


def test_occupancy_term_trains_the_layout_side_toward_the_boxes():
    torch.manual_seed(0)
    model = build_model(tiny_cfg("MODEL.DIVE.TRAIN_PRIOR", "False", "MODEL.DIVE.SPATIAL_MAP.OCCUPANCY_LOSS_WEIGHT",
                                 "1.0"))
    model.train()
    batch = mixed_batch()
    losses = model(batch)
    assert set(losses) == {"loss_image", "loss_image_occupancy"}
    losses["loss_image_occupancy"].backward()
    assert model.unet.conv_in.weight.grad is None, "the target trains the map and the layout encoder only"
    assert model.layout_encoder.coordinate_projection.weight.grad.abs().sum() > 0
    before = losses["loss_image_occupancy"].item()
    train_steps(model, batch, "loss_image_occupancy", 30)
    assert model(batch)["loss_image_occupancy"].item() < 0.5 * before
    with pytest.raises(ValueError, match="OCCUPANCY_LOSS_WEIGHT.*2 channels and 3 classes"):
        build_model(tiny_cfg("MODEL.DIVE.SPATIAL_MAP.OCCUPANCY_LOSS_WEIGHT", "1.0", "MODEL.DIVE.SPATIAL_MAP.CHANNELS",
                             "2"))


def test_checkpoint_and_diffusers_export_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_cfg())
    with torch.no_grad():  # move every part away from its initialisation
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    batch = mixed_batch()
    reference = fixed_errors(model, batch)

    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("model")
    torch.manual_seed(1)
    reloaded = build_model(tiny_cfg())
    assert fixed_errors(reloaded, batch) != reference
    DetectionCheckpointer(reloaded).load(str(tmp_path / "model.pth"))
    assert fixed_errors(reloaded, batch) == reference

    model.save_pretrained(str(tmp_path / "export"))
    from_diffusers = build_model(tiny_cfg("MODEL.DIVE.PRETRAINED_DIR", str(tmp_path / "export")))
    assert fixed_errors(from_diffusers, batch) == reference
    assert from_diffusers.scheduler.config.num_train_timesteps == 1000


def test_weights_that_do_not_fit_the_config_are_refused_for_inference(tmp_path):
    """DetectionCheckpointer alone would skip the map's output layer with a warning and detect with a random one;
    the inference loader names the file and the tensor. A file lacking a part (a pair packed without its prior)
    is refused as well; a file that fits loads."""
    from dive_d2.loading import load_model

    model = build_model(tiny_cfg("MODEL.DIVE.SPATIAL_MAP.CHANNELS", "4"))
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("four_channels")
    path = str(tmp_path / "four_channels.pth")
    assert not load_model(tiny_cfg("MODEL.DIVE.SPATIAL_MAP.CHANNELS", "4"), path).training
    with pytest.raises(ValueError, match=r"four_channels.pth.*spatial_map.output.weight is \(4, .*\) in the file"):
        load_model(tiny_cfg("MODEL.DIVE.SPATIAL_MAP.CHANNELS", "3"), path)
    without_prior = {key: value for key, value in model.state_dict().items() if not key.startswith("prior.")}
    torch.save({"model": without_prior}, tmp_path / "no_prior.pth")
    with pytest.raises(ValueError, match=r"no_prior.pth.*prior\..* is not in the file"):
        load_model(tiny_cfg("MODEL.DIVE.SPATIAL_MAP.CHANNELS", "4"), str(tmp_path / "no_prior.pth"))


def test_dropping_fine_corner_frequencies_keeps_the_coarse_corner_map(tmp_path):
    from dive_d2.modeling.layout_encoder import coarse_feature_columns, fourier_features

    points = torch.rand(7, 2)
    assert torch.equal(fourier_features(points, 6)[:, coarse_feature_columns(6, 4)], fourier_features(points, 4))
    torch.manual_seed(0)
    model = build_model(tiny_cfg("MODEL.DIVE.LAYOUT_ENCODER.NUM_FREQUENCIES", "6"))
    fine = torch.ones(2 + 4 * 6, dtype=torch.bool)
    fine[coarse_feature_columns(6, 4)] = False
    with torch.no_grad():  # with no weight on the two finest frequencies, dropping them changes nothing
        model.layout_encoder.coordinate_projection.weight[:, fine] = 0
    torch.save({"model": model.state_dict()}, tmp_path / "six.pth")
    tool = load_tool("drop_corner_frequencies")
    assert tool.main([str(tmp_path / "six.pth"), str(tmp_path / "four.pth"), "--keep", "4"]) == 0
    assert tool.main([str(tmp_path / "six.pth"), str(tmp_path / "bad.pth"), "--keep", "7"]) == 1
    narrowed = build_model(tiny_cfg("MODEL.DIVE.LAYOUT_ENCODER.NUM_FREQUENCIES", "4"))
    DetectionCheckpointer(narrowed).load(str(tmp_path / "four.pth"))
    assert torch.allclose(narrowed.layout_encoder.vocabulary(), model.layout_encoder.vocabulary(), atol=1e-6)
    assert torch.equal(narrowed.spatial_map.query.weight, model.spatial_map.query.weight)


def test_free_coordinate_rows_also_build_and_train():
    model = build_model(tiny_cfg("MODEL.DIVE.LAYOUT_ENCODER.COORDINATE_EMBEDDING", "free"))
    model.train()
    assert model.layout_encoder.vocabulary().shape == (model.tokenizer.vocab_size, 16)
    assert all(torch.isfinite(v) for v in model(mixed_batch()).values())


def test_sampling_is_seeded_and_returns_real_layouts():
    from dive_d2.sampling import generate_images, sample_layouts

    torch.manual_seed(0)
    model = build_model(tiny_cfg()).eval()
    tokens = sample_layouts(model, 3, torch.Generator().manual_seed(5), num_steps=4)
    again = sample_layouts(model, 3, torch.Generator().manual_seed(5), num_steps=4)
    assert tokens.shape == (3, model.tokenizer.sequence_length) and torch.equal(tokens, again)
    allowed = model.tokenizer.allowed_tokens()
    assert allowed[torch.arange(tokens.shape[1]), tokens].all()

    for kind in ("ddim", "ddpm"):
        images = generate_images(model, tokens, torch.Generator().manual_seed(7), num_steps=3, scheduler=kind)
        assert images.shape == (3, 3, 16, 16) and images.dtype == torch.uint8
        repeat = generate_images(model, tokens, torch.Generator().manual_seed(7), num_steps=3, scheduler=kind)
        assert torch.equal(images, repeat)

def test_clamped_prior_sampling_ends_on_allowed_vocabulary_rows():
    """With clamping (Diffusion-LM), DDIM's last step returns the snapped clean estimate itself."""
    from dive_d2.layout import nearest_allowed_tokens
    from dive_d2.sampling import sample_layout_embeddings

    torch.manual_seed(0)
    model = build_model(tiny_cfg()).eval()
    vocabulary = model.layout_encoder.vocabulary().detach()
    embeddings = sample_layout_embeddings(model, 3, torch.Generator().manual_seed(5), num_steps=4, clamp=True)
    snapped = vocabulary[nearest_allowed_tokens(embeddings, vocabulary, model.tokenizer.allowed_tokens())]
    assert torch.allclose(embeddings, snapped, atol=1e-5)
    unclamped = sample_layout_embeddings(model, 3, torch.Generator().manual_seed(5), num_steps=4)
    assert not torch.allclose(unclamped, embeddings)



def test_prior_token_recovery_tells_an_oracle_prior_from_snapping():
    """A prior that predicts the true noise recovers every token at every t; snapping the noisy input
    alone does not at high noise. The measurement must tell the two apart."""
    from dive_d2.evaluation import prior_token_recovery
    from dive_d2.modeling.layout_prior import prior_input_scale

    torch.manual_seed(0)
    model = build_model(tiny_cfg()).eval()
    tokenizer = model.tokenizer
    layouts = [tokenizer.encode(torch.tensor([[2.0, 3.0, 20.0, 30.0], [10.0, 10.0, 40.0, 50.0]]),
                                torch.tensor([0, 2]), 64, 64),
               tokenizer.encode(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), 64, 64)]
    tokens = torch.stack(layouts)
    vocabulary = model.layout_encoder.vocabulary().detach()
    clean = vocabulary[tokens] / prior_input_scale(vocabulary)
    alphas_cumprod = model.scheduler.alphas_cumprod

    def oracle(noisy, timesteps):
        alpha_bar = alphas_cumprod[timesteps].view(-1, 1, 1)
        return (noisy - alpha_bar.sqrt() * clean) / (1 - alpha_bar).sqrt()

    model.prior.forward = oracle  # the instance attribute shadows the trained forward
    rows = prior_token_recovery(model, tokens, [10, 500, 950], torch.Generator().manual_seed(0))
    assert [row["t"] for row in rows] == [10, 500, 950]
    assert all(min(row["prior_class"], row["prior_corner"], row["prior_object_corner"], row["prior_object_iou"])
               > 0.999 for row in rows)
    assert rows[-1]["snap_object_corner"] < 0.9 and rows[-1]["snap_object_iou"] < 0.9
    # The oracle's noise is exact; the per-position posterior is the best estimate that ignores the layout.
    assert all(row["prior_epsilon_error"] < 1e-6 for row in rows)
    assert all(row["posterior_epsilon_error"] > 1e-5 for row in rows[1:]), "at t >= 500 a position alone is unsure"
    assert rows[1]["posterior_epsilon_error"] < rows[1]["snap_epsilon_error"]


def test_object_iou_scores_near_misses_and_zeroes_lost_objects():
    from dive_d2.evaluation.prior_recovery import object_iou
    from dive_d2.layout import LayoutTokenizer

    tokenizer = LayoutTokenizer(num_classes=3, grid_size=11, num_slots=2)
    truth = tokenizer.encode(torch.tensor([[0.0, 0.0, 40.0, 40.0], [50.0, 50.0, 100.0, 100.0]]),
                             torch.tensor([0, 1]), 100, 100)
    near = tokenizer.encode(torch.tensor([[0.0, 0.0, 40.0, 50.0]]), torch.tensor([2]), 100, 100)  # slot 1 lost
    assert object_iou(tokenizer, truth[None], truth[None]) == pytest.approx(1.0)
    assert object_iou(tokenizer, near[None], truth[None]) == pytest.approx((0.8 + 0.0) / 2)


def test_prior_trains_from_layout_only_records():
    from detectron2.data import DatasetCatalog, DatasetMapper

    from dive_d2.data import LayoutOnlyMapper, build_train_mapper

    cfg = tiny_cfg("MODEL.DIVE.TRAIN_IMAGE_MODEL", "False")
    assert isinstance(build_train_mapper(cfg), LayoutOnlyMapper)
    assert not isinstance(build_train_mapper(tiny_cfg()), LayoutOnlyMapper)
    records = DatasetCatalog.get("dive_shapes_val")[:3]
    batch = [LayoutOnlyMapper()(r) for r in records]
    assert all("image" not in item for item in batch)
    model = build_model(cfg)
    model.train()
    assert torch.isfinite(model(batch)["loss_prior"])
    # The tokens equal those of the same records through Detectron2's mapper, images decoded.
    with_images = [DatasetMapper(tiny_cfg(), is_train=True)(r) for r in records]
    assert all("image" in item for item in with_images)
    assert torch.equal(model.layout_tokens(batch), model.layout_tokens(with_images))


def test_ranking_loss_is_a_relative_soft_hinge():
    true = torch.tensor([1.0, 1.0, 2.0], requires_grad=True)
    wrong = torch.tensor([2.0, 1.0, 1.0], requires_grad=True)
    per_pair = [float(ranking_loss(true[i : i + 1], wrong[i : i + 1], 0.05)) for i in range(3)]
    assert per_pair[0] < 1e-6, "a wrong layout far worse than the truth costs nothing"
    assert abs(per_pair[1] - 0.05 * math.log(2)) < 1e-6, "a tie costs tau log 2, tau = 0.05 x the true error"
    assert abs(per_pair[2] - 1.0) < 1e-3, "a wrong layout better than the truth costs the difference"
    ranking_loss(true, wrong, 0.05).backward()
    assert (true.grad >= 0).all() and (wrong.grad <= 0).all() and true.grad[2] > 0 and wrong.grad[2] < 0
    empty = ranking_loss(torch.zeros(0), torch.zeros(0), 0.05)
    assert empty.dim() == 0 and float(empty) == 0.0


def test_ranking_term_leaves_the_denoising_loss_and_trains_the_margin():
    opts = ("MODEL.DIVE.TRAIN_PRIOR", "False", "MODEL.DIVE.RANKING.SHIFTS", "(2, 6)")
    torch.manual_seed(0)
    plain = build_model(tiny_cfg(*opts))
    plain.train()
    plain_losses = plain(mixed_batch())
    torch.manual_seed(0)
    model = build_model(tiny_cfg(*opts, "MODEL.DIVE.RANKING.WEIGHT", "1.0"))
    model.train()
    losses = model(mixed_batch())
    assert set(losses) == {"loss_image", "loss_image_ranking"}
    assert torch.isfinite(losses["loss_image_ranking"]) and losses["loss_image_ranking"] > 0
    assert torch.allclose(losses["loss_image"], plain_losses["loss_image"], rtol=1e-5), \
        "the ranking term must not change the draws of the denoising loss"

    batch = mixed_batch()[:2]  # both with objects
    tokens = model.layout_tokens(batch)
    wrong, has_move = random_object_moves(tokens, model.tokenizer, (2, 6), torch.Generator().manual_seed(1))
    assert has_move.all()
    latents = model.first_stage.encode(model.preprocess_images(batch))
    generator = torch.Generator().manual_seed(2)
    timesteps = torch.tensor([100, 300, 500, 700]).repeat_interleave(2)
    noise = torch.randn((8, *latents.shape[1:]), generator=generator)

    def margin():
        with torch.no_grad():
            errors = [model.image_denoising_error(latents.repeat(4, 1, 1, 1),
                                                  model.layout_encoder.embed_tokens(layouts.repeat(4, 1)),
                                                  timesteps, noise) for layouts in (tokens, wrong)]
        return float((errors[1] - errors[0]).mean())

    before = margin()
    train_steps(model, batch, "loss_image_ranking", 30)
    assert margin() > before + 1e-4, "training the ranking term must raise wrong layouts' error above the truth's"
    with pytest.raises(ValueError, match="RANKING"):
        build_model(tiny_cfg("MODEL.DIVE.RANKING.TEMPERATURE", "0"))


def test_ranking_window_ranks_only_samples_with_timesteps_inside_it(monkeypatch):
    opts = ("MODEL.DIVE.TRAIN_PRIOR", "False", "MODEL.DIVE.RANKING.WEIGHT", "2.0",
            "MODEL.DIVE.RANKING.MIN_TIMESTEP", "200", "MODEL.DIVE.RANKING.MAX_TIMESTEP", "700")
    torch.manual_seed(0)
    model = build_model(tiny_cfg(*opts))
    batch = mixed_batch()[:2] * 2  # four images with objects
    tokens = model.layout_tokens(batch)
    latents = model.first_stage.encode(model.preprocess_images(batch))
    timesteps = torch.tensor([100, 300, 650, 900])
    monkeypatch.setattr(model, "_random_timesteps", lambda count: timesteps[:count])
    moves_state = model.ranking_generator.get_state()
    torch.manual_seed(5)
    losses = model.image_training_losses(latents, tokens)

    torch.manual_seed(5)
    noise = torch.randn_like(latents)
    wrong, has_move = random_object_moves(tokens, model.tokenizer, model.ranking_shifts,
                                          torch.Generator().set_state(moves_state))
    assert has_move.all()
    true_errors, wrong_errors = (model.image_denoising_error(latents, model.layout_encoder.embed_tokens(layouts),
                                                            timesteps, noise) for layouts in (tokens, wrong))
    inside = torch.tensor([1, 2])
    expected = 2.0 * ranking_loss(true_errors[inside], wrong_errors[inside], 0.05)
    assert torch.allclose(losses["loss_image"], true_errors.mean(), rtol=1e-5)
    assert torch.allclose(losses["loss_image_ranking"], expected, rtol=1e-4), \
        "only the samples with t in [200, 700) may be ranked"
    assert not torch.allclose(expected, 2.0 * ranking_loss(true_errors, wrong_errors, 0.05), rtol=1e-3)
    with pytest.raises(ValueError, match="RANKING window"):
        build_model(tiny_cfg("MODEL.DIVE.RANKING.MIN_TIMESTEP", "700", "MODEL.DIVE.RANKING.MAX_TIMESTEP", "200"))


def test_training_stats_reads_losses_and_the_ranking_ties_level(tmp_path):
    stats_tool = load_tool("training_stats")
    ranked, plain = tmp_path / "ranked", tmp_path / "plain"
    for run, weight in ((ranked, 10.0), (plain, 0.0)):
        run.mkdir()
        (run / "config.yaml").write_text(f"MODEL:\n  DIVE:\n    RANKING:\n      WEIGHT: {weight}\n"
                                         "      TEMPERATURE: 0.05\n")
    tie = 10.0 * 0.05 * math.log(2)
    (ranked / "metrics.json").write_text("\n".join(json.dumps(row) for row in [
        {"iteration": 19, "loss_image": 0.01, "loss_image_ranking": tie * 0.01, "total_loss": 0.02},
        {"iteration": 39, "loss_image": 0.02, "loss_image_ranking": 0.0, "total_loss": 0.02},
        {"iteration": 40, "eval": 1.0}]))
    (plain / "metrics.json").write_text(json.dumps({"iteration": 19, "total_loss": 0.004}))
    rows = stats_tool.read_metrics(ranked)
    weight, temperature = stats_tool.ranking_settings(ranked)
    assert (weight, temperature) == (10.0, 0.05)
    first = stats_tool.window_stats(rows, 0, 20, weight, temperature)
    assert abs(first["ranking/ties"] - 1.0) < 1e-9, "a logged term equal to WEIGHT tau log 2 is all ties"
    both = stats_tool.window_stats(rows, 0, 40, weight, temperature)
    assert abs(both["ranking/ties"] - 0.5) < 1e-9 and abs(both["loss_image"] - 0.015) < 1e-12
    only_total = stats_tool.window_stats(stats_tool.read_metrics(plain), 0, 20, *stats_tool.ranking_settings(plain))
    assert only_total == {"loss_image": 0.004}, "a single-loss run logs its loss_image as total_loss"
    with pytest.raises(ValueError, match=r"\[100, 200\)"):
        stats_tool.window_stats(rows, 100, 200, weight, temperature)


def test_train_net_trains_both_models_on_user_coco_data_and_resumes(tmp_path):
    from dive_d2.data import BENCHMARK_SPLITS
    from dive_d2.data.benchmarks import write_split

    data, output = tmp_path / "my_data", tmp_path / "out"
    write_split(BENCHMARK_SPLITS["dive_shapes_val"], str(data / "images"), str(data / "ann.json"), num_images=4)
    train_net = load_tool("train_net")

    def train(max_iter: int, *flags: str) -> list[dict]:
        train_net.main(train_net.default_argument_parser().parse_args([
            "--config-file", os.path.join(REPO_ROOT, "configs", "shapes", "dive_image.yaml"), *flags,
            *TINY_DIVE_OPTS, "MODEL.DIVE.TRAIN_PRIOR", "True", "SOLVER.MAX_ITER", str(max_iter),
            "SOLVER.IMS_PER_BATCH", "2", "SOLVER.CHECKPOINT_PERIOD", "2", "DATALOADER.NUM_WORKERS", "0",
            "DATASETS.COCO_TRAIN.JSON", str(data / "ann.json"), "DATASETS.COCO_TRAIN.IMAGES", str(data / "images"),
            "OUTPUT_DIR", str(output)]))
        with open(output / "metrics.json") as handle:
            return [json.loads(line) for line in handle]

    events = train(2)
    assert [event["iteration"] for event in events] == [1]
    assert all(math.isfinite(events[-1][key]) for key in ("loss_image", "loss_prior", "total_loss", "lr"))
    assert (output / "model_final.pth").is_file() and (output / "last_checkpoint").is_file()

    events = train(4, "--resume")  # continues from the last checkpoint: iterations 2-3 only
    assert [event["iteration"] for event in events] == [1, 3]
    assert "Starting training from iteration 2" in (output / "log.txt").read_text()
