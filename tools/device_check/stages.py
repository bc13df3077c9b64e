"""The device check's stages, each a subprocess with a time limit (see check.py).

Every stage returns a status and what it measured, also when it was stopped: at its limit, or
by a signal to the check (`Interrupted`). A stage stopped after some figures is `partial`
with them; one stopped before any is `timed out` or `interrupted`.
"""

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
from storm_wm.benchmark.profile import format_profile
from storm_wm.benchmark.run_metrics import episode_returns, window_rate
from storm_wm.launch import die_with_parent, last_line, storm_wm_argv
from storm_wm.logs.records import records

STOP_SECONDS = 5.0
"""The most that stopping a stage's processes takes: SIGTERM to every group at once, a wait,
then SIGKILL to those left and a last wait. A stage's limit includes it."""


class Interrupted(Exception):
    """The check itself was asked to stop (SIGTERM or SIGINT): the stage stops its processes,
    keeps what they measured, and the check writes it out."""


def start(command: list[str], log, environment: dict[str, str] | None = None) -> subprocess.Popen:
    """`command` in its own session (its children in its process group, out of reach of the
    signals sent to the check's group), output to `log`; it gets SIGTERM if the check dies, so
    that no stage outlives it holding the GPU."""
    return subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=environment,
        preexec_fn=die_with_parent,
    )


def _wait_all(processes: list[subprocess.Popen], seconds: float) -> None:
    """Waits until every process has exited or `seconds` have passed, whichever is first."""
    deadline = time.monotonic() + seconds
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return


def stop_all(processes: list[subprocess.Popen]) -> list[bool]:
    """Stops every process and its group together: SIGTERM to all, one wait, SIGKILL to those
    left, one more wait (at most STOP_SECONDS in all, however many there are). Returns, for
    each, whether it had to be signalled."""
    running = [process.poll() is None for process in processes]
    for sent, wait in ((signal.SIGTERM, 0.6 * STOP_SECONDS), (signal.SIGKILL, 0.4 * STOP_SECONDS)):
        left = [process for process in processes if process.poll() is None]
        if not left:
            break
        for process in left:
            try:
                os.killpg(process.pid, sent)
            except ProcessLookupError:
                pass
        _wait_all(left, wait)
    return running


def _wait(process: subprocess.Popen, seconds: float) -> bool:
    """True if `process` exited within `seconds`."""
    try:
        process.wait(timeout=max(0.1, seconds))
        return True
    except subprocess.TimeoutExpired:
        return False


def run_stage(
    command: list[str], log_path: Path, limit: float, environment: dict[str, str] | None = None
) -> dict[str, Any]:
    """Runs `command` with its output in `log_path`; stops it (and what it started) when
    `limit` seconds, stopping included, have passed or the check is interrupted."""
    started = time.monotonic()
    timed_out = interrupted = False
    with log_path.open("w") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        process = start(command, log, environment)
        try:
            if not _wait(process, limit - STOP_SECONDS):
                timed_out = True
        except Interrupted:
            interrupted = True
        if timed_out or interrupted:
            stop_all([process])
    return {
        "command": " ".join(command),
        "returncode": process.returncode,
        "timed_out": timed_out,
        "interrupted": interrupted,
        "limit_seconds": round(limit, 1),
        "seconds": round(time.monotonic() - started, 1),
    }


def _stopped_status(stage: dict[str, Any], has_figures: bool) -> str:
    if has_figures:
        return "partial"
    return "interrupted" if stage["interrupted"] else "timed out"


def cuda_test_files(root: Path) -> list[str]:
    return sorted(
        str(path.relative_to(root))
        for path in (root / "tests").glob("test_*.py")
        if "mark.cuda" in path.read_text(encoding="utf-8")
    )


_OUTCOME = re.compile(r"^(\S+::\S+) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b", re.MULTILINE)


def read_test_outcomes(text: str) -> dict[str, str]:
    """Each finished test's outcome from pytest's verbose output (a stopped run has some)."""
    return {test: outcome.lower() for test, outcome in _OUTCOME.findall(text)}


