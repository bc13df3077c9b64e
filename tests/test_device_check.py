"""scripts/device-check.sh as it is run: its CPU rehearsal (--dry-run) end to end, a check
stopped part-way (a stage at its limit, then SIGTERM), its budget arithmetic, and its
refusals in one line. The harness lives in tools/device_check (on pytest's pythonpath)."""

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import torch

from device_check.check import (
    DRY_RUN_PLAN,
    GAMES,
    GPU_PLAN,
    OUTPUT_FILES,
    STAGES,
    stage_limit,
    training_seconds,
)
from device_check.stages import STOP_SECONDS, read_test_outcomes, run_training, start, stop_all

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "device-check.sh"
ENV = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}


def run_script(*arguments: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *arguments],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
        cwd=ROOT,
    )


def test_script_header_gives_the_exact_command_and_how_to_fill_the_wheel_folder():
    assert os.access(SCRIPT, os.X_OK)
    header = SCRIPT.read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = dict(requirement.split("==") for requirement in project["dependencies"])
    for package in ("gymnasium", "ale-py", "tensorboardX"):
        assert f"{package}=={pins[package]}" in header, package  # the versions pyproject pins
    assert "pip download --no-deps --only-binary=:all: --python-version 3.12" in header
    assert "#   bash scripts/device-check.sh OUTDIR\n" in header
    assert ".whl/ folder travelling" in header and "600 s limit" in header
    assert "60 MB" in header
    help_text = run_script("--help").stdout
    assert "bash scripts/device-check.sh OUTDIR" in help_text and "set -e" not in help_text


def test_without_cuda_it_says_so_in_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run_script(str(tmp_path / "out"))
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and "no CUDA device here" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not list((tmp_path / "out").iterdir())


def test_usage_errors_are_one_line(tmp_path):
    result = run_script()
    assert result.returncode == 2 and "usage:" in result.stderr
    assert run_script("--fast", "out").returncode == 2
    result = run_script("out", "--stages")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "needs a value" in result.stderr
    # The script hands its options to the check, which refuses an unknown stage.
    result = run_script("--dry-run", "--stages", "warmup", str(tmp_path))
    assert result.returncode == 2
    assert "--stages warmup: choose from tests, bench, training" in result.stderr


@pytest.mark.parametrize("budget", [30, 60, 100, 200, 310, 530, 1000])
@pytest.mark.parametrize(
    "selected", [list(STAGES), ["bench"], ["bench", "training"], ["tests", "training"]]
)
def test_stages_that_use_their_whole_limits_still_fit_the_budget(budget, selected):
    """Every limit includes its stage's stop; the minimums are shares, so they scale."""
    for plan in (GPU_PLAN, DRY_RUN_PLAN):
        spent = 0.0
        for stage in selected:
            limit = stage_limit(plan, stage, selected, budget, budget - spent)
            if stage == "training":
                seconds, grace = training_seconds(plan, budget, limit)
                assert seconds + grace + STOP_SECONDS <= limit or seconds == 0
            spent += limit
        assert spent <= budget * (1 - plan.margin_share) + 1e-9


def test_the_gpu_budget_gives_each_stage_what_it_needs():
    selected, budget = list(STAGES), GPU_PLAN.budget
    tests = stage_limit(GPU_PLAN, "tests", selected, budget, budget)
    assert 120 <= tests <= 135  # two cold CUDA-graph compiles and a CUDA training step
    bench = stage_limit(GPU_PLAN, "bench", selected, budget, budget - tests)
    assert 270 <= bench <= 315
    training = stage_limit(GPU_PLAN, "training", selected, budget, budget - tests - bench)
    seconds, grace = training_seconds(GPU_PLAN, budget, training)
    assert seconds >= 60 and grace >= 20
    # Tests that end early leave their time to the bench; training keeps its share.
    assert stage_limit(GPU_PLAN, "bench", selected, budget, budget - 40) > bench + 80


def test_stopping_stuck_processes_stops_them_all_together(tmp_path):
    stubborn = ["bash", "-c", "trap '' TERM INT; sleep 120"]
    with (tmp_path / "log").open("w") as log:
        processes = [start(stubborn, log) for _ in range(4)]
        time.sleep(0.5)  # the traps are set
        assert stop_all(processes) == [True] * 4
    assert [process.returncode for process in processes] == [-signal.SIGKILL] * 4


