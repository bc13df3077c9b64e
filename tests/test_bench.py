"""`storm-wm bench` as a user runs it, and the FLOP counts it rests on, checked by hand."""

import json
import os
import subprocess
import sys

import pytest
import torch
from torch.nn import functional as F

from conftest import CPU_BF16_ANSWERS
from storm_wm.benchmark.end_to_end import LoopSettings, loop_schedule
from storm_wm.benchmark.run_metrics import episode_returns, window_rate
from storm_wm.cli import main
from storm_wm.config import build_config
from storm_wm.device import CPU_BF16_VARIABLE
from storm_wm.measure import count_flops

PHASES = ("world_model_update", "imagination", "agent_update")
POSITIVE = (
    "step_seconds",
    "step_tflop",
    "fraction_of_peak",
    "peak_tflops_bf16",
    "peak_tflops_fp32",
    "env_steps_per_second",
    "peak_rss_bytes",
    "replay_bytes",
)


def test_linear_layer_flops_counted_by_hand():
    layer = torch.nn.Linear(3, 5)
    inputs = torch.randn(7, 3, requires_grad=True)
    _, forward = count_flops(lambda: layer(inputs))
    assert forward == 2 * 7 * 3 * 5  # a multiply and an add per (row, input, output); bias free
    _, both = count_flops(lambda: layer(inputs).sum().backward())
    # Backward: the gradient of the input (7x5 @ 5x3) and of the weight (5x7 @ 7x3).
    assert both == 3 * (2 * 7 * 3 * 5)


def test_cpu_attention_flops_are_counted():
    """The CPU attention kernel is missing from PyTorch's FLOP table; the bench adds it."""
    query = torch.randn(2, 4, 8, 16)
    _, flops = count_flops(lambda: F.scaled_dot_product_attention(query, query, query))
    assert flops == 2 * (2 * 2 * 4 * 8 * 8 * 16)  # scores Q K^T, then weights @ V


@pytest.fixture(scope="module", params=CPU_BF16_ANSWERS)
def debug_figures(request, tmp_path_factory) -> dict:
    """One real run on Pong at the debug preset, under each answer of the CPU's bf16 detection.
    One thread: on a 2-core machine shared with other jobs, two threads spend most of their
    time waiting for each other."""
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", CPU_BF16_VARIABLE: request.param}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "storm_wm.cli",
            "bench",
            "--preset",
            "debug",
            "--repeats",
            "2",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--json",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for phase in (*PHASES, "act", "training step", "peak memory", "load average"):
        assert phase in result.stdout
    assert f"native bf16: {'yes' if request.param == 'native' else 'no'}" in result.stdout
    assert "precision fp32: auto: fp32 on CPUs" in result.stderr
    return json.loads(path.read_text())


def test_bench_json_has_every_figure(debug_figures):
    figures = debug_figures
    for key in POSITIVE:
        assert figures[key] > 0, key
    assert set(figures["phases"]) == {*PHASES, "act"}
    for name, phase in figures["phases"].items():
        assert phase["seconds"] > 0 and phase["tflop"] > 0, name
        assert len(phase["seconds_samples"]) == (20 if name == "act" else 2)
    assert figures["precision"] == "fp32"  # --precision auto on any CPU (storm_wm.device)
    assert figures["preset"] == "debug" and figures["game"] == "Pong"
    assert figures["replay_bytes"] >= 10_000 * 64 * 64 * 3  # the debug preset's full buffer
    assert figures["peak_rss_bytes"] > figures["replay_bytes"]


def test_bench_figures_are_consistent(debug_figures):
    figures, phases = debug_figures, debug_figures["phases"]
    assert figures["step_seconds"] == pytest.approx(sum(phases[p]["seconds"] for p in PHASES))
    assert figures["step_tflop"] == pytest.approx(sum(phases[p]["tflop"] for p in PHASES))
    # The step is held against the peak of the precision it ran in.
    peak = figures[f"peak_tflops_{figures['precision']}"]
    assert figures["peak_precision"] == figures["precision"]
    assert figures["fraction_of_peak"] == pytest.approx(
        figures["step_tflop"] / figures["step_seconds"] / peak
    )
    samples = phases["imagination"]["seconds_samples"]
    assert phases["imagination"]["seconds"] == pytest.approx(sum(samples) / 2)  # median of two
    # The world-model update trains on 4 x 16 frames: its FLOPs dwarf one acting step's.
    assert phases["world_model_update"]["tflop"] > 10 * phases["act"]["tflop"]


