"""STORM's world model: categorical VAE + stochastic transformer + reward and termination heads."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from storm_wm.config import WorldModelConfig
from storm_wm.models.networks import Decoder, Encoder, mlp_trunk
from storm_wm.models.transformer import KVCache, StochasticTransformer
from storm_wm.ops import TwoHot, free_bits_kl, sample_one_hot, unimix_logits


def frames_to_input(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [0, 1]."""
    return frames.movedim(-1, -3).float().div_(255.0)


class WorldModel(nn.Module):
    def __init__(self, config: WorldModelConfig, num_actions: int, image_size: int = 64) -> None:
        super().__init__()
        self.config = config
        self.num_actions = num_actions
        self.encoder = Encoder(config.channels, image_size)
        self.posterior_head = nn.Linear(self.encoder.output_size, config.latent_size)
        self.transformer = StochasticTransformer(config, num_actions)
        self.prior_head = nn.Linear(config.hidden, config.latent_size)
        self.decoder = Decoder(config.latent_size, config.channels, image_size)
        self.reward_head = nn.Sequential(
            mlp_trunk(config.hidden, config.head_hidden), nn.Linear(config.head_hidden, config.bins)
        )
        self.termination_head = nn.Sequential(
            mlp_trunk(config.hidden, config.head_hidden), nn.Linear(config.head_hidden, 1)
        )
        self.reward_twohot = TwoHot(config.bins)

    # -- distributions -------------------------------------------------------------------------
    def _categorical_logits(self, flat_logits: torch.Tensor) -> torch.Tensor:
        """(..., latent) -> unimix log-probabilities (..., categoricals, classes)."""
        shaped = flat_logits.unflatten(-1, (self.config.categoricals, self.config.classes))
        return unimix_logits(shaped, self.config.unimix)

    def posterior_logits(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (B, T, H, W, 3) -> posterior log-probs (B, T, categoricals, classes)."""
        batch, time = frames.shape[:2]
        images = frames_to_input(frames.flatten(0, 1)).contiguous(memory_format=torch.channels_last)
        features = self.encoder(images).unflatten(0, (batch, time))
        return self._categorical_logits(self.posterior_head(features))

    def prior_logits(self, features: torch.Tensor) -> torch.Tensor:
        return self._categorical_logits(self.prior_head(features))

    @staticmethod
    def sample(logits: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        """(..., categoricals, classes) and its sampling noise -> one-hot sample (..., latent).

        Straight-through gradients only when gradients are being recorded (imagination and acting
        run without them and skip the extra softmax).
        """
        return sample_one_hot(logits, uniform, torch.is_grad_enabled()).flatten(-2)

    def latent_noise(self, *batch: int) -> torch.Tensor:
        """Sampling noise for latents of shape (*batch, latent), drawn on the model's device."""
        config, device = self.config, self.prior_head.weight.device
        return torch.rand(*batch, config.categoricals, config.classes, device=device)

    def encode(self, frames: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        """uint8 frames (B, T, H, W, 3) -> posterior samples z (B, T, latent)."""
        return self.sample(self.posterior_logits(frames), uniform)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """z (..., latent) -> reconstructed frames (..., 3, H, W), unclamped."""
        leading = latents.shape[:-1]
        return self.decoder(latents.flatten(0, -2)).unflatten(0, leading)

    def predict_reward(self, features: torch.Tensor) -> torch.Tensor:
        return self.reward_twohot.decode(self.reward_head(features))

    def predict_termination(self, features: torch.Tensor) -> torch.Tensor:
        """True where the model predicts the episode ends (logit > 0)."""
        return self.termination_head(features).squeeze(-1) > 0

    # -- training ------------------------------------------------------------------------------
    def loss(
        self,
        frames: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        terminations: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The world-model loss on a replay batch of (B, L) steps; metrics are detached tensors."""
        config = self.config
        posterior = self.posterior_logits(frames)  # (B, L, categoricals, classes)
        latents = self.sample(posterior, torch.rand_like(posterior, dtype=torch.float32))

        reconstruction = self.decode(latents)  # (B, L, 3, H, W)
        target = frames_to_input(frames)
        reconstruction_loss = (reconstruction.float() - target).square().sum((-3, -2, -1)).mean()

        features = self.transformer(latents, actions)  # (B, L, hidden)
        prior = self.prior_logits(features)
        reward_loss = self.reward_twohot.loss(self.reward_head(features), rewards).mean()
        termination_logits = self.termination_head(features).squeeze(-1).float()
        termination_loss = F.binary_cross_entropy_with_logits(
            termination_logits, terminations.float()
        )

        # h_t predicts the posterior of frame t + 1.
        next_posterior, predicted_prior = posterior[:, 1:], prior[:, :-1]
        dynamics_loss, dynamics_kl = free_bits_kl(
            next_posterior.detach(), predicted_prior, config.free_bits
        )
        representation_loss, _ = free_bits_kl(
            next_posterior, predicted_prior.detach(), config.free_bits
        )
        total = (
            reconstruction_loss
            + reward_loss
            + termination_loss
            + config.dynamics_scale * dynamics_loss
            + config.representation_scale * representation_loss
        )
        metrics = {
            "reconstruction_loss": reconstruction_loss,
            "reward_loss": reward_loss,
            "termination_loss": termination_loss,
            "dynamics_loss": dynamics_loss,
            "representation_loss": representation_loss,
            "kl": dynamics_kl,
            "total_loss": total,
        }
        return total, {name: value.detach() for name, value in metrics.items()}

    # -- imagination and acting ----------------------------------------------------------------
    @torch.no_grad()
    def start_from_context(
        self,
        frames: torch.Tensor,
        actions: torch.Tensor,
        posterior_noise: torch.Tensor,
        prior_noise: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, KVCache]:
        """Encodes context frames (B, T, H, W, 3) and feeds them with their actions (B, T).

        Returns the prior sample z for the step after the context (B, latent), the feature h
        that produced it (B, hidden), and the KV cache. The noise is that of the context's
        posterior samples (B, T, ...) and of the prior sample (B, ...).
        """
        latents = self.encode(frames, posterior_noise)
        cache = self.transformer.new_cache(latents.shape[0])
        feature = self.transformer.step(latents, actions, cache)[:, -1]
        return self.sample(self.prior_logits(feature), prior_noise), feature, cache

    def step(
        self, latent: torch.Tensor, action: torch.Tensor, cache: KVCache, prior_noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One dreamed step, h_t = f(z_t, a_t) and z_{t+1} ~ prior(h_t): latent (B, latent),
        action (B,) -> (feature h_t (B, hidden), next latent (B, latent))."""
        feature = self.transformer.step(latent[:, None], action[:, None], cache)[:, 0]
        return feature, self.sample(self.prior_logits(feature), prior_noise)
