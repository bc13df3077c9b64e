"""The training loop: act, store, update. Everything else a run does each step (logging,
checkpoints, the progress bar, stop signals, the non-finite watch, diagnostics) is a `Part`
that the caller composes around it (storm_wm.run.parts)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import gymnasium
import numpy as np
import torch

from storm_wm.acting import Policy
from storm_wm.config import Config, TrainConfig
from storm_wm.replay import ReplayBuffer
from storm_wm.training.trainer import Trainer


@dataclass
class LoopState:
    """Where the run is: counters and the episode in progress. All of it goes in a checkpoint."""

    step: int = 0
    episode: int = 0
    updates: int = 0
    episode_return: float = 0.0
    episode_length: int = 0
    frame: np.ndarray | None = None
    """The observation the next action is chosen on; None: the env must be reset first."""
    reset_seed: int | None = None
    """Seed of that reset: the run's seed at the start; a derived one for a restarted episode."""
    stopped_by: str | None = None
    """The signal that ended the run early, if one did (not saved)."""

    def state_dict(self) -> dict[str, Any]:
        state = {field.name: getattr(self, field.name) for field in fields(self)}
        del state["stopped_by"]
        state["frame"] = None if self.frame is None else torch.from_numpy(self.frame.copy())
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> LoopState:
        frame = None if state["frame"] is None else state["frame"].numpy()
        return cls(**{**state, "frame": frame})


class Part:
    """Something a run does beside the loop's steps. The loop calls each hook at its point of
    every step, on the parts in their order; a hook left out does nothing."""

    def episode_ended(self, state: LoopState) -> None:
        """After the last step of an episode, before the env is reset."""

    def updated(self, metrics: dict[str, torch.Tensor]) -> None:
        """After each update, with its metrics (detached tensors on the training device)."""

    def step_done(self, state: LoopState, warming_up: bool) -> None:
        """After each step; may end the run early (`state.stopped_by`) or raise."""

    def close(self) -> None:
        """When the loop ends, however it ends."""


def train_loop(
    config: Config,
    env: gymnasium.Env,
    replay: ReplayBuffer,
    trainer: Trainer,
    policy: Policy,
    rng: np.random.Generator,
    parts: Sequence[Part] = (),
    state: LoopState | None = None,
) -> LoopState:
    """Runs until `config.train.steps` env steps: random actions while the replay holds fewer
    than `warmup_steps`, then one update every `train_every` steps (of the world model alone
    before `agent_start`). Starting from `state` (a resumed run) continues its episode in
    progress; a part may end the run early."""
    schedule = config.train
    state = state or LoopState(reset_seed=config.seed)
    if state.frame is None:
        state.frame = _start_episode(env, policy, schedule, state.reset_seed)
    try:
        while state.step < schedule.steps and not state.stopped_by:
            warming_up = len(replay) < schedule.warmup_steps
            action = int(policy.act(state.frame[None], random=warming_up)[0])
            frame, reward, terminated, truncated, info = env.step(action)
            end = bool(terminated or info.get("life_loss", False))  # life loss: replay flag only
            replay.add(state.frame, action, float(reward), end)
            state.step, state.episode_length = state.step + 1, state.episode_length + 1
            state.episode_return += float(reward)
            if terminated or truncated:
                for part in parts:
                    part.episode_ended(state)
                state.episode += 1
                state.episode_return, state.episode_length = 0.0, 0
                # None continues the env's seeded generators; the run's seed replays the same start.
                seed = config.seed if schedule.repeat_reset_seed else None
                frame = _start_episode(env, policy, schedule, seed)
            state.frame = frame
            if not warming_up and state.step % schedule.train_every == 0:
                agent = state.step >= schedule.agent_start
                metrics = trainer.train_step(replay, rng, state.step, agent=agent)
                state.updates += 1
                for part in parts:
                    part.updated(metrics)
            for part in parts:
                part.step_done(state, warming_up)
    finally:
        for part in parts:
            part.close()
    return state


def _start_episode(env, policy: Policy, schedule: TrainConfig, seed: int | None) -> np.ndarray:
    if schedule.clear_context_on_episode_end:
        policy.reset(0)
    frame, _ = env.reset(seed=seed)
    return frame
