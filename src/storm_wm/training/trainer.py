"""One owner for optimizers, mixed precision, gradient clipping and the order of updates."""

from __future__ import annotations

import numpy as np
import torch

from storm_wm.config import Config
from storm_wm.device import autocast
from storm_wm.imagination import Imagination, ImaginedRollout
from storm_wm.models.agent import Models
from storm_wm.replay import ReplayBuffer
from storm_wm.training.update import GuardedUpdate, NonfiniteCounters, adam


class Trainer:
    """Updates the world model and the agent from replay; returns detached metric tensors.

    An update whose loss or gradient norm is not finite is skipped (`GuardedUpdate`);
    `nonfinite` counts such updates in a row per model, on the device, for the loop to read and
    stop on.
    """

    def __init__(self, models: Models, config: Config, device: torch.device, dtype: torch.dtype):
        self.models, self.config, self.device, self.dtype = models, config, device, dtype
        world_model, actor_critic = models.world_model, models.actor_critic
        wm, agent = config.world_model, config.agent
        self.world_model_optimizer = adam(world_model.parameters(), lr=wm.learning_rate)
        self.agent_optimizer = adam(
            [*actor_critic.actor.parameters(), *actor_critic.critic.parameters()],
            lr=agent.learning_rate,
            eps=agent.adam_eps,
        )
        self.nonfinite = NonfiniteCounters()
        guarded = {"skips": self.nonfinite, "device": device, "dtype": dtype}
        self.world_model_update = GuardedUpdate(
            "world_model", world_model, self.world_model_optimizer, clip=wm.grad_clip, **guarded
        )
        self.agent_update = GuardedUpdate(
            "agent",
            actor_critic,
            self.agent_optimizer,
            clip=agent.grad_clip,
            after=actor_critic.update_slow_critic,
            **guarded,
        )
        self.imagination = Imagination(device, compile=config.train.compile)

    def train_step(
        self, replay: ReplayBuffer, rng: np.random.Generator, step: int = 0, agent: bool = True
    ) -> dict:
        """One world-model update, then (if `agent`) one imagined batch and one agent update, at
        env step `step`."""
        metrics = self.update_world_model(replay, rng, step)
        if not agent:
            return metrics
        rollout = self.imagine(replay, rng)
        return metrics | self.update_agent(rollout, step)

    def update_world_model(
        self, replay: ReplayBuffer, rng: np.random.Generator, step: int = 0
    ) -> dict:
        wm = self.config.world_model
        batch = replay.sample(wm.batch_size, wm.sequence_length, rng).to(self.device)
        return self.world_model_update(
            batch.frames, batch.actions, batch.rewards, batch.terminations, step=step
        )

    def imagine(self, replay: ReplayBuffer, rng: np.random.Generator) -> ImaginedRollout:
        agent = self.config.agent
        batch = replay.sample(agent.imagination_batch, agent.context_length, rng).to(self.device)
        models = self.models
        with autocast(self.device, self.dtype):
            return self.imagination(
                models.world_model, models.actor_critic, batch.frames, batch.actions, agent.horizon
            )

    def update_agent(self, rollout: ImaginedRollout, step: int = 0) -> dict:
        return self.agent_update(
            rollout.states, rollout.actions, rollout.rewards, rollout.terminations, step=step
        )

    def state_dict(self) -> dict:
        """Optimizer states and non-finite counters (the models are saved by their owner)."""
        return {
            "world_model_optimizer": self.world_model_optimizer.state_dict(),
            "agent_optimizer": self.agent_optimizer.state_dict(),
            "nonfinite_counters": self.nonfinite.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.world_model_optimizer.load_state_dict(state["world_model_optimizer"])
        self.agent_optimizer.load_state_dict(state["agent_optimizer"])
        self.nonfinite.load_state_dict(state["nonfinite_counters"])
