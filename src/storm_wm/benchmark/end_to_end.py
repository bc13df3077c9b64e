"""End-to-end speed: environment steps per second of the real training loop, everything included.

Each variant (eager, compiled) is a real `storm-wm train` run in this process, on the preset's
models and environment: the random warm-up steps, then `warmup` more steps with updates (where
compilation, the allocator and the caches settle), then `steps` timed steps of acting, the
environment, updates, metric logging and checkpoints (written as training writes them). The
rate is read from the run's own metrics.jsonl (benchmark/run_metrics.py), so it is the figure a
user's run logs. A compiled variant records what became of each compiled function
(`compilation.RECORDS`): one that fell back to eager says so, with the reason, instead of
passing for compiled. A run stopped by a signal (a time limit's SIGTERM) keeps the rate of its
shorter window and ends the measurements with an error.

With `concurrent` counts, that many runs are started at once as separate `storm-wm train`
processes sharing the device (seeds 1..N), and their aggregate rate is the sum of each run's
rate over its own timed window: the runs start together and do the same work, so the windows
overlap.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from storm_wm.benchmark.machine import PeakMemory
from storm_wm.benchmark.run_metrics import window_rate
from storm_wm.config import Config
from storm_wm.errors import StormError
from storm_wm.launch import last_line, storm_wm_argv
from storm_wm.logs.records import records

VARIANTS: dict[str, bool] = {"eager": False, "compiled": True}
"""Variant name -> train.compile."""


@dataclass(frozen=True)
class LoopSettings:
    steps: int
    """Environment steps timed, after the warm-ups."""
    warmup: int
    """Environment steps with updates run before timing starts (not timed)."""
    variants: tuple[str, ...] = tuple(VARIANTS)
    concurrent: tuple[int, ...] = ()
    """Numbers of runs to start at once for the aggregate rate (empty: none), in this order."""
    checkpoint_every: int | None = None
    """Checkpoint cadence of the loop's runs; None: half the timed steps, at most the preset's,
    so that the window holds checkpoints. A short window with two checkpoints weighs them far
    more than a run does (one every 2,500 steps at the paper's preset): give the preset's
    cadence to time the steady state alone."""


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def loop_schedule(config: Config, settings: LoopSettings) -> tuple[int, int, int]:
    """(first timed step, last step, checkpoint_every): both ends fall on logged steps."""
    train = config.train
    # Updates, and with them training-metric records, start on the step after the random ones.
    timed_from = _round_up(train.warmup_steps + settings.warmup + 1, train.log_every)
    total = _round_up(timed_from + settings.steps, train.log_every)
    checkpoint_every = settings.checkpoint_every or min(
        train.checkpoint_every, max(1, settings.steps // 2)
    )
    return timed_from, total, checkpoint_every


def _rate_figures(run_dir: Path, timed_from: int, checkpoint_every: int) -> dict[str, Any]:
    rate = window_rate(records(run_dir / "metrics.jsonl"), timed_from)
    if rate is None:
        raise StormError(
            f"the loop benchmark's run in {run_dir} logged no timed window; give more "
            "--loop-steps (at least two train.log_every intervals)"
        )
    # Checkpoints written between the window's two records: those of the steps in [first,
    # last), as the one at `first` is saved after that step's record is logged.
    checkpoints = range(
        _round_up(rate.first_step, checkpoint_every), rate.last_step, checkpoint_every
    )
    return {
        **rate.to_dict(),
        "checkpoints_in_window": len(checkpoints),
        "hours_per_100k_steps": 100_000 / rate.steps_per_second / 3600,
    }


def run_variant(
    config: Config,
    schedule: tuple[int, int, int],
    variant: str,
    device: torch.device,
    run_dir: Path,
) -> dict[str, Any]:
    """One in-process training run of `variant` on `schedule` (loop_schedule); its rate over
    the timed window, peak memory, and for a compiled variant what became of each compiled
    function."""
    from storm_wm import compilation
    from storm_wm.run.train import train

    timed_from, total, checkpoint_every = schedule
    compile_ = VARIANTS[variant]
    train_config = dataclasses.replace(
        config.train, steps=total, checkpoint_every=checkpoint_every, compile=compile_
    )
    memory = PeakMemory(device)
    memory.reset()
    first_record = len(compilation.RECORDS)
    state = train(dataclasses.replace(config, train=train_config), run_dir, show_progress=False)
    figures = {
        "compile": compile_,
        **_rate_figures(run_dir, timed_from, checkpoint_every),
        "peak_memory_bytes": memory.read(),
        "peak_memory_kind": "device" if device.type == "cuda" else "process resident",
        # A signal (a time limit's SIGTERM) ends the run early: its window is shorter.
        "stopped_by": state.stopped_by,
    }
    if compile_:
        figures.update(compile_outcome(compilation.RECORDS[first_record:]))
    return figures


def compile_outcome(records: list[dict]) -> dict[str, Any]:
    """`compiled`: every compiled function ran compiled (False if any fell back to eager, None
    if none was called); `compile_fallbacks`: each fallback's function and reason;
    `compile_records`: everything recorded, first-call (compile) seconds included."""
    fallbacks = [
        {"function": record["function"], "reason": record["reason"]}
        for record in records
        if not record["compiled"]
    ]
    return {
        "compiled": None if not records else not fallbacks,
        "compile_fallbacks": fallbacks,
        "compile_records": records,
    }


def _train_command(
    config: Config, overrides: dict[str, str], seed: int, run_dir: Path, total: int, every: int
) -> list[str]:
    options = {
        "preset": config.preset,
        "seed": seed,
        "run-dir": run_dir,
        **overrides,
        "train.steps": total,
        "train.checkpoint_every": every,
    }
    words = [word for name, value in options.items() for word in (f"--{name}", str(value))]
    return storm_wm_argv("train", "--no-progress", *words)


def shared_cpu_environment(runs: int) -> dict[str, str]:
    """The environment of one of `runs` processes sharing this machine: its share of the cores
    for PyTorch's CPU threads (unless OMP_NUM_THREADS is set), so they do not oversubscribe."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (cores or 1) // runs))
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": threads}


def run_concurrent(
    config: Config,
    schedule: tuple[int, int, int],
    overrides: dict[str, str],
    count: int,
    directory: Path,
) -> dict[str, Any]:
    """`count` training processes at once on `schedule`; each one's window rate and their
    sum."""
    timed_from, total, checkpoint_every = schedule
    runs = [directory / f"run_{seed}" for seed in range(1, count + 1)]
    processes = []
    for seed, run_dir in enumerate(runs, start=1):
        log = (directory / f"run_{seed}.log").open("w")
        command = _train_command(config, overrides, seed, run_dir, total, checkpoint_every)
        environment = shared_cpu_environment(count)
        processes.append((subprocess.Popen(command, stdout=log, stderr=log, env=environment), log))
    failures = []
    for (process, log), run_dir in zip(processes, runs, strict=True):
        code = process.wait()
        log.close()
        if code != 0:
            failures.append(
                f"{run_dir.name} exited with {code}: {last_line(log.name) or 'no output'}"
            )
    if failures:
        raise StormError(f"{count} concurrent runs: " + "; ".join(failures))
    per_run = [_rate_figures(run_dir, timed_from, checkpoint_every) for run_dir in runs]
    return {
        "runs": count,
        "aggregate_steps_per_second": sum(run["steps_per_second"] for run in per_run),
        "aggregate_updates_per_second": sum(run["updates_per_second"] for run in per_run),
        "per_run": per_run,
    }


def run_end_to_end(
    config: Config,
    settings: LoopSettings,
    device: torch.device,
    *,
    overrides: dict[str, str],
    log: Callable[[str], None],
    on_progress: Callable[[dict[str, Any]], None] = lambda figures: None,
) -> dict[str, Any]:
    """Every variant in this process, then each concurrent count, in the order given; the
    JSON's `end_to_end`.

    `on_progress` receives the figures so far after each variant and count (a caller stopped
    part-way, by a time limit, keeps what was measured)."""
    schedule = loop_schedule(config, settings)
    timed_from, total, checkpoint_every = schedule
    result: dict[str, Any] = {
        "timed_from_step": timed_from,
        "last_step": total,
        "random_warmup_steps": config.train.warmup_steps,
        "checkpoint_every": checkpoint_every,
        "log_every": config.train.log_every,
        "variants": {},
        "concurrent": {},
    }
    with tempfile.TemporaryDirectory(prefix="storm-wm-bench-loop-") as temporary:
        for variant in settings.variants:
            log(f"end to end, {variant}: training steps 0..{total}, timed from {timed_from}")
            run_dir = Path(temporary) / variant
            figures = run_variant(config, schedule, variant, device, run_dir)
            result["variants"][variant] = figures
            on_progress(result)
            if figures["stopped_by"]:
                raise StormError(
                    f"the {variant} loop was stopped by {figures['stopped_by']} at step "
                    f"{figures['last_step']}; the figures so far are kept"
                )
        for count in settings.concurrent:
            log(f"end to end, {count} concurrent run(s) sharing {device}")
            directory = Path(temporary) / f"concurrent_{count}"
            directory.mkdir()
            concurrent = result["concurrent"]
            concurrent[str(count)] = run_concurrent(config, schedule, overrides, count, directory)
            single = concurrent.get("1")
            for entry in concurrent.values():
                entry["speedup_over_one_run"] = (
                    entry["aggregate_steps_per_second"] / single["aggregate_steps_per_second"]
                    if single
                    else None
                )
            on_progress(result)
    return result
