"""Percentile return normalization (DreamerV3's scheme, as STORM uses it)."""

from __future__ import annotations

import torch
from torch import nn


def batch_percentiles(
    values: torch.Tensor,
    quantiles: tuple[float, float] | torch.Tensor,
    mode: str = "interpolate",
) -> torch.Tensor:
    """The two `quantiles` (fractions in [0, 1]) of all of `values`, as a (2,) float tensor.

    `interpolate` is torch.quantile: linear interpolation between the order statistics around
    q * (n - 1). `kthvalue` is the authors' code, `torch.kthvalue(x, int(q * n)).values`: the
    k-th smallest value (1-indexed), k = int(q * n), no interpolation. For fewer than 1 / q
    values their k is 0, which kthvalue rejects; here k is raised to 1 (the smallest value).
    The k-th smallest is read from one sort, which every device runs.
    """
    flat = values.detach().float().flatten()
    if mode == "interpolate":
        return torch.quantile(flat, torch.as_tensor(quantiles, device=flat.device))
    if mode == "kthvalue":
        count = flat.numel()
        indices = [max(1, int(quantile * count)) - 1 for quantile in quantiles]
        return torch.sort(flat).values[indices]
    raise ValueError(f"percentile mode must be interpolate or kthvalue, got {mode!r}")


class ReturnNormalizer(nn.Module):
    """Tracks S = EMA(P_high(G)) - EMA(P_low(G)) and divides advantages by max(1, S).

    Dividing by at least 1 means small returns are never scaled up (sparse-reward games keep
    their exploration), while large returns are compressed to a fixed range. The EMAs start
    from 0, as in the authors' code, and live in buffers so they are checkpointed with the agent
    and never force a host synchronisation. `percentile` says how the batch percentiles are
    read (see `batch_percentiles`).
    """

    low: torch.Tensor
    high: torch.Tensor

    def __init__(
        self,
        decay: float = 0.99,
        low_percentile: float = 5.0,
        high_percentile: float = 95.0,
        percentile: str = "interpolate",
    ) -> None:
        super().__init__()
        if percentile not in ("interpolate", "kthvalue"):
            raise ValueError(f"percentile mode must be interpolate or kthvalue, got {percentile!r}")
        self.decay = decay
        self.quantiles = (low_percentile / 100.0, high_percentile / 100.0)
        self.percentile = percentile
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))
        # On the module's device, so an update copies nothing from the host (not saved).
        self.register_buffer("points", torch.tensor(self.quantiles), persistent=False)

    @torch.no_grad()
    def update(self, returns: torch.Tensor) -> None:
        # The interpolating quantile reads its points from a device buffer (no host copy); the
        # k-th-value rule needs them as Python numbers to pick k.
        points = self.points if self.percentile == "interpolate" else self.quantiles
        low, high = batch_percentiles(returns, points, self.percentile)
        self.low.lerp_(low, 1 - self.decay)
        self.high.lerp_(high, 1 - self.decay)

    def scale(self) -> torch.Tensor:
        """max(1, S): the divisor for advantages."""
        return torch.clamp(self.high - self.low, min=1.0)
