"""Real frames, reconstructions and open-loop imagination of one stretch of play, aligned."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from storm_wm.models import WorldModel


@dataclass
class DreamRollout:
    """Per step t of a stretch of T real steps (frame o_t, action a_t, reward r_t, end flag d_t).

    Rewards and end flags at t are those of the transition (o_t, a_t) -> o_{t+1}. The model
    columns: `reconstructions` decode the posterior of each real frame and their rewards come
    from the transformer fed the real frames (teacher forcing); `imagined_*` equal them for the
    first `context` steps, then come from the prior alone, fed only the real actions.
    """

    context: int
    real_frames: np.ndarray  # (T, H, W, 3) uint8
    actions: np.ndarray  # (T,) int
    real_rewards: np.ndarray  # (T,) float
    real_terminations: np.ndarray  # (T,) bool
    reconstructions: np.ndarray  # (T, H, W, 3) uint8
    reconstruction_rewards: np.ndarray  # (T,) float
    reconstruction_terminations: np.ndarray  # (T,) bool
    imagined_frames: np.ndarray  # (T, H, W, 3) uint8
    imagined_rewards: np.ndarray  # (T,) float
    imagined_terminations: np.ndarray  # (T,) bool

    def __len__(self) -> int:
        return len(self.real_frames)


def to_uint8_frames(images: torch.Tensor) -> np.ndarray:
    """Decoder output (..., 3, H, W), unclamped floats -> uint8 (..., H, W, 3)."""
    scaled = images.float().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return scaled.movedim(-3, -1).cpu().numpy()


@torch.no_grad()
def dream_rollout(
    world_model: WorldModel,
    frames: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    terminations: np.ndarray,
    context: int,
) -> DreamRollout:
    """Runs the world model over one stretch of real play (T steps) in both ways at once.

    The imagination starts from the first `context` real frames and then sees no real frame
    again: each next latent is sampled from the prior and fed back with the real action, as in
    the agent's imagined training rollouts. Any T works (the transformer's cache rolls).
    """
    length = len(frames)
    if not 1 <= context < length:
        raise ValueError(f"context must lie in [1, {length}) for {length} steps, got {context}")
    device = next(world_model.parameters()).device
    real = torch.from_numpy(np.ascontiguousarray(frames))[None].to(device)  # (1, T, H, W, 3)
    real_actions = torch.as_tensor(np.asarray(actions), dtype=torch.long)[None].to(device)

    transformer = world_model.transformer
    posterior = world_model.encode(real, world_model.latent_noise(1, length))  # (1, T, latent)
    teacher_features = transformer.step(
        posterior, real_actions, transformer.new_cache(1, rolling=True)
    )

    imagined_latents = [posterior[:, :context]]
    imagined_features = []
    cache = transformer.new_cache(1, rolling=True)
    feature = transformer.step(posterior[:, :context], real_actions[:, :context], cache)[:, -1]
    latent = world_model.sample(world_model.prior_logits(feature), world_model.latent_noise(1))
    for step in range(context, length):
        imagined_latents.append(latent[:, None])  # the prior sample of frame `step`
        feature, latent = world_model.step(
            latent, real_actions[:, step], cache, world_model.latent_noise(1)
        )
        imagined_features.append(feature[:, None])
    imagined_latents = torch.cat(imagined_latents, dim=1)
    imagined_features = torch.cat([teacher_features[:, :context], *imagined_features], dim=1)

    def rewards_and_ends(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        predicted = world_model.predict_reward(features)[0].float().cpu().numpy()
        return predicted, world_model.predict_termination(features)[0].cpu().numpy()

    reconstruction_rewards, reconstruction_terminations = rewards_and_ends(teacher_features)
    imagined_rewards, imagined_terminations = rewards_and_ends(imagined_features)
    reconstructions = to_uint8_frames(world_model.decode(posterior)[0])
    imagined_frames = np.concatenate(
        [
            reconstructions[:context],
            to_uint8_frames(world_model.decode(imagined_latents[0, context:])),
        ]
    )
    return DreamRollout(
        context=context,
        real_frames=np.asarray(frames, dtype=np.uint8),
        actions=np.asarray(actions, dtype=np.int64),
        real_rewards=np.asarray(rewards, dtype=np.float32),
        real_terminations=np.asarray(terminations, dtype=bool),
        reconstructions=reconstructions,
        reconstruction_rewards=reconstruction_rewards,
        reconstruction_terminations=reconstruction_terminations,
        imagined_frames=imagined_frames,
        imagined_rewards=imagined_rewards,
        imagined_terminations=imagined_terminations,
    )
