"""The operators that take the time of a phase, from one pass under torch.profiler."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from storm_wm.benchmark.timing import synchronize


def top_operators(function: Callable[[], object], device: torch.device, count: int = 8) -> list:
    """The `count` operators with the most self time in one call of `function`.

    Self time (time in the operator minus its children) adds up to the whole, so each entry's
    share says how much of the phase that operator is. On CUDA it is device time.
    """
    activities = [ProfilerActivity.CPU]
    on_cuda = device.type == "cuda"
    if on_cuda:
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as profiler:
        function()
        synchronize(device)

    def self_time(event) -> float:
        return event.self_device_time_total if on_cuda else event.self_cpu_time_total

    events = [event for event in profiler.key_averages() if self_time(event) > 0]
    total = sum(self_time(event) for event in events) or 1.0
    events.sort(key=self_time, reverse=True)
    return [
        {
            "name": event.key,
            "self_seconds": self_time(event) / 1e6,
            "share": self_time(event) / total,
            "calls": event.count,
        }
        for event in events[:count]
    ]
