"""Aggregate metrics over games, with stratified-bootstrap confidence intervals.

The metrics and intervals are those of Agarwal et al. 2021, "Deep RL at the edge of the
statistical precipice", as implemented in their library rliable:

- mean and median over games of the per-game mean over runs;
- IQM: the mean of all (run, game) scores after cutting 25 % from each end, with rliable's
  convention for a fractional count, `scipy.stats.trim_mean(x, 0.25)` (floor(0.25 N) per end);
- optimality gap (gamma = 1): the mean of max(0, 1 - x);
- 95 % percentile intervals from a stratified bootstrap: runs are resampled with replacement
  within each game, the set of games stays fixed;
- probability of improvement P(X > Y): the Mann-Whitney probability on each game (ties count
  one half), averaged over the games both methods cover.

Implementation: numpy and scipy here, not rliable at run time. rliable 1.2.0 imports and runs
under numpy 2.4 (tests/test_stats.py checks that every point estimate here equals rliable's on the
same data), but it does not serve the report: it takes one rectangular (runs x games) array,
whereas our seed counts may differ from game to game; its bootstrap draws from numpy's global
random state (`np.random.choice`), not from the generator it is given; and it resamples in a
Python loop, about 1.7 s per method for 5000 resamples, where this vectorized version takes
tens of milliseconds.

Ragged inputs: every metric takes a sequence of per-game arrays, the array of game g of shape
(..., runs_g); leading axes are bootstrap resamples. Mean and median average each game over its
own runs first, so every game weighs the same whatever its run count. The optimality gap is
likewise averaged per game, then over games: on rectangular data this equals rliable's mean over
all runs x games. The IQM pools all (run, game) scores, as rliable does, so on ragged data a game
with more runs contributes more scores to it; no padding is involved anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike, NDArray

Metric = Callable[[Sequence[NDArray[np.float64]]], NDArray[np.float64]]

# The footer of report.md: which code computed the statistics, and why not rliable.
STATISTICS_NOTE = (
    "Statistics: `storm_wm.analysis.stats`, a numpy/scipy implementation of the metrics of "
    "Agarwal et al. 2021 as defined in rliable (IQM: `scipy.stats.trim_mean(x, 0.25)`; "
    "optimality gap with gamma = 1; probability of improvement: per-game Mann-Whitney "
    "probability, ties one half, averaged over games; percentile bootstrap intervals). "
    "rliable 1.2.0 works with numpy 2.4 and the test suite checks that these point estimates "
    "equal rliable's, but it is not used at run time: it needs the same number of runs on every "
    "game, draws its bootstrap from numpy's global random state, and is about 20 times slower. "
    "Human and random scores, and the published per-seed scores, are package data of storm-wm "
    "(`storm_wm/data/reference_scores/`, sources in SOURCES.md there)."
)

# Bound on the scores held at once by one bootstrap chunk (resamples x runs), to cap memory.
_CHUNK_ELEMENTS = 2_000_000


@dataclass(frozen=True)
class IntervalEstimate:
    """A point estimate and the bounds of its confidence interval."""

    point: float
    low: float
    high: float


def _per_game(scores: Sequence[ArrayLike]) -> list[NDArray[np.float64]]:
    arrays = [np.asarray(runs, dtype=np.float64) for runs in scores]
    if not arrays or any(array.shape[-1] == 0 for array in arrays):
        raise ValueError("need at least one game, and at least one run on every game")
    return arrays


def aggregate_mean(scores: Sequence[ArrayLike]) -> NDArray[np.float64]:
    """Mean over games of each game's mean over runs. `scores[g]`: (..., runs_g) -> (...)."""
    game_means = np.stack([runs.mean(axis=-1) for runs in _per_game(scores)], axis=-1)
    return game_means.mean(axis=-1)


def aggregate_median(scores: Sequence[ArrayLike]) -> NDArray[np.float64]:
    """Median over games of each game's mean over runs. `scores[g]`: (..., runs_g) -> (...)."""
    game_means = np.stack([runs.mean(axis=-1) for runs in _per_game(scores)], axis=-1)
    return np.median(game_means, axis=-1)


def interquartile_mean(scores: Sequence[ArrayLike]) -> NDArray[np.float64]:
    """Mean of the middle half of all (run, game) scores pooled. (..., runs_g) -> (...).

    Robust to outlier games (unlike the mean) while using every run (unlike the median).
    """
    pooled = np.concatenate(_per_game(scores), axis=-1)
    return scipy.stats.trim_mean(pooled, proportiontocut=0.25, axis=-1)


def optimality_gap(scores: Sequence[ArrayLike], threshold: float = 1.0) -> NDArray[np.float64]:
    """How far scores fall short of `threshold` (human level), above it counting as zero.

    Per game the mean of max(0, threshold - x) over runs, then the mean over games.
    `scores[g]`: (..., runs_g) -> (...).
    """
    game_gaps = np.stack(
        [np.maximum(threshold - runs, 0.0).mean(axis=-1) for runs in _per_game(scores)], axis=-1
    )
    return game_gaps.mean(axis=-1)


METRICS: dict[str, Metric] = {
    "mean": aggregate_mean,
    "median": aggregate_median,
    "iqm": interquartile_mean,
    "optimality_gap": optimality_gap,
}

