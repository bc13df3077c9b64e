"""A newcomer's first hour: truthful start lines, no half-created runs, nothing condemned.

Runs are toy:catch with tiny models, through the `storm-wm` command line as a subprocess where
that is how a user meets the behaviour.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from storm_wm import __version__, cli
from storm_wm.config import build_config, field_names
from storm_wm.logs.events import EventWriter
from storm_wm.logs.metrics import Logger
from storm_wm.persistence import checkpoint
from storm_wm.persistence.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    load_intact_checkpoint,
)
from storm_wm.run import estimate
from storm_wm.run.directory import RUN_LOCK, run_lock
from storm_wm.run.parts import MODEL, TRAINING, WARMUP, PhaseClock
from storm_wm.run.signals import StopSignals
from storm_wm.run.train import train
from storm_wm.text import format_duration

# This file's training schedule, on the tiny preset's networks (stacked on toy).
SCHEDULE = {
    "train.warmup_steps": 40,
    "train.checkpoint_every": 40,
    "train.log_every": 20,
    "train.train_every": 4,
    "train.video_every": 0,
    "train.diagnostics_every": 0,
}
SCHEDULE_ARGS = [item for name, value in SCHEDULE.items() for item in (f"--{name}", str(value))]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
STEPS = 120


def storm_wm(
    *arguments: str, timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "storm_wm.cli", *arguments]
    return subprocess.run(
        command, capture_output=True, text=True, env=ENV, timeout=timeout, cwd=cwd
    )


def train_arguments(run_dir: Path, *extra: str, steps: int = STEPS) -> list[str]:
    """`storm-wm train` of the tiny networks on toy:catch for `steps`, on this file's schedule."""
    common = ["--preset", "toy+tiny", "--steps", str(steps), *SCHEDULE_ARGS, "--no-progress"]
    return ["train", *common, "--run-dir", str(run_dir), *extra]


