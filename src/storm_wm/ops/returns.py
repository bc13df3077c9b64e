"""Lambda returns over an imagined trajectory."""

from __future__ import annotations

import torch


def lambda_returns(
    rewards: torch.Tensor,
    values: torch.Tensor,
    continues: torch.Tensor,
    gamma: float,
    lambda_: float,
    variant: str = "paper",
) -> torch.Tensor:
    """TD(lambda) returns G_0 .. G_{T-1} of a (B, T) trajectory with (B, T + 1) values.

    paper:    G_t = r_t + gamma c_t ((1 - lambda) V(s_{t+1}) + lambda G_{t+1}),  G_T = V(s_T)
    released: the STORM authors' code, which bootstraps from V(s_t) instead of V(s_{t+1}).
    """
    if variant not in ("paper", "released"):
        raise ValueError(f"unknown lambda-return variant {variant!r}; use 'paper' or 'released'")
    horizon = rewards.shape[1]
    bootstrap = values[:, 1:] if variant == "paper" else values[:, :-1]
    discounts = gamma * continues
    next_return = values[:, -1]
    returns = []
    for t in reversed(range(horizon)):
        next_return = rewards[:, t] + discounts[:, t] * (
            (1 - lambda_) * bootstrap[:, t] + lambda_ * next_return
        )
        returns.append(next_return)
    return torch.stack(returns[::-1], dim=1)
