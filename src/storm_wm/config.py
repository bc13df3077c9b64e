"""Typed, frozen configuration: one dataclass per concern, named presets that stack.

Every number of the paper lives here as a default (docs/algorithm.md says what each does and
why); presets change a few of them for small machines and tests. A resolved `Config` is
written to each run directory as JSON and read back by `eval`, `dream` and `--resume`.

Each field is declared once, with `setting`: its default, its meaning (`storm-wm config` prints
it), whether a resumed run may change it, whether it shapes the weights (checked when a
checkpoint is loaded) and its bound (checked by `validate`). A field whose values are a few
words has a `Literal` type: those words are its only values, everywhere.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from storm_wm.atomic import write_text_atomically
from storm_wm.errors import StormError
from storm_wm.hints import command

Protocol = Literal["storm", "standard"]
LifeLossRule = Literal["every", "released"]
LambdaVariant = Literal["paper", "released"]
PercentileRule = Literal["interpolate", "kthvalue"]
Bookkeeping = Literal["whole", "released"]
ReplayPlacement = Literal["auto", "on", "off"]
PrecisionName = Literal["auto", "bf16", "fp32"]

DEFAULT_PRESET = "atari100k"
"""The paper's configuration: the defaults, unchanged."""

OnResume = Literal["fixed", "this_process", "kept"]
"""Whether `train --resume` may change a field: `fixed` (no: the run would be another
experiment), `this_process` (yes, for the resuming process only: config.json keeps the run's
value) or `kept` (yes, and config.json keeps the new value for later resumes)."""
Bound = Literal["positive", "0 or more"]
"""A number's lower bound, as `validate` says it: `train.steps must be positive, got 0`."""


def setting(
    default: Any,
    meaning: str,
    *,
    on_resume: OnResume = "fixed",
    shapes_weights: bool = False,
    bound: Bound | None = None,
) -> Any:
    """A config field: its default, its meaning, whether a resumed run may change it (`on_resume`),
    whether it shapes the weights (then a checkpoint must match it) and its lower bound."""
    metadata = {
        "meaning": inspect.cleandoc(meaning),
        "on_resume": on_resume,
        "shapes_weights": shapes_weights,
        "bound": bound,
    }
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class EnvConfig:
    game: str = setting(
        "Pong",
        "Atari name (`Pong`, `MsPacman`, any ALE game), `toy:catch`, or `gym:<id>`.",
        shapes_weights=True,
    )
    protocol: Protocol = setting(
        "storm",
        "`storm`: sticky actions 0.25, no no-ops (the authors'); `standard`: none, 1-30 no-ops.",
    )
    image_size: int = setting(
        64, "Frames are resized to image_size x image_size RGB.", shapes_weights=True
    )
    max_episode_frames: int = setting(108_000, "Episode cap in emulator frames (Atari).")
    life_loss: LifeLossRule = setting(
        "every",
        """Which Atari life losses set the replay's termination flag. `every`: each step on which
        the ALE's life counter falls below its previous step's value. `released`: the authors'
        wrapper, which records the lives at reset and only ever lowers that record (on games
        whose counter rises just after reset, such as Amidar, it flags fewer losses).""",
    )


