"""report.md: the report's tables and plots with the sentences needed to read them correctly."""

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
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def _inputs_section(report: Report) -> str:
    lines = [f"# Atari 100k report: {report.primary.label}", "", "Inputs:"]
    for method in (report.primary, *report.others):
        runs = sum(len(scores) for scores in method.scores.values())
        lines.append(
            f"- **{method.label}**: {runs} runs on {len(method.scores)} games, {method.origin}."
        )
    excluded = [method for method in (report.primary, *report.others) if method.capped]
    if excluded:
        lines.append("")
        for method in excluded:
            games = game_order(set(method.capped))
            reasons = "; ".join(sorted(set(method.capped.values())))
            lines.append(
                f"**{method.label} on {', '.join(games)} is not comparable with published "
                f"scores** ({reasons}): no human-normalized score, left out of the aggregates "
                "and plots (`--include-capped` puts it in)."
            )
    return "\n".join(lines)


def _per_game_section(report: Report) -> str:
    primary = report.primary.label
    header = ["game", f"{primary} mean", "95% CI (t)", "seeds", "HNS"]
    header += [method.label for method in report.others]
    rows = []
    for game in game_order(set(report.primary.scores)):
        summary = report.summary(primary, game)
        assert summary is not None
        interval = (
            "—" if summary.ci_low is None else f"[{_raw(summary.ci_low)}, {_raw(summary.ci_high)}]"
        )
        row = [
            game,
            _raw(summary.mean),
            interval,
            str(summary.runs),
            _hns(summary.human_normalized),
        ]
        for method in report.others:
            other = report.summary(method.label, game)
            row.append(_raw(other.mean) if other else "—")
        rows.append(row)
    text = [
        "## Per-game scores",
        "",
        f"**{primary}**: mean over seeds of each run's final score, its 95 % Student-t interval "
        "over seeds (none with a single seed), the number of seeds, and the human-normalized "
        "score (HNS) of the mean, (score − random) / (human − random). The other columns give "
        "each method's published mean over its runs, in raw game score.",
        "",
        _table(header, "lrrrr" + "r" * len(report.others), rows),
    ]
    if report.unnormalized_games:
        text += [
            "",
            "No random and human scores exist for "
            f"{', '.join(report.unnormalized_games)}: no HNS, and left out of the aggregates.",
        ]
    return "\n".join(text)


def _aggregate_table(rows: Sequence[AggregateRow]) -> str:
    header = ["method", "games", "runs per game", *METRIC_LABELS.values()]
    body = []
    for row in rows:
        fewest, most = row.runs_per_game
        runs = str(fewest) if fewest == most else f"{fewest}–{most}"
        body.append(
            [row.method, str(len(row.games)), runs]
            + [_interval(row.estimates[metric]) for metric in METRIC_LABELS]
        )
    return _table(header, "lrr" + "l" * len(METRIC_LABELS), body)


def _aggregate_section(report: Report) -> str:
    text = ["## Aggregate human-normalized scores", ""]
    if not report.covered_games and report.primary.capped:
        text.append(
            f"{report.primary.label}'s games with published scores were played with capped "
            "episodes (see above), so there are no human-normalized aggregates."
        )
        return "\n".join(text)
    if not report.covered_games:
        text.append(
            f"None of {report.primary.label}'s games has random and human scores, so there are "
            "no human-normalized aggregates."
        )
        return "\n".join(text)
    text += [
        "Point estimates with 95 % stratified-bootstrap percentile intervals "
        f"({report.bootstrap_samples} resamples of the runs within each game, seed "
        f"{report.seed}). Mean and median: over games, of each game's mean over runs. IQM: the "
        "mean of the middle 50 % of all runs × games. Optimality gap: the mean of "
        "max(0, 1 − HNS), lower is better.",
        "",
    ]
    covered = report.covered_games
    if len(covered) < len(ATARI_100K_GAMES):
        text += [
            f"**Over the {len(covered)} games {report.primary.label} covers "
            f"({', '.join(covered)}), not all {len(ATARI_100K_GAMES)}.** Every row of this table "
            "is restricted to those games (a method missing some of them is shown on the games "
            "it has); figures over all games are listed apart below and are not comparable.",
            "",
        ]
    text.append(_aggregate_table([row for row in report.aggregates if row.scope == SAME_GAMES]))
    everything = [row for row in report.aggregates if row.scope == ALL_GAMES]
    if everything:
        text += ["", "### Other methods over all their games", "", _aggregate_table(everything)]
    single = sorted({row.method for row in report.aggregates if row.runs_per_game[0] == 1})
    if single:
        text += [
            "",
            f"{', '.join(single)}: a single run on some games, which the bootstrap cannot vary; "
            "the intervals leave out that run-to-run uncertainty (a zero-width interval means "
            "one run on every game).",
        ]
    return "\n".join(text)


def _improvement_section(report: Report) -> str:
    if not report.improvements:
        return ""
    primary = report.primary.label
    rows = [
        [row.method_y, str(len(row.games)), _interval(row.estimate)] for row in report.improvements
    ]
    return "\n".join(
        [
            "## Probability of improvement",
            "",
            f"P({primary} > X): the probability that a run of {primary} scores higher than a run "
            "of X on a game (Mann-Whitney; ties count one half), averaged over the games both "
            "cover, with a 95 % bootstrap interval (runs of each method resampled independently "
            f"within each game). Above 0.5 favours {primary}.",
            "",
            _table(["X", "games", f"P({primary} > X)"], "lrl", rows),
        ]
    )


def _plots_section(plot_names: Sequence[str]) -> str:
    if not plot_names:
        return ""
    text = ["## Plots"]
    for name in plot_names:
        text += ["", f"![{name}]({name})", "", PLOT_CAPTIONS.get(name, "")]
    return "\n".join(text)


def _files_section(report: Report) -> str:
    names = ["per_game.csv", "aggregates.csv", "probability_of_improvement.csv"]
    if report.runs:
        names.append("runs.csv")
    if report.curves:
        names.append("learning_curves.csv")
    return "Tables as CSV: " + ", ".join(f"[{name}]({name})" for name in names) + "."


def render_markdown(report: Report, plot_names: Sequence[str]) -> str:
    """The whole report.md; `plot_names` are the PNG files written beside it."""
    sections = [
        _inputs_section(report),
        _per_game_section(report),
        _aggregate_section(report),
        _improvement_section(report),
        _plots_section(plot_names),
        _files_section(report),
        "---\n\n" + STATISTICS_NOTE,
    ]
    return "\n\n".join(section for section in sections if section) + "\n"
