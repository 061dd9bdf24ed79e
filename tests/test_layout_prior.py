"""The layout prior's token-posterior parameterisation (dive_d2/modeling/layout_prior.py)."""

import pytest
import torch
from detectron2.modeling import build_model

from dive_d2.modeling.layout_prior import LayoutPriorTransformer, independent_posterior_logits, prior_input_scale
from dive_d2.sampling import sample_layouts

from .test_dive_training import fixed_errors, mixed_batch, tiny_cfg, train_steps

TOKEN_POSTERIOR = ("MODEL.DIVE.PRIOR.PARAMETERISATION", "token_posterior")


def test_independent_posterior_is_the_gaussian_posterior_over_allowed_rows():
    generator = torch.Generator().manual_seed(0)
    vocabulary = torch.randn(5, 3, generator=generator)
    allowed = torch.tensor([[True, True, False, False, True], [False, True, True, True, False]])
    noisy = torch.randn(2, 2, 3, generator=generator)
    alpha_bar = torch.tensor([0.9, 0.2])
    logits = independent_posterior_logits(noisy, vocabulary, allowed, alpha_bar)
    for b in range(2):
        for position in range(2):
            # x_t ~ N(sqrt(a_t) e_k, (1 - a_t) I) for each allowed row k, every allowed row equally likely.
            likelihood = torch.distributions.Normal(alpha_bar[b].sqrt() * vocabulary, (1 - alpha_bar[b]).sqrt())
            log_density = likelihood.log_prob(noisy[b, position]).sum(-1)
            expected = log_density.masked_fill(~allowed[position], float("-inf")).softmax(-1)
            assert torch.allclose(logits[b, position].softmax(-1), expected, atol=1e-5)
    assert not logits[:, 0, 2:4].isfinite().any()


def test_independent_posterior_is_float32_and_finite_for_half_inputs_at_the_first_timestep():
    vocabulary = torch.randn(6, 4).half()
    logits = independent_posterior_logits(torch.randn(1, 3, 4).half(), vocabulary, torch.ones(3, 6, dtype=torch.bool),
                                          torch.tensor([0.9999]))
    assert logits.dtype == torch.float32 and logits.isfinite().all()


def test_a_fresh_token_posterior_prior_denoises_each_position_alone():
    """With its zero-initialised correction, the prior's clean estimate is the per-position posterior mean:
    the true rows at low noise, and the noise it predicts is consistent with that estimate."""
    torch.manual_seed(0)
    model = build_model(tiny_cfg(*TOKEN_POSTERIOR)).eval()
    tokens = model.layout_tokens(mixed_batch())
    vocabulary = model.layout_encoder.vocabulary().detach()
    clean = vocabulary[tokens] / prior_input_scale(vocabulary)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    timesteps = torch.full((len(tokens),), 5)
    noisy = model.scheduler.add_noise(clean, noise, timesteps)
    with torch.no_grad():
        predicted = model.predict_prior_noise(noisy, timesteps)
    assert torch.allclose(predicted, noise, atol=1e-3), "at t = 5 each position alone names its token"

    at_end = torch.full((len(tokens),), 999)
    with torch.no_grad():
        epsilon_model = build_model(tiny_cfg()).eval()
        token_error = model.prior_denoising_error(vocabulary[tokens], at_end, noise)
        epsilon_error = epsilon_model.prior_denoising_error(epsilon_model.layout_encoder.vocabulary()[tokens], at_end,
                                                            noise)
    assert token_error.isfinite().all() and (token_error < 0.1).all() and (epsilon_error > 0.1).all(), (
        "at t = 999 the noise is nearly x_t itself: the posterior mean gets that for free, a random network not")


def fixed_token_cross_entropy(model, batch) -> float:
    """Cross-entropy of the true tokens under the prior's logits at fixed high-noise timesteps and noise."""
    tokens = model.layout_tokens(batch)
    vocabulary = model.layout_encoder.vocabulary().detach()
    vocabulary = vocabulary / prior_input_scale(vocabulary)
    timesteps = torch.tensor([500, 700, 900])
    alpha_bar = model.scheduler.alphas_cumprod[timesteps]
    noisy = model.scheduler.add_noise(vocabulary[tokens], torch.randn(vocabulary[tokens].shape,
                                      generator=torch.Generator().manual_seed(3)), timesteps)
    with torch.no_grad():
        logits = model.prior.token_logits(noisy, timesteps, vocabulary, model.tokenizer.allowed_tokens(), alpha_bar)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens.flatten()).item()


