"""Read what `storm-wm train` and `storm-wm eval` leave in a run directory.

A run contributes one final score, the `mean` of its `eval.json`, and one learning curve, the
`env/episode_return` entries of its `metrics.jsonl` against `step`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from storm_wm.errors import StormError

EPISODE_RETURN = "env/episode_return"


@dataclass(frozen=True)
class RunResult:
    """One training run as the report sees it."""

    path: Path
    game: str
    seed: int | None
    score: float  # the eval mean: the run's final score
    episode_steps: NDArray[np.int64]  # (episodes,) environment step at which each episode ended
    episode_returns: NDArray[np.float64]  # (episodes,)
    has_metrics: bool  # False when metrics.jsonl is absent (an eval-only directory)


def _run_dirs_below(path: Path) -> list[Path]:
    return sorted(child for child in path.iterdir() if (child / "eval.json").is_file())


def load_eval(path: Path) -> tuple[str, int | None, float]:
    """(game, seed, mean score) from `path/eval.json`, checked so a typo fails loudly."""
    eval_path = path / "eval.json"
    if not eval_path.is_file():
        nested = _run_dirs_below(path)
        hint = (
            f"; it holds run directories ({len(nested)}), pass those instead (e.g. {path}/*)"
            if nested
            else "; run `storm-wm eval` on the run first"
        )
        raise StormError(f"{path} has no eval.json{hint}")
    try:
        record = json.loads(eval_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StormError(
            f"{eval_path} is not valid JSON ({error}); re-run `storm-wm eval`"
        ) from None
    if not isinstance(record, dict):
        raise StormError(f"{eval_path} must be a JSON object; re-run `storm-wm eval`")
    game, mean, seed = record.get("game"), record.get("mean"), record.get("seed")
    if not isinstance(game, str) or not game:
        raise StormError(f"{eval_path} has no 'game' name; re-run `storm-wm eval`")
    if not isinstance(mean, int | float) or isinstance(mean, bool) or not math.isfinite(mean):
        raise StormError(f"{eval_path} has no finite 'mean' score; re-run `storm-wm eval`")
    if not isinstance(seed, int) or isinstance(seed, bool):
        seed = None
    return game, seed, float(mean)


def load_episode_returns(path: Path) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Steps and returns of the episodes logged in a metrics.jsonl file, in file order.

    A last line without its newline is skipped rather than rejected: a run still training may be
    halfway through writing it.
    """
    text = path.read_text()
    lines = text.split("\n")
    steps: list[int] = []
    returns: list[float] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break  # a partly written last line
            raise StormError(
                f"{path}:{number} is not a JSON object; fix or remove that line"
            ) from None
        if not isinstance(record, dict) or EPISODE_RETURN not in record:
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
    game, seed, score = load_eval(path)
    metrics_path = path / "metrics.jsonl"
    if metrics_path.is_file():
        steps, returns = load_episode_returns(metrics_path)
    else:
        steps, returns = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    return RunResult(path, game, seed, score, steps, returns, metrics_path.is_file())
