"""The agent's two networks, built together from a config: the world model and the actor-critic."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from storm_wm.config import Config
from storm_wm.models.actor_critic import ActorCritic
from storm_wm.models.world_model import WorldModel


@dataclass
class Models:
    world_model: WorldModel
    actor_critic: ActorCritic


def build_models(config: Config, num_actions: int, device: torch.device) -> Models:
    world_model = WorldModel(config.world_model, num_actions, config.env.image_size)
    state_size = config.world_model.latent_size + config.world_model.hidden
    actor_critic = ActorCritic(config.agent, state_size, num_actions)
    world_model.to(device).eval()
    actor_critic.to(device).eval()
    return Models(world_model, actor_critic)
