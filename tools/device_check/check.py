"""The device check behind scripts/device-check.sh: tests, bench and four concurrent Atari runs
on one GPU within a fixed time, recorded in a few files.

    PYTHONPATH=src:tools python -m device_check OUTDIR [--dry-run] [--budget SECONDS]
        [--stages tests,bench,training] [--bench-extra "ARGS"]

Stages, in this order, each a subprocess in its own session with a time limit (`stage_limit`):

1. tests: `pytest -m cuda -v` over the test files that carry the marker (the compile tests,
   the most wanted answers, run last);
2. bench: `storm-wm bench --device cuda --json` with, in this order, the phases (FLOPs,
   measured peaks, time at the peak), a profile of whole steps, the end-to-end loop eager then
   compiled, then 1, 4 and 2 concurrent runs, each a fresh process;
3. training: Pong, Breakout, Boxing and MsPacman at the paper config, all four at once on the
   one device, for the time left; then SIGINT, which stops each with a checkpoint. Each run's
   environment steps/s and updates/s (read from its metrics.jsonl, benchmark/run_metrics.py)
   and its episode returns are recorded.

The budget (530 s on a GPU: one command may run 600 s) is shared by shares, so every minimum
scales with it: the tests stage gets at most a quarter; the bench what is left but the share
kept for training (about 270-315 s of 530 when the tests take their quarter); training the
rest, its stop included. A stage stopped at its limit keeps what it measured and is `partial`.

OUTDIR receives at most seven files, summary.json and table.txt rewritten after every stage
(so an overrun, a kill or SIGTERM still leaves everything measured so far): summary.json (keys
`tests`, `bench`, `training`), table.txt (also printed last), tests.log, bench.json, bench.log,
profile.txt and training.log. SIGTERM or SIGINT stops the stage running, keeps its figures and
writes them out. The run directories live in a temporary directory, deleted at the end.
`--dry-run` runs the same sequence on the CPU at a toy scale (tiny networks, short stages),
which CI tests.

Exit status: 0 when every stage run passed or stopped at its limit with figures (partial),
1 when one failed, stopped with nothing measured, or the check was interrupted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device_check.stages import STOP_SECONDS, Interrupted, run_bench, run_tests, run_training
from device_check.table import format_table
from storm_wm.atomic import write_text_atomically

GAMES = ("Pong", "Breakout", "Boxing", "MsPacman")
STAGES = ("tests", "bench", "training")
OUTPUT_FILES = (
    "summary.json",
    "table.txt",
    "tests.log",
    "bench.json",
    "bench.log",
    "profile.txt",
    "training.log",
)
GOOD = ("passed", "ok", "partial", "skipped", "no tests marked cuda")
"""Stage statuses that do not fail the check."""

# The dry run's schedule; its networks are the tiny preset's (a training step takes
# milliseconds on a CPU).
DRY_RUN_SCHEDULE = (
    "--train.warmup_steps",
    "40",
    "--train.log_every",
    "20",
    "--train.checkpoint_every",
    "100",
    "--train.diagnostics_every",
    "0",
    "--train.video_every",
    "0",
)


@dataclass(frozen=True)
class Plan:
    """What each stage runs, and the shares of the budget its limits come from."""

    budget: float
    bench_arguments: tuple[str, ...]
    train_arguments: tuple[str, ...]
    tests_share: float
    """The tests stage takes at most this share of the budget."""
    bench_least_share: float
    training_least_share: float
    """Kept for a stage while the stages before it run: at least this share of the budget,
    its stop and the write-out included."""
    stop_share: float
    """Of the budget: the training runs' time to stop with a checkpoint after SIGINT."""
    training_most: float
    """Seconds the training runs may run, at most."""
    bench_environment: dict[str, str] = field(default_factory=dict)
    margin_share: float = 0.01
    """Kept to the end for writing the summary and the table."""