def test_bench_refuses_cuda_without_cuda_in_one_line(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["bench", "--preset", "debug", "--device", "cuda"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "CUDA is not available" in error


def test_bench_rejects_a_bad_override_in_one_line(capsys):
    assert main(["bench", "--preset", "debug", "--agent.no_such_field", "1"]) == 2
    assert "unknown config field" in capsys.readouterr().err


# The end-to-end loop at a scale that runs in seconds: the tiny preset's networks on toy:catch,
# with this schedule.
SCHEDULE = {
    "train.warmup_steps": 40,
    "train.log_every": 20,
    "train.checkpoint_every": 1000,
    "train.diagnostics_every": 0,
    "train.video_every": 0,
}
SCHEDULE_ARGS = [word for name, value in SCHEDULE.items() for word in (f"--{name}", str(value))]


def test_window_rate_from_logged_rates_worked_by_hand():
    # Records at steps 100 and 200, logged 10 s and 15 s after training started: the rate each
    # carries is steps / seconds since the start; between them 100 steps took 5 s.
    records = [
        {"step": 50, "env/episode_return": 3.0},
        {"step": 100, "train/steps_per_second": 100 / 10, "train/updates": 50},
        {"step": 200, "train/steps_per_second": 200 / 15, "train/updates": 150},
        {"step": 210, "env/episode_return": -1.0},
    ]
    rate = window_rate(records, from_step=100)
    assert (rate.first_step, rate.last_step, rate.steps) == (100, 200, 100)
    assert rate.seconds == pytest.approx(5.0)
    assert rate.steps_per_second == pytest.approx(20.0)
    assert rate.updates_per_second == pytest.approx(20.0)
    assert window_rate(records, from_step=101) is None  # one record left: no window
    assert episode_returns(records) == [3.0, -1.0]


def test_loop_schedule_times_whole_log_intervals_after_the_first_update():
    config = build_config("toy", {})  # 300 random steps, a record every 100
    settings = LoopSettings(steps=200, warmup=0)
    # The first update is at step 301, so the first training record is at step 400.
    assert loop_schedule(config, settings) == (400, 600, 100)
    assert loop_schedule(config, LoopSettings(steps=250, warmup=150)) == (500, 800, 125)


TINY_LOOP_BENCH = [sys.executable, "-m", "storm_wm.cli", "bench", "--preset", "toy+tiny"]
TINY_LOOP_BENCH += [*SCHEDULE_ARGS, "--repeats", "1", "--warmup", "0", "--threads", "1"]
TINY_LOOP_BENCH += ["--loop-steps", "40", "--loop-warmup", "0"]
"""`storm-wm bench` timing 40 steps of the real loop of tiny networks after no warm-up."""


@pytest.fixture(scope="module")
def loop_figures(tmp_path_factory) -> dict:
    """The real loop, eager, alone and as two concurrent processes, at a tiny scale."""
    path = tmp_path_factory.mktemp("bench_loop") / "bench.json"
    result = subprocess.run(
        [*TINY_LOOP_BENCH, "--loop-variants", "eager", "--concurrent", "1,2", "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training loop end to end" in result.stdout and "2 concurrent run(s)" in result.stdout
    return json.loads(path.read_text())["end_to_end"]


@pytest.mark.slow  # four processes start torch: over a minute here
def test_bench_times_the_training_loop_end_to_end(loop_figures):
    figures = loop_figures
    # 40 random steps; updates from step 41; records every 20 steps: timed 60..100.
    assert (figures["timed_from_step"], figures["last_step"]) == (60, 100)
    assert figures["checkpoint_every"] == 20  # lowered so that the window holds checkpoints
    eager = figures["variants"]["eager"]
    assert set(figures["variants"]) == {"eager"} and eager["compile"] is False
    assert (eager["first_step"], eager["last_step"], eager["steps"]) == (60, 100, 40)
    assert eager["checkpoints_in_window"] == 2  # those of steps 60 and 80
    assert eager["steps_per_second"] == pytest.approx(40 / eager["seconds"])
    assert eager["updates_per_second"] == pytest.approx(eager["steps_per_second"])  # every step
    assert eager["peak_memory_bytes"] > 0 and eager["peak_memory_kind"] == "process resident"
    assert eager["hours_per_100k_steps"] == pytest.approx(1e5 / eager["steps_per_second"] / 3600)


@pytest.mark.slow  # four processes start torch: over a minute here
def test_bench_sums_the_rates_of_concurrent_runs(loop_figures):
    concurrent = loop_figures["concurrent"]
    assert set(concurrent) == {"1", "2"}
    assert [len(concurrent[count]["per_run"]) for count in ("1", "2")] == [1, 2]
    two = concurrent["2"]
    assert two["aggregate_steps_per_second"] == pytest.approx(
        sum(run["steps_per_second"] for run in two["per_run"])
    )
    assert all(run["steps"] == 40 for run in two["per_run"])
    assert concurrent["1"]["speedup_over_one_run"] == 1.0
    assert two["speedup_over_one_run"] == pytest.approx(
        two["aggregate_steps_per_second"] / concurrent["1"]["aggregate_steps_per_second"]
    )


@pytest.mark.slow
def test_bench_times_eager_and_compiled_loops_in_one_run(tmp_path):
    """Compiling on a CPU takes minutes, hence slow; the compiled run is a real train.compile."""
    path = tmp_path / "bench.json"
    result = subprocess.run(
        [*TINY_LOOP_BENCH, "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    variants = json.loads(path.read_text())["end_to_end"]["variants"]
    assert {name: run["compile"] for name, run in variants.items()} == {
        "eager": False,
        "compiled": True,
    }
    assert all(run["steps"] == 40 and run["steps_per_second"] > 0 for run in variants.values())


@pytest.mark.parametrize(
    "options, message",
    [
        (["--loop-steps", "40", "--loop-variants", "fast"], "choose from eager, compiled"),
        (["--loop-steps", "40", "--concurrent", "0"], "run counts of 1 or more"),
        (["--loop-steps", "40", "--concurrent", "two"], "run counts of 1 or more"),
        (["--concurrent", "2"], "give --loop-steps N too"),
        (["--loop-steps", "-1"], "must be 0 or more"),
    ],
)
def test_bench_loop_options_are_checked_in_one_line(options, message, capsys):
    if torch.cuda.is_available():
        pytest.skip("the default --loop-steps differs with CUDA")
    assert main(["bench", "--preset", "debug", "--device", "cpu", *options]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and message in error
