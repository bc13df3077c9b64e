"""The short table the device check writes to table.txt after every stage and prints last.

It says, per phase of a training step, how far the phase is from its arithmetic floor (its
FLOPs at the measured bf16 matrix-product peak) and, from the profile, how busy the device
was; then the end-to-end rates against the project's targets for a 100k-step paper run.
"""

from __future__ import annotations

from typing import Any

RUN_STEPS = 100_000
TARGET_MINUTES = (("first target", 60), ("goal", 20), ("moonshot", 10))
"""A 100k-step run end to end within these minutes: 28, 83 and 167 env steps/s."""
REASON_LENGTH = 120
CONCURRENT_GOAL = ("4", 2.5)
"""Four runs sharing the GPU: at least 2.5 times one run's rate in all."""


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _milliseconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.4g}"


def _stage_line(name: str, stage: dict[str, Any]) -> str:
    timing = (
        f" ({stage['stage_seconds']:.0f} s of {stage['stage_limit_seconds']:.0f})"
        if "stage_seconds" in stage
        else ""
    )
    return f"{name} {stage['status']}{timing}"


def format_table(summary: dict[str, Any]) -> str:
    tests, bench, training = summary["tests"], summary["bench"], summary["training"]
    lines = [
        f"device check{' (dry run)' if summary['dry_run'] else ''}: {summary['device']}, torch "
        f"{summary['torch']}, Python {summary['python']}, {summary['elapsed_seconds']:.0f} s "
        f"of a {summary['budget_seconds']:.0f} s budget"
        + ("" if summary.get("complete") else " (not complete)"),
        "stages: " + ", ".join(_stage_line(name, summary[name]) for name in summary["stages"]),
    ]
    lines += _tests_lines(tests)
    lines += _bench_lines(bench)
    lines += _training_lines(training)
    return "\n".join(lines)


def _tests_lines(tests: dict[str, Any]) -> list[str]:
    counts = ", ".join(f"{n} {word}" for word, n in tests.get("counts", {}).items())
    lines = [f"tests: {tests['status']}" + (f" ({counts})" if counts else "")]
    bad = [
        name
        for name, outcome in tests.get("outcomes", {}).items()
        if outcome in ("failed", "error")
    ]
    lines += [f"  {tests['outcomes'][name]}: {name}" for name in bad]
    if "error" in tests and not bad:
        lines.append(f"  {tests['error']}")
    return lines


def _bench_lines(bench: dict[str, Any]) -> list[str]:
    lines = [f"bench: {bench['status']}"]
    if bench.get("missing"):
        lines[0] += f"; not reached: {', '.join(bench['missing'])}"
    if bench["status"] not in ("ok",) and bench.get("error"):
        lines.append(f"  {bench['error']}")
    if "phases" not in bench:
        return lines
    peak = bench["peak_tflops_bf16"]
    replay = "on the device" if bench["replay_on_device"] else "on the host"
    lines.append(
        f"  {bench['precision']}, replay {replay}; measured peaks: bf16 {_number(peak)} "
        f"TFLOP/s, fp32 {_number(bench['peak_tflops_fp32'])}"
    )
    profile = bench.get("profile") or {}
    lines.append(
        f"  {'phase':<20}{'ms':>9}{'TFLOP':>9}{'TFLOP/s':>9}{'of bf16':>8}{'floor ms':>10}"
        f"{'x floor':>9}{'busy':>7}{'kernels':>9}{'launch':>8}{'syncs':>6}"
    )
    rows = [*bench["phases"].items()]
    rows.insert(
        3, ("training step", {"seconds": bench["step_seconds"], "tflop": bench["step_tflop"]})
    )
    profiled = {"training step": "step", "act": "act_and_env"}
    for name, phase in rows:
        seconds, tflop = phase["seconds"], phase["tflop"]
        floor = tflop / peak if peak else None
        profiled_phase = profile.get(profiled.get(name, name), {})
        # The profiler slows the host, not the device: its busy time over the timed wall.
        busy_seconds = profiled_phase.get("device_busy_seconds")
        wall = seconds + (bench["train_every"] * bench["env_step_seconds"] if name == "act" else 0)
        busy = None if busy_seconds is None else busy_seconds / wall
        lines.append(
            f"  {name:<20}{_milliseconds(seconds):>9}{_number(tflop, 3):>9}"
            f"{_number(tflop / seconds, 3):>9}"
            f"{'-' if floor is None else f'{floor / seconds:.1%}':>8}"
            f"{_milliseconds(floor):>10}{_number(seconds / floor if floor else None, 3):>9}"
            f"{'-' if busy is None else f'{busy:.0%}':>7}"
            f"{_number(profiled_phase.get('kernels'), 5):>9}"
            f"{_number(_launches(profiled_phase), 5):>8}"
            f"{_number(profiled_phase.get('synchronizations'), 3):>6}"
        )
    lines.append(
        "  (x floor: time over the phase's FLOPs at the bf16 peak; busy: device busy time in the "
        "profile over the timed time (act: with its environment steps); launch: kernel and "
        "graph launches per step, or operator calls where there is no device timeline; syncs: "
        "host-device synchronisations)"
    )
    if "act_and_env" in profile:
        wall = _milliseconds(profile["act_and_env"]["wall_seconds"])
        lines.append(
            f"  acting + env (profiled, per training step): wall {wall} ms; the environment "
            f"alone {_milliseconds(bench['env_step_seconds'])} ms per env step"
        )
    lines += _loop_lines(bench)
    return lines