GPU_PLAN = Plan(
    budget=530,  # one command may run 600 s: this leaves the install, the start and the writes
    bench_arguments=(
        "--device",
        "cuda",
        "--repeats",
        "3",
        "--warmup",
        "2",
        "--profile",
        "--profile-steps",
        "3",
        # 100 timed steps after 25 (the compile and CUDA-graph recording happen at the first
        # updates), records every 25 steps; the paper's checkpoint cadence, so that the window
        # times the steady state (checkpoints cost 0.8 % of a run, docs/resume.md).
        "--loop-steps",
        "100",
        "--loop-warmup",
        "25",
        "--loop-checkpoint-every",
        "2500",
        # Four runs, the goal's figure, before two.
        "--concurrent",
        "1,4,2",
        # Fewer random steps, so the loop's timed window comes sooner; the phases depend on
        # neither.
        "--train.warmup_steps",
        "256",
        "--train.log_every",
        "25",
    ),
    # Metrics every 50 steps instead of 250: a minute or two then give several records to time.
    train_arguments=("--preset", "atari100k", "--device", "cuda", "--train.log_every", "50"),
    tests_share=0.25,  # 132 s: two cold CUDA-graph compiles and a CUDA training step
    bench_least_share=0.4,
    training_least_share=0.2,  # 106 s: four runs start, train about 75 s, stop
    stop_share=0.05,
    training_most=300,
)
DRY_RUN_PLAN = Plan(
    budget=400,
    bench_arguments=(
        "--device",
        "cpu",
        "--preset",
        "toy+tiny",
        *DRY_RUN_SCHEDULE,
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--threads",
        "1",
        "--profile",
        "--profile-steps",
        "2",
        "--loop-steps",
        "40",
        "--loop-warmup",
        "0",
        "--loop-variants",
        "eager,compiled",
        "--concurrent",
        "1,2",
    ),
    # Longer than the stage lasts, so that the runs are stopped by SIGINT as on the GPU.
    train_arguments=(
        "--preset",
        "debug+tiny",
        *DRY_RUN_SCHEDULE,
        "--train.steps",
        "100000",
        "--device",
        "cpu",
    ),
    tests_share=0.3,
    bench_least_share=0.4,
    training_least_share=0.2,
    stop_share=0.05,
    training_most=20,
    # Compiling for real takes minutes on a small CPU: with no C++ compiler the compiled
    # variant falls back to eager at once, which rehearses how a fallback is recorded.
    bench_environment={"CXX": "/nonexistent/storm-wm-dry-run-c++"},
)


def stage_limit(plan: Plan, stage: str, selected: list[str], budget: float, left: float) -> float:
    """Seconds `stage` may take, its stop included: its own cap (a share of the budget for the
    tests, none for the others), within what is left once every later selected stage's least
    share and the write-out margin are kept."""
    later = selected[selected.index(stage) + 1 :]
    least = {"bench": plan.bench_least_share, "training": plan.training_least_share}
    reserve = (sum(least.get(name, 0.0) for name in later) + plan.margin_share) * budget
    cap = plan.tests_share * budget if stage == "tests" else float("inf")
    return max(0.0, min(cap, left - reserve))


def training_seconds(plan: Plan, budget: float, limit: float) -> tuple[float, float]:
    """(seconds the runs train, their stop grace) within the training stage's `limit`."""
    grace = plan.stop_share * budget
    return max(0.0, min(plan.training_most, limit - grace - STOP_SECONDS - 1.0)), grace


class Clock:
    def __init__(self, budget: float) -> None:
        self.start = time.monotonic()
        self.budget = budget

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    @property
    def left(self) -> float:
        return self.budget - self.elapsed


def _device_name(dry_run: bool) -> str:
    """The GPU's name from nvidia-smi, so that the check itself holds no CUDA context (the
    bench's figures name it too)."""
    if dry_run:
        return "cpu"
    try:
        names = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "cuda"
    return names[0].strip() or "cuda"


