"""Command-line options that choose a config, declared once for every command that builds one,
and the config a `train` command line asks for.

`sweep` checks each of its runs' options with train's own parser and rules, so a sweep refuses
what `train` would refuse before any run starts.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import get_args

from storm_wm.config import (
    DEFAULT_PRESET,
    PRESETS,
    Config,
    PrecisionName,
    Protocol,
    build_config,
    parse_overrides,
    with_overrides,
)

OWN_RUN = Path("<the run of this command line>")
"""`--resume` given without a directory."""


def add_config_options(
    parser: argparse.ArgumentParser, *, seed: bool = False, device: bool = False
) -> None:
    """--preset, then with `seed` --seed and with `device` --device and --precision. Each is None
    when not given: the preset's value (a resumed run's own value, when resuming)."""
    presets = ", ".join(PRESETS)
    parser.add_argument(
        "--preset", help=f"one of {presets}; stack with + (default: {DEFAULT_PRESET})"
    )
    if seed:
        parser.add_argument("--seed", type=int)
    if device:
        parser.add_argument(
            "--device", help="auto (the default: cuda, then mps, then cpu), cpu, cuda or mps"
        )
        precisions = ", ".join(get_args(PrecisionName))
        parser.add_argument(
            "--precision", help=f"{precisions} (auto, the default: bf16 on CUDA, else fp32)"
        )


def preset_of(args: argparse.Namespace) -> str:
    return args.preset or DEFAULT_PRESET


def config_overrides(args: argparse.Namespace) -> dict[str, str]:
    """The dotted overrides (`--agent.gamma 0.99`) and the seed, device and precision given."""
    given = {name: getattr(args, name, None) for name in ("seed", "device", "precision")}
    return {
        **parse_overrides(args.overrides),
        **{name: value for name, value in given.items() if value is not None},
    }


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """train's named options; any other `--SECTION.FIELD VALUE` is a config override."""
    parser.add_argument(
        "--game", default=None, help="Atari name (Pong, MsPacman, ...), toy:catch or gym:<id>"
    )
    add_config_options(parser, seed=True, device=True)
    parser.add_argument(
        "--steps", type=int, default=None, help="environment steps (default: the preset's)"
    )
    parser.add_argument(
        "--run-dir", type=Path, default=None, help="default: runs/<game>_<preset>_seed<seed>"
    )
    parser.add_argument(
        "--resume",
        type=Path,
        default=None,
        nargs="?",
        const=OWN_RUN,
        metavar="RUN_DIR",
        help="continue this run from its newest good checkpoint; options given must match its "
        "config, except --steps and bookkeeping (device, precision, checkpoint and log "
        "intervals, ...). Without RUN_DIR: continue the run this command line names "
        "(--run-dir or the default directory) if it exists, else start it",
    )
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic algorithms only: an interrupted and resumed run ends with the same "
        "weights as one left alone (bit for bit on CPU)",
    )
    parser.add_argument("--protocol", default=None, choices=get_args(Protocol))
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def train_overrides(args: argparse.Namespace) -> dict:
    """The config changes a `train` command line asks for, as dotted overrides: only what it
    gives, so that a resumed run keeps its own seed, device and precision otherwise."""
    named = {
        "env.game": args.game,
        "env.protocol": args.protocol,
        "train.steps": args.steps,
        "train.deterministic": True if args.deterministic else None,
    }
    return {
        **config_overrides(args),
        **{name: value for name, value in named.items() if value is not None},
    }


def config_from_args(args: argparse.Namespace) -> Config:
    return build_config(preset_of(args), train_overrides(args))


def resumed_config(args: argparse.Namespace, saved: Config) -> Config:
    """The saved config with this command line's options on top (checked against it later)."""
    if args.preset is not None and args.preset != saved.preset:
        return config_from_args(args)  # every field the other preset changes will be named
    return with_overrides(saved, train_overrides(args))
