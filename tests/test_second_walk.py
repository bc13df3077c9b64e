"""A newcomer's second walk: the rough edges of resuming, hints, names, estimates and logs.

Runs are toy:catch with tiny models, through the `storm-wm` command line as a subprocess where
that is how a user meets the behaviour (in this process where only the message matters).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from storm_wm import cli
from storm_wm.config import build_config
from storm_wm.run import estimate

SCHEDULE = {
    "train.warmup_steps": 40, "train.checkpoint_every": 40, "train.log_every": 20,
    "train.train_every": 4, "train.video_every": 0, "train.diagnostics_every": 0,
}  # fmt: skip
SCHEDULE_ARGS = [item for name, value in SCHEDULE.items() for item in (f"--{name}", str(value))]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
STEPS = 80

pytestmark = pytest.mark.usefixtures("one_thread")


def storm_wm(*arguments: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "storm_wm.cli", *arguments]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300, cwd=cwd)


def train_arguments(run_dir: Path, *extra: str) -> list[str]:
    return [
        "train", "--preset", "toy+tiny", "--steps", str(STEPS), *SCHEDULE_ARGS, "--no-progress",
        "--run-dir", str(run_dir), *extra,
    ]  # fmt: skip


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    result = storm_wm(*train_arguments(run_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir


def copy_run(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination)
    return destination


# A damaged config.json is named, with what is wrong in it.


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"agent": {"gamma": "abc"}}', "agent.gamma must be float, got 'abc'"),
        ('{"bogus": {}}', "unknown config field 'bogus'"),
        ("{}", "it is empty ({})"),
        ('{"agent": 5}', "agent must be an object of fields, got 5"),
    ],
)
@pytest.mark.parametrize("command_name", ["resume", "eval"])
def test_a_damaged_config_json_is_named_with_its_problem(
    finished_run: Path, tmp_path: Path, capsys, content: str, problem: str, command_name: str
) -> None:
    run_dir = copy_run(finished_run, tmp_path / "run")
    (run_dir / "config.json").write_text(content)
    if command_name == "resume":
        arguments = ["train", "--resume", str(run_dir), "--no-progress"]
    else:
        arguments = ["eval", str(run_dir), "--episodes", "1"]
    assert cli.main(arguments) == 2
    error = one_line(capsys.readouterr().err)
    assert f"{run_dir / 'config.json'} is damaged: {problem}" in error, error
    assert "checkpoint" not in error  # the file is to blame, not the checkpoints


def test_a_config_json_missing_sections_lists_them(finished_run: Path, tmp_path: Path) -> None:
    run_dir = copy_run(finished_run, tmp_path / "run")
    saved = json.loads((run_dir / "config.json").read_text())
    del saved["world_model"], saved["seed"]
    (run_dir / "config.json").write_text(json.dumps(saved))
    result = storm_wm("train", "--resume", str(run_dir), "--no-progress")
    assert result.returncode == 2
    assert "config.json is damaged: it lacks world_model, seed;" in one_line(result.stderr)


# A log (not a terminal) hears from a long evaluation by time, not only every tenth.


class Finished:
    """What evaluate() hands its progress callback: the returns of the episodes done so far."""

    def __init__(self, count: int) -> None:
        self.returns = [1.0] * count

    def __len__(self) -> int:
        return len(self.returns)


def test_eval_progress_in_a_log_is_printed_at_least_every_30_seconds() -> None:
    from storm_wm.commands.eval import Progress

    now = [0.0]
    log = io.StringIO()  # not a terminal
    progress = Progress(log, requested=1_000_000, clock=lambda: now[0])
    for done, seconds in [(1, 0.0), (2, 10.0), (3, 29.9), (4, 30.0), (5, 45.0), (6, 61.0)]:
        now[0] = seconds
        progress(Finished(done))
    lines = log.getvalue().splitlines()
    assert [line.split(" episodes")[0] for line in lines] == [
        "eval: 1/1000000",
        "eval: 4/1000000",
        "eval: 6/1000000",
    ]
    progress(Finished(100_000))  # a tenth: printed whatever the time
    assert log.getvalue().splitlines()[-1].startswith("eval: 100000/1000000")


# The start-of-run estimate: the steps left, from a measurement that repeats.


class FakeEnv:
    class action_space:  # noqa: N801 (the attribute gymnasium envs have)
        n = 6


def test_the_estimate_of_a_resumed_run_counts_the_steps_left(monkeypatch, capsys) -> None:
    monkeypatch.setattr(estimate, "update_flops", lambda config, actions: 1.478e12)
    monkeypatch.setattr(estimate, "matmul_flops_per_second", lambda: 50e9)
    monkeypatch.setattr(estimate, "threads_in_use", lambda: 2)
    config = build_config("atari100k")
    estimate.announce_workload(config, torch.device("cpu"), FakeEnv())
    start = capsys.readouterr().err
    # 98,976 updates of 1.478 TFLOP at 2 x 50 x 0.58 GFLOP/s: 2.52e6 s, 29 days.
    assert "98,976 updates of 1.48 TFLOP, about 29 days on this CPU" in start
    assert "2 threads at 50 GFLOP/s each" in start
    estimate.announce_workload(config, torch.device("cpu"), FakeEnv(), done=50_000)
    # (100,000 - 50,000) updates left: about 15 days
    assert "50,000 updates left of 1.48 TFLOP, about 15 days" in capsys.readouterr().err
    assert (
        estimate.updates_left(config, 99_999) == 1 and estimate.updates_left(config, 500) == 98_976
    )


def test_the_speed_is_measured_on_one_thread_and_the_setting_put_back() -> None:
    threads = torch.get_num_threads()
    calls = []
    real_mm = torch.mm

    def mm(left, right):
        calls.append(torch.get_num_threads())
        return real_mm(left, right)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(estimate.torch, "mm", mm)
        speed = estimate.matmul_flops_per_second(size=32, budget=0.0)
    assert speed > 0 and len(calls) >= 4  # a warm-up product, then at least three timed
    assert set(calls) == {1} and torch.get_num_threads() == threads
