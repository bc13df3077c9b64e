"""Wall-clock timing that is honest on asynchronous devices."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


def synchronize(device: torch.device) -> None:
    """Waits for queued device work: without it a CUDA timer measures only the kernel launches."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(function: Callable[[], T], device: torch.device) -> tuple[T, float]:
    """Runs `function` once; returns its result and the seconds it took, device work included."""
    synchronize(device)
    start = time.perf_counter()
    result = function()
    synchronize(device)
    return result, time.perf_counter() - start
