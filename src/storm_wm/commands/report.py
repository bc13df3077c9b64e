"""`storm-wm report`: compare runs with published Atari 100k results, with honest error bars.

Run directories become one method (label --label), or one per setup when their presets,
protocols, eval bookkeepings or episode caps differ (never averaged as seeds of one method);
unevaluated runs are skipped with a line naming them. Each score file becomes a method named
after its file; --reference adds published methods from the package data. Numpy, scipy and
matplotlib are imported when the command runs, so that other commands start without them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from storm_wm.analysis.scores import REFERENCE_METHODS  # light: no numpy, no matplotlib
from storm_wm.errors import StormError
from storm_wm.hints import command

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
        "--include-capped",
        action="store_true",
        help="count runs whose episodes were capped below the benchmark's 108,000 frames "
        "(e.g. the debug preset) in the human-normalized aggregates and plots",
    )
    parser.add_argument(
        "--curve-bins",
        type=int,
        default=40,
        metavar="N",
        help="step bins of the learning curves (default: 40)",
    )
    parser.set_defaults(func=run)


def _one_run_per_seed(runs: Sequence[RunResult]) -> list[RunResult]:
    """One run of each game and seed; each extra one is skipped with a line saying which run is
    kept and why. Counting a seed twice would narrow every interval without new evidence (two
    directories of one run: `runs/pong_...` and `runs/Pong_...`, or a copy). The run kept is
    the one evaluated at the later step, then the one evaluated last, then the first given."""

    def preference(result: RunResult) -> tuple[int, float]:
        try:
            evaluated = (result.path / "eval.json").stat().st_mtime
        except OSError:
            evaluated = 0.0
        return (result.step if result.step is not None else -1, evaluated)

    kept: dict[tuple[str, int], RunResult] = {}
    for result in runs:
        if result.seed is None:
            continue
        key = (result.game, result.seed)
        first = kept.setdefault(key, result)
        if first is result:
            continue
        # Stable: on a tie the run given first stays first.
        winner, loser = sorted((first, result), key=preference, reverse=True)
        (step, evaluated), (other_step, other_evaluated) = map(preference, (winner, loser))
        if step != other_step:
            why = f"evaluated at step {step}, the other at step {other_step}"
        elif evaluated != other_evaluated:
            why = "evaluated more recently"
        else:
            why = "given first"
        _say(
            f"skipping {loser.path}: it is {result.game} seed {result.seed} like {winner.path}, "
            f"which is kept ({why}); a seed counts once"
        )
        kept[key] = winner
    chosen = {id(result) for result in kept.values()}
    return [result for result in runs if result.seed is None or id(result) in chosen]


def _say(text: str) -> None:
    print(f"storm-wm report: {text}", file=sys.stderr)


def _usable_runs(paths: Sequence[Path]) -> list[RunResult]:
    """Load the run directories, skipping (with one line each) those not evaluated or only
    partly, and warning about evaluations older than their run's last step."""
    from storm_wm.analysis.runs import has_eval, load_run

    runs = []
    skipped = []
    for path in paths:
        if not has_eval(path) and not any(has_eval(child) for child in path.iterdir()):
            _say(f"skipping {path}: no eval.json (evaluate it with `{command('eval', path)}`)")
            skipped.append(path)
            continue
        result = load_run(path)  # a directory of run directories fails with a hint
        if result.partial:
            _say(
                f"skipping {path}: its eval.json is partial (interrupted); re-run "
                f"`{command('eval', path)}`"
            )
            skipped.append(path)
            continue
        if result.stale:
            _say(
                f"warning: {path}/eval.json scores step {result.step}, but the run reached "
                f"step {result.last_step}; re-run `{command('eval', path)}` for its final score"
            )
        runs.append(result)
    if paths and not runs:
        names = ", ".join(str(path) for path in skipped)
        raise StormError(
            f"no evaluated run among {names}: each has no eval.json or a partial one; run "
            f"`{command('eval', 'RUN_DIR')}` on each first"
        )
    return runs


def _paper_sized(preset: str) -> bool:
    """Whether runs of `preset` have the paper's sizes and schedule (`atari100k`, with the
    released code's behaviours or not); "?" (an eval.json without its preset) is taken as so."""
    return all(part in ("atari100k", "released", "?") for part in preset.split("+"))


