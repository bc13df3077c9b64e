"""Optimizer steps that skip a non-finite update, decided on the device.

One NaN would otherwise spread to every weight and to Adam's moments, ruining the run for good.
The decision to skip is a boolean tensor on the training device: fused Adam reads it as
`found_inf`, the module's other state is put back with `torch.where`, and the counters the
training loop stops on live on the device too, read (one transfer) only when the loop asks,
at its log and checkpoint steps. No gradient scaler is needed: bf16 autocast keeps fp32's
exponent range.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from storm_wm.device import autocast

MODELS = ("world_model", "agent")
"""The models whose updates are counted, in the order of the checkpoint's table rows."""


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


class Streak:
    """One model's skipped updates: named 0-dim views of its row of the counters' table."""

    def __init__(self, row: torch.Tensor) -> None:
        # Skipped updates in a row now; the longest streak since the last read; the env step at
        # which the newest streak began; whether one began since the last read (0 or 1).
        self.current, self.longest, self.started_at, self.began = row


class NonfiniteCounters:
    """Per-model counts of skipped updates, kept on the device and read only on request."""

    def __init__(self, device: torch.device) -> None:
        self.table = torch.tensor([[0, 0, -1, 0]] * len(MODELS), device=device)
        """(models, 4) int64, the rows of each model's `Streak`: what a checkpoint stores."""
        self.models = {model: Streak(row) for model, row in zip(MODELS, self.table, strict=True)}
        self.skipped = torch.zeros((), dtype=torch.int64, device=device)

    def record(self, model: str, finite: torch.Tensor, step: int) -> None:
        """Counts one update of `model` at env step `step`; `finite` is its 0-dim bool flag."""
        streak = self.models[model]
        current = torch.where(finite, 0, streak.current + 1)
        began = current == 1
        streak.longest.copy_(torch.maximum(streak.longest, current))
        streak.started_at.copy_(torch.where(began, step, streak.started_at))
        streak.began.copy_(streak.began | began)
        streak.current.copy_(current)
        self.skipped += (~finite).long()

    def read(self) -> NonfiniteReport:
        """One device-to-host transfer; starts the next read's `longest` and `streak_started`."""
        *values, skipped = torch.cat([self.table.flatten(), self.skipped[None]]).tolist()
        rows = {model: values[4 * index : 4 * index + 4] for index, model in enumerate(MODELS)}
        for streak in self.models.values():
            streak.longest.copy_(streak.current)
            streak.began.zero_()
        return NonfiniteReport(
            streaks={model: current for model, (current, _, _, _) in rows.items()},
            longest={model: longest for model, (_, longest, _, _) in rows.items()},
            streak_started={
                model: at if began else None for model, (_, _, at, began) in rows.items()
            },
            skipped_updates=skipped,
        )

    @property
    def streaks(self) -> dict[str, int]:
        """The current streaks (a host synchronisation: for checkpoints and tests)."""
        return {model: int(streak.current) for model, streak in self.models.items()}

    def state_dict(self) -> dict:
        return {"table": self.table.cpu(), "skipped": int(self.skipped)}

    def load_state_dict(self, state: dict) -> None:
        self.table.copy_(state["table"])
        self.skipped.fill_(int(state["skipped"]))


class GuardedUpdate:
    """One optimizer step on `module.loss(*batch)`, skipped when the loss or the gradient norm
    is not finite.

    A skipped step leaves everything as it was: the weights, Adam's moments and step count
    (fused Adam's `found_inf`), and the module's other state that the forward pass or `after`
    moved (BatchNorm statistics, the return normalizer's EMAs, the frozen slow critic). Its
    metrics become NaN, which `MetricAccumulator` leaves out of its means, and `nonfinite` says
    it was skipped. The module is in train mode (BatchNorm batch statistics, dropout) inside its
    update only: imagination and acting see it in eval mode.
    """

    def __init__(
        self,
        name: str,
        module: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        clip: float,
        skips: NonfiniteCounters,
        device: torch.device,
        dtype: torch.dtype,
        after: Callable[[], None] = lambda: None,
    ) -> None:
        self.name, self.module, self.optimizer, self.clip = name, module, optimizer, clip
        self.skips, self.device, self.dtype, self.after = skips, device, dtype, after
        self.parameters = [p for group in optimizer.param_groups for p in group["params"]]

    def _state(self) -> list[torch.Tensor]:
        """What the step may move besides the trained parameters: buffers, frozen parameters."""
        frozen = (p for p in self.module.parameters() if not p.requires_grad)
        return [*self.module.buffers(), *frozen]

    def __call__(self, *batch: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """Updates on `batch` at env step `step` (which dates a skip); returns the metrics."""
        saved = [tensor.clone() for tensor in self._state()]
        self.module.train()
        with autocast(self.device, self.dtype):
            loss, metrics = self.module.loss(*batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.clip)
        finite = torch.isfinite(loss.detach()) & torch.isfinite(norm)
        if self.optimizer.defaults.get("fused"):  # decided on the device; the step count too
            self.optimizer.found_inf = (~finite).float()
            self.optimizer.step()
        elif bool(finite):  # other optimizers need the flag on the host
            self.optimizer.step()
        self.skips.record(self.name, finite, step)
        self.module.eval()
        self.after()
        with torch.no_grad():
            for tensor, before in zip(self._state(), saved, strict=True):
                tensor.copy_(torch.where(finite, tensor, before))
        metrics = {**metrics, "grad_norm": norm}
        metrics = {name: torch.where(finite, value, torch.nan) for name, value in metrics.items()}
        metrics["nonfinite"] = (~finite).float()
        return {f"{self.name}/{name}": value for name, value in metrics.items()}


def adam(parameters, **settings) -> torch.optim.Adam:
    """Adam with the fused kernel where PyTorch has one for `device`, the default elsewhere."""
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, fused=True, **settings)
    except RuntimeError:  # no fused kernel for this device or dtype: PyTorch's default choice
        return torch.optim.Adam(parameters, **settings)
