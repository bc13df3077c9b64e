"""What `storm-wm bench` records beyond timings: the profile's summary (worked by hand on a
made-up CUDA trace, and its shape from a real CPU profile), the compile outcome of a compiled
loop, the order of its measurements and the loop's checkpoint cadence."""

import pytest
import torch

from storm_wm import compilation
from storm_wm.benchmark.end_to_end import LoopSettings, compile_outcome, loop_schedule
from storm_wm.benchmark.profile import (
    PHASE_END,
    PHASE_PREFIX,
    TraceEvent,
    format_profile,
    nest,
    profile_phases,
    summarize,
)
from storm_wm.benchmark.run import planned_measurements
from storm_wm.compilation import CompiledFunction
from storm_wm.config import build_config


def cuda_trace() -> list[TraceEvent]:
    """One step of two phases on a made-up timeline (microseconds).

    Phase "update", 0..100: two top-level ops (the second calls a nested op), three kernel
    launches, one copy in, one stream synchronisation; kernels 10..30 and 25..40 (overlapping),
    the copy 60..70, a kernel 80..90; the profile's own synchronisation at 90..100 is not the
    phase's. Phase "rollout", 100..200: one graph launch, its kernel 150..190.
    """
    annotation, op, runtime = "annotation", "op", "runtime"
    return [
        TraceEvent(PHASE_PREFIX + "update", annotation, 0, 100),
        TraceEvent("aten::addmm", op, 2, 20),
        TraceEvent("cudaLaunchKernel", runtime, 5, 8),
        TraceEvent("cudaLaunchKernel", runtime, 9, 12),
        TraceEvent("aten::linear", op, 30, 60),
        TraceEvent("aten::mm", op, 35, 50),
        TraceEvent("cudaLaunchKernel", runtime, 40, 45),
        TraceEvent("cudaMemcpyAsync", runtime, 62, 65),
        TraceEvent("cudaStreamSynchronize", runtime, 65, 68),
        TraceEvent(PHASE_END, annotation, 90, 100),
        TraceEvent("cudaDeviceSynchronize", runtime, 91, 99),
        TraceEvent("gemm_big", "kernel", 10, 30),
        TraceEvent("gemm_small", "kernel", 25, 40),
        TraceEvent("Memcpy HtoD (Pinned -> Device)", "memcpy", 60, 70),
        TraceEvent("gemm_small", "kernel", 80, 90),
        TraceEvent(PHASE_PREFIX + "rollout", annotation, 100, 200),
        TraceEvent("cudaGraphLaunch", runtime, 105, 110),
        TraceEvent(PHASE_END, annotation, 190, 200),
        TraceEvent("cudaDeviceSynchronize", runtime, 191, 199),
        TraceEvent("graph_kernel", "kernel", 150, 190),
    ]


def test_profile_summary_of_a_cuda_trace_worked_by_hand():
    events = cuda_trace()
    nest(events)
    summary = summarize(events, ["update", "rollout"], steps=1, timeline=True)
    update, rollout = summary["phases"]["update"], summary["phases"]["rollout"]
    assert update["wall_seconds"] == pytest.approx(100e-6)
    # Kernels 10..40 and 80..90, the copy 60..70: busy 50 us; idle 0..10, 40..60, 70..80, 90..100.
    assert update["device_busy_seconds"] == pytest.approx(50e-6)
    assert update["device_busy_fraction"] == pytest.approx(0.5)
    assert update["device_idle_seconds"] == pytest.approx(50e-6)
    gaps = update["idle_gaps"]
    assert gaps["count"] == 4 and gaps["seconds"] == pytest.approx(50e-6)
    assert gaps["largest"][0] == {
        "seconds": pytest.approx(20e-6),
        "after": "gemm_small",
        "before": "Memcpy HtoD (Pinned -> Device)",
    }
    # Then the 10 us gaps in the order they came: 0..10 and 70..80.
    assert [(gap["after"], gap["before"]) for gap in gaps["largest"][1:]] == [
        ("the phase's start", "gemm_big"),
        ("Memcpy HtoD (Pinned -> Device)", "gemm_small"),
    ]
    assert (update["kernels"], update["kernel_launches"], update["graph_launches"]) == (3, 3, 0)
    assert update["synchronizations"] == 1  # the stream's; the profile's own is left out
    assert update["memcpy"] == {"HtoD": 1}
    # gemm_small: 15 + 10 us in two calls, half the busy time; gemm_big: 20 us.
    assert [k["name"] for k in update["top_kernels"]] == ["gemm_small", "gemm_big"]
    assert update["top_kernels"][0]["calls"] == 2
    assert update["top_kernels"][0]["seconds"] == pytest.approx(25e-6)
    assert update["top_kernels"][0]["share"] == pytest.approx(0.5)
    # Ops: addmm 18 us less its two launches (6 us); linear 30 less mm (15); mm 15 less 5.
    assert update["operator_calls"] == 2  # addmm and linear; mm runs inside linear
    assert update["host_op_seconds"] == pytest.approx((12 + 15 + 10) * 1e-6)
    assert rollout["graph_launches"] == 1 and rollout["kernel_launches"] == 0
    assert rollout["device_busy_seconds"] == pytest.approx(40e-6)
    assert rollout["idle_gaps"]["largest"][0]["before"] == "graph_kernel"
    step = summary["step"]
    assert step["device_busy_seconds"] == pytest.approx(90e-6)
    assert step["device_busy_fraction"] == pytest.approx(90 / 200)
    assert step["kernels"] == 4 and step["synchronizations"] == 1


