"""The device check behind scripts/device-check.sh: tests, bench and four concurrent Atari runs
on one GPU within a fixed time, recorded in a few files.

    python -m storm_wm.benchmark.device_check OUTDIR [--dry-run] [--budget SECONDS]

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
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storm_wm.benchmark.end_to_end import shared_cpu_environment
from storm_wm.benchmark.run_metrics import episode_returns, read_records, window_rate

GAMES = ("Pong", "Breakout", "Boxing", "MsPacman")
OUTPUT_FILES = ("summary.json", "tests.log", "bench.json", "bench.log", "training.log", "table.txt")

# Tiny networks for the dry run: a training step takes milliseconds on a CPU.
TINY_OVERRIDES = (
    "--train.warmup_steps", "40", "--train.log_every", "20", "--train.checkpoint_every", "100",
    "--world_model.batch_size", "2", "--world_model.sequence_length", "8",
    "--agent.imagination_batch", "4", "--env.image_size", "16", "--world_model.channels",
    "4,4,4,4", "--world_model.hidden", "16", "--world_model.heads", "2",
    "--world_model.feedforward", "16", "--world_model.head_hidden", "16",
    "--world_model.categoricals", "4", "--world_model.classes", "4", "--world_model.bins", "15",
    "--agent.bins", "15", "--agent.hidden", "16", "--train.diagnostics_every", "0",
    "--train.video_every", "0",
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
        "toy",
        *TINY_OVERRIDES,
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
        "debug",
        *TINY_OVERRIDES,
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


def _stop_group(process: subprocess.Popen) -> None:
    """Ends a stage's process and every process it started (the bench's concurrent runs)."""
    for sent in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sent)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def run_stage(command: list[str], log_path: Path, limit: float) -> dict[str, Any]:
    """Runs `command` with its output in `log_path`, for at most `limit` seconds."""
    started = time.monotonic()
    with log_path.open("w") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = process.wait(timeout=max(1.0, limit))
            timed_out = False
        except subprocess.TimeoutExpired:
            _stop_group(process)
            code, timed_out = process.returncode, True
    return {
        "command": " ".join(command),
        "returncode": code,
        "timed_out": timed_out,
        "seconds": round(time.monotonic() - started, 1),
    }


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def cuda_test_files(root: Path) -> list[str]:
    return sorted(
        str(path.relative_to(root))
        for path in (root / "tests").glob("test_*.py")
        if "mark.cuda" in path.read_text(encoding="utf-8")
    )


def run_tests(root: Path, out: Path, limit: float) -> dict[str, Any]:
    files = cuda_test_files(root)
    log_path = out / "tests.log"
    if not files:
        log_path.write_text("no test file carries the cuda marker\n")
        return {"status": "no tests marked cuda", "files": [], "counts": {}}
    command = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *files]
    stage = run_stage(command, log_path, limit)
    text = log_path.read_text(errors="replace")
    summary_lines = [
        line for line in text.splitlines() if re.search(r"\d+ (passed|failed|skip)", line)
    ]
    counts = {
        word: int(number)
        for number, word in re.findall(
            r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)",
            summary_lines[-1] if summary_lines else "",
        )
    }
    status = (
        "timed out" if stage["timed_out"] else "passed" if stage["returncode"] == 0 else "failed"
    )
    return {"status": status, "files": files, "counts": counts, **stage}


def _bench_figures(figures: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of bench.json (the file itself holds every one)."""
    loop = figures.get("end_to_end") or {}
    return {
        "device_name": figures["device_name"],
        "precision": figures["precision"],
        "step_seconds": figures["step_seconds"],
        "fraction_of_peak": figures["fraction_of_peak"],
        "peak_tflops_bf16": figures["peak_tflops_bf16"],
        "peak_tflops_fp32": figures["peak_tflops_fp32"],
        "loop": {
            name: {
                key: run[key]
                for key in (
                    "steps_per_second",
                    "updates_per_second",
                    "peak_memory_bytes",
                    "hours_per_100k_steps",
                )
            }
            for name, run in loop.get("variants", {}).items()
        },  # fmt: skip
        "concurrent": {
            count: {
                "aggregate_steps_per_second": entry["aggregate_steps_per_second"],
                "speedup_over_one_run": entry["speedup_over_one_run"],
            }
            for count, entry in loop.get("concurrent", {}).items()
        },
    }


def run_bench(plan: Plan, out: Path, limit: float) -> dict[str, Any]:
    json_path = out / "bench.json"
    command = [sys.executable, "-m", "storm_wm.cli", "bench", *plan.bench_arguments, "--json",
               str(json_path)]  # fmt: skip
    stage = run_stage(command, out / "bench.log", limit)
    status = "timed out" if stage["timed_out"] else "ok" if stage["returncode"] == 0 else "failed"
    # The bench rewrites its JSON after each measurement: a stopped one leaves what it measured.
    figures = _bench_figures(json.loads(json_path.read_text())) if json_path.is_file() else {}
    error = {} if status == "ok" else {"error": _last_line(out / "bench.log")}
    return {"status": status, **stage, **error, **figures}


def _run_figures(run_dir: Path) -> dict[str, Any]:
    records = read_records(run_dir / "metrics.jsonl")
    rate = window_rate(records, from_step=0)
    returns = episode_returns(records)
    trained = [record for record in records if "train/updates" in record]
    return {
        "last_logged_step": max((record["step"] for record in records), default=0),
        "updates": int(trained[-1]["train/updates"]) if trained else 0,
        "env_steps_per_second": rate.steps_per_second if rate else None,
        # Since the process started training, the random warm-up steps included.
        "cumulative_env_steps_per_second": (
            trained[-1]["train/steps_per_second"] if trained else None
        ),
        "updates_per_second": rate.updates_per_second if rate else None,
        "rate_window_steps": [rate.first_step, rate.last_step] if rate else None,
        "episodes": len(returns),
        "episode_returns": returns,
    }


