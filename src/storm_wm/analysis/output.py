"""Write a computed report to a directory: report.md, the CSV tables and the PNG plots."""

from __future__ import annotations

from pathlib import Path

from storm_wm.analysis.markdown import render_markdown
from storm_wm.analysis.plots import write_plots
from storm_wm.analysis.report import Report
from storm_wm.analysis.tables import write_tables


def write_report(report: Report, out_dir: str | Path) -> list[Path]:
    """Write everything into `out_dir` (created if needed); return the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = write_tables(report, out_dir)
    plots = write_plots(report, out_dir)
    markdown_path = out_dir / "report.md"
    markdown_path.write_text(render_markdown(report, [path.name for path in plots]))
    return [markdown_path, *tables, *plots]
