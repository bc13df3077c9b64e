"""make_env: one entry point that builds any game as 64 x 64 RGB frames with discrete actions."""

from __future__ import annotations

from typing import Any, get_args

import gymnasium as gym
import numpy as np

from storm_wm.config import LifeLossRule, Protocol
from storm_wm.envs.atari import PROTOCOLS, make_atari_env
from storm_wm.envs.catalog import GameSpec, resolve_game
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


def make_env(
    game: str | GameSpec,
    *,
    protocol: Protocol = "storm",
    seed: int | None = None,
    image_size: int = 64,
    max_episode_frames: int = 108_000,
    life_loss: LifeLossRule = "every",
) -> gym.Env:
    """Build a game whose observations are uint8 (image_size, image_size, 3) RGB frames.

    Every env has a Discrete action space and puts ``info["life_loss"]`` in every reset and step
    (only Atari games ever set it True). ``protocol`` ("storm" or "standard", SPEC.md),
    ``max_episode_frames`` and ``life_loss`` (the rule that flags lost lives, "every" or
    "released", see LifeLossInfo) configure Atari games only; the other games accept and
    ignore them so that one config drives every game.
    """
    if protocol not in PROTOCOLS:
        raise StormError(f"unknown protocol {protocol!r}; use one of: {', '.join(PROTOCOLS)}")
    if life_loss not in get_args(LifeLossRule):
        raise StormError(
            f"unknown life-loss rule {life_loss!r}; use one of: {', '.join(get_args(LifeLossRule))}"
        )
    if image_size < 1:
        raise StormError(f"image size must be a positive number of pixels, got {image_size}")
    spec = game if isinstance(game, GameSpec) else resolve_game(game)
    if spec.kind == "atari":
        env = make_atari_env(
            spec.name,
            protocol=protocol,
            image_size=image_size,
            max_episode_frames=max_episode_frames,
            life_loss=life_loss,
        )
    elif spec.kind == "toy":
        env = CatchEnv(image_size=image_size)
    elif spec.kind == "gym":
        env = make_gym_pixel_env(spec.name.removeprefix("gym:"), image_size=image_size)
    else:
        raise StormError(f"unknown game kind {spec.kind!r}; use atari, toy or gym")
    return SeedFirstReset(env, seed)


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
