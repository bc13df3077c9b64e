"""`storm-wm sweep`: train and evaluate games x seeds as one resumable job, locally or on Ray."""

from __future__ import annotations

import argparse
import math
import signal
import sys
from pathlib import Path

from storm_wm.commands import report
from storm_wm.errors import StormError
from storm_wm.options import add_config_options, preset_of


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `sweep` sub-command."""
    parser = subparsers.add_parser(
        "sweep",
        help="train and evaluate many games x seeds, locally or on a Ray cluster",
        allow_abbrev=False,
        description="Train then evaluate one run per (game, seed) under the sweep directory, "
        "as many at once as the machine or Ray cluster has room for. Re-running the same "
        "command skips finished runs and resumes the others from their checkpoints; at the end "
        "the report of all finished runs is written to SWEEP_DIR/report. Any other option "
        "(e.g. --train.steps 500, --device cuda) is passed to every `storm-wm train`.",
    )
    parser.add_argument(
        "--games",
        required=True,
        help="atari26 (the Atari 100k benchmark) or a list: Pong,Boxing,toy:catch",
    )
    parser.add_argument("--seeds", default="1-5", help="e.g. 1-5 or 1,3,7 (default: 1-5)")
    add_config_options(parser)
    parser.add_argument(
        "--steps", type=int, default=None, help="environment steps per run (default: the preset's)"
    )
    parser.add_argument(
        "--eval-episodes",
        type=int,
        default=None,
        metavar="N",
        help="episodes of each run's evaluation (default: train.eval_episodes)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="SWEEP_DIR",
        help="default: sweeps/<preset>_<games>_seeds<seeds>",
    )
    parser.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local: subprocesses on this machine; ray: one Ray task per run",
    )
    parser.add_argument(
        "--address",
        default=None,
        metavar="auto|HOST:PORT",
        help="Ray cluster to use (default: start a local Ray instance)",
    )
    parser.add_argument(
        "--gpus-per-run",
        type=float,
        default=None,
        metavar="G",
        help="GPUs per run: a share of one, up to 1 (0.25 puts four runs on each GPU), or a "
        "whole number; default: 1 where there are GPUs, else 0",
    )
    parser.add_argument(
        "--cpus-per-run",
        type=int,
        default=1,
        metavar="N",
        help="CPU cores (and math threads) per run (default: 1)",
    )
    parser.add_argument(
        "--max-concurrent",
        type=int,
        default=None,
        metavar="N",
        help="at most N runs at once (default: as many as fit)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        metavar="N",
        help="times a failed run is retried before it is reported (default: 2)",
    )
    parser.set_defaults(func=run, accepts_overrides=True)


def _check_arguments(args: argparse.Namespace) -> None:
    if args.address is not None and args.backend != "ray":
        raise StormError("--address names a Ray cluster; add --backend ray")
    if args.cpus_per_run < 1:
        raise StormError(f"--cpus-per-run must be at least 1, got {args.cpus_per_run}")
    gpus = args.gpus_per_run  # a share of one GPU, or a whole number of GPUs: as Ray asks
    if gpus is not None and (
        not math.isfinite(gpus) or gpus < 0 or (gpus > 1 and not gpus.is_integer())
    ):
        raise StormError(
            f"--gpus-per-run {gpus:g}: give a share of one GPU from 0 to 1 (0.25 puts four runs "
            "on each GPU) or a whole number of GPUs per run"
        )
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise StormError(f"--max-concurrent must be at least 1, got {args.max_concurrent}")
    if args.retries < 0:
        raise StormError(f"--retries must be 0 or more, got {args.retries}")


def _make_backend(args: argparse.Namespace, run_count: int):
    if args.backend == "ray":
        from storm_wm.sweep.backends import RayBackend

        return RayBackend(
            args.address, args.cpus_per_run, args.gpus_per_run, args.max_concurrent, run_count
        )
    from storm_wm.sweep.backends import LocalBackend

    return LocalBackend(args.cpus_per_run, args.gpus_per_run, args.max_concurrent)


def _write_report(run_dirs: list[Path], out: Path) -> bool:
    """The aggregate report of the finished runs, by the report command itself (its error,
    if any, printed as `storm-wm report` prints it)."""
    parser = argparse.ArgumentParser(prog="storm-wm")
    report.add_parser(parser.add_subparsers())
    args = parser.parse_args(["report", *(str(run_dir) for run_dir in run_dirs), "--out", str(out)])
    try:
        return report.run(args) == 0
    except StormError as error:
        print(f"storm-wm report: error: {error}", file=sys.stderr)
        return False


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM (a job scheduler) stops the runs like Ctrl-C does


def run(args: argparse.Namespace) -> int:
    """Plan, lock the sweep directory, run everything, summarize, and write the report."""
    from storm_wm.sweep.driver import run_sweep
    from storm_wm.sweep.plan import plan_sweep
    from storm_wm.sweep.progress import ProgressDisplay
    from storm_wm.sweep.state import SweepState, sweep_lock
    from storm_wm.text import format_duration, plural

    _check_arguments(args)
    plan = plan_sweep(
        games_text=args.games,
        seeds_text=args.seeds,
        preset=preset_of(args),
        steps=args.steps,
        eval_episodes=args.eval_episodes,
        train_options=list(args.overrides),
        sweep_dir=args.out,
    )
    display = ProgressDisplay()
    games = plural(len(plan.arguments["games"]), "game")
    seeds = plural(len(plan.arguments["seeds"]), "seed")
    with sweep_lock(plan.sweep_dir):
        state = SweepState.open(plan)
        backend = _make_backend(args, len(plan.runs))
        # Installed after the backend starts: ray.init sets a SIGTERM handler of its own.
        previous_handler = signal.signal(signal.SIGTERM, _raise_interrupt)
        display.message(
            f"storm-wm sweep: {plural(len(plan.runs), 'run')} ({games} x {seeds}) "
            f"in {plan.sweep_dir}\n{backend.description}"
        )
        try:
            result = run_sweep(plan.runs, state, backend, display, args.retries)
        except KeyboardInterrupt:
            display.message(
                "storm-wm sweep: stopped the runs; re-run the same command to resume them "
                f"(state in {state.path})"
            )
            raise
        finally:
            backend.close()
            signal.signal(signal.SIGTERM, previous_handler)

    summary = f"{len(result.finished)} finished, {len(result.failed)} failed"
    print(f"storm-wm sweep: {summary} in {format_duration(result.seconds)} -> {plan.sweep_dir}")
    for tracker in result.failed:
        record = tracker.record
        print(
            f"  failed: {tracker.run.name} after {plural(record.attempts, 'attempt')}: "
            f"{record.error}" + (f" (log: {record.log})" if record.log else "")
        )
    if result.finished:
        report_dir = plan.sweep_dir / "report"
        if not _write_report([tracker.run.run_dir for tracker in result.finished], report_dir):
            raise StormError(
                "the runs are done but the report failed (message above); re-run the same "
                "command to retry it (finished runs are not run again)"
            )
    return 1 if result.failed else 0