def test_a_training_stage_left_no_time_is_timed_out_never_failed(tmp_path, monkeypatch):
    """The bench overran its share on a busy machine: a training stage with no time starts no
    runs, and runs the check itself stops before their loop began are not failures."""
    import device_check.check as check

    def no_runs(*arguments):
        raise AssertionError("a training stage without time started its runs")

    monkeypatch.setattr(check, "run_training", no_runs)
    result = check._run_stage("training", DRY_RUN_PLAN, tmp_path, 2.0, 45, (), ROOT)
    assert result["status"] == "timed out" and "no time left" in result["reason"]
    (tmp_path / "out").mkdir()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    stage = run_training(
        DRY_RUN_PLAN.train_arguments, GAMES[:1], 5.0, tmp_path / "out", tmp_path, seconds=0.0
    )
    run = stage["games"][GAMES[0]]
    assert run["status"] == "stopped before its loop began" and "error" not in run, run
    assert stage["status"] == "timed out", stage


def test_a_signal_just_before_a_stage_starts_stops_that_stage(tmp_path, monkeypatch):
    """SIGTERM landing after the check has looked for a signal but before the next stage has
    begun (here: while its limit is computed) still stops that stage: it never runs to its end
    as if nothing had happened, and the check reports itself interrupted."""
    import device_check.check as check

    began = []

    def stage(name, *arguments):
        began.append(name)
        return {"status": "passed" if name == "tests" else "ok"}

    def limit_then_signal(plan, name, *arguments):
        if name == "bench":
            os.kill(os.getpid(), signal.SIGTERM)
        return 10.0

    monkeypatch.setattr(check, "_run_stage", stage)
    monkeypatch.setattr(check, "stage_limit", limit_then_signal)
    handlers = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        summary = check.run_check(
            DRY_RUN_PLAN, tmp_path / "out", dry_run=True, stages=["tests", "bench", "training"]
        )
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    assert began == ["tests"]
    assert summary["tests"]["status"] == "passed"
    assert summary["bench"]["status"] == "interrupted"
    assert summary["training"]["status"] == "not run (the check was interrupted)"
    assert summary["complete"] is False and summary["interrupted_by"] == "SIGTERM"
    assert check.exit_status(summary) == 1
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summary


def test_pytest_outcomes_are_read_from_a_stopped_run():
    text = (
        "collected 9 items / 2 deselected / 7 selected\n\n"
        "tests/test_cuda.py::test_replay_on_cuda_samples_the_host_windows PASSED     [ 14%]\n"
        "tests/test_cuda.py::test_a_training_step SKIPPED (needs a CUDA GPU)    [ 28%]\n"
        "tests/test_cuda.py::test_compiled_imagination FAILED                   [ 42%]\n"
        "FAILED tests/test_cuda.py::test_compiled_imagination - AssertionError\n"
    )
    assert read_test_outcomes(text) == {
        "tests/test_cuda.py::test_replay_on_cuda_samples_the_host_windows": "passed",
        "tests/test_cuda.py::test_a_training_step": "skipped",
        "tests/test_cuda.py::test_compiled_imagination": "failed",
    }


def gpu_summary() -> dict:
    """What a GPU run's summary could hold (made-up figures), to read the table's GPU rows."""
    phase = {"seconds": 0.02, "tflop": 0.79, "tflops": 39.5, "fraction_of_peak": 0.05}
    profiled = {
        "wall_seconds": 0.03,
        "device_busy_seconds": 0.01,
        "kernels": 1500.0,
        "kernel_launches": 1400.0,
        "graph_launches": 2.0,
        "synchronizations": 1.0,
    }
    loop = {"updates_per_second": 1.0, "peak_memory_bytes": 9e9, "steps": 100}
    return {
        "dry_run": False,
        "device": "NVIDIA H200",
        "torch": "2.11.0+cu130",
        "python": "3.12.3",
        "budget_seconds": 530,
        "elapsed_seconds": 512.0,
        "stages": list(STAGES),
        "complete": True,
        "tests": {"status": "passed", "counts": {"passed": 7}},
        "bench": {
            "status": "ok",
            "missing": [],
            "precision": "bf16",
            "replay_on_device": True,
            "peak_tflops_bf16": 790.0,
            "peak_tflops_fp32": 50.0,
            "step_seconds": 0.02,
            "step_tflop": 0.79,
            "env_step_seconds": 0.001,
            "train_every": 1,
            "phases": {"imagination": phase, "act": {**phase, "seconds": 0.004}},
            "profile": {
                "imagination": profiled,
                "step": profiled,
                "act_and_env": {**profiled, "device_busy_seconds": 0.001},
            },
            "loop": {
                "eager": {**loop, "steps_per_second": 30.0, "compile": False},
                "compiled": {
                    **loop,
                    "steps_per_second": 90.0,
                    "compile": True,
                    "compiled": True,
                    "compile_fallbacks": [],
                },
            },
            "concurrent": {
                "1": {"aggregate_steps_per_second": 30.0, "speedup_over_one_run": 1.0},
                "4": {"aggregate_steps_per_second": 78.0, "speedup_over_one_run": 2.6},
            },
        },
        "training": {"status": "skipped"},
    }


