"""Builds everything a training run needs from a Config and hands it to the loop."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from storm_wm.acting import Policy
from storm_wm.config import Config
from storm_wm.envs import make_env, resolve_game
from storm_wm.errors import StormError
from storm_wm.replay import ReplayBuffer
from storm_wm.training.checkpoint import save_checkpoint
from storm_wm.training.device import resolve_device, resolve_precision
from storm_wm.training.logger import Logger
from storm_wm.training.loop import LoopState, train_loop
from storm_wm.training.trainer import Trainer, build_models


def default_run_dir(config: Config) -> Path:
    game = config.env.game.replace(":", "-").replace("/", "-")
    return Path("runs") / f"{game}_{config.preset.replace('+', '-')}_seed{config.seed}"


def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def prepare_run_dir(run_dir: Path) -> None:
    """Refuses to reuse a run directory: it would mix two runs' metrics and checkpoints."""
    if (run_dir / "config.json").exists():
        raise StormError(
            f"{run_dir} already holds a run; pass --resume to continue it "
            "or choose another --run-dir"
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StormError(f"cannot create run directory {run_dir}: {error.strerror}") from None


def train(config: Config, run_dir: Path, show_progress: bool = True) -> LoopState:
    spec = resolve_game(config.env.game)
    env = make_env(
        spec, protocol=config.env.protocol, seed=config.seed, image_size=config.env.image_size,
        max_episode_frames=config.env.max_episode_frames,
    )  # fmt: skip
    prepare_run_dir(run_dir)
    config.save(run_dir / "config.json")

    rng = seed_everything(config.seed)
    device = resolve_device(config.device)
    dtype = resolve_precision(config.precision, device)
    num_actions = int(env.action_space.n)
    models = build_models(config, num_actions, device)
    trainer = Trainer(models, config, device, dtype)
    replay = ReplayBuffer(config.train.replay_capacity, env.observation_space.shape)
    policy = Policy(
        models.world_model, models.actor_critic, 1, num_actions,
        context_length=config.train.act_context, device=device, dtype=dtype, rng=rng,
        act_on_posterior=config.train.act_on_posterior,
    )  # fmt: skip

    def save(state: LoopState) -> None:
        save_checkpoint(run_dir, state.step, {
            "game": spec.name, "num_actions": num_actions, "updates": state.updates,
            "world_model": models.world_model.state_dict(),
            "actor_critic": models.actor_critic.state_dict(),
            "world_model_optimizer": trainer.world_model_optimizer.state_dict(),
            "agent_optimizer": trainer.agent_optimizer.state_dict(),
        })  # fmt: skip

    if show_progress:
        print(
            f"storm-wm: training {spec.name} ({config.preset}, seed {config.seed}) for "
            f"{config.train.steps} steps on {device} ({str(dtype).removeprefix('torch.')}) "
            f"-> {run_dir}"
        )
    with Logger(run_dir) as logger:
        state = train_loop(
            config, env, replay, trainer, policy, logger, rng, save, show_progress=show_progress
        )
    env.close()
    return state