def test_profile_averages_over_steps():
    events = cuda_trace() + [
        TraceEvent(e.name, e.kind, e.start + 1000, e.end + 1000) for e in cuda_trace()
    ]
    nest(events)
    summary = summarize(events, ["update", "rollout"], steps=2, timeline=True)
    assert summary["phases"]["update"]["kernels"] == 3
    assert summary["phases"]["update"]["device_busy_seconds"] == pytest.approx(50e-6)


def test_profile_of_real_phases_on_the_cpu_has_every_phase_and_no_device_fields():
    matrix = torch.randn(64, 64)
    phases = {"product": lambda: matrix @ matrix, "norm": lambda: torch.relu(matrix).sum()}
    summary = profile_phases(phases, torch.device("cpu"), steps=2)
    assert summary["steps"] == 2 and summary["device_timeline"] is False
    assert list(summary["phases"]) == ["product", "norm"]
    product = summary["phases"]["product"]
    assert product["wall_seconds"] > 0 and product["host_op_seconds"] > 0
    assert product["operator_calls"] == 1  # aten::matmul, with aten::mm inside it
    assert "aten::mm" in [entry["name"] for entry in product["top_operators"]]
    assert summary["phases"]["norm"]["operator_calls"] == 2  # relu, sum
    assert product["device_busy_seconds"] is None and product["top_kernels"] is None
    assert summary["step"]["operator_calls"] == 3 and summary["step"]["kernels"] is None
    text = "\n".join(format_profile(summary))
    assert "product: wall" in text and "aten::mm" in text and "training step: wall" in text


def test_a_compile_fallback_is_recorded_with_its_reason(monkeypatch):
    def no_compiler(function, **settings):
        def fails(*args):
            raise RuntimeError("InductorError: no working C++ compiler found\nmore")

        return fails

    monkeypatch.setattr(torch, "compile", no_compiler)
    first = len(compilation.RECORDS)
    function = CompiledFunction(lambda x: (x * 2,), torch.device("cpu"), "the doubling")
    function(torch.ones(1))
    function(torch.ones(1))
    records = compilation.RECORDS[first:]
    assert records == [
        {
            "function": "the doubling",
            "compiled": False,
            "reason": "InductorError: no working C++ compiler found",
        }
    ]
    outcome = compile_outcome(records)
    assert outcome["compiled"] is False
    assert outcome["compile_fallbacks"] == [
        {"function": "the doubling", "reason": "InductorError: no working C++ compiler found"}
    ]
    working = [{"function": "the acting step", "compiled": True, "first_call_seconds": 1.0}]
    assert compile_outcome(working)["compiled"] is True
    assert compile_outcome([])["compiled"] is None  # nothing compiled was ever called


def test_a_compiled_call_records_its_first_call_once(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda function, **settings: function)
    first = len(compilation.RECORDS)
    function = CompiledFunction(lambda x: (x + 1,), torch.device("cpu"), "the increment")
    function(torch.zeros(1))
    function(torch.zeros(1))
    records = compilation.RECORDS[first:]
    assert len(records) == 1 and records[0]["compiled"] is True
    assert records[0]["function"] == "the increment" and records[0]["first_call_seconds"] >= 0


def test_measurements_are_planned_most_telling_first():
    loop = LoopSettings(100, 25, ("eager", "compiled"), (1, 4, 2))
    assert planned_measurements(True, loop) == [
        "phases",
        "profile",
        "loop eager",
        "loop compiled",
        "concurrent 1",
        "concurrent 4",
        "concurrent 2",
    ]
    assert planned_measurements(False, None) == ["phases"]


def test_the_loop_keeps_a_given_checkpoint_cadence():
    config = build_config("toy", {})  # 300 random steps, a record every 100
    assert loop_schedule(config, LoopSettings(200, 0))[2] == 100  # half the timed steps
    assert loop_schedule(config, LoopSettings(200, 0, checkpoint_every=2500)) == (400, 600, 2500)


def test_a_failed_profile_is_recorded_and_the_bench_goes_on(monkeypatch):
    """A profiler that fails (an API this PyTorch lacks) must not cost the figures after it."""
    from storm_wm.benchmark import run

    def broken(*args, **kwargs):
        raise RuntimeError("no profiler here\nmore")

    monkeypatch.setattr(run, "profile_phases", broken)
    written = []
    config = build_config("toy+tiny", {"train.replay_capacity": 400, "train.warmup_steps": 40})
    result = run.run_benchmark(
        config,
        torch.device("cpu"),
        torch.float32,
        repeats=1,
        warmup=0,
        profile_steps=1,
        on_figures=lambda figures: written.append(list(figures.measured)),
    )
    assert result.profile == {"error": "RuntimeError: no profiler here"}
    assert result.planned == ["phases", "profile"] and result.measured == ["phases"]
    assert written == [["phases"], ["phases"]]  # after the phases, then with the error
    assert "profile: failed (RuntimeError: no profiler here)" in format_profile(result.profile)
