"""Metrics to `metrics.jsonl` and TensorBoard, with hierarchical names and env-step indices."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import torch
from tensorboardX import SummaryWriter


class MetricAccumulator:
    """Sums detached metric tensors on the device; one host transfer per `flush`, not per step."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        for name, value in metrics.items():
            value = value.detach().float()
            self.sums[name] = self.sums[name] + value if name in self.sums else value
            self.counts[name] += 1

    def flush(self) -> dict[str, float]:
        if not self.sums:
            return {}
        names = list(self.sums)
        values = torch.stack([self.sums[name] for name in names]).cpu().tolist()
        means = {name: value / self.counts[name] for name, value in zip(names, values, strict=True)}
        self.sums.clear()
        self.counts.clear()
        return means


class Logger:
    """Appends one JSON object per record to metrics.jsonl and mirrors it to TensorBoard."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.file = self.path.open("a", encoding="utf-8")
        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        record = {"step": int(step)}
        for name, value in metrics.items():
            value = float(value)
            record[name] = value if math.isfinite(value) else str(value)
            self.writer.add_scalar(name, value, step)
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()
        self.writer.close()

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
