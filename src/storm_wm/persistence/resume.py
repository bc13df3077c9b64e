"""Continuing a run: which config it may continue with, and which checkpoint to continue from.

A resumed run must be the same experiment: only the fields declared resumable
(`compatibility.RESUMABLE_FIELDS`) may change, and every other difference is refused by name.
A damaged checkpoint or replay chunk is set aside, never deleted, with one line saying what was
lost. docs/resume.md describes the whole protocol.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from storm_wm.atomic import remove_temporary_files, write_text_atomically
from storm_wm.config import Config, with_overrides
from storm_wm.envs import resolve_game
from storm_wm.errors import StormError
from storm_wm.hints import command
from storm_wm.persistence.checkpoint import (
    CorruptCheckpointError,
    checkpoint_dir,
    list_checkpoints,
    load_checkpoint,
)
from storm_wm.persistence.compatibility import (
    KEPT_ON_RESUME,
    RESUMABLE_FIELDS,
    check_checkpoint_matches,
    config_differences,
    flatten,
)
from storm_wm.persistence.replay_store import UNUSED, ReplayStore
from storm_wm.replay import ReplayBuffer
from storm_wm.text import plural


def load_run_config(run_dir: Path) -> Config:
    """The config a run was started with; a clear error if `run_dir` holds no run."""
    if not (Path(run_dir) / "config.json").is_file():
        raise StormError(
            f"{run_dir} holds no storm-wm run (no config.json) to resume; start one with "
            f"`{command('train', '--game', 'GAME', '--run-dir', run_dir)}`"
        )
    return Config.load(Path(run_dir) / "config.json")


RESUME_HISTORY = "resumes.jsonl"
"""RUN_DIR/resumes.jsonl: one JSON line per resume that changed a setting, saying which."""


def record_resume(run_dir: Path, saved: Config, requested: Config, step: int) -> list[str]:
    """Keeps the resume's lasting changes and records all of them; returns the lines to print.

    The changes to KEPT_ON_RESUME fields (the step budget, the number of checkpoints kept) go
    into config.json, so later resumes keep them; the other resumable fields changed on this
    command line (device, checkpoint interval, ...) apply to this process only, and config.json
    keeps the run's own. Each resume that changed anything appends one line to resumes.jsonl:
    the time, the step it resumed at, and both kinds of change as [before, after].
    """
    before, after = flatten(saved.to_dict()), flatten(requested.to_dict())
    changed = {
        name: [before.get(name), after.get(name)]
        for name in RESUMABLE_FIELDS
        if before.get(name) != after.get(name)
    }
    kept = {name: values for name, values in changed.items() if name in KEPT_ON_RESUME}
    once = {name: values for name, values in changed.items() if name not in KEPT_ON_RESUME}
    updated = with_overrides(saved, {name: new for name, (_, new) in kept.items()})
    game = resolve_game(saved.env.game).name  # "pong" in an older run's config.json: "Pong"
    if kept or game != saved.env.game:
        updated = with_overrides(updated, {"env.game": game})
        updated.save(run_dir / "config.json")
    if changed:
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "resumed_at_step": step,
            "kept_in_config": kept,
            "this_resume_only": once,
        }
        history = run_dir / RESUME_HISTORY
        previous = history.read_text(encoding="utf-8") if history.is_file() else ""
        try:
            write_text_atomically(history, previous + json.dumps(record) + "\n")
        except OSError as error:
            raise StormError(f"cannot write to run directory {run_dir}: {error.strerror}") from None

    def describe(changes: dict[str, list[Any]]) -> str:
        return "; ".join(f"{name} {old!r} -> {new!r}" for name, (old, new) in changes.items())

    lines = []
    if kept:
        lines.append(f"storm-wm: from now on (config.json updated): {describe(kept)}")
    if once:
        lines.append(
            f"storm-wm: for this resume only (config.json keeps the run's): {describe(once)}"
        )
    return lines


def check_resume_config(saved: Config, requested: Config, run_dir: Path) -> None:
    """Refuses to continue a run with a different config, naming every changed field."""
    differences = config_differences(saved.to_dict(), requested.to_dict(), ignore=RESUMABLE_FIELDS)
    if differences:
        raise StormError(
            f"cannot resume {run_dir} with a different config (run vs now): "
            f"{'; '.join(differences)}. Only the step budget (--steps) and bookkeeping "
            f"({', '.join(name for name in RESUMABLE_FIELDS if name != 'train.steps')}) may "
            "change: drop those options, or start a new run with another --run-dir"
        )


def select_checkpoint(
    run_dir: Path,
    config: Config,
    num_actions: int,
    replay: ReplayBuffer,
    replay_store: ReplayStore,
    warn: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> dict[str, Any] | None:
    """The newest good checkpoint, its replay buffer already restored; None if there is none.

    A mismatched checkpoint (another game, action count or architecture) is an error, not a
    reason to fall back: it means the run directory was tampered with.
    """
    remove_temporary_files(checkpoint_dir(run_dir))
    candidates = list_checkpoints(run_dir)
    if not candidates:
        if any(checkpoint_dir(run_dir).glob("*.corrupt")):
            raise StormError(
                f"every checkpoint in {checkpoint_dir(run_dir)} is damaged (renamed *.corrupt); "
                "start a new run with another --run-dir"
            )
        return None
    damaged: list[str] = []
    for step, path in reversed(candidates):
        try:
            checkpoint = load_checkpoint(path)
        except CorruptCheckpointError as error:  # its own bytes are bad (or unsafe): set aside
            damaged.append(str(error))
            with contextlib.suppress(OSError):
                path.rename(path.with_name(path.name + ".corrupt"))
            continue
        check_checkpoint_matches(checkpoint, config, path, num_actions=num_actions, only=None)
        for reason in damaged:
            warn(f"storm-wm: warning: {reason}; renamed it *.corrupt and resumed from step {step}")
        replay_state = checkpoint["replay"]
        total = int(replay_state["total"])
        first = replay_state.get("first")
        problem = replay_store.restore(replay, replay_state["chunks"], total, first)
        if problem is not None:
            # The weights are intact: never condemn them for the replay's sake (issue: eval and
            # dream would find no checkpoint). Continue with the replay that remains, and set
            # the chunks it cannot use aside: the next checkpoint lists only those it holds
            # (and the first step it holds), so the loss is reported this once.
            moved = replay_store.set_aside_unused(replay_state["chunks"])
            aside = (
                f"; moved the {plural(len(moved), 'unusable chunk')} to "
                f"{replay_store.directory / UNUSED} (delete it to free the space)"
                if moved
                else ""
            )
            expected = total - max(0, total - replay_store.capacity, first or 0)
            refill = (
                f"; below train.warmup_steps ({config.train.warmup_steps}), so the agent acts "
                "randomly and waits for updates until the buffer refills"
                if len(replay) < config.train.warmup_steps
                else ""
            )
            warn(
                f"storm-wm: warning: {problem}; the checkpoint of step {step} is intact and "
                f"resumes with the {len(replay)} replay steps that remain ({expected - len(replay)}"
                f" of {expected} lost{refill}){aside}; the run no longer matches one left alone "
                "exactly"
            )
        return checkpoint
    raise StormError(
        f"no usable checkpoint in {checkpoint_dir(run_dir)} ({len(damaged)} damaged, renamed "
        f"*.corrupt; newest: {damaged[0]}); start a new run with another --run-dir"
    )