@dataclass(frozen=True)
class WorldModelConfig:
    channels: tuple[int, ...] = setting(
        (32, 64, 128, 256),
        "Encoder conv channels; each conv halves the resolution (64 -> 4 with four).",
        shapes_weights=True,
    )
    categoricals: int = setting(
        32, "Number of categorical latent variables per frame.", shapes_weights=True
    )
    classes: int = setting(
        32,
        "Classes per categorical; z has categoricals x classes one-hot features.",
        shapes_weights=True,
    )
    hidden: int = setting(512, "Transformer width (the feature h).", shapes_weights=True)
    layers: int = setting(2, "Transformer blocks.", shapes_weights=True)
    heads: int = setting(8, "Attention heads (hidden / heads per head).", shapes_weights=True)
    feedforward: int = setting(
        1024, "Inner width of each block's feed-forward layer.", shapes_weights=True
    )
    dropout: float = setting(
        0.1, "Dropout on attention weights, after the output projection and in the feed-forward."
    )
    max_length: int = setting(
        64,
        "Length of the learned position embedding (longest sequence the transformer sees).",
        shapes_weights=True,
    )
    head_hidden: int = setting(
        512, "Width of the reward and termination heads' trunks.", shapes_weights=True
    )
    bins: int = setting(255, "Symlog two-hot bins of the reward head.", shapes_weights=True)
    unimix: float = setting(0.01, "Uniform mixture of the posterior and prior categoricals.")
    free_bits: float = setting(
        1.0, "KL terms are clipped from below at this many nats (on the batch mean)."
    )
    dynamics_scale: float = setting(
        0.5,
        "Weight of the dynamics KL, KL(stop_grad(posterior) || prior), in the world-model loss.",
    )
    representation_scale: float = setting(
        0.1, "Weight of the representation KL, KL(posterior || stop_grad(prior))."
    )
    learning_rate: float = setting(1e-4, "Adam learning rate of the world model.", bound="positive")
    grad_clip: float = setting(1000.0, "Gradient-norm clip of the world-model update.")
    batch_size: int = setting(16, "Replay sequences per world-model update.", bound="positive")
    sequence_length: int = setting(
        64, "Steps per replay sequence of a world-model update.", bound="positive"
    )

    @property
    def latent_size(self) -> int:
        return self.categoricals * self.classes


