"""sweep.json: what the sweep is (its arguments) and where each run stands.

The arguments are compared on every re-run, the way a run's config is on `--resume`: re-running
with other games, seeds or train options in the same directory would mix two experiments. How
the sweep runs (backend, resources, retries) may change between invocations: starting on a
workstation and finishing on a cluster is a legitimate resume.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from storm_wm.atomic import write_text_atomically
from storm_wm.errors import StormError
from storm_wm.persistence.lock import directory_lock
from storm_wm.sweep.plan import SweepPlan

STATE_FILE = "sweep.json"
LOCK_FILE = ".sweep.lock"
FORMAT_VERSION = 1


@dataclass
class RunRecord:
    """One run's bookkeeping in sweep.json."""

    game: str
    seed: int
    status: str = "queued"
    """queued, running, retrying, finished, failed or interrupted; the files in the run
    directory stay the ground truth on re-runs."""
    attempts: int = 0
    """Attempts over every invocation of the sweep."""
    error: str | None = None
    """The last failed attempt's error line; cleared when the run finishes."""
    log: str | None = None
    """The log holding that error."""


def _describe(name: str, value: Any) -> str:
    if name == "train_options":
        return f"train options {' '.join(value) or '(none)'}"
    if isinstance(value, list):
        value = ",".join(str(item) for item in value)
    flag = "--" + name.replace("_", "-")
    return f"{flag} {value}" if value is not None else f"no {flag}"


class SweepState:
    """sweep.json, loaded or created; `save` writes it atomically after every change."""

    def __init__(self, path: Path, arguments: dict[str, Any], runs: dict[str, RunRecord]):
        self.path = path
        self.arguments = arguments
        self.runs = runs

    @classmethod
    def open(cls, plan: SweepPlan) -> SweepState:
        """Load the sweep in the plan's directory, refusing other arguments, or start a new one."""
        sweep_dir, arguments = plan.sweep_dir, plan.arguments
        path = sweep_dir / STATE_FILE
        records: dict[str, RunRecord] = {}
        if path.exists():
            try:
                data = json.loads(path.read_text())
                recorded, stored_runs = data["arguments"], data["runs"]
                records = {name: RunRecord(**record) for name, record in stored_runs.items()}
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise StormError(
                    f"{path} is unreadable ({error}); delete it to rebuild it from the run "
                    "directories (finished runs are still skipped)"
                ) from None
            for name, value in arguments.items():
                if recorded.get(name) != value:
                    before, now = _describe(name, recorded.get(name)), _describe(name, value)
                    raise StormError(
                        f"{sweep_dir} holds a sweep started with {before}, not {now}; "
                        "re-run with the same arguments or choose another --out"
                    )
        for run in plan.runs:
            records.setdefault(run.name, RunRecord(run.game, run.seed))
        return cls(path, arguments, records)

    def save(self) -> None:
        """Atomically: a killed sweep never leaves half a file."""
        data = {
            "format_version": FORMAT_VERSION,
            "arguments": self.arguments,
            "runs": {name: asdict(record) for name, record in self.runs.items()},
        }
        write_text_atomically(self.path, json.dumps(data, indent=2) + "\n")


@contextlib.contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """Hold the sweep directory: two sweeps driving the same runs would train each twice.

    The lock is the kernel's (flock, `persistence.lock`), so a killed sweep releases it.
    """
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StormError(f"cannot create sweep directory {sweep_dir}: {error.strerror}") from None
    refusal = (
        f"another storm-wm sweep ({{holder}}) is running in {sweep_dir}; "
        "wait for it to end or stop it first"
    )
    with directory_lock(sweep_dir, LOCK_FILE, refusal):
        yield
