"""Imagined rollouts: the world model dreams, the policy acts inside the dream."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from storm_wm.compilation import CompiledFunction
from storm_wm.models import ActorCritic, WorldModel


@dataclass
class ImaginedRollout:
    states: torch.Tensor  # (B, H + 1, latent + hidden)
    actions: torch.Tensor  # (B, H)
    rewards: torch.Tensor  # (B, H)
    terminations: torch.Tensor  # (B, H) bool


@dataclass
class ImaginationNoise:
    """The uniform numbers every sample of one rollout uses, drawn in the order `imagine` would
    draw them itself, so a rollout given this noise is the one `imagine` draws unaided."""

    posterior: torch.Tensor  # (B, C, categoricals, classes): the context's posterior samples
    priors: torch.Tensor  # (H + 1, B, categoricals, classes): after the context, then each step
    actions: torch.Tensor  # (H, B, num_actions)

    @classmethod
    def draw(
        cls, world_model: WorldModel, batch: int, context: int, horizon: int, device: torch.device
    ) -> ImaginationNoise:
        config = world_model.config
        latent_shape = (batch, config.categoricals, config.classes)
        posterior = torch.rand(batch, context, *latent_shape[1:], device=device)
        priors, actions = [torch.rand(latent_shape, device=device)], []
        for _ in range(horizon):
            actions.append(torch.rand(batch, world_model.num_actions, device=device))
            priors.append(torch.rand(latent_shape, device=device))
        return cls(posterior, torch.stack(priors), torch.stack(actions))


@torch.no_grad()
def imagine(
    world_model: WorldModel,
    actor_critic: ActorCritic,
    context_frames: torch.Tensor,
    context_actions: torch.Tensor,
    horizon: int,
    noise: ImaginationNoise | None = None,
) -> ImaginedRollout:
    """Encodes real context windows (B, C, ...) and imagines `horizon` steps from their end.

    s_0 = (z_0 from the prior after the context, the feature h that produced it); then for each
    step: a_t ~ pi(s_t), h' = transformer(z_t, a_t), r_t and the end flag read from h', and
    z_{t+1} sampled from the prior of h'. With `noise`, samples use it instead of the generator.
    """
    start = world_model.start_from_context(
        context_frames, context_actions,
        uniform=None if noise is None else (noise.posterior, noise.priors[0]),
    )  # fmt: skip
    latent, feature, cache = start.latent, start.feature, start.cache
    states = [torch.cat([latent, feature.float()], dim=-1)]
    actions, features = [], []
    for step in range(horizon):
        action_noise, prior_noise = (
            (None, None) if noise is None else (noise.actions[step], noise.priors[step + 1])
        )
        action = actor_critic.act(states[-1], uniform=action_noise)
        feature = world_model.transformer.step(latent[:, None], action[:, None], cache)[:, 0]
        latent = world_model.sample(world_model.prior_logits(feature), prior_noise)
        states.append(torch.cat([latent, feature.float()], dim=-1))
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


def _imagine_tensors(
    world_model, actor_critic, frames, actions, horizon, posterior, priors, action_noise
) -> tuple[torch.Tensor, ...]:
    noise = ImaginationNoise(posterior, priors, action_noise)
    rollout = imagine(world_model, actor_critic, frames, actions, horizon, noise)
    return rollout.states, rollout.actions, rollout.rewards, rollout.terminations


class CompiledImagination:
    """`imagine` through torch.compile, called as `imagine` is.

    The whole rollout is one graph: the horizon loop is unrolled, so each KV-cache position is a
    constant of the graph rather than a shape that changes from step to step. The sampling noise
    is drawn eagerly first, in `imagine`'s own order (`ImaginationNoise`): compiled code then
    consumes PyTorch's generator exactly as eager code does and differs from it only by
    rounding.
    """

    def __init__(self, device: torch.device) -> None:
        self.function = CompiledFunction(_imagine_tensors, device, "the imagination rollout")

    def __call__(
        self,
        world_model: WorldModel,
        actor_critic: ActorCritic,
        context_frames: torch.Tensor,
        context_actions: torch.Tensor,
        horizon: int,
    ) -> ImaginedRollout:
        batch, context = context_actions.shape
        noise = ImaginationNoise.draw(world_model, batch, context, horizon, context_frames.device)
        return ImaginedRollout(
            *self.function(
                world_model,
                actor_critic,
                context_frames,
                context_actions,
                horizon,
                noise.posterior,
                noise.priors,
                noise.actions,
            )  # fmt: skip
        )
