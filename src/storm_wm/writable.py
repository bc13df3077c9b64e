"""Check that an output file can be written before the work that produces it begins."""

from __future__ import annotations

import tempfile
from pathlib import Path

from storm_wm.errors import StormError


def check_writable(path: Path, option: str = "--out") -> None:
    """Raise a one-line StormError unless a file can be created at `path`.

    A real file is created and removed in the target directory: permission bits alone do not
    tell (root ignores them; a read-only mount does not show in them).
    """
    directory = path.parent
    if path.is_dir():
        raise StormError(f"cannot write {path}: it is a directory; give a file with {option} FILE")
    if not directory.is_dir():
        raise StormError(
            f"cannot write {path}: {directory} is not a directory; create it or pick another "
            f"{option} FILE"
        )
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=f".{path.name}.", suffix=".check"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise StormError(
            f"cannot write {path} ({reason}); make {directory} writable or pick another "
            f"{option} FILE"
        ) from None
