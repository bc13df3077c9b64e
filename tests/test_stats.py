"""Aggregate metrics, bootstrap intervals and human normalization, checked by hand and against
the published figures of the reference scores shipped with the package
(src/storm_wm/data/reference_scores/SOURCES.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rliable import metrics as rliable_metrics

from storm_wm.analysis import stats
from storm_wm.analysis.scores import (
    REFERENCE_METHODS,
    human_normalized,
    load_reference,
    load_score_file,
    normalize_table,
)
from storm_wm.errors import StormError
from storm_wm.games import ATARI_100K_GAMES

# 3 games x 2 runs, worked by hand:
#   game means: A (0 + 1) / 2 = 0.5, B (2 + 4) / 2 = 3, C 0.5
#   mean = (0.5 + 3 + 0.5) / 3 = 4 / 3; median of {0.5, 0.5, 3} = 0.5
#   IQM: pooled sorted 0, 0.5, 0.5, 1, 2, 4; floor(0.25 * 6) = 1 cut per end -> (0.5+0.5+1+2)/4 = 1
#   optimality gap: max(0, 1 - x) = 1, 0 | 0, 0 | 0.5, 0.5 -> 2 / 6 = 1 / 3
HAND = {"A": [0.0, 1.0], "B": [2.0, 4.0], "C": [0.5, 0.5]}
HAND_GAMES = [HAND[game] for game in sorted(HAND)]


def test_aggregates_of_hand_example() -> None:
    assert stats.aggregate_mean(HAND_GAMES) == pytest.approx(4 / 3)
    assert stats.aggregate_median(HAND_GAMES) == pytest.approx(0.5)
    assert stats.interquartile_mean(HAND_GAMES) == pytest.approx(1.0)
    assert stats.optimality_gap(HAND_GAMES) == pytest.approx(1 / 3)


def test_interquartile_mean_trims_two_of_eight_values_from_each_end() -> None:
    # sorted: 1 2 | 3 4 5 7 | 10 100 -> (3 + 4 + 5 + 7) / 4 = 4.75
    assert stats.interquartile_mean([[10, 1, 7, 3, 100, 2, 5, 4]]) == pytest.approx(4.75)
    # 10 values: 0.25 * 10 = 2.5 rounds down to 2 per end (scipy's and rliable's convention):
    # 1 2 | 3 4 5 6 7 8 | 9 10 -> 5.5, where a fractional trim would weigh 3 and 8 by half
    assert stats.interquartile_mean([list(range(1, 11))]) == pytest.approx(5.5)


def test_optimality_gap_by_hand_on_ragged_games() -> None:
    # game 1: max(0, 1 - 1.5) = 0 and 1 - 0.2 = 0.8 -> 0.4; game 2: 1 - 0.9 = 0.1 -> 0.1
    # per game then over games: (0.4 + 0.1) / 2 = 0.25 (pooled would give 0.9 / 3 = 0.3)
    assert stats.optimality_gap([[1.5, 0.2], [0.9]]) == pytest.approx(0.25)
    # a different threshold: max(0, 2 - x) = 0.5, 1.8 | 1.1 -> (1.15 + 1.1) / 2
    assert stats.optimality_gap([[1.5, 0.2], [0.9]], threshold=2.0) == pytest.approx(1.125)


def test_ragged_games_weigh_the_same_in_mean_and_median() -> None:
    # game means 1.0 (one run) and 3.0 (three runs): mean 2.0, not the pooled 2.5
    ragged = [[1.0], [2.0, 3.0, 4.0]]
    assert stats.aggregate_mean(ragged) == pytest.approx(2.0)
    assert stats.aggregate_median(ragged) == pytest.approx(2.0)
    # IQM pools the four scores: 1 | 2 3 | 4 -> 2.5
    assert stats.interquartile_mean(ragged) == pytest.approx(2.5)


def test_probability_of_improvement_on_one_game_with_a_tie() -> None:
    # X = 1, 2, 3 against Y = 2, 0: six pairs; X wins (1,0) (2,0) (3,2) (3,0), ties (2,2),
    # loses (1,2) -> (4 + 1/2) / 6 = 0.75, and the reverse (1 + 1/2) / 6 = 0.25
    x, y = {"Pong": [1.0, 2.0, 3.0]}, {"Pong": [2.0, 0.0]}
    assert stats.probability_of_improvement(x, y) == pytest.approx(0.75)
    assert stats.probability_of_improvement(y, x) == pytest.approx(0.25)
    assert stats.probability_of_improvement(x, x) == pytest.approx(0.5)


def test_probability_of_improvement_averages_over_common_games_only() -> None:
    # Pong 0.75 (above), Breakout: 5 beats 4 -> 1.0; Alien only in X is ignored -> 0.875
    x = {"Pong": [1.0, 2.0, 3.0], "Breakout": [5.0], "Alien": [0.0]}
    y = {"Pong": [2.0, 0.0], "Breakout": [4.0]}
    assert stats.probability_of_improvement(x, y) == pytest.approx(0.875)


def test_t_interval_by_hand() -> None:
    # 1, 2, 3: mean 2, sample std 1, t(0.975, df=2) = 4.302653 -> 2 -+ 4.302653 / sqrt(3)
    low, high = stats.t_interval([1.0, 2.0, 3.0])
    assert (low, high) == pytest.approx((2 - 2.484138, 2 + 2.484138), abs=1e-6)
    assert stats.t_interval([5.0]) is None


def _spread_scores(runs: int, seed: int) -> dict[str, list[float]]:
    generator = np.random.default_rng(seed)
    return {f"game{index}": list(generator.normal(index, 1.0, runs)) for index in range(4)}


def test_bootstrap_interval_contains_point_and_shrinks_with_more_runs() -> None:
    few = stats.stratified_bootstrap(_spread_scores(3, seed=1), samples=1000, seed=0)
    many = stats.stratified_bootstrap(_spread_scores(30, seed=1), samples=1000, seed=0)
    for metric in stats.METRICS:
        for estimates in (few, many):
            assert estimates[metric].low <= estimates[metric].point <= estimates[metric].high
        assert many[metric].high - many[metric].low < few[metric].high - few[metric].low


def test_bootstrap_resamples_within_games() -> None:
    # every run of a game has the same score, so a resample within games changes nothing;
    # resampling runs across games would mix 0 and 1 and widen the interval
    constant = {"A": [0.0, 0.0, 0.0], "B": [1.0, 1.0, 1.0]}
    estimate = stats.stratified_bootstrap(constant, samples=200, seed=0)["mean"]
    assert (estimate.point, estimate.low, estimate.high) == (0.5, 0.5, 0.5)


def test_bootstrap_is_deterministic_with_a_seed() -> None:
    scores = _spread_scores(5, seed=2)
    first = stats.stratified_bootstrap(scores, samples=300, seed=7)
    assert stats.stratified_bootstrap(scores, samples=300, seed=7) == first
    assert stats.stratified_bootstrap(scores, samples=300, seed=8) != first
    other = _spread_scores(4, seed=3)
    interval = stats.probability_of_improvement_interval(scores, other, samples=300, seed=7)
    assert stats.probability_of_improvement_interval(scores, other, samples=300, seed=7) == interval
    assert interval.low <= interval.point <= interval.high


@pytest.mark.parametrize("method", ["storm", "spr", "efficientzero"])
def test_point_estimates_equal_rliable(method: str) -> None:
    normalized = normalize_table(load_reference(method))
    games = sorted(normalized)
    matrix = np.array([normalized[game] for game in games]).T  # (runs, games), rliable's layout
    per_game = [normalized[game] for game in games]
    assert stats.aggregate_mean(per_game) == pytest.approx(rliable_metrics.aggregate_mean(matrix))
    assert stats.aggregate_median(per_game) == pytest.approx(
        rliable_metrics.aggregate_median(matrix)
    )
    assert stats.interquartile_mean(per_game) == pytest.approx(
        rliable_metrics.aggregate_iqm(matrix)
    )
    assert stats.optimality_gap(per_game) == pytest.approx(
        rliable_metrics.aggregate_optimality_gap(matrix)
    )


def test_probability_of_improvement_equals_rliable() -> None:
    storm, iris = (normalize_table(load_reference(name)) for name in ("storm", "iris"))
    games = sorted(storm)
    expected = rliable_metrics.probability_of_improvement(
        np.array([storm[game] for game in games]).T, np.array([iris[game] for game in games]).T
    )
    assert stats.probability_of_improvement(storm, iris) == pytest.approx(expected)


def test_published_storm_figures() -> None:
    """README: STORM (file) mean 1.222, median 0.425, IQM 0.561 [0.51, 0.61], gap 0.472."""
    estimates = stats.stratified_bootstrap(
        normalize_table(load_reference("storm")), samples=5000, seed=0
    )
    assert round(estimates["mean"].point, 3) == 1.222
    assert round(estimates["median"].point, 3) == 0.425
    assert round(estimates["iqm"].point, 3) == 0.561
    assert round(estimates["optimality_gap"].point, 3) == 0.472
    assert estimates["iqm"].low == pytest.approx(0.51, abs=0.01)
    assert estimates["iqm"].high == pytest.approx(0.61, abs=0.01)


# (mean, median, IQM, optimality gap) from the table of the reference-scores README
PUBLISHED = {
    "dreamerv3": (1.124, 0.485, 0.487, 0.510),
    "iris": (1.046, 0.289, 0.501, 0.512),
    "delta_iris": (1.383, 0.594, 0.682, 0.443),
    "diamond": (1.459, 0.373, 0.641, 0.480),
    "rem": (1.222, 0.280, 0.673, 0.482),
    "twm": (0.956, 0.505, 0.459, 0.513),
}


@pytest.mark.parametrize("method", sorted(PUBLISHED))
def test_published_figures_of_other_methods(method: str) -> None:
    per_game = list(normalize_table(load_reference(method)).values())
    computed = (
        stats.aggregate_mean(per_game),
        stats.aggregate_median(per_game),
        stats.interquartile_mean(per_game),
        stats.optimality_gap(per_game),
    )
    assert [round(float(value), 3) for value in computed] == list(PUBLISHED[method])


def test_m3_is_a_reference_with_its_published_figures() -> None:
    """M3 (formerly Simulus): 164.5 % mean, 98.2 % median HNS and a 0.412 optimality gap from
    its per-seed file. Its IQM is published only as "about 0.96-0.99" (it depends on how the
    trimmed quarter is cut); rliable's cut, which ours equals, gives 0.990."""
    per_game = list(normalize_table(load_reference("m3")).values())
    assert {len(runs) for runs in per_game} == {5}
    computed = (
        stats.aggregate_mean(per_game),
        stats.aggregate_median(per_game),
        stats.interquartile_mean(per_game),
        stats.optimality_gap(per_game),
    )
    assert [round(float(value), 3) for value in computed] == [1.645, 0.982, 0.990, 0.412]


