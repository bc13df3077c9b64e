"""Percentile return normalization (DreamerV3's scheme, as STORM uses it)."""

from __future__ import annotations

import torch
from torch import nn


class ReturnNormalizer(nn.Module):
    """Tracks S = EMA(P_high(G)) - EMA(P_low(G)) and divides advantages by max(1, S).

    Dividing by at least 1 means small returns are never scaled up (sparse-reward games keep
    their exploration), while large returns are compressed to a fixed range. The EMAs start
    from 0, as in the authors' code, and live in buffers so they are checkpointed with the agent
    and never force a host synchronisation.
    """

    low: torch.Tensor
    high: torch.Tensor

    def __init__(
        self, decay: float = 0.99, low_percentile: float = 5.0, high_percentile: float = 95.0
    ) -> None:
        super().__init__()
        self.decay = decay
        self.quantiles = (low_percentile / 100.0, high_percentile / 100.0)
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))
        # On the module's device, so an update copies nothing from the host (not saved).
        self.register_buffer("points", torch.tensor(self.quantiles), persistent=False)

    @torch.no_grad()
    def update(self, returns: torch.Tensor) -> None:
        low, high = torch.quantile(returns.detach().float().flatten(), self.points)
        self.low.lerp_(low, 1 - self.decay)
        self.high.lerp_(high, 1 - self.decay)

    def scale(self) -> torch.Tensor:
        """max(1, S): the divisor for advantages."""
        return torch.clamp(self.high - self.low, min=1.0)
