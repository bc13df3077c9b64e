"""One benchmark run: peaks, the three training phases, acting, the environment, memory."""

from __future__ import annotations

import datetime
from collections.abc import Callable

import numpy as np
import torch

from storm_wm.benchmark.end_to_end import LoopSettings, run_end_to_end
from storm_wm.benchmark.environment import environment_step_seconds
from storm_wm.benchmark.machine import (
    PeakMemory,
    cpu_description,
    device_description,
    load_average,
)
from storm_wm.benchmark.phases import (
    TRAINING_PHASES,
    ActingStep,
    TrainingWorkload,
    replay_bytes,
)
from storm_wm.benchmark.profile import profile_phases
from storm_wm.benchmark.results import BenchResult, PhaseResult
from storm_wm.config import Config
from storm_wm.envs import make_env
from storm_wm.measure.flops import count_flops
from storm_wm.measure.peak import matmul_peak, precision_name
from storm_wm.measure.timing import timed

PEAK_DTYPES = (torch.float32, torch.bfloat16)

ACT_REPEATS_PER_REPEAT = 10
"""An acting step is short: time ten of them per requested repetition for a steady median."""


def _quiet(message: str) -> None:
    pass


class _PhaseRecorder:
    """Runs a phase in the three ways a pass needs: FLOP-counted, untimed, or timed."""

    def __init__(self, device: torch.device, memory: PeakMemory) -> None:
        self.device = device
        self.memory = memory
        self.samples: dict[str, list[float]] = {}
        self.flops: dict[str, int] = {}
        self.peak_memory: dict[str, int] = {}

    def run(self, name: str, function: Callable[[], object], kind: str) -> float:
        """kind: "count" (first warm-up pass), "warmup" or "timed"; returns seconds taken."""
        self.memory.reset()
        if kind == "count":
            (_, self.flops[name]), seconds = timed(lambda: count_flops(function), self.device)
        else:
            _, seconds = timed(function, self.device)
        if kind == "timed":
            self.samples.setdefault(name, []).append(seconds)
            self.peak_memory[name] = max(self.peak_memory.get(name, 0), self.memory.read())
        return seconds

    def result(self, name: str) -> PhaseResult:
        return PhaseResult(self.samples[name], self.flops[name], self.peak_memory[name])


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


def _pass_kinds(warmup: int, repeats: int) -> list[str]:
    """At least one untimed pass, which also counts the FLOPs, then the rest of the warm-up."""
    return ["count"] + ["warmup"] * (max(1, warmup) - 1) + ["timed"] * repeats


def _time_training_phases(
    workload: TrainingWorkload,
    recorder: _PhaseRecorder,
    kinds: list[str],
    log: Callable[[str], None],
) -> None:
    """Runs whole training steps, phase by phase in training's order, one per pass kind."""
    labels = {"count": "warm-up, counting FLOPs", "warmup": "warm-up", "timed": "timed"}
    for index, kind in enumerate(kinds):
        times = [recorder.run(name, getattr(workload, name), kind) for name in TRAINING_PHASES]
        phases = zip(TRAINING_PHASES, times, strict=True)
        log(
            f"pass {index + 1}/{len(kinds)} ({labels[kind]}): "
            + ", ".join(f"{name} {seconds:.3g} s" for name, seconds in phases)
        )


def planned_measurements(profile: bool, loop: LoopSettings | None) -> list[str]:
    """The measurements a run makes, in the order it makes them; bench.json lists those done,
    so a run stopped part-way says what it did not reach."""
    planned = ["phases", *(["profile"] if profile else [])]
    if loop is not None:
        planned += [f"loop {variant}" for variant in loop.variants]
        planned += [f"concurrent {count}" for count in loop.concurrent]
    return planned


def _loop_measurements(figures: dict) -> list[str]:
    return [f"loop {name}" for name in figures["variants"]] + [
        f"concurrent {count}" for count in figures["concurrent"]
    ]


class _ActAndStep:
    """One acting step and the environment step it chooses, `train_every` times: what a
    training step's environment steps cost, for the profile."""

    def __init__(self, acting: ActingStep, env, train_every: int) -> None:
        self.acting, self.env, self.train_every = acting, env, train_every
        self.env.reset()

    def __call__(self) -> None:
        for _ in range(self.train_every):
            action = int(self.acting.act()[0])
            _, _, terminated, truncated, _ = self.env.step(action)
            if terminated or truncated:
                self.env.reset()


def run_benchmark(
    config: Config,
    device: torch.device,
    dtype: torch.dtype,
    *,
    repeats: int,
    warmup: int,
    profile_steps: int = 0,
    command: str = "storm-wm bench",
    log: Callable[[str], None] = _quiet,
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
    recorder = _PhaseRecorder(device, memory)
    _time_training_phases(workload, recorder, _pass_kinds(warmup, repeats), log)
    log("timing the acting step")
    acting = ActingStep(workload)
    for kind in _pass_kinds(warmup, repeats * ACT_REPEATS_PER_REPEAT):
        recorder.run("act", acting.act, kind)

    log("timing the environment")
    env_step_seconds = environment_step_seconds(env, rng)

    result = BenchResult(
        command=command,
        date=date,
        preset=config.preset,
        game=config.env.game,
        num_actions=num_actions,
        device=str(device),
        device_name=device_description(device),
        precision=precision_name(dtype),
        torch_version=torch.__version__,
        cpu=cpu,
        repeats=repeats,
        warmup=warmup,
        load_average_start=load_start,
        load_average_end=load_average(),
        peaks=peaks,
        phases={name: recorder.result(name) for name in (*TRAINING_PHASES, "act")},
        env_step_seconds=env_step_seconds,
        train_every=config.train.train_every,
        replay_frames=workload.replay.capacity,
        replay_bytes=replay_bytes(workload.replay),
        replay_on_device=workload.replay.device is not None,
        peak_rss_bytes=memory.process_peak(),
        notes=notes,
        planned=planned_measurements(profile_steps > 0, loop),
        measured=["phases"],
    )
    on_figures(result)

    if profile_steps > 0:
        log(f"profiling {profile_steps} whole training step(s) and their environment steps")
        phases = {name: getattr(workload, name) for name in TRAINING_PHASES}
        phases["act_and_env"] = _ActAndStep(acting, env, config.train.train_every)
        try:
            result.profile = profile_phases(phases, device, profile_steps)
            result.measured.append("profile")
        except Exception as error:  # a profiler that fails here must not cost the loop's figures
            reason = (str(error).strip().splitlines() or [""])[0][:300]
            result.profile = {"error": f"{type(error).__name__}: {reason}"}
            log(f"the profile failed ({result.profile['error']}); going on without it")
        result.load_average_end = load_average()
        on_figures(result)
        del phases
    env.close()
    del workload, acting  # the loop's runs build their own models and replay
    if device.type == "cuda":
        torch.cuda.empty_cache()  # room for the concurrent runs' processes
    if loop is not None:

        def progress(figures: dict) -> None:
            result.end_to_end = figures
            before_loop = [name for name in result.measured if name in ("phases", "profile")]
            result.measured = [*before_loop, *_loop_measurements(figures)]
            result.load_average_end = load_average()
            on_figures(result)

        result.end_to_end = run_end_to_end(
            config,
            loop,
            device,
            preset=config.preset,
            overrides=overrides or {},
            log=log,
            on_progress=progress,
        )
    return result
