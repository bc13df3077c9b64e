"""metrics.jsonl read back (by the report, the sweep's display, the bench, the device check),
and cut back to a checkpoint's step when a run resumes.

A run appends one JSON object per line as it goes, so a reader may find the last line half
written (the run is writing it, or died while it did): such a line is never an error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from storm_wm.atomic import write_text_atomically
from storm_wm.errors import StormError


def numbered_records(
    path: Path, *, tail_bytes: int | None = None, strict: bool = False
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) of each JSON object of a metrics.jsonl, in file order; none if
    the file does not exist.

    A last line that does not parse is skipped; so is any other, or with `strict` it is
    reported (a StormError naming its line). `tail_bytes`: only the file's last bytes are read
    (a live view of a long run), and the line the window cuts is skipped; numbers then count
    from the window's first whole line.
    """
    return _parsed(_lines(path, tail_bytes), path if strict else None)


def records(path: Path, *, tail_bytes: int | None = None) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl, every line that does not parse skipped."""
    return [record for _, record in numbered_records(path, tail_bytes=tail_bytes)]


def truncate(path: Path, last_step: int) -> None:
    """Keeps the records of steps <= `last_step` (and drops a half-written last line)."""
    lines = _lines(path, None)
    if not lines:
        return  # no file
    kept = [
        lines[number - 1] + "\n"
        for number, record in _parsed(lines)
        if number < len(lines) and int(record.get("step", 0)) <= last_step
    ]
    write_text_atomically(path, "".join(kept))


def _lines(path: Path, tail_bytes: int | None) -> list[str]:
    """The file's lines, the last one without its newline (empty if the file ends with one)."""
    try:
        with Path(path).open("rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(0 if tail_bytes is None else max(0, size - tail_bytes))
            text = file.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    return lines[1:] if tail_bytes is not None and size > tail_bytes else lines


def _parsed(lines: list[str], report: Path | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """The JSON objects among `lines`. One that does not parse is skipped, or, unless it is the
    last line, reported as a line of the file `report`."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if report is not None and number < len(lines):
                raise StormError(
                    f"{report}:{number} is not a JSON object; fix or remove that line"
                ) from None
            continue
        if isinstance(record, dict):
            yield number, record
