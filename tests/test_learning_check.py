"""scripts/learning-check.sh, as a user runs it, at tiny sizes on a real ROM so it cannot rot.

The real check trains the `small` preset for an hour per seed (docs/results.md); here the same
script trains the tiny networks for 80 steps of Boxing with short episodes, two seeds at once.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "learning-check.sh"
TINY = [
    "--steps",
    "80",
    "--train.warmup_steps",
    "40",
    "--env.max_episode_frames",
    "200",
    "--train.log_every",
    "20",
    "--train.checkpoint_every",
    "40",
    "--train.diagnostics_every",
    "0",
    "--train.video_every",
    "0",
]


def learning_check(out: Path, *arguments: str) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        "OUT": str(out),
        "PRESET": "small+tiny",
        "EPISODES": "2",
        "JOBS": "2",
        "STORM_WM": str(Path(sys.executable).parent / "storm-wm"),
        "PYTHON": sys.executable,
    }
    return subprocess.run(
        ["bash", str(SCRIPT), *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=900,
    )


@pytest.fixture(scope="module")
def checked(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("learning-check") / "Boxing"
    return out, learning_check(out, "Boxing", "1,2", "--", *TINY)


def test_the_check_trains_and_evaluates_every_seed(checked):
    out, result = checked
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "results.json").read_text())
    assert summary["game"] == "Boxing" and [run["seed"] for run in summary["runs"]] == [1, 2]
    for run in summary["runs"]:
        assert run["preset"] == "small+tiny" and run["step"] == 80
        assert run["eval_episodes"] == 2 and run["training_episodes"] >= 1
        assert run["wall_seconds"] > 0 and run["steps_per_second"] > 0
    means = [run["eval_mean"] for run in summary["runs"]]
    assert summary["mean"] == pytest.approx(sum(means) / 2)
    low, high = summary["ci95"]
    assert low <= summary["mean"] <= high
    assert (summary["random"], summary["human"]) == (0.1, 12.1)  # Boxing's published scores
    assert summary["storm_paper"] == pytest.approx(79.7, abs=0.05)


def test_the_check_draws_the_curves_and_writes_the_table(checked):
    out, result = checked
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "results.md").read_text()
    assert "| Boxing_seed1 | 1 | small+tiny | 80 |" in table and "Mean over seeds" in table
    assert table in result.stdout


def test_the_table_gives_each_runs_checks_of_its_world_model(checked):
    """Per run: the world model's one-step frame error on the eval episodes over repeating the
    last frame; the eval's reward per 1,000 steps (its returns over its lengths) and the world
    model's predicted reward per 1,000 imagined steps over the last 10 % of training."""
    out, _ = checked
    summary = json.loads((out / "results.json").read_text())
    table = (out / "results.md").read_text()
    for run in summary["runs"]:
        record = json.loads((out / run["run"] / "eval.json").read_text())
        paid = 1000 * sum(record["returns"]) / sum(record["lengths"])
        assert run["game_reward_per_1000"] == pytest.approx(paid)
        metrics = [json.loads(line) for line in (out / run["run"] / "metrics.jsonl").open()]
        late = [
            row["agent/imagined_reward"]
            for row in metrics
            if "agent/imagined_reward" in row and row["step"] > 0.9 * run["step"]
        ]
        assert late, "the run logged no agent update in its last 10 % of steps"
        promised = 1000 * sum(late) / len(late)
        assert run["imagined_reward_per_1000"] == pytest.approx(promised)
        horizons = record["world_model_quality"]["horizons"]
        one_step = next(horizon for horizon in horizons if horizon["k"] == 1)
        ratio = one_step["frame_mse"] / one_step["frame_mse_repeat_last"]
        floor = one_step["frame_mse_posterior"] / one_step["frame_mse_repeat_last"]
        assert run["next_frame_ratio"] == pytest.approx(ratio)
        assert run["own_frame_ratio"] == pytest.approx(floor)
        assert f"| {ratio:.2f} | {floor:.2f} | {paid:.1f}, {promised:.1f} |" in table
    assert "what the game paid in the eval episodes" in table


def test_a_second_call_continues_and_does_not_evaluate_again(checked):
    out, _ = checked
    before = json.loads((out / "results.json").read_text())
    again = learning_check(out, "Boxing", "1,2", "--", *TINY)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already evaluated at its newest checkpoint") == 2
    after = json.loads((out / "results.json").read_text())
    assert [run["eval_mean"] for run in after["runs"]] == [
        run["eval_mean"] for run in before["runs"]
    ]


def test_a_run_stopped_before_its_evaluation_is_drawn_and_named_but_not_averaged(checked, tmp_path):
    out, _ = checked
    copy = tmp_path / "Boxing"
    shutil.copytree(out, copy)
    (copy / "Boxing_seed2" / "eval.json").unlink()
    result = subprocess.run(
        [sys.executable, str(SCRIPT.with_name("learning_check.py")), str(copy)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((copy / "results.json").read_text())
    assert [run["seed"] for run in summary["runs"]] == [1]
    assert summary["mean"] == summary["runs"][0]["eval_mean"] and summary["ci95"] is None
    assert summary["not_evaluated"] == [{"run": "Boxing_seed2", "seed": 2, "step": 80}]
    assert "Not evaluated, so not in the mean: Boxing_seed2 (seed 2), stopped at step 80." in (
        result.stdout
    )


def test_a_stopped_run_of_another_game_is_refused_like_an_evaluated_one(checked, tmp_path):
    out, _ = checked
    copy = tmp_path / "Boxing"
    shutil.copytree(out, copy)
    stopped = copy / "Boxing_seed2"
    (stopped / "eval.json").unlink()
    config = json.loads((stopped / "config.json").read_text())
    config["env"]["game"] = "Pong"
    (stopped / "config.json").write_text(json.dumps(config))
    before = (copy / "results.json").read_text()
    result = subprocess.run(
        [sys.executable, str(SCRIPT.with_name("learning_check.py")), str(copy)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert f"{copy} mixes games (Boxing, Pong); one game per folder" in result.stderr
    assert "Traceback" not in result.stderr
    assert (copy / "results.json").read_text() == before  # the last summary is left as it was


@pytest.mark.parametrize(
    "arguments, message",
    [([], "usage:"), (["Boxing", "one"], "SEEDS must look like"), (["--fast"], "unknown option")],
)
def test_bad_usage_is_one_line_and_exit_2(tmp_path, arguments, message):
    result = learning_check(tmp_path / "out", *arguments)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_without_matplotlib_it_stops_before_training(tmp_path):
    """The curves are drawn at the end: a Python without matplotlib is refused at the start."""
    shadow = tmp_path / "shadow" / "matplotlib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    python = tmp_path / "python"
    python.write_text(
        f'#!/bin/sh\nPYTHONPATH="{shadow.parent}:$PYTHONPATH" exec "{sys.executable}" "$@"\n'
    )
    python.chmod(0o755)
    out = tmp_path / "out"
    result = subprocess.run(
        ["bash", str(SCRIPT), "Boxing", "1"],
        capture_output=True,
        text=True,
        env={**os.environ, "OUT": str(out), "PYTHON": str(python)},
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "learning-check: the curves need matplotlib: pip install 'storm-wm[plots]' "
        "(make installs it)\n"
    )
    assert not out.exists()