@dataclass(frozen=True)
class AgentConfig:
    hidden: int = setting(512, "Width of the actor and critic trunks.", shapes_weights=True)
    bins: int = setting(255, "Symlog two-hot bins of the critic.", shapes_weights=True)
    gamma: float = setting(0.985, "Discount of the imagined returns.")
    lambda_: float = setting(0.95, "TD(lambda) mixing of the imagined returns.")
    lambda_variant: LambdaVariant = setting(
        "paper", "`paper`: bootstrap from V(s_{t+1}); `released`: the authors' code, V(s_t)."
    )
    entropy_scale: float = setting(3e-4, "Weight of the policy's entropy bonus.")
    slow_critic_decay: float = setting(
        0.98, "slow = decay * slow + (1 - decay) * critic after every agent update."
    )
    return_norm_decay: float = setting(
        0.99, "EMA decay of the return percentiles that scale the advantages."
    )
    return_norm_low: float = setting(
        5.0, "Lower percentile of the batch's returns (S = EMA(P_high) - EMA(P_low))."
    )
    return_norm_high: float = setting(95.0, "Upper percentile of the batch's returns.")
    return_norm_percentile: PercentileRule = setting(
        "interpolate",
        """How the batch percentiles of the returns are read: `interpolate` (linear
        interpolation between order statistics, torch.quantile) or `kthvalue` (the authors'
        code: the k-th smallest value, no interpolation).""",
    )
    learning_rate: float = setting(
        3e-5, "Adam learning rate of the actor and the critic.", bound="positive"
    )
    adam_eps: float = setting(1e-5, "Adam epsilon of the actor-critic optimizer.")
    grad_clip: float = setting(100.0, "Gradient-norm clip of the actor-critic update.")
    imagination_batch: int = setting(
        1024, "Replay windows imagined from per agent update.", bound="positive"
    )
    context_length: int = setting(
        8, "Real steps fed to the transformer before imagining.", bound="positive"
    )
    horizon: int = setting(16, "Imagined steps per row.", bound="positive")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = setting(
        100_000,
        "Agent (environment) steps of the run; the score is that of the final agent.",
        on_resume="kept",
        bound="positive",
    )
    warmup_steps: int = setting(
        1024, "Uniformly random actions until the replay buffer holds this many steps."
    )
    train_every: int = setting(
        1,
        "Environment steps between updates (one world-model and one agent update each).",
        bound="positive",
    )
    agent_start: int = setting(
        0,
        """Environment step of the first agent update; before it the updates train the world
        model alone and the untrained policy acts (0: from the end of the warm-up, the
        paper's).""",
        bound="0 or more",
    )
    replay_capacity: int = setting(
        100_000,
        "Replay buffer size in steps (the oldest are overwritten).",
        bound="positive",
    )
    act_context: int = setting(
        16,
        "(frame, action) pairs of the current episode the policy conditions on.",
        bound="positive",
    )
    act_on_posterior: bool = setting(
        False,
        "Act on the posterior of the frame just seen instead of the model's prior (off: authors').",
    )
    eval_episodes: int = setting(20, "Episodes `storm-wm eval` plays by default.", bound="positive")
    checkpoint_every: int = setting(
        2_500,
        "Environment steps between checkpoints (may change on resume).",
        on_resume="this_process",
        bound="positive",
    )
    log_every: int = setting(
        250,
        "Environment steps between logged training-metric averages.",
        on_resume="this_process",
        bound="positive",
    )
    diagnostics_every: int = setting(
        2_500,
        """Environment steps between logged open-loop k-step errors of the world model on
        recent replay windows (open_loop/* in TensorBoard and metrics.jsonl); 0 turns them
        off.""",
        on_resume="this_process",
    )
    video_every: int = setting(
        10_000,
        """Environment steps between dream videos (real, reconstructed and imagined frames
        side by side) logged to TensorBoard under world_model/dream; 0 turns them off.""",
        on_resume="this_process",
    )
    checkpoint_keep: int = setting(
        3,
        """Newest checkpoints kept (older ones, and replay chunks only they need, go); 0 keeps
        all.""",
        on_resume="kept",
        bound="0 or more",
    )
    max_nonfinite_updates: int = setting(
        20,
        """Updates in a row of one model with a non-finite loss (each skipped) before training
        stops.""",
        bound="positive",
    )
    deterministic: bool = setting(
        False,
        "Deterministic algorithms only, so a resumed run matches one left alone bit for bit (CPU).",
    )
    clear_context_on_episode_end: bool = setting(
        True,
        """Forget the acting context when an episode ends (the paper's acting context is the
        current episode's). The authors' code did not: its policy conditioned on the previous
        episode's last frames.""",
    )
    repeat_reset_seed: bool = setting(
        False,
        """Reset every training episode with the run's seed (the authors' code) instead of
        continuing the environment's seeded generator from one episode to the next.""",
    )
    eval_bookkeeping: Bookkeeping = setting(
        "whole",
        """Default bookkeeping of `storm-wm eval`. `whole`: every episode played to its end,
        every reward counted (unbiased). `released`: the authors' eval script: 5 parallel
        environments, the first episodes to finish are kept, and an episode's final reward is
        carried into that environment's next episode.""",
    )
    replay_on_device: ReplayPlacement = setting(
        "auto",
        """Where the replay buffer's frames live for sampling: `auto` (on the training device
        when they fit), `on` (always on the training device) or `off` (host memory).""",
        on_resume="this_process",
    )
    compile: bool = setting(
        False,
        "Run the imagination rollout and the acting step through torch.compile (eager otherwise).",
        on_resume="this_process",
    )
    async_checkpoints: bool = setting(
        True,
        "Write checkpoint files on a background thread so they never stall training.",
        on_resume="this_process",
    )