def run_tests(root: Path, out: Path, limit: float) -> dict[str, Any]:
    """`pytest -m cuda -v` over the files carrying the marker: the compile tests, the slowest
    and most wanted answers, come last in test_cuda.py; a run stopped at its limit keeps each
    finished test's outcome."""
    files = cuda_test_files(root)
    log_path = out / "tests.log"
    if not files:
        log_path.write_text("no test file carries the cuda marker\n")
        return {"status": "no tests marked cuda", "files": [], "counts": {}, "outcomes": {}}
    command = [sys.executable, "-m", "pytest", "-v", "-m", "cuda", "-p", "no:cacheprovider", *files]
    stage = run_stage(command, log_path, limit)
    outcomes = read_test_outcomes(log_path.read_text(errors="replace"))
    counts: dict[str, int] = {}
    for outcome in outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    if stage["timed_out"] or stage["interrupted"]:
        status = _stopped_status(stage, bool(outcomes))
    else:
        status = "passed" if stage["returncode"] == 0 else "failed"
    failed = [test for test, outcome in outcomes.items() if outcome in ("failed", "error")]
    if failed:
        status = "failed"
    error = {} if status in ("passed", "partial") else {"error": last_line(log_path)}
    return {
        "status": status,
        "files": files,
        "counts": counts,
        "outcomes": outcomes,
        **stage,
        **error,
    }


def bench_figures(figures: dict[str, Any]) -> dict[str, Any]:
    """The figures of bench.json the summary and the table show (the file holds every one)."""
    loop = figures.get("end_to_end") or {}
    phases = {
        name: {
            key: phase[key]
            for key in ("seconds", "tflop", "tflops", "fraction_of_peak", "floor_seconds")
            if key in phase
        }
        for name, phase in figures["phases"].items()
    }
    profile = figures.get("profile")
    return {
        "device_name": figures["device_name"],
        "precision": figures["precision"],
        "replay_on_device": figures.get("replay_on_device"),
        "planned": figures.get("planned", []),
        "measured": figures.get("measured", []),
        "step_seconds": figures["step_seconds"],
        "step_tflop": figures["step_tflop"],
        "fraction_of_peak": figures["fraction_of_peak"],
        "peak_tflops_bf16": figures["peak_tflops_bf16"],
        "peak_tflops_fp32": figures["peak_tflops_fp32"],
        "env_step_seconds": figures["env_step_seconds"],
        "train_every": figures["train_every"],
        "phases": phases,
        # The profile's scalars per phase; its top kernels and gaps are in profile.txt.
        "profile": profile
        if profile is None or "error" in profile
        else {
            name: {key: value for key, value in phase.items() if not isinstance(value, list | dict)}
            for name, phase in [*profile["phases"].items(), ("step", profile["step"])]
        },
        "loop": {
            name: {
                key: run[key]
                for key in (
                    "steps_per_second",
                    "updates_per_second",
                    "peak_memory_bytes",
                    "hours_per_100k_steps",
                    "checkpoints_in_window",
                    "steps",
                    "stopped_by",
                    "compile",
                    "compiled",
                    "compile_fallbacks",
                    "compile_records",
                )
                if key in run
            }
            for name, run in loop.get("variants", {}).items()
        },
        "concurrent": {
            count: {
                "aggregate_steps_per_second": entry["aggregate_steps_per_second"],
                "speedup_over_one_run": entry["speedup_over_one_run"],
                "per_run_steps_per_second": [run["steps_per_second"] for run in entry["per_run"]],
            }
            for count, entry in loop.get("concurrent", {}).items()
        },
    }


def run_bench(
    bench_arguments: tuple[str, ...],
    out: Path,
    limit: float,
    environment: dict[str, str] | None = None,
) -> dict[str, Any]:
    """`storm-wm bench ... --json out/bench.json`; its figures, partial when it was stopped
    after some (the bench rewrites its JSON after each measurement); the profile as text in
    profile.txt."""
    json_path = out / "bench.json"
    command = storm_wm_argv("bench", *bench_arguments, "--json", str(json_path))
    stage = run_stage(
        command, out / "bench.log", limit, environment={**os.environ, **(environment or {})}
    )
    figures = {}
    if json_path.is_file():
        raw = json.loads(json_path.read_text())
        figures = bench_figures(raw)
        if raw.get("profile"):
            (out / "profile.txt").write_text("\n".join(format_profile(raw["profile"])) + "\n")
    missing = [name for name in figures.get("planned", []) if name not in figures["measured"]]
    if stage["timed_out"] or stage["interrupted"]:
        status = _stopped_status(stage, bool(figures))
    elif stage["returncode"] == 0:
        status = "partial" if missing else "ok"  # a measurement that failed and was skipped
    else:
        status = "failed"
    error = {} if status == "ok" else {"error": last_line(out / "bench.log")}
    if (figures.get("profile") or {}).get("error"):
        error = {"error": f"the profile failed: {figures['profile']['error']}"}
    return {"status": status, **stage, **error, "missing": missing, **figures}


