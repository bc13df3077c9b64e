"""`storm-wm eval`: evaluate a run's checkpoint and write eval.json."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO, get_args

from storm_wm.config import Bookkeeping, Protocol


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a trained run",
        allow_abbrev=False,
        description="Play whole episodes with a run's checkpoint (sampled actions, as in the "
        "paper) and write RUN_DIR/eval.json with every return, the mean, the "
        "human-normalized score and the world model's open-loop k-step errors on windows of "
        "these episodes (k = 1, 5, 15). Ctrl-C writes the episodes finished so far, marked "
        "partial.",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    parser.add_argument(
        "--episodes",
        type=int,
        default=None,
        help="episodes to keep (default: the run's train.eval_episodes)",
    )
    parser.add_argument(
        "--envs",
        type=int,
        default=None,
        metavar="N",
        help="environments playing at once; a finished one starts the next episode "
        "(default: 5 with --bookkeeping released, else up to 16)",
    )
    parser.add_argument(
        "--bookkeeping",
        choices=get_args(Bookkeeping),
        default=None,
        help="whole: every episode played to its end, every reward counted (unbiased); "
        "released: the authors' eval script, the first episodes to finish kept and each final "
        "reward carried into the env's next episode (default: the run's train.eval_bookkeeping)",
    )
    parser.add_argument(
        "--protocol",
        choices=get_args(Protocol),
        default=None,
        help="default: the protocol the run trained with",
    )
    parser.add_argument("--greedy", action="store_true", help="argmax actions instead of sampling")
    parser.add_argument(
        "--checkpoint", type=int, default=None, metavar="STEP", help="default: the newest"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="reset episode k with seed SEED + k (default: seeds drawn from the run's seed)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FILE",
        help="where the results go (default: RUN_DIR/eval.json)",
    )
    parser.add_argument(
        "--diagnostic-windows",
        type=int,
        default=256,
        metavar="N",
        help="windows of the episodes on which to measure the world model's k-step errors "
        "(0: skip)",
    )
    parser.add_argument("--no-progress", action="store_true", help="print no progress line")
    parser.set_defaults(func=run)


LOG_INTERVAL = 30.0
"""Seconds between progress lines in a log (not a terminal), whatever the episode count."""


class Progress:
    """Episodes done and the mean so far: one line rewritten in place on a terminal; in a log,
    a line for the first episode, at every tenth of the episodes, and at least every
    LOG_INTERVAL seconds in between (a tenth of a million episodes is a long silence)."""

    def __init__(
        self, stream: TextIO, requested: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stream = stream
        self.requested = requested
        self.interactive = stream.isatty()
        self.clock = clock
        self.printed_tenth = 0
        self.printed_at: float | None = None
        self.open_line = False
        self.counted = 0
        self.total = 0.0

    def __call__(self, episodes) -> None:
        for episode_return in episodes.returns[self.counted :]:
            self.total += episode_return
        self.counted = done = len(episodes)
        text = f"eval: {done}/{self.requested} episodes, mean return so far {self.total / done:.2f}"
        if self.interactive:
            self.stream.write(f"\r{text}\033[K")
            self.open_line = True
        else:
            tenth, now = done * 10 // self.requested, self.clock()
            waited = self.printed_at is None or now - self.printed_at >= LOG_INTERVAL
            if tenth <= self.printed_tenth and not waited:
                return
            self.printed_tenth, self.printed_at = tenth, now
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.open_line:
            self.stream.write("\n")
            self.stream.flush()
            self.open_line = False


def run(args: argparse.Namespace) -> int:
    from storm_wm.evaluation import EvaluationInterrupted, evaluate
    from storm_wm.persistence.agent import check_run_dir, load_agent
    from storm_wm.writable import check_writable

    check_run_dir(args.run_dir)
    out = args.out if args.out is not None else args.run_dir / "eval.json"
    check_writable(out)  # before minutes of play, not after
    agent = load_agent(args.run_dir, args.checkpoint, args.device)
    requested = args.episodes or agent.config.train.eval_episodes
    progress = None if args.no_progress else Progress(sys.stderr, requested)
    try:
        result = evaluate(
            agent,
            args.episodes,
            protocol=args.protocol,
            greedy=args.greedy,
            seed=args.seed,
            diagnostic_windows=args.diagnostic_windows,
            envs=args.envs,
            bookkeeping=args.bookkeeping,
            out=out,
            on_episode=progress,
        )
    except EvaluationInterrupted as stop:
        if progress is not None:
            progress.close()
        if stop.during_diagnostics:
            written = (
                f"all {stop.finished} episodes were played and written to {stop.path}, "
                "without the world model's k-step errors"
            )
        elif stop.path is None:
            written = "no episode had finished, nothing written"
        else:
            written = (
                f"wrote the {stop.finished} of {stop.requested} episodes that had finished to "
                f"{stop.path}, marked partial"
            )
        print(f"storm-wm eval: interrupted; {written}", file=sys.stderr)
        return 130
    finally:
        if progress is not None:
            progress.close()
    normalized = result["human_normalized"]
    extra = f", human-normalized {normalized:.3f}" if normalized is not None else ""
    if normalized is not None and not result["comparable"]:
        extra += f" (not comparable with published scores: {result['comparable_reason']})"
    print(
        f"{result['game']} step {result['step']}: mean return {result['mean']:.2f} "
        f"+- {result['std']:.2f} over {result['episodes']} episodes ({result['bookkeeping']} "
        f"bookkeeping){extra} -> {out}"
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
            f"(repeat-last {record['frame_mse_repeat_last']:.4f}, "
            f"own frame drawn {record['frame_mse_posterior']:.4f}), "
            f"reward error {record['reward_abs_error']:.3f}, "
            f"end accuracy {record['termination_accuracy']:.3f}"
        )
    skipped = [str(record["k"]) for record in quality["skipped_horizons"]]
    if skipped:
        parts.append(f"k={','.join(skipped)} skipped (see eval.json)")
    return f"world model, open loop after {quality['context']} real frames: " + "; ".join(parts)
