"""p(y): a diffusion model over layout embedding sequences.

A layout y becomes v(y), the (L, width) sequence of its tokens' rows in the *frozen* vocabulary table of
p(x|y), divided by that table's standard deviation so the signal has about unit scale against unit
Gaussian noise (see ``prior_input_scale``). ``LayoutPriorTransformer`` predicts the noise added to such
a sequence at timestep t (epsilon prediction): a transformer encoder over the sequence with a learned
position embedding, conditioned on a sinusoidal timestep embedding added to every position.

Two parameterisations of its output (config ``parameterisation``):
- ``"epsilon"``: the transformer predicts the noise directly (the paper's choice).
- ``"token_posterior"``: the transformer predicts, per position, logits over the allowed vocabulary rows; the
  clean estimate is the softmax-weighted mean of those rows and the noise follows from it (the
  score-interpolation idea of CDCD, Dieleman et al. 2022). The logits start from the exact posterior of a
  denoiser that treats every position alone, -||x_t - sqrt(a_t) e_k||^2 / (2 (1 - a_t)), and the transformer
  adds a correction, so it only has to learn how the tokens of a layout relate. The epsilon-parameterised
  shapes prior shipped through session 38 has a larger epsilon error than that per-position posterior at
  t <= 300 (0.026 against 0.017 at t 300, 0.026 against 0.0025 at t 50; tools/prior_recovery.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

from .denoising import noise_for_clean


def prior_input_scale(vocabulary: torch.Tensor) -> torch.Tensor:
    """The scalar the prior divides layout embeddings by: the standard deviation of the (frozen) table.

    Args:
        vocabulary: (V, width) the table of p(x|y)'s layout encoder.
    """
    return vocabulary.detach().std()


def rounding_loss(
    clean_estimate: torch.Tensor, vocabulary: torch.Tensor, allowed: torch.Tensor, tokens: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of the true tokens given the prior's clean estimate (Diffusion-LM's rounding term,
    Li et al. 2022), with p(token k | x0) proportional to exp(-||x0 - e_k||^2 / 2) over the tokens allowed at
    each position.

    The epsilon loss weighs every embedding dimension alike, and neighbouring corner rows of the table lie
    about one unit apart in 64 dimensions, so a prior can fit it well while its clean estimates snap to the
    wrong corner; this term is large exactly when they do.

    Args:
        clean_estimate: (B, L, width) estimated clean sequence, in the prior's normalised units.
        vocabulary: (V, width) the table in the same units (divided by ``prior_input_scale``).
        allowed: (L, V) bool, ``LayoutTokenizer.allowed_tokens()``.
        tokens: (B, L) int64 true tokens.

    Returns:
        (B,) mean cross-entropy over each layout's positions, in nats.
    """
    # The squared distance written out: differentiable where an estimate sits exactly on a row.
    squared_distance = ((clean_estimate**2).sum(-1, keepdim=True) - 2 * clean_estimate @ vocabulary.T
                        + (vocabulary**2).sum(-1))
    logits = -0.5 * squared_distance
    logits = logits.masked_fill(~allowed.to(logits.device)[None], float("-inf"))
    return F.cross_entropy(logits.flatten(0, 1), tokens.flatten(), reduction="none").view(tokens.shape).mean(1)


PARAMETERISATIONS = ("epsilon", "token_posterior")


def independent_posterior_logits(noisy: torch.Tensor, vocabulary: torch.Tensor, allowed: torch.Tensor,
                                 alpha_bar: torch.Tensor) -> torch.Tensor:
    """Log-posterior (up to a constant per position) of each allowed token given x_t alone, with every
    allowed token equally likely a priori: -||x_t - sqrt(a_t) e_k||^2 / (2 (1 - a_t)).

    Args:
        noisy: (B, L, width) x_t, in the prior's normalised units.
        vocabulary: (V, width) the table in the same units.
        allowed: (L, V) bool, the tokens each position may hold.
        alpha_bar: (B,) a_t of each sample's timestep.

    Returns:
        (B, L, V) float32 logits, -inf where a token is not allowed. Float32 whatever the input dtype: at small
        t the scale 1 / (1 - a_t) overflows half precision.
    """
    noisy, vocabulary, alpha_bar = noisy.float(), vocabulary.float(), alpha_bar.float()[:, None, None]
    squared_distance = ((noisy**2).sum(-1, keepdim=True) - 2 * alpha_bar.sqrt() * noisy @ vocabulary.T
                        + alpha_bar * (vocabulary**2).sum(-1))
    logits = -squared_distance / (2 * (1 - alpha_bar))
    return logits.masked_fill(~allowed.to(logits.device)[None], float("-inf"))


