"""The benchmark's figures, the JSON object `--json` writes, and the table it prints."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, fields

from storm_wm.benchmark.phases import TRAINING_PHASES
from storm_wm.benchmark.profile import format_profile
from storm_wm.measure import MatmulPeak


@dataclass
class PhaseResult:
    """One phase: its timed repetitions, its FLOPs (one pass counted) and its peak memory."""

    samples: list[float]
    """Seconds of each timed repetition."""
    flops: int
    peak_memory_bytes: int

    @property
    def seconds(self) -> float:
        """The median: on a shared machine one slow repetition must not move the figure."""
        return statistics.median(self.samples)

    @property
    def tflop(self) -> float:
        return self.flops / 1e12

    def to_dict(self, peak_tflops: float) -> dict:
        return {
            "seconds": self.seconds,
            "seconds_samples": self.samples,
            "tflop": self.tflop,
            "tflops": self.tflop / self.seconds,
            "fraction_of_peak": self.tflop / self.seconds / peak_tflops,
            # The phase's time at the peak: how far it is from its arithmetic floor.
            "floor_seconds": self.tflop / peak_tflops,
            "peak_memory_bytes": self.peak_memory_bytes,
        }


@dataclass
class BenchResult:
    """Everything one `storm-wm bench` run measured, and what it was measured on.

    The fields are the JSON object's keys, in its order; those not passed in are derived from
    the others when the result is made.
    """

    command: str
    date: str
    preset: str
    game: str
    num_actions: int
    device: str
    device_name: str
    precision: str
    torch_version: str
    cpu: dict
    repeats: int
    warmup: int
    load_average_start: list[float]
    load_average_end: list[float]
    step_seconds: float = field(init=False)
    """A training step: the sum of the three phases' median times."""
    step_tflop: float = field(init=False)
    step_tflops: float = field(init=False)
    fraction_of_peak: float = field(init=False)
    """Of the peak of the precision the step ran in."""
    peak_precision: str = field(init=False)
    peak_tflops_bf16: float = field(init=False)
    peak_tflops_fp32: float = field(init=False)
    peak_matmul: dict[str, MatmulPeak]
    """Matrix-product peaks by precision: "fp32", "bf16"."""
    phases: dict[str, PhaseResult]
    """The three training phases and "act" (one policy step of one environment)."""
    env_step_seconds: float
    env_steps_per_second: float = field(init=False)
    train_every: int
    interaction_seconds_per_update: float = field(init=False)
    """Acting plus environment steps between two training steps (`train_every` of each)."""
    interaction_fraction_of_step: float = field(init=False)
    replay_frames: int
    replay_bytes: int
    replay_on_device: bool
    """Whether the phases' replay was mirrored on the device, as training places it."""
    peak_rss_bytes: int
    notes: list[str]
    planned: list[str]
    """The measurements asked for, in the order they are made: phases, profile, loop VARIANT,
    concurrent N."""
    measured: list[str]
    """Those done so far: a run stopped part-way lacks the rest."""
    profile: dict | None = None
    """The profile's summary (benchmark/profile.py); None when not asked for."""
    end_to_end: dict | None = None
    """The real training loop's rates by variant and by number of concurrent runs
    (benchmark/end_to_end.py); None when not asked for."""

    def __post_init__(self) -> None:
        training = [self.phases[name] for name in TRAINING_PHASES]
        self.step_seconds = sum(phase.seconds for phase in training)
        self.step_tflop = sum(phase.tflop for phase in training)
        self.step_tflops = self.step_tflop / self.step_seconds
        self.fraction_of_peak = self.step_tflops / self.peak_tflops
        self.peak_precision = self.precision
        self.peak_tflops_bf16 = self.peak_matmul["bf16"].tflops
        self.peak_tflops_fp32 = self.peak_matmul["fp32"].tflops
        self.env_steps_per_second = 1.0 / self.env_step_seconds
        act_and_env = self.phases["act"].seconds + self.env_step_seconds
        self.interaction_seconds_per_update = self.train_every * act_and_env
        self.interaction_fraction_of_step = self.interaction_seconds_per_update / self.step_seconds

    @property
    def peak_tflops(self) -> float:
        """The peak the step is held against: that of the precision it ran in."""
        return self.peak_matmul[self.precision].tflops

    def to_dict(self) -> dict:
        figures = {item.name: getattr(self, item.name) for item in fields(self)}
        figures["peak_matmul"] = {name: vars(peak) for name, peak in self.peak_matmul.items()}
        figures["phases"] = {
            name: phase.to_dict(self.peak_tflops) for name, phase in self.phases.items()
        }
        return figures


def _gigabytes(count: int) -> str:
    return f"{count / 1e9:.2f} GB"


