"""`--deterministic`: only deterministic kernels, so the same run gives the same weights.

With it (and the RNG states a checkpoint carries), a run interrupted and resumed on the CPU ends
with exactly the weights of the same run left alone. On CUDA it also needs cuBLAS's fixed
workspace, set here before the first cuBLAS call; some kernels get slower, and an operation
with no deterministic CUDA kernel warns instead of stopping a run hours in (`warn_only`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """Turns deterministic algorithms on for the block (and back to what they were after)."""
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
