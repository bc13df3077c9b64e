"""The device's matrix-product peak, measured in the same run as the phases it is compared to."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from storm_wm.device import cpu_has_fast_bf16
from storm_wm.errors import StormError
from storm_wm.measure.timing import timed


@dataclass(frozen=True)
class MatmulPeak:
    dtype: str
    tflops: float
    """Best of `repeats` square products of side `size`: contention only ever slows a product
    down, so the best one is the closest to what the hardware can do."""
    size: int
    repeats: int


def precision_name(dtype: torch.dtype) -> str:
    """The --precision spelling of a dtype: fp32, bf16."""
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def matmul_peak(device: torch.device, dtype: torch.dtype) -> MatmulPeak:
    """TFLOP/s of a square `dtype` matrix product on `device` (one untimed warm-up product).

    The matrix is big enough to reach the peak, and small where the peak is low: a CPU without
    AMX or AVX512-BF16 emulates bf16 products at about 0.001 TFLOP/s, where a 2048 product would
    take over ten seconds.
    """
    size, repeats = 2048, 5
    if device.type == "cuda":
        size, repeats = 8192, 10
    elif device.type == "cpu" and dtype == torch.bfloat16 and not cpu_has_fast_bf16():
        size, repeats = 512, 3
    try:
        left = torch.randn(size, size, device=device, dtype=dtype)
        right = torch.randn(size, size, device=device, dtype=dtype)
        torch.mm(left, right)  # warm-up: library initialisation, kernel selection
    except (RuntimeError, TypeError) as error:
        raise StormError(
            f"{precision_name(dtype)} matrix products fail on {device} ({error}); "
            "benchmark on another device with --device"
        ) from None
    best = min(timed(lambda: torch.mm(left, right), device)[1] for _ in range(repeats))
    return MatmulPeak(
        dtype=precision_name(dtype),
        tflops=2 * size**3 / best / 1e12,
        size=size,
        repeats=repeats,
    )
