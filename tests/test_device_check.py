"""scripts/device-check.sh as it is run: its CPU rehearsal (--dry-run) end to end, and its
refusals in one line."""

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from device_check.check import GAMES, GPU_PLAN, OUTPUT_FILES

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "device-check.sh"
ENV = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}


def run_script(*arguments: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *arguments], capture_output=True, text=True, env=ENV,
        timeout=timeout, cwd=ROOT,
    )  # fmt: skip


def test_script_is_committed_executable_and_says_how_to_fill_the_wheel_folder():
    assert os.access(SCRIPT, os.X_OK)
    header = SCRIPT.read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = dict(requirement.split("==") for requirement in project["dependencies"])
    for package in ("gymnasium", "ale-py", "tensorboardX"):
        assert f"{package}=={pins[package]}" in header, package  # the versions pyproject pins
    assert "pip download --no-deps --only-binary=:all: --python-version 3.12" in header
    assert "60 MB" in header


def test_without_cuda_it_says_so_in_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run_script(str(tmp_path / "out"))
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and "no CUDA device here" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not list((tmp_path / "out").iterdir())


def test_usage_errors_are_one_line():
    result = run_script()
    assert result.returncode == 2 and "usage:" in result.stderr
    assert run_script("--fast", "out").returncode == 2


@pytest.mark.slow
def test_dry_run_runs_every_stage_and_records_them(tmp_path):
    """Tests, bench and four concurrent Atari runs stopped by SIGINT, at toy scale (~2.5 min)."""
    out = tmp_path / "out"
    result = run_script("--dry-run", str(out), timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    files = {path.name for path in out.iterdir()}
    assert files == set(OUTPUT_FILES) and len(files) <= 8
    summary = json.loads((out / "summary.json").read_text())
    assert {"tests", "bench", "training"} <= set(summary) and summary["dry_run"] is True
    tests = summary["tests"]
    assert tests["status"] == "passed" and "tests/test_checkpoint_writer.py" in tests["files"]
    assert tests["counts"].get("skipped", 0) + tests["counts"].get("passed", 0) >= 1

    bench = summary["bench"]
    assert bench["status"] == "ok" and bench["step_seconds"] > 0
    assert bench["peak_tflops_bf16"] > 0 and bench["loop"]["eager"]["steps_per_second"] > 0
    assert set(bench["concurrent"]) == {"1", "2"}
    assert json.loads((out / "bench.json").read_text())["end_to_end"]["variants"]["eager"]

    training = summary["training"]
    assert training["status"] == "ok" and set(training["games"]) == set(GAMES)
    for game, run in training["games"].items():
        assert run["status"] == "stopped with a checkpoint", (game, run)
        assert run["env_steps_per_second"] > 0 and run["updates_per_second"] > 0, game
        assert run["updates"] > 0 and run["episodes"] == len(run["episode_returns"])
    assert training["aggregate_env_steps_per_second"] == pytest.approx(
        sum(run["env_steps_per_second"] for run in training["games"].values())
    )
    # The table comes last, one row per game.
    table = result.stdout.strip().splitlines()
    assert table[-1].strip().startswith("in all")
    assert [line.split()[0] for line in table[-1 - len(GAMES) : -1]] == list(GAMES)
    assert (out / "table.txt").read_text().strip().splitlines()[-1] == table[-1]


def test_the_gpu_plan_parses_into_the_intended_bench_and_training():
    """The GPU stages cannot run here; their command lines can at least be read as intended."""
    import types

    from storm_wm.cli import build_parser
    from storm_wm.commands.bench import loop_settings
    from storm_wm.commands.train import config_from_args
    from storm_wm.config import parse_overrides

    parser = build_parser()
    args, extra = parser.parse_known_args(["bench", *GPU_PLAN.bench_arguments])
    args.overrides = extra
    assert args.device == "cuda" and parse_overrides(extra) == {
        "train.warmup_steps": "256", "train.log_every": "50",
    }  # fmt: skip
    settings = loop_settings(args, types.SimpleNamespace(type="cuda"))
    assert (settings.steps, settings.warmup) == (200, 50)
    assert settings.variants == ("eager", "compiled") and settings.concurrent == (1, 2, 4)

    args, extra = parser.parse_known_args(["train", *GPU_PLAN.train_arguments])
    args.overrides = extra
    config = config_from_args(args)
    assert config.preset == "atari100k" and config.device == "cuda"
    assert config.train.steps == 100_000 and config.train.log_every == 50
