"""One run of a sweep, on whichever machine runs it: `storm-wm train`, then `storm-wm eval`.

Runs are subprocesses of the command line, never imported training code: a crash, a leak or a
CUDA error stays inside its run, a stuck run can be killed by its process id, and each run keeps
its own logs (RUN_DIR/train.log, RUN_DIR/eval.log). What to do next is read from the run
directory, so the same call starts a new run or resumes a killed one.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from storm_wm.launch import die_with_parent, last_line, storm_wm_argv
from storm_wm.sweep.plan import RunSpec

STOP_SECONDS = 60.0
"""How long a stopped run may take to write its last checkpoint before it is killed."""


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended."""

    finished: bool
    error: str | None = None
    """The failing command's last log line, e.g. `storm-wm train: error: ...`."""
    log: str | None = None


def run_is_finished(run_dir: Path) -> bool:
    """A run is finished when it has been evaluated: eval.json is written last. An evaluation
    cut short by Ctrl-C (marked partial) does not count."""
    path = run_dir / "eval.json"
    if not path.is_file():
        return False
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return True  # unreadable but present: as before, the run's outcome says more
    return not (isinstance(record, dict) and record.get("partial") is True)


def resumes(run_dir: Path) -> bool:
    """True when `run_dir` holds a started run: `train --resume` continues it from its newest
    good checkpoint (or starts it over if it was killed before the first one)."""
    return (run_dir / "config.json").is_file()


def stop(processes: list[subprocess.Popen]) -> None:
    """One SIGTERM each, which train answers by finishing its step and writing a checkpoint
    (a second signal would make it exit at once); SIGKILL for any still running after
    STOP_SECONDS."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        process.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for process in running:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait(process: subprocess.Popen) -> int:
    """Wait in short slices: Ray cancels a task by raising KeyboardInterrupt in its thread,
    which cannot land while the thread is blocked in one long waitpid()."""
    while True:
        try:
            return process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            continue


def _call(
    arguments: tuple[str, ...],
    log_path: Path,
    header: str,
    environment: dict[str, str],
    on_start: Callable[[subprocess.Popen], None] | None,
) -> str | None:
    """Run `storm-wm ARGUMENTS` with its output appended to `log_path`; the error, or None."""
    command = storm_wm_argv(*arguments)
    with log_path.open("ab") as log:
        log.write(f"\n=== {header}: storm-wm {shlex.join(arguments)}\n".encode())
        log.flush()
        offset = log.tell()
        # Its own session: a Ctrl-C meant for the sweep reaches the run only as the sweep's one
        # SIGTERM (a second signal would make train exit without its checkpoint). A sweep killed
        # with SIGKILL, or a Ray worker killed by cancellation, leaves no run behind.
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
        )
        if on_start is not None:
            on_start(process)
        try:
            code = _wait(process)
        except BaseException:  # a cancelled Ray task gets KeyboardInterrupt here
            stop([process])
            raise
    if code == 0:
        return None
    last = last_line(log_path, offset)
    if code < 0:
        killed = f"killed by {signal.Signals(-code).name}"
        return f"{killed} ({last})" if last else killed
    return last or f"{arguments[0]} exited with status {code}"


def execute_run(
    run: RunSpec,
    attempt: int,
    where: str,
    environment: dict[str, str] | None = None,
    on_start: Callable[[subprocess.Popen], None] | None = None,
) -> Outcome:
    """Bring `run` to finished: train (or resume) it if needed, then evaluate it.

    `where` names the slot or Ray task for the log headers, `environment` is added to this
    process's (threads per run, the GPU of a local slot), and `on_start` receives each
    subprocess so that a local sweep can stop it.
    """
    run_dir = run.run_dir
    if run_is_finished(run_dir):
        return Outcome(finished=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    full_environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(environment or {})}
    devices = full_environment.get("CUDA_VISIBLE_DEVICES")
    place = f"{where} on {socket.gethostname()}"
    if devices is not None:
        place += f", CUDA_VISIBLE_DEVICES={devices!r}"
    header = f"storm-wm sweep attempt {attempt}, {place}, {time.strftime('%Y-%m-%d %H:%M:%S')}"

    train = run.resume_arguments if resumes(run_dir) else run.train_arguments
    for arguments, log_path in (
        (train, run_dir / "train.log"),
        (run.eval_arguments, run_dir / "eval.log"),
    ):
        error = _call(arguments, log_path, header, full_environment, on_start)
        if error is not None:
            return Outcome(finished=False, error=error, log=str(log_path))
    if not run_is_finished(run_dir):
        return Outcome(False, "eval exited cleanly but wrote no eval.json", str(log_path))
    return Outcome(finished=True)
