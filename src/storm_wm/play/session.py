"""Builds a play window from a run directory: which world, who acts, at what speed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from storm_wm.acting import Policy
from storm_wm.config import Config
from storm_wm.envs import action_meanings, make_env, resolve_game
from storm_wm.persistence.agent import load_agent
from storm_wm.play.app import PlayApp
from storm_wm.play.worlds import DreamAgent, DreamWorld, RealAgent, RealWorld

ATARI_FPS = 15.0
"""Agent steps per second of a real Atari game: 60 frames per second, 4 frames per step."""

OTHER_FPS = 4.0


def build_session(
    run_dir: Path,
    *,
    dream: bool = False,
    watch: bool = False,
    checkpoint: int | None = None,
    fps: float | None = None,
    scale: int = 6,
    seed: int | None = None,
    device: str = "auto",
) -> PlayApp:
    """The window for `storm-wm play`. The checkpoint is loaded only when the model is needed
    (a dream, or the agent), so a person can play the real game of any run directory."""
    agent = load_agent(run_dir, checkpoint, device) if dream or watch else None
    config = agent.config if agent else Config.load(run_dir / "config.json")
    env = make_env(config.env)
    meanings = action_meanings(env)
    fps = fps or (ATARI_FPS if resolve_game(config.env.game).kind == "atari" else OTHER_FPS)
    if agent is None:
        return PlayApp(RealWorld(env, seed), meanings, fps=fps, scale=scale)

    models = agent.models_for(env)
    if seed is not None:
        torch.manual_seed(seed)
    player = None
    if dream:
        world = DreamWorld(models.world_model, env, agent.dtype, seed)
        if watch:
            player = DreamAgent(models.actor_critic, world, len(meanings), seed or 0)
    else:
        world = RealWorld(env, seed)
        player = RealAgent(
            Policy(models, config.train, 1, np.random.default_rng(seed), dtype=agent.dtype)
        )
    return PlayApp(world, meanings, agent=player, fps=fps, scale=scale)
