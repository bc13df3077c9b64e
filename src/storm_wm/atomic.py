"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never half.

The bytes go to `<name>.tmp` beside the target, are flushed and fsynced, and only then renamed
over the target; the directory is fsynced too so that the rename itself survives a power cut.
A failure (disk full, read-only disk) removes the temporary file and leaves the target as it was.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

TEMPORARY_SUFFIX = ".tmp"


def temporary_path(path: Path) -> Path:
    return path.with_name(path.name + TEMPORARY_SUFFIX)


def write_atomically(path: Path, parts: Iterable[bytes]) -> None:
    """Writes the concatenation of `parts` to `path` atomically; raises OSError on failure."""
    temporary = temporary_path(path)
    try:
        with temporary.open("wb") as file:
            for part in parts:
                file.write(part)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    fsync_directory(path.parent)


def write_text_atomically(path: Path, text: str) -> None:
    write_atomically(path, [text.encode("utf-8")])


def fsync_directory(directory: Path) -> None:
    """Makes renames and deletions in `directory` durable (a no-op where unsupported)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def remove_temporary_files(directory: Path) -> None:
    """Deletes `*.tmp` left by a process killed in the middle of a write."""
    if directory.is_dir():
        for leftover in directory.glob(f"*{TEMPORARY_SUFFIX}"):
            with contextlib.suppress(OSError):
                leftover.unlink()
