"""Checkpoints written off the training thread: in order, one at a time, errors raised on the
training thread, the last one on disk before training returns."""

import threading
import time
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from storm_wm import atomic
from storm_wm.config import build_config
from storm_wm.errors import StormError
from storm_wm.persistence.checkpoint import list_checkpoints, load_checkpoint
from storm_wm.persistence.writer import CheckpointWriter, host_copy
from storm_wm.run.train import train

# This file's training schedule, on the tiny preset's networks (stacked on toy).
SCHEDULE = {
    "train.steps": 60,
    "train.warmup_steps": 20,
    "train.checkpoint_every": 20,
    "train.log_every": 20,
    "train.train_every": 4,
    "train.checkpoint_keep": 2,
    "train.diagnostics_every": 0,
    "train.video_every": 0,
}


def test_jobs_run_in_order_one_at_a_time_off_the_calling_thread():
    order, threads, active, most_active = [], set(), [0], [0]
    lock = threading.Lock()

    def job(index: int):
        def run():
            with lock:
                active[0] += 1
                most_active[0] = max(most_active[0], active[0])
            time.sleep(0.01)  # room for a second job to overlap, were it allowed to
            order.append(index)
            threads.add(threading.current_thread().name)
            with lock:
                active[0] -= 1

        return run

    with CheckpointWriter() as writer:
        for index in range(5):
            writer.submit(job(index))
    assert order == [0, 1, 2, 3, 4]
    assert most_active[0] == 1
    assert threads == {"storm-wm checkpoint writer"}
    assert writer.completed == 5 and not writer.busy


def test_inline_writer_runs_on_the_calling_thread():
    names = []
    CheckpointWriter(background=False).submit(lambda: names.append(threading.current_thread().name))
    assert names == [threading.current_thread().name]


def test_a_failed_write_is_raised_at_the_next_submit_which_then_does_not_run():
    ran = []

    def failing():
        raise StormError("cannot write checkpoint x: No space left on device")

    writer = CheckpointWriter()
    writer.submit(failing)
    with pytest.raises(StormError, match="No space left on device"):
        writer.submit(lambda: ran.append(1))
    assert ran == []
    writer.wait()  # raised once: the writer is usable again
    writer.submit(lambda: ran.append(2))
    writer.wait()
    assert ran == [2]


def test_the_end_waits_for_the_last_write_and_raises_its_error():
    done = []

    def slow():
        time.sleep(0.05)
        done.append(True)

    with CheckpointWriter() as writer:
        writer.submit(slow)
    assert done == [True]

    def failing():
        raise StormError("disk full")

    with pytest.raises(StormError, match="disk full"), CheckpointWriter() as writer:
        writer.submit(failing)


def test_host_copy_is_a_snapshot_that_later_updates_do_not_change():
    weights = torch.nn.Linear(2, 2)
    state = weights.state_dict()
    copied = host_copy({"model": state, "steps": [torch.ones(2)], "note": "kept"})
    with torch.no_grad():
        weights.weight.add_(1.0)
    assert not torch.equal(copied["model"]["weight"], weights.weight)
    assert isinstance(copied["model"], OrderedDict)
    assert copied["model"]._metadata == state._metadata  # load_state_dict reads its versions
    assert copied["note"] == "kept" and torch.equal(copied["steps"][0], torch.ones(2))


def test_async_training_writes_chunk_then_checkpoint_off_the_loop_and_ends_with_all_on_disk(
    tmp_path: Path, monkeypatch, one_thread
):
    """Each replay chunk is on disk before the checkpoint listing it; writes happen on the
    writer's thread; the last (slow) checkpoint is complete when `train` returns."""
    writes, real_write = [], atomic.write_atomically

    def recording_write(path: Path, parts) -> None:
        if path.suffix == ".ckpt":
            time.sleep(0.05)  # a slow disk: the last write is still going when the loop ends
        real_write(path, parts)
        writes.append((path.name, threading.current_thread().name))

    monkeypatch.setattr("storm_wm.persistence.checkpoint.write_atomically", recording_write)
    monkeypatch.setattr("storm_wm.persistence.replay_store.write_atomically", recording_write)
    run_dir = tmp_path / "run"
    train(build_config("toy+tiny", SCHEDULE), run_dir, show_progress=False)

    assert {thread for _, thread in writes} == {"storm-wm checkpoint writer"}
    names = [name for name, _ in writes]
    assert names == [
        "chunk_000000000_000000020.npz",
        "step_000000020.ckpt",
        "chunk_000000020_000000040.npz",
        "step_000000040.ckpt",
        "chunk_000000040_000000060.npz",
        "step_000000060.ckpt",
    ]
    assert [step for step, _ in list_checkpoints(run_dir)] == [40, 60]  # checkpoint_keep 2
    last = load_checkpoint(run_dir / "checkpoints" / "step_000000060.ckpt")
    assert last["step"] == 60 and last["loop"]["step"] == 60
    assert [chunk["stop"] for chunk in last["replay"]["chunks"]] == [20, 40, 60]


def test_sync_and_async_checkpoints_hold_the_same_state(tmp_path: Path, one_thread):
    states = {}
    for mode in (True, False):
        config = build_config(
            "toy+tiny", {**SCHEDULE, "train.async_checkpoints": mode, "train.deterministic": True}
        )
        train(config, tmp_path / str(mode), show_progress=False)
        states[mode] = load_checkpoint(tmp_path / str(mode) / "checkpoints/step_000000060.ckpt")
    for part in ("world_model", "actor_critic"):
        for name, tensor in states[True][part].items():
            assert torch.equal(tensor, states[False][part][name]), name
    assert states[True]["loop"] == {**states[False]["loop"], "frame": states[True]["loop"]["frame"]}
    assert torch.equal(states[True]["loop"]["frame"], states[False]["loop"]["frame"])
    assert states[True]["replay"] == states[False]["replay"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_async_checkpoints_of_a_cuda_run_hold_host_copies(tmp_path: Path):
    """On CUDA the state is copied to host memory on the training thread, then written."""
    config = build_config("toy+tiny", {**SCHEDULE, "device": "cuda"})
    train(config, tmp_path / "run", show_progress=False)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_000000060.ckpt")
    assert state["loop"]["step"] == 60
    weights = list(state["world_model"].values())
    assert weights and all(tensor.device.type == "cpu" for tensor in weights)
    assert all(torch.isfinite(tensor).all() for tensor in weights if tensor.is_floating_point())
