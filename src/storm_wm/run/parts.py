"""What a training run does beside the loop's steps, one part each (storm_wm.training.loop.Part).

`run.train` composes them in this order, which is the order they act at the end of a step:
metrics, world-model diagnostics, stop signals (run.signals), the non-finite watch, checkpoints,
the progress bar.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import psutil
import torch
from tqdm import tqdm

from storm_wm.config import Config, TrainConfig
from storm_wm.errors import StormError
from storm_wm.hints import command
from storm_wm.logs.metrics import Logger, MetricAccumulator
from storm_wm.models import WorldModel
from storm_wm.replay import ReplayBuffer
from storm_wm.text import format_duration
from storm_wm.training.loop import LoopState, Part
from storm_wm.training.trainer import Trainer
from storm_wm.visualize.training import log_world_model_diagnostics


class MetricsLog(Part):
    """Each episode's return and length; every `log_every` steps, the mean update metrics since
    the last log with the update counts, the loop's speed so far and the process's memory."""

    def __init__(
        self,
        logger: Logger,
        accumulator: MetricAccumulator,
        trainer: Trainer,
        config: Config,
        step: int,
    ) -> None:
        self.logger, self.accumulator, self.every = logger, accumulator, config.train.log_every
        self.counters, self.process = trainer.nonfinite, psutil.Process()
        self.started, self.started_step = time.perf_counter(), step

    def episode_ended(self, state: LoopState) -> None:
        ended = {"env/episode_return": state.episode_return}
        self.logger.log(state.step, ended | {"env/episode_length": state.episode_length})

    def updated(self, metrics: dict[str, torch.Tensor]) -> None:
        self.accumulator.add(metrics)

    def step_done(self, state: LoopState, warming_up: bool) -> None:
        if state.step % self.every or not (metrics := self.accumulator.flush()):
            return
        metrics["train/updates"] = state.updates
        metrics["train/skipped_updates"] = self.counters.skipped
        seconds = time.perf_counter() - self.started
        metrics["train/steps_per_second"] = (state.step - self.started_step) / seconds
        metrics["system/memory_mb"] = self.process.memory_info().rss / 2**20
        self.logger.log(state.step, metrics)


class Diagnostics(Part):
    """The world model's open-loop errors and dream videos, when due (visualize.training)."""

    def __init__(self, logger: Logger, model: WorldModel, replay: ReplayBuffer, config: Config):
        self.logger, self.model, self.replay, self.config = logger, model, replay, config

    def step_done(self, state: LoopState, warming_up: bool) -> None:
        log_world_model_diagnostics(self.logger, self.model, self.replay, state.step, self.config)


class Checkpointing(Part):
    """Saves every `checkpoint_every` steps, at the last step and when a signal stops the run."""

    def __init__(self, save: Callable[[LoopState], None], schedule: TrainConfig) -> None:
        self.save, self.schedule = save, schedule

    def due(self, step: int) -> bool:
        return step % self.schedule.checkpoint_every == 0 or step == self.schedule.steps

    def step_done(self, state: LoopState, warming_up: bool) -> None:
        if self.due(state.step) or state.stopped_by:
            self.save(state)


class NonfiniteWatch(Part):
    """Reads the trainer's counts of skipped updates (kept on the device) at log and checkpoint
    steps, where the loop waits for the device anyway. Warns once for each model whose newest
    streak of skipped updates began since the last read, naming its first step; when a streak
    reached `train.max_nonfinite_updates`, saves the last finite weights and stops the run."""

    def __init__(self, trainer: Trainer, config: Config, checkpoints: Checkpointing) -> None:
        self.trainer, self.schedule, self.checkpoints = trainer, config.train, checkpoints

    def step_done(self, state: LoopState, warming_up: bool) -> None:
        if state.step % self.schedule.log_every and not self.checkpoints.due(state.step):
            return
        report, limit = self.trainer.nonfinite.read(), self.schedule.max_nonfinite_updates
        failure = None
        for model, longest in report.longest.items():
            name = model.replace("_", "-")
            if (began := report.streak_started[model]) is not None:
                warning = f"step {began}: non-finite {name} loss or gradient; update skipped"
                tqdm.write(f"storm-wm: warning: {warning}", file=sys.stderr)
            if longest >= limit and failure is None:
                failure = (
                    f"training stopped at step {state.step}: {longest} {name} updates in a row "
                    "had a non-finite loss or gradient (each was skipped; "
                    f"train.max_nonfinite_updates is {limit})"
                )
        if failure is None:
            return
        models = self.trainer.models
        weights = [*models.world_model.parameters(), *models.actor_critic.parameters()]
        if not all(bool(torch.isfinite(weight).all()) for weight in weights):
            raise StormError(
                f"{failure}; the weights are no longer finite and were not saved: the newest "
                "checkpoint holds the last good ones"
            )
        self.checkpoints.save(state)
        raise StormError(
            f"{failure}; the checkpoint of step {state.step} holds the last finite weights. "
            "Check the game's rewards and the learning rates, then start a new run (or evaluate "
            f"this one with `{command('eval', 'RUN_DIR')}`)"
        )


