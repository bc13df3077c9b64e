"""The whole agent learns: toy:catch with the `toy` preset, trained and evaluated as a user
would (subprocesses of the real command)."""

import json
import os
import subprocess
import sys
import time

from storm_wm.envs.toy import CatchEnv

TEN_MINUTES = 600.0


def test_toy_catch_is_learned_within_ten_minutes(tmp_path):
    run_dir = tmp_path / "catch"
    command = [sys.executable, "-m", "storm_wm.cli"]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    train = subprocess.run(
        [*command, "train", "--preset", "toy", "--seed", "1", "--run-dir", str(run_dir),
         "--no-progress"],
        capture_output=True, text=True, timeout=2 * TEN_MINUTES, env=environment,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    evaluate = subprocess.run(
        [*command, "eval", str(run_dir), "--episodes", "20"],
        capture_output=True, text=True, timeout=TEN_MINUTES, env=environment,
    )  # fmt: skip
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    elapsed = time.monotonic() - started
    result = json.loads((run_dir / "eval.json").read_text())
    print(f"toy:catch: mean return {result['mean']:.2f} over 20 episodes after {elapsed:.0f} s")
    assert len(result["returns"]) == 20
    # A uniformly random policy catches 1/8 of the balls (tests/test_toy_catch.py).
    assert result["mean"] >= 0.7 * CatchEnv.max_return, result["returns"]
    assert elapsed < TEN_MINUTES
