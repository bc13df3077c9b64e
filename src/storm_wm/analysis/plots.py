"""The report's figures as PNG files, drawn with matplotlib's Agg backend.

Figures are built without pyplot and rendered by an Agg canvas of their own, so making a report
needs no display and leaves matplotlib's global backend and figure registry alone.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from storm_wm.analysis.report import SAME_GAMES, Report
from storm_wm.analysis.stats import METRIC_LABELS
from storm_wm.text import plural

DPI = 120


def _colors(count: int) -> list[tuple[float, float, float, float]]:
    """Distinct colours for `count` methods: tab10, or tab20 past ten so none repeats."""
    palette = colormaps["tab10" if count <= 10 else "tab20"]
    return [palette(index % palette.N) for index in range(count)]


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=DPI)
    return path


def _seeds(runs: np.ndarray) -> str:
    return plural(int(runs.max()), "seed")


def plot_learning_curves(report: Report, path: Path) -> Path:
    """One panel per game: each method's mean episode return over seeds against steps, its
    t-interval shaded; a legend names the methods when there are several."""
    games = list(dict.fromkeys(curve.game for curve in report.curves))
    methods = list(dict.fromkeys(curve.method for curve in report.curves))
    colors = dict(zip(methods, _colors(len(methods)), strict=True))
    columns = min(4, len(games))
    rows = math.ceil(len(games) / columns)
    figure = _figure(4.0 * columns, 3.0 * rows)
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis, game in zip(axes.flat, games, strict=False):
        curves = [curve for curve in report.curves if curve.game == game]
        for curve in curves:
            color = colors[curve.method]
            # markers: a curve with a single point (one bin) would otherwise draw nothing
            axis.plot(
                curve.steps,
                curve.mean,
                color=color,
                marker="o",
                markersize=3,
                label=f"{curve.method} ({_seeds(curve.runs)})",
            )
            axis.fill_between(
                curve.steps, curve.low, curve.high, color=color, alpha=0.25, linewidth=0
            )
        if len(methods) > 1:
            axis.set_title(game)
            axis.legend(fontsize="small")
        else:
            axis.set_title(f"{game} ({_seeds(curves[0].runs)})")
        axis.set_xlabel("environment step")
        axis.set_ylabel("episode return")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(games) :]:
        axis.set_visible(False)
    title = report.primary.label if len(methods) <= 1 else ", ".join(methods)
    figure.suptitle(f"{title}: learning curves")
    return _save(figure, path)


def plot_aggregate_intervals(report: Report, path: Path) -> Path:
    """One row per metric, one horizontal interval per method, as in rliable's figures."""
    rows = [row for row in report.aggregates if row.scope == SAME_GAMES]
    figure = _figure(7.0, 0.9 + 0.45 * len(rows) * len(METRIC_LABELS))
    axes = figure.subplots(len(METRIC_LABELS), 1, squeeze=False)
    positions = np.arange(len(rows))[::-1]  # first method on top
    colors = _colors(len(rows))
    for axis, (metric, label) in zip(axes[:, 0], METRIC_LABELS.items(), strict=True):
        for position, row, color in zip(positions, rows, colors, strict=True):
            estimate = row.estimates[metric]
            axis.plot(
                [estimate.low, estimate.high],
                [position, position],
                color=color,
                lw=6,
                alpha=0.6,
                solid_capstyle="butt",
            )
            axis.plot([estimate.point], [position], marker="|", color="black", markersize=14)
        axis.set_yticks(positions, [row.method for row in rows])
        axis.set_ylim(-0.7, len(rows) - 0.3)
        axis.set_title(label, loc="left")
        axis.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel(f"human-normalized score (over {len(report.covered_games)} games)")
    return _save(figure, path)


def _bar(report: Report, method: str, game: str) -> tuple[float, float, float]:
    """(height, error below, error above) of one bar: NaN height where the method lacks the game,
    no error bar without an interval."""
    summary = report.summary(method, game)
    if summary is None or summary.human_normalized is None:
        return math.nan, 0.0, 0.0
    height = summary.human_normalized
    if summary.hns_ci_low is None or summary.hns_ci_high is None:
        return height, 0.0, 0.0
    return height, height - summary.hns_ci_low, summary.hns_ci_high - height


def plot_per_game_scores(report: Report, path: Path) -> Path:
    """Grouped bars: the HNS of each method's per-game mean, on the primary method's games."""
    games = list(report.covered_games)
    methods = [report.primary.label] + [
        method.label for method in report.others if set(games) & set(method.normalized_games)
    ]
    width = 0.8 / len(methods)
    positions = np.arange(len(games))
    colors = _colors(len(methods))
    figure = _figure(min(24.0, max(6.0, 2.0 + 0.15 * len(games) * len(methods))), 4.0)
    axis = figure.subplots()
    for index, method in enumerate(methods):
        bars = np.array([_bar(report, method, game) for game in games])  # (games, 3)
        axis.bar(
            positions + (index - (len(methods) - 1) / 2) * width,
            bars[:, 0],
            width,
            yerr=bars[:, 1:].T if index == 0 else None,  # only the primary has seeds to show
            capsize=3,
            label=method,
            color=colors[index],
        )
    axis.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="human")
    rotated = len(games) > 6
    axis.set_xticks(
        positions, games, rotation=45 if rotated else 0, ha="right" if rotated else "center"
    )
    axis.set_ylabel("human-normalized score")
    axis.legend(fontsize="small")
    axis.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def write_plots(report: Report, out_dir: Path) -> list[Path]:
    """The plots the report has data for: curves need metrics.jsonl, the others an Atari game."""
    written = []
    if report.curves:
        written.append(plot_learning_curves(report, out_dir / "learning_curves.png"))
    if report.covered_games:
        written.append(plot_aggregate_intervals(report, out_dir / "aggregate_intervals.png"))
        written.append(plot_per_game_scores(report, out_dir / "per_game_hns.png"))
    return written
