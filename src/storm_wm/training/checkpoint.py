"""Checkpoints: written atomically, loaded without executing code (weights-only unpickling)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from storm_wm.errors import StormError

FORMAT_VERSION = 1
_NAME = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"step_{step:09d}.pt"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint in the run, oldest first."""
    directory = checkpoint_dir(run_dir)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any]) -> Path:
    """Writes `state` for `step` via a temporary file, fsync and rename: never half a file."""
    path = checkpoint_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with temporary.open("wb") as file:
        torch.save({"format_version": FORMAT_VERSION, "step": step, **state}, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Loads with `weights_only=True`: tensors and plain containers only, no code runs."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise StormError(f"no checkpoint at {path}") from None
    except Exception as error:  # corrupt, truncated or unsafe files
        reason = str(error).splitlines()[0][:200]
        raise StormError(f"cannot load checkpoint {path}: {reason}") from None
    if state.get("format_version") != FORMAT_VERSION:
        raise StormError(
            f"{path} has checkpoint format {state.get('format_version')}, expected {FORMAT_VERSION}"
        )
    return state


def find_checkpoint(run_dir: Path, step: int | None = None) -> Path:
    """The checkpoint of `step`, or the newest one; a clear error when there is none."""
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise StormError(f"{run_dir} has no checkpoint yet; train it first (storm-wm train ...)")
    if step is None:
        return checkpoints[-1][1]
    for found_step, path in checkpoints:
        if found_step == step:
            return path
    steps = ", ".join(str(s) for s, _ in checkpoints)
    raise StormError(f"{run_dir} has no checkpoint at step {step}; available: {steps}")
