"""`storm-wm eval`: evaluate a run's checkpoint and write eval.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from storm_wm.errors import StormError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate a trained run", allow_abbrev=False,
        description="Play whole episodes with a run's checkpoint (sampled actions, as in the "
        "paper) and write RUN_DIR/eval.json with every return, the mean and the "
        "human-normalized score.",
    )  # fmt: skip
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--protocol", choices=("storm", "standard"), default=None,
                        help="default: the protocol the run trained with")  # fmt: skip
    parser.add_argument("--greedy", action="store_true", help="argmax actions instead of sampling")
    parser.add_argument(
        "--checkpoint", type=int, default=None, metavar="STEP", help="default: the newest"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--seed", type=int, default=10_000, help="first evaluation environment seed"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from storm_wm.evaluation import evaluate

    if not args.run_dir.is_dir():
        raise StormError(
            f"{args.run_dir} is not a directory; give the run directory written by train"
        )
    result = evaluate(
        args.run_dir, args.episodes, protocol=args.protocol, greedy=args.greedy,
        step=args.checkpoint, device=args.device, seed=args.seed,
    )  # fmt: skip
    normalized = result["human_normalized"]
    extra = f", human-normalized {normalized:.3f}" if normalized is not None else ""
    print(
        f"{result['game']} step {result['step']}: mean return {result['mean']:.2f} "
        f"+- {result['std']:.2f} over {result['episodes']} episodes{extra} "
        f"-> {args.run_dir / 'eval.json'}"
    )
    return 0
