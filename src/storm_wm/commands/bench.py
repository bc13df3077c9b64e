"""`storm-wm bench`: per-phase time, FLOPs and fraction of the matrix-product peak of a training
step at a preset, on this machine, measured on the real training code."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storm_wm.config import Config, build_config
from storm_wm.errors import StormError
from storm_wm.options import add_config_options, config_overrides, preset_of

if TYPE_CHECKING:
    from storm_wm.benchmark.end_to_end import LoopSettings


_OPTIONS: dict[str, dict[str, Any]] = {
    "--repeats": {
        "type": int,
        "default": 5,
        "least": 1,
        "help": "timed repetitions (median; default 5)",
    },
    "--warmup": {
        "type": int,
        "default": 2,
        "least": 0,
        "help": "untimed passes first (default 2); the first, always run, counts the FLOPs",
    },
    "--threads": {
        "type": int,
        "least": 1,
        "help": "CPU threads for PyTorch (default: PyTorch's, one per core); on a machine shared "
        "with other jobs fewer threads can be faster",
    },
    "--profile": {
        "action": "store_true",
        "help": "also profile whole training steps after the timed ones (torch.profiler): per "
        "phase, and for acting + environment, wall time, device busy time and idle gaps, "
        "operator calls, kernel launches, host-device synchronisations, the top kernels or "
        "operators",
    },
    "--profile-steps": {
        "type": int,
        "default": 3,
        "least": 1,
        "metavar": "N",
        "help": "training steps profiled by --profile (default 3)",
    },
    "--loop-steps": {
        "type": int,
        "least": 0,
        "metavar": "N",
        "help": "also time N environment steps of the real training loop (acting, environment, "
        "updates, logging, checkpoints) after its warm-up; default: 500 on a GPU, 0 (skip) on a "
        "CPU, where a paper-preset step takes about half a minute",
    },
    "--loop-warmup": {
        "type": int,
        "default": 100,
        "least": 0,
        "metavar": "N",
        "help": "environment steps with updates run, untimed, before the loop's timed steps "
        "(after the preset's random warm-up; default 100)",
    },
    "--loop-variants": {
        "default": "eager,compiled",
        "metavar": "LIST",
        "help": "loop variants to time, in one run: eager, compiled (--train.compile true) or "
        "both (default)",
    },
    "--loop-checkpoint-every": {
        "type": int,
        "least": 1,
        "metavar": "N",
        "help": "checkpoint cadence of the loop's runs (default: half of --loop-steps, at most "
        "the preset's, so that the timed window holds checkpoints; the preset's own cadence "
        "times the steady state a run sees between checkpoints)",
    },
    "--concurrent": {
        "default": "",
        "metavar": "LIST",
        "help": "also time the loop with this many training processes sharing the device at "
        "once, e.g. 1,2,4 (measured in the order given): their aggregate environment steps/s "
        "(default: none)",
    },
}
"""bench's own options, each declared once: what argparse takes, and for a number the least
value it may have (`least`). The reproducing command line spells them in this order."""


def _value(args: argparse.Namespace, option: str) -> Any:
    return getattr(args, option.removeprefix("--").replace("-", "_"))


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="time and FLOP-count each phase of a training step",
        description="Time each phase of a training step (world-model update, imagination, agent "
        "update), the acting step and the environment at a preset, as medians after warm-up; "
        "count their FLOPs; measure the fp32 and bf16 matrix-product peaks in the same run; then "
        "(--loop-steps, on by default on a GPU) time the real training loop end to end, eager "
        "and compiled, and (--concurrent) several runs sharing the device. Any "
        "config field can be overridden with a dotted option, e.g. --agent.imagination_batch 256.",
        allow_abbrev=False,
    )
    add_config_options(parser, device=True)
    for option, settings in _OPTIONS.items():
        parser.add_argument(option, **{key: settings[key] for key in settings if key != "least"})
    parser.add_argument(
        "--json", type=Path, default=None, metavar="FILE", help="also write every figure as JSON"
    )
    parser.set_defaults(func=run, accepts_overrides=True)


def _check_least_values(args: argparse.Namespace) -> None:
    for option, settings in _OPTIONS.items():
        value, least = _value(args, option), settings.get("least")
        if least is not None and value is not None and value < least:
            bound = "0 or more" if least == 0 else f"at least {least}"
            raise StormError(f"{option} must be {bound}")


def _command_line(args: argparse.Namespace, config: Config) -> str:
    """The command that reproduces this run, every option spelled out."""
    words = ["storm-wm", "bench", "--preset", config.preset, "--device", config.device]
    words += ["--precision", config.precision]
    for option in _OPTIONS:
        value = _value(args, option)
        if value is None or value is False or value == "":
            continue
        if option == "--profile-steps" and not args.profile:
            continue
        words += [option] if value is True else [option, str(value)]
    return shlex.join(words + args.overrides)


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(word) for word in text.split(",") if word.strip())
    except ValueError:
        counts = (0,)
    if any(count < 1 for count in counts):
        raise StormError(f"--concurrent {text}: give run counts of 1 or more, e.g. 1,2,4")
    return counts


def loop_settings(args: argparse.Namespace, device) -> LoopSettings | None:
    """The end-to-end loop's settings from the command line; None when it is skipped."""
    from storm_wm.benchmark.end_to_end import VARIANTS, LoopSettings

    steps = args.loop_steps
    if steps is None:
        steps = 0 if device.type == "cpu" else 500
    variants = tuple(word.strip() for word in args.loop_variants.split(",") if word.strip())
    unknown = [variant for variant in variants if variant not in VARIANTS]
    if unknown or not variants:
        raise StormError(f"--loop-variants {args.loop_variants}: choose from {', '.join(VARIANTS)}")
    concurrent = _counts(args.concurrent)
    if steps == 0:
        if concurrent:
            raise StormError("--concurrent times the training loop: give --loop-steps N too")
        return None
    return LoopSettings(steps, args.loop_warmup, variants, concurrent, args.loop_checkpoint_every)


def _log(message: str) -> None:
    print(f"storm-wm bench: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    import torch

    from storm_wm.atomic import write_text_atomically
    from storm_wm.benchmark.results import format_table
    from storm_wm.benchmark.run import run_benchmark
    from storm_wm.device import choose_precision, resolve_device

    _check_least_values(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.json is not None and not args.json.parent.is_dir():
        raise StormError(
            f"--json {args.json}: directory {args.json.parent} does not exist; create it first"
        )
    config = build_config(preset_of(args), config_overrides(args))
    # The concurrent runs rebuild this config: from the preset and these, device included.
    overrides = {**config_overrides(args), "device": config.device, "precision": config.precision}
    device = resolve_device(config.device)
    precision = choose_precision(config.precision, device)
    loop = loop_settings(args, device)  # refuses bad loop options before anything is printed
    _log(f"precision {precision.name}: {precision.reason}")
    dtype = precision.dtype

    def write_json(result) -> None:
        """Written after the phases and after each loop measurement: a run stopped part-way
        (a time limit) keeps what it measured."""
        if args.json is not None:
            write_text_atomically(args.json, json.dumps(result.to_dict(), indent=2) + "\n")

    result = run_benchmark(
        config,
        device,
        dtype,
        repeats=args.repeats,
        warmup=args.warmup,
        profile_steps=args.profile_steps if args.profile else 0,
        command=_command_line(args, config),
        log=_log,
        loop=loop,
        overrides=overrides,
        on_figures=write_json,
    )
    print(format_table(result))
    write_json(result)
    return 0
