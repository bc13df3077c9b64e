"""The benchmark's figures, and the JSON object `--json` writes."""

from __future__ import annotations

from dataclasses import dataclass, field

from storm_wm.benchmark.phases import TRAINING_PHASES
from storm_wm.measure.peak import MatmulPeak
from storm_wm.measure.timing import median


@dataclass
class PhaseResult:
    """One phase: its timed repetitions, its FLOPs (one pass counted) and its peak memory."""

    samples: list[float]
    """Seconds of each timed repetition."""
    flops: int
    peak_memory_bytes: int

    @property
    def seconds(self) -> float:
        return median(self.samples)

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
    """Everything one `storm-wm bench` run measured, and what it was measured on."""

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
    peaks: dict[str, MatmulPeak]
    """Matrix-product peaks by precision: "fp32", "bf16"."""
    phases: dict[str, PhaseResult]
    """The three training phases and "act" (one policy step of one environment)."""
    env_step_seconds: float
    train_every: int
    replay_frames: int
    replay_bytes: int
    peak_rss_bytes: int
    replay_on_device: bool = False
    """Whether the phases' replay was mirrored on the device, as training places it."""
    notes: list[str] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)
    """The measurements asked for, in the order they are made: phases, profile, loop VARIANT,
    concurrent N."""
    measured: list[str] = field(default_factory=list)
    """Those done so far: a run stopped part-way lacks the rest."""
    profile: dict | None = None
    """The profile's summary (benchmark/profile.py); None when not asked for."""
    end_to_end: dict | None = None
    """The real training loop's rates by variant and by number of concurrent runs
    (benchmark/end_to_end.py); None when not asked for."""

    @property
    def step_seconds(self) -> float:
        """A training step: the sum of the three phases' median times."""
        return sum(self.phases[name].seconds for name in TRAINING_PHASES)

    @property
    def step_tflop(self) -> float:
        return sum(self.phases[name].tflop for name in TRAINING_PHASES)

    @property
    def peak_tflops(self) -> float:
        """The peak the step is held against: that of the precision it ran in."""
        return self.peaks[self.precision].tflops

    @property
    def fraction_of_peak(self) -> float:
        return self.step_tflop / self.step_seconds / self.peak_tflops

    @property
    def interaction_seconds_per_update(self) -> float:
        """Acting plus environment steps between two training steps (`train_every` of each)."""
        return self.train_every * (self.phases["act"].seconds + self.env_step_seconds)

    @property
    def interaction_fraction_of_step(self) -> float:
        return self.interaction_seconds_per_update / self.step_seconds

    def to_dict(self) -> dict:
        peak = self.peak_tflops
        return {
            "command": self.command,
            "date": self.date,
            "preset": self.preset,
            "game": self.game,
            "num_actions": self.num_actions,
            "device": self.device,
            "device_name": self.device_name,
            "precision": self.precision,
            "torch_version": self.torch_version,
            "cpu": self.cpu,
            "repeats": self.repeats,
            "warmup": self.warmup,
            "load_average_start": self.load_average_start,
            "load_average_end": self.load_average_end,
            "step_seconds": self.step_seconds,
            "step_tflop": self.step_tflop,
            "step_tflops": self.step_tflop / self.step_seconds,
            "fraction_of_peak": self.fraction_of_peak,
            "peak_precision": self.precision,
            "peak_tflops_bf16": self.peaks["bf16"].tflops,
            "peak_tflops_fp32": self.peaks["fp32"].tflops,
            "peak_matmul": {name: vars(value) for name, value in self.peaks.items()},
            "phases": {name: phase.to_dict(peak) for name, phase in self.phases.items()},
            "env_step_seconds": self.env_step_seconds,
            "env_steps_per_second": 1.0 / self.env_step_seconds,
            "train_every": self.train_every,
            "interaction_seconds_per_update": self.interaction_seconds_per_update,
            "interaction_fraction_of_step": self.interaction_fraction_of_step,
            "replay_frames": self.replay_frames,
            "replay_bytes": self.replay_bytes,
            "replay_on_device": self.replay_on_device,
            "peak_rss_bytes": self.peak_rss_bytes,
            "notes": self.notes,
            "planned": self.planned,
            "measured": self.measured,
            "profile": self.profile,
            "end_to_end": self.end_to_end,
        }
