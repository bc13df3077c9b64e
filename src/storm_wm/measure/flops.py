"""FLOP counts from PyTorch's FLOP counter: every matrix product, forward and backward."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

T = TypeVar("T")


def _cpu_attention_formulas() -> dict:
    """On the CPU, attention runs as `_scaled_dot_product_flash_attention_for_cpu`, which the
    FLOP counter does not list; it does the products the CUDA flash kernel does."""
    aten = torch.ops.aten
    formulas = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        formulas[aten._scaled_dot_product_flash_attention_for_cpu] = _attention_forward
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        formulas[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _attention_backward
    return formulas


def _attention_forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _attention_backward(
    grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs
) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def count_flops(function: Callable[[], T]) -> tuple[T, int]:
    """Runs `function` once under the FLOP counter; returns its result and the FLOPs it did.

    A multiply-add counts as two FLOPs; elementwise work (activations, norms, the optimizer) is
    not counted, as is usual for achieved-FLOP/s figures.
    """
    counter = FlopCounterMode(display=False, custom_mapping=_cpu_attention_formulas())
    with counter:
        result = function()
    return result, counter.get_total_flops()
