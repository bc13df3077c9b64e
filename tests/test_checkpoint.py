"""Checkpoint files and the state they hold: checksums, atomic writes, safe loads, exact restore."""

from __future__ import annotations

import errno
import io
import os
import pickle
import random
import signal
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch

from storm_wm import atomic
from storm_wm.acting import Policy
from storm_wm.config import build_config
from storm_wm.envs import make_env
from storm_wm.errors import StormError
from storm_wm.logs.metrics import MetricAccumulator
from storm_wm.logs.records import truncate
from storm_wm.models.agent import build_models
from storm_wm.persistence import checkpoint
from storm_wm.persistence.checkpoint import (
    MAGIC,
    CorruptCheckpointError,
    find_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    read_header,
    save_checkpoint,
)
from storm_wm.persistence.env_state import capture_env_state, restore_env_state
from storm_wm.persistence.replay_store import ReplayStore
from storm_wm.persistence.rng_state import capture_rng_state, restore_rng_state
from storm_wm.replay import ReplayBuffer
from storm_wm.run.signals import StopSignals
from storm_wm.training.trainer import Trainer

STATE = {"weights": torch.arange(1000, dtype=torch.float32), "counter": 7, "name": "x"}


def test_round_trip_with_versioned_checksummed_header(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 40, STATE, {"game": "toy:catch", "num_actions": 3})
    assert path == tmp_path / "checkpoints" / "step_000000040.ckpt"
    assert path.read_bytes().startswith(MAGIC)
    header = read_header(path)
    assert header["format_version"] == checkpoint.FORMAT_VERSION
    assert (header["step"], header["game"], header["num_actions"]) == (40, "toy:catch", 3)
    assert len(header["sha256"]) == 64
    state = load_checkpoint(path)
    assert torch.equal(state["weights"], STATE["weights"]) and state["counter"] == 7
    assert state["step"] == 40
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:  # flip bytes in the middle of the payload
        for offset in range(len(data) // 2, len(data) // 2 + 8):
            data[offset] ^= 0xFF
        path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("how", "reason"), [("truncate", "is truncated"), ("flip", "checksum does not match")]
)
def test_damaged_file_is_detected_before_unpickling(tmp_path: Path, how: str, reason: str) -> None:
    path = save_checkpoint(tmp_path, 1, STATE)
    damage(path, how)
    with pytest.raises(CorruptCheckpointError, match=reason) as caught:
        load_checkpoint(path)
    assert "\n" not in str(caught.value)


