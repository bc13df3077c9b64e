"""Imagined rollouts: the world model dreams, the policy acts inside the dream."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from storm_wm.models import ActorCritic, WorldModel


@dataclass
class ImaginedRollout:
    states: torch.Tensor  # (B, H + 1, latent + hidden)
    actions: torch.Tensor  # (B, H)
    rewards: torch.Tensor  # (B, H)
    terminations: torch.Tensor  # (B, H) bool


@torch.no_grad()
def imagine(
    world_model: WorldModel,
    actor_critic: ActorCritic,
    context_frames: torch.Tensor,
    context_actions: torch.Tensor,
    horizon: int,
) -> ImaginedRollout:
    """Encodes real context windows (B, C, ...) and imagines `horizon` steps from their end.

    s_0 = (z_0 from the prior after the context, the feature h that produced it); then for each
    step: a_t ~ pi(s_t), h' = transformer(z_t, a_t), r_t and the end flag read from h', and
    z_{t+1} sampled from the prior of h'.
    """
    start = world_model.start_from_context(context_frames, context_actions)
    latent, feature, cache = start.latent, start.feature, start.cache
    states = [torch.cat([latent, feature.float()], dim=-1)]
    actions, features = [], []
    for _ in range(horizon):
        action = actor_critic.act(states[-1])
        feature = world_model.transformer.step(latent[:, None], action[:, None], cache)[:, 0]
        latent = world_model.sample(world_model.prior_logits(feature))
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
