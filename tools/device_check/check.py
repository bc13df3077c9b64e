"""The device check behind scripts/device-check.sh: tests, bench and four concurrent Atari runs
on one GPU within a fixed time, recorded in a few files.

    PYTHONPATH=src:tools python -m device_check OUTDIR [--dry-run] [--budget SECONDS]

Stages, each a subprocess in its own session with a time limit taken from what is left of the
budget (a stage that overruns is stopped, its process group killed, and recorded as timed out):

1. tests: `pytest -m cuda` over the test files that carry the marker;
2. bench: `storm-wm bench --device cuda --json` with the end-to-end loop (eager and compiled)
   and 1, 2 and 4 concurrent runs;
3. training: Pong, Breakout, Boxing and MsPacman at the paper config, all four at once on the
   one device, for the time left; then SIGINT, which stops each with a checkpoint. Each run's
   environment steps/s and updates/s (read from its metrics.jsonl, benchmark/run_metrics.py)
   and its episode returns are recorded.

OUTDIR receives at most six files: summary.json (keys `tests`, `bench`, `training`), tests.log,
bench.json, bench.log, training.log and table.txt; the table is also printed last. The run
directories live in a temporary directory, deleted at the end. `--dry-run` runs the same
sequence on the CPU at a toy scale (tiny networks, short stages), which CI tests.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from device_check.stages import run_bench, run_tests, run_training
from device_check.table import format_table

GAMES = ("Pong", "Breakout", "Boxing", "MsPacman")
OUTPUT_FILES = ("summary.json", "tests.log", "bench.json", "bench.log", "training.log", "table.txt")

# The dry run's schedule; its networks are the tiny preset's (a training step takes
# milliseconds on a CPU).
DRY_RUN_SCHEDULE = (
    "--train.warmup_steps", "40", "--train.log_every", "20", "--train.checkpoint_every", "100",
    "--train.diagnostics_every", "0", "--train.video_every", "0",
)  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """What each stage runs and how long it may take, in seconds."""

    budget: float
    tests_limit: float
    bench_arguments: tuple[str, ...]
    train_arguments: tuple[str, ...]
    training_least: float
    training_most: float
    """The training stage gets what is left of the budget, within these bounds."""
    stop_grace: float
    """Seconds a run may take, after SIGINT, to write its last checkpoint and exit."""


GPU_PLAN = Plan(
    budget=530,  # 9 minutes with a margin for the install and the summary
    tests_limit=90,
    bench_arguments=(
        "--device",
        "cuda",
        "--repeats",
        "3",
        "--warmup",
        "1",
        "--loop-steps",
        "200",
        "--loop-warmup",
        "50",
        "--concurrent",
        "1,2,4",
        # Fewer random steps and more frequent records, so the loop's timed window comes
        # sooner; the phases do not depend on either.
        "--train.warmup_steps",
        "256",
        "--train.log_every",
        "50",
    ),  # fmt: skip
    # Metrics every 50 steps instead of 250: a few minutes then give several records to time.
    train_arguments=("--preset", "atari100k", "--device", "cuda", "--train.log_every", "50"),
    training_least=120,
    training_most=300,
    stop_grace=40,
)
DRY_RUN_PLAN = Plan(
    budget=400,
    tests_limit=120,
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
        "--loop-steps",
        "40",
        "--loop-warmup",
        "0",
        "--loop-variants",
        "eager",
        "--concurrent",
        "1,2",
    ),  # fmt: skip
    # Longer than the stage lasts, so that the runs are stopped by SIGINT as on the GPU.
    train_arguments=(
        "--preset",
        "debug+tiny",
        *DRY_RUN_SCHEDULE,
        "--train.steps",
        "100000",
        "--device",
        "cpu",
    ),  # fmt: skip
    training_least=40,
    training_most=40,
    stop_grace=30,
)


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
    import torch

    if not dry_run and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "cpu"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--dry-run", action="store_true", help="toy scale, on the CPU")
    parser.add_argument("--budget", type=float, default=None, help="seconds for all stages")
    args = parser.parse_args(argv)
    import torch

    plan = DRY_RUN_PLAN if args.dry_run else GPU_PLAN
    clock = Clock(args.budget or plan.budget)
    root = Path.cwd()  # the checkout: scripts/device-check.sh runs from its root
    out = args.outdir
    out.mkdir(parents=True, exist_ok=True)
    print(f"device check: tests (at most {plan.tests_limit:.0f} s)", flush=True)
    tests = run_tests(root, out, min(plan.tests_limit, clock.left))
    training_reserve = plan.training_least + plan.stop_grace + 10
    bench_limit = max(60.0, clock.left - training_reserve)
    print(f"device check: bench (at most {bench_limit:.0f} s)", flush=True)
    bench = run_bench(plan.bench_arguments, out, bench_limit)
    training_seconds = min(
        plan.training_most, max(plan.training_least, clock.left - plan.stop_grace - 10)
    )
    print(f"device check: training {', '.join(GAMES)} at once for {training_seconds:.0f} s",
          flush=True)  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="storm-wm-device-check-"))
    try:
        training = run_training(
            plan.train_arguments, GAMES, plan.stop_grace, out, work, training_seconds
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {
        "dry_run": args.dry_run,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": _device_name(args.dry_run),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "budget_seconds": clock.budget,
        "elapsed_seconds": round(clock.elapsed, 1),
        "tests": tests,
        "bench": bench,
        "training": training,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = format_table(summary)
    (out / "table.txt").write_text(table + "\n")
    print(table)
    failed = [name for name in ("tests", "bench", "training")
              if summary[name]["status"] in ("failed", "timed out")]  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
