"""The training loop: act, store, update, log, checkpoint. It receives built objects."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium
import numpy as np
from tqdm import tqdm

from storm_wm.acting import Policy
from storm_wm.config import Config
from storm_wm.replay import ReplayBuffer
from storm_wm.training.logger import Logger, MetricAccumulator
from storm_wm.training.trainer import Trainer


@dataclass
class LoopState:
    step: int = 0
    episode: int = 0
    updates: int = 0


def train_loop(
    config: Config,
    env: gymnasium.Env,
    replay: ReplayBuffer,
    trainer: Trainer,
    policy: Policy,
    logger: Logger,
    rng: np.random.Generator,
    save: Callable[[LoopState], None],
    state: LoopState | None = None,
    show_progress: bool = True,
) -> LoopState:
    """Runs until `config.train.steps` environment steps; one update every `train_every` steps."""
    schedule = config.train
    state = state or LoopState()
    accumulator = MetricAccumulator()
    # Only the first reset is seeded: the environment's own generator carries on from there.
    frame, _ = env.reset(seed=config.seed)
    episode_return, episode_length = 0.0, 0
    started, started_step = time.perf_counter(), state.step
    progress = tqdm(
        total=schedule.steps, initial=state.step, unit="step", dynamic_ncols=True,
        disable=not show_progress, desc=config.env.game,
    )  # fmt: skip
    while state.step < schedule.steps:
        warming_up = len(replay) < schedule.warmup_steps
        action = int(policy.act(frame[None], random=warming_up)[0])
        next_frame, reward, terminated, truncated, info = env.step(action)
        replay.add(frame, action, float(reward), bool(terminated or info.get("life_loss", False)))
        state.step += 1
        episode_return += float(reward)
        episode_length += 1
        if terminated or truncated:
            logger.log(
                state.step,
                {"env/episode_return": episode_return, "env/episode_length": episode_length},
            )
            progress.set_postfix(episode_return=f"{episode_return:g}", refresh=False)
            state.episode += 1
            policy.reset(0)
            frame, _ = env.reset()
            episode_return, episode_length = 0.0, 0
        else:
            frame = next_frame

        if not warming_up and state.step % schedule.train_every == 0:
            accumulator.add(trainer.train_step(replay, rng))
            state.updates += 1
        if state.step % schedule.log_every == 0:
            metrics = accumulator.flush()
            if metrics:
                metrics["train/updates"] = state.updates
                elapsed = time.perf_counter() - started
                metrics["train/steps_per_second"] = (state.step - started_step) / elapsed
                logger.log(state.step, metrics)
        if state.step % schedule.checkpoint_every == 0 or state.step == schedule.steps:
            save(state)
        progress.update(1)
    progress.close()
    return state