def _run_figures(run_dir: Path) -> dict[str, Any]:
    logged = records(run_dir / "metrics.jsonl")
    rate = window_rate(logged, from_step=0)
    returns = episode_returns(logged)
    trained = [record for record in logged if "train/updates" in record]
    return {
        "last_logged_step": max((record["step"] for record in logged), default=0),
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
    """One run per game, all at once, for `seconds`; then SIGINT to each (a run stops with a
    checkpoint) and one shared wait of at most `stop_grace`; those still running are stopped
    together (stop_all). Interrupted, it stops them the same way, with a shorter grace."""
    runs = {}
    for game in games:
        run_dir = work / game
        log = (work / f"{game}.log").open("w")
        where = ("--env.game", game, "--run-dir", str(run_dir), "--no-progress")
        command = storm_wm_argv("train", *train_arguments, *where)
        runs[game] = (
            start(command, log, shared_cpu_environment(len(games))),
            log,
            run_dir,
            command,
        )
    processes = [process for process, *_ in runs.values()]
    started = time.monotonic()
    interrupted = False
    try:
        deadline = started + seconds
        while time.monotonic() < deadline and any(p.poll() is None for p in processes):
            time.sleep(0.5)
    except Interrupted:
        interrupted, stop_grace = True, min(stop_grace, STOP_SECONDS)
    ran = time.monotonic() - started
    stopped = {game: runs[game][0].poll() is None for game in runs}  # by the check, not by failing
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # stops the loop with a last checkpoint
    try:
        _wait_all(processes, stop_grace)
    except Interrupted:
        interrupted = True
    killed = dict(zip(runs, stop_all(processes), strict=True))
    games_figures = {}
    for game, (process, log, run_dir, _) in runs.items():
        log.close()
        log_path = Path(log.name)
        text = log_path.read_text(errors="replace")
        code = process.returncode
        stopped_cleanly = code == 128 + signal.SIGINT and "stopped by SIGINT" in text
        figures = _run_figures(run_dir)
        # Stopped by the check before it logged a step: too early to write a checkpoint. A run
        # that had logged steps must stop cleanly; if it does not, that is a failure.
        too_early = stopped[game] and figures["env_steps_per_second"] is None
        games_figures[game] = {
            "returncode": code,
            "status": "stopped with a checkpoint"
            if stopped_cleanly
            else "finished"
            if code == 0
            else "killed"
            if killed[game]
            else "stopped before its loop began"
            if too_early
            else "failed",
            **figures,
            **({} if stopped_cleanly or code == 0 or too_early else {"error": last_line(log_path)}),
        }
    with (out / "training.log").open("w") as combined:
        for game, (*_, command) in runs.items():
            combined.write(f"==> {game}: {' '.join(command)}\n")
            combined.write((work / f"{game}.log").read_text(errors="replace")[-20_000:] + "\n")
    rates = [run["env_steps_per_second"] for run in games_figures.values()]
    ok = all(
        run["status"] in ("stopped with a checkpoint", "finished") for run in games_figures.values()
    )
    statuses = {run["status"] for run in games_figures.values()}
    if interrupted:
        status = "partial" if any(rate is not None for rate in rates) else "interrupted"
    elif ok:
        status = "ok"
    elif statuses <= {"stopped with a checkpoint", "finished", "stopped before its loop began"}:
        # Too little time for a run to reach its loop (the stages before it used the budget).
        status = "partial" if any(rate is not None for rate in rates) else "timed out"
    else:
        status = "failed"
    return {
        "status": status,
        "interrupted": interrupted,
        "arguments": " ".join(train_arguments),
        "preset": train_arguments[train_arguments.index("--preset") + 1],
        "concurrent_runs": len(games),
        "seconds": round(ran, 1),
        "aggregate_env_steps_per_second": sum(rates) if all(r is not None for r in rates) else None,
        "games": games_figures,
    }
