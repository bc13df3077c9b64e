"""The device check's stages, each a subprocess with a time limit (see check.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from storm_wm.benchmark.end_to_end import shared_cpu_environment
from storm_wm.benchmark.run_metrics import episode_returns, read_records, window_rate


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


def run_bench(bench_arguments: tuple[str, ...], out: Path, limit: float) -> dict[str, Any]:
    json_path = out / "bench.json"
    command = [sys.executable, "-m", "storm_wm.cli", "bench", *bench_arguments, "--json",
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


def run_training(
    train_arguments: tuple[str, ...],
    games: tuple[str, ...],
    stop_grace: float,
    out: Path,
    work: Path,
    seconds: float,
) -> dict[str, Any]:
    """One run per game, all at once, for `seconds`; then SIGINT to each; their figures."""
    runs = {}
    for game in games:
        run_dir = work / game
        log = (work / f"{game}.log").open("w")
        command = [sys.executable, "-m", "storm_wm.cli", "train", *train_arguments,
                   "--env.game", game, "--run-dir", str(run_dir), "--no-progress"]  # fmt: skip
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env=shared_cpu_environment(len(games)),
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
    stop_deadline = time.monotonic() + stop_grace
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
        "arguments": " ".join(train_arguments),
        "preset": train_arguments[train_arguments.index("--preset") + 1],
        "concurrent_runs": len(games),
        "seconds": round(ran, 1),
        "aggregate_env_steps_per_second": sum(rates) if all(r is not None for r in rates) else None,
        "games": games,
    }
