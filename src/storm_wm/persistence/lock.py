"""One process at a time per directory: a run being trained, a sweep being driven.

The lock is the kernel's (`flock` on a lock file): a holder killed in any way, even by SIGKILL,
releases it without cleanup, so a stale lock file is simply taken over by the next process.
A holder that ends (normally, by an error or by a signal) also removes the file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from storm_wm.errors import StormError


@contextlib.contextmanager
def directory_lock(directory: Path, name: str, refusal: str) -> Iterator[None]:
    """Holds `directory/name` while the block runs; raises StormError if another process does.

    `refusal` is the error message, with `{holder}` replaced by the holder's pid ("pid 1234").
    The directory must exist. Without flock (Windows) the block runs unguarded.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = Path(directory) / name
    while True:
        try:
            file = path.open("a+")
        except OSError as error:
            raise StormError(f"cannot create the lock file {path}: {error.strerror}") from None
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "another process"
            file.close()
            raise StormError(refusal.replace("{holder}", holder)) from None
        # The previous holder removes the file as it ends: if it did so between our open and our
        # flock, we hold a lock on a deleted file that a third process would not see. Retry.
        try:
            current = os.stat(path)
            opened = os.fstat(file.fileno())
            same = (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino)
        except FileNotFoundError:
            same = False
        if same:
            break
        file.close()
    try:
        file.seek(0)
        file.truncate()
        file.write(f"pid {os.getpid()}\n")
        file.flush()
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # before unlocking: a waiting process then sees a new file
        file.close()  # releases the flock
