"""Measuring computation: wall-clock timing that is honest on asynchronous devices, FLOP
counting, and the device's matrix-product peak (measured in the same run as the phases it is
compared to). Shared by `storm-wm bench` and the start-of-run estimate (run.estimate)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from storm_wm.device import cpu_has_fast_bf16
from storm_wm.errors import StormError

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


def _attention_forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _attention_backward(
    grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs
) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


_CPU_ATTENTION_FORMULAS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _attention_forward,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _attention_backward,
}
"""On the CPU, attention runs as `_scaled_dot_product_flash_attention_for_cpu`, which the FLOP
counter does not list; it does the products the CUDA flash kernel does."""


def count_flops(function: Callable[[], T]) -> tuple[T, int]:
    """Runs `function` once under the FLOP counter; returns its result and the FLOPs it did.

    A multiply-add counts as two FLOPs; elementwise work (activations, norms, the optimizer) is
    not counted, as is usual for achieved-FLOP/s figures.
    """
    counter = FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION_FORMULAS)
    with counter:
        result = function()
    return result, counter.get_total_flops()


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
