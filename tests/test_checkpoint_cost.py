"""tools/checkpoint_cost.py, the measurement docs/resume.md quotes, run on tiny networks: it
times real training steps and complete checkpoints and leaves nothing behind."""

import pytest

from checkpoint_cost import measure


def test_checkpoint_cost_times_real_checkpoints_of_a_tiny_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # its temporary run directory goes on the current disk
    result = measure("toy+tiny", "toy:catch", train_steps=1, checkpoints=2)
    assert result["train_step_seconds"] > 0 and result["checkpoint_seconds"] > 0
    assert result["checkpoint_mb"] > 0 and result["replay_chunk_mb"] > 0
    assert result["fraction"] == pytest.approx(
        result["checkpoint_seconds"] / (result["checkpoint_every"] * result["train_step_seconds"])
    )
    assert not list(tmp_path.iterdir())
