"""One owner for optimizers, mixed precision, gradient clipping and the order of updates."""

from __future__ import annotations

import numpy as np
import torch

from storm_wm.config import Config
from storm_wm.device import autocast
from storm_wm.imagination import Imagination, ImaginedRollout
from storm_wm.models.agent import Models
from storm_wm.replay import ReplayBuffer
from storm_wm.training.nonfinite import (
    NonfiniteCounters,
    adam,
    apply_if_finite,
    keep_where_finite,
)


def _snapshot_buffers(module: torch.nn.Module) -> list[torch.Tensor]:
    """Copies of BatchNorm statistics and the return normalizer's EMAs, which the forward pass
    itself updates: a skipped update must leave them as they were, or a NaN would stay there."""
    return [buffer.clone() for buffer in module.buffers()]


def _masked_metrics(metrics: dict, finite: torch.Tensor) -> dict[str, torch.Tensor]:
    """A skipped update's metrics become NaN, which `MetricAccumulator` leaves out of its means
    (its other values are often NaN already and would poison the logged averages)."""
    masked = {name: torch.where(finite, value, torch.nan) for name, value in metrics.items()}
    masked["nonfinite"] = (~finite).float()
    return masked


class Trainer:
    """Updates the world model and the agent from replay; returns detached metric tensors.

    The world model is in train mode (BatchNorm batch statistics, dropout) only inside its own
    update; imagination and acting see it in eval mode.

    An update whose loss or gradient norm is not finite is skipped (no optimizer step, no slow
    critic step, buffers as before): one NaN would otherwise spread to every weight and to Adam's
    moments, ruining the run for good. The decision is taken on the device (see
    storm_wm.training.nonfinite), so an update never waits for the host; `nonfinite` counts
    such updates in a row per model, for the loop to read and stop on. No gradient scaler is
    needed: bf16 autocast keeps fp32's exponent range.
    """

    def __init__(self, models: Models, config: Config, device: torch.device, dtype: torch.dtype):
        self.models = models
        self.config = config
        self.device = device
        self.dtype = dtype
        world_model, actor_critic = models.world_model, models.actor_critic
        self.world_model_optimizer = adam(
            world_model.parameters(), lr=config.world_model.learning_rate
        )
        self.agent_parameters = [
            *actor_critic.actor.parameters(),
            *actor_critic.critic.parameters(),
        ]
        self.agent_optimizer = adam(
            self.agent_parameters, lr=config.agent.learning_rate, eps=config.agent.adam_eps
        )
        self.nonfinite = NonfiniteCounters(device)
        self.imagination = Imagination(device, compile=config.train.compile)

    @property
    def nonfinite_streaks(self) -> dict[str, int]:
        """Skipped updates in a row per model (reads the device: not for every update)."""
        return self.nonfinite.streaks

    @property
    def skipped_updates(self) -> int:
        return self.nonfinite.skipped_updates

    @skipped_updates.setter
    def skipped_updates(self, count: int) -> None:
        self.nonfinite.skipped_updates = count

    def _step(self, name, loss, optimizer, parameters, clip, step) -> tuple[torch.Tensor, ...]:
        """Backward, clip, step; skips the step when the loss or the gradient is not finite."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(parameters, clip)
        finite = torch.isfinite(loss.detach()) & torch.isfinite(norm)
        apply_if_finite(optimizer, finite)
        self.nonfinite.record(name, finite, step)
        return norm, finite

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

    def update_world_model(
        self, replay: ReplayBuffer, rng: np.random.Generator, step: int = 0
    ) -> dict:
        """One world-model update on a replay batch; `step` (the env step) dates a skip."""
        config = self.config.world_model
        batch = replay.sample(config.batch_size, config.sequence_length, rng).to(self.device)
        world_model = self.models.world_model
        buffers = _snapshot_buffers(world_model)
        world_model.train()
        with autocast(self.device, self.dtype):
            loss, metrics = world_model.loss(
                batch.frames, batch.actions, batch.rewards, batch.terminations
            )
        norm, finite = self._step(
            "world_model", loss, self.world_model_optimizer, world_model.parameters(),
            config.grad_clip, step,
        )  # fmt: skip
        world_model.eval()
        keep_where_finite(world_model, buffers, finite)
        metrics = _masked_metrics({**metrics, "grad_norm": norm}, finite)
        return {f"world_model/{name}": value for name, value in metrics.items()}

    def imagine(self, replay: ReplayBuffer, rng: np.random.Generator) -> ImaginedRollout:
        agent = self.config.agent
        batch = replay.sample(agent.imagination_batch, agent.context_length, rng).to(self.device)
        with autocast(self.device, self.dtype):
            return self.imagination(
                self.models.world_model,
                self.models.actor_critic,
                batch.frames,
                batch.actions,
                agent.horizon,
            )

    def update_agent(self, rollout: ImaginedRollout, step: int = 0) -> dict:
        """One actor-critic update on an imagined batch; `step` (the env step) dates a skip."""
        actor_critic = self.models.actor_critic
        buffers = _snapshot_buffers(actor_critic)
        with autocast(self.device, self.dtype):
            loss, metrics = actor_critic.loss(
                rollout.states, rollout.actions, rollout.rewards, rollout.terminations
            )
        norm, finite = self._step(
            "agent", loss, self.agent_optimizer, self.agent_parameters,
            self.config.agent.grad_clip, step,
        )  # fmt: skip
        actor_critic.update_slow_critic(where=finite)
        keep_where_finite(actor_critic, buffers, finite)
        metrics = _masked_metrics({**metrics, "grad_norm": norm}, finite)
        return {f"agent/{name}": value for name, value in metrics.items()}

    def train_step(self, replay: ReplayBuffer, rng: np.random.Generator, step: int = 0) -> dict:
        """One world-model update, one imagined batch, one agent update, at env step `step`."""
        metrics = self.update_world_model(replay, rng, step)
        rollout = self.imagine(replay, rng)
        metrics.update(self.update_agent(rollout, step))
        return metrics
