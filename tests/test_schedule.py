"""The update schedule: warm-up, then world-model updates, and agent updates from
`train.agent_start` on (0, the paper's: together with the world model's from the first)."""

from __future__ import annotations

from pathlib import Path

import torch

from storm_wm.config import build_config
from storm_wm.envs import make_env
from storm_wm.run.train import build_components
from storm_wm.training.loop import train_loop

WARMUP, AGENT_START = 20, 30


def weights(module: torch.nn.Module) -> list[torch.Tensor]:
    return [parameter.detach().clone() for parameter in module.parameters()]


def changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def run_to(tmp_path: Path, steps: int, agent_start: int):
    """toy+tiny trained for `steps`, with the weights it started from."""
    config = build_config(
        "toy+tiny",
        {
            "train.steps": steps,
            "train.warmup_steps": WARMUP,
            "train.agent_start": agent_start,
            "train.diagnostics_every": 0,
            "train.video_every": 0,
        },
    )
    env = make_env("toy:catch", seed=config.seed, image_size=16)
    components = build_components(config, tmp_path, "toy:catch", env)
    models = components.models
    start = weights(models.world_model), weights(models.actor_critic)
    state = train_loop(
        config, env, components.replay, components.trainer, components.policy, components.rng
    )
    return models, start, state


def test_before_agent_start_only_the_world_model_learns(tmp_path: Path):
    models, (world_model, actor_critic), state = run_to(tmp_path, AGENT_START - 1, AGENT_START)
    assert state.updates == AGENT_START - 1 - WARMUP
    assert changed(world_model, models.world_model)
    assert not changed(actor_critic, models.actor_critic)


def test_from_agent_start_on_the_agent_learns_too(tmp_path: Path):
    models, (_, actor_critic), _ = run_to(tmp_path, AGENT_START, AGENT_START)
    assert changed(actor_critic, models.actor_critic)


def test_by_default_the_agent_learns_from_the_first_update(tmp_path: Path):
    models, (_, actor_critic), state = run_to(tmp_path, WARMUP + 1, 0)
    assert state.updates == 1
    assert changed(actor_critic, models.actor_critic)
