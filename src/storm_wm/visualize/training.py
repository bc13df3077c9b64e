"""The training loop's one hook for watching the world model: k-step errors and dream videos."""

from __future__ import annotations

import numpy as np
import torch

from storm_wm.config import Config
from storm_wm.device import autocast, resolve_precision
from storm_wm.diagnostics import HORIZONS, open_loop_errors, open_loop_metrics
from storm_wm.logs.metrics import Logger
from storm_wm.models import WorldModel
from storm_wm.replay import ReplayBuffer
from storm_wm.visualize.compose import compose_dream
from storm_wm.visualize.dream import dream_rollout
from storm_wm.visualize.video import add_video

DIAGNOSTIC_WINDOWS = 64
"""Replay windows the k-step errors are averaged over."""

RECENT_STEPS = 5_000
"""Windows are drawn from the newest this many replay steps: the model's current data."""

VIDEO_LENGTH = 64
"""Steps in each logged video (the context, then open-loop imagination)."""

VIDEO_TAG = "world_model/dream"


def recent_windows(
    replay: ReplayBuffer, count: int, length: int, rng: np.random.Generator
) -> dict[str, torch.Tensor]:
    """`count` windows of `length` consecutive steps from the newest `RECENT_STEPS` of replay."""
    oldest = (replay.next_index - replay.size) % replay.capacity
    lowest = max(0, replay.size - max(RECENT_STEPS, length))
    starts = rng.integers(lowest, replay.size - length + 1, size=count)
    indices = (oldest + starts[:, None] + np.arange(length)[None, :]) % replay.capacity
    return {
        "frames": torch.from_numpy(replay.frames[indices]),
        "actions": torch.from_numpy(replay.actions[indices]),
        "rewards": torch.from_numpy(replay.rewards[indices]),
        "terminations": torch.from_numpy(replay.terminations[indices]),
    }


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


@torch.no_grad()
def log_world_model_diagnostics(
    logger: Logger, world_model: WorldModel, replay: ReplayBuffer, step: int, config: Config
) -> None:
    """Call after every environment step; works only every `train.diagnostics_every` steps
    (open-loop errors as open_loop/* scalars) and every `train.video_every` steps (a dream video
    under world_model/dream), once the replay holds enough steps.

    It draws windows with its own generators (seeded by the run's seed and the step), so
    training's random streams, and hence its results, are the same with or without it.
    """
    train, context = config.train, config.agent.context_length
    metrics_due = _due(step, train.diagnostics_every)
    video_due = _due(step, train.video_every) and len(replay) >= VIDEO_LENGTH
    window = context + max(HORIZONS)
    metrics_due = metrics_due and len(replay) >= window
    if not (metrics_due or video_due):
        return
    device = next(world_model.parameters()).device
    dtype = resolve_precision(config.precision, device)
    rng = np.random.default_rng([config.seed, step])
    was_training = world_model.training
    world_model.eval()
    forked = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked), autocast(device, dtype):
        torch.manual_seed(int(rng.integers(2**31)))
        if metrics_due:
            windows = recent_windows(replay, DIAGNOSTIC_WINDOWS, window, rng)
            metrics = open_loop_metrics(open_loop_errors(world_model, **windows, context=context))
            if metrics:
                logger.log(step, metrics)
        if video_due:
            steps = {
                name: tensor[0].numpy()
                for name, tensor in recent_windows(replay, 1, VIDEO_LENGTH, rng).items()
            }
            rollout = dream_rollout(world_model, **steps, context=context)
            add_video(logger.writer, VIDEO_TAG, compose_dream(rollout, scale=2), step, fps=8)
    world_model.train(was_training)
