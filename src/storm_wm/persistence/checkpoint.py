"""Checkpoint files: versioned, checksummed, written atomically, loaded without running code.

A checkpoint `RUN_DIR/checkpoints/step_<step>.ckpt` is three parts:

1. the magic line `storm-wm checkpoint\\n` (anything else is not a storm-wm checkpoint);
2. one line of JSON, the header: `format_version`, `payload_bytes`, the payload's `sha256`, and a
   summary (`step`, `game`, `num_actions`, `replay_total`) readable without loading the payload;
3. the payload: `torch.save` of a dict holding only tensors and plain containers.

The checksum is verified before anything is unpickled, so a truncated or bit-flipped file fails
with a one-line reason (and resuming falls back to an older checkpoint) instead of loading
garbage; the payload is unpickled with `weights_only=True`, so opening a checkpoint from a
stranger cannot run code. See docs/resume.md for what the payload holds.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import pickle
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from storm_wm.atomic import write_atomically
from storm_wm.errors import StormError
from storm_wm.hints import command

FORMAT_VERSION = 2
MAGIC = b"storm-wm checkpoint\n"
_HEADER_LIMIT = 1 << 16
_NAME = re.compile(r"^step_(\d+)\.ckpt$")
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


class CorruptCheckpointError(StormError):
    """The file is damaged (truncated, flipped bytes, not a checkpoint): an older one may do."""


class UnsafeCheckpointError(CorruptCheckpointError):
    """The payload holds objects whose unpickling could run code: refused, an older one may do."""


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"step_{step:09d}.ckpt"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint in the run, oldest first."""
    directory = checkpoint_dir(run_dir)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def encode_checkpoint(state: dict[str, Any], summary: dict[str, Any]) -> list[bytes]:
    """The file's bytes: magic, header line (with the payload's checksum), payload."""
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buffer)
    payload = buffer.getbuffer()
    header = {
        "format_version": FORMAT_VERSION,
        "payload_bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
        **summary,
    }
    return [MAGIC, json.dumps(header).encode("utf-8") + b"\n", payload]


def save_checkpoint(
    run_dir: Path, step: int, state: dict[str, Any], summary: dict[str, Any] | None = None
) -> Path:
    """Writes `state` as the checkpoint of `step`: temporary file, fsync, rename.

    On failure (disk full, read-only disk) the temporary file is removed, every earlier
    checkpoint is left as it was, and the error names the newest one still intact.
    """
    path = checkpoint_path(run_dir, step)
    parts = encode_checkpoint({"step": step, **state}, {"step": step, **(summary or {})})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, parts)
    except OSError as error:
        raise StormError(write_failure_message(run_dir, f"checkpoint {path}", error)) from None
    return path


def write_failure_message(run_dir: Path, what: str, error: OSError) -> str:
    """One line: what could not be written, why, that the previous checkpoint is intact, and
    how to continue; on a full disk, that keeping fewer checkpoints frees space for good."""
    reason = error.strerror or str(error)
    checkpoints = list_checkpoints(run_dir)
    kept = (
        f"the checkpoint of step {checkpoints[-1][0]} is intact"
        if checkpoints
        else "no earlier checkpoint was written"
    )
    if error.errno == errno.ENOSPC:
        sizes = []
        for _, path in checkpoints:
            with contextlib.suppress(OSError):  # pruned meanwhile
                sizes.append(path.stat().st_size)
        size = sum(sizes) // len(sizes) if sizes else 0
        each = f", {size / 1e6:.0f} MB each" if size >= 1e6 else ""
        on_disk = f" ({len(checkpoints)} on disk{each})" if checkpoints else ""
        return (
            f"cannot write {what}: {reason}; {kept}. Free disk space, or keep only the newest "
            f"checkpoint from now on{on_disk}: continue with "
            f"`{command('train', '--resume', run_dir, '--train.checkpoint_keep', '1')}`"
        )
    return (
        f"cannot write {what}: {reason}; {kept}. Free disk space (or make {run_dir} writable), "
        f"then continue with `{command('train', '--resume', run_dir)}`"
    )


def read_header(path: Path) -> dict[str, Any]:
    """The JSON header alone (cheap: the payload is not read)."""
    with _open(path) as file:
        return _read_header(file, path)


