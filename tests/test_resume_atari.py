"""Exact resume on a real ROM: Breakout, debug-sized networks, both protocols.

The run left alone keeps a checkpoint in the middle of an episode (twice), just after a life
was lost, just after an episode ended, and at its end. A copy of it is then resumed from each
of those checkpoints, as if the process had been killed right after writing it, and must end
exactly where the run left alone ended: the same frames, actions, rewards and end flags at
every step, the same metrics, and every tensor of the final state equal (weights, optimizer
moments, the episode in progress, the emulator, every generator).

With the storm protocol's sticky actions this failed from checkpoints that fell mid-episode:
the ALE did not save the action its last frame played, so a restored emulator repeated another
one and the game drifted apart within frames (the agent's paddle first).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch

from storm_wm.config import build_config, with_overrides
from storm_wm.persistence.checkpoint import find_checkpoint, list_checkpoints, load_checkpoint
from storm_wm.persistence.resume import load_run_config
from storm_wm.run import train as run

GAME = "Breakout"  # lives, game over within the debug preset's 800-frame cap, sticky paddle
STEPS = 240
WARMUP = 100  # the debug preset's: updates from step 101 on, every 4 steps
MIDDLE = (130, 175)
POINTS = ("mid-episode", "mid-episode later", "after a life loss", "after an episode end")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TIMED = ("train/steps_per_second", "system/memory_mb")
"""Metrics that measure the machine, not the run: they may differ."""

pytestmark = pytest.mark.usefixtures("one_thread")


def config(protocol: str):
    return build_config(
        "debug",
        {
            "env.game": GAME,
            "env.protocol": protocol,
            "train.steps": STEPS,
            "train.checkpoint_every": 1,
            "train.checkpoint_keep": 0,
            "train.deterministic": True,
            "device": "cpu",
            "precision": "fp32",
        },
    )


@pytest.fixture(scope="module", params=["storm", "standard"])
def reference(request, tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """The run left alone, and the step of each checkpoint it kept (by POINTS name)."""
    run_dir = tmp_path_factory.mktemp(f"reference-{request.param}") / "run"
    points: dict[str, int] = {}
    real_save = run.save_training_checkpoint

    def save_some(run_dir, config, components, state, writer=None):
        """Checkpoints every step are asked for; the interesting ones are written."""
        replay = components.replay
        flagged = bool(replay.steps(replay.total_added - 1, replay.total_added)["terminations"][0])
        kinds = []
        if state.step in MIDDLE:
            assert state.episode_length > 0, f"step {state.step} is not mid-episode"
            kinds.append(POINTS[MIDDLE.index(state.step)])
        if state.step > WARMUP and flagged and state.episode_length > 0:
            kinds.append("after a life loss")
        if state.step > WARMUP and state.episode_length == 0:
            kinds.append("after an episode end")
        new = [kind for kind in kinds if kind not in points]
        points.update(dict.fromkeys(new, state.step))
        if new or state.step == STEPS:
            real_save(run_dir, config, components, state, writer)

    # One thread, as the resumed runs: the module's one_thread fixture is set up only after
    # this module-scoped one, and products summed by two threads round differently.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(run, "save_training_checkpoint", save_some)
            run.train(config(request.param), run_dir, show_progress=False)
    finally:
        torch.set_num_threads(threads)
    assert set(points) == set(POINTS), f"only {points} within {STEPS} steps"
    return run_dir, points


def interrupted_at(reference: Path, step: int, tmp_path: Path) -> Path:
    """A copy of the reference as a process killed right after the checkpoint of `step` left
    it: later checkpoints gone; later replay chunks and metrics still there, to be dropped."""
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    for later, path in list_checkpoints(run_dir):
        if later > step:
            path.unlink()
    return run_dir


def replay_arrays(run_dir: Path) -> dict[str, np.ndarray]:
    """Every step of the final checkpoint's replay buffer, field by field."""
    chunks = load_checkpoint(find_checkpoint(run_dir))["replay"]["chunks"]
    fields: dict[str, list[np.ndarray]] = {}
    for chunk in sorted(chunks, key=lambda chunk: chunk["first"]):
        with np.load(run_dir / "replay" / chunk["name"]) as arrays:
            for name in arrays.files:
                fields.setdefault(name, []).append(arrays[name])
    return {name: np.concatenate(parts) for name, parts in fields.items()}


