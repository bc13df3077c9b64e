"""SIGINT and SIGTERM ask training to stop after the current step, with a checkpoint.

A preempted machine sends SIGTERM and waits a little before SIGKILL; Ctrl-C sends SIGINT. The
first of either only sets `requested`: the loop finishes its step (never half an update), writes
a checkpoint and returns. A second one gets the previous handler, so a user can still force
an exit (Ctrl-C twice raises KeyboardInterrupt).

The first signal is acknowledged at once on stderr: a paper-sized step can take a minute on a
CPU, and silence would look like a hang. The handler writes with `os.write` on the descriptor,
not `print`: a handler runs between two bytecodes of the main thread, possibly inside a
`print` to the same buffered stream, which Python refuses to re-enter.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from types import FrameType

from storm_wm.training.loop import LoopState, Part

HANDLED = (signal.SIGINT, signal.SIGTERM)


ACKNOWLEDGEMENT = (
    "\nstorm-wm: {name} received: stopping after the current step and saving a checkpoint "
    "(press Ctrl-C again to stop at once, without saving)\n"
)


class StopSignals(Part):
    """Context manager: while active, `requested` becomes the signal's name on the first one,
    and as a part of the loop, `state.stopped_by` after the step it arrived in."""

    def __init__(self, announce_to: int | None = 2) -> None:
        """`announce_to`: the file descriptor the acknowledgement goes to (None: none)."""
        self.requested: str | None = None
        self.previous: dict[int, object] = {}
        self.announce_to = announce_to

    def __enter__(self) -> StopSignals:
        # Handlers can only be installed from the main thread (not, e.g., in a worker thread).
        if threading.current_thread() is threading.main_thread():
            for number in HANDLED:
                previous = signal.signal(number, self._handle)
                self.previous[number] = signal.SIG_DFL if previous is None else previous
        return self

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.requested is None:
            self.requested = signal.Signals(number).name
            if self.announce_to is not None:
                message = ACKNOWLEDGEMENT.format(name=self.requested)
                with contextlib.suppress(OSError):
                    os.write(self.announce_to, message.encode())
            return
        signal.signal(number, self.previous.pop(number, signal.SIG_DFL))
        os.kill(os.getpid(), number)

    def __exit__(self, *exc) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        self.previous.clear()

    def step_done(self, state: LoopState, warming_up: bool) -> None:
        state.stopped_by = self.requested
