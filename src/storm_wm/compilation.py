"""torch.compile with an eager fallback: a function that compiles, or runs as written."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import torch

from storm_wm.device import compile_mode

RECORDS: list[dict] = []
"""What happened to each function compiled in this process, in order: `{"function",
"compiled": True, "first_call_seconds"}` once its first compiled call returned (the compile
itself, for a fresh graph), or `{"function", "compiled": False, "reason"}` when it fell back to
eager. A benchmark reads it to tell a compiled run from one that silently ran eagerly."""


class CompiledFunction:
    """`function` through torch.compile for `device`; eager after a one-line warning if
    compiling is unavailable or fails (no C++ compiler, an unsupported Python, a graph the
    compiler rejects). Falling back is safe because the functions compiled here draw no random
    numbers themselves (their sampling noise is an input) and change no state they are given.

    Compiled with `dynamic=False`: each function is called with fixed shapes (the imagination
    batch, the padded acting context), so one graph serves the whole run. Under CUDA graphs
    (`reduce-overhead`) the outputs live in memory the next call overwrites, so they are copied
    out; each call also starts a new graph step, since calls interleave with eager updates.
    """

    def __init__(self, function: Callable, device: torch.device, description: str) -> None:
        self.eager = function
        self.description = description
        self.mode = compile_mode(device)
        self.first_call = True
        self.compiled: Callable | None
        try:
            self.compiled = torch.compile(function, mode=self.mode, dynamic=False)
        except Exception as error:  # torch.compile refuses up front on unsupported Pythons
            self._fall_back(error)

    def _fall_back(self, error: BaseException) -> None:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        print(
            f"storm-wm: warning: torch.compile of {self.description} is unavailable ({reason}); "
            "running it eagerly",
            file=sys.stderr,
        )
        RECORDS.append({"function": self.description, "compiled": False, "reason": reason})
        self.compiled = None

    def __call__(self, *args):
        if self.compiled is None:
            return self.eager(*args)
        started = time.perf_counter()
        try:
            if self.mode == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()
            outputs = self.compiled(*args)
        except Exception as error:  # the compiler failed: eager computes the same function
            self._fall_back(error)
            return self.eager(*args)
        if self.first_call:
            self.first_call = False
            seconds = round(time.perf_counter() - started, 3)
            RECORDS.append(
                {"function": self.description, "compiled": True, "first_call_seconds": seconds}
            )
        if self.mode == "reduce-overhead":
            outputs = tuple(output.clone() for output in outputs)
        return outputs
