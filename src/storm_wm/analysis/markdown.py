"""report.md: the report's tables and plots with the sentences needed to read them correctly.

Each section is a list of blocks (a heading, a paragraph, a table), and blocks are separated by
one blank line; an empty block is left out, so a section with nothing to say adds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from storm_wm.analysis.report import ALL_GAMES, SAME_GAMES, AggregateRow, Report, game_order
from storm_wm.analysis.stats import METRIC_LABELS, STATISTICS_NOTE, IntervalEstimate
from storm_wm.games import ATARI_100K_GAMES

PLOT_CAPTIONS: dict[str, str] = {
    "learning_curves.png": (
        "Learning curves: `env/episode_return` from each run's metrics.jsonl against environment "
        "steps, averaged per run within the bins of a step grid common to all runs of a game, "
        "then the mean over seeds with a 95 % t-interval (shaded); one curve per method of "
        "run directories."
    ),
    "aggregate_intervals.png": (
        "Aggregate interval estimates on the same games: one row per metric, one 95 % "
        "stratified-bootstrap interval per method (the tick is the point estimate)."
    ),
    "per_game_hns.png": (
        "Human-normalized score of each method's per-game mean; error bars on the primary "
        "method are its 95 % t-interval over seeds."
    ),
}


def _raw(value: float | None) -> str:
    """A raw game score: one decimal, or three below 1 so that small-scale games stay legible."""
    if value is None:
        return "—"
    return f"{value:.1f}" if abs(value) >= 1.0 else f"{value:.3f}"


def _hns(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _interval(estimate: IntervalEstimate) -> str:
    return f"{estimate.point:.3f} [{estimate.low:.3f}, {estimate.high:.3f}]"


def _table(header: Sequence[str], alignments: str, rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table; `alignments` has one letter per column, l (left) or r (right)."""
    rule = ["---:" if alignment == "r" else "---" for alignment in alignments]
    return "\n".join("| " + " | ".join(line) + " |" for line in [header, rule, *rows])


def _inputs(report: Report) -> list[str]:
    methods = (report.primary, *report.others)
    inputs = ["Inputs:"] + [
        f"- **{method.label}**: {sum(map(len, method.scores.values()))} runs on "
        f"{len(method.scores)} games, {method.origin}."
        for method in methods
    ]
    excluded = [
        f"**{method.label} on {', '.join(game_order(method.capped))} is not comparable with "
        f"published scores** ({'; '.join(sorted(set(method.capped.values())))}): no "
        "human-normalized score, left out of the aggregates and plots (`--include-capped` puts "
        "it in)."
        for method in methods
        if method.capped
    ]
    return [f"# Atari 100k report: {report.primary.label}", "\n".join(inputs), "\n".join(excluded)]


def _per_game(report: Report) -> list[str]:
    primary = report.primary.label
    rows = []
    for summary in report.per_game:
        if summary.method != primary:
            continue
        interval = f"[{_raw(summary.ci_low)}, {_raw(summary.ci_high)}]"
        row = [
            summary.game,
            _raw(summary.mean),
            "—" if summary.ci_low is None else interval,
            str(summary.runs),
            _hns(summary.human_normalized),
        ]
        for method in report.others:
            other = report.summary(method.label, summary.game)
            row.append(_raw(other.mean) if other else "—")
        rows.append(row)
    header = ["game", f"{primary} mean", "95% CI (t)", "seeds", "HNS"]
    header += [method.label for method in report.others]
    blocks = [
        "## Per-game scores",
        f"**{primary}**: mean over seeds of each run's final score, its 95 % Student-t interval "
        "over seeds (none with a single seed), the number of seeds, and the human-normalized "
        "score (HNS) of the mean, (score − random) / (human − random). The other columns give "
        "each method's published mean over its runs, in raw game score.",
        _table(header, "lrrrr" + "r" * len(report.others), rows),
    ]
    if report.unnormalized_games:
        blocks.append(
            f"No random and human scores exist for {', '.join(report.unnormalized_games)}: no "
            "HNS, and left out of the aggregates."
        )
    return blocks


