"""`storm-wm train`'s command-line options, and the config a command line asks for.

`sweep` checks each of its runs' options with the same parser and rules, so a sweep refuses
what `train` would refuse before any run starts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from storm_wm.config import PRESETS, Config, build_config, parse_overrides

OWN_RUN = Path("<the run of this command line>")
"""`--resume` given without a directory."""


class _Given(argparse.Action):
    """Stores the value and remembers that it was given: a resumed run takes the others from
    its saved config, not from the parser's defaults."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        namespace.given = {*getattr(namespace, "given", ()), self.dest}


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """train's named options; any other `--SECTION.FIELD VALUE` is a config override."""
    parser.add_argument(
        "--game", default=None, help="Atari name (Pong, MsPacman, ...), toy:catch or gym:<id>"
    )
    parser.add_argument("--seed", type=int, default=1, action=_Given)
    parser.add_argument(
        "--preset", default="atari100k", action=_Given,
        help=f"one of {', '.join(PRESETS)}; stack with +",
    )  # fmt: skip
    parser.add_argument(
        "--steps", type=int, default=None, help="environment steps (default: the preset's)"
    )
    parser.add_argument(
        "--run-dir", type=Path, default=None, help="default: runs/<game>_<preset>_seed<seed>"
    )
    parser.add_argument(
        "--resume", type=Path, default=None, nargs="?", const=OWN_RUN, metavar="RUN_DIR",
        help="continue this run from its newest good checkpoint; options given must match its "
        "config, except --steps and bookkeeping (device, precision, checkpoint and log "
        "intervals, ...). Without RUN_DIR: continue the run this command line names "
        "(--run-dir or the default directory) if it exists, else start it",
    )  # fmt: skip
    parser.add_argument(
        "--deterministic", action="store_true",
        help="deterministic algorithms only: an interrupted and resumed run ends with the same "
        "weights as one left alone (bit for bit on CPU)",
    )  # fmt: skip
    parser.add_argument("--device", default="auto", action=_Given, help="auto, cpu, cuda or mps")
    parser.add_argument("--precision", default="auto", action=_Given, help="auto, bf16 or fp32")
    parser.add_argument("--protocol", default=None, choices=("storm", "standard"))
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def explicit_overrides(args: argparse.Namespace, given_only: bool = False) -> dict:
    """The config changes this command line asks for, as dotted overrides.

    With `given_only`, options left at their defaults (--seed, --device, --precision) are not
    included: resuming takes them from the run's saved config.
    """
    overrides: dict = parse_overrides(args.overrides)
    given = getattr(args, "given", set())
    named = {
        "env.game": args.game, "env.protocol": args.protocol, "train.steps": args.steps,
        "train.deterministic": True if args.deterministic else None,
    }  # fmt: skip
    for name in ("seed", "device", "precision"):
        named[name] = getattr(args, name) if name in given or not given_only else None
    overrides.update({name: value for name, value in named.items() if value is not None})
    return overrides


def config_from_args(args: argparse.Namespace) -> Config:
    return build_config(args.preset, explicit_overrides(args))


def resumed_config(args: argparse.Namespace, saved: Config) -> Config:
    """The saved config with this command line's options on top (checked against it later)."""
    from storm_wm.persistence.resume import apply_overrides

    if "preset" in getattr(args, "given", set()) and args.preset != saved.preset:
        return config_from_args(args)  # every field the other preset changes will be named
    return apply_overrides(saved, explicit_overrides(args, given_only=True))
