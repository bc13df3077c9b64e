"""One owner for optimizers, mixed precision, gradient clipping and the order of updates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from storm_wm.config import Config
from storm_wm.imagination import ImaginedRollout, imagine
from storm_wm.models import ActorCritic, WorldModel
from storm_wm.replay import ReplayBuffer
from storm_wm.training.device import autocast


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


class Trainer:
    """Updates the world model and the agent from replay; returns detached metric tensors.

    The world model is in train mode (BatchNorm batch statistics, dropout) only inside its own
    update; imagination and acting see it in eval mode.
    """

    def __init__(self, models: Models, config: Config, device: torch.device, dtype: torch.dtype):
        self.models = models
        self.config = config
        self.device = device
        self.dtype = dtype
        world_model, actor_critic = models.world_model, models.actor_critic
        self.world_model_optimizer = torch.optim.Adam(
            world_model.parameters(), lr=config.world_model.learning_rate
        )
        self.agent_parameters = [
            *actor_critic.actor.parameters(),
            *actor_critic.critic.parameters(),
        ]
        self.agent_optimizer = torch.optim.Adam(
            self.agent_parameters, lr=config.agent.learning_rate, eps=config.agent.adam_eps
        )

    def _step(self, loss, optimizer, parameters, clip) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(parameters, clip)
        optimizer.step()
        return norm

    def update_world_model(self, replay: ReplayBuffer, rng: np.random.Generator) -> dict:
        config = self.config.world_model
        batch = replay.sample(config.batch_size, config.sequence_length, rng).to(self.device)
        world_model = self.models.world_model
        world_model.train()
        with autocast(self.device, self.dtype):
            loss, metrics = world_model.loss(
                batch.frames, batch.actions, batch.rewards, batch.terminations
            )
        metrics["grad_norm"] = self._step(
            loss, self.world_model_optimizer, world_model.parameters(), config.grad_clip
        )
        world_model.eval()
        return {f"world_model/{name}": value for name, value in metrics.items()}

    def imagine(self, replay: ReplayBuffer, rng: np.random.Generator) -> ImaginedRollout:
        agent = self.config.agent
        batch = replay.sample(agent.imagination_batch, agent.context_length, rng).to(self.device)
        with autocast(self.device, self.dtype):
            return imagine(
                self.models.world_model,
                self.models.actor_critic,
                batch.frames,
                batch.actions,
                agent.horizon,
            )

    def update_agent(self, rollout: ImaginedRollout) -> dict:
        actor_critic = self.models.actor_critic
        with autocast(self.device, self.dtype):
            loss, metrics = actor_critic.loss(
                rollout.states, rollout.actions, rollout.rewards, rollout.terminations
            )
        metrics["grad_norm"] = self._step(
            loss, self.agent_optimizer, self.agent_parameters, self.config.agent.grad_clip
        )
        actor_critic.update_slow_critic()
        return {f"agent/{name}": value for name, value in metrics.items()}

    def train_step(self, replay: ReplayBuffer, rng: np.random.Generator) -> dict:
        """One world-model update, one imagined batch, one agent update."""
        metrics = self.update_world_model(replay, rng)
        rollout = self.imagine(replay, rng)
        metrics.update(self.update_agent(rollout))
        return metrics
