"""Metrics to `metrics.jsonl` and TensorBoard, with hierarchical names and env-step indices.

A resumed run continues the same files: records written after the checkpoint it resumes from
(the process went on for a while before it died) are dropped first, from metrics.jsonl and
from TensorBoard (`purge_step`), so that every step index appears once and none is missing.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import torch

from storm_wm.errors import StormError
from storm_wm.hints import command
from storm_wm.logs import records
from storm_wm.logs.events import EventWriter


class MetricAccumulator:
    """Sums detached metric tensors on the device; one host transfer per `flush`, not per step.

    A NaN value is a missing one (a skipped update's metrics: storm_wm.training.trainer): it is
    left out of its metric's mean, counted on the device so no update waits for the host. A
    metric with no value since the last flush is left out of the flush.
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, torch.Tensor] = {}

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        for name, value in metrics.items():
            value = value.detach().float()
            present = ~torch.isnan(value)
            value = torch.where(present, value, 0.0)
            if name in self.sums:
                self.sums[name] = self.sums[name] + value
                self.counts[name] = self.counts[name] + present
            else:
                self.sums[name], self.counts[name] = value, present.float()

    def flush(self) -> dict[str, float]:
        if not self.sums:
            return {}
        names = list(self.sums)
        sums_and_counts = torch.stack(
            [torch.stack([self.sums[name], self.counts[name]]) for name in names]
        )
        values = sums_and_counts.cpu().tolist()
        self.sums.clear()
        self.counts.clear()
        return {
            name: total / count
            for name, (total, count) in zip(names, values, strict=True)
            if count > 0
        }

    def state_dict(self) -> dict[str, dict]:
        """The sums since the last flush: a resumed run logs the same averages as one left alone."""
        return {
            "sums": {name: value.cpu() for name, value in self.sums.items()},
            "counts": {name: int(count) for name, count in self.counts.items()},
        }

    def load_state_dict(self, state: dict[str, dict], device: torch.device) -> None:
        self.sums = {name: value.to(device) for name, value in state["sums"].items()}
        counts = state["counts"].items()
        self.counts = {name: torch.tensor(float(n), device=device) for name, n in counts}


class Logger:
    """Appends one JSON object per record to metrics.jsonl and mirrors it to TensorBoard."""

    def __init__(self, run_dir: Path, resume_step: int | None = None) -> None:
        """With `resume_step`, first drops every record of a later step (see the module doc)."""
        self.path = run_dir / "metrics.jsonl"
        purge_step = None
        if resume_step is not None:
            records.truncate(self.path, resume_step)
            purge_step = resume_step + 1
        self.file = self.path.open("a", encoding="utf-8")
        self.writer = EventWriter(Path(run_dir) / "tensorboard", purge_step=purge_step)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        record = {"step": int(step)}
        for name, value in metrics.items():
            value = float(value)
            record[name] = value if math.isfinite(value) else str(value)
            self.writer.add_scalar(name, value, step)
        try:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        except OSError as error:
            raise StormError(
                f"cannot write {self.path}: {error.strerror or error}; free disk space, then "
                f"continue with `{command('train', '--resume', self.path.parent)}` (nothing "
                "before its last checkpoint is lost)"
            ) from None

    def flush(self) -> None:
        """Puts every record so far on disk, TensorBoard's too (called at each checkpoint)."""
        self.writer.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a full disk was reported when it was hit
            self.file.close()
        self.writer.close()

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
