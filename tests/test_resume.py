"""Runs that survive anything: killed, stopped, corrupted, out of disk, NaN, resumed exactly.

Every run here is toy:catch with tiny models (seconds each). The reference run goes from start
to finish untouched; the others are interrupted in some way and must end where it ended: the
same steps, the same replay contents, the same metric steps and, with --deterministic on the
CPU, the same weights bit for bit.
"""

from __future__ import annotations

import errno
import hashlib
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

from storm_wm import atomic, cli
from storm_wm.config import build_config, with_overrides
from storm_wm.errors import StormError
from storm_wm.persistence.checkpoint import (
    find_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from storm_wm.persistence.resume import check_resume_config
from storm_wm.run import train as run

STEPS = 120
# This file's training schedule, on the tiny preset's networks (stacked on toy).
SCHEDULE = {
    "train.warmup_steps": 40,
    "train.checkpoint_every": 40,
    "train.log_every": 20,
    "train.train_every": 2,
}
SCHEDULE_ARGS = [item for name, value in SCHEDULE.items() for item in (f"--{name}", str(value))]
# One thread, here and in the subprocesses: the same kernels on the same data, bit for bit.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def train_arguments(run_dir: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--preset",
        "toy+tiny",
        "--steps",
        str(STEPS),
        *SCHEDULE_ARGS,
        "--deterministic",
        "--no-progress",
        "--run-dir",
        str(run_dir),
        *extra,
    ]


def command(arguments: list[str]) -> list[str]:
    return [sys.executable, "-m", "storm_wm.cli", *arguments]