def test_the_table_gives_a_gpu_run_its_distance_from_the_floor_and_the_targets():
    from device_check.table import format_table

    lines = format_table(gpu_summary()).splitlines()
    imagination = next(line for line in lines if line.strip().startswith("imagination")).split()
    # 20 ms for 0.79 TFLOP: 1 ms at 790 TFLOP/s, 5 % of the peak, 20x the floor; the device
    # busy 10 of the 20 ms timed; 1,400 kernel and 2 graph launches; one synchronisation.
    assert imagination[1:] == ["20", "0.79", "39.5", "5.0%", "1", "20", "50%", "1500", "1402", "1"]
    act = next(line for line in lines if line.strip().startswith("act ")).split()
    assert act[7] == "20%"  # 1 ms busy over the 4 ms act and the 1 ms environment step
    text = "\n".join(lines)
    assert "loop compiled: 90 env steps/s" in text and "; compiled" in text
    assert (
        "first target <= 60 min (>= 28/s) met, goal <= 20 min (>= 83/s) met, moonshot "
        "<= 10 min (>= 167/s) not met" in text
    )
    assert "4 runs at once: 2.60x one run, goal >= 2.5x met" in text
    assert "arithmetic floor: 1.67 min per 100k steps" in text  # 0.79 TFLOP x 1e5 / 790 / 60
    assert lines[-1] == "training: skipped"


def test_the_gpu_plan_parses_into_the_intended_bench_and_training():
    """The GPU stages cannot run here; their command lines can at least be read as intended."""
    import types

    from storm_wm.cli import build_parser
    from storm_wm.commands.bench import loop_settings
    from storm_wm.config import parse_overrides
    from storm_wm.options import config_from_args

    parser = build_parser()
    args, extra = parser.parse_known_args(["bench", *GPU_PLAN.bench_arguments])
    args.overrides = extra
    assert args.device == "cuda" and args.profile and args.profile_steps == 3
    assert parse_overrides(extra) == {"train.warmup_steps": "256", "train.log_every": "25"}
    settings = loop_settings(args, types.SimpleNamespace(type="cuda"))
    assert (settings.steps, settings.warmup, settings.checkpoint_every) == (100, 25, 2500)
    assert settings.variants == ("eager", "compiled") and settings.concurrent == (1, 4, 2)

    args, extra = parser.parse_known_args(["train", *GPU_PLAN.train_arguments])
    args.overrides = extra
    config = config_from_args(args)
    assert config.preset == "atari100k" and config.device == "cuda"
    assert config.train.steps == 100_000 and config.train.log_every == 50


def _statuses(summary: dict) -> tuple[str, ...]:
    return tuple(summary[name]["status"] for name in STAGES)


def _watch(process: subprocess.Popen, out: Path, until=None, timeout: float = 900) -> list:
    """The distinct states summary.json went through while `process` ran (read every 0.2 s);
    stops watching when `until(summary)` holds."""
    states, deadline = [], time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        path = out / "summary.json"
        if path.is_file():
            summary = json.loads(path.read_text())
            if not states or _statuses(summary) != _statuses(states[-1]):
                states.append(summary)
            if until is not None and until(summary):
                break
        time.sleep(0.2)
    return states


