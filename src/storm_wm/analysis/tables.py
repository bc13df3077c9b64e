"""The report's numbers as CSV files, one row per fact, for spreadsheets and further analysis.

Missing values (an interval with one run, HNS of a game without normalizers) are empty cells.
Numbers are written with full precision; report.md rounds them for reading.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from storm_wm.analysis.report import Report
from storm_wm.analysis.scores import human_normalized


def _cell(value: object) -> object:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows([_cell(value) for value in row] for row in rows)
    return path


def write_tables(report: Report, out_dir: Path) -> list[Path]:
    """per_game.csv, aggregates.csv, probability_of_improvement.csv, and, with run directories,
    runs.csv and learning_curves.csv."""
    written = [
        _write_csv(
            out_dir / "per_game.csv",
            [
                "method",
                "game",
                "runs",
                "mean",
                "std",
                "ci_low",
                "ci_high",
                "human_normalized",
                "hns_ci_low",
                "hns_ci_high",
            ],
            (
                [
                    row.method,
                    row.game,
                    row.runs,
                    row.mean,
                    row.std,
                    row.ci_low,
                    row.ci_high,
                    row.human_normalized,
                    row.hns_ci_low,
                    row.hns_ci_high,
                ]
                for row in report.per_game
            ),
        ),
        _write_csv(
            out_dir / "aggregates.csv",
            [
                "method",
                "scope",
                "games",
                "runs_min",
                "runs_max",
                "metric",
                "point",
                "ci_low",
                "ci_high",
            ],
            (
                [
                    row.method,
                    row.scope,
                    len(row.games),
                    *row.runs_per_game,
                    metric,
                    estimate.point,
                    estimate.low,
                    estimate.high,
                ]
                for row in report.aggregates
                for metric, estimate in row.estimates.items()
            ),
        ),
        _write_csv(
            out_dir / "probability_of_improvement.csv",
            ["method_x", "method_y", "games", "probability", "ci_low", "ci_high"],
            (
                [
                    row.method_x,
                    row.method_y,
                    len(row.games),
                    row.estimate.point,
                    row.estimate.low,
                    row.estimate.high,
                ]
                for row in report.improvements
            ),
        ),
    ]
    if report.runs:
        written.append(
            _write_csv(
                out_dir / "runs.csv",
                ["path", "game", "seed", "score", "human_normalized", "episodes_logged"],
                (
                    [
                        str(run.path),
                        run.game,
                        run.seed,
                        run.score,
                        human_normalized(run.game, run.score),
                        len(run.episode_returns),
                    ]
                    for run in report.runs
                ),
            )
        )
    if report.curves:
        written.append(
            _write_csv(
                out_dir / "learning_curves.csv",
                ["method", "game", "step", "mean", "ci_low", "ci_high", "runs"],
                (
                    [curve.method, curve.game, *map(float, (step, mean, low, high)), int(runs)]
                    for curve in report.curves
                    for step, mean, low, high, runs in zip(
                        curve.steps, curve.mean, curve.low, curve.high, curve.runs, strict=True
                    )
                ),
            )
        )
    return written
