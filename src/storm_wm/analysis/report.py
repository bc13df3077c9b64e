"""Compute everything `storm-wm report` shows; `analysis.output` writes it out.

One method is *primary*: our runs when run directories are given (otherwise the first score
file). Its games fix the comparison: aggregates of the other methods are computed on the same
games, because a 2-game mean next to a 26-game mean says nothing. When the primary covers only
some games, the others' aggregates over all their games are listed as well, apart.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from storm_wm.analysis.curves import LearningCurve, bin_learning_curve
from storm_wm.analysis.runs import RunResult
from storm_wm.analysis.scores import (
    ScoreTable,
    has_normalizers,
    human_normalized,
    normalize_table,
)
from storm_wm.analysis.stats import (
    IntervalEstimate,
    probability_of_improvement_interval,
    stratified_bootstrap,
    t_interval,
)
from storm_wm.games import ATARI_100K_GAMES

SAME_GAMES = "same games"  # restricted to the primary method's games
ALL_GAMES = "all games"  # every game of the method with normalizers


@dataclass(frozen=True)
class Method:
    """Per-run final scores of one method: ours, a score file or a published reference."""

    label: str
    scores: ScoreTable  # game -> raw score of each run
    origin: str  # where the scores come from, for the report's inputs section
    capped: dict[str, str] = field(default_factory=dict)
    """Games whose scores may not stand beside published ones, with the reason (episodes
    capped below the benchmark's): no HNS, kept out of aggregates and plots."""
    runs: tuple[RunResult, ...] = ()  # the run directories behind `scores`, if any

    @property
    def normalized_games(self) -> tuple[str, ...]:
        """Its games with a human-normalized score: those with normalizers, less the capped."""
        return tuple(
            game
            for game in game_order(self.scores)
            if has_normalizers(game) and game not in self.capped
        )


@dataclass(frozen=True)
class GameSummary:
    """One method on one game: raw mean over runs, its t-interval, and the same in HNS."""

    method: str
    game: str
    runs: int
    mean: float
    std: float  # sample standard deviation over runs (0 with one run)
    ci_low: float | None  # None with one run
    ci_high: float | None
    human_normalized: float | None  # None for games without normalizers
    hns_ci_low: float | None
    hns_ci_high: float | None


@dataclass(frozen=True)
class AggregateRow:
    """Aggregate metrics of one method's human-normalized scores over a set of games."""

    method: str
    scope: str  # SAME_GAMES or ALL_GAMES
    games: tuple[str, ...]
    runs_per_game: tuple[int, int]  # (fewest, most)
    estimates: dict[str, IntervalEstimate]  # by metric name of stats.METRICS


@dataclass(frozen=True)
class ImprovementRow:
    """P(primary > other) on the games both cover, with its bootstrap interval."""

    method_x: str
    method_y: str
    games: tuple[str, ...]
    estimate: IntervalEstimate


@dataclass(frozen=True)
class Report:
    """Everything the report shows, computed once and rendered by markdown, CSV and plots."""

    primary: Method
    others: tuple[Method, ...]
    runs: tuple[RunResult, ...]
    per_game: tuple[GameSummary, ...]
    covered_games: tuple[str, ...]  # primary's games that have normalizers
    unnormalized_games: tuple[str, ...]  # primary's games without (left out of aggregates)
    aggregates: tuple[AggregateRow, ...]
    improvements: tuple[ImprovementRow, ...]
    curves: tuple[LearningCurve, ...]  # per game, one per method with runs
    bootstrap_samples: int
    seed: int

    def summary(self, method: str, game: str) -> GameSummary | None:
        """The per-game summary of `method` on `game`, if it has one."""
        for row in self.per_game:
            if row.method == method and row.game == game:
                return row
        return None


def game_order(games: Collection[str]) -> tuple[str, ...]:
    """Atari 100k games in the papers' order, then any other game alphabetically."""
    atari = [game for game in ATARI_100K_GAMES if game in games]
    return tuple(atari + sorted(set(games) - set(ATARI_100K_GAMES)))


def summarize_game(
    method: str, game: str, scores: Sequence[float], normalize: bool = True
) -> GameSummary:
    """Mean, standard deviation and t-interval over runs, raw and (if `normalize`)
    human-normalized."""
    values = np.asarray(scores, dtype=np.float64)
    mean = float(values.mean())
    low, high = t_interval(values) or (None, None)

    def hns(score: float | None) -> float | None:
        return human_normalized(game, score) if normalize and score is not None else None

    return GameSummary(
        method=method,
        game=game,
        runs=int(values.size),
        mean=mean,
        std=float(values.std(ddof=1)) if values.size > 1 else 0.0,
        ci_low=low,
        ci_high=high,
        human_normalized=hns(mean),
        hns_ci_low=hns(low),
        hns_ci_high=hns(high),
    )


def _generator(seed: int, label: str, scope: str) -> np.random.Generator:
    """A bootstrap stream per (method, scope), so a method's intervals do not change with the
    set of other methods in the report."""
    return np.random.default_rng([seed, zlib.crc32(label.encode()), zlib.crc32(scope.encode())])


def _aggregate(
    method: Method, scope: str, games: Sequence[str], samples: int, seed: int
) -> AggregateRow:
    normalized = normalize_table({game: method.scores[game] for game in games})
    run_counts = [len(normalized[game]) for game in games]
    estimates = stratified_bootstrap(
        normalized, samples=samples, seed=_generator(seed, method.label, scope)
    )
    return AggregateRow(
        method.label, scope, tuple(games), (min(run_counts), max(run_counts)), estimates
    )


def build_report(
    primary: Method,
    others: Sequence[Method],
    bootstrap_samples: int = 5000,
    seed: int = 0,
    curve_bins: int = 40,
) -> Report:
    """Compute per-game summaries, aggregates, probabilities of improvement and curves.

    A method's `capped` games get no HNS and stay out of aggregates and comparisons; learning
    curves are drawn for each method with runs, on the primary method's games.
    """
    methods = (primary, *others)
    per_game = [
        summarize_game(method.label, game, method.scores[game], normalize=game not in method.capped)
        for method in methods
        for game in game_order(method.scores)
    ]
    primary_games = game_order(primary.scores)
    covered = primary.normalized_games
    aggregates: list[AggregateRow] = []  # every method on the same games, then on all theirs
    apart: list[AggregateRow] = []
    improvements: list[ImprovementRow] = []
    if covered:
        aggregates.append(_aggregate(primary, SAME_GAMES, covered, bootstrap_samples, seed))
        for method in others:
            everything = method.normalized_games
            same = [game for game in covered if game in everything]
            if same:
                aggregates.append(_aggregate(method, SAME_GAMES, same, bootstrap_samples, seed))
                estimate = probability_of_improvement_interval(
                    normalize_table({game: primary.scores[game] for game in same}),
                    normalize_table({game: method.scores[game] for game in same}),
                    samples=bootstrap_samples,
                    seed=_generator(seed, f"{primary.label}>{method.label}", SAME_GAMES),
                )
                improvements.append(
                    ImprovementRow(primary.label, method.label, tuple(same), estimate)
                )
            if everything and set(everything) != set(covered):
                apart.append(_aggregate(method, ALL_GAMES, everything, bootstrap_samples, seed))

    curves = []
    for game in primary_games:
        for method in methods:
            runs = [
                (run.episode_steps, run.episode_returns) for run in method.runs if run.game == game
            ]
            curve = bin_learning_curve(game, runs, bins=curve_bins, method=method.label)
            if curve is not None:
                curves.append(curve)

    return Report(
        primary=primary,
        others=tuple(others),
        runs=tuple(run for method in methods for run in method.runs),
        per_game=tuple(per_game),
        covered_games=covered,
        unnormalized_games=tuple(game for game in primary_games if not has_normalizers(game)),
        aggregates=(*aggregates, *apart),
        improvements=tuple(improvements),
        curves=tuple(curves),
        bootstrap_samples=bootstrap_samples,
        seed=seed,
    )
