"""Checkpoint writes on a background thread, so serialising and fsyncing never stall training.

The training thread captures the state (every tensor copied to host memory, which on CUDA must
happen there, between two training steps) and hands the rest to `CheckpointWriter.submit`:
serialisation, the replay chunk, the atomic write, fsync and pruning, in that order, on the
writer's thread. At most one write is in flight: `submit` first waits for the previous one, so a
slow disk slows training down instead of piling copies up in memory. A write that failed raises
its one-line StormError on the training thread, at the next `submit` or at `wait` (the end of
the run), which waits for the last write to be complete on disk.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch


def host_copy(value: Any) -> Any:
    """`value` with every tensor copied to host memory and every array copied: a snapshot that
    later training steps, which update parameters and buffers in place, cannot change."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, Mapping):
        copied = {key: host_copy(item) for key, item in value.items()}
        if isinstance(value, OrderedDict):  # a state_dict: keep its version `_metadata`
            copied = OrderedDict(copied)
            if hasattr(value, "_metadata"):
                copied._metadata = value._metadata
        return copied
    if isinstance(value, list | tuple):
        return type(value)(host_copy(item) for item in value)
    return value


class CheckpointWriter:
    """Runs write jobs one at a time on a background thread (or inline with `background=False`).

    `submit(job)` waits for the job before it, re-raises that job's error if it failed, then
    starts `job`; `wait()` waits for the last one and re-raises its error. Use it as a context
    manager so that the last write is complete (or its error raised) before the run ends.
    """

    def __init__(self, background: bool = True) -> None:
        self.background = background
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.completed = 0
        """Jobs that finished without an error."""

    def submit(self, job: Callable[[], None]) -> None:
        self.wait()
        if not self.background:
            job()
            self.completed += 1
            return
        self._thread = threading.Thread(
            target=self._run, args=(job,), name="storm-wm checkpoint writer", daemon=True
        )
        self._thread.start()

    def _run(self, job: Callable[[], None]) -> None:
        try:
            job()
            self.completed += 1
        except BaseException as error:  # handed to the training thread, raised there
            self._error = error

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> None:
        """Blocks until the write in flight is on disk; raises its error if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None:
            raise error

    def __enter__(self) -> CheckpointWriter:
        return self

    def __exit__(self, *exc) -> None:
        # A failed last write is the more important news than an exception already in flight
        # (the non-finite stop's message, for one, promises that this checkpoint exists).
        self.wait()
