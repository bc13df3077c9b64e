"""`storm-wm train`: train STORM on one game from one command."""

from __future__ import annotations

import argparse
from pathlib import Path

from storm_wm.config import PRESETS, build_config, parse_overrides


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train an agent",
        description="Train STORM on one game. Any config field can be overridden with a dotted "
        "option, e.g. --agent.gamma 0.99 or --world_model.batch_size=8 "
        "(see the run's config.json).",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--game", default=None, help="Atari name (Pong, MsPacman, ...), toy:catch or gym:<id>"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--preset", default="atari100k", help=f"one of {', '.join(PRESETS)}; stack with +"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="environment steps (default: the preset's)"
    )
    parser.add_argument(
        "--run-dir", type=Path, default=None, help="default: runs/<game>_<preset>_seed<seed>"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--precision", default="auto", help="auto, bf16 or fp32")
    parser.add_argument("--protocol", default=None, choices=("storm", "standard"))
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run, accepts_overrides=True)


def config_from_args(args: argparse.Namespace):
    overrides: dict = parse_overrides(args.overrides)
    if args.game is not None:
        overrides["env.game"] = args.game
    if args.protocol is not None:
        overrides["env.protocol"] = args.protocol
    if args.steps is not None:
        overrides["train.steps"] = args.steps
    overrides.update({"seed": args.seed, "device": args.device, "precision": args.precision})
    return build_config(args.preset, overrides)


def run(args: argparse.Namespace) -> int:
    from storm_wm.training.run import default_run_dir, train

    config = config_from_args(args)
    run_dir = args.run_dir or default_run_dir(config)
    state = train(config, run_dir, show_progress=not args.no_progress)
    print(
        f"storm-wm: {state.step} steps, {state.updates} updates, "
        f"{state.episode} episodes -> {run_dir}"
    )
    return 0