class RunsCode:
    """Unpickling this runs `os.system`: what a malicious checkpoint would hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "code_ran"
    # A valid header and checksum around a payload that runs code: the attacker can compute both.
    parts = checkpoint.encode_checkpoint({"evil": RunsCode(marker)}, {"step": 5})
    path = tmp_path / "checkpoints" / "step_000000005.ckpt"
    path.parent.mkdir()
    path.write_bytes(b"".join(parts))
    with pytest.raises(StormError, match="refusing to load .* could run code"):
        load_checkpoint(path)
    assert not marker.exists()
    # Plain pickles and torch files without the header are not even unpickled.
    path.write_bytes(pickle.dumps(RunsCode(marker)))
    with pytest.raises(CorruptCheckpointError, match="not a storm-wm checkpoint"):
        load_checkpoint(path)
    buffer = io.BytesIO()
    torch.save({"evil": RunsCode(marker)}, buffer)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(CorruptCheckpointError, match="plain torch file"):
        load_checkpoint(path)
    assert not marker.exists()


def test_disk_full_leaves_previous_checkpoint_intact(tmp_path: Path, monkeypatch) -> None:
    save_checkpoint(tmp_path, 40, STATE)
    real_fsync = os.fsync

    def full_disk(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full_disk)
    with pytest.raises(StormError) as caught:
        save_checkpoint(tmp_path, 80, STATE)
    monkeypatch.setattr(atomic.os, "fsync", real_fsync)
    message = str(caught.value)
    assert "No space left on device" in message and "step 40 is intact" in message
    assert "--resume" in message and "\n" not in message
    assert [step for step, _ in list_checkpoints(tmp_path)] == [40]
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))
    assert load_checkpoint(find_checkpoint(tmp_path))["counter"] == 7


def test_keeps_the_newest_k(tmp_path: Path) -> None:
    for step in (10, 20, 30, 40):
        save_checkpoint(tmp_path, step, STATE)
    kept = prune_checkpoints(tmp_path, 2)
    assert [step for step, _ in kept] == [30, 40] == [s for s, _ in list_checkpoints(tmp_path)]
    assert [s for s, _ in prune_checkpoints(tmp_path, 0)] == [30, 40]  # 0 keeps all


def test_find_checkpoint_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(StormError, match="has no checkpoint yet; train it first"):
        find_checkpoint(tmp_path)
    save_checkpoint(tmp_path, 10, STATE)
    with pytest.raises(StormError, match="no checkpoint at step 20; available: 10"):
        find_checkpoint(tmp_path, 20)


def filled_replay(capacity: int, start: int, stop: int) -> ReplayBuffer:
    replay = ReplayBuffer(capacity, (2, 2, 3))
    replay.total_added = start
    for t in range(start, stop):
        replay.add(np.full((2, 2, 3), t % 256, np.uint8), t % 3, float(t), t % 7 == 0)
    return replay


def test_replay_chunks_rebuild_the_buffer_exactly(tmp_path: Path) -> None:
    replay = ReplayBuffer(50, (2, 2, 3))
    store = ReplayStore(tmp_path, 50)
    for t in range(130):  # the ring wraps twice; a chunk is written every 30 steps
        replay.add(np.full((2, 2, 3), t % 256, np.uint8), t % 3, float(t), t % 7 == 0)
        if (t + 1) % 30 == 0:
            store.flush(replay)
    store.flush(replay)
    manifest = store.manifest(replay.total_added)
    assert [chunk["first"] for chunk in manifest] == [60, 90, 120]  # steps 80..129 needed
    restored = ReplayBuffer(50, (2, 2, 3))
    ReplayStore(tmp_path, 50).restore(restored, manifest, 130)
    assert (len(restored), restored.total_added) == (50, 130)
    for name, array in replay.steps(80, 130).items():
        np.testing.assert_array_equal(restored.steps(80, 130)[name], array)
    generator_a, generator_b = np.random.default_rng(3), np.random.default_rng(3)
    np.testing.assert_array_equal(
        replay.sample(8, 5, generator_a).rewards, restored.sample(8, 5, generator_b).rewards
    )


def test_damaged_or_missing_replay_chunk_is_detected(tmp_path: Path) -> None:
    replay = filled_replay(100, 0, 40)
    store = ReplayStore(tmp_path, 100)
    store.flush(replay)
    manifest = store.manifest(40)
    chunk = tmp_path / "replay" / manifest[0]["name"]
    damage(chunk, "flip")
    restored = ReplayBuffer(100, (2, 2, 3))
    assert "corrupt" in store.restore(restored, manifest, 40)
    assert len(restored) == 0
    chunk.unlink()
    assert "cannot be read" in store.restore(restored, manifest, 40)


def test_chunks_written_after_the_checkpoint_are_discarded(tmp_path: Path) -> None:
    replay = filled_replay(100, 0, 40)
    store = ReplayStore(tmp_path, 100)
    store.flush(replay)
    for _ in range(40, 60):
        replay.add(np.zeros((2, 2, 3), np.uint8), 0, 0.0, False)
    store.flush(replay)
    (tmp_path / "replay" / "chunk_000000060_000000070.npz.tmp").write_bytes(b"half")
    store.discard_after(40)
    assert sorted(p.name for p in (tmp_path / "replay").iterdir()) == [
        "chunk_000000000_000000040.npz"
    ]


def test_replay_extend_equals_adding_one_by_one() -> None:
    one_by_one = filled_replay(16, 0, 40)
    source = filled_replay(100, 0, 40).steps(0, 40)
    at_once = ReplayBuffer(16, (2, 2, 3))
    at_once.extend(*source.values())
    assert (at_once.total_added, len(at_once)) == (40, 16)
    for name, array in one_by_one.steps(24, 40).items():
        np.testing.assert_array_equal(at_once.steps(24, 40)[name], array)


def play(env, actions) -> list:
    trajectory = []
    for action in actions:
        frame, reward, terminated, truncated, info = env.step(int(action))
        trajectory.append((frame.tobytes(), reward, terminated, info["life_loss"]))
        if terminated or truncated:
            trajectory.append(env.reset()[0].tobytes())
    return trajectory


@pytest.mark.parametrize(
    ("game", "protocol"),
    [("toy:catch", "storm"), ("Breakout", "storm"), ("Breakout", "standard")],
)
def test_env_state_continues_the_episode_exactly(game: str, protocol: str) -> None:
    """Sticky actions, no-op starts, lives and the toy's generator all come back."""
    actions = np.random.default_rng(0).integers(0, 3, size=200)
    env = make_env(game, protocol=protocol, seed=5)
    env.reset()
    play(env, actions[:100])
    state = capture_env_state(env)
    expected = play(env, actions[100:])
    fresh = make_env(game, protocol=protocol, seed=99)
    assert restore_env_state(fresh, state)
    assert play(fresh, actions[100:]) == expected


