"""What the figures were measured on: the processor, its load, and memory use."""

from __future__ import annotations

import os
import re
import resource
import sys
from pathlib import Path

import torch

from storm_wm.device import cpu_has_fast_bf16, cpu_info

_INTERESTING_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")


def cpu_description() -> dict:
    """Model name, logical cores, the vector/matrix flags that decide matmul speed, native bf16."""
    flags = set(cpu_info("flags").split())
    return {
        "model": cpu_info("model name") or "unknown",
        "logical_cores": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(),
        "flags": [flag for flag in _INTERESTING_FLAGS if flag in flags],
        "native_bf16": cpu_has_fast_bf16(),
    }


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: on a shared machine they say how noisy the timings are."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []


class PeakMemory:
    """Peak memory during one phase, and over the whole run.

    On CUDA: the allocator's peak. On the CPU: the process's peak resident set. Linux lets a
    process reset its own high-water mark (`/proc/self/clear_refs`), which gives a per-phase
    peak; that also resets `getrusage`'s figure, so the run's peak is kept here, as the largest
    mark seen before each reset.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.run_peak_rss = _resident_high_water_mark()

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        self.run_peak_rss = max(self.run_peak_rss, _resident_high_water_mark())
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass  # not Linux, or not allowed: phases then report the run's peak so far

    def read(self) -> int:
        """Bytes since the last reset."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        peak = _resident_high_water_mark()
        self.run_peak_rss = max(self.run_peak_rss, peak)
        return peak

    def process_peak(self) -> int:
        """The process's peak resident memory over the run, in bytes (host memory on CUDA too)."""
        return max(self.run_peak_rss, _resident_high_water_mark())


def _resident_high_water_mark() -> int:
    status = Path("/proc/self/status")
    if status.exists():
        match = re.search(r"VmHWM:\s+(\d+) kB", status.read_text())
        if match:
            return int(match.group(1)) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024