def error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    result = storm_wm(*train_arguments(run_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir


def copy_run(source: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(source, run_dir)
    return run_dir


# --version, `storm-wm config` and "did you mean" suggestions.


def test_version_and_the_config_listing() -> None:
    assert storm_wm("--version").stdout.strip() == f"storm-wm {__version__}"
    listing = storm_wm("config", "--preset", "toy", "--json")
    assert listing.returncode == 0, listing.stderr
    rows = {row["name"]: row for row in map(json.loads, listing.stdout.splitlines())}
    assert list(rows) == field_names()  # every field, in declaration order
    assert rows["train.steps"]["value"] == 2_800 and rows["train.steps"]["type"] == "int"
    assert rows["world_model.channels"]["value"] == [8, 16, 16, 16]
    # The meaning declared with the field in config.py, word for word.
    assert rows["train.checkpoint_keep"]["doc"].startswith("Newest checkpoints kept")
    assert [name for name, row in rows.items() if not row["doc"]] == []  # each has a meaning
    text = storm_wm("config").stdout
    assert "--agent.gamma 0.985  (float)" in text
    help_text = " ".join(storm_wm("train", "--help").stdout.split())
    assert "`storm-wm config` lists every field" in help_text


def test_misspelled_field_suggests_the_closest_and_points_at_the_listing(tmp_path: Path) -> None:
    result = storm_wm(
        "train",
        "--preset",
        "toy",
        "--train.checkpoint_kep",
        "3",
        "--run-dir",
        str(tmp_path / "run"),
    )
    line = error_line(result)
    assert "unknown config field 'train.checkpoint_kep'" in line
    assert "did you mean train.checkpoint_keep" in line and "storm-wm config" in line
    assert not (tmp_path / "run").exists()


# Validation happens before anything is created.


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        (["--seed", "-1"], "seed must be 0 or more"),
        (["--world_model.learning_rate", "nan"], "world_model.learning_rate must be a finite"),
        (["--agent.learning_rate", "inf"], "agent.learning_rate must be a finite"),
        (["--game", "gym:CartPole-v1"], "needs images"),
        pytest.param(
            ["--device", "cuda"],
            "CUDA is not available",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available"),
        ),
    ],
)
def test_refused_input_leaves_no_run_directory(tmp_path: Path, bad: list[str], named: str) -> None:
    run_dir = tmp_path / "runs" / "run"
    for mode in ([], ["--resume"]):
        result = storm_wm(*train_arguments(run_dir, *bad, *mode))
        assert result.returncode == 2
        assert named in error_line(result)
        assert not run_dir.exists() and not run_dir.parent.exists()


def test_after_a_refusal_the_corrected_command_works(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert storm_wm(*train_arguments(run_dir, "--seed", "-1")).returncode == 2
    result = storm_wm(*train_arguments(run_dir, "--seed", "0", "--steps", "50"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((run_dir / "config.json").read_text())["seed"] == 0


# The start says when a CPU faces a GPU workload.


def test_paper_update_flops_match_the_measured_step() -> None:
    """Counted on a batch of one and scaled: the 1.478 TFLOP that `storm-wm bench` measured."""
    flops = estimate.update_flops(build_config("atari100k"), num_actions=6)
    assert flops == pytest.approx(1.478e12, rel=0.01)


class FakeEnv:
    class action_space:  # noqa: N801 (the attribute gymnasium envs have)
        n = 6


def test_paper_run_on_a_cpu_is_announced_with_its_duration(monkeypatch, capsys) -> None:
    monkeypatch.setattr(estimate, "update_flops", lambda config, actions: 1.478e12)
    monkeypatch.setattr(estimate, "matmul_flops_per_second", lambda: 100e9)
    monkeypatch.setattr(estimate, "threads_in_use", lambda: 1)
    estimate.announce_workload(build_config("atari100k"), torch.device("cpu"), FakeEnv())
    message = capsys.readouterr().err
    # 98,976 updates of 1.478 TFLOP at 58 GFLOP/s: 2.5e6 s, about 29 days.
    assert "GPU workload" in message and "about 29 days on this CPU" in message
    assert "--preset toy" in message


def test_small_runs_start_without_a_measurement(monkeypatch, capsys) -> None:
    def no_measurement():
        raise AssertionError("a small run must not time the CPU")

    monkeypatch.setattr(estimate, "matmul_flops_per_second", no_measurement)
    estimate.announce_workload(build_config("toy"), torch.device("cpu"), FakeEnv())
    estimate.announce_workload(build_config("atari100k"), torch.device("meta"), FakeEnv())
    assert capsys.readouterr().err == ""


# The time left is told per phase.


def test_time_left_models_warm_up_and_training_separately() -> None:
    now = [0.0]
    clock = PhaseClock(clock=lambda: now[0])
    assert clock.describe(1000, 99_000) == "warm-up: 1000 random steps, then 99000 training steps"
    clock.tick(WARMUP)
    for _ in range(100):  # warm-up: 10 ms a step
        now[0] += 0.01
        clock.tick(WARMUP)
    assert (
        clock.describe(900, 99_000) == "warm-up 0:09 left, then 99000 training steps "
        "(ETA once a few have run)"
    )
    for _ in range(4):  # training: 30 s a step
        now[0] += 30.0
        clock.tick(TRAINING)
    assert clock.describe(0, 99_000) == f"ETA {format_duration(99_000 * 30.0)}" == "ETA 34 days"
    assert format_duration(3725) == "1:02:05" and format_duration(42) == "0:42"


def test_time_left_times_the_world_models_steps_before_the_agents_start_apart() -> None:
    # --train.agent_start: the world model's updates alone are faster than the later ones.
    now = [0.0]
    clock = PhaseClock(clock=lambda: now[0])
    assert clock.describe(100, 2_000, 500) == (
        "warm-up: 100 random steps, then 500 world-model steps, then 2000 training steps"
    )
    clock.tick(WARMUP)
    for _ in range(100):  # warm-up: 10 ms a step
        now[0] += 0.01
        clock.tick(WARMUP)
    for _ in range(4):  # the world model alone: 2 s a step
        now[0] += 2.0
        clock.tick(MODEL)
    assert clock.describe(0, 2_000, 60) == (
        "world model alone 2:00 left, then 2000 training steps (ETA once a few have run)"
    )
    for _ in range(4):  # both updates: 3 s a step
        now[0] += 3.0
        clock.tick(TRAINING)
    assert clock.describe(0, 2_000, 60) == f"ETA {format_duration(60 * 2.0 + 2_000 * 3.0)}"


# A stop request is acknowledged at once.


def test_first_signal_is_acknowledged_at_once() -> None:
    read_end, write_end = os.pipe()
    try:
        with StopSignals(announce_to=write_end) as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.requested == "SIGTERM"
        message = os.read(read_end, 4096).decode()
    finally:
        os.close(read_end)
        os.close(write_end)
    assert "stopping after the current step" in message and "saving a checkpoint" in message


def test_ctrl_c_says_so_then_saves(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "storm_wm.cli", *train_arguments(run_dir, "--steps", "400")]
    process = subprocess.Popen(
        command, env=ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 240
    while not list_checkpoints(run_dir):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT
    assert "SIGINT received: stopping after the current step and saving a checkpoint" in stderr
    assert "stopped by SIGINT" in stdout and "train --resume" in stdout


# `make train` twice continues the run; hints work as typed.


def test_bare_resume_starts_then_continues_its_own_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = storm_wm(*train_arguments(run_dir, "--steps", "40", "--resume"))
    assert first.returncode == 0, first.stderr[-2000:]
    assert "continuing" not in first.stdout
    second = storm_wm(*train_arguments(run_dir, "--steps", "80", "--resume"))
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"{run_dir} holds this run already: continuing it" in second.stdout
    assert [step for step, _ in list_checkpoints(run_dir)] == [40, 80]


def test_hints_name_the_console_as_it_can_be_typed(monkeypatch, tmp_path: Path) -> None:
    from storm_wm import hints

    monkeypatch.setattr(hints.shutil, "which", lambda name: "/usr/bin/storm-wm")
    assert hints.command("train", "--resume", "x") == "storm-wm train --resume x"
    assert hints.command("eval", Path("my runs/it's")) == """storm-wm eval 'my runs/it'"'"'s'"""
    monkeypatch.setattr(hints.shutil, "which", lambda name: None)
    bin_dir = tmp_path / "a venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "storm-wm").write_text("")
    monkeypatch.setattr(hints.sys, "executable", str(bin_dir / "python"))
    monkeypatch.chdir(tmp_path)
    assert hints.command("train", "--resume", "x") == "'a venv/bin/storm-wm' train --resume x"
    (bin_dir / "storm-wm").unlink()
    assert hints.command("eval", "x") == f"'{bin_dir / 'python'}' -m storm_wm.cli eval x"


# Bookkeeping may change on resume.


def test_resume_may_change_bookkeeping_but_not_the_experiment(
    finished_run: Path, tmp_path: Path
) -> None:
    run_dir = copy_run(finished_run, tmp_path)
    changed = [
        "--train.checkpoint_keep",
        "3",
        "--train.log_every",
        "40",
        "--device",
        "cpu",
        "--train.checkpoint_every",
        "80",
        "--steps",
        "200",
    ]
    result = storm_wm("train", "--resume", str(run_dir), "--no-progress", *changed)
    assert result.returncode == 0, result.stderr[-2000:]
    saved = json.loads((run_dir / "config.json").read_text())
    # The budget and the checkpoint count stay for later resumes; the rest was for this one.
    assert saved["train"]["steps"] == 200 and saved["train"]["checkpoint_keep"] == 3
    assert saved["train"]["log_every"] == 20 and saved["train"]["checkpoint_every"] == 40
    assert [step for step, _ in list_checkpoints(run_dir)] == [80, 120, 160, 200][-3:]
    refused = storm_wm("train", "--resume", str(run_dir), "--agent.gamma", "0.9")
    assert "agent.gamma 0.985 vs 0.9" in error_line(refused)


# One process per run.


def test_a_second_process_on_the_run_is_refused_naming_the_holder(
    finished_run: Path, tmp_path: Path
) -> None:
    run_dir = copy_run(finished_run, tmp_path)
    with run_lock(run_dir):
        result = storm_wm("train", "--resume", str(run_dir), "--steps", "160", "--no-progress")
        assert result.returncode == 2
        line = error_line(result)
        assert f"being trained by another storm-wm process (pid {os.getpid()})" in line
    assert not (run_dir / RUN_LOCK).exists()  # removed when the holder ends
    assert [step for step, _ in list_checkpoints(run_dir)][-1] == STEPS  # nothing trained


def test_a_stale_lock_of_a_killed_process_is_taken_over(finished_run: Path, tmp_path: Path) -> None:
    run_dir = copy_run(finished_run, tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from storm_wm.run.directory import run_lock\n"
            f"with run_lock(Path({str(run_dir)!r})):\n print('held', flush=True); time.sleep(600)",
        ],
        env={**ENV, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    assert (run_dir / RUN_LOCK).exists()  # kill -9 left the file, but not the kernel's lock
    result = storm_wm("train", "--resume", str(run_dir), "--steps", "160", "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (run_dir / RUN_LOCK).exists()


# A bad replay chunk never condemns intact checkpoints.


def test_missing_replay_chunk_resumes_with_what_remains(
    finished_run: Path, tmp_path: Path, capsys
) -> None:
    run_dir = copy_run(finished_run, tmp_path)
    manifest = load_checkpoint(list_checkpoints(run_dir)[-1][1])["replay"]["chunks"]
    oldest = run_dir / "replay" / manifest[0]["name"]
    lost = manifest[0]["stop"] - manifest[0]["first"]
    oldest.unlink()
    assert cli.main(["train", "--resume", str(run_dir), "--steps", "160", "--no-progress"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1, warnings
    assert oldest.name in warnings[0] and "the checkpoint of step 120 is intact" in warnings[0]
    assert (
        f"with the {STEPS - lost} replay steps that remain ({lost} of {STEPS} lost" in (warnings[0])
    )
    assert not list((run_dir / "checkpoints").glob("*.corrupt"))
    # None condemned: the oldest only went as checkpoint_keep (3) prunes it.
    assert [step for step, _ in list_checkpoints(run_dir)] == [80, 120, 160]
    assert cli.main(["eval", str(run_dir), "--episodes", "1", "--device", "cpu"]) == 0


# A checkpoint that would run code is set aside like a corrupt one.


class RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant_unsafe_newest(run_dir: Path, marker: Path) -> Path:
    step, path = list_checkpoints(run_dir)[-1]
    parts = checkpoint.encode_checkpoint({"evil": RunsCode(marker)}, {"step": step})
    path.write_bytes(b"".join(parts))  # a valid checksum: an attacker can compute one
    return path


def test_unsafe_checkpoint_is_refused_in_our_words_and_resume_falls_back(
    finished_run: Path, tmp_path: Path, capsys
) -> None:
    run_dir = copy_run(finished_run, tmp_path)
    marker = tmp_path / "code_ran"
    unsafe = plant_unsafe_newest(run_dir, marker)
    with pytest.raises(checkpoint.UnsafeCheckpointError) as caught:
        load_checkpoint(unsafe)
    message = str(caught.value)
    assert "could run code" in message and "posix.system" in message
    assert "weights_only" not in message and message.endswith("do not load it")
    # eval, dream and play take the newest intact weights, with a warning.
    path, _ = load_intact_checkpoint(run_dir)
    assert path == list_checkpoints(run_dir)[-2][1]
    assert "using the checkpoint of step 80" in capsys.readouterr().err
    assert cli.main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "could run code" in warnings[0]
    assert "resumed from step 80" in warnings[0]
    assert unsafe.with_name(unsafe.name + ".corrupt").exists()
    assert not marker.exists()


# TensorBoard is flushed with each checkpoint and fails in one line.


def read_scalars(directory: Path) -> list[tuple[int, str]]:
    from tensorboardX.proto.event_pb2 import Event

    found = []
    for path in directory.glob("events.out.tfevents.*"):
        data, offset = path.read_bytes(), 0
        while offset + 12 <= len(data):
            length = int(np.frombuffer(data[offset : offset + 8], dtype="<u8")[0])
            event = Event.FromString(data[offset + 12 : offset + 12 + length])
            found += [(event.step, value.tag) for value in event.summary.value]
            offset += 12 + length + 4
    return found


def test_flushed_events_are_on_disk_before_the_writer_closes(tmp_path: Path) -> None:
    logger = Logger(tmp_path)
    logger.log(10, {"agent/entropy": 0.5})
    logger.flush()
    assert read_scalars(tmp_path / "tensorboard") == [(10, "agent/entropy")]
    logger.close()


def test_full_disk_under_tensorboard_is_one_line(tmp_path: Path, monkeypatch) -> None:
    lines: list[str] = []
    writer = EventWriter(tmp_path / "tensorboard", warn=lines.append)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(writer.events._py_recordio_writer, "write", disk_full)
    for step in range(50):
        writer.add_scalar("agent/entropy", 0.5, step)
        writer.flush()
    writer.close()
    assert len(lines) == 1 and "No space left on device" in lines[0]
    assert "metrics.jsonl keeps every record" in lines[0]


def test_unwritable_tensorboard_directory_does_not_stop_training(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "tensorboard").write_text("not a directory")
    config = build_config("toy+tiny", {**SCHEDULE, "train.steps": 60})
    train(config, run_dir, show_progress=False)
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and "cannot write TensorBoard events" in errors[0]
    records = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert any("train/updates" in record for record in records)
