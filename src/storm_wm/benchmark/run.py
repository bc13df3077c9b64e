"""One benchmark run: peaks, the three training phases, acting, the environment, memory."""

from __future__ import annotations

import datetime
import functools
import time
from collections.abc import Callable, Iterable

import gymnasium
import numpy as np
import torch

from storm_wm.benchmark.end_to_end import LoopSettings, run_end_to_end
from storm_wm.benchmark.machine import PeakMemory, cpu_description, load_average
from storm_wm.benchmark.phases import TRAINING_PHASES, ActingStep, TrainingWorkload
from storm_wm.benchmark.profile import profile_phases
from storm_wm.benchmark.results import BenchResult, PhaseResult
from storm_wm.config import Config
from storm_wm.envs import make_env
from storm_wm.measure import count_flops, matmul_peak, precision_name, timed
from storm_wm.replay import ReplayBuffer

PEAK_DTYPES = (torch.float32, torch.bfloat16)

ACT_REPEATS_PER_REPEAT = 10
"""An acting step is short: time ten of them per requested repetition for a steady median."""

_PASS_LABELS = {"count": "warm-up, counting FLOPs", "warmup": "warm-up", "timed": "timed"}


def _measure_phases(
    phases: dict[str, Callable[[], object]],
    device: torch.device,
    memory: PeakMemory,
    warmup: int,
    repeats: int,
    log: Callable[[str], None] | None = None,
) -> dict[str, PhaseResult]:
    """Runs the phases in order, once per pass: at least one untimed pass, which also counts
    the FLOPs, then the rest of the warm-up, then `repeats` timed passes. With `log`, each
    pass's times are logged."""
    kinds = ["count"] + ["warmup"] * (max(1, warmup) - 1) + ["timed"] * repeats
    results = {name: PhaseResult(samples=[], flops=0, peak_memory_bytes=0) for name in phases}
    for index, kind in enumerate(kinds):
        times = []
        for name, function in phases.items():
            result = results[name]
            memory.reset()
            if kind == "count":
                (_, result.flops), seconds = timed(functools.partial(count_flops, function), device)
            else:
                _, seconds = timed(function, device)
            if kind == "timed":
                result.samples.append(seconds)
                result.peak_memory_bytes = max(result.peak_memory_bytes, memory.read())
            times.append(f"{name} {seconds:.3g} s")
        if log is not None:
            log(f"pass {index + 1}/{len(kinds)} ({_PASS_LABELS[kind]}): " + ", ".join(times))
    return results


def _step_env(env: gymnasium.Env, action: int) -> None:
    """One environment step, and a reset at an episode's end, as training pays for them."""
    _, _, terminated, truncated, _ = env.step(action)
    if terminated or truncated:
        env.reset()


def _act_and_step(acting: ActingStep, env: gymnasium.Env, train_every: int) -> None:
    """What a training step's environment steps cost: `train_every` acting steps and the
    environment steps they choose."""
    for _ in range(train_every):
        _step_env(env, int(acting.act()[0]))


def environment_step_seconds(
    env: gymnasium.Env, rng: np.random.Generator, seconds: float = 1.0, min_steps: int = 50
) -> float:
    """Mean seconds per random-action step over about `seconds` of stepping (at least
    `min_steps`), resets included."""
    env.reset()
    steps, start = 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - start < seconds:
        _step_env(env, int(rng.integers(0, env.action_space.n)))
        steps += 1
    return (time.perf_counter() - start) / steps


def _notes(device: torch.device, dtype: torch.dtype, cpu: dict) -> list[str]:
    if device.type != "cpu" or cpu["native_bf16"]:
        return []
    notes = [
        "this CPU has no AMX or AVX512-BF16: PyTorch emulates bf16 matrix products, far "
        "slower than fp32, so --precision auto trains in fp32 here and the step is held "
        "against the fp32 peak"
    ]
    if dtype == torch.bfloat16:
        notes.append("--precision bf16 was forced on a CPU that emulates it: expect it slow")
    return notes


def _loop_measurements(variants: Iterable[str], counts: Iterable[object]) -> list[str]:
    return [f"loop {name}" for name in variants] + [f"concurrent {count}" for count in counts]


def planned_measurements(profile: bool, loop: LoopSettings | None) -> list[str]:
    """The measurements a run makes, in the order it makes them; bench.json lists those done,
    so a run stopped part-way says what it did not reach."""
    planned = ["phases", *(["profile"] if profile else [])]
    if loop is not None:
        planned += _loop_measurements(loop.variants, loop.concurrent)
    return planned


