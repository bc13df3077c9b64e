"""Read what `storm-wm train` and `storm-wm eval` leave in a run directory.

A run contributes one final score, the `mean` of its `eval.json`, and one learning curve, the
`env/episode_return` entries of its `metrics.jsonl` against `step`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from storm_wm.analysis.scores import is_finite_number
from storm_wm.errors import StormError
from storm_wm.hints import command
from storm_wm.logs.records import numbered_records, records

EPISODE_RETURN = "env/episode_return"


BENCHMARK_EPISODE_FRAMES = 108_000  # as storm_wm.evaluation (not imported: it needs torch)
_CHECKPOINT_NAME = re.compile(r"^step_(\d+)\.ckpt$")  # as storm_wm.persistence.checkpoint


@dataclass(frozen=True)
class RunResult:
    """One training run as the report sees it: its eval.json, the episodes its metrics.jsonl
    logged, and the last step it reached."""

    path: Path
    game: str
    seed: int | None
    score: float  # the eval mean: the run's final score
    step: int | None  # the checkpoint step that was evaluated
    preset: str | None
    protocol: str | None
    bookkeeping: str  # "whole" for evaluations written before the field existed
    episode_frames: int | None  # env.max_episode_frames of the run, if known
    partial: bool  # the evaluation was cut short by Ctrl-C
    episode_steps: NDArray[np.int64]  # (episodes,) environment step at which each episode ended
    episode_returns: NDArray[np.float64]  # (episodes,), none without a metrics.jsonl
    last_step: int | None  # newest step of its checkpoints and metrics.jsonl

    @property
    def capped(self) -> bool:
        """Episodes were cut below the benchmark's: not comparable with published scores."""
        return self.episode_frames is not None and self.episode_frames < BENCHMARK_EPISODE_FRAMES

    @property
    def capped_reason(self) -> str:
        return (
            f"episodes capped at {self.episode_frames:,} frames; the benchmark plays up to "
            f"{BENCHMARK_EPISODE_FRAMES:,}"
        )

    @property
    def method_key(self) -> tuple[str, str, str, bool]:
        """Runs with equal keys are seeds of one method: same preset, protocol, bookkeeping
        and comparability. Unknown parts (older eval.json files) read as "?"."""
        return (self.preset or "?", self.protocol or "?", self.bookkeeping, not self.capped)

    @property
    def stale(self) -> bool:
        """The run trained past the checkpoint its eval.json scored."""
        step, last_step = self.step, self.last_step
        return step is not None and last_step is not None and last_step > step


def has_eval(path: Path) -> bool:
    return (Path(path) / "eval.json").is_file()


def _run_config(path: Path) -> dict:
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return config if isinstance(config, dict) else {}


def _typed(value: object, kind: type, default: Any = None) -> Any:
    """`value` if it is a `kind` (a bool is no int), else `default`: older eval.json files lack
    fields, and a hand-edited one may hold anything."""
    return value if isinstance(value, kind) and not isinstance(value, bool) else default


def _read_eval(path: Path) -> dict[str, Any]:
    """`path/eval.json`, its game and mean checked so that a typo fails loudly."""
    eval_path = path / "eval.json"
    if not eval_path.is_file():
        nested = [child for child in path.iterdir() if has_eval(child)]
        hint = (
            f"; it holds run directories ({len(nested)}), pass those instead (e.g. {path}/*)"
            if nested
            else f"; evaluate it first with `{command('eval', path)}`"
        )
        raise StormError(f"{path} has no eval.json{hint}")
    try:
        record = json.loads(eval_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StormError(
            f"{eval_path} is not valid JSON ({error}); re-run `{command('eval', path)}`"
        ) from None
    if not isinstance(record, dict):
        raise StormError(f"{eval_path} must be a JSON object; re-run `{command('eval', path)}`")
    game, mean = record.get("game"), record.get("mean")
    if not isinstance(game, str) or not game:
        raise StormError(f"{eval_path} has no 'game' name; re-run `{command('eval', path)}`")
    if not is_finite_number(mean):
        raise StormError(
            f"{eval_path} has no finite 'mean' score; re-run `{command('eval', path)}`"
        )
    return record


def last_step(path: Path) -> int | None:
    """The newest step the run reached: its newest checkpoint or metrics.jsonl record."""
    steps = []
    checkpoints = path / "checkpoints"
    if checkpoints.is_dir():
        steps += [
            int(match.group(1))
            for child in checkpoints.iterdir()
            if (match := _CHECKPOINT_NAME.match(child.name))
        ]
    logged = records(path / "metrics.jsonl")
    steps += [record["step"] for record in logged if isinstance(record.get("step"), int)]
    return max(steps) if steps else None


def load_episode_returns(path: Path) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Steps and returns of the episodes logged in a metrics.jsonl file, in file order.

    A last line without its newline is skipped rather than rejected: a run still training may be
    halfway through writing it. Any other line that is not JSON is reported.
    """
    steps: list[int] = []
    returns: list[float] = []
    for number, record in numbered_records(path, strict=True):
        if EPISODE_RETURN not in record:
            continue
        step, episode_return = record.get("step"), record[EPISODE_RETURN]
        if not isinstance(step, int | float) or not isinstance(episode_return, int | float):
            raise StormError(f"{path}:{number} needs a numeric 'step' and '{EPISODE_RETURN}'")
        steps.append(int(step))
        returns.append(float(episode_return))
    return np.asarray(steps, dtype=np.int64), np.asarray(returns, dtype=np.float64)


def load_run(path: str | Path) -> RunResult:
    """Load a run directory; raise StormError if it is missing or has no usable eval.json."""
    path = Path(path)
    if not path.is_dir():
        raise StormError(f"{path} is not a directory: pass run directories or score files")
    record = _read_eval(path)
    config = _run_config(path)
    env = _typed(config.get("env"), dict, {})
    frames = record.get("max_episode_frames")
    if not isinstance(frames, int):
        frames = env.get("max_episode_frames")  # an older eval.json: the run's config has it
    steps, returns = load_episode_returns(path / "metrics.jsonl")  # none without the file
    return RunResult(
        path=path,
        game=record["game"],
        seed=_typed(record.get("seed"), int),
        score=float(record["mean"]),
        step=_typed(record.get("step"), int),
        preset=_typed(record.get("preset", config.get("preset")), str),
        protocol=_typed(record.get("protocol", env.get("protocol")), str),
        bookkeeping=_typed(record.get("bookkeeping"), str, "whole"),
        episode_frames=_typed(frames, int),
        partial=record.get("partial") is True,
        episode_steps=steps,
        episode_returns=returns,
        last_step=last_step(path),
    )
