"""`storm-wm dream`: a video of the real game beside the world model's reconstruction and dream."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dream",
        help="video: real frames, reconstructions and the model's dream side by side",
        allow_abbrev=False,
        description="The agent plays the real game; the world model sees the first --context "
        "frames, then imagines the rest open loop under the same actions. The video shows the "
        "real frames, the model's reconstructions and its imagination side by side, with the "
        "real and predicted rewards under each frame. When an episode ends the next one "
        "follows, as in the training replay. See docs/visualize.md.",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    parser.add_argument("--steps", type=int, default=64, help="imagined steps after the context")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="video file, .mp4 or .gif (default: RUN_DIR/dream.mp4)",
    )
    parser.add_argument(
        "--context",
        type=int,
        default=None,
        help="real frames the model sees first (default: the run's "
        "agent.context_length, what its imagination starts from)",
    )
    parser.add_argument(
        "--start",
        type=int,
        default=0,
        help="episode steps the agent plays before the context begins",
    )
    parser.add_argument(
        "--checkpoint", type=int, default=None, metavar="STEP", help="default: the newest"
    )
    parser.add_argument("--seed", type=int, default=10_000, help="seed of the episode played")
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument("--scale", type=int, default=3, help="pixels per frame pixel")
    parser.add_argument("--device", default="auto")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from storm_wm.persistence.agent import check_run_dir
    from storm_wm.visualize.record import make_dream_video
    from storm_wm.visualize.video import check_video_path
    from storm_wm.writable import check_writable

    out = args.out if args.out is not None else args.run_dir / "dream.mp4"
    check_video_path(out)
    check_run_dir(args.run_dir)
    check_writable(out)  # before the episode is played and the video composed, not after
    video = make_dream_video(
        args.run_dir,
        out,
        steps=args.steps,
        context=args.context,
        skip=args.start,
        checkpoint=args.checkpoint,
        seed=args.seed,
        fps=args.fps,
        scale=args.scale,
        device=args.device,
    )
    rollout = video.rollout
    height, width = video.frame_size
    imagined = len(rollout) - rollout.context
    ends = f", {video.episodes_ended} episode ends" if video.episodes_ended else ""
    print(
        f"wrote {video.path}: {len(rollout)} frames ({rollout.context} context + {imagined} "
        f"imagined{ends}), {width}x{height} pixels"
    )
    return 0