@dataclass(frozen=True)
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = setting(
        1,
        "Seed of every random generator and of the environment's first reset (0 or more).",
        bound="0 or more",
    )
    device: str = setting(
        "auto", "`auto` picks cuda, then mps, then cpu.", on_resume="this_process"
    )
    precision: PrecisionName = setting(
        "auto",
        """`auto`: bf16 autocast on CUDA, fp32 on every CPU (docs/performance.md, "Precision
        on CPUs"); `bf16` or `fp32` as asked. A run prints its precision and why at its
        start.""",
        on_resume="this_process",
    )
    preset: str = setting(
        DEFAULT_PRESET,
        "The preset(s) the config was built from, `+`-stacked (a record; set with --preset).",
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        """Writes the config as JSON atomically: a reader sees the old file or the new one."""
        try:
            write_text_atomically(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")
        except OSError as error:
            directory = Path(path).parent
            raise StormError(
                f"cannot write to run directory {directory}: {error.strerror}"
            ) from None

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
    "channels": (8, 16, 16, 16),
    "categoricals": 16,
    "classes": 16,
    "hidden": 128,
    "layers": 1,
    "heads": 4,
    "feedforward": 256,
    "head_hidden": 128,
    "max_length": 32,
    "batch_size": 8,
    "sequence_length": 16,
    "learning_rate": 1e-3,
}
CPU_AGENT: dict[str, Any] = {
    "hidden": 128,
    "imagination_batch": 64,
    "context_length": 4,
    "horizon": 8,
    "learning_rate": 3e-4,
}

# Presets stack on top of the paper's configuration (`atari100k` = the defaults).
PRESETS: dict[str, dict[str, Any]] = {
    DEFAULT_PRESET: {},
    "debug": {
        "world_model": {
            "channels": (8, 16, 32, 64),
            "categoricals": 8,
            "classes": 8,
            "hidden": 64,
            "layers": 1,
            "heads": 2,
            "feedforward": 128,
            "head_hidden": 64,
            "batch_size": 4,
            "sequence_length": 16,
        },
        "agent": {"hidden": 64, "imagination_batch": 32, "context_length": 4, "horizon": 8},
        "train": {
            "steps": 300,
            "warmup_steps": 100,
            "train_every": 4,
            "eval_episodes": 2,
            "checkpoint_every": 100,
            "log_every": 50,
            "replay_capacity": 10_000,
            "diagnostics_every": 150,
            "video_every": 300,
        },
        "env": {"max_episode_frames": 800},
    },
    # The authors' released code, behaviour by behaviour (stack it: atari100k+released).
    "released": {
        "env": {"life_loss": "released"},
        "agent": {"lambda_variant": "released", "return_norm_percentile": "kthvalue"},
        "train": {
            "clear_context_on_episode_end": False,
            "repeat_reset_seed": True,
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
            "steps": 2_800,
            "warmup_steps": 300,
            "train_every": 1,
            "eval_episodes": 20,
            "checkpoint_every": 1_000,
            "log_every": 100,
            "replay_capacity": 10_000,
        },
    },
    # STORM for a CPU: 30,000 steps of it run in 46-55 minutes on 2 cores, and the whole agent
    # beat the human's Boxing score on 7 of 14 seeds, 5 of them at 30 or more
    # (docs/results.md). Only sizes and schedule differ from the paper
    # (docs/algorithm.md#10-presets); the algorithm, the protocol and the evaluation are the
    # paper's.
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
            "channels": (4, 4, 4, 4),
            "categoricals": 4,
            "classes": 4,
            "hidden": 16,
            "heads": 2,
            "feedforward": 16,
            "head_hidden": 16,
            "bins": 15,
            "batch_size": 2,
            "sequence_length": 8,
        },
        "agent": {"hidden": 16, "bins": 15, "imagination_batch": 4},
    },
}


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class Setting:
    """One config field as the command line names it, with what its `setting` declared."""

    name: str
    """Dotted: `agent.gamma`, `seed`."""
    kind: Any
    """Its type: int, float, bool, str, tuple[int, ...] or a Literal of its values."""
    meaning: str
    on_resume: OnResume
    shapes_weights: bool
    bound: Bound | None

    def value(self, config: Config) -> Any:
        section, _, name = self.name.rpartition(".")
        return getattr(getattr(config, section) if section else config, name)


def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


@functools.cache
def settings() -> tuple[Setting, ...]:
    """Every config field, in declaration order (the order of config.json)."""
    found = []
    for section in dataclasses.fields(Config):
        kind = _section_types()[section.name]
        if not dataclasses.is_dataclass(kind):
            found.append(Setting(section.name, kind, **section.metadata))
            continue
        hints = typing.get_type_hints(kind)
        for item in dataclasses.fields(kind):
            found.append(Setting(f"{section.name}.{item.name}", hints[item.name], **item.metadata))
    return tuple(found)