@pytest.mark.slow
def test_dry_run_runs_every_stage_in_order_and_writes_after_each(tmp_path):
    """Tests, bench (profile and a compile fallback included) and four concurrent Atari runs
    stopped by SIGINT, at toy scale (about 80 s here)."""
    out = tmp_path / "out"
    process = subprocess.Popen(
        ["bash", str(SCRIPT), "--dry-run", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
        cwd=ROOT,
    )
    states = _watch(process, out)
    output = process.communicate(timeout=900)[0]
    assert process.returncode == 0, output[-3000:]
    # summary.json was rewritten after each stage, in the stages' order.
    waiting = "not run yet"
    assert [_statuses(state) for state in states[:3]] == [
        (waiting, waiting, waiting),
        ("passed", waiting, waiting),
        ("passed", "ok", waiting),
    ]
    files = {path.name for path in out.iterdir()}
    assert files == set(OUTPUT_FILES) and len(files) <= 8
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages"] == list(STAGES) and summary["complete"] is True
    assert summary["dry_run"] is True
    tests = summary["tests"]
    assert tests["status"] == "passed" and "tests/test_checkpoint_writer.py" in tests["files"]
    assert tests["counts"].get("skipped", 0) + tests["counts"].get("passed", 0) >= 1

    bench = summary["bench"]
    assert bench["status"] == "ok" and bench["step_seconds"] > 0 and bench["missing"] == []
    assert (
        bench["measured"]
        == bench["planned"]
        == [
            "phases",
            "profile",
            "loop eager",
            "loop compiled",
            "concurrent 1",
            "concurrent 2",
        ]
    )
    assert bench["peak_tflops_bf16"] > 0 and bench["loop"]["eager"]["steps_per_second"] > 0
    for name in ("world_model_update", "imagination", "agent_update", "act"):
        phase = bench["phases"][name]
        # At the peak of the bench's precision: FLOPs over (achieved rate / its fraction).
        assert phase["floor_seconds"] == pytest.approx(
            phase["tflop"] * phase["fraction_of_peak"] / phase["tflops"]
        )
    assert set(bench["concurrent"]) == {"1", "2"}
    # The compiled variant could not compile (the dry run hides the C++ compiler): recorded.
    compiled = bench["loop"]["compiled"]
    assert compiled["compile"] is True and compiled["compiled"] is False
    assert {f["function"] for f in compiled["compile_fallbacks"]} <= {
        "the imagination rollout",
        "the acting step",
    }
    assert all("compiler" in fallback["reason"] for fallback in compiled["compile_fallbacks"])
    # The profile's shape: every phase, operator calls and top operators; no device timeline.
    profile = json.loads((out / "bench.json").read_text())["profile"]
    assert list(profile["phases"]) == [
        "world_model_update",
        "imagination",
        "agent_update",
        "act_and_env",
    ]
    for name, phase in profile["phases"].items():
        assert phase["wall_seconds"] > 0 and phase["operator_calls"] > 0, name
        assert phase["top_operators"] and phase["device_busy_seconds"] is None, name
    assert bench["profile"]["step"]["operator_calls"] == pytest.approx(
        sum(phase["operator_calls"] for phase in profile["phases"].values())
    )
    assert "imagination: wall" in (out / "profile.txt").read_text()

    training = summary["training"]
    assert training["status"] == "ok" and set(training["games"]) == set(GAMES)
    for game, run in training["games"].items():
        assert run["status"] == "stopped with a checkpoint", (game, run)
        assert run["env_steps_per_second"] > 0 and run["updates_per_second"] > 0, game
        assert run["updates"] > 0 and run["episodes"] == len(run["episode_returns"])
    assert training["aggregate_env_steps_per_second"] == pytest.approx(
        sum(run["env_steps_per_second"] for run in training["games"].values())
    )
    # The table comes last, one row per game; it shows the fallback and the targets.
    table = output.strip().splitlines()
    assert table[-1].strip().startswith("in all")
    assert [line.split()[0] for line in table[-1 - len(GAMES) : -1]] == list(GAMES)
    text = (out / "table.txt").read_text()
    assert text.strip().splitlines()[-1] == table[-1]
    assert "NOT compiled: fell back to eager" in text and "first target <= 60 min" in text
    assert "stages: tests passed" in text


@pytest.mark.slow
def test_a_stage_stopped_at_its_limit_is_partial_and_a_stopped_check_keeps_its_figures(tmp_path):
    """A budget too small for the bench's loop (the phases fit): the bench is stopped at its
    limit and reported partial with the phases' figures; then SIGTERM during training stops
    the check, which writes out what it has (about 35 s here)."""
    out = tmp_path / "out"
    environment = {
        **ENV,
        "TMPDIR": str(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tools")]),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "device_check",
            str(out),
            "--dry-run",
            "--budget",
            "45",
            "--stages",
            "bench,training",
            "--bench-extra=--loop-steps 100000 --loop-variants eager --concurrent 1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
        cwd=ROOT,
    )
    states = _watch(process, out, until=lambda summary: summary["bench"]["status"] != "not run yet")
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 1, output[-3000:]
    # The bench's figures were on disk before the check was stopped.
    assert states[-1]["bench"]["status"] == "partial"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and summary["interrupted_by"] == "SIGTERM"
    assert summary["tests"]["status"] == "skipped"
    bench = summary["bench"]
    assert bench["status"] == "partial" and bench["timed_out"] is True
    # The limit's SIGTERM stops the loop's run like any run: the bench keeps its rate so far
    # (if the window held two records) and stops there; the concurrent run never starts.
    assert bench["measured"][:2] == ["phases", "profile"] and "concurrent 1" in bench["missing"]
    assert bench["step_seconds"] > 0 and bench["phases"]["imagination"]["tflop"] > 0
    if "loop eager" in bench["measured"]:
        eager = bench["loop"]["eager"]
        assert eager["stopped_by"] == "SIGTERM" and eager["steps_per_second"] > 0
    # Where SIGTERM lands depends on the machine's load: in the training runs, before them,
    # or (the bench having overrun its share on a busy machine) after a training stage that had
    # no time left to start its runs; never a failure.
    assert summary["training"]["status"] in (
        "interrupted",
        "partial",
        "not run (the check was interrupted)",
        "timed out",
    )
    table = (out / "table.txt").read_text()
    assert "bench partial" in table and "not reached: " in table and "concurrent 1" in table
    assert "world_model_update" in table
