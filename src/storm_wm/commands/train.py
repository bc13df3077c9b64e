"""`storm-wm train`: train STORM on one game from one command, or continue a run with --resume."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from storm_wm.config import PRESETS, Config, build_config, parse_overrides
from storm_wm.errors import StormError
from storm_wm.hints import command

OWN_RUN = Path("<the run of this command line>")
"""`--resume` given without a directory."""


class _Given(argparse.Action):
    """Stores the value and remembers that it was given: a resumed run takes the others from
    its saved config, not from the parser's defaults."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        namespace.given = {*getattr(namespace, "given", ()), self.dest}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train an agent",
        description="Train STORM on one game. Any config field can be overridden with a dotted "
        "option, e.g. --agent.gamma 0.99 or --world_model.batch_size=8 "
        "(`storm-wm config` lists every field with its default and meaning). SIGINT or "
        "SIGTERM stops after the current step with a checkpoint; --resume RUN_DIR continues "
        "from the newest good checkpoint.",
        allow_abbrev=False,
    )
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
    parser.set_defaults(func=run, accepts_overrides=True)


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


def start_arguments(args: argparse.Namespace, run_dir: Path) -> list[str]:
    """The `train` arguments that start `run_dir` with this command line's options (a game
    placeholder when none was given: followed as printed, the hint must not start a paper-sized
    Pong run nobody asked for)."""
    given = getattr(args, "given", set())
    arguments = ["train", "--game", args.game or "GAME"]
    for name in ("preset", "seed", "device", "precision"):
        if name in given:
            arguments += [f"--{name}", str(getattr(args, name))]
    for name in ("steps", "protocol"):
        if getattr(args, name) is not None:
            arguments += [f"--{name}", str(getattr(args, name))]
    if args.deterministic:
        arguments.append("--deterministic")
    return [*arguments, *args.overrides, "--run-dir", str(run_dir)]


def run(args: argparse.Namespace) -> int:
    from storm_wm.envs import resolve_game
    from storm_wm.persistence.resume import load_run_config
    from storm_wm.run.compose import default_run_dir, train

    if args.resume is OWN_RUN:
        args.resume = None
        run_dir = args.run_dir or default_run_dir(config_from_args(args))
        if not args.run_dir and args.game and args.game != resolve_game(args.game).name:
            # Run directories once took the game's name as typed (runs/pong_...): continue one.
            typed = Path(str(run_dir).replace(resolve_game(args.game).name, args.game))
            run_dir = typed if (typed / "config.json").is_file() else run_dir
        if (Path(run_dir) / "config.json").is_file():
            print(f"storm-wm: {run_dir} holds this run already: continuing it")
            args.resume, args.run_dir = Path(run_dir), None
    if args.resume is not None:
        if args.run_dir is not None and args.run_dir != args.resume:
            raise StormError("give the run directory once: --resume RUN_DIR (without --run-dir)")
        run_dir = args.resume
        if not (Path(run_dir) / "config.json").is_file():
            raise StormError(
                f"{run_dir} holds no storm-wm run (no config.json) to resume; start one with "
                f"`{command(*start_arguments(args, run_dir))}`"
            )
        config = resumed_config(args, load_run_config(run_dir))
    else:
        config = config_from_args(args)
        run_dir = args.run_dir or default_run_dir(config)
    state = train(
        config, run_dir, show_progress=not args.no_progress, resume=args.resume is not None
    )
    if state.stopped_by:
        print(
            f"storm-wm: stopped by {state.stopped_by} at step {state.step} with a checkpoint; "
            f"continue with `{command('train', '--resume', run_dir)}`"
        )
        return 128 + int(signal.Signals[state.stopped_by])
    print(
        f"storm-wm: {state.step} steps, {state.updates} updates, "
        f"{state.episode} episodes -> {run_dir}"
    )
    return 0
