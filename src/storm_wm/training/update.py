"""Optimizer steps that skip a non-finite update, decided on the device.

One NaN would otherwise spread to every weight and to Adam's moments, ruining the run for good.
The decision to skip is a boolean tensor on the training device: fused Adam reads it as
`found_inf`, the module's other state is put back with `torch.where`, and the flags the
training loop's counters stop on stay on the device until the loop asks for them (one
transfer, at its log and checkpoint steps). No gradient scaler is needed: bf16 autocast keeps
fp32's exponent range.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from storm_wm.device import autocast

MODELS = ("world_model", "agent")
"""The models whose updates are counted, in the order a checkpoint lists their streaks."""


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
    """Per-model counts of skipped updates. Each update's finite flag stays on the device until
    the counts are asked for (`read`, `streaks`, `skipped`): then the flags since the last fetch
    cross to the host in one transfer and are counted there."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, int, torch.Tensor]] = []
        """(model, env step, 0-dim bool finite flag) of each update not yet fetched."""
        self.current = dict.fromkeys(MODELS, 0)
        self.longest = dict.fromkeys(MODELS, 0)
        self.started: dict[str, int | None] = dict.fromkeys(MODELS)
        self.total = 0

    def record(self, model: str, finite: torch.Tensor, step: int) -> None:
        """Counts one update of `model` at env step `step`; `finite` is its 0-dim bool flag."""
        self.pending.append((model, step, finite))
        if len(self.pending) >= 4096:  # a loop that never reads keeps its memory bounded
            self._fetch()

    def _fetch(self) -> None:
        if not self.pending:
            return
        flags = torch.stack([finite for _, _, finite in self.pending]).tolist()
        for (model, step, _), finite in zip(self.pending, flags, strict=True):
            self.current[model] = 0 if finite else self.current[model] + 1
            self.longest[model] = max(self.longest[model], self.current[model])
            if self.current[model] == 1:
                self.started[model] = step
            self.total += not finite
        self.pending.clear()

    def read(self) -> NonfiniteReport:
        """The counts now; starts the next read's `longest` and `streak_started`."""
        report = NonfiniteReport(self.streaks, self.longest, self.started, self.skipped)
        self.longest, self.started = dict(self.current), dict.fromkeys(MODELS)
        return report

    @property
    def streaks(self) -> dict[str, int]:
        """The current streaks (a host synchronisation, as is `skipped`)."""
        self._fetch()
        return dict(self.current)

    @property
    def skipped(self) -> int:
        self._fetch()
        return self.total

    def state_dict(self) -> dict:
        return {"streaks": list(self.streaks.values()), "skipped": self.skipped}

    def load_state_dict(self, state: dict) -> None:
        # Checkpoints written before 2026-12-07 keep each streak in column 0 of a "table".
        streaks = state["streaks"] if "streaks" in state else state["table"][:, 0].tolist()
        self.current = dict(zip(MODELS, map(int, streaks), strict=True))
        self.longest, self.total = dict(self.current), int(state["skipped"])


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