def differences(actual, expected, path: str = "") -> tuple[list[str], int]:
    """(paths that differ, tensors compared) between two checkpoint payloads."""
    if isinstance(expected, torch.Tensor):
        same = isinstance(actual, torch.Tensor) and torch.equal(actual, expected)
        return ([] if same else [path]), 1
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping) or set(actual) != set(expected):
            return [f"{path} (keys)"], 0
        found, tensors = [], 0
        for key in expected:
            more, count = differences(actual[key], expected[key], f"{path}.{key}")
            found += more
            tensors += count
        return found, tensors
    if isinstance(expected, list | tuple):
        if not isinstance(actual, list | tuple) or len(actual) != len(expected):
            return [f"{path} (length)"], 0
        found, tensors = [], 0
        for index, (left, right) in enumerate(zip(actual, expected, strict=True)):
            more, count = differences(left, right, f"{path}[{index}]")
            found += more
            tensors += count
        return found, tensors
    return ([] if actual == expected else [path]), 0


def assert_ends_as_the_reference(run_dir: Path, reference: Path) -> None:
    resumed, alone = replay_arrays(run_dir), replay_arrays(reference)
    for name, expected in alone.items():
        assert len(resumed[name]) == len(expected) == STEPS, name
        differs = np.flatnonzero(
            [not np.array_equal(a, b) for a, b in zip(resumed[name], expected, strict=True)]
        )
        assert differs.size == 0, f"replay {name} differ from step {differs[0] + 1} on"
    state, expected = (load_checkpoint(find_checkpoint(path)) for path in (run_dir, reference))
    assert state["step"] == expected["step"] == STEPS
    ignored = ("config", "replay")  # the resume's checkpoint interval; chunk boundaries
    found, tensors = differences(
        {key: value for key, value in state.items() if key not in ignored},
        {key: value for key, value in expected.items() if key not in ignored},
    )
    assert not found, f"{len(found)} of the state's entries differ: {found[:8]}"
    assert tensors > 100  # weights, optimizer moments, frames, contexts, generators
    records = [_untimed(run_dir / "metrics.jsonl"), _untimed(reference / "metrics.jsonl")]
    assert records[0] == records[1]


def _untimed(path: Path) -> list[dict]:
    return [
        {key: value for key, value in json.loads(line).items() if key not in TIMED}
        for line in path.read_text().splitlines()
    ]


@pytest.mark.parametrize("point", POINTS)
def test_resume_on_atari_ends_exactly_as_the_run_left_alone(
    reference: tuple[Path, dict[str, int]], tmp_path: Path, point: str
) -> None:
    reference_dir, points = reference
    step = points[point]
    run_dir = interrupted_at(reference_dir, step, tmp_path)
    checkpoint = load_checkpoint(find_checkpoint(run_dir))
    assert checkpoint["step"] == step
    if point != "after an episode end":
        assert checkpoint["loop"]["episode_length"] > 0  # an episode is in progress
    # A checkpoint every step was the reference's; once is enough here (this resume only).
    once = {"train.checkpoint_every": 1_000}
    if point == "after an episode end":  # the way a user meets it: the command, in a process
        arguments = ["train", "--resume", str(run_dir), "--no-progress"]
        arguments += [item for name, value in once.items() for item in (f"--{name}", str(value))]
        result = subprocess.run(
            [sys.executable, "-m", "storm_wm.cli", *arguments],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-2000:]
    else:
        resumed = with_overrides(load_run_config(run_dir), once)
        run.train(resumed, run_dir, show_progress=False, resume=True)
    assert_ends_as_the_reference(run_dir, reference_dir)
