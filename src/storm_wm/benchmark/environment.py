"""How fast the preset's real game steps, random actions, resets included."""

from __future__ import annotations

import time

import gymnasium
import numpy as np


def environment_step_seconds(
    env: gymnasium.Env, rng: np.random.Generator, seconds: float = 1.0, min_steps: int = 50
) -> float:
    """Mean seconds per `env.step` over about `seconds` of stepping (at least `min_steps`).

    Resets at episode ends are included, as training pays for them too.
    """
    env.reset()
    steps, start = 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(int(rng.integers(0, env.action_space.n)))
        steps += 1
        if terminated or truncated:
            env.reset()
    return (time.perf_counter() - start) / steps
