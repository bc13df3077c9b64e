"""`storm-wm train`: train STORM on one game from one command, or continue a run with --resume."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from storm_wm.errors import StormError
from storm_wm.hints import command
from storm_wm.options import OWN_RUN, add_train_options, config_from_args, resumed_config


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
    add_train_options(parser)
    parser.set_defaults(func=run, accepts_overrides=True)


def start_arguments(args: argparse.Namespace, run_dir: Path) -> list[str]:
    """The `train` arguments that start `run_dir` with this command line's options (a game
    placeholder when none was given: followed as printed, the hint must not start a paper-sized
    Pong run nobody asked for)."""
    arguments = ["train", "--game", args.game or "GAME"]
    for name in ("preset", "seed", "device", "precision", "steps", "protocol"):
        if getattr(args, name) is not None:
            arguments += [f"--{name}", str(getattr(args, name))]
    if args.deterministic:
        arguments.append("--deterministic")
    return [*arguments, *args.overrides, "--run-dir", str(run_dir)]


def run(args: argparse.Namespace) -> int:
    from storm_wm.envs import resolve_game
    from storm_wm.persistence.resume import load_run_config
    from storm_wm.run.directory import default_run_dir
    from storm_wm.run.train import train

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
