"""The command line as a user meets it: real subprocesses, real ALE games, one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def storm_wm(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "storm_wm.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and "A.L.E" not in line]
    lines = [line for line in lines if "Powered by Stella" not in line]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def pong_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "pong"
    result = storm_wm("train", "--game", "Pong", "--preset", "debug", "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_train_debug_on_real_pong_writes_a_run_directory(pong_run):
    config = json.loads((pong_run / "config.json").read_text())
    assert config["env"]["game"] == "Pong" and config["preset"] == "debug"
    records = [json.loads(line) for line in (pong_run / "metrics.jsonl").read_text().splitlines()]
    steps = [record["step"] for record in records]
    assert steps == sorted(steps) and steps[-1] == 300
    names = set().union(*records)
    assert {"env/episode_return", "world_model/reward_loss", "agent/policy_loss"} <= names
    assert any(
        path.name.startswith("events.out.tfevents") for path in (pong_run / "tensorboard").iterdir()
    )
    assert (pong_run / "checkpoints").is_dir() and any((pong_run / "checkpoints").iterdir())


def test_eval_writes_every_episode_and_the_normalized_score(pong_run):
    result = storm_wm("eval", str(pong_run), "--episodes", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    evaluation = json.loads((pong_run / "eval.json").read_text())
    assert evaluation["game"] == "Pong" and evaluation["episodes"] == 2
    assert len(evaluation["returns"]) == 2 and evaluation["policy"] == "sampled"
    assert evaluation["protocol"] == "storm" and evaluation["step"] == 300
    mean = sum(evaluation["returns"]) / 2
    assert evaluation["mean"] == pytest.approx(mean)
    # Pong: random -20.7, human 14.6.
    assert evaluation["human_normalized"] == pytest.approx((mean + 20.7) / (14.6 + 20.7))


def test_train_refuses_an_existing_run(pong_run):
    before = (pong_run / "metrics.jsonl").read_bytes()
    result = storm_wm("train", "--game", "Pong", "--preset", "debug", "--run-dir", str(pong_run))
    assert_one_line_error(result, "already holds a run", "--resume")
    assert (pong_run / "metrics.jsonl").read_bytes() == before


def test_info_prints_the_spec_parameter_counts():
    result = storm_wm("info", "--game", "Pong", "--json")
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)["parameters"]
    assert counts["world_model"] == 16_507_011 and counts["actor"] == 1_053_702


def test_misspelled_game_suggests_the_closest_names(tmp_path):
    result = storm_wm(
        "train", "--game", "MsPacmann", "--preset", "debug", "--run-dir", str(tmp_path / "x")
    )
    assert_one_line_error(result, "MsPacman")
    assert not (tmp_path / "x").exists()


def test_invalid_config_value_fails_before_anything_runs(tmp_path):
    result = storm_wm(
        "train", "--preset", "debug", "--agent.gamma", "1.5", "--run-dir", str(tmp_path / "x")
    )
    assert_one_line_error(result, "agent.gamma")
    assert not (tmp_path / "x").exists()


def test_eval_without_a_checkpoint_is_a_clear_error(tmp_path):
    result = storm_wm("eval", str(tmp_path))
    assert_one_line_error(result)


def test_report_from_two_real_runs_and_a_reference_file(pong_run, tmp_path):
    catch_run = tmp_path / "catch"
    result = storm_wm(
        "train",
        "--preset",
        "toy+debug",
        "--steps",
        "120",
        "--train.warmup_steps",
        "40",
        "--run-dir",
        str(catch_run),
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert storm_wm("eval", str(catch_run), "--episodes", "2").returncode == 0
    if not (pong_run / "eval.json").exists():
        assert storm_wm("eval", str(pong_run), "--episodes", "2").returncode == 0
    published = tmp_path / "published.json"
    published.write_text(json.dumps({"Pong": [-20.0, -19.0], "Breakout": [5.0, 7.0]}))
    out = tmp_path / "report"
    result = storm_wm(
        "report",
        str(pong_run),
        str(catch_run),
        str(published),
        "--reference",
        "storm",
        "--out",
        str(out),
        "--bootstrap-samples",
        "200",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = (out / "report.md").read_text()
    pong_mean = json.loads((pong_run / "eval.json").read_text())["mean"]
    assert "| Pong |" in report and "| toy:catch |" in report
    assert f"{pong_mean:.3g}" in report or f"{pong_mean:.1f}" in report
    assert "published" in report and "STORM" in report
    assert (out / "learning_curves.png").stat().st_size > 1000