class ProgressBar(Part):
    """tqdm's bar, with the time left per phase (`PhaseClock`; tqdm's own would extrapolate the
    warm-up's speed) and the last episode's return."""

    def __init__(self, config: Config, replay: ReplayBuffer, step: int, show: bool) -> None:
        self.schedule, self.replay, self.clock = config.train, replay, PhaseClock()
        self.last_return = ""
        bar_format = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, {rate_fmt}{postfix}]"
        self.bar = tqdm(
            total=config.train.steps,
            initial=step,
            unit="step",
            dynamic_ncols=True,
            disable=not show,
            desc=config.env.game,
            bar_format=bar_format,
        )

    def episode_ended(self, state: LoopState) -> None:
        self.last_return = f", episode_return={state.episode_return:g}"

    def step_done(self, state: LoopState, warming_up: bool) -> None:
        if not self.bar.disable:
            schedule = self.schedule
            # The loop's update after step n trains the agent too once n >= agent_start.
            alone = state.step < schedule.agent_start
            self.clock.tick(WARMUP if warming_up else MODEL if alone else TRAINING)
            left = schedule.steps - state.step
            warmup = min(max(0, schedule.warmup_steps - len(self.replay)), left)
            model = min(max(0, schedule.agent_start - 1 - state.step - warmup), left - warmup)
            left_text = self.clock.describe(warmup, left - warmup - model, model)
            self.bar.set_postfix_str(left_text + self.last_return, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        # However the loop ends, before an error is printed: a message (a full disk) must start
        # on a line of its own, with no stale bar printed after it.
        self.bar.close()


WARMUP, MODEL, TRAINING = "warm-up", "world model alone", "training"
PHASE_STEPS = {WARMUP: "random steps", MODEL: "world-model steps", TRAINING: "training steps"}
MEASURED_TRAINING_STEPS = 4
"""Training steps timed before their speed is trusted (the first ones also build caches)."""


class PhaseClock:
    """Times the steps of each of a run's phases: the first `warmup_steps` act at random and
    update nothing (hundreds of steps a second); those before `train.agent_start` (none in the
    paper's schedule) update the world model alone; every later one trains both (on a CPU,
    seconds to a minute per step). `describe` turns what is left into a short text, and says so
    while a phase's speed is still unknown."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.seconds = dict.fromkeys(PHASE_STEPS, 0.0)
        self.steps = dict.fromkeys(PHASE_STEPS, 0)
        self.last: float | None = None

    def tick(self, phase: str) -> None:
        """Call after each step of `phase`: the time since the previous call is that step's."""
        now = self.clock()
        if self.last is not None:
            self.seconds[phase] += now - self.last
            self.steps[phase] += 1
        self.last = now

    def seconds_per_step(self, phase: str) -> float | None:
        needed = 1 if phase == WARMUP else MEASURED_TRAINING_STEPS
        if self.steps[phase] < needed:
            return None
        return self.seconds[phase] / self.steps[phase]

    def describe(self, warmup_left: int, training_left: int, model_left: int = 0) -> str:
        """`ETA 3:05:12`, or what is known so far while a phase's speed is not."""
        phases = [(WARMUP, warmup_left), (MODEL, model_left), (TRAINING, training_left)]
        phases = [(phase, left) for phase, left in phases if left > 0]
        known, seconds = [], 0.0
        for index, (phase, left) in enumerate(phases):
            rate = self.seconds_per_step(phase)
            if rate is not None:
                known.append(phase)
                seconds += left * rate
                continue
            then = "".join(f", then {n} {PHASE_STEPS[p]}" for p, n in phases[index + 1 :])
            if phase == WARMUP:
                return f"warm-up: {left} random steps{then}"
            done = f"{' + '.join(known)} {format_duration(seconds)} left, then " if known else ""
            return f"{done}{left} {PHASE_STEPS[phase]}{then} (ETA once a few have run)"
        return f"ETA {format_duration(seconds)}"
