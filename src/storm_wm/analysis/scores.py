"""Published per-seed scores and human normalization.

A *score table* maps a game name to a list of final scores, one per run (seed). The published
tables of STORM and its peers ship as package data (see `data/reference_scores/SOURCES.md`), so a
report can compare against them offline; users may also pass their own file in the same format.
"""

from __future__ import annotations

import json
import math
from functools import cache
from importlib import resources
from pathlib import Path

from storm_wm.errors import StormError

ScoreTable = dict[str, list[float]]

# How each method is written in papers, for tables and plot legends.
REFERENCE_LABELS: dict[str, str] = {
    "storm": "STORM",
    "dreamerv3": "DreamerV3",
    "iris": "IRIS",
    "delta_iris": "Delta-IRIS",
    "diamond": "DIAMOND",
    "rem": "REM",
    "m3": "M3",
    "twm": "TWM",
    "spr": "SPR",
    "simple": "SimPLe",
    "drq_eps": "DrQ(eps)",
    "efficientzero": "EfficientZero",
}
REFERENCE_METHODS: tuple[str, ...] = tuple(REFERENCE_LABELS)


def parse_score_table(data: object, source: str) -> ScoreTable:
    """Check that `data` is {game: [score, ...]} with finite numbers, and return it as floats.

    `source` names the file in the error message, so a user can find and fix it.
    """
    if not isinstance(data, dict) or not data:
        raise StormError(
            f"{source} is not a score file: expected a JSON object mapping each game name "
            'to a list of per-seed scores, e.g. {"Pong": [20.1, 18.0]}'
        )
    table: ScoreTable = {}
    for game, scores in data.items():
        if not isinstance(scores, list) or not scores:
            raise StormError(
                f"{source}: the scores of {game!r} must be a non-empty list, one number per seed"
            )
        if not all(is_finite_number(score) for score in scores):
            raise StormError(f"{source}: the scores of {game!r} must all be finite numbers")
        table[str(game)] = [float(score) for score in scores]
    return table


def is_finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def load_score_file(path: str | Path) -> ScoreTable:
    """Read a user's score file (same format as the published ones) and validate it.

    Game names are matched as `storm-wm train --game` matches them ("pong", "MsPacMan" and
    "ms_pacman" are Pong and MsPacman); an unknown name fails with the closest valid ones.
    """
    from storm_wm.envs.catalog import resolve_game  # gymnasium and ale-py: only when needed

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise StormError(f"{path} does not exist: pass a run directory or a score file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StormError(f"{path} is not a readable JSON score file ({error})") from None
    table: ScoreTable = {}
    spelled: dict[str, str] = {}
    for game, scores in parse_score_table(data, str(path)).items():
        try:
            name = resolve_game(game).name
        except StormError as error:
            raise StormError(f"{path}: {error}") from None
        if name in table:
            raise StormError(
                f"{path}: {spelled[name]!r} and {game!r} are both {name}; merge their scores"
            )
        table[name] = scores
        spelled[name] = game
    return table


@cache
def _load_package_table(name: str) -> ScoreTable:
    text = resources.files("storm_wm").joinpath(f"data/reference_scores/{name}.json").read_text()
    return parse_score_table(json.loads(text), f"package data {name}.json")


def load_reference(name: str) -> ScoreTable:
    """The published per-seed scores of a reference method (one of `REFERENCE_METHODS`)."""
    if name not in REFERENCE_METHODS:
        raise StormError(
            f"unknown reference method {name!r}: choose from {', '.join(REFERENCE_METHODS)}"
        )
    return {game: list(scores) for game, scores in _load_package_table(name).items()}


def random_and_human(game: str) -> tuple[float, float] | None:
    """The published (random, human) scores of `game`; None outside the Atari 100k games."""
    random_scores = _load_package_table("random")
    human_scores = _load_package_table("human")
    if game not in random_scores or game not in human_scores:
        return None
    return random_scores[game][0], human_scores[game][0]


def has_normalizers(game: str) -> bool:
    """Whether `game` has published random and human scores (the 26 Atari 100k games)."""
    return random_and_human(game) is not None


def human_normalized(game: str, score: float) -> float | None:
    """(score - random) / (human - random) on `game`; None for games without normalizers.

    Only the Atari 100k games have published random and human scores; a toy environment has
    no meaningful normalization, so callers show its raw score and leave it out of aggregates.
    """
    normalizers = random_and_human(game)
    if normalizers is None:
        return None
    random_score, human_score = normalizers
    return (score - random_score) / (human_score - random_score)


def normalize_table(table: ScoreTable) -> ScoreTable:
    """The human-normalized scores of every game of `table` that has normalizers; others dropped."""
    return {
        game: [human_normalized(game, score) for score in scores]
        for game, scores in table.items()
        if has_normalizers(game)
    }
