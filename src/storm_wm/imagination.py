"""Imagined rollouts: the world model dreams, the policy acts inside the dream."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from storm_wm.compilation import CompiledFunction
from storm_wm.models import ActorCritic, WorldModel
from storm_wm.models.actor_critic import agent_state


@dataclass
class ImaginedRollout:
    states: torch.Tensor  # (B, H + 1, latent + hidden)
    actions: torch.Tensor  # (B, H)
    rewards: torch.Tensor  # (B, H)
    terminations: torch.Tensor  # (B, H) bool


@dataclass
class ImaginationNoise:
    """The uniform numbers every sample of one rollout uses, drawn up front in the order the
    rollout uses them: the context's posterior, the prior after it, then each step's action and
    prior."""

    posterior: torch.Tensor  # (B, C, categoricals, classes): the context's posterior samples
    priors: torch.Tensor  # (H + 1, B, categoricals, classes): after the context, then each step
    actions: torch.Tensor  # (H, B, num_actions)

    @classmethod
    def draw(cls, world_model: WorldModel, batch: int, context: int, horizon: int):
        posterior = world_model.latent_noise(batch, context)
        priors = torch.empty(horizon + 1, *posterior[:, 0].shape, device=posterior.device)
        actions = torch.empty(horizon, batch, world_model.num_actions, device=posterior.device)
        priors[0].uniform_()  # row by row in the rollout's order, as torch.rand would draw them
        for step in range(horizon):
            actions[step].uniform_()
            priors[step + 1].uniform_()
        return cls(posterior, priors, actions)


@torch.no_grad()
def imagine(
    world_model: WorldModel,
    actor_critic: ActorCritic,
    context_frames: torch.Tensor,
    context_actions: torch.Tensor,
    horizon: int,
    noise: ImaginationNoise,
) -> ImaginedRollout:
    """Encodes real context windows (B, C, ...) and imagines `horizon` steps from their end.

    s_0 = (z_0 from the prior after the context, the feature h that produced it); then for each
    step: a_t ~ pi(s_t), h' = transformer(z_t, a_t), r_t and the end flag read from h', and
    z_{t+1} sampled from the prior of h'. Every sample uses its share of `noise`.
    """
    latent, feature, cache = world_model.start_from_context(
        context_frames, context_actions, noise.posterior, noise.priors[0]
    )
    states = [agent_state(latent, feature)]
    actions, features = [], []
    for step in range(horizon):
        action = actor_critic.act(states[-1], noise.actions[step])
        feature, latent = world_model.step(latent, action, cache, noise.priors[step + 1])
        states.append(agent_state(latent, feature))
        actions.append(action)
        features.append(feature)
    # Reward and termination heads run once over all steps instead of once per step.
    stacked = torch.stack(features, dim=1)
    return ImaginedRollout(
        states=torch.stack(states, dim=1),
        actions=torch.stack(actions, dim=1),
        rewards=world_model.predict_reward(stacked),
        terminations=world_model.predict_termination(stacked),
    )


def _imagine_tensors(world_model, actor_critic, frames, actions, horizon, *noise):
    rollout = imagine(world_model, actor_critic, frames, actions, horizon, ImaginationNoise(*noise))
    return rollout.states, rollout.actions, rollout.rewards, rollout.terminations


class Imagination:
    """`imagine` with its noise drawn first, run eagerly or, with `compile`, through torch.compile.

    Compiled, the whole rollout is one graph: the horizon loop is unrolled, so each KV-cache
    position is a constant of the graph rather than a shape that changes from step to step.
    Since the noise is drawn eagerly either way, compiled code consumes PyTorch's generator
    exactly as eager code does and differs from it only by rounding.
    """

    def __init__(self, device: torch.device, compile: bool = False) -> None:
        self.function = (
            CompiledFunction(_imagine_tensors, device, "the imagination rollout")
            if compile
            else _imagine_tensors
        )

    def __call__(
        self,
        world_model: WorldModel,
        actor_critic: ActorCritic,
        frames: torch.Tensor,
        actions: torch.Tensor,
        horizon: int,
    ) -> ImaginedRollout:
        noise = ImaginationNoise.draw(world_model, *actions.shape, horizon)
        tensors = (frames, actions, horizon, noise.posterior, noise.priors, noise.actions)
        return ImaginedRollout(*self.function(world_model, actor_critic, *tensors))
