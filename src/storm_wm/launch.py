"""Starting `storm-wm` as a subprocess (the sweep's runs, the bench's concurrent runs, the
device check's stages), and reading the last line it logged."""

from __future__ import annotations

import ctypes
import signal
import sys
from pathlib import Path

_PR_SET_PDEATHSIG = 1
# Loaded before any fork: a child must not load a library while another thread of its parent
# (a sweep's slots) may hold the loader's lock.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def storm_wm_argv(*arguments: str) -> list[str]:
    """The command line of `storm-wm ARGUMENTS` with this interpreter and this package."""
    return [sys.executable, "-m", "storm_wm.cli", *arguments]


def die_with_parent() -> None:
    """In a child, before it runs (`preexec_fn`): SIGTERM when the thread that started it
    dies, even by SIGKILL, so that no run outlives a killed sweep or check. Linux only;
    elsewhere a no-op."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def last_line(log_path: Path, offset: int = 0) -> str:
    """The last non-blank line of a log from byte `offset` on (at most 300 characters); empty
    if there is none or the log cannot be read."""
    try:
        with Path(log_path).open("rb") as log:
            log.seek(offset)
            text = log.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