def run_benchmark(
    config: Config,
    device: torch.device,
    dtype: torch.dtype,
    *,
    repeats: int,
    warmup: int,
    profile_steps: int = 0,
    command: str = "storm-wm bench",
    log: Callable[[str], None] = lambda message: None,
    loop: LoopSettings | None = None,
    overrides: dict[str, str] | None = None,
    on_figures: Callable[[BenchResult], None] = lambda result: None,
) -> BenchResult:
    """Times each phase of a training step at `config` on `device` in `dtype` (see BenchResult).

    The most telling figures come first: the phases (and their FLOPs and the peaks), then with
    `profile_steps` a profile of that many whole steps (benchmark/profile.py), then with `loop`
    the real training loop end to end (benchmark/end_to_end.py); `overrides` (with
    `config.preset`) rebuild `config` in the concurrent runs' processes. `on_figures` receives
    the result after the phases and again after each later measurement, so a run stopped
    part-way (a time limit) leaves what it measured.
    """
    load_start = load_average()
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    env = make_env(config.env, seed=config.seed)
    num_actions = int(env.action_space.n)
    cpu = cpu_description()
    notes = _notes(device, dtype, cpu)
    for note in notes:
        log(f"note: {note}")

    log("measuring the fp32 and bf16 matrix-product peaks")
    peaks = {precision_name(kind): matmul_peak(device, kind) for kind in PEAK_DTYPES}

    memory = PeakMemory(device)
    log(f"building the models and filling a {config.train.replay_capacity:,}-frame replay buffer")
    workload = TrainingWorkload(config, num_actions, device, dtype)
    training = {name: getattr(workload, name) for name in TRAINING_PHASES}
    phases = _measure_phases(training, device, memory, warmup, repeats, log)
    log("timing the acting step")
    acting = ActingStep(workload)
    act_repeats = repeats * ACT_REPEATS_PER_REPEAT
    phases |= _measure_phases({"act": acting.act}, device, memory, warmup, act_repeats)

    log("timing the environment")
    env_step_seconds = environment_step_seconds(env, rng)

    replay = workload.replay
    result = BenchResult(
        command=command,
        date=date,
        preset=config.preset,
        game=config.env.game,
        num_actions=num_actions,
        device=str(device),
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        precision=precision_name(dtype),
        torch_version=torch.__version__,
        cpu=cpu,
        repeats=repeats,
        warmup=warmup,
        load_average_start=load_start,
        load_average_end=load_average(),
        peak_matmul=peaks,
        phases=phases,
        env_step_seconds=env_step_seconds,
        train_every=config.train.train_every,
        replay_frames=replay.capacity,
        replay_bytes=ReplayBuffer.bytes_needed(replay.capacity, replay.frames.shape[1:]),
        replay_on_device=replay.device is not None,
        peak_rss_bytes=memory.process_peak(),
        notes=notes,
        planned=planned_measurements(profile_steps > 0, loop),
        measured=["phases"],
    )
    on_figures(result)

    if profile_steps > 0:
        log(f"profiling {profile_steps} whole training step(s) and their environment steps")
        act_and_env = functools.partial(_act_and_step, acting, env, config.train.train_every)
        env.reset()
        try:
            result.profile = profile_phases(
                {**training, "act_and_env": act_and_env}, device, profile_steps
            )
            result.measured.append("profile")
        except Exception as error:  # a profiler that fails here must not cost the loop's figures
            reason = (str(error).strip().splitlines() or [""])[0][:300]
            result.profile = {"error": f"{type(error).__name__}: {reason}"}
            log(f"the profile failed ({result.profile['error']}); going on without it")
        result.load_average_end = load_average()
        on_figures(result)
        del act_and_env
    env.close()
    del workload, replay, acting, training  # the loop's runs build their own models and replay
    if device.type == "cuda":
        torch.cuda.empty_cache()  # room for the concurrent runs' processes
    if loop is not None:

        def progress(figures: dict) -> None:
            result.end_to_end = figures
            before_loop = [name for name in result.measured if name in ("phases", "profile")]
            loop_done = _loop_measurements(figures["variants"], figures["concurrent"])
            result.measured = [*before_loop, *loop_done]
            result.load_average_end = load_average()
            on_figures(result)

        result.end_to_end = run_end_to_end(
            config, loop, device, overrides=overrides or {}, log=log, on_progress=progress
        )
    return result