def _launches(phase: dict[str, Any]) -> float | None:
    kernels, graphs = phase.get("kernel_launches"), phase.get("graph_launches")
    if kernels is None:
        return phase.get("operator_calls")  # no device timeline: the operators called
    return kernels + (graphs or 0)


def _loop_lines(bench: dict[str, Any]) -> list[str]:
    lines = []
    for name, run in bench.get("loop", {}).items():
        minutes = RUN_STEPS / run["steps_per_second"] / 60
        line = (
            f"  loop {name}: {_number(run['steps_per_second'])} env steps/s, "
            f"{_number(run['updates_per_second'])} updates/s, {minutes:.3g} min per 100k steps, "
            f"peak memory {run['peak_memory_bytes'] / 1e9:.2f} GB"
        )
        if run.get("compile"):
            fallbacks = run.get("compile_fallbacks") or []
            line += (
                "; compiled"
                if run.get("compiled")
                else "; NOT compiled: fell back to eager"
                if fallbacks
                else "; nothing compiled ran"
            )
            reasons: dict[str, list[str]] = {}
            for item in fallbacks:
                reasons.setdefault(item["reason"][:REASON_LENGTH], []).append(item["function"])
            line += "".join(f" ({', '.join(names)}: {why})" for why, names in reasons.items())
        if run.get("stopped_by"):
            line += f"; stopped by {run['stopped_by']} after {run['steps']} timed steps"
        lines.append(line)
    concurrent = bench.get("concurrent", {})
    if concurrent:
        lines.append(
            "  concurrent runs: "
            + ", ".join(
                f"{count} -> {_number(entry['aggregate_steps_per_second'])} env steps/s in all"
                + (
                    ""
                    if entry["speedup_over_one_run"] is None
                    else f" ({entry['speedup_over_one_run']:.2f}x one run)"
                )
                for count, entry in concurrent.items()
            )
        )
    rates = {name: run["steps_per_second"] for name, run in bench.get("loop", {}).items()}
    if rates:
        best_name = max(rates, key=rates.get)
        best = rates[best_name]
        verdicts = ", ".join(
            f"{label} <= {minutes} min (>= {RUN_STEPS / minutes / 60:.0f}/s) "
            f"{'met' if best >= RUN_STEPS / minutes / 60 else 'not met'}"
            for label, minutes in TARGET_MINUTES
        )
        lines.append(
            f"  targets, best loop ({best_name}, {RUN_STEPS / best / 60:.3g} min per 100k): "
            + verdicts
        )
    count, goal = CONCURRENT_GOAL
    if count in concurrent and concurrent[count]["speedup_over_one_run"] is not None:
        speedup = concurrent[count]["speedup_over_one_run"]
        lines.append(
            f"  {count} runs at once: {speedup:.2f}x one run, goal >= {goal}x "
            f"{'met' if speedup >= goal else 'not met'}"
        )
    peak = bench.get("peak_tflops_bf16")
    if peak:
        floor_minutes = RUN_STEPS * bench["step_tflop"] / peak / 60
        lines.append(
            f"  arithmetic floor: {floor_minutes:.3g} min per 100k steps "
            f"({_number(bench['step_tflop'], 3)} TFLOP per step at {_number(peak)} TFLOP/s)"
        )
    return lines


def _training_lines(training: dict[str, Any]) -> list[str]:
    if "games" not in training:
        reason = f" ({training['reason']})" if "reason" in training else ""
        return [f"training: {training['status']}{reason}"]
    lines = [
        f"training (preset {training['preset']}, {training['concurrent_runs']} at once, "
        f"{training['seconds']:.0f} s): {training['status']}",
        f"  {'game':<10}{'steps':>8}{'updates':>9}{'env steps/s':>13}{'updates/s':>11}"
        f"{'episodes':>10}  returns",
    ]
    for game, run in training["games"].items():
        returns = " ".join(f"{value:g}" for value in run["episode_returns"][-5:])
        lines.append(
            f"  {game:<10}{run['last_logged_step']:>8}{run['updates']:>9}"
            f"{_number(run['env_steps_per_second']):>13}{_number(run['updates_per_second']):>11}"
            f"{run['episodes']:>10}  {returns or '-'}"
            + ("" if "error" not in run else f"  ({run['status']}: {run['error']})")
        )
    lines.append(
        f"  {'in all':<10}{'':>17}{_number(training['aggregate_env_steps_per_second']):>13}"
    )
    return lines