def test_token_posterior_prior_trains_on_its_cross_entropy_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(*TOKEN_POSTERIOR, "MODEL.DIVE.TRAIN_IMAGE_MODEL", "False",
                                 "MODEL.DIVE.PRIOR.TOKEN_LOSS_WEIGHT", "1.0"))
    model.train()
    batch = mixed_batch()
    losses = model(batch)
    assert set(losses) == {"loss_prior", "loss_prior_tokens"}
    assert all(value.isfinite() and value > 0 for value in losses.values())
    _, error_before = fixed_errors(model, batch)
    cross_entropy_before = fixed_token_cross_entropy(model, batch)
    train_steps(model, batch, "loss_prior_tokens", 30)
    assert fixed_token_cross_entropy(model, batch) < 0.8 * cross_entropy_before
    _, error_after = fixed_errors(model, batch)
    assert error_after != error_before

    model.prior.save_pretrained(str(tmp_path / "prior"))
    reloaded = LayoutPriorTransformer.from_pretrained(str(tmp_path / "prior"))
    assert reloaded.config.parameterisation == "token_posterior"
    model.prior = reloaded
    assert fixed_errors(model, batch)[1] == pytest.approx(error_after, rel=1e-6)


def test_token_posterior_prior_samples_real_layouts_with_a_seed():
    torch.manual_seed(0)
    model = build_model(tiny_cfg(*TOKEN_POSTERIOR)).eval()
    tokens = sample_layouts(model, 3, torch.Generator().manual_seed(5), num_steps=4)
    assert torch.equal(tokens, sample_layouts(model, 3, torch.Generator().manual_seed(5), num_steps=4))
    assert model.tokenizer.allowed_tokens()[torch.arange(tokens.shape[1]), tokens].all()


def test_bad_prior_settings_are_clear_errors():
    with pytest.raises(ValueError, match="parameterisation"):
        build_model(tiny_cfg("MODEL.DIVE.PRIOR.PARAMETERISATION", "x0"))
    with pytest.raises(ValueError, match="TOKEN_LOSS_WEIGHT"):
        build_model(tiny_cfg("MODEL.DIVE.PRIOR.TOKEN_LOSS_WEIGHT", "1.0"))
    model = build_model(tiny_cfg(*TOKEN_POSTERIOR))
    with pytest.raises(ValueError, match="predict_prior_noise"):
        model.prior(torch.zeros(1, model.tokenizer.sequence_length, 16), torch.zeros(1, dtype=torch.int64))


def test_a_new_prior_starts_from_a_checkpoint_packed_without_the_old_one(tmp_path):
    """The recipe for retraining the prior on a shipped p(x|y): pack the file with ``--drop prior.``, then the
    token-posterior prior keeps its zero correction while p(x|y) loads."""
    from detectron2.checkpoint import DetectionCheckpointer

    from .helpers import load_tool

    torch.manual_seed(0)
    old = build_model(tiny_cfg())
    with torch.no_grad():
        for parameter in old.parameters():
            parameter.add_(0.01)
    torch.save({"model": old.state_dict()}, tmp_path / "pair.pth")
    pack = load_tool("pack_weights")
    assert pack.main([str(tmp_path / "pair.pth"), str(tmp_path / "bad.pth"), "--drop", "no_such_part."]) == 1
    assert pack.main([str(tmp_path / "pair.pth"), str(tmp_path / "image_model.pth"), "--drop", "prior."]) == 0
    new = build_model(tiny_cfg(*TOKEN_POSTERIOR))
    DetectionCheckpointer(new).load(str(tmp_path / "image_model.pth"))
    assert torch.allclose(new.unet.conv_in.weight, old.unet.conv_in.weight, atol=1e-3)  # float16 packing
    assert new.prior.output[1].weight.abs().sum() == 0
