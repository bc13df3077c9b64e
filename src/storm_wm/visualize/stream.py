"""Feeding the world model's transformer tokens for longer than its position embedding."""

from __future__ import annotations

import torch

from storm_wm.models import WorldModel
from storm_wm.models.transformer import KVCache


class TokenStream:
    """A KV cache over an unbounded stream of (latent, action) tokens.

    The learned position embedding holds `max_length` positions, so a dream or a play session
    longer than that cannot keep one cache. When the cache is full, a new one is primed with the
    last `keep` tokens at positions 0, 1, ...: the model was trained on windows that start
    anywhere in an episode at position 0, so a restarted window is one it knows.
    """

    def __init__(self, world_model: WorldModel, keep: int | None = None) -> None:
        self.transformer = world_model.transformer
        self.max_length = self.transformer.config.max_length
        self.keep = keep if keep is not None else self.max_length // 2
        if not 0 <= self.keep < self.max_length:
            raise ValueError(f"keep must lie in [0, {self.max_length}), got {self.keep}")
        self.cache: KVCache | None = None
        self.latents: torch.Tensor | None = None  # (B, <= keep, latent): tokens to restart from
        self.actions: torch.Tensor | None = None  # (B, <= keep)

    def _cache_dtype(self, device: torch.device, fallback: torch.dtype) -> torch.dtype:
        if torch.is_autocast_enabled(device.type):
            return torch.get_autocast_dtype(device.type)
        return fallback

    def _restart(self, batch: int, device: torch.device, dtype: torch.dtype) -> None:
        self.cache = self.transformer.new_cache(
            batch, device=device, dtype=self._cache_dtype(device, dtype)
        )
        if self.latents is not None and self.keep > 0:
            self.transformer.step(self.latents, self.actions, self.cache)

    @torch.no_grad()
    def feed(self, latents: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """latents (B, T, latent), actions (B, T) -> features (B, T, hidden), any T."""
        features = []
        start = 0
        while start < latents.shape[1]:
            if self.cache is None or self.cache.length >= self.max_length:
                self._restart(latents.shape[0], latents.device, latents.dtype)
            room = self.max_length - self.cache.length
            chunk = slice(start, start + room)
            features.append(self.transformer.step(latents[:, chunk], actions[:, chunk], self.cache))
            self._remember(latents[:, chunk], actions[:, chunk])
            start += room
        return torch.cat(features, dim=1)

    def push(self, latent: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """One token per row: latent (B, latent), action (B,) -> feature (B, hidden)."""
        return self.feed(latent[:, None], action[:, None])[:, 0]

    def _remember(self, latents: torch.Tensor, actions: torch.Tensor) -> None:
        if self.latents is not None:
            latents = torch.cat([self.latents, latents], dim=1)
            actions = torch.cat([self.actions, actions], dim=1)
        first = max(0, latents.shape[1] - self.keep)
        self.latents, self.actions = latents[:, first:], actions[:, first:]
