"""The table `storm-wm bench` prints."""

from __future__ import annotations

from storm_wm.benchmark.phases import TRAINING_PHASES
from storm_wm.benchmark.profile import format_profile
from storm_wm.benchmark.results import BenchResult
from storm_wm.measure.peak import MatmulPeak

_HEADER = (
    "  "
    + f"{'phase':<22}"
    + "".join(
        f"{title:>{width}}"
        for title, width in (
            ("time s", 10),
            ("TFLOP", 10),
            ("TFLOP/s", 10),
            ("of peak", 10),
            ("peak memory", 12),
        )
    )
)


def _gigabytes(count: int) -> str:
    return f"{count / 1e9:.2f} GB"


def _row(name: str, seconds: float, tflop: float, peak: float, memory: str) -> str:
    achieved = tflop / seconds
    return (
        f"  {name:<22}{seconds:>10.4g}{tflop:>10.4g}{achieved:>10.4g}"
        f"{achieved / peak:>10.1%}{memory:>12}"
    )


def _peak(name: str, peak: MatmulPeak, threads: str) -> str:
    return f"{name} {peak.tflops:.4g} TFLOP/s ({peak.size}^2, best of {peak.repeats}{threads})"


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
        "load average (1/5/15 min) at start: "
        + " ".join(f"{value:g}" for value in result.load_average_start)
        + ", at end: "
        + " ".join(f"{value:g}" for value in result.load_average_end),
        "matrix-product peak: "
        + ", ".join(_peak(name, value, threads) for name, value in result.peaks.items()),
        f"medians of {result.repeats} repetitions after {max(1, result.warmup)} warm-up "
        f"pass(es); fraction of the {precision} peak",
        "",
        _HEADER,
    ]
    for name in TRAINING_PHASES:
        phase = result.phases[name]
        lines.append(
            _row(name, phase.seconds, phase.tflop, peak, _gigabytes(phase.peak_memory_bytes))
        )
    lines.append(_row("training step", result.step_seconds, result.step_tflop, peak, ""))
    act = result.phases["act"]
    lines.append(
        _row("act (1 env)", act.seconds, act.tflop, peak, _gigabytes(act.peak_memory_bytes))
    )
    lines += [
        "",
        f"environment {result.game}: {1 / result.env_step_seconds:.4g} steps/s "
        f"({result.env_step_seconds * 1e3:.3g} ms per step)",
        f"interaction per training step ({result.train_every} x (act + env step)): "
        f"{result.interaction_seconds_per_update:.4g} s = "
        f"{result.interaction_fraction_of_step:.1%} of a training step",
        f"replay buffer: {result.replay_frames:,} frames as uint8, "
        f"{_gigabytes(result.replay_bytes)}"
        f"{', mirrored on the device' if result.replay_on_device else ''}; process peak "
        "resident memory "
        f"{_gigabytes(result.peak_rss_bytes)}",
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