def _row(name: str, seconds: float, tflop: float, peak: float, memory: str) -> str:
    achieved = tflop / seconds
    return (
        f"  {name:<22}{seconds:>10.4g}{tflop:>10.4g}{achieved:>10.4g}"
        f"{achieved / peak:>10.1%}{memory:>12}"
    )


def _phase_row(name: str, phase: PhaseResult, peak: float) -> str:
    return _row(name, phase.seconds, phase.tflop, peak, _gigabytes(phase.peak_memory_bytes))


def _peak(name: str, peak: MatmulPeak, threads: str) -> str:
    return f"{name} {peak.tflops:.4g} TFLOP/s ({peak.size}^2, best of {peak.repeats}{threads})"


def _numbers(values: list[float]) -> str:
    return " ".join(f"{value:g}" for value in values)


def format_table(result: BenchResult) -> str:
    cpu = result.cpu
    threads = f", {cpu['torch_threads']} threads" if result.device == "cpu" else ""
    peak, precision = result.peak_tflops, result.precision
    lines = [
        f"storm-wm bench: preset {result.preset}, game {result.game} ({result.num_actions} "
        f"actions), device {result.device} ({result.device_name}), precision {precision}, "
        f"torch {result.torch_version}",
        f"cpu: {cpu['model']}, {cpu['logical_cores']} logical cores, {cpu['torch_threads']} "
        f"torch threads, flags: {' '.join(cpu['flags']) or 'none of note'}, native bf16: "
        f"{'yes' if cpu['native_bf16'] else 'no'}",
        f"load average (1/5/15 min) at start: {_numbers(result.load_average_start)}, at end: "
        f"{_numbers(result.load_average_end)}",
        "matrix-product peak: "
        + ", ".join(_peak(name, value, threads) for name, value in result.peak_matmul.items()),
        f"medians of {result.repeats} repetitions after {max(1, result.warmup)} warm-up "
        f"pass(es); fraction of the {precision} peak",
        "",
        f"  {'phase':<22}{'time s':>10}{'TFLOP':>10}{'TFLOP/s':>10}{'of peak':>10}"
        f"{'peak memory':>12}",
    ]
    lines += [_phase_row(name, result.phases[name], peak) for name in TRAINING_PHASES]
    lines.append(_row("training step", result.step_seconds, result.step_tflop, peak, ""))
    lines.append(_phase_row("act (1 env)", result.phases["act"], peak))
    lines += [
        "",
        f"environment {result.game}: {result.env_steps_per_second:.4g} steps/s "
        f"({result.env_step_seconds * 1e3:.3g} ms per step)",
        f"interaction per training step ({result.train_every} x (act + env step)): "
        f"{result.interaction_seconds_per_update:.4g} s = "
        f"{result.interaction_fraction_of_step:.1%} of a training step",
        f"replay buffer: {result.replay_frames:,} frames as uint8, "
        f"{_gigabytes(result.replay_bytes)}"
        f"{', mirrored on the device' if result.replay_on_device else ''}; process peak "
        f"resident memory {_gigabytes(result.peak_rss_bytes)}",
    ]
    lines += _end_to_end_lines(result.end_to_end)
    if result.profile is not None:
        lines += ["", *format_profile(result.profile)]
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines)


def _end_to_end_lines(figures: dict | None) -> list[str]:
    if not figures:
        return []
    lines = [
        "",
        f"training loop end to end (acting, environment, updates, logging, checkpoints every "
        f"{figures['checkpoint_every']} steps), steps {figures['timed_from_step']}.."
        f"{figures['last_step']} after {figures['random_warmup_steps']} random steps:",
    ]
    for name, run in figures["variants"].items():
        lines.append(
            f"  {name:<10}{run['steps_per_second']:>10.4g} env steps/s"
            f"{run['updates_per_second']:>10.4g} updates/s  "
            f"{run['hours_per_100k_steps']:.3g} h per 100k steps, peak memory "
            f"{_gigabytes(run['peak_memory_bytes'])} ({run['peak_memory_kind']})"
        )
        lines += [
            f"    fell back to eager: {fallback['function']} ({fallback['reason']})"
            for fallback in run.get("compile_fallbacks", [])
        ]
        if run.get("stopped_by"):
            lines.append(f"    stopped by {run['stopped_by']}: timed to step {run['last_step']}")
    for count, entry in figures["concurrent"].items():
        speedup = entry["speedup_over_one_run"]
        lines.append(
            f"  {count} concurrent run(s): {entry['aggregate_steps_per_second']:.4g} env steps/s "
            "in all" + (f", {speedup:.2f}x one run" if speedup is not None else "")
        )
    return lines