def noise_from_token_logits(noisy: torch.Tensor, logits: torch.Tensor, vocabulary: torch.Tensor,
                            alpha_bar: torch.Tensor) -> torch.Tensor:
    """The noise (B, L, width) that (B, L, V) token logits imply for x_t (B, L, width): their clean estimate is the
    softmax-weighted mean of the (V, width) vocabulary rows; ``alpha_bar`` (B,) is each sample's a_t."""
    clean = (logits.softmax(-1) @ vocabulary.float()).to(noisy.dtype)
    return noise_for_clean(noisy, clean, alpha_bar[:, None, None].to(noisy.dtype))


class LayoutPriorTransformer(ModelMixin, ConfigMixin):
    """Noise predictor of the layout prior: (B, L, embedding_width) noisy sequence, (B,) timesteps ->
    (B, L, embedding_width) predicted noise.

    With ``parameterisation="token_posterior"`` every call also needs the normalised ``vocabulary`` (V,
    embedding_width), the ``allowed`` (L, V) mask and each sample's ``alpha_bar`` (B,); the meta-architecture's
    ``predict_prior_noise`` passes them, so callers use that rather than this module directly.
    """

    @register_to_config
    def __init__(
        self,
        sequence_length: int = 12,
        embedding_width: int = 64,
        width: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        parameterisation: str = "epsilon",
    ):
        super().__init__()
        if parameterisation not in PARAMETERISATIONS:
            raise ValueError(f"LayoutPriorTransformer: parameterisation must be one of {PARAMETERISATIONS}, "
                             f"got {parameterisation!r}")
        # The token-posterior model also sees the per-position posterior mean, its best guess before attention.
        inputs = 2 * embedding_width if parameterisation == "token_posterior" else embedding_width
        self.input_projection = nn.Linear(inputs, width)
        self.position_embedding = nn.Parameter(torch.randn(sequence_length, width) * 0.02)
        self.time_features = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(width, width)
        layer = nn.TransformerEncoderLayer(width, num_heads, dim_feedforward=4 * width, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.output = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, embedding_width))
        if parameterisation == "token_posterior":
            # A zero correction: training starts from the per-position posterior, not from random logits.
            nn.init.zeros_(self.output[1].weight)
            nn.init.zeros_(self.output[1].bias)

    def _hidden_output(self, inputs: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        time = self.time_embedding(self.time_features(timesteps).to(inputs.dtype))  # (B, width)
        hidden = self.input_projection(inputs) + self.position_embedding + time[:, None, :]
        return self.output(self.transformer(hidden))

    def token_logits(self, noisy_embeddings: torch.Tensor, timesteps: torch.Tensor, vocabulary: torch.Tensor,
                     allowed: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        """(B, L, V) float32 logits over the vocabulary of a ``token_posterior`` prior: the per-position
        posterior (``independent_posterior_logits``) plus the transformer's correction, the dot product of
        its output with each row (so neighbouring corner rows, which are close, get close corrections)."""
        if self.config.parameterisation != "token_posterior":
            raise ValueError("LayoutPriorTransformer.token_logits needs parameterisation='token_posterior', "
                             f"this prior has {self.config.parameterisation!r}")
        base = independent_posterior_logits(noisy_embeddings, vocabulary, allowed, alpha_bar)
        base_mean = base.softmax(-1).to(vocabulary.dtype) @ vocabulary
        inputs = torch.cat([noisy_embeddings, base_mean.to(noisy_embeddings.dtype)], dim=-1)
        correction = self._hidden_output(inputs, timesteps).float() @ vocabulary.float().T
        return base + correction

    def forward(self, noisy_embeddings: torch.Tensor, timesteps: torch.Tensor, vocabulary: torch.Tensor | None = None,
                allowed: torch.Tensor | None = None, alpha_bar: torch.Tensor | None = None) -> torch.Tensor:
        if self.config.parameterisation == "epsilon":
            return self._hidden_output(noisy_embeddings, timesteps)
        if vocabulary is None or allowed is None or alpha_bar is None:
            raise ValueError("a token_posterior prior needs vocabulary, allowed and alpha_bar; call it through "
                             "DIVE.predict_prior_noise")
        logits = self.token_logits(noisy_embeddings, timesteps, vocabulary, allowed, alpha_bar)
        return noise_from_token_logits(noisy_embeddings, logits, vocabulary, alpha_bar)
