"""make_env: one entry point that builds any game as 64 x 64 RGB frames with discrete actions."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from storm_wm.envs.atari import LIFE_LOSS_RULES, PROTOCOLS, make_atari_env
from storm_wm.envs.catalog import GameSpec, resolve_game
from storm_wm.envs.gym_pixels import make_gym_pixel_env
from storm_wm.envs.toy import CatchEnv
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
    protocol: str = "storm",
    seed: int | None = None,
    image_size: int = 64,
    max_episode_frames: int = 108_000,
    life_loss: str = "every",
) -> gym.Env:
    """Build a game whose observations are uint8 (image_size, image_size, 3) RGB frames.

    Every env has a Discrete action space and puts ``info["life_loss"]`` in every reset and step
    (only Atari games ever set it True). ``protocol`` ("storm" or "standard", README),
    ``max_episode_frames`` and ``life_loss`` (the rule that flags lost lives, "every" or
    "released", see LifeLossInfo) configure Atari games only; the other games accept and
    ignore them so that one config drives every game.
    """
    if protocol not in PROTOCOLS:
        raise StormError(f"unknown protocol {protocol!r}; use one of: {', '.join(PROTOCOLS)}")
    if life_loss not in LIFE_LOSS_RULES:
        raise StormError(
            f"unknown life-loss rule {life_loss!r}; use one of: {', '.join(LIFE_LOSS_RULES)}"
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


def make_vector_env(
    game: str | GameSpec,
    num_envs: int,
    *,
    protocol: str = "storm",
    seed: int | None,
    image_size: int = 64,
) -> gym.vector.SyncVectorEnv:
    """Run ``num_envs`` copies side by side (evaluation episodes), seeded seed, seed + 1, ...

    Copies run in one process: evaluation is dominated by the agent's forward pass, and one
    process keeps every copy's seed and emulator easy to reason about.
    """
    if num_envs < 1:
        raise StormError(f"need at least one environment, got num_envs={num_envs}")
    spec = game if isinstance(game, GameSpec) else resolve_game(game)

    def factory(index: int):
        env_seed = None if seed is None else seed + index
        return lambda: make_env(spec, protocol=protocol, seed=env_seed, image_size=image_size)

    return gym.vector.SyncVectorEnv([factory(index) for index in range(num_envs)])
