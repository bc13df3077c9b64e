"""Learning curves over seeds: episode returns binned on a step grid shared by all runs.

Episodes end at different steps in different runs, so runs cannot be averaged point by point.
Each run is first averaged within bins of a common step grid; the curve is then the mean over
runs of those bin averages, with a Student-t interval over runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from storm_wm.analysis.stats import t_interval


@dataclass(frozen=True)
class LearningCurve:
    """One game's curve. Arrays are (bins,), NaN where no run (for bounds: < 2 runs) has data."""

    game: str
    steps: NDArray[np.float64]  # bin centres
    mean: NDArray[np.float64]
    low: NDArray[np.float64]
    high: NDArray[np.float64]
    runs: NDArray[np.int64]  # number of runs with an episode in the bin
    method: str = ""  # whose runs (the report's method label)


def bin_learning_curve(
    game: str,
    runs: Sequence[tuple[NDArray[np.int64], NDArray[np.float64]]],
    bins: int = 40,
    method: str = "",
) -> LearningCurve | None:
    """Bin each run's (episode steps, episode returns) on [0, last step]; None without episodes.

    The bin count drops to the fewest episodes any run has, so that sparse runs (a short test
    run) do not leave most bins empty.
    """
    runs = [(steps, returns) for steps, returns in runs if len(steps) > 0]
    if not runs:
        return None
    last_step = max(int(steps.max()) for steps, _ in runs)
    bins = max(1, min(bins, min(len(steps) for steps, _ in runs)))
    edges = np.linspace(0.0, max(last_step, 1), bins + 1)
    run_means = np.full((len(runs), bins), np.nan)  # (runs, bins)
    for index, (steps, returns) in enumerate(runs):
        bin_of_episode = np.clip(np.searchsorted(edges, steps, side="right") - 1, 0, bins - 1)
        counts = np.bincount(bin_of_episode, minlength=bins)
        totals = np.bincount(bin_of_episode, weights=returns, minlength=bins)
        filled = counts > 0
        run_means[index, filled] = totals[filled] / counts[filled]
    mean = np.full(bins, np.nan)
    low = np.full(bins, np.nan)
    high = np.full(bins, np.nan)
    present = ~np.isnan(run_means)
    for column in range(bins):
        values = run_means[present[:, column], column]
        if values.size:
            mean[column] = values.mean()
        interval = t_interval(values)
        if interval is not None:
            low[column], high[column] = interval
    centres = (edges[:-1] + edges[1:]) / 2.0
    return LearningCurve(game, centres, mean, low, high, present.sum(axis=0), method)
