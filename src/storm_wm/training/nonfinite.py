"""Skipping non-finite updates without a host synchronisation per update.

The decision to skip is a boolean tensor on the training device: fused Adam reads it as
`found_inf` (a skipped step changes neither the weights, nor the moments, nor the step count),
buffers are restored with `torch.where`, the slow critic's step is weighted by it. The counters
the training loop stops on live on the device too, and are read (one transfer) only when the
loop asks, at its log and checkpoint steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MODELS = ("world_model", "agent")
"""The models whose updates are counted, in the rows of `NonfiniteCounters.table`."""

_STREAK, _LONGEST, _STARTED_AT, _BEGAN = range(4)
"""Columns of the table: the current streak of skipped updates; the longest streak since the
last read; the env step at which the newest streak began; whether one began since that read."""


@dataclass(frozen=True)
class NonfiniteReport:
    """The counters as read at one step of the loop."""

    streaks: dict[str, int]
    """Skipped updates in a row now, per model."""
    longest: dict[str, int]
    """The longest streak seen since the previous read, per model (ended or not)."""
    streak_started: dict[str, int | None]
    """The env step at which the newest streak began, if one began since the previous read."""
    skipped_updates: int
    """Skipped updates of the whole run."""


class NonfiniteCounters:
    """Per-model counts of skipped updates, kept on the device and read only on request."""

    def __init__(self, device: torch.device) -> None:
        self.table = torch.zeros(len(MODELS), 4, dtype=torch.int64, device=device)
        self.table[:, _STARTED_AT] = -1
        self.skipped = torch.zeros((), dtype=torch.int64, device=device)

    def record(self, model: str, finite: torch.Tensor, step: int) -> None:
        """Counts one update of `model` at env step `step`; `finite` is its 0-dim bool flag."""
        row = self.table[MODELS.index(model)]
        streak = torch.where(finite, 0, row[_STREAK] + 1)
        began = streak == 1
        row.copy_(
            torch.stack([
                streak,
                torch.maximum(row[_LONGEST], streak),
                torch.where(began, step, row[_STARTED_AT]),
                row[_BEGAN] | began.long(),
            ])
        )  # fmt: skip
        self.skipped += (~finite).long()

    def read(self) -> NonfiniteReport:
        """One device-to-host transfer; starts the next read's `longest` and `streak_started`."""
        values = torch.cat([self.table.flatten(), self.skipped[None]]).tolist()
        rows = [values[index * 4 : index * 4 + 4] for index in range(len(MODELS))]
        with torch.no_grad():
            self.table[:, _LONGEST] = self.table[:, _STREAK]
            self.table[:, _BEGAN] = 0
        return NonfiniteReport(
            streaks={model: row[_STREAK] for model, row in zip(MODELS, rows, strict=True)},
            longest={model: row[_LONGEST] for model, row in zip(MODELS, rows, strict=True)},
            streak_started={
                model: row[_STARTED_AT] if row[_BEGAN] else None
                for model, row in zip(MODELS, rows, strict=True)
            },
            skipped_updates=values[-1],
        )

    @property
    def streaks(self) -> dict[str, int]:
        """The current streaks (a host synchronisation: for checkpoints and tests)."""
        return dict(zip(MODELS, self.table[:, _STREAK].tolist(), strict=True))

    @property
    def skipped_updates(self) -> int:
        return int(self.skipped)

    @skipped_updates.setter
    def skipped_updates(self, count: int) -> None:
        self.skipped.fill_(int(count))

    def state_dict(self) -> dict:
        return {"table": self.table.cpu(), "skipped": int(self.skipped)}

    def load_state_dict(self, state: dict) -> None:
        self.table.copy_(state["table"])
        self.skipped.fill_(int(state["skipped"]))


def apply_if_finite(optimizer: torch.optim.Optimizer, finite: torch.Tensor) -> None:
    """Steps `optimizer` when `finite` holds, and leaves it exactly as it was otherwise.

    Fused Adam takes the decision on the device (`found_inf`, the hook GradScaler uses): its
    kernel skips every parameter when found_inf is 1 and takes the step count back. Other
    optimizers need the flag on the host: one synchronisation per update.
    """
    if optimizer.defaults.get("fused"):
        optimizer.found_inf = (~finite).float()
        optimizer.step()
    elif bool(finite):
        optimizer.step()


def keep_where_finite(
    module: torch.nn.Module, saved: list[torch.Tensor], finite: torch.Tensor
) -> None:
    """Puts back the buffers saved before a forward pass (BatchNorm statistics, the return
    normalizer's EMAs, which the forward pass itself updates) unless the update was finite."""
    with torch.no_grad():
        for buffer, before in zip(module.buffers(), saved, strict=True):
            buffer.copy_(torch.where(finite, buffer, before))


def adam(parameters, **settings) -> torch.optim.Adam:
    """Adam with the fused kernel where PyTorch has one for `device`, the default elsewhere."""
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, fused=True, **settings)
    except RuntimeError:  # no fused kernel for this device or dtype: PyTorch's default choice
        return torch.optim.Adam(parameters, **settings)
