"""Symlog two-hot regression (DreamerV3, used by STORM for rewards and values)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x) * ln(1 + |x|): compresses large magnitudes, identity-like near 0."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: torch.Tensor) -> torch.Tensor:
    """The inverse of `symlog`: sign(x) * (exp(|x|) - 1)."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


class TwoHot(nn.Module):
    """Encodes scalars as two-hot vectors over bins evenly spaced in symlog space.

    A target x falls between two neighbouring bins of symlog(x); each gets the weight of
    linear interpolation, so `weights . bins == symlog(x)` exactly inside the range.
    """

    bins: torch.Tensor

    def __init__(self, num_bins: int = 255, low: float = -20.0, high: float = 20.0) -> None:
        super().__init__()
        bins = torch.linspace(low, high, num_bins, dtype=torch.float64)
        if low == -high:
            # linspace is not exactly symmetric in floating point; forcing it makes 0 a bin
            # exactly, so a reward or value of 0 is encoded (and decoded) without error.
            bins = (bins - bins.flip(0)) / 2
        self.register_buffer("bins", bins.float(), persistent=False)

    @property
    def num_bins(self) -> int:
        return self.bins.numel()

    def encode(self, value: torch.Tensor) -> torch.Tensor:
        """(...,) scalars -> (..., num_bins) two-hot weights."""
        position = symlog(value.float()).clamp(self.bins[0], self.bins[-1])
        # Index of the bin at or below the target; the upper neighbour takes the remainder.
        below = torch.bucketize(position, self.bins, right=True).sub(1).clamp(0, self.num_bins - 2)
        lower_edge = self.bins[below]
        upper_edge = self.bins[below + 1]
        upper_weight = (position - lower_edge) / (upper_edge - lower_edge)
        weights = torch.zeros(*value.shape, self.num_bins, device=value.device)
        weights.scatter_(-1, below.unsqueeze(-1), (1 - upper_weight).unsqueeze(-1))
        weights.scatter_add_(-1, (below + 1).unsqueeze(-1), upper_weight.unsqueeze(-1))
        return weights

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """(..., num_bins) logits -> (...,) expected value, mapped back with symexp."""
        return symexp(F.softmax(logits.float(), dim=-1) @ self.bins)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy against the two-hot encoding of `target`, per element (...,)."""
        log_probs = F.log_softmax(logits.float(), dim=-1)
        return -(self.encode(target) * log_probs).sum(-1)
