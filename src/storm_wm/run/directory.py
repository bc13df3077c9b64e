"""A run's directory: its default name, and one process at a time creating or training it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from storm_wm.config import Config
from storm_wm.envs import resolve_game
from storm_wm.errors import StormError
from storm_wm.hints import command
from storm_wm.persistence.lock import directory_lock
from storm_wm.text import run_name

RUN_LOCK = ".run.lock"


def default_run_dir(config: Config) -> Path:
    """`runs/<game>_<preset>_seed<seed>`, with the game as resolved: `--game pong` and
    `--game Pong` are one run."""
    game = resolve_game(config.env.game).name
    return Path("runs") / run_name(game, config.preset, f"seed{config.seed}")


def refuse_existing_run(run_dir: Path) -> None:
    """Refuses to reuse a run directory: it would mix two runs' metrics and checkpoints."""
    if (run_dir / "config.json").exists():
        raise StormError(
            f"{run_dir} already holds a run (left untouched); continue it with "
            f"`{command('train', '--resume', run_dir)}` or choose another --run-dir"
        )


def run_lock(run_dir: Path):
    """Held while a process trains the run: a second `train` on it is refused, naming the first."""
    refusal = (
        f"{run_dir} is being trained by another storm-wm process ({{holder}}); wait for it to "
        "end or stop it (Ctrl-C or kill PID: it saves a checkpoint first), then resume"
    )
    return directory_lock(run_dir, RUN_LOCK, refusal)


@contextlib.contextmanager
def opened(run_dir: Path, new: Config | None) -> Iterator[None]:
    """Holds the run's lock for the block. A `new` run's directory is created first, and its
    config.json written once the lock is held (refused if another process started a run there
    meanwhile)."""
    if new is not None:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StormError(f"cannot create run directory {run_dir}: {error.strerror}") from None
    with run_lock(run_dir):
        if new is not None:
            refuse_existing_run(run_dir)
            new.save(run_dir / "config.json")
        yield
