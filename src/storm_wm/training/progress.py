"""The progress bar's time left, modelled as the two phases a run has.

The first `warmup_steps` steps act at random and update nothing: hundreds of steps a second.
Every later step trains (an update each `train_every` steps): on a CPU, seconds to a minute
per step. tqdm's own estimate extrapolates the warm-up's speed to the whole run (a 100k-step
paper run showed two minutes left, then grew at every refresh); this one times each phase
separately and says so while the training phase's speed is still unknown.
"""

from __future__ import annotations

import time
from collections.abc import Callable

WARMUP, TRAINING = "warm-up", "training"
MEASURED_TRAINING_STEPS = 4
"""Training steps timed before their speed is trusted (the first ones also build caches)."""


def format_duration(seconds: float) -> str:
    """`0:42`, `3:05:12`, `41 days`: hours:minutes:seconds up to two days, days beyond."""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class PhaseClock:
    """Times the steps of each phase; `describe` turns what is left into a short text."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.seconds = {WARMUP: 0.0, TRAINING: 0.0}
        self.steps = {WARMUP: 0, TRAINING: 0}
        self.last: float | None = None

    def tick(self, warming_up: bool) -> None:
        """Call after each step: the time since the previous call is that step's."""
        now = self.clock()
        if self.last is not None:
            phase = WARMUP if warming_up else TRAINING
            self.seconds[phase] += now - self.last
            self.steps[phase] += 1
        self.last = now

    def seconds_per_step(self, phase: str) -> float | None:
        needed = MEASURED_TRAINING_STEPS if phase == TRAINING else 1
        if self.steps[phase] < needed:
            return None
        return self.seconds[phase] / self.steps[phase]

    def describe(self, warmup_left: int, training_left: int) -> str:
        """`ETA 3:05:12`, or what is known so far while the training speed is not."""
        warmup_time = 0.0
        if warmup_left > 0:
            rate = self.seconds_per_step(WARMUP)
            if rate is None:
                return f"warm-up: {warmup_left} random steps, then {training_left} training steps"
            warmup_time = warmup_left * rate
        training_rate = self.seconds_per_step(TRAINING)
        if training_left > 0 and training_rate is None:
            known = f"warm-up {format_duration(warmup_time)} left, then " if warmup_left else ""
            return f"{known}{training_left} training steps (ETA once a few have run)"
        return f"ETA {format_duration(warmup_time + training_left * (training_rate or 0.0))}"
