"""`storm-wm bench` as a user runs it, and the FLOP counts it rests on, checked by hand."""

import json
import os
import subprocess
import sys

import pytest
import torch
from torch.nn import functional as F

from storm_wm.benchmark.flops import count_flops
from storm_wm.cli import main

PHASES = ("world_model_update", "imagination", "agent_update")
POSITIVE = (
    "step_seconds", "step_tflop", "fraction_of_peak", "peak_tflops_bf16", "peak_tflops_fp32",
    "env_steps_per_second", "peak_rss_bytes", "replay_bytes",
)  # fmt: skip


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


@pytest.fixture(scope="module")
def debug_figures(tmp_path_factory) -> dict:
    """One real run on Pong at the debug preset. One thread: on a 2-core machine shared with
    other jobs, two threads spend most of their time waiting for each other."""
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "storm_wm.cli", "bench", "--preset", "debug", "--repeats", "2",
         "--warmup", "1", "--threads", "1", "--json", str(path)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for phase in (*PHASES, "act", "training step", "peak memory", "load average"):
        assert phase in result.stdout
    return json.loads(path.read_text())


def test_bench_json_has_every_figure(debug_figures):
    figures = debug_figures
    for key in POSITIVE:
        assert figures[key] > 0, key
    assert set(figures["phases"]) == {*PHASES, "act"}
    for name, phase in figures["phases"].items():
        assert phase["seconds"] > 0 and phase["tflop"] > 0, name
        assert len(phase["seconds_samples"]) == (20 if name == "act" else 2)
    assert figures["precision"] == "fp32"  # no native bf16 on the CPUs this is tested on
    assert figures["preset"] == "debug" and figures["game"] == "Pong"
    assert figures["replay_bytes"] >= 10_000 * 64 * 64 * 3  # the debug preset's full buffer
    assert figures["peak_rss_bytes"] > figures["replay_bytes"]


def test_bench_figures_are_consistent(debug_figures):
    figures, phases = debug_figures, debug_figures["phases"]
    assert figures["step_seconds"] == pytest.approx(sum(phases[p]["seconds"] for p in PHASES))
    assert figures["step_tflop"] == pytest.approx(sum(phases[p]["tflop"] for p in PHASES))
    peak = figures["peak_tflops_fp32"]
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
