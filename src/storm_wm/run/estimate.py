"""Before a run starts on a CPU: is this a GPU workload, and how long would it take here?

The paper's configuration takes about 35 s per training step on a 2-core CPU (README,
Performance): 40 days for a run. A user must hear that before waiting, not after. The estimate
counts the FLOPs of one update with PyTorch's FLOP counter, run on a batch of one with the
real training code (each phase's FLOPs grow linearly with its batch), and divides by the
speed of this CPU's matrix products, measured only when the run is big enough to matter.
"""

from __future__ import annotations

import dataclasses
import sys

import gymnasium
import numpy as np
import torch

from storm_wm.benchmark.flops import count_flops
from storm_wm.benchmark.timing import timed
from storm_wm.config import Config
from storm_wm.replay import ReplayBuffer
from storm_wm.training.trainer import Trainer, build_models

QUICK_SECONDS = 1800.0
"""Runs estimated below this (on a generous CPU) start without a word."""
GENEROUS_FLOPS = 1e12
"""FLOP/s of a fast many-core CPU: below QUICK_SECONDS at this speed, nothing is measured."""
EFFICIENCY = 0.58
"""Share of the matrix-product peak a training step reaches on a CPU (58 % measured for the
paper's step, README Performance)."""


def update_flops(config: Config, num_actions: int) -> int:
    """FLOPs of one training update (world-model update, imagination, agent update)."""
    small = dataclasses.replace(
        config,
        world_model=dataclasses.replace(config.world_model, batch_size=1),
        agent=dataclasses.replace(config.agent, imagination_batch=1),
    )
    with torch.random.fork_rng(devices=[]):  # the run's own random streams are not disturbed
        return _count_update(small, num_actions, config)


def _count_update(small: Config, num_actions: int, config: Config) -> int:
    device = torch.device("cpu")
    trainer = Trainer(build_models(small, num_actions, device), small, device, torch.float32)
    window = max(small.world_model.sequence_length, small.agent.context_length)
    size = small.env.image_size
    replay = ReplayBuffer(2 * window, (size, size, 3))
    rng = np.random.default_rng(0)
    for _ in range(2 * window):
        replay.add(np.zeros((size, size, 3), np.uint8), 0, 0.0, False)
    _, world_model = count_flops(lambda: trainer.update_world_model(replay, rng))
    rollout, imagination = count_flops(lambda: trainer.imagine(replay, rng))
    _, agent = count_flops(lambda: trainer.update_agent(rollout))
    return (
        world_model * config.world_model.batch_size
        + (imagination + agent) * config.agent.imagination_batch
    )


def matmul_flops_per_second(size: int = 1024, repeats: int = 3) -> float:
    """This CPU's fp32 matrix-product speed (best of a few products: a fraction of a second)."""
    left, right = torch.randn(size, size), torch.randn(size, size)
    torch.mm(left, right)
    best = min(timed(lambda: torch.mm(left, right), torch.device("cpu"))[1] for _ in range(repeats))
    return 2 * size**3 / best


def duration(seconds: float) -> str:
    for unit, length in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * length:
            return f"{seconds / length:.0f} {unit}"
    return f"{seconds:.0f} s"


def announce_workload(config: Config, device: torch.device, env: gymnasium.Env) -> None:
    """On a CPU, says when the run is a GPU workload: its estimated duration, the quick option."""
    if device.type != "cpu":
        return
    updates = max(0, config.train.steps - config.train.warmup_steps) // config.train.train_every
    try:
        total = update_flops(config, int(env.action_space.n)) * updates
    except (RuntimeError, ValueError):  # an estimate must never be what stops a run
        return
    if total / GENEROUS_FLOPS < QUICK_SECONDS:
        return
    speed = matmul_flops_per_second() * EFFICIENCY
    seconds = total / speed
    if seconds < QUICK_SECONDS:
        return
    print(
        f"storm-wm: this is a GPU workload: {updates} updates of "
        f"{total / max(updates, 1) / 1e12:.2f} TFLOP, about {duration(seconds)} on this CPU "
        f"({speed / 1e9:.0f} GFLOP/s expected, {seconds / max(updates, 1):.1f} s per update; "
        "acting not counted). On a CPU, try `--preset toy` (toy:catch, minutes) first; "
        "Ctrl-C stops with a checkpoint",
        file=sys.stderr,
    )
