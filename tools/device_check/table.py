"""The short table the device check prints last (and writes to table.txt)."""

from __future__ import annotations

from typing import Any


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def format_table(summary: dict[str, Any]) -> str:
    tests, bench, training = summary["tests"], summary["bench"], summary["training"]
    counts = ", ".join(f"{n} {word}" for word, n in tests.get("counts", {}).items())
    lines = [
        f"device check{' (dry run)' if summary['dry_run'] else ''}: {summary['device']}, torch "
        f"{summary['torch']}, {summary['elapsed_seconds']:.0f} s",
        f"tests: {tests['status']}" + (f" ({counts})" if counts else ""),
    ]
    if "step_seconds" in bench:
        loop = ", ".join(
            f"{name} {_number(run['steps_per_second'])} env steps/s "
            f"({run['peak_memory_bytes'] / 1e9:.2f} GB)"
            for name, run in bench["loop"].items()
        )
        shared = ", ".join(
            f"{count} runs {_number(entry['aggregate_steps_per_second'])}"
            for count, entry in bench["concurrent"].items()
        )
        lines += [
            f"bench: training step {_number(bench['step_seconds'])} s in {bench['precision']}, "
            f"{bench['fraction_of_peak']:.1%} of the peak; measured bf16 peak "
            f"{_number(bench['peak_tflops_bf16'])} TFLOP/s",
            f"bench loop: {loop or 'not run'}"
            + (f"; in all: {shared} env steps/s" if shared else ""),
        ]
    if bench["status"] != "ok":
        lines.append(f"bench: {bench['status']}: {bench.get('error', '')}")
    lines += [
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
    return "\n".join(lines)