def _aggregate_table(rows: Sequence[AggregateRow]) -> str:
    body = []
    for row in rows:
        fewest, most = row.runs_per_game
        runs = str(fewest) if fewest == most else f"{fewest}–{most}"
        intervals = [_interval(row.estimates[metric]) for metric in METRIC_LABELS]
        body.append([row.method, str(len(row.games)), runs, *intervals])
    header = ["method", "games", "runs per game", *METRIC_LABELS.values()]
    return _table(header, "lrr" + "l" * len(METRIC_LABELS), body)


def _aggregates(report: Report) -> list[str]:
    blocks = ["## Aggregate human-normalized scores"]
    primary, covered = report.primary.label, report.covered_games
    if not covered:
        reason = (
            f"{primary}'s games with published scores were played with capped episodes (see above)"
            if report.primary.capped
            else f"None of {primary}'s games has random and human scores"
        )
        return [*blocks, f"{reason}, so there are no human-normalized aggregates."]
    blocks.append(
        "Point estimates with 95 % stratified-bootstrap percentile intervals "
        f"({report.bootstrap_samples} resamples of the runs within each game, seed "
        f"{report.seed}). Mean and median: over games, of each game's mean over runs. IQM: the "
        "mean of the middle 50 % of all runs × games. Optimality gap: the mean of "
        "max(0, 1 − HNS), lower is better."
    )
    if len(covered) < len(ATARI_100K_GAMES):
        blocks.append(
            f"**Over the {len(covered)} games {primary} covers ({', '.join(covered)}), not all "
            f"{len(ATARI_100K_GAMES)}.** Every row of this table is restricted to those games (a "
            "method missing some of them is shown on the games it has); figures over all games "
            "are listed apart below and are not comparable."
        )
    blocks.append(_aggregate_table([row for row in report.aggregates if row.scope == SAME_GAMES]))
    everything = [row for row in report.aggregates if row.scope == ALL_GAMES]
    if everything:
        blocks += ["### Other methods over all their games", _aggregate_table(everything)]
    single = sorted({row.method for row in report.aggregates if row.runs_per_game[0] == 1})
    if single:
        blocks.append(
            f"{', '.join(single)}: a single run on some games, which the bootstrap cannot vary; "
            "the intervals leave out that run-to-run uncertainty (a zero-width interval means "
            "one run on every game)."
        )
    return blocks


def _improvements(report: Report) -> list[str]:
    if not report.improvements:
        return []
    primary = report.primary.label
    rows = [
        [row.method_y, str(len(row.games)), _interval(row.estimate)] for row in report.improvements
    ]
    return [
        "## Probability of improvement",
        f"P({primary} > X): the probability that a run of {primary} scores higher than a run "
        "of X on a game (Mann-Whitney; ties count one half), averaged over the games both "
        "cover, with a 95 % bootstrap interval (runs of each method resampled independently "
        f"within each game). Above 0.5 favours {primary}.",
        _table(["X", "games", f"P({primary} > X)"], "lrl", rows),
    ]


PLOTS_EXTRA = "`pip install 'storm-wm[plots]'`"
"""How to get the plots drawn."""


def _plots(plot_names: Sequence[str] | None) -> list[str]:
    if plot_names is None:
        return ["## Plots", f"Not drawn: matplotlib is not installed ({PLOTS_EXTRA})."]
    blocks = ["## Plots"] if plot_names else []
    for name in plot_names:
        blocks += [f"![{name}]({name})", PLOT_CAPTIONS.get(name, "")]
    return blocks


def render_markdown(
    report: Report, table_names: Sequence[str], plot_names: Sequence[str] | None
) -> str:
    """The whole report.md; `table_names` and `plot_names` are the CSV and PNG files beside it
    (`plot_names` None: the plots were not drawn, matplotlib being missing)."""
    tables = "Tables as CSV: " + ", ".join(f"[{name}]({name})" for name in table_names) + "."
    sections = [
        *_inputs(report),
        *_per_game(report),
        *_aggregates(report),
        *_improvements(report),
        *_plots(plot_names),
        tables,
        "---",
        STATISTICS_NOTE,
    ]
    return "\n\n".join(block for block in sections if block) + "\n"
