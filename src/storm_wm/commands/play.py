"""`storm-wm play`: play the real game or the world model's dream, or watch the agent play."""

from __future__ import annotations

import argparse
from pathlib import Path

from storm_wm.errors import StormError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "play",
        help="play the game, or the world model's dream of it, in a window",
        allow_abbrev=False,
        description="Open a window on a run's game. You play with the arrow keys (or WASD), "
        "space to fire and 0-9 to pick an action by number; P pauses, R restarts, Esc quits. "
        "With --dream the game on screen is the world model's imagination, started from a "
        "real first frame; with --watch the trained agent plays instead of you. Set "
        "SDL_VIDEODRIVER=dummy to run without a display. See docs/visualize.md.",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    parser.add_argument("--dream", action="store_true", help="play inside the world model")
    parser.add_argument("--watch", action="store_true", help="the agent plays; you watch")
    parser.add_argument(
        "--checkpoint", type=int, default=None, metavar="STEP", help="default: the newest"
    )
    parser.add_argument(
        "--fps",
        type=float,
        default=None,
        help="world steps per second (default: 15 for Atari, the real "
        "speed with 4 frames per step; 4 for other games)",
    )
    parser.add_argument("--scale", type=int, default=6, help="pixels per frame pixel")
    parser.add_argument("--seed", type=int, default=None, help="seed of the first episode")
    parser.add_argument(
        "--max-steps",
        type=int,
        default=None,
        metavar="N",
        help="stop after N world steps (for demos and tests)",
    )
    parser.add_argument("--device", default="auto")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from storm_wm.extras import require
    from storm_wm.persistence.agent import check_run_dir

    check_run_dir(args.run_dir)
    if args.scale < 1 or (args.fps is not None and args.fps <= 0):
        raise StormError("--scale and --fps must be positive")
    require("pygame", "storm-wm play")
    from storm_wm.play.session import build_session

    app = build_session(
        args.run_dir,
        dream=args.dream,
        watch=args.watch,
        checkpoint=args.checkpoint,
        fps=args.fps,
        scale=args.scale,
        seed=args.seed,
        device=args.device,
    )
    returns = app.run(max_steps=args.max_steps)
    finished = ", ".join(f"{value:g}" for value in returns) or "none finished"
    print(f"played {app.steps} steps of the {app.world.name}; episode returns: {finished}")
    return 0
