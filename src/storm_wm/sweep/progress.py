"""What a sweep shows while it runs: one line per run, redrawn in place on a terminal.

Runs report nothing to the driver while they train; their progress is read from the files they
write anyway (the last `step` of metrics.jsonl), so the same display works for a local process
and a Ray task on another node that shares the filesystem. Off a terminal (a log file, CI), only
changes of state are printed, one line each, so the log stays readable.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from storm_wm.logs.records import records
from storm_wm.sweep.plan import RunSpec
from storm_wm.sweep.state import RunRecord
from storm_wm.text import format_duration, plural


def last_step(metrics_path: Path) -> int | None:
    """The `step` of the last complete record of a metrics.jsonl, reading only its tail."""
    try:
        tail = records(metrics_path, tail_bytes=8192)
    except OSError:
        return None
    steps = [record["step"] for record in tail if isinstance(record.get("step"), int | float)]
    return int(steps[-1]) if steps else None


def mean_return(run_dir: Path) -> float | None:
    try:
        return float(json.loads((run_dir / "eval.json").read_text())["mean"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass
class RunTracker:
    """The driver's live view of one run: its record plus what this invocation has seen."""

    run: RunSpec
    record: RunRecord
    finished_earlier: bool = False
    submitted_at: float | None = None
    """When the current attempt was handed to the backend."""
    first_seen: tuple[float, int] | None = None
    """(time, step) of the first step this attempt was seen at: the baseline of its rate."""
    step: int | None = None

    def start_attempt(self, now: float) -> None:
        self.submitted_at, self.first_seen, self.step = now, None, None

    def phase(self) -> str:
        """The record's status, with `running` refined from the run's logs: one touched since
        the attempt was submitted means a worker picked the run up (coarse mtimes: -1 s)."""
        status = self.record.status
        if status != "running" or self.submitted_at is None:
            return status
        for log, phase in (("eval.log", "evaluating"), ("train.log", "training")):
            with contextlib.suppress(OSError):
                if (self.run.run_dir / log).stat().st_mtime >= self.submitted_at - 1:
                    return phase
        return "waiting"

    def observe(self, now: float) -> None:
        step = last_step(self.run.run_dir / "metrics.jsonl")
        if step is None:
            return
        if self.first_seen is None:
            self.first_seen = (now, step)
        self.step = step

    def eta(self, now: float) -> float | None:
        if self.first_seen is None or self.step is None:
            return None
        since, first_step = self.first_seen
        if self.step <= first_step or now <= since:
            return None
        rate = (self.step - first_step) / (now - since)
        return max(0.0, self.run.steps - self.step) / rate

    def describe(self, now: float) -> str:
        phase, record = self.phase(), self.record
        attempt = f" (attempt {record.attempts})" if record.attempts > 1 else ""
        if phase == "training":
            if self.step is None:
                return f"training, starting{attempt}"
            percent = 100 * self.step / self.run.steps
            eta = self.eta(now)
            eta_text = f", ETA {format_duration(eta)}" if eta is not None else ""
            return (
                f"training, step {self.step}/{self.run.steps} ({percent:.0f}%){eta_text}{attempt}"
            )
        if phase == "finished":
            score = mean_return(self.run.run_dir)
            score_text = f", mean return {score:.2f}" if score is not None else ""
            return ("finished earlier" if self.finished_earlier else "finished") + score_text
        if phase == "retrying":
            return f"failed attempt {record.attempts}, queued to retry: {record.error}"
        if phase == "failed":
            return f"failed after {plural(record.attempts, 'attempt')}: {record.error}"
        if phase == "waiting":
            return f"waiting for resources{attempt}"
        return phase + attempt


class ProgressDisplay:
    """Draws the runs' lines: in place on a terminal, as state changes elsewhere."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.in_place = self.stream.isatty()
        self.drawn_lines = 0
        self.printed_phase: dict[str, str] = {}

    def message(self, text: str) -> None:
        """A line above the table (it stays when the table is redrawn)."""
        self._erase()
        print(text, file=self.stream, flush=True)

    def _erase(self) -> None:
        if self.in_place and self.drawn_lines:
            self.stream.write(f"\x1b[{self.drawn_lines}F\x1b[J")
            self.drawn_lines = 0

    def refresh(self, trackers: list[RunTracker], now: float) -> None:
        width = max(len(tracker.run.name) for tracker in trackers)

        def line(tracker: RunTracker) -> str:
            return f"{tracker.run.name:<{width}}  {tracker.describe(now)}"

        if not self.in_place:
            for tracker in trackers:
                phase = tracker.phase()
                if self.printed_phase.get(tracker.run.name) != phase:
                    self.printed_phase[tracker.run.name] = phase
                    print(line(tracker), file=self.stream, flush=True)
            return
        columns, rows = shutil.get_terminal_size()
        shown, summary = trackers, []
        if len(trackers) > rows - 2:  # too many to list: show active runs, count the rest
            counts = Counter(tracker.phase() for tracker in trackers)
            shown = [t for t in trackers if t.phase() not in ("queued", "finished")]
            summary = [", ".join(f"{count} {phase}" for phase, count in sorted(counts.items()))]
        lines = [line(tracker)[: columns - 1] for tracker in shown] + summary
        self._erase()
        self.stream.write("".join(line + "\n" for line in lines))
        self.stream.flush()
        self.drawn_lines = len(lines)

    def close(self) -> None:
        """Leave the last table on screen; later messages print below it."""
        self.drawn_lines = 0