def test_human_normalized_by_hand() -> None:
    # Pong: random -20.7, human 14.6; Breakout: (16.1 - 1.7) / (30.5 - 1.7) = 14.4 / 28.8 = 0.5
    assert human_normalized("Pong", 14.6) == pytest.approx(1.0)
    assert human_normalized("Pong", -20.7) == pytest.approx(0.0)
    assert human_normalized("Breakout", 16.1) == pytest.approx(0.5)
    assert human_normalized("ToyCatch", 3.0) is None
    assert normalize_table({"Breakout": [16.1], "ToyCatch": [3.0]}) == {
        "Breakout": [pytest.approx(0.5)]
    }


def test_every_reference_covers_the_26_games() -> None:
    for method in REFERENCE_METHODS:
        assert sorted(load_reference(method)) == sorted(ATARI_100K_GAMES)
    assert {len(runs) for runs in load_reference("spr").values()} == {100}
    assert {len(runs) for runs in load_reference("efficientzero").values()} == {1}


def test_unknown_reference_lists_the_valid_names() -> None:
    with pytest.raises(StormError, match="choose from storm, dreamerv3, iris"):
        load_reference("muzero")


def test_score_file_is_validated(tmp_path) -> None:
    good = tmp_path / "mine.json"
    good.write_text(json.dumps({"Pong": [1, 2.5]}))
    assert load_score_file(good) == {"Pong": [1.0, 2.5]}
    for content in ('{"Pong": "high"}', '{"Pong": []}', "[1, 2]", "not json", '{"Pong": [NaN]}'):
        bad = tmp_path / "bad.json"
        bad.write_text(content)
        with pytest.raises(StormError, match="bad.json"):
            load_score_file(bad)