def run_training(plan: Plan, out: Path, work: Path, seconds: float) -> dict[str, Any]:
    """The four games at once for `seconds`, then SIGINT to each; their figures."""
    runs = {}
    for game in GAMES:
        run_dir = work / game
        log = (work / f"{game}.log").open("w")
        command = [sys.executable, "-m", "storm_wm.cli", "train", *plan.train_arguments,
                   "--env.game", game, "--run-dir", str(run_dir), "--no-progress"]  # fmt: skip
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env=shared_cpu_environment(len(GAMES)),
        )  # fmt: skip
        runs[game] = (process, log, run_dir, command)
    started = time.monotonic()
    deadline = started + seconds
    while time.monotonic() < deadline and any(p.poll() is None for p, *_ in runs.values()):
        time.sleep(1.0)
    for process, *_ in runs.values():
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # stops the loop with a last checkpoint
    ran = time.monotonic() - started
    stop_deadline = time.monotonic() + plan.stop_grace
    games = {}
    for game, (process, log, run_dir, _) in runs.items():
        try:
            code = process.wait(timeout=max(1.0, stop_deadline - time.monotonic()))
            killed = False
        except subprocess.TimeoutExpired:
            _stop_group(process)
            code, killed = process.returncode, True
        log.close()
        log_path = Path(log.name)
        text = log_path.read_text(errors="replace")
        stopped_cleanly = code == 128 + signal.SIGINT and "stopped by SIGINT" in text
        games[game] = {
            "returncode": code,
            "status": "stopped with a checkpoint" if stopped_cleanly
            else "finished" if code == 0 else "killed" if killed else "failed",
            **_run_figures(run_dir),
            **({} if stopped_cleanly or code == 0 else {"error": _last_line(log_path)}),
        }  # fmt: skip
    with (out / "training.log").open("w") as combined:
        for game, (*_, command) in runs.items():
            combined.write(f"==> {game}: {' '.join(command)}\n")
            combined.write((work / f"{game}.log").read_text(errors="replace")[-20_000:] + "\n")
    rates = [run["env_steps_per_second"] for run in games.values()]
    ok = all(run["status"] in ("stopped with a checkpoint", "finished") for run in games.values())
    return {
        "status": "ok" if ok else "failed",
        "arguments": " ".join(plan.train_arguments),
        "preset": plan.train_arguments[plan.train_arguments.index("--preset") + 1],
        "concurrent_runs": len(GAMES),
        "seconds": round(ran, 1),
        "aggregate_env_steps_per_second": sum(rates) if all(r is not None for r in rates) else None,
        "games": games,
    }


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def format_table(summary: dict[str, Any]) -> str:
    tests, bench, training = summary["tests"], summary["bench"], summary["training"]
    counts = ", ".join(f"{n} {word}" for word, n in tests.get("counts", {}).items())
    lines = [
        f"device check{' (dry run)' if summary['dry_run'] else ''}: {summary['device']}, torch "
        f"{summary['torch']}, {summary['elapsed_seconds']:.0f} s",
        f"tests: {tests['status']}" + (f" ({counts})" if counts else ""),
    ]
    if "step_seconds" in bench:
        loop = ", ".join(
            f"{name} {_number(run['steps_per_second'])} env steps/s "
            f"({run['peak_memory_bytes'] / 1e9:.2f} GB)"
            for name, run in bench["loop"].items()
        )
        shared = ", ".join(
            f"{count} runs {_number(entry['aggregate_steps_per_second'])}"
            for count, entry in bench["concurrent"].items()
        )
        lines += [
            f"bench: training step {_number(bench['step_seconds'])} s in {bench['precision']}, "
            f"{bench['fraction_of_peak']:.1%} of the peak; measured bf16 peak "
            f"{_number(bench['peak_tflops_bf16'])} TFLOP/s",
            f"bench loop: {loop or 'not run'}"
            + (f"; in all: {shared} env steps/s" if shared else ""),
        ]
    if bench["status"] != "ok":
        lines.append(f"bench: {bench['status']}: {bench.get('error', '')}")
    lines += [
        f"training (preset {training['preset']}, {training['concurrent_runs']} at once, "
        f"{training['seconds']:.0f} s): {training['status']}",
        f"  {'game':<10}{'steps':>8}{'updates':>9}{'env steps/s':>13}{'updates/s':>11}"
        f"{'episodes':>10}  returns",
    ]
    for game, run in training["games"].items():
        returns = " ".join(f"{value:g}" for value in run["episode_returns"][-5:])
        lines.append(
            f"  {game:<10}{run['last_logged_step']:>8}{run['updates']:>9}"
            f"{_number(run['env_steps_per_second']):>13}{_number(run['updates_per_second']):>11}"
            f"{run['episodes']:>10}  {returns or '-'}"
            + ("" if "error" not in run else f"  ({run['status']}: {run['error']})")
        )
    lines.append(
        f"  {'in all':<10}{'':>17}{_number(training['aggregate_env_steps_per_second']):>13}"
    )
    return "\n".join(lines)


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
    bench = run_bench(plan, out, bench_limit)
    training_seconds = min(
        plan.training_most, max(plan.training_least, clock.left - plan.stop_grace - 10)
    )
    print(f"device check: training {', '.join(GAMES)} at once for {training_seconds:.0f} s",
          flush=True)  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="storm-wm-device-check-"))
    try:
        training = run_training(plan, out, work, training_seconds)
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
