"""Device and precision choice. No device literals elsewhere: everything asks here."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from storm_wm.errors import StormError


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple's MPS, then the CPU; an unavailable choice is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StormError("--device cuda was asked for but CUDA is not available; use --device auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise StormError("--device mps was asked for but MPS is not available; use --device auto")
    return device


CPU_BF16_VARIABLE = "STORM_WM_CPU_BF16"
"""Overrides what /proc/cpuinfo says about native bf16: `native` or `emulated`. The tests run
every precision-dependent check under both answers, so one machine proves both paths."""


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with native bf16 matrix units (AMX or AVX512-BF16), unless overridden by
    $STORM_WM_CPU_BF16. Elsewhere PyTorch emulates bf16 matrix products, far slower than fp32
    (about 100x on an AVX2-only machine)."""
    forced = os.environ.get(CPU_BF16_VARIABLE)
    if forced is not None:
        if forced not in ("native", "emulated"):
            raise StormError(f"${CPU_BF16_VARIABLE} must be native or emulated, got {forced!r}")
        return forced == "native"
    return bool({"amx_bf16", "avx512_bf16"} & set(cpu_info("flags").split()))


def cpu_info(field: str) -> str:
    """The first CPU's `field` in /proc/cpuinfo (`model name`, `flags`); empty if not there."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip() == field:
            return value.strip()
    return ""


@dataclass(frozen=True)
class Precision:
    """The autocast dtype a run computes in, and why it was chosen (printed at its start)."""

    dtype: torch.dtype
    reason: str

    @property
    def name(self) -> str:
        return "bf16" if self.dtype == torch.bfloat16 else "fp32"


def choose_precision(name: str, device: torch.device) -> Precision:
    """`--precision`: fp32 or bf16 as asked; `auto` bf16 on CUDA with bf16 support, else fp32.

    On CPUs `auto` is fp32 even where bf16 is native: measured in docs/performance.md
    ("Precision on CPUs"), bf16 autocast learned as well but ran the CPU-sized presets little or
    no faster (the small preset's loop x0.88 on an AVX512-BF16 EPYC, x1.07 on an AMX Xeon) and
    only the paper's GPU-sized networks about twice as fast (x1.77 and x2.02).
    """
    if name == "fp32":
        return Precision(torch.float32, "asked for (--precision fp32)")
    if name == "bf16":
        return Precision(torch.bfloat16, "asked for (--precision bf16)")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision(torch.bfloat16, "auto: bf16 autocast on CUDA")
        return Precision(torch.float32, "auto: this CUDA device has no bf16")
    if device.type == "cpu":
        if cpu_has_fast_bf16():
            return Precision(
                torch.float32,
                "auto: fp32 on CPUs; this one has native bf16, and --precision bf16 runs "
                "GPU-sized networks about twice as fast here (the CPU presets gain little)",
            )
        return Precision(torch.float32, "auto: fp32 on CPUs (this one emulates bf16)")
    return Precision(torch.float32, f"auto: fp32 on {device.type}")


def warn_about_precision(name: str, device: torch.device) -> None:
    """bf16 on a CPU that emulates it runs far slower than fp32: say so (the user may insist)."""
    if name == "bf16" and device.type == "cpu" and not cpu_has_fast_bf16():
        print(
            "storm-wm: warning: this CPU emulates bf16 (no AMX or AVX512-BF16): its bf16 matrix "
            "products run many times slower than fp32; --precision auto picks fp32 here",
            file=sys.stderr,
        )


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """The autocast dtype of `choose_precision`."""
    return choose_precision(name, device).dtype


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


REPLAY_SHARE_OF_FREE_MEMORY = 0.25
"""The automatic rule puts replay on the device when it needs at most this share of the free
device memory, leaving the rest to the models, activations and other runs sharing the device."""


def free_device_memory(device: torch.device) -> int | None:
    """Bytes free on `device` now, or None where that cannot be asked (the CPU, unknown kinds)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "mps" and hasattr(torch.mps, "recommended_max_memory"):
        return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    return None


def replay_device(setting: str, device: torch.device, replay_bytes: int) -> torch.device | None:
    """Where replay's device copy lives (`train.replay_on_device`); None: host memory only.

    `off`: host only. `on`: on the training device. `auto`: on the training device when that is
    not the CPU and the buffer (capacity x frame bytes, plus the small arrays) needs at most
    `REPLAY_SHARE_OF_FREE_MEMORY` of the device's free memory (`torch.cuda.mem_get_info` on
    CUDA); host only where free memory cannot be asked. On the CPU every setting means host only:
    the host arrays already are on the training device, and a copy would only double the memory.
    """
    if setting not in ("auto", "on", "off"):
        raise StormError(f"train.replay_on_device must be auto, on or off, got {setting!r}")
    if device.type == "cpu" or setting == "off":
        return None
    if setting == "on":
        return device
    free = free_device_memory(device)
    if free is None or replay_bytes > REPLAY_SHARE_OF_FREE_MEMORY * free:
        return None
    return device


def compile_mode(device: torch.device) -> str | None:
    """torch.compile's mode for `device`: CUDA graphs (`reduce-overhead`) on CUDA, where launch
    overhead dominates the small per-step kernels of imagination and acting; the default
    elsewhere."""
    return "reduce-overhead" if device.type == "cuda" else None


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """`--deterministic`: only deterministic kernels in the block (and back to what they were
    after), so the same run gives the same weights.

    With it (and the RNG states a checkpoint carries), a run interrupted and resumed on the CPU
    ends with exactly the weights of the same run left alone. On CUDA it also needs cuBLAS's fixed
    workspace, set here before the first cuBLAS call; some kernels get slower, and an operation
    with no deterministic CUDA kernel warns instead of stopping a run hours in (`warn_only`).
    """
    if not enabled:
        yield
        return
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = previous[2:]
