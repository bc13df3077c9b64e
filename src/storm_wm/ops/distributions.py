"""Categorical latents: unimix, straight-through one-hot samples, KL with free bits."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def unimix_logits(logits: torch.Tensor, mix: float = 0.01) -> torch.Tensor:
    """log(0.99 softmax(logits) + 0.01 / K): keeps every class reachable, bounds the KL."""
    probs = F.softmax(logits.float(), dim=-1)
    if mix > 0:
        probs = (1 - mix) * probs + mix / logits.shape[-1]
    return torch.log(probs)


def sample_one_hot(
    logits: torch.Tensor, uniform: torch.Tensor, straight_through: bool = True
) -> torch.Tensor:
    """One-hot sample from categorical logits (..., K), with straight-through gradients.

    Sampling uses the Gumbel-max trick on the logits, which avoids a `torch.distributions`
    object per call; the result is `sample + probs - stop_gradient(probs)`, so the forward value
    is exactly one-hot and the backward pass is that of the probabilities.

    `uniform` holds the sampling noise, fp32 numbers in [0, 1) of the logits' shape: callers draw
    it up front, so that compiled code, given the same numbers, samples what eager code does.
    """
    gumbel = -torch.log(-torch.log(uniform.clamp(min=1e-20)))
    index = torch.argmax(logits.float() + gumbel, dim=-1)
    sample = F.one_hot(index, logits.shape[-1]).to(logits.dtype)
    if not straight_through:
        return sample
    probs = F.softmax(logits, dim=-1)
    # (probs - probs) is exactly 0 in the forward pass, so the sample stays exactly one-hot.
    return sample + (probs - probs.detach())


def categorical_kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) of categoricals given log-probabilities (..., K) -> (...,)."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of categoricals given logits (..., K) -> (...,)."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    return -(log_probs.exp() * log_probs).sum(-1)


def free_bits_kl(
    log_p: torch.Tensor, log_q: torch.Tensor, free_bits: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(max(free_bits, mean KL), mean KL): KL summed over the categoricals, averaged over the rest.

    Inputs are (..., num_categoricals, num_classes) log-probabilities. The clip is applied to the
    batch mean, as in the authors' code, not per element; below the clip the gradient is zero.
    """
    kl = categorical_kl(log_p, log_q).sum(-1).mean()
    return torch.clamp(kl, min=free_bits), kl
