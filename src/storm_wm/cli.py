"""The `storm-wm` command: one sub-command per module in `storm_wm.commands`.

Each command module exposes `add_parser(subparsers)` and sets `func` on its parser;
a `StormError` raised anywhere becomes a one-line message and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from storm_wm import __version__
from storm_wm.commands import bench, config, dream, info, play, report, sweep, train
from storm_wm.commands import eval as evaluate
from storm_wm.errors import StormError

COMMANDS = (train, evaluate, info, config, bench, report, dream, play, sweep)
"""In the order `storm-wm --help` lists them. Each imports its heavy modules (torch, gymnasium)
only when it runs, so that `storm-wm --version` and `storm-wm config` start at once."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="storm-wm",
        description="STORM, a stochastic-transformer world-model agent: train, evaluate, "
        "inspect and compare runs.",
    )
    parser.add_argument("--version", action="version", version=f"storm-wm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    # Ctrl-C reaches every command as KeyboardInterrupt (eval keeps its finished episodes, a
    # sweep stops its runs), also when a parent started this process with SIGINT ignored, as
    # shells do for a script's background jobs. Training installs its own handlers on top.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return int(args.func(args) or 0)
    except StormError as error:
        print(f"storm-wm {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"storm-wm {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`storm-wm config | head`): not our error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
