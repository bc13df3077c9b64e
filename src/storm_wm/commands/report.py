"""`storm-wm report`: compare runs with published Atari 100k results, with honest error bars.

Run directories become one method (label --label); each score file becomes a method named
after its file; --reference adds published methods from the package data. Numpy, scipy and
matplotlib are imported when the command runs, so that other commands start without them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from storm_wm.analysis.scores import REFERENCE_METHODS  # light: no numpy, no matplotlib
from storm_wm.errors import StormError

if TYPE_CHECKING:
    from storm_wm.analysis.report import Method
    from storm_wm.analysis.runs import RunResult


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `report` sub-command."""
    parser = subparsers.add_parser(
        "report",
        help="tables, aggregate metrics with confidence intervals, and plots for runs",
        description="Compare runs with published Atari 100k results: per-game table, aggregate "
        "metrics with stratified-bootstrap confidence intervals, and plots.",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="RUN_DIR_OR_SCORE_FILE",
        help="run directories (with eval.json and metrics.jsonl) or JSON score files "
        "mapping game -> list of per-seed scores",
    )
    parser.add_argument(
        "--reference",
        default="storm",
        metavar="METHODS",
        help="published methods to compare with, comma-separated, from "
        f"{', '.join(REFERENCE_METHODS)} (default: storm; '' for none)",
    )
    parser.add_argument(
        "--out", default="report", metavar="DIR", help="output directory (default: ./report)"
    )
    parser.add_argument(
        "--bootstrap-samples",
        type=int,
        metavar="N",
        default=5000,
        help="stratified-bootstrap resamples for the confidence intervals (default: 5000)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="N", help="bootstrap seed (default: 0)"
    )
    parser.add_argument(
        "--label", default="storm-wm", help="name of the runs' method (default: storm-wm)"
    )
    parser.add_argument(
        "--curve-bins",
        type=int,
        default=40,
        metavar="N",
        help="step bins of the learning curves (default: 40)",
    )
    parser.set_defaults(func=run)


def _check_distinct_seeds(runs: Sequence[RunResult]) -> None:
    """Refuse two runs of one game with the same seed: counting a seed twice narrows every
    interval without new evidence (usually the same run passed under two paths)."""
    first_of: dict[tuple[str, int], Path] = {}
    for result in runs:
        if result.seed is None:
            continue
        key = (result.game, result.seed)
        if key in first_of:
            raise StormError(
                f"{first_of[key]} and {result.path} are both {result.game} seed {result.seed}; "
                "pass each seed of a game once"
            )
        first_of[key] = result.path


def _load_inputs(args: argparse.Namespace) -> tuple[list[RunResult], list[Method]]:
    """Our runs, and the methods to report: ours (if any runs), score files, references."""
    from storm_wm.analysis.report import Method
    from storm_wm.analysis.runs import load_run
    from storm_wm.analysis.scores import REFERENCE_LABELS, load_reference, load_score_file

    # loaded first, so that a misspelt name fails before any run directory is read
    references = [
        (name, load_reference(name))
        for name in dict.fromkeys(name.strip() for name in args.reference.split(","))
        if name
    ]
    runs = []
    score_files = []
    seen: set[Path] = set()
    for text in args.inputs:
        path = Path(text)
        if not path.exists():
            raise StormError(f"{path} does not exist: pass run directories or score files")
        if path.resolve() in seen:
            raise StormError(f"{path} is given twice; pass each run directory or file once")
        seen.add(path.resolve())
        if path.is_dir():
            runs.append(load_run(path))
        else:
            score_files.append(Method(path.stem, load_score_file(path), f"from score file {path}"))
    _check_distinct_seeds(runs)

    methods = []
    if runs:
        our_scores: dict[str, list[float]] = {}
        for result in runs:
            our_scores.setdefault(result.game, []).append(result.score)
        origin = "from run directories (the `mean` of each eval.json)"
        methods.append(Method(args.label, our_scores, origin))
    methods += score_files
    for name, scores in references:
        origin = f"published scores ({name}.json in the package data)"
        methods.append(Method(REFERENCE_LABELS[name], scores, origin))
    labels = [method.label for method in methods]
    for label in labels:
        if labels.count(label) > 1:
            raise StormError(
                f"two methods are named {label!r}; rename the score file or pick another --label"
            )
    return runs, methods


def run(args: argparse.Namespace) -> int:
    """Load the inputs, compute the report, write it to --out, and print where it is."""
    from storm_wm.analysis.output import write_report
    from storm_wm.analysis.report import build_report

    if args.bootstrap_samples < 1:
        raise StormError("--bootstrap-samples must be at least 1 (5000 is the usual choice)")
    if args.curve_bins < 1:
        raise StormError("--curve-bins must be at least 1")
    runs, methods = _load_inputs(args)
    report = build_report(
        methods[0],
        methods[1:],
        runs,
        bootstrap_samples=args.bootstrap_samples,
        seed=args.seed,
        curve_bins=args.curve_bins,
    )
    try:
        written = write_report(report, args.out)
    except OSError as error:
        raise StormError(
            f"cannot write the report to {args.out} ({error}); pick another --out"
        ) from None
    print(f"wrote {written[0]} and {len(written) - 1} more files to {Path(args.out)}/")
    return 0
