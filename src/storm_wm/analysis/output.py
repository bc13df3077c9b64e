"""Write a computed report to a directory: report.md, the CSV tables and the PNG plots.

The CSV files hold one row per fact at full precision, for spreadsheets and further analysis;
missing values (an interval with one run, HNS of a game without normalizers) are empty cells.
report.md rounds the same numbers for reading.
"""

from __future__ import annotations

import csv
import math
from dataclasses import astuple, fields
from pathlib import Path

from storm_wm.analysis.markdown import render_markdown
from storm_wm.analysis.report import GameSummary, Report
from storm_wm.analysis.scores import human_normalized
from storm_wm.extras import available

Table = tuple[list[str], list[list[object]]]  # header, rows


def _csv_tables(report: Report) -> dict[str, Table]:
    """Each CSV file by name; runs.csv and learning_curves.csv only with run directories."""
    tables = {
        "per_game.csv": (
            [field.name for field in fields(GameSummary)],
            [list(astuple(row)) for row in report.per_game],
        ),
        "aggregates.csv": (
            "method scope games runs_min runs_max metric point ci_low ci_high".split(),
            [
                [row.method, row.scope, len(row.games), *row.runs_per_game, metric]
                + list(astuple(estimate))
                for row in report.aggregates
                for metric, estimate in row.estimates.items()
            ],
        ),
        "probability_of_improvement.csv": (
            "method_x method_y games probability ci_low ci_high".split(),
            [
                [row.method_x, row.method_y, len(row.games), *astuple(row.estimate)]
                for row in report.improvements
            ],
        ),
    }
    if report.runs:
        tables["runs.csv"] = (
            "path game seed score human_normalized episodes_logged".split(),
            [
                [str(run.path), run.game, run.seed, run.score]
                + [human_normalized(run.game, run.score), len(run.episode_returns)]
                for run in report.runs
            ],
        )
    if report.curves:
        tables["learning_curves.csv"] = (
            "method game step mean ci_low ci_high runs".split(),
            [
                [curve.method, curve.game, *map(float, (step, mean, low, high)), int(runs)]
                for curve in report.curves
                for step, mean, low, high, runs in zip(
                    curve.steps, curve.mean, curve.low, curve.high, curve.runs, strict=True
                )
            ],
        )
    return tables


def _cell(value: object) -> object:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def write_report(report: Report, out_dir: str | Path) -> list[Path]:
    """Write everything into `out_dir` (created if needed); return the paths written. The plots
    need the `plots` extra (matplotlib): without it report.md says they were not drawn."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = _csv_tables(report)
    for name, (header, rows) in tables.items():
        with (out_dir / name).open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(header)
            writer.writerows([_cell(value) for value in row] for row in rows)
    plots = None
    if available("matplotlib"):
        from storm_wm.analysis.plots import write_plots

        plots = write_plots(report, out_dir)
    plot_names = None if plots is None else [path.name for path in plots]
    markdown_path = out_dir / "report.md"
    markdown_path.write_text(render_markdown(report, list(tables), plot_names))
    return [markdown_path, *(out_dir / name for name in tables), *(plots or [])]