def _setup_words(key: tuple[str, str, str, bool], varying: Sequence[int]) -> list[str]:
    """What tells a setup (a `RunResult.method_key`) from the others: the parts `varying`."""
    preset, protocol, bookkeeping, comparable = key
    words = [
        f"preset {preset}",
        f"{protocol} protocol",
        f"{bookkeeping} bookkeeping",
        "full-length episodes" if comparable else "capped episodes",
    ]
    return [words[index] for index in varying]


def _group_runs(runs: Sequence[RunResult], label: str, include_capped: bool) -> list[Method]:
    """Our runs as methods. Runs of one game from different setups (preset, protocol, eval
    bookkeeping, episode cap) are never averaged as seeds of one method: when a game has
    runs of two setups, every setup becomes a method of its own. A method is named after what
    sets it apart, and after its preset when that is not the paper's."""
    from storm_wm.analysis.report import Method
    from storm_wm.analysis.scores import has_normalizers

    groups: dict[tuple[str, str, str, bool], list[RunResult]] = {}
    for result in runs:
        groups.setdefault(result.method_key, []).append(result)
    if len({(result.game, result.method_key) for result in runs}) == len(
        {result.game for result in runs}
    ):
        # One setup per game: one method, named by its preset if all runs share it ("?" if not).
        presets = {key[0] for key in groups}
        groups = {(presets.pop() if len(presets) == 1 else "?", "", "", True): list(runs)}
    keys = sorted(groups, key=lambda key: (not key[3], -len(groups[key]), key))
    varying = [index for index in range(4) if len({key[index] for key in keys}) > 1]
    if 0 not in varying and not _paper_sized(keys[0][0]):
        varying.insert(0, 0)  # a preset of other sizes is named even when all share it
    if len(keys) > 1:
        described = "; ".join(f"[{', '.join(_setup_words(key, varying))}]" for key in keys)
        _say(f"runs of {len(keys)} setups are reported as separate methods: {described}")
    methods = []
    for key in keys:
        members = _one_run_per_seed(groups[key])
        scores: dict[str, list[float]] = {}
        capped: dict[str, str] = {}
        for result in members:
            scores.setdefault(result.game, []).append(result.score)
            if result.capped and has_normalizers(result.game):
                capped[result.game] = result.capped_reason
        words = _setup_words(key, varying)
        origin = "from run directories (the `mean` of each eval.json)"
        if include_capped and capped:
            origin += f"; capped episodes on {', '.join(sorted(capped))}, included as asked"
            capped = {}
            if "capped episodes" not in words:  # never labelled like a comparable method
                words.append("capped episodes")
        name = f"{label} [{', '.join(words)}]" if words else label
        methods.append(Method(name, scores, origin, capped=capped, runs=tuple(members)))
    return methods


def _load_inputs(args: argparse.Namespace) -> list[Method]:
    """The methods to report: ours (one per setup), score files, references."""
    from storm_wm.analysis.report import Method
    from storm_wm.analysis.scores import REFERENCE_LABELS, load_reference, load_score_file

    # loaded first, so that a misspelt name fails before any run directory is read
    references = [
        (name, load_reference(name))
        for name in dict.fromkeys(name.strip() for name in args.reference.split(","))
        if name
    ]
    run_paths = []
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
            run_paths.append(path)
        else:
            score_files.append(Method(path.stem, load_score_file(path), f"from score file {path}"))
    runs = _usable_runs(run_paths)
    methods = _group_runs(runs, args.label, args.include_capped) if runs else []
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
    return methods


def run(args: argparse.Namespace) -> int:
    """Load the inputs, compute the report, write it to --out, and print where it is."""
    from storm_wm.analysis.output import write_report
    from storm_wm.analysis.report import build_report
    from storm_wm.extras import available

    if args.bootstrap_samples < 1:
        raise StormError("--bootstrap-samples must be at least 1 (5000 is the usual choice)")
    if args.curve_bins < 1:
        raise StormError("--curve-bins must be at least 1")
    methods = _load_inputs(args)
    report = build_report(
        methods[0],
        methods[1:],
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
    if not available("matplotlib"):
        _say("plots not drawn: matplotlib is not installed; pip install 'storm-wm[plots]'")
    return 0
