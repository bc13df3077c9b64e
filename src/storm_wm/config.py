"""Typed, frozen configuration: one dataclass per concern, named presets that stack.

Every number of the paper lives here as a default (README, "What is implemented"); presets
change a few of them for small machines and tests. A resolved `Config` is written to each run
directory as JSON and read back by `eval`, `dream` and `--resume`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storm_wm.errors import StormError
from storm_wm.hints import command


@dataclass(frozen=True)
class EnvConfig:
    game: str = "Pong"
    """Atari name (`Pong`, `MsPacman`, any ALE game), `toy:catch`, or `gym:<id>`."""
    protocol: str = "storm"
    """`storm`: sticky actions 0.25, no no-ops (the authors'); `standard`: none, 1-30 no-ops."""
    image_size: int = 64
    """Frames are resized to image_size x image_size RGB."""
    max_episode_frames: int = 108_000
    """Episode cap in emulator frames (Atari)."""
    life_loss: str = "every"
    """Which Atari life losses set the replay's termination flag. `every`: each step on which
    the ALE's life counter falls below its previous step's value. `released`: the authors'
    wrapper, which records the lives at reset and only ever lowers that record (on games whose
    counter rises just after reset, such as Amidar, it flags fewer losses)."""


@dataclass(frozen=True)
class WorldModelConfig:
    channels: tuple[int, ...] = (32, 64, 128, 256)
    """Encoder conv channels; each conv halves the resolution (64 -> 4 with four)."""
    categoricals: int = 32
    """Number of categorical latent variables per frame."""
    classes: int = 32
    """Classes per categorical; z has categoricals x classes one-hot features."""
    hidden: int = 512
    """Transformer width (the feature h)."""
    layers: int = 2
    """Transformer blocks."""
    heads: int = 8
    """Attention heads (hidden / heads per head)."""
    feedforward: int = 1024
    """Inner width of each block's feed-forward layer."""
    dropout: float = 0.1
    """Dropout on attention weights, after the output projection and in the feed-forward."""
    max_length: int = 64
    """Length of the learned position embedding (longest sequence the transformer sees)."""
    head_hidden: int = 512
    """Width of the reward and termination heads' trunks."""
    bins: int = 255
    """Symlog two-hot bins of the reward head."""
    unimix: float = 0.01
    """Uniform mixture of the posterior and prior categoricals."""
    free_bits: float = 1.0
    """KL terms are clipped from below at this many nats (on the batch mean)."""
    dynamics_scale: float = 0.5
    """Weight of the dynamics KL, KL(stop_grad(posterior) || prior), in the world-model loss."""
    representation_scale: float = 0.1
    """Weight of the representation KL, KL(posterior || stop_grad(prior))."""
    learning_rate: float = 1e-4
    """Adam learning rate of the world model."""
    grad_clip: float = 1000.0
    """Gradient-norm clip of the world-model update."""
    batch_size: int = 16
    """Replay sequences per world-model update."""
    sequence_length: int = 64
    """Steps per replay sequence of a world-model update."""

    @property
    def latent_size(self) -> int:
        return self.categoricals * self.classes


@dataclass(frozen=True)
class AgentConfig:
    hidden: int = 512
    """Width of the actor and critic trunks."""
    bins: int = 255
    """Symlog two-hot bins of the critic."""
    gamma: float = 0.985
    """Discount of the imagined returns."""
    lambda_: float = 0.95
    """TD(lambda) mixing of the imagined returns."""
    lambda_variant: str = "paper"
    """`paper`: bootstrap from V(s_{t+1}); `released`: the authors' code, V(s_t)."""
    entropy_scale: float = 3e-4
    """Weight of the policy's entropy bonus."""
    slow_critic_decay: float = 0.98
    """slow = decay * slow + (1 - decay) * critic after every agent update."""
    return_norm_decay: float = 0.99
    """EMA decay of the return percentiles that scale the advantages."""
    return_norm_low: float = 5.0
    """Lower percentile of the batch's returns (S = EMA(P_high) - EMA(P_low))."""
    return_norm_high: float = 95.0
    """Upper percentile of the batch's returns."""
    return_norm_percentile: str = "interpolate"
    """How the batch percentiles of the returns are read: `interpolate` (linear interpolation
    between order statistics, torch.quantile) or `kthvalue` (the authors' code: the k-th
    smallest value, no interpolation)."""
    learning_rate: float = 3e-5
    """Adam learning rate of the actor and the critic."""
    adam_eps: float = 1e-5
    """Adam epsilon of the actor-critic optimizer."""
    grad_clip: float = 100.0
    """Gradient-norm clip of the actor-critic update."""
    imagination_batch: int = 1024
    """Replay windows imagined from per agent update."""
    context_length: int = 8
    """Real steps fed to the transformer before imagining."""
    horizon: int = 16
    """Imagined steps per row."""


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 100_000
    """Agent (environment) steps of the run; the score is that of the final agent."""
    warmup_steps: int = 1024
    """Uniformly random actions until the replay buffer holds this many steps."""
    train_every: int = 1
    """Environment steps between updates (one world-model and one agent update each)."""
    replay_capacity: int = 100_000
    """Replay buffer size in steps (the oldest are overwritten)."""
    act_context: int = 16
    """(frame, action) pairs of the current episode the policy conditions on."""
    act_on_posterior: bool = False
    """Act on the posterior of the frame just seen instead of the model's prior (off: authors')."""
    eval_episodes: int = 20
    """Episodes `storm-wm eval` plays by default."""
    checkpoint_every: int = 2_500
    """Environment steps between checkpoints (may change on resume, as every bookkeeping
    field: see persistence/compatibility.py)."""
    log_every: int = 250
    """Environment steps between logged training-metric averages."""
    diagnostics_every: int = 2_500
    """Environment steps between logged open-loop k-step errors of the world model on recent
    replay windows (open_loop/* in TensorBoard and metrics.jsonl); 0 turns them off."""
    video_every: int = 10_000
    """Environment steps between dream videos (real, reconstructed and imagined frames side by
    side) logged to TensorBoard under world_model/dream; 0 turns them off."""
    checkpoint_keep: int = 3
    """Newest checkpoints kept (older ones, and replay chunks only they need, go); 0 keeps all."""
    max_nonfinite_updates: int = 20
    """Updates in a row of one model with a non-finite loss (each skipped) before training stops."""
    deterministic: bool = False
    """Deterministic algorithms only, so a resumed run matches one left alone bit for bit (CPU)."""
    clear_context_on_episode_end: bool = True
    """Forget the acting context when an episode ends (the paper's acting context is the current
    episode's). The authors' code did not: its policy conditioned on the previous episode's
    last frames."""
    repeat_reset_seed: bool = False
    """Reset every training episode with the run's seed (the authors' code) instead of
    continuing the environment's seeded generator from one episode to the next."""
    eval_bookkeeping: str = "whole"
    """Default bookkeeping of `storm-wm eval`. `whole`: every episode played to its end, every
    reward counted (unbiased). `released`: the authors' eval script: 5 parallel environments,
    the first episodes to finish are kept, and an episode's final reward is carried into that
    environment's next episode."""
    replay_on_device: str = "auto"
    """Where the replay buffer's frames live for sampling: `auto` (on the training device when
    they fit), `on` (always on the training device) or `off` (host memory)."""
    compile: bool = False
    """Run the imagination rollout and the acting step through torch.compile (eager otherwise)."""
    async_checkpoints: bool = True
    """Write checkpoint files on a background thread so they never stall training."""


@dataclass(frozen=True)
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 1
    """Seed of every random generator and of the environment's first reset (0 or more)."""
    device: str = "auto"
    """`auto` picks cuda, then mps, then cpu."""
    precision: str = "auto"
    """`auto`: bf16 autocast on CUDA, fp32 on every CPU (docs/performance.md, "Precision on
    CPUs"); `bf16` or `fp32` as asked. A run prints its precision and why at its start."""
    preset: str = "atari100k"
    """The preset(s) the config was built from, `+`-stacked (a record; set with --preset)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Config:
        """The config in a file `save` wrote; a damaged file is named, with what is wrong."""
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise StormError(f"no config at {path}; is this a storm-wm run directory?") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise StormError(f"{path} is not valid JSON ({error}); restore it or retrain") from None
        except OSError as error:
            raise StormError(f"cannot read {path}: {error.strerror or error}") from None
        problems = _problems(data)
        if not problems:
            return from_dict(data)
        listed = f" (`{command('config')}` lists every field with its type and default)"
        raise StormError(
            f"{path} is damaged: {'; '.join(problems)}; correct it"
            f"{'' if 'lists every field' in problems[0] else listed} or put back the file the "
            "run wrote"
        )


def _problems(data: Any) -> list[str]:
    """Everything wrong with a saved config, first the field that cannot be read (if any), then
    the sections and fields it lacks: `save` writes them all, so a missing one means damage."""
    if not isinstance(data, dict):
        return [f"it holds a JSON {type(data).__name__}, not an object of config sections"]
    if not data:
        return ["it is empty ({})"]
    expected = Config().to_dict()
    for name, value in data.items():
        if isinstance(expected.get(name), dict) and not isinstance(value, dict):
            return [f"{name} must be an object of fields, got {value!r}"]
    problems = []
    missing = [name for name in expected if name not in data]
    try:
        from_dict(data)
    except StormError as error:
        # What is there cannot be read; or, if all is there, it is invalid (a check that fails
        # on the defaults standing in for missing sections would only mislead).
        if not missing or not str(error).startswith("invalid config"):
            problems.append(str(error))
    if missing:
        problems.append(f"it lacks {', '.join(missing)}")
    return problems


# The networks and schedule of the CPU presets (`toy`, `small`): a 1-layer transformer over
# 16 x 16 latents, narrow encoders and heads, a short imagination of 64 x (4 + 8) steps, and
# learning rates raised to match (1e-3 for the world model, 3e-4 for the agent).
CPU_WORLD_MODEL: dict[str, Any] = {
    "channels": (8, 16, 16, 16), "categoricals": 16, "classes": 16, "hidden": 128, "layers": 1,
    "heads": 4, "feedforward": 256, "head_hidden": 128, "max_length": 32, "batch_size": 8,
    "sequence_length": 16, "learning_rate": 1e-3,
}  # fmt: skip
CPU_AGENT: dict[str, Any] = {
    "hidden": 128, "imagination_batch": 64, "context_length": 4, "horizon": 8,
    "learning_rate": 3e-4,
}  # fmt: skip

# Presets stack on top of the paper's configuration (`atari100k` = the defaults).
PRESETS: dict[str, dict[str, Any]] = {
    "atari100k": {},
    "debug": {
        "world_model": {
            "channels": (8, 16, 32, 64), "categoricals": 8, "classes": 8, "hidden": 64,
            "layers": 1, "heads": 2, "feedforward": 128, "head_hidden": 64,
            "batch_size": 4, "sequence_length": 16,
        },
        "agent": {"hidden": 64, "imagination_batch": 32, "context_length": 4, "horizon": 8},
        "train": {
            "steps": 300, "warmup_steps": 100, "train_every": 4, "eval_episodes": 2,
            "checkpoint_every": 100, "log_every": 50, "replay_capacity": 10_000,
            "diagnostics_every": 150, "video_every": 300,
        },
        "env": {"max_episode_frames": 800},
    },
    # The authors' released code, behaviour by behaviour (stack it: atari100k+released).
    "released": {
        "env": {"life_loss": "released"},
        "agent": {"lambda_variant": "released", "return_norm_percentile": "kthvalue"},
        "train": {
            "clear_context_on_episode_end": False, "repeat_reset_seed": True,
            "eval_bookkeeping": "released",
        },
    },
    "toy": {
        # Sized so that toy:catch is learned within minutes on a 2-core CPU: smaller networks,
        # faster learning rates, and a larger entropy bonus (the returns of catch lie in [0, 1],
        # so the advantages are small next to 3e-4 of entropy in the paper's setting).
        "env": {"game": "toy:catch"},
        "world_model": CPU_WORLD_MODEL,
        "agent": {**CPU_AGENT, "entropy_scale": 1e-3},
        "train": {
            "steps": 2_800, "warmup_steps": 300, "train_every": 1, "eval_episodes": 20,
            "checkpoint_every": 1_000, "log_every": 100, "replay_capacity": 10_000,
        },
    },
    # STORM for a CPU: 30,000 steps of it run in about 46 minutes on 2 cores, and the whole
    # agent learned Boxing on 2 of 3 seeds (docs/results.md). Only sizes and schedule differ
    # from the paper; the algorithm, the protocol and the evaluation are the paper's.
    "small": {
        "world_model": CPU_WORLD_MODEL,
        "agent": CPU_AGENT,
        "train": {"steps": 30_000, "checkpoint_every": 5_000},
    },
    # Networks for a pipeline smoke test (stack it: toy+tiny): a training step takes
    # milliseconds on a CPU, and nothing is learned. Sizes only; the schedule stays the other
    # preset's.
    "tiny": {
        "env": {"image_size": 16},
        "world_model": {
            "channels": (4, 4, 4, 4), "categoricals": 4, "classes": 4, "hidden": 16, "heads": 2,
            "feedforward": 16, "head_hidden": 16, "bins": 15, "batch_size": 2,
            "sequence_length": 8,
        },
        "agent": {"hidden": 16, "bins": 15, "imagination_batch": 4},
    },
}  # fmt: skip


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def from_dict(data: dict[str, Any]) -> Config:
    """Builds a Config from nested dicts, rejecting unknown keys by name."""
    sections = _section_types()
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in sections:
            raise unknown_field(key)
        kind = sections[key]
        if dataclasses.is_dataclass(kind):
            names = {f.name for f in dataclasses.fields(kind)}
            unknown = set(value) - names
            if unknown:
                raise unknown_field(f"{key}.{sorted(unknown)[0]}")
            hints = typing.get_type_hints(kind)
            kwargs[key] = kind(**{k: _coerce(v, hints[k], f"{key}.{k}") for k, v in value.items()})
        else:
            kwargs[key] = _coerce(value, kind, key)
    config = Config(**kwargs)
    validate(config)
    return config


def field_names() -> list[str]:
    """Every config field as it is named on the command line: `agent.gamma`, `seed`, ..."""
    names = []
    for name, kind in _section_types().items():
        if dataclasses.is_dataclass(kind):
            names += [f"{name}.{field.name}" for field in dataclasses.fields(kind)]
        else:
            names.append(name)
    return names


def unknown_field(dotted: str) -> StormError:
    """The error for a field that does not exist, with the closest names if some are close."""
    close = difflib.get_close_matches(dotted, field_names(), n=3, cutoff=0.75)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return StormError(
        f"unknown config field {dotted!r}{hint} (`{command('config')}` lists every field)"
    )


def _coerce(value: Any, kind: Any, name: str) -> Any:
    """Converts JSON or command-line values to the field's declared type."""
    origin = typing.get_origin(kind)
    try:
        if origin is tuple:
            items = value.split(",") if isinstance(value, str) else value
            (item_type, _) = typing.get_args(kind)
            return tuple(item_type(item) for item in items)
        if kind is bool:
            if isinstance(value, str):
                lowered = value.lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return lowered in ("true", "1", "yes")
            return bool(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(float(value)) if isinstance(value, str) else int(value)
        if kind in (float, str):
            return kind(value)
        if origin is types.UnionType:
            return value
    except (TypeError, ValueError):
        readable = getattr(kind, "__name__", str(kind))
        raise StormError(f"{name} must be {readable}, got {value!r}") from None
    return value


def build_config(preset: str = "atari100k", overrides: dict[str, Any] | None = None) -> Config:
    """Defaults, then the preset, then dotted overrides such as {"agent.gamma": "0.99"}."""
    names = [name.strip() for name in preset.split("+")]
    data: dict[str, Any] = Config().to_dict()
    for name in names:
        if name not in PRESETS:
            raise StormError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
        data = _merge(data, PRESETS[name])
    data["preset"] = preset
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        target = data
        if key:
            if section not in data or not isinstance(data[section], dict):
                raise unknown_field(dotted)
            target = data[section]
        else:
            key = section
        if key not in target or isinstance(target[key], dict):
            raise unknown_field(dotted)
        target[key] = value
    return from_dict(data)


def parse_overrides(arguments: list[str]) -> dict[str, str]:
    """`--agent.gamma 0.99 --train.steps=500` -> {"agent.gamma": "0.99", "train.steps": "500"}."""
    overrides: dict[str, str] = {}
    index = 0
    while index < len(arguments):
        argument = arguments[index]
        if not argument.startswith("--") or len(argument) < 3:
            raise StormError(
                f"unexpected argument {argument!r}; overrides look like --agent.gamma 0.99"
            )
        name, equals, value = argument[2:].partition("=")
        if not equals:
            if index + 1 >= len(arguments):
                raise StormError(f"override --{name} needs a value")
            index += 1
            value = arguments[index]
        overrides[name] = value
        index += 1
    return overrides


def validate(config: Config) -> None:
    """Catches values that would fail (or silently misbehave) long after the run starts."""
    wm, agent, train = config.world_model, config.agent, config.train
    problems = []
    if config.env.protocol not in ("storm", "standard"):
        problems.append(f"env.protocol must be 'storm' or 'standard', got {config.env.protocol!r}")
    size = config.env.image_size
    if size <= 0 or size % (2 ** len(wm.channels)) != 0:
        problems.append(
            f"env.image_size must be a positive multiple of {2 ** len(wm.channels)} "
            f"(one halving per encoder conv), got {size}"
        )
    if wm.hidden % wm.heads != 0:
        problems.append(f"world_model.hidden ({wm.hidden}) must be divisible by heads ({wm.heads})")
    if wm.sequence_length > wm.max_length:
        problems.append("world_model.sequence_length must not exceed world_model.max_length")
    if agent.context_length + agent.horizon > wm.max_length:
        problems.append(
            "agent.context_length + agent.horizon must not exceed world_model.max_length"
        )
    if train.act_context > wm.max_length:
        problems.append("train.act_context must not exceed world_model.max_length")
    if agent.lambda_variant not in ("paper", "released"):
        problems.append(
            f"agent.lambda_variant must be 'paper' or 'released', got {agent.lambda_variant!r}"
        )
    if not 0 <= agent.gamma <= 1 or not 0 <= agent.lambda_ <= 1:
        problems.append("agent.gamma and agent.lambda_ must lie in [0, 1]")
    if not 0 <= wm.dropout < 1 or not 0 <= wm.unimix < 1:
        problems.append("world_model.dropout and world_model.unimix must lie in [0, 1)")
    positive = {
        "train.steps": train.steps, "train.train_every": train.train_every,
        "train.replay_capacity": train.replay_capacity, "train.eval_episodes": train.eval_episodes,
        "train.checkpoint_every": train.checkpoint_every, "train.log_every": train.log_every,
        "world_model.batch_size": wm.batch_size, "world_model.sequence_length": wm.sequence_length,
        "agent.imagination_batch": agent.imagination_batch, "agent.horizon": agent.horizon,
        "agent.context_length": agent.context_length, "train.act_context": train.act_context,
        "world_model.learning_rate": wm.learning_rate, "agent.learning_rate": agent.learning_rate,
    }  # fmt: skip
    problems += [
        f"{name} must be positive, got {value}" for name, value in positive.items() if value <= 0
    ]
    if config.seed < 0:
        problems.append(f"seed must be 0 or more, got {config.seed}")
    problems += [
        f"{name} must be a finite number, got {value}"
        for name, value in _float_fields(config)
        if not math.isfinite(value)
    ]
    needed = max(wm.sequence_length, agent.context_length)
    if train.warmup_steps < needed:
        problems.append(f"train.warmup_steps must be at least {needed} (one replay window)")
    if train.replay_capacity < train.warmup_steps:
        problems.append("train.replay_capacity must be at least train.warmup_steps")
    choices = {
        "env.life_loss": (config.env.life_loss, ("every", "released")),
        "agent.return_norm_percentile": (agent.return_norm_percentile, ("interpolate", "kthvalue")),
        "train.eval_bookkeeping": (train.eval_bookkeeping, ("whole", "released")),
        "train.replay_on_device": (train.replay_on_device, ("auto", "on", "off")),
    }
    problems += [
        f"{name} must be one of {', '.join(allowed)}, got {value!r}"
        for name, (value, allowed) in choices.items()
        if value not in allowed
    ]
    if config.device not in ("auto", "cpu", "cuda", "mps") and not config.device.startswith(
        "cuda:"
    ):
        problems.append(f"device must be auto, cpu, cuda or mps, got {config.device!r}")
    if config.precision not in ("auto", "bf16", "fp32"):
        problems.append(f"precision must be auto, bf16 or fp32, got {config.precision!r}")
    if problems:
        raise StormError("invalid config: " + "; ".join(problems))


def _float_fields(config: Config) -> list[tuple[str, float]]:
    """(dotted name, value) of every float field: nan and inf pass every `> 0` check."""
    found = []
    for section in dataclasses.fields(config):
        value = getattr(config, section.name)
        if dataclasses.is_dataclass(value):
            found += [
                (f"{section.name}.{field.name}", getattr(value, field.name))
                for field in dataclasses.fields(value)
                if isinstance(getattr(value, field.name), float)
            ]
    return found