@pytest.mark.parametrize("protocol", ["storm", "standard"])
def test_restored_atari_episodes_never_drift_apart(protocol: str) -> None:
    """Mid-game Pong states restored into another emulator play on exactly as the originals.

    Each state is taken right after UP and continued with DOWN, so a sticky first frame plays
    the previous action. When the ALE drew the sticky actions, that previous action was not in
    its saved state: a restored emulator repeated NOOP instead, and 7 of 100 restored Pong
    episodes drifted apart within 160 frames (here, about one in four would).
    """
    up, down = 2, 3
    rng = np.random.default_rng(0)
    env, fresh = make_env("Pong", protocol=protocol, seed=0), make_env("Pong", protocol=protocol)
    env.reset()
    for _ in range(20):
        play(env, [*rng.integers(0, 6, size=int(rng.integers(20, 80))), up])  # resets at an end
        state = capture_env_state(env)
        actions = [down, *rng.integers(0, 6, size=39)]
        expected = play(env, actions)
        assert restore_env_state(fresh, state)
        assert capture_env_state(fresh) == state  # set, not replayed: nothing drawn, nothing lost
        assert play(fresh, actions) == expected


def test_unrestorable_env_says_so() -> None:
    """A generic gym env, or a known one under an unknown wrapper, restarts its episode."""

    class Opaque(gymnasium.Env):
        observation_space = gymnasium.spaces.Box(0, 255, (16, 16, 3), np.uint8)
        action_space = gymnasium.spaces.Discrete(2)

    assert capture_env_state(Opaque())["kind"] == "unsupported"
    wrapped = gymnasium.wrappers.TimeLimit(make_env("toy:catch"), 5)
    assert capture_env_state(wrapped)["kind"] == "unsupported"
    assert not restore_env_state(make_env("toy:catch"), {"kind": "unsupported"})


def test_rng_states_survive_a_weights_only_checkpoint(tmp_path: Path) -> None:
    generator = np.random.default_rng(1)
    random.random(), np.random.random(), generator.random(), torch.rand(1)
    save_checkpoint(tmp_path, 1, {"rng": capture_rng_state(generator)})
    expected = (random.random(), np.random.random(), generator.random(), torch.rand(3))
    other = np.random.default_rng(2)
    restore_rng_state(load_checkpoint(find_checkpoint(tmp_path))["rng"], other)
    drawn = (random.random(), np.random.random(), other.random(), torch.rand(3))
    assert drawn[:3] == expected[:3] and torch.equal(drawn[3], expected[3])


def test_policy_context_round_trip() -> None:
    config = build_config("toy+tiny", {"train.act_context": 4})
    models = build_models(config, 3, torch.device("cpu"))

    def policy() -> Policy:
        return Policy(models, config.train, 1, np.random.default_rng(0), dtype=torch.float32)

    original, copy = policy(), policy()
    frames = np.random.default_rng(0).integers(0, 256, (6, 1, 16, 16, 3), dtype=np.uint8)
    for frame in frames:
        original.act(frame)
    copy.restore_context(0, original.context_state(0))
    assert list(copy.actions[0]) == list(original.actions[0])
    assert all(
        np.array_equal(a, b) for a, b in zip(copy.frames[0], original.frames[0], strict=True)
    )
    empty = policy().context_state(0)
    copy.restore_context(0, empty)
    assert len(copy.frames[0]) == 0