def resume(run_dir: Path) -> subprocess.CompletedProcess:
    arguments = command(["train", "--resume", str(run_dir), "--no-progress"])
    result = subprocess.run(arguments, capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The run left alone."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    result = subprocess.run(
        command(train_arguments(run_dir)), capture_output=True, text=True, env=ENV, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir


def interrupted(run_dir: Path, kill_with: signal.Signals) -> subprocess.Popen:
    """Starts the reference's command and sends `kill_with` a little after its first checkpoint."""
    process = subprocess.Popen(
        command(train_arguments(run_dir)),
        env=ENV,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    while not list_checkpoints(run_dir):
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.05)  # a few steps past the checkpoint: in the middle of an episode
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(kill_with)
    return process


def final_checkpoint(run_dir: Path) -> dict:
    return load_checkpoint(find_checkpoint(run_dir))


def assert_same_weights(run_dir: Path, reference_dir: Path) -> None:
    state, expected = final_checkpoint(run_dir), final_checkpoint(reference_dir)
    for model in ("world_model", "actor_critic"):
        for name, tensor in expected[model].items():
            assert torch.equal(state[model][name], tensor), f"{model}.{name} differs"
    for optimizer in ("world_model_optimizer", "agent_optimizer"):
        for index, moments in expected["trainer"][optimizer]["state"].items():
            for name, tensor in moments.items():
                assert torch.equal(state["trainer"][optimizer]["state"][index][name], tensor)


def replay_digests(run_dir: Path) -> dict[str, str]:
    """SHA-256 of each replay field over every step the final checkpoint's buffer holds."""
    manifest = final_checkpoint(run_dir)["replay"]["chunks"]
    fields: dict[str, list[np.ndarray]] = {}
    for chunk in manifest:
        with np.load(run_dir / "replay" / chunk["name"]) as arrays:
            for name in arrays.files:
                fields.setdefault(name, []).append(arrays[name])
    return {
        name: hashlib.sha256(np.concatenate(parts).tobytes()).hexdigest()
        for name, parts in fields.items()
    }


def metric_records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_metric_steps_are_those_of(run_dir: Path, reference_dir: Path) -> None:
    """Each kind of record once per step, none missing: the same step sequence as the reference."""
    records = metric_records(run_dir)
    episodes = [r["step"] for r in records if "env/episode_return" in r]
    training = [r["step"] for r in records if "train/updates" in r]
    assert len(episodes) == len(set(episodes)) and len(training) == len(set(training))
    assert training == list(range(60, STEPS + 1, 20))  # logged from the first updates on
    steps = [(r["step"], sorted(r)) for r in records]
    assert steps == [(r["step"], sorted(r)) for r in metric_records(reference_dir)]


def test_sigkill_mid_run_then_resume_loses_nothing(reference: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    process = interrupted(run_dir, signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    resumed_from = list_checkpoints(run_dir)[-1][0]
    assert resumed_from < STEPS
    assert load_checkpoint(find_checkpoint(run_dir))["loop"]["episode_length"] > 0  # mid-episode

    resume(run_dir)
    state = final_checkpoint(run_dir)
    assert state["step"] == state["loop"]["step"] == state["replay"]["total"] == STEPS
    episode_steps = sum(
        r["env/episode_length"] for r in metric_records(run_dir) if "env/episode_length" in r
    )
    assert episode_steps + state["loop"]["episode_length"] == STEPS
    assert replay_digests(run_dir) == replay_digests(reference)
    assert_metric_steps_are_those_of(run_dir, reference)
    assert not list(run_dir.rglob("*.tmp"))


@pytest.fixture(scope="module")
def sigterm_run(reference: Path, tmp_path_factory) -> tuple[Path, int, str]:
    """A run stopped by SIGTERM: (run directory, exit status, stdout), not yet resumed."""
    run_dir = tmp_path_factory.mktemp("sigterm") / "run"
    process = interrupted(run_dir, signal.SIGTERM)
    stdout, _ = process.communicate(timeout=60)
    return run_dir, process.returncode, stdout


def test_sigterm_writes_a_checkpoint_before_exit(sigterm_run) -> None:
    run_dir, returncode, stdout = sigterm_run
    assert returncode == 128 + signal.SIGTERM
    stopped_at = int(stdout.split("stopped by SIGTERM at step ")[1].split()[0])
    assert 40 <= stopped_at < STEPS
    assert list_checkpoints(run_dir)[-1][0] == stopped_at
    assert final_checkpoint(run_dir)["loop"]["step"] == stopped_at
    assert f"storm-wm train --resume {run_dir}" in stdout


def test_deterministic_resume_ends_with_the_same_weights(sigterm_run, reference: Path) -> None:
    """Interrupted mid-episode, resumed: bit for bit the weights of the run left alone."""
    run_dir = sigterm_run[0]
    resume(run_dir)
    assert_same_weights(run_dir, reference)
    assert replay_digests(run_dir) == replay_digests(reference)
    assert_metric_steps_are_those_of(run_dir, reference)


def copy_run(reference: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    return run_dir


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[: len(data) - 1000]
    else:
        for offset in range(len(data) // 2, len(data) // 2 + 16):
            data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(
    reference: Path, tmp_path: Path, capsys, how: str
) -> None:
    run_dir = copy_run(reference, tmp_path)
    newest = find_checkpoint(run_dir)
    damage(newest, how)
    assert cli.main(["train", "--resume", str(run_dir)]) == 0
    output = capsys.readouterr()
    warnings = [line for line in output.err.splitlines() if "warning" in line]
    assert len(warnings) == 1, warnings
    assert newest.name in warnings[0] and "resumed from step 80" in warnings[0]
    assert "resuming at step 80" in output.out
    assert f" 80/{STEPS} " in output.err  # the progress bar picks up where the run was
    assert newest.with_name(newest.name + ".corrupt").exists()  # kept for inspection
    assert_same_weights(run_dir, reference)
    assert_metric_steps_are_those_of(run_dir, reference)


def tree_digest(run_dir: Path) -> dict[str, str]:
    return {
        str(path.relative_to(run_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(run_dir.rglob("*"))
        if path.is_file()
    }


def one_line_error(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_existing_run_is_never_overwritten_without_resume(reference: Path, capsys) -> None:
    before = tree_digest(reference)
    assert cli.main(train_arguments(reference)) == 2
    error = one_line_error(capsys)
    assert "already holds a run" in error and f"--resume {reference}" in error
    assert tree_digest(reference) == before


def test_resume_with_a_different_config_names_the_fields(reference: Path, capsys) -> None:
    before = tree_digest(reference)
    arguments = ["train", "--resume", str(reference), "--world_model.hidden", "32", "--seed", "2"]
    assert cli.main(arguments) == 2
    error = one_line_error(capsys)
    assert "world_model.hidden 16 vs 32" in error and "seed 1 vs 2" in error
    assert "--steps" in error
    assert cli.main(["train", "--resume", str(reference), "--steps", "100"]) == 2
    assert "already at step 120, past --steps 100" in one_line_error(capsys)
    assert tree_digest(reference) == before
    saved = build_config("toy+tiny", SCHEDULE)
    check_resume_config(saved, with_overrides(saved, {"train.steps": "500"}), reference)


def rewrite_newest(run_dir: Path, change) -> None:
    """Rewrites the newest checkpoint (valid checksum) after `change(payload)`."""
    step, path = list_checkpoints(run_dir)[-1]
    state = load_checkpoint(path)
    change(state)
    summary = {"game": state["game"], "num_actions": state["num_actions"], "replay_total": step}
    save_checkpoint(run_dir, step, state, summary)


def other_game(state: dict) -> None:
    state["game"] = state["config"]["env"]["game"] = "Pong"


def more_actions(state: dict) -> None:
    state["num_actions"] = 6


def wider_model(state: dict) -> None:
    state["config"]["world_model"]["hidden"] = 32


def wider_weights(state: dict) -> None:
    weights = state["world_model"]
    weights["prior_head.weight"] = torch.zeros(weights["prior_head.weight"].shape[0], 32)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (other_game, "game 'Pong' vs 'toy:catch'"),
        (more_actions, "num_actions 6 vs 3"),
        (wider_model, "world_model.hidden 32 vs 16"),
        (wider_weights, "prior_head.weight"),
    ],
)
@pytest.mark.parametrize("command_name", ["eval", "resume"])
def test_checkpoint_of_another_game_or_architecture_is_named(
    reference: Path, tmp_path: Path, capsys, change, named: str, command_name: str
) -> None:
    run_dir = copy_run(reference, tmp_path)
    rewrite_newest(run_dir, change)
    before = tree_digest(run_dir)
    if command_name == "eval":
        arguments = ["eval", str(run_dir), "--episodes", "1", "--device", "cpu"]
    else:
        arguments = ["train", "--resume", str(run_dir), "--no-progress"]
    assert cli.main(arguments) == 2
    error = one_line_error(capsys)
    assert named in error, error
    assert tree_digest(run_dir) == before


def test_eval_without_a_checkpoint_is_a_clear_error(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    build_config("toy+tiny", SCHEDULE).save(run_dir / "config.json")
    assert cli.main(["eval", str(run_dir)]) == 2
    assert "has no checkpoint yet" in one_line_error(capsys)


def tiny_config(**overrides):
    return build_config(
        "toy+tiny",
        {**SCHEDULE, "train.steps": STEPS, "train.deterministic": True, **overrides},
    )


def test_nonfinite_losses_are_skipped_then_stop_with_a_good_checkpoint(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    from storm_wm.models import WorldModel

    real_loss, calls = WorldModel.loss, []

    def loss_turning_nan(self, *args):
        loss, metrics = real_loss(self, *args)
        calls.append(1)
        return (loss * float("nan") if len(calls) > 5 else loss), metrics

    monkeypatch.setattr(WorldModel, "loss", loss_turning_nan)
    # The start-of-run estimate counts an update's FLOPs by running one: not a training update.
    monkeypatch.setattr("storm_wm.run.estimate.update_flops", lambda config, actions: 0)
    config = tiny_config(
        **{
            "train.max_nonfinite_updates": 3,
            "train.log_every": 2,
            "train.train_every": 1,
        }
    )
    with pytest.raises(StormError) as caught:
        run.train(config, tmp_path / "run", show_progress=False)
    message = str(caught.value)
    # Updates start at step 41; the 6th, 7th and 8th (steps 46-48) are non-finite.
    assert "training stopped at step 48: 3 world-model updates in a row" in message
    assert "the checkpoint of step 48 holds the last finite weights" in message
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [
        "storm-wm: warning: step 46: non-finite world-model loss or gradient; update skipped"
    ]
    state = final_checkpoint(tmp_path / "run")
    assert state["step"] == 48 and state["trainer"]["nonfinite_counters"]["skipped"] == 3
    assert all(torch.isfinite(tensor).all() for tensor in state["world_model"].values())
    assert [step for step, _ in list_checkpoints(tmp_path / "run")] == [40, 48]
    records = metric_records(tmp_path / "run")
    skipped = {r["step"]: r["world_model/nonfinite"] for r in records if "train/updates" in r}
    assert skipped == {42: 0.0, 44: 0.0, 46: 0.5, 48: 1.0}


@pytest.mark.parametrize("failing", ["checkpoint", "replay chunk"])
def test_disk_full_is_a_clear_error_and_the_previous_checkpoint_survives(
    reference: Path, tmp_path: Path, monkeypatch, failing: str
) -> None:
    """The disk fills up while the step-80 checkpoint (or its replay chunk) is being written."""
    run_dir = tmp_path / "run"
    real_write, real_fsync, disk_full = atomic.write_atomically, os.fsync, [False]

    def fsync(descriptor: int) -> None:
        if disk_full[0]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(descriptor)

    def write(path: Path, parts) -> None:
        kind = "checkpoint" if path.suffix == ".ckpt" else "replay chunk"
        disk_full[0] = kind == failing and "000000080" in path.name
        try:
            real_write(path, parts)
        finally:
            disk_full[0] = False

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr("storm_wm.persistence.checkpoint.write_atomically", write)
    monkeypatch.setattr("storm_wm.persistence.replay_store.write_atomically", write)
    with pytest.raises(StormError) as caught:
        run.train(tiny_config(), run_dir, show_progress=False)
    message = str(caught.value)
    assert f"cannot write {'replay chunk' if failing != 'checkpoint' else 'checkpoint'} " in (
        message
    )
    if failing != "checkpoint":  # the chunk is named
        assert "chunk_000000040_000000080.npz: No space left on device" in message
    assert "No space left on device" in message and "step 40 is intact" in message
    assert f"storm-wm train --resume {run_dir}" in message
    assert [step for step, _ in list_checkpoints(run_dir)] == [40]
    assert not list(run_dir.rglob("*.tmp"))
    monkeypatch.undo()
    if failing == "checkpoint":  # once there is space again, the run goes on as if nothing happened
        run.train(tiny_config(), run_dir, show_progress=False, resume=True)
        assert_same_weights(run_dir, reference)
        assert replay_digests(run_dir) == replay_digests(reference)
        assert_metric_steps_are_those_of(run_dir, reference)


def test_unwritable_run_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(StormError, match="cannot create run directory .*: Not a directory"):
        run.train(tiny_config(), blocker / "run", show_progress=False)


def test_memory_stays_flat_over_a_long_run(tmp_path: Path) -> None:
    """With the replay buffer already full, resident memory does not grow step after step."""
    config = tiny_config(
        **{
            "train.steps": 300,
            "train.replay_capacity": 40,
            "train.log_every": 50,
            "train.checkpoint_every": 100,
        }
    )
    run.train(config, tmp_path / "run", show_progress=False)
    memory = {
        r["step"]: r["system/memory_mb"]
        for r in metric_records(tmp_path / "run")
        if "system/memory_mb" in r
    }
    assert sorted(memory) == [50, 100, 150, 200, 250, 300]
    # A leak of 16 kB per step would add 3 MB; allocator noise is far below that.
    assert memory[300] - memory[100] < 3.0, memory