class _StopOnSignal:
    """The first SIGTERM or SIGINT raises Interrupted in the stage running (`armed`), which
    stops its processes and keeps their figures; between stages it only stops the next ones
    from starting. Later signals are ignored while the check writes out what it has."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.armed = False

    def __call__(self, number: int, frame: Any) -> None:
        if self.received is None:
            self.received = number
            if self.armed:
                raise Interrupted(signal.Signals(number).name)

    def install(self) -> None:
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self)


def run_check(
    plan: Plan,
    out: Path,
    *,
    dry_run: bool,
    budget: float | None = None,
    stages: list[str] | None = None,
    bench_extra: tuple[str, ...] = (),
    root: Path | None = None,
) -> dict[str, Any]:
    """Runs the selected stages in order, writing summary.json and table.txt after each;
    returns the summary."""
    import torch  # the version only: the check itself never touches the device

    selected = [name for name in STAGES if name in (stages or STAGES)]
    clock = Clock(budget or plan.budget)
    root = root or Path.cwd()  # the checkout: scripts/device-check.sh runs from its root
    out.mkdir(parents=True, exist_ok=True)
    stopper = _StopOnSignal()
    stopper.install()
    summary: dict[str, Any] = {
        "dry_run": dry_run,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": _device_name(dry_run),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "budget_seconds": clock.budget,
        "elapsed_seconds": 0.0,
        "stages": selected,
        "complete": False,
        **{name: {"status": "not run yet" if name in selected else "skipped"} for name in STAGES},
    }
    _write(summary, out, clock)
    for name in selected:
        result, limit, started = None, 0.0, clock.elapsed
        try:
            # Armed before the test: a signal between the test and the stage's start must stop
            # the stage, not be noticed only once it has run to its end.
            stopper.armed = True
            if stopper.received is None:
                limit = stage_limit(plan, name, selected, clock.budget, clock.left)
                print(f"device check: {name} (at most {limit:.0f} s)", flush=True)
                result = _run_stage(name, plan, out, limit, clock.budget, bench_extra, root)
            stopper.armed = False
        except Interrupted:  # outside what the stage itself stops cleanly
            stopper.armed = False
            result = result or {"status": "interrupted"}
        if result is None:  # stopped between stages: this one and the later ones never start
            summary[name] = {"status": "not run (the check was interrupted)"}
            continue
        summary[name] = result
        summary[name]["stage_seconds"] = round(clock.elapsed - started, 1)
        summary[name]["stage_limit_seconds"] = round(limit, 1)
        _write(summary, out, clock)
    summary["complete"] = stopper.received is None
    if stopper.received is not None:
        summary["interrupted_by"] = signal.Signals(stopper.received).name
    _write(summary, out, clock)
    return summary


def _run_stage(
    name: str,
    plan: Plan,
    out: Path,
    limit: float,
    budget: float,
    bench_extra: tuple[str, ...],
    root: Path,
) -> dict[str, Any]:
    if name == "tests":
        return run_tests(root, out, limit)
    if name == "bench":
        arguments = (*plan.bench_arguments, *bench_extra)  # later options win
        return run_bench(arguments, out, limit, plan.bench_environment)
    seconds, grace = training_seconds(plan, budget, limit)
    if seconds < 1.0:  # the stages before it used the budget: starting runs would only kill them
        print("device check: training not started: no time left in the budget", flush=True)
        return {"status": "timed out", "reason": "no time left in the budget to train"}
    print(f"device check: training {', '.join(GAMES)} at once for {seconds:.0f} s", flush=True)
    work = Path(tempfile.mkdtemp(prefix="storm-wm-device-check-"))
    try:
        return run_training(plan.train_arguments, GAMES, grace, out, work, seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write(summary: dict[str, Any], out: Path, clock: Clock) -> None:
    """summary.json and table.txt as they stand (atomically: a kill mid-write leaves the
    previous ones)."""
    summary["elapsed_seconds"] = round(clock.elapsed, 1)
    write_text_atomically(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_text_atomically(out / "table.txt", format_table(summary) + "\n")


def exit_status(summary: dict[str, Any]) -> int:
    statuses = [summary[name]["status"] for name in summary["stages"]]
    return 0 if summary["complete"] and all(status in GOOD for status in statuses) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--dry-run", action="store_true", help="toy scale, on the CPU")
    parser.add_argument("--budget", type=float, default=None, help="seconds for all stages")
    parser.add_argument(
        "--stages",
        default=",".join(STAGES),
        help="the stages to run, in their fixed order (default: tests,bench,training)",
    )
    parser.add_argument(
        "--bench-extra",
        default="",
        metavar="ARGS",
        help="more `storm-wm bench` options, after the plan's (later ones win), e.g. "
        '"--loop-variants compiled --concurrent 4"',
    )
    args = parser.parse_args(argv)
    stages = [word.strip() for word in args.stages.split(",") if word.strip()]
    unknown = [name for name in stages if name not in STAGES]
    if unknown or not stages:
        parser.error(f"--stages {args.stages}: choose from {', '.join(STAGES)}")
    plan = DRY_RUN_PLAN if args.dry_run else GPU_PLAN
    summary = run_check(
        plan,
        args.outdir,
        dry_run=args.dry_run,
        budget=args.budget,
        stages=stages,
        bench_extra=tuple(shlex.split(args.bench_extra)),
    )
    print(format_table(summary), flush=True)
    return exit_status(summary)


if __name__ == "__main__":
    sys.exit(main())
