"""Which runs a sweep holds: games x seeds, each with its run directory and its commands.

Everything is checked here, before any run starts: a typo in a game name or a train option
should cost a second, not a failed run per game an hour later.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storm_wm.config import Config
from storm_wm.envs import resolve_game
from storm_wm.errors import StormError
from storm_wm.games import ATARI_100K_GAMES
from storm_wm.hints import command
from storm_wm.options import add_train_options, config_from_args
from storm_wm.text import run_name

ATARI_26 = "atari26"
"""The --games keyword for the 26 games of the Atari 100k benchmark."""

RESERVED_TRAIN_OPTIONS = ("--game", "--seed", "--run-dir", "--resume")
"""Train options the sweep sets per run; a user passing them would silently be overridden."""


@dataclass(frozen=True)
class RunSpec:
    """One (game, seed) of a sweep: all a worker needs to train and evaluate it, picklable."""

    game: str
    seed: int
    run_dir: Path
    """Absolute, so that a Ray worker with another working directory finds the same run."""
    train_arguments: tuple[str, ...]
    """`storm-wm` arguments that start the run from nothing."""
    eval_arguments: tuple[str, ...]
    """`storm-wm` arguments that evaluate the trained run and write eval.json."""
    steps: int
    """The run's train.steps, for progress and to tell a finished training from a partial one."""

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def resume_arguments(self) -> tuple[str, ...]:
        """`storm-wm` arguments that continue an interrupted run from its newest checkpoint."""
        return ("train", "--resume", str(self.run_dir), "--no-progress")


@dataclass(frozen=True)
class SweepPlan:
    """The runs of a sweep and the arguments that define it (recorded in sweep.json)."""

    sweep_dir: Path
    runs: tuple[RunSpec, ...]
    arguments: dict[str, Any]


def parse_seeds(text: str) -> tuple[int, ...]:
    """`1-5` -> (1, 2, 3, 4, 5); `1,3,7-8` -> (1, 3, 7, 8). Each seed once, none negative."""
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise StormError(f"--seeds {text!r} is not a list of seeds; write e.g. 1-5 or 1,3,7")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise StormError(f"--seeds range {part.strip()!r} runs backwards; write {last}-{first}")
        seeds += range(first, last + 1)
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise StormError(f"--seeds {text!r} names seed {repeated[0]} twice; list each seed once")
    return tuple(seeds)


def parse_games(text: str) -> tuple[str, ...]:
    """`atari26` or a comma-separated list of games, resolved to their canonical names."""
    games: list[str] = []
    for part in text.split(","):
        name = part.strip()
        if not name:
            continue
        if name.lower() == ATARI_26:
            games += ATARI_100K_GAMES
        else:
            games.append(resolve_game(name).name)
    if not games:
        raise StormError(f"--games {text!r} names no game; write e.g. {ATARI_26} or Pong,Boxing")
    repeated = sorted({game for game in games if games.count(game) > 1})
    if repeated:
        raise StormError(f"--games names {repeated[0]} twice; list each game once")
    return tuple(games)


def check_train_options(options: list[str]) -> None:
    """Refuse the options the sweep sets itself for every run."""
    for option in options:
        name = option.partition("=")[0]
        if name in RESERVED_TRAIN_OPTIONS:
            raise StormError(
                f"{name} is set per run by the sweep; use --games and --seeds instead, "
                "and --out for where the runs go"
            )


def train_config(arguments: list[str]) -> Config:
    """The config `storm-wm train ARGUMENTS` would build, by train's own parser and rules."""
    parser = argparse.ArgumentParser(prog="storm-wm train", allow_abbrev=False)
    add_train_options(parser)
    try:
        parsed, extra = parser.parse_known_args(arguments)
    except SystemExit:
        raise StormError(
            "storm-wm train refuses these options (its message is above); "
            f"see `{command('train', '--help')}`"
        ) from None
    parsed.overrides = extra
    return config_from_args(parsed)


def run_dir_name(game: str, seed: int) -> str:
    return run_name(game, f"seed{seed}")


def default_sweep_dir(games_text: str, games: tuple[str, ...], preset: str, seeds: str) -> Path:
    """sweeps/<preset>_<games>_seeds<seeds>: the same command always finds its own sweep."""
    label = ATARI_26 if games_text.strip().lower() == ATARI_26 else "+".join(games)
    label = run_name(label)  # its `+` between games kept
    if len(label) > 60:
        label = f"{len(games)}games-{hashlib.sha1(label.encode()).hexdigest()[:8]}"
    seeds_label = re.sub(r"\s+", "", seeds)
    return Path("sweeps") / f"{preset.replace('+', '-')}_{label}_seeds{seeds_label}"


def plan_sweep(
    *,
    games_text: str,
    seeds_text: str,
    preset: str,
    steps: int | None,
    eval_episodes: int | None,
    train_options: list[str],
    sweep_dir: Path | None,
) -> SweepPlan:
    """Resolve games and seeds, check the train options against train itself, and name runs."""
    games = parse_games(games_text)
    seeds = parse_seeds(seeds_text)
    check_train_options(train_options)
    if steps is not None and steps <= 0:
        raise StormError(f"--steps must be positive, got {steps}")
    if eval_episodes is not None and eval_episodes <= 0:
        raise StormError(f"--eval-episodes must be positive, got {eval_episodes}")
    sweep_dir = sweep_dir or default_sweep_dir(games_text, games, preset, seeds_text)
    sweep_dir = sweep_dir.expanduser().resolve()
    shared = ["--preset", preset, *(["--steps", str(steps)] if steps is not None else [])]
    runs = []
    for game in games:
        config = train_config(["--game", game, *shared, *train_options])
        episodes, device = str(eval_episodes or config.train.eval_episodes), config.device
        for seed in seeds:
            run_dir = sweep_dir / run_dir_name(game, seed)
            train_arguments = ("train", "--game", game, "--seed", str(seed), *shared)
            train_arguments += ("--run-dir", str(run_dir), "--no-progress", *train_options)
            eval_arguments = ("eval", str(run_dir), "--episodes", episodes, "--device", device)
            runs.append(
                RunSpec(game, seed, run_dir, train_arguments, eval_arguments, config.train.steps)
            )
    arguments = {
        "games": list(games),
        "seeds": list(seeds),
        "preset": preset,
        "steps": steps,
        "eval_episodes": eval_episodes,
        "train_options": list(train_options),
    }
    return SweepPlan(sweep_dir, tuple(runs), arguments)
