"""The whole agent learns: toy:catch with the `toy` preset, trained and evaluated as a user
would (subprocesses of the real command).

The test asserts what the run learned within the preset's fixed budget of environment steps,
never how fast: a busy machine runs the same correct run slower (`storm-wm bench` is where
speed is measured). The time taken is printed for the record.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from storm_wm.config import build_config
from storm_wm.envs.toy import CatchEnv

HANG_GUARD_SECONDS = 3 * 3600
"""Ends a command that hangs; far beyond any run's duration, so never a speed check."""


@pytest.mark.slow
def test_toy_catch_is_learned_within_the_toy_presets_step_budget(tmp_path):
    run_dir = tmp_path / "catch"
    command = [sys.executable, "-m", "storm_wm.cli"]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    train = subprocess.run(
        [*command, "train", "--preset", "toy", "--seed", "1", "--run-dir", str(run_dir),
         "--no-progress"],
        capture_output=True, text=True, timeout=HANG_GUARD_SECONDS, env=environment,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    trained = time.monotonic()
    evaluate = subprocess.run(
        [*command, "eval", str(run_dir), "--episodes", "20"],
        capture_output=True, text=True, timeout=HANG_GUARD_SECONDS, env=environment,
    )  # fmt: skip
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    finished = time.monotonic()
    result = json.loads((run_dir / "eval.json").read_text())
    print(
        f"toy:catch: mean return {result['mean']:.2f} over 20 episodes after {result['step']} "
        f"steps; training took {trained - started:.0f} s, evaluation {finished - trained:.0f} s"
    )
    # The budget: the policy evaluated is the one saved at the end of the preset's steps.
    assert result["step"] == build_config("toy").train.steps
    assert len(result["returns"]) == 20
    # A uniformly random policy catches 1/8 of the balls (tests/test_toy_catch.py).
    assert result["mean"] >= 0.7 * CatchEnv.max_return, result["returns"]
