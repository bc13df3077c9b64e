"""Speed and returns of a training run, read back from its metrics.jsonl.

Each training-metrics record carries `train/steps_per_second`, the steps since the process
started over the seconds since then. For a run started at step 0, as those read here are, the
time of a record is step / rate, and the rate between two records needs no clock of its own:
(step_b - step_a) / (time_b - time_a). The same for `train/updates`. This reads any run, live
or finished, without touching its loop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class WindowRate:
    """Environment steps and updates per second between two logged steps of one run."""

    first_step: int
    last_step: int
    seconds: float
    steps_per_second: float
    updates_per_second: float

    @property
    def steps(self) -> int:
        return self.last_step - self.first_step

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "steps": self.steps}


def window_rate(records: list[dict], from_step: int) -> WindowRate | None:
    """The rate from the first training-metrics record at or after `from_step` to the last
    record; None if there are not two such records."""
    timed = []  # (step, seconds since training started, updates so far)
    for record in records:
        step, rate = record["step"], record.get("train/steps_per_second")
        if isinstance(rate, int | float) and rate > 0 and step > 0 and step >= from_step:
            timed.append((int(step), step / rate, float(record.get("train/updates", 0))))
    if len(timed) < 2:
        return None
    (first, first_seconds, first_updates), (last, last_seconds, last_updates) = timed[0], timed[-1]
    seconds = last_seconds - first_seconds
    if seconds <= 0:
        return None
    return WindowRate(
        first_step=first,
        last_step=last,
        seconds=seconds,
        steps_per_second=(last - first) / seconds,
        updates_per_second=(last_updates - first_updates) / seconds,
    )


def episode_returns(records: list[dict]) -> list[float]:
    """Every finished training episode's return, in order."""
    return [float(r["env/episode_return"]) for r in records if "env/episode_return" in r]
