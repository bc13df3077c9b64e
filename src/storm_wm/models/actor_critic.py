"""The actor-critic that learns inside imagination: policy, critic, slow critic, return scale."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from storm_wm.config import AgentConfig
from storm_wm.models.networks import mlp_trunk
from storm_wm.ops import (
    ReturnNormalizer,
    TwoHot,
    categorical_entropy,
    lambda_returns,
    sample_one_hot,
)


def agent_state(latent: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
    """s_t = concat(z_t, h), what the actor and the critic read: (B, latent + hidden) in fp32."""
    return torch.cat([latent, feature.float()], dim=-1)


class ActorCritic(nn.Module):
    """Acts on s_t = concat(z_t, h) and learns from imagined rollouts (see `loss`)."""

    def __init__(self, config: AgentConfig, state_size: int, num_actions: int) -> None:
        super().__init__()
        self.config = config
        self.actor = nn.Sequential(
            mlp_trunk(state_size, config.hidden), nn.Linear(config.hidden, num_actions)
        )
        self.critic = nn.Sequential(
            mlp_trunk(state_size, config.hidden), nn.Linear(config.hidden, config.bins)
        )
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.value_twohot = TwoHot(config.bins)
        self.return_normalizer = ReturnNormalizer(
            config.return_norm_decay,
            config.return_norm_low,
            config.return_norm_high,
            percentile=config.return_norm_percentile,
        )

    def policy_logits(self, states: torch.Tensor) -> torch.Tensor:
        return self.actor(states).float()

    @torch.no_grad()
    def act(
        self, states: torch.Tensor, uniform: torch.Tensor, greedy: bool = False
    ) -> torch.Tensor:
        """Samples the policy with the sampling noise `uniform` (B, actions), or if greedy takes
        its argmax: (B, state) -> (B,) actions."""
        logits = self.policy_logits(states)
        if greedy:
            return logits.argmax(-1)
        return sample_one_hot(logits, uniform, straight_through=False).argmax(-1)

    def loss(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        terminations: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Actor and critic losses on an imagined batch: states (B, T+1, state), the rest (B, T)."""
        config = self.config
        logits = self.policy_logits(states[:, :-1])
        value_logits = self.critic(states).float()
        values = self.value_twohot.decode(value_logits)  # (B, T + 1)
        with torch.no_grad():
            slow_values = self.value_twohot.decode(self.slow_critic(states).float())
            continues = 1.0 - terminations.float()
            returns = lambda_returns(
                rewards, values, continues, config.gamma, config.lambda_, config.lambda_variant
            )
            slow_returns = lambda_returns(
                rewards, slow_values, continues, config.gamma, config.lambda_, config.lambda_variant
            )
            self.return_normalizer.update(returns)
            advantages = (returns - values[:, :-1]) / self.return_normalizer.scale()

        log_probs = F.log_softmax(logits, dim=-1)
        action_log_probs = log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        entropy = categorical_entropy(logits)
        policy_loss = (
            -(action_log_probs * advantages).mean() - config.entropy_scale * entropy.mean()
        )
        value_loss = (
            self.value_twohot.loss(value_logits[:, :-1], returns)
            + self.value_twohot.loss(value_logits[:, :-1], slow_returns)
        ).mean()
        total = policy_loss + value_loss
        metrics = {
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": entropy.mean(),
            "return": returns.mean(),
            "value": values.mean(),
            "advantage": advantages.mean(),
            "return_scale": self.return_normalizer.scale(),
            "imagined_reward": rewards.mean(),
        }
        return total, {name: value.detach() for name, value in metrics.items()}

    @torch.no_grad()
    def update_slow_critic(self) -> None:
        """Moves the slow critic towards the critic (a skipped update puts it back)."""
        decay = self.config.slow_critic_decay
        for slow, current in zip(
            self.slow_critic.parameters(), self.critic.parameters(), strict=True
        ):
            slow.lerp_(current, 1 - decay)
