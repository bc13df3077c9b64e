"""`storm-wm eval`: evaluate a run's checkpoint and write eval.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from storm_wm.errors import StormError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate a trained run", allow_abbrev=False,
        description="Play whole episodes with a run's checkpoint (sampled actions, as in the "
        "paper) and write RUN_DIR/eval.json with every return, the mean, the "
        "human-normalized score and the world model's open-loop k-step errors on windows of "
        "these episodes (k = 1, 5, 15).",
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
    parser.add_argument(
        "--diagnostic-windows", type=int, default=256, metavar="N",
        help="windows of the episodes on which to measure the world model's k-step errors "
        "(0: skip)",
    )  # fmt: skip
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
        diagnostic_windows=args.diagnostic_windows,
    )  # fmt: skip
    normalized = result["human_normalized"]
    extra = f", human-normalized {normalized:.3f}" if normalized is not None else ""
    print(
        f"{result['game']} step {result['step']}: mean return {result['mean']:.2f} "
        f"+- {result['std']:.2f} over {result['episodes']} episodes{extra} "
        f"-> {args.run_dir / 'eval.json'}"
    )
    if result["world_model_quality"] is not None:
        print(describe_quality(result["world_model_quality"]))
    return 0


def describe_quality(quality: dict) -> str:
    """One line: the k-step frame MSE (and that of repeating the last frame) per horizon."""
    parts = []
    for record in quality["horizons"]:
        if record["frame_mse"] is None:
            parts.append(f"k={record['k']}: no window long enough")
            continue
        parts.append(
            f"k={record['k']}: frame MSE {record['frame_mse']:.4f} "
            f"(repeat-last {record['frame_mse_repeat_last']:.4f}), "
            f"reward error {record['reward_abs_error']:.3f}, "
            f"end accuracy {record['termination_accuracy']:.3f}"
        )
    skipped = [str(record["k"]) for record in quality["skipped_horizons"]]
    if skipped:
        parts.append(f"k={','.join(skipped)} skipped (see eval.json)")
    return f"world model, open loop after {quality['context']} real frames: " + "; ".join(parts)
