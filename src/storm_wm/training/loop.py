"""The training loop: act, store, update, log, checkpoint. It receives built objects."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
import psutil
import torch
from tqdm import tqdm

from storm_wm.acting import Policy
from storm_wm.config import Config
from storm_wm.errors import StormError
from storm_wm.hints import command
from storm_wm.logs.metrics import Logger, MetricAccumulator
from storm_wm.replay import ReplayBuffer
from storm_wm.training.progress import PhaseClock
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
        return {
            "step": self.step, "episode": self.episode, "updates": self.updates,
            "episode_return": self.episode_return, "episode_length": self.episode_length,
            "frame": None if self.frame is None else torch.from_numpy(self.frame.copy()),
            "reset_seed": self.reset_seed,
        }  # fmt: skip

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> LoopState:
        frame = state["frame"]
        return cls(
            step=int(state["step"]), episode=int(state["episode"]), updates=int(state["updates"]),
            episode_return=float(state["episode_return"]),
            episode_length=int(state["episode_length"]),
            frame=None if frame is None else frame.numpy(), reset_seed=state["reset_seed"],
        )  # fmt: skip


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
    *,
    accumulator: MetricAccumulator | None = None,
    stop_requested: Callable[[], str | None] = lambda: None,
    on_step: Callable[[int], None] = lambda step: None,
) -> LoopState:
    """Runs until `config.train.steps` environment steps; one update every `train_every` steps.

    Starting from `state` (a resumed run) continues its episode in progress. `save` is called
    every `checkpoint_every` steps, at the end, when `stop_requested()` names a signal (then the
    loop returns early with `state.stopped_by` set) and before stopping on non-finite losses
    (the trainer counts skipped updates on the device; they are read at log and checkpoint
    steps, where the loop waits for the device anyway).
    `on_step(step)` runs after every environment step (world-model diagnostics and videos).
    """
    schedule = config.train
    state = state or LoopState(reset_seed=config.seed)
    accumulator = accumulator if accumulator is not None else MetricAccumulator()
    if state.frame is None:
        state.frame, _ = env.reset(seed=state.reset_seed)
        if schedule.clear_context_on_episode_end:
            policy.reset(0)
    process = psutil.Process()
    started, started_step = time.perf_counter(), state.step
    # tqdm's own time left extrapolates the warm-up's speed: PhaseClock times each phase.
    progress = tqdm(
        total=schedule.steps, initial=state.step, unit="step", dynamic_ncols=True,
        disable=not show_progress, desc=config.env.game,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, {rate_fmt}{postfix}]",
    )  # fmt: skip
    clock, postfix = PhaseClock(), {}
    # Closed however the loop ends, before an error is printed: a message (a full disk) must
    # start on a line of its own, with no stale bar printed after it.
    try:
        while state.step < schedule.steps:
            frame = state.frame
            warming_up = len(replay) < schedule.warmup_steps
            action = int(policy.act(frame[None], random=warming_up)[0])
            next_frame, reward, terminated, truncated, info = env.step(action)
            replay.add(
                frame, action, float(reward), bool(terminated or info.get("life_loss", False))
            )
            state.step += 1
            state.episode_return += float(reward)
            state.episode_length += 1
            if terminated or truncated:
                logger.log(
                    state.step,
                    {"env/episode_return": state.episode_return,
                     "env/episode_length": state.episode_length},
                )  # fmt: skip
                postfix["episode_return"] = f"{state.episode_return:g}"
                state.episode += 1
                if schedule.clear_context_on_episode_end:
                    policy.reset(0)
                # None continues the env's seeded generators; the run's seed replays the same start.
                state.frame, _ = env.reset(seed=config.seed if schedule.repeat_reset_seed else None)
                state.episode_return, state.episode_length = 0.0, 0
            else:
                state.frame = next_frame

            if not warming_up and state.step % schedule.train_every == 0:
                accumulator.add(trainer.train_step(replay, rng, state.step))
                state.updates += 1
            logging = state.step % schedule.log_every == 0
            due = state.step % schedule.checkpoint_every == 0 or state.step == schedule.steps
            failure, skipped_updates = None, None
            if logging or due:  # steps that wait for the device anyway (a log flush, a checkpoint)
                failure, skipped_updates = _check_nonfinite(
                    trainer, schedule.max_nonfinite_updates, state.step
                )
            if logging:
                metrics = accumulator.flush()
                if metrics:
                    metrics["train/updates"] = state.updates
                    metrics["train/skipped_updates"] = skipped_updates
                    elapsed = time.perf_counter() - started
                    metrics["train/steps_per_second"] = (state.step - started_step) / elapsed
                    metrics["system/memory_mb"] = process.memory_info().rss / 2**20
                    logger.log(state.step, metrics)
            on_step(state.step)
            state.stopped_by = stop_requested()
            if failure:
                progress.close()
                if not _weights_are_finite(trainer):
                    raise StormError(
                        f"{failure}; the weights are no longer finite and were not saved: the "
                        "newest checkpoint holds the last good ones"
                    )
                save(state)
                raise StormError(
                    f"{failure}; the checkpoint of step {state.step} holds the last finite "
                    "weights. Check the game's rewards and the learning rates, then start a new "
                    "run (or "
                    f"evaluate this one with `{command('eval', 'RUN_DIR')}`)"
                )
            if due or state.stopped_by:
                save(state)
            if show_progress:
                clock.tick(warming_up)
                steps_left = schedule.steps - state.step
                warmup_left = min(max(0, schedule.warmup_steps - len(replay)), steps_left)
                left = clock.describe(warmup_left, steps_left - warmup_left)
                shown = [left, *(f"{name}={value}" for name, value in postfix.items())]
                progress.set_postfix_str(", ".join(shown), refresh=False)
            progress.update(1)
            if state.stopped_by:
                break
    finally:
        progress.close()
    return state


def _check_nonfinite(trainer: Trainer, limit: int, step: int) -> tuple[str | None, int]:
    """Reads the trainer's non-finite counters (kept on the device, so read only at log and
    checkpoint steps): warns once for each model whose newest streak of skipped updates began
    since the last read, naming the step it began at; returns the message to stop with when a
    streak reached `limit` (checked at the first read after it did), and the skipped total."""
    report = trainer.nonfinite.read()
    failure = None
    for model, longest in report.longest.items():
        began = report.streak_started[model]
        if began is not None:
            tqdm.write(
                f"storm-wm: warning: step {began}: non-finite {model.replace('_', '-')} loss or "
                "gradient; update skipped",
                file=sys.stderr,
            )
        if longest >= limit and failure is None:
            failure = (
                f"training stopped at step {step}: {longest} {model.replace('_', '-')} updates "
                "in a row had a non-finite loss or gradient (each was skipped; "
                f"train.max_nonfinite_updates is {limit})"
            )
    return failure, report.skipped_updates


def _weights_are_finite(trainer: Trainer) -> bool:
    modules = (trainer.models.world_model, trainer.models.actor_critic)
    return all(bool(torch.isfinite(p).all()) for module in modules for p in module.parameters())