def test_nonfinite_update_is_skipped_and_changes_nothing(monkeypatch) -> None:
    config = build_config("toy+tiny")
    models = build_models(config, 3, torch.device("cpu"))
    trainer = Trainer(models, config, torch.device("cpu"), torch.float32)
    replay = filled_replay(100, 0, 40)
    replay.frames = np.zeros((100, 16, 16, 3), np.uint8)
    rng = np.random.default_rng(0)
    trainer.train_step(replay, rng)  # optimizer states exist from here on
    before = {
        "world_model": {k: v.clone() for k, v in models.world_model.state_dict().items()},
        "actor_critic": {k: v.clone() for k, v in models.actor_critic.state_dict().items()},
        "optimizer": str(trainer.world_model_optimizer.state_dict()["state"][0]["step"]),
    }
    real_loss = type(models.world_model).loss

    def nan_loss(self, *args):
        loss, metrics = real_loss(self, *args)
        return loss * float("nan"), metrics

    monkeypatch.setattr(type(models.world_model), "loss", nan_loss)
    monkeypatch.setattr(
        type(models.actor_critic),
        "loss",
        lambda self, *a: (torch.tensor(float("inf"), requires_grad=True), {}),
    )
    for count in (1, 2):
        metrics = trainer.train_step(replay, rng)
        assert trainer.nonfinite.streaks == {"world_model": count, "agent": count}
    # The skip is decided on the device: a skipped update's metrics are NaN (no host
    # synchronisation chose to drop them), and the accumulator leaves NaN out of its means.
    assert {name: float(value) for name, value in metrics.items() if "nonfinite" in name} == {
        "world_model/nonfinite": 1.0,
        "agent/nonfinite": 1.0,
    }
    assert all(torch.isnan(value) for name, value in metrics.items() if "nonfinite" not in name)
    accumulator = MetricAccumulator()
    accumulator.add(metrics)
    assert accumulator.flush() == {"world_model/nonfinite": 1.0, "agent/nonfinite": 1.0}
    assert int(trainer.nonfinite.skipped) == 4
    for key in ("world_model", "actor_critic"):
        after = getattr(models, key).state_dict()
        assert all(torch.equal(after[name], value) for name, value in before[key].items()), key
    assert (
        str(trainer.world_model_optimizer.state_dict()["state"][0]["step"]) == before["optimizer"]
    )
    monkeypatch.undo()
    metrics = trainer.train_step(replay, rng)
    assert trainer.nonfinite.streaks == {"world_model": 0, "agent": 0}
    assert metrics["world_model/nonfinite"] == 0.0


def test_trainer_state_round_trip() -> None:
    config = build_config("toy+tiny")
    models = build_models(config, 3, torch.device("cpu"))
    trainer = Trainer(models, config, torch.device("cpu"), torch.float32)
    replay = filled_replay(100, 0, 40)
    replay.frames = np.zeros((100, 16, 16, 3), np.uint8)
    trainer.train_step(replay, np.random.default_rng(0))
    trainer.nonfinite.total = 3
    buffer = io.BytesIO()
    torch.save(trainer.state_dict(), buffer)
    buffer.seek(0)
    other = Trainer(
        build_models(config, 3, torch.device("cpu")), config, torch.device("cpu"), torch.float32
    )
    other.load_state_dict(torch.load(buffer, weights_only=True))
    assert int(other.nonfinite.skipped) == 3
    saved = trainer.world_model_optimizer.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(other.world_model_optimizer.state_dict()["state"][0]["exp_avg"], saved)


def test_truncate_metrics_drops_later_steps_and_a_half_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 10, "a": 1}\n{"step": 20, "a": 2}\n{"step": 30, "a": 3}\n{"step": 4')
    truncate(path, 20)
    assert path.read_text() == '{"step": 10, "a": 1}\n{"step": 20, "a": 2}\n'


def test_first_signal_requests_a_stop_second_gets_the_old_handler() -> None:
    # Python's Ctrl-C handler as under a terminal, also when pytest was started with SIGINT
    # ignored (a background job of a script).
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        previous = signal.getsignal(signal.SIGTERM)
        with StopSignals() as stop:
            assert stop.requested is None
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.requested == "SIGTERM"
            with pytest.raises(KeyboardInterrupt):  # a second signal: Ctrl-C works as usual
                os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGTERM) is previous
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, outer)


def test_unrestorable_env_restarts_its_episode_deterministically(tmp_path: Path, capsys) -> None:
    """gym:<id> games: the resumed run starts a new episode, seeded by the run's seed and step."""
    from storm_wm.run.state import capture, restore
    from storm_wm.run.train import build_components
    from storm_wm.training.loop import LoopState

    config = build_config("toy+tiny")
    components = build_components(config, tmp_path, "toy:catch", make_env("toy:catch", seed=1))
    frame, _ = components.env.reset()
    components.policy.act(frame[None], random=True)
    payload = capture(config, components, LoopState(step=45, episode_length=3, frame=frame))
    payload["env"] = {"kind": "unsupported", "env": "SomeGymEnv"}
    states = [restore(config, components, payload) for _ in range(2)]
    assert states[0].frame is None and states[0].episode_length == 0
    assert states[0].reset_seed == states[1].reset_seed != config.seed
    assert len(components.policy.actions[0]) == 0
    assert "cannot restore an episode mid-way" in capsys.readouterr().err
