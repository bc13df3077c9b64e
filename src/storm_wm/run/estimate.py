"""Before a run starts on a CPU: is this a GPU workload, and how long would it take here?

The paper's configuration takes about 35 s per training step on one thread of a 2-core CPU
(README, Performance): 40 days for a run. A user must hear that before waiting, not after. The
estimate counts the FLOPs of one update with PyTorch's FLOP counter, run on a batch of one with
the real training code (each phase's FLOPs grow linearly with its batch), times the updates
left (all of them, or those after a resumed run's step), and divides by the speed of this
CPU's matrix products: one thread's, measured so that it repeats on a busy machine, times the
threads the run uses. It is measured only when the run is big enough to matter.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time

import gymnasium
import numpy as np
import torch

from storm_wm.config import Config
from storm_wm.measure import count_flops
from storm_wm.models.agent import build_models
from storm_wm.replay import ReplayBuffer
from storm_wm.text import plural, rough_duration
from storm_wm.training.trainer import Trainer

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


MEASURE_SECONDS = 0.5
"""How long the speed measurement may take: as many short products as fit in it."""


def matmul_flops_per_second(size: int = 512, budget: float = MEASURE_SECONDS) -> float:
    """One thread's fp32 matrix-product speed: the best of as many short products as fit in
    `budget` seconds (at least three).

    One thread and the best of many short products, because that figure repeats: a product
    split over every core runs at the pace of the busiest core, so on a shared machine the
    all-core speed (best of three 1024 x 1024 products) put the same run at 25, 36, 52 and
    25 days across restarts minutes apart. A single thread gets a free core for a few
    milliseconds whenever any core has them, and the fastest of a hundred products is then the
    core's own speed.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        left, right = torch.randn(size, size), torch.randn(size, size)
        torch.mm(left, right)  # first call: allocations and kernel selection
        best, products = math.inf, 0
        started = time.perf_counter()
        while products < 3 or time.perf_counter() - started < budget:
            begin = time.perf_counter()
            torch.mm(left, right)
            best = min(best, time.perf_counter() - begin)
            products += 1
    finally:
        torch.set_num_threads(threads)
    return 2 * size**3 / best


def threads_in_use() -> int:
    """The threads a CPU run computes with (torch's setting: OMP_NUM_THREADS, or the cores)."""
    return torch.get_num_threads()


def updates_left(config: Config, done: int) -> int:
    """Updates from step `done` to the end: one every `train_every` steps after the warm-up."""
    train = config.train
    start = max(done, train.warmup_steps)
    return max(0, train.steps // train.train_every - start // train.train_every)


def announce_workload(
    config: Config, device: torch.device, env: gymnasium.Env, done: int = 0
) -> None:
    """On a CPU, says when the run is a GPU workload: the estimated duration of the steps left
    after step `done` (a resumed run), and the quick option."""
    if device.type != "cpu":
        return
    updates = updates_left(config, done)
    try:
        total = update_flops(config, int(env.action_space.n)) * updates
    except (RuntimeError, ValueError):  # an estimate must never be what stops a run
        return
    if total / GENEROUS_FLOPS < QUICK_SECONDS:
        return
    one_thread, threads = matmul_flops_per_second(), threads_in_use()
    speed = one_thread * threads * EFFICIENCY
    seconds = total / speed
    if seconds < QUICK_SECONDS:
        return
    left = f"{updates:,} updates left" if done else f"{updates:,} updates"
    print(
        f"storm-wm: this is a GPU workload: {left} of "
        f"{total / max(updates, 1) / 1e12:.2f} TFLOP, about {rough_duration(seconds)} on this CPU "
        f"when nothing else runs on it ({plural(threads, 'thread')} at "
        f"{one_thread / 1e9:.0f} GFLOP/s each, {EFFICIENCY:.0%} of it expected: "
        f"{seconds / max(updates, 1):.1f} s per update; acting not counted). On a CPU, try "
        "`--preset toy` (toy:catch, minutes) first; Ctrl-C stops with a checkpoint",
        file=sys.stderr,
    )