def field_names() -> list[str]:
    """Every config field as it is named on the command line: `agent.gamma`, `seed`, ..."""
    return [setting.name for setting in settings()]


def values_of(kind: Any) -> tuple[str, ...]:
    """The values of a Literal type (`values_of(Protocol)`: storm, standard); () for others."""
    return typing.get_args(kind) if typing.get_origin(kind) is Literal else ()


def type_name(kind: Any) -> str:
    """`int`, `tuple[int, ...]`, `one of storm, standard`."""
    if typing.get_origin(kind) is tuple:
        return f"tuple[{typing.get_args(kind)[0].__name__}, ...]"
    if values_of(kind):
        return f"one of {', '.join(values_of(kind))}"
    return getattr(kind, "__name__", str(kind))


def _either(values: tuple[str, ...]) -> str:
    """`'storm' or 'standard'`, `'auto', 'on' or 'off'`."""
    words = [repr(value) for value in values]
    return " or ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)


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
        if kind in (float, str) or origin is Literal:
            return (str if origin is Literal else kind)(value)
        if origin is types.UnionType:
            return value
    except (TypeError, ValueError):
        readable = getattr(kind, "__name__", str(kind))
        raise StormError(f"{name} must be {readable}, got {value!r}") from None
    return value


def with_overrides(base: Config | dict[str, Any], overrides: dict[str, Any]) -> Config:
    """`base` (a Config, or nested dicts as `Config.to_dict` gives) with dotted overrides such
    as {"agent.gamma": "0.99"} set, typed and validated. `base` is left as it was."""
    data = base.to_dict() if isinstance(base, Config) else base
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in data.items()}
    for dotted, value in overrides.items():
        section, _, key = dotted.partition(".")
        target = data.get(section) if key else data
        name = key or section
        if not isinstance(target, dict) or name not in target or isinstance(target[name], dict):
            raise unknown_field(dotted)
        target[name] = value
    return from_dict(data)


def build_config(preset: str = DEFAULT_PRESET, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults, then the preset, then dotted overrides such as {"agent.gamma": "0.99"}."""
    names = [name.strip() for name in preset.split("+")]
    data: dict[str, Any] = Config().to_dict()
    for name in names:
        if name not in PRESETS:
            raise StormError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
        data = _merge(data, PRESETS[name])
    data["preset"] = preset
    return with_overrides(data, overrides or {})


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
    """Catches values that would fail (or silently misbehave) long after the run starts: each
    field's own rule (its Literal's values, its bound, a finite float), then the rules that
    tie fields together."""
    problems = []
    for setting in settings():
        value, allowed = setting.value(config), values_of(setting.kind)
        if allowed and value not in allowed:
            problems.append(f"{setting.name} must be {_either(allowed)}, got {value!r}")
        elif setting.bound and (value <= 0 if setting.bound == "positive" else value < 0):
            problems.append(f"{setting.name} must be {setting.bound}, got {value}")
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{setting.name} must be a finite number, got {value}")
    wm, agent, train = config.world_model, config.agent, config.train
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
    if not 0 <= agent.gamma <= 1 or not 0 <= agent.lambda_ <= 1:
        problems.append("agent.gamma and agent.lambda_ must lie in [0, 1]")
    if not 0 <= wm.dropout < 1 or not 0 <= wm.unimix < 1:
        problems.append("world_model.dropout and world_model.unimix must lie in [0, 1)")
    needed = max(wm.sequence_length, agent.context_length)
    if train.warmup_steps < needed:
        problems.append(f"train.warmup_steps must be at least {needed} (one replay window)")
    if train.replay_capacity < train.warmup_steps:
        problems.append("train.replay_capacity must be at least train.warmup_steps")
    if config.device not in ("auto", "cpu", "cuda", "mps") and not config.device.startswith(
        "cuda:"
    ):
        problems.append(f"device must be auto, cpu, cuda or mps, got {config.device!r}")
    if problems:
        raise StormError("invalid config: " + "; ".join(problems))