def _open(path: Path):
    try:
        return Path(path).open("rb")
    except FileNotFoundError:
        raise StormError(f"no checkpoint at {path}") from None
    except OSError as error:
        raise StormError(f"cannot read checkpoint {path}: {error.strerror}") from None


def _read_header(file, path: Path) -> dict[str, Any]:
    magic = file.read(len(MAGIC))
    if magic != MAGIC:
        if magic.startswith(b"PK\x03\x04"):
            raise CorruptCheckpointError(
                f"{path} is a plain torch file (checkpoint format 1, without a checksum); "
                "this storm-wm reads format 2 only: retrain, or load it with the older version"
            )
        raise CorruptCheckpointError(f"{path} is not a storm-wm checkpoint (no header)")
    line = file.readline(_HEADER_LIMIT)
    try:
        header = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CorruptCheckpointError(f"{path} has a damaged header") from None
    if not isinstance(header, dict) or header.get("format_version") != FORMAT_VERSION:
        version = header.get("format_version") if isinstance(header, dict) else None
        raise CorruptCheckpointError(
            f"{path} has checkpoint format {version}, expected {FORMAT_VERSION}"
        )
    return header


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Verifies the checksum, then unpickles weights-only: tensors and plain containers only."""
    path = Path(path)
    with _open(path) as file:
        header = _read_header(file, path)
        payload = file.read(int(header.get("payload_bytes", 0)) + 1)
    expected = int(header.get("payload_bytes", -1))
    if len(payload) != expected:
        raise CorruptCheckpointError(
            f"{path} is truncated ({len(payload)} of {expected} payload bytes)"
            if len(payload) < expected
            else f"{path} has bytes after its payload"
        )
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise CorruptCheckpointError(f"{path} is corrupt (its SHA-256 checksum does not match)")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = _GLOBAL.search(str(error))
        what = f" ({found.group(1)})" if found else ""
        raise UnsafeCheckpointError(
            f"refusing to load {path}: it holds Python objects{what} besides tensors and plain "
            "data, and unpickling them could run code; storm-wm never writes such objects, so "
            "the file was altered or made by other software: do not load it"
        ) from None
    except Exception as error:  # a checksum-valid file that torch cannot parse
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise CorruptCheckpointError(f"cannot read checkpoint {path}: {reason}") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CorruptCheckpointError(f"{path} does not hold a storm-wm training state")
    return state


def find_checkpoint(run_dir: Path, step: int | None = None) -> Path:
    """The checkpoint of `step`, or the newest one; a clear error when there is none."""
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise StormError(
            f"{run_dir} has no checkpoint yet; train it first (`{command('train', '...')}`)"
        )
    if step is None:
        return checkpoints[-1][1]
    for found_step, path in checkpoints:
        if found_step == step:
            return path
    steps = ", ".join(str(s) for s, _ in checkpoints)
    raise StormError(f"{run_dir} has no checkpoint at step {step}; available: {steps}")


def load_intact_checkpoint(
    run_dir: Path,
    step: int | None = None,
    warn: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> tuple[Path, dict[str, Any]]:
    """(path, state) of the checkpoint of `step`, or else of the newest one that verifies.

    Without `step`, a damaged or unsafe newest checkpoint is passed over with a warning naming it
    and the one before it is used: eval, dream and play always get intact weights when any exist.
    """
    if step is not None:
        path = find_checkpoint(run_dir, step)
        return path, load_checkpoint(path)
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        find_checkpoint(run_dir)  # raises the "no checkpoint yet" error
    skipped: list[str] = []
    for found_step, path in reversed(checkpoints):
        try:
            state = load_checkpoint(path)
        except CorruptCheckpointError as error:
            skipped.append(str(error))
            continue
        for reason in skipped:
            warn(f"storm-wm: warning: {reason}; using the checkpoint of step {found_step}")
        return path, state
    raise StormError(
        f"no intact checkpoint in {checkpoint_dir(run_dir)} ({len(skipped)} damaged; newest: "
        f"{skipped[0]})"
    )


def prune_checkpoints(run_dir: Path, keep: int) -> list[tuple[int, Path]]:
    """Deletes all but the newest `keep` checkpoints (0 keeps all); returns those kept."""
    checkpoints = list_checkpoints(run_dir)
    if keep <= 0 or len(checkpoints) <= keep:
        return checkpoints
    for _, path in checkpoints[:-keep]:
        with contextlib.suppress(OSError):
            path.unlink()
    return checkpoints[-keep:]
