"""The replay buffer on disk as append-only chunks, so a checkpoint never rewrites all of it.

`RUN_DIR/replay/chunk_<first>_<stop>.npz` holds the steps with global indices first..stop-1
(see `ReplayBuffer.total_added`). Each checkpoint first writes one chunk with the steps added
since the previous one, then lists, with their SHA-256 checksums, the chunks that rebuild its
buffer. A paper run thus writes about 30 MB of replay per checkpoint instead of 1.2 GB. Resuming
verifies each listed chunk, loads the newest `capacity` steps, and deletes chunks written after
the checkpoint (a process killed between the two writes leaves one behind).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from storm_wm.atomic import remove_temporary_files, write_atomically
from storm_wm.persistence.checkpoint import CorruptCheckpointError
from storm_wm.replay import ReplayBuffer

_NAME = re.compile(r"^chunk_(\d+)_(\d+)\.npz$")
_FIELDS = ("frames", "actions", "rewards", "terminations")
UNUSED = "unused"
"""`replay/unused/`: chunks set aside after a loss (see ReplayStore.set_aside_unused)."""


@dataclass(frozen=True)
class PendingChunk:
    """Copies of the steps first..stop-1, taken from the buffer, not yet on disk."""

    first: int
    stop: int
    arrays: dict[str, np.ndarray]


def chunk_name(first: int, stop: int) -> str:
    return f"chunk_{first:09d}_{stop:09d}.npz"


class ReplayStore:
    """Writes and reads one run's replay chunks; `chunks` are those written so far, oldest first."""

    def __init__(self, run_dir: Path, capacity: int) -> None:
        self.directory = Path(run_dir) / "replay"
        self.capacity = capacity
        self.chunks: list[dict[str, Any]] = []

    @property
    def flushed(self) -> int:
        """Global index of the first step not yet on disk."""
        return self.chunks[-1]["stop"] if self.chunks else 0

    def flush(self, replay: ReplayBuffer) -> None:
        """Appends the steps added since the last flush as one chunk (OSError if it cannot)."""
        pending = self.take(replay)
        if pending is not None:
            self.write(pending)

    def take(self, replay: ReplayBuffer) -> PendingChunk | None:
        """Copies the steps added since the last flush (None if there are none), to `write` them
        later, from another thread if need be: the buffer may go on changing meanwhile."""
        # Steps the ring already overwrote (checkpoint_every > capacity) are not needed anyway.
        first = max(self.flushed, replay.total_added - len(replay))
        stop = replay.total_added
        if first >= stop:
            return None
        return PendingChunk(first, stop, replay.steps(first, stop))

    def write(self, pending: PendingChunk) -> None:
        """Writes a chunk from `take` atomically and records it (OSError if it cannot)."""
        buffer = io.BytesIO()
        np.savez(buffer, **pending.arrays)
        data = buffer.getbuffer()
        self.directory.mkdir(parents=True, exist_ok=True)
        name = chunk_name(pending.first, pending.stop)
        write_atomically(self.directory / name, [data])
        sha256 = hashlib.sha256(data).hexdigest()
        self.chunks.append(
            {"name": name, "first": pending.first, "stop": pending.stop, "sha256": sha256}
        )

    def manifest(self, total: int) -> list[dict[str, Any]]:
        """The chunks that rebuild a buffer holding steps up to `total`: its newest `capacity`."""
        oldest = max(0, total - self.capacity)
        return [dict(c) for c in self.chunks if c["stop"] > oldest and c["first"] < total]

    def restore(
        self,
        replay: ReplayBuffer,
        manifest: list[dict[str, Any]],
        total: int,
        first: int | None = None,
    ) -> str | None:
        """Refills `replay` from the listed chunks, each checked against its checksum. A missing
        or damaged chunk is not fatal: `replay` then holds the steps of the intact chunks after
        the newest bad one (possibly none), and the problem is returned (None when every chunk
        was intact, and the buffer is then the full one).

        `first` is the oldest step the checkpoint's buffer held, when it held fewer than its
        capacity allows because a loss was found at an earlier resume: that loss is not
        reported again.
        """
        oldest = max(0, total - self.capacity, first or 0)
        loaded: list[tuple[dict[str, Any], dict[str, np.ndarray]]] = []
        problem, start = None, total
        for record in sorted(manifest, key=lambda chunk: chunk["first"], reverse=True):
            if start <= oldest:
                break
            if record["stop"] != start:
                problem = f"replay chunks leave a gap before step {start} in {self.directory}"
                break
            try:
                loaded.append((record, self._read(record)))
            except CorruptCheckpointError as error:
                problem = str(error)
                break
            start = record["first"]
        if problem is None and start > oldest:
            problem = f"replay chunks in {self.directory} start at step {start}, not {oldest}"
        replay.clear()
        replay.total_added = max(start, oldest)
        for record, arrays in reversed(loaded):
            skip = replay.total_added - record["first"]
            replay.extend(*(arrays[field][skip:] for field in _FIELDS))
        self.chunks = [dict(record) for record, _ in reversed(loaded)]
        return problem

    def _read(self, record: dict[str, Any]) -> dict[str, np.ndarray]:
        path = self.directory / record["name"]
        try:
            data = path.read_bytes()
        except OSError as error:
            reason = error.strerror or str(error)
            raise CorruptCheckpointError(f"replay chunk {path} cannot be read ({reason})") from None
        if hashlib.sha256(data).hexdigest() != record["sha256"]:
            raise CorruptCheckpointError(f"replay chunk {path} is corrupt (checksum mismatch)")
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            loaded = {field: arrays[field] for field in _FIELDS}
        if any(len(array) != record["stop"] - record["first"] for array in loaded.values()):
            raise CorruptCheckpointError(f"replay chunk {path} has the wrong number of steps")
        return loaded

    def set_aside_unused(self, manifest: list[dict[str, Any]]) -> list[str]:
        """Moves the listed chunks that the restored buffer does not use (damaged, or cut off by
        a damaged one) into `replay/unused/`, so that they neither take part in later resumes
        nor go unnoticed; returns their names. Nothing is deleted."""
        used = {chunk["name"] for chunk in self.chunks}
        moved = []
        for record in manifest:
            path = self.directory / record["name"]
            if record["name"] in used or not path.exists():
                continue
            with contextlib.suppress(OSError):
                (self.directory / UNUSED).mkdir(exist_ok=True)
                path.rename(self.directory / UNUSED / record["name"])
                moved.append(record["name"])
        return moved

    def discard_after(self, total: int) -> None:
        """Deletes chunks (and half-written files) holding steps at or after `total`."""
        remove_temporary_files(self.directory)
        self._delete(lambda first, stop: first >= total)

    def prune(self, needed_from: int) -> None:
        """Deletes chunks whose steps all precede `needed_from`: no kept checkpoint needs them."""
        self._delete(lambda first, stop: stop <= needed_from)

    def _delete(self, doomed: Callable[[int, int], bool]) -> None:
        """Deletes every chunk file, listed or not, whose steps `first..stop-1` are doomed."""
        if self.directory.is_dir():
            for path in self.directory.iterdir():
                if (match := _NAME.match(path.name)) and doomed(int(match[1]), int(match[2])):
                    with contextlib.suppress(OSError):
                        path.unlink()
        self.chunks = [chunk for chunk in self.chunks if not doomed(chunk["first"], chunk["stop"])]