METRIC_LABELS: dict[str, str] = {
    "mean": "Mean",
    "median": "Median",
    "iqm": "IQM",
    "optimality_gap": "Optimality gap",
}


def _percentile_interval(draws: NDArray[np.float64], confidence: float) -> tuple[float, float]:
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(draws, [tail, 100.0 - tail])
    return float(low), float(high)


def stratified_bootstrap(
    scores: Mapping[str, Sequence[float]],
    metrics: Mapping[str, Metric] = METRICS,
    samples: int = 5000,
    seed: int | np.random.Generator = 0,
    confidence: float = 0.95,
) -> dict[str, IntervalEstimate]:
    """Each metric on `scores` ({game: per-run scores}) with a stratified-bootstrap interval.

    Resampling runs within each game answers "what if we repeated the runs with new seeds on
    these games", the uncertainty the paper asks every result to report.
    """
    per_game = _per_game([scores[game] for game in sorted(scores)])
    generator = np.random.default_rng(seed)
    draws: dict[str, list[NDArray[np.float64]]] = {name: [] for name in metrics}
    chunk = max(1, _CHUNK_ELEMENTS // sum(len(runs) for runs in per_game))
    for start in range(0, samples, chunk):
        size = min(chunk, samples - start)
        resampled = [  # each (size, runs_g)
            runs[generator.integers(0, len(runs), size=(size, len(runs)))] for runs in per_game
        ]
        for name, metric in metrics.items():
            draws[name].append(metric(resampled))
    estimates = {}
    for name, metric in metrics.items():
        low, high = _percentile_interval(np.concatenate(draws[name]), confidence)
        estimates[name] = IntervalEstimate(float(metric(per_game)), low, high)
    return estimates


def _mann_whitney_probability(
    runs_x: NDArray[np.float64], runs_y: NDArray[np.float64]
) -> NDArray[np.float64]:
    """P(X > Y) + P(X = Y) / 2 over all pairs of runs. (..., n), (..., m) -> (...).

    Computed from the Mann-Whitney U statistic: the sum of X's ranks in the pooled sample, less
    n (n + 1) / 2, counts the pairs X wins; average ranks make each tie count one half. Sorting
    n + m values beats comparing n x m pairs when both methods have 100 runs.
    """
    count_x, count_y = runs_x.shape[-1], runs_y.shape[-1]
    ranks = scipy.stats.rankdata(np.concatenate([runs_x, runs_y], axis=-1), axis=-1)
    wins = ranks[..., :count_x].sum(axis=-1) - count_x * (count_x + 1) / 2.0
    return wins / (count_x * count_y)


def _common_games(
    scores_x: Mapping[str, Sequence[float]], scores_y: Mapping[str, Sequence[float]]
) -> list[str]:
    games = sorted(set(scores_x) & set(scores_y))
    if not games:
        raise ValueError("the two methods share no game")
    return games


def probability_of_improvement(
    scores_x: Mapping[str, Sequence[float]], scores_y: Mapping[str, Sequence[float]]
) -> float:
    """Average over the common games of the probability that a run of X beats a run of Y.

    Unlike a difference of means, it says how often X is better, not by how much, so one game
    with huge scores cannot decide it.
    """
    games = _common_games(scores_x, scores_y)
    probabilities = [
        _mann_whitney_probability(*_per_game([scores_x[game], scores_y[game]])) for game in games
    ]
    return float(np.mean(probabilities))


def probability_of_improvement_interval(
    scores_x: Mapping[str, Sequence[float]],
    scores_y: Mapping[str, Sequence[float]],
    samples: int = 5000,
    seed: int | np.random.Generator = 0,
    confidence: float = 0.95,
) -> IntervalEstimate:
    """`probability_of_improvement` with a bootstrap interval.

    The runs of X and of Y are resampled independently within each game, as rliable's
    StratifiedIndependentBootstrap does, since the two methods' runs are unrelated.
    """
    games = _common_games(scores_x, scores_y)
    generator = np.random.default_rng(seed)
    draws = np.zeros(samples)
    for game in games:
        runs_x, runs_y = _per_game([scores_x[game], scores_y[game]])
        chunk = max(1, _CHUNK_ELEMENTS // (len(runs_x) + len(runs_y)))
        for start in range(0, samples, chunk):
            size = min(chunk, samples - start)
            resampled_x = runs_x[generator.integers(0, len(runs_x), size=(size, len(runs_x)))]
            resampled_y = runs_y[generator.integers(0, len(runs_y), size=(size, len(runs_y)))]
            draws[start : start + size] += _mann_whitney_probability(resampled_x, resampled_y)
    draws /= len(games)
    low, high = _percentile_interval(draws, confidence)
    return IntervalEstimate(probability_of_improvement(scores_x, scores_y), low, high)


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """Student-t confidence interval of the mean of `values`; None with fewer than two.

    With the handful of seeds a run gets, a t-interval is honest about the few degrees of
    freedom, where a bootstrap over 3 values would be far too narrow.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.size < 2:
        return None
    mean = float(array.mean())
    half_width = float(
        scipy.stats.t.ppf(0.5 + confidence / 2.0, df=array.size - 1)
        * array.std(ddof=1)
        / np.sqrt(array.size)
    )
    return mean - half_width, mean + half_width
