"""Builds a play window from a run directory: which world, who acts, at what speed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from storm_wm.acting import Policy
from storm_wm.config import Config
from storm_wm.device import resolve_precision
from storm_wm.envs import action_meanings, make_env, resolve_game
from storm_wm.persistence.agent import load_models
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
    config = Config.load(run_dir / "config.json")
    spec = resolve_game(config.env.game)
    env = make_env(
        spec, protocol=config.env.protocol, image_size=config.env.image_size,
        max_episode_frames=config.env.max_episode_frames,
    )  # fmt: skip
    meanings = action_meanings(env)
    fps = fps or (ATARI_FPS if spec.kind == "atari" else OTHER_FPS)
    if not (dream or watch):
        return PlayApp(RealWorld(env, seed), meanings, fps=fps, scale=scale)

    _, models, _ = load_models(run_dir, checkpoint, device)
    model_device = next(models.world_model.parameters()).device
    dtype = resolve_precision(config.precision, model_device)
    if seed is not None:
        torch.manual_seed(seed)
    agent = None
    if dream:
        world = DreamWorld(models.world_model, env, dtype, seed)
        if watch:
            agent = DreamAgent(models.actor_critic, world, len(meanings), seed or 0)
    else:
        world = RealWorld(env, seed)
        policy = Policy(
            models.world_model, models.actor_critic, 1, len(meanings),
            context_length=config.train.act_context, device=model_device, dtype=dtype,
            rng=np.random.default_rng(seed), act_on_posterior=config.train.act_on_posterior,
        )  # fmt: skip
        agent = RealAgent(policy)
    return PlayApp(world, meanings, agent=agent, fps=fps, scale=scale)
