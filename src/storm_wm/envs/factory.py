"""make_env: one entry point that builds any game as 64 x 64 RGB frames with discrete actions."""

from __future__ import annotations

import dataclasses
from typing import Any, get_args

import gymnasium as gym
import numpy as np

from storm_wm.config import EnvConfig, LifeLossRule
from storm_wm.envs.atari import PROTOCOLS, make_atari_env
from storm_wm.envs.catalog import resolve_game
from storm_wm.envs.gym_pixels import make_gym_pixel_env
from storm_wm.envs.toy import LEFT, RIGHT, STAY, CatchEnv
from storm_wm.errors import StormError


class SeedFirstReset(gym.Wrapper):
    """Use make_env's seed for the first reset that is given none, and seed the action space.

    A caller that builds an env with a seed then calls ``reset()`` gets the same episodes every
    run, without having to pass the seed twice. Later resets continue the seeded generators.
    """

    def __init__(self, env: gym.Env, seed: int | None) -> None:
        super().__init__(env)
        self.pending_seed = seed
        if seed is not None:
            self.action_space.seed(seed)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is None:
            seed = self.pending_seed
        self.pending_seed = None
        return self.env.reset(seed=seed, options=options)


def make_env(env: EnvConfig | str, *, seed: int | None = None, **changes: Any) -> gym.Env:
    """Build a game whose observations are uint8 (image_size, image_size, 3) RGB frames.

    `env` is the run's EnvConfig, or a game's name for the defaults; `changes` replace its
    fields (`protocol="standard"`). Every env has a Discrete action space and puts
    ``info["life_loss"]`` in every reset and step (only Atari games ever set it True). The
    protocol, the frame cap and the life-loss rule (see LifeLossInfo) configure Atari games
    only; the other games ignore them, so that one config drives every game.
    """
    config = dataclasses.replace(EnvConfig(game=env) if isinstance(env, str) else env, **changes)
    if config.protocol not in PROTOCOLS:
        raise StormError(
            f"unknown protocol {config.protocol!r}; use one of: {', '.join(PROTOCOLS)}"
        )
    if config.life_loss not in get_args(LifeLossRule):
        raise StormError(
            f"unknown life-loss rule {config.life_loss!r}; use one of: "
            f"{', '.join(get_args(LifeLossRule))}"
        )
    if config.image_size < 1:
        raise StormError(f"image size must be a positive number of pixels, got {config.image_size}")
    spec = resolve_game(config.game)
    if spec.kind == "atari":
        game = make_atari_env(
            spec.name,
            protocol=config.protocol,
            image_size=config.image_size,
            max_episode_frames=config.max_episode_frames,
            life_loss=config.life_loss,
        )
    elif spec.kind == "toy":
        game = CatchEnv(image_size=config.image_size)
    elif spec.kind == "gym":
        game = make_gym_pixel_env(spec.name.removeprefix("gym:"), image_size=config.image_size)
    else:
        raise StormError(f"unknown game kind {spec.kind!r}; use atari, toy or gym")
    return SeedFirstReset(game, seed)


def action_meanings(env: gym.Env) -> list[str]:
    """The game's name for each action: the ALE's (NOOP, FIRE, UPRIGHT, ...) for Atari games,
    toy:catch's three moves, and the bare numbers for any other game."""
    unwrapped = env.unwrapped
    if hasattr(unwrapped, "get_action_meanings"):
        return list(unwrapped.get_action_meanings())
    if isinstance(unwrapped, CatchEnv):
        names = {STAY: "NOOP", LEFT: "LEFT", RIGHT: "RIGHT"}
        return [names[index] for index in range(len(names))]
    return [str(index) for index in range(int(env.action_space.n))]
