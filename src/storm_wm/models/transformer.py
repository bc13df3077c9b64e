"""The stochastic transformer: a GPT-like causal model over (z_t, a_t) tokens with a KV cache."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from storm_wm.config import WorldModelConfig


@dataclass
class KVCache:
    """Projected keys and values of every layer, preallocated for the position embedding.

    Keeping projected keys and values (rather than the layer inputs) means each new token costs
    one projection, not a re-projection of the whole history. A rolling cache (`keep` set) feeds
    any number of tokens: once full it starts again from its last `keep` tokens at positions
    0, 1, ... The model was trained on windows that start anywhere in an episode at position 0,
    so a restarted window is one it knows; dreams and play sessions run past `max_length` so.
    """

    keys: list[torch.Tensor]  # per layer: (B, heads, max_length, head_dim)
    values: list[torch.Tensor]
    length: int = 0
    keep: int | None = None
    latents: torch.Tensor | None = None  # (B, <= keep, latent): what a restart feeds again
    actions: torch.Tensor | None = None  # (B, <= keep)

    def remember(self, latents: torch.Tensor, actions: torch.Tensor) -> None:
        if self.latents is not None:
            latents = torch.cat([self.latents, latents], dim=1)
            actions = torch.cat([self.actions, actions], dim=1)
        first = max(0, latents.shape[1] - self.keep)
        self.latents, self.actions = latents[:, first:], actions[:, first:]


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden, bias=False)
        self.key = nn.Linear(hidden, hidden, bias=False)
        self.value = nn.Linear(hidden, hidden, bias=False)
        self.output = nn.Linear(hidden, hidden, bias=False)
        self.dropout = dropout
        self.output_dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, time, hidden = x.shape
        return x.view(batch, time, self.heads, hidden // self.heads).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0
    ) -> torch.Tensor:
        batch, time, hidden = x.shape
        query, key, value = (
            self._split(self.query(x)),
            self._split(self.key(x)),
            self._split(self.value(x)),
        )
        # (B, heads, T, head_dim)
        dropout = self.dropout if self.training else 0.0
        if cache is None:
            attended = F.scaled_dot_product_attention(
                query, key, value, dropout_p=dropout, is_causal=True
            )
        else:
            start, end = cache.length, cache.length + time
            cache.keys[layer][:, :, start:end] = key
            cache.values[layer][:, :, start:end] = value
            key, value = cache.keys[layer][:, :, :end], cache.values[layer][:, :, :end]
            mask = None
            if time > 1:  # new tokens see the whole cache and each other causally
                positions = torch.arange(end, device=x.device)
                mask = positions[None, :] <= positions[start:end, None]
            attended = F.scaled_dot_product_attention(
                query, key, value, attn_mask=mask, dropout_p=dropout
            )
        attended = attended.transpose(1, 2).reshape(batch, time, hidden)
        return self.output_dropout(self.output(attended))


class Block(nn.Module):
    """Post-LayerNorm transformer block, as in the original Transformer and STORM."""

    def __init__(self, hidden: int, heads: int, feedforward: int, dropout: float) -> None:
        super().__init__()
        self.attention = CausalSelfAttention(hidden, heads, dropout)
        self.attention_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.feedforward = nn.Sequential(
            nn.Linear(hidden, feedforward),
            nn.ReLU(),
            nn.Linear(feedforward, hidden),
            nn.Dropout(dropout),
        )
        self.feedforward_norm = nn.LayerNorm(hidden, eps=1e-6)

    def forward(
        self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0
    ) -> torch.Tensor:
        x = self.attention_norm(x + self.attention(x, cache, layer))
        return self.feedforward_norm(x + self.feedforward(x))


class StochasticTransformer(nn.Module):
    """(z_t, a_t) for t < T -> h_t, the feature from which the prior of z_{t+1} is predicted."""

    def __init__(self, config: WorldModelConfig, num_actions: int) -> None:
        super().__init__()
        self.config = config
        self.num_actions = num_actions
        hidden = config.hidden
        self.stem = nn.Sequential(
            nn.Linear(config.latent_size + num_actions, hidden, bias=False),
            nn.LayerNorm(hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden, bias=False),
            nn.LayerNorm(hidden),
        )
        self.position = nn.Embedding(config.max_length, hidden)
        self.input_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.blocks = nn.ModuleList(
            Block(hidden, config.heads, config.feedforward, config.dropout)
            for _ in range(config.layers)
        )

    def _embed(self, latents: torch.Tensor, actions: torch.Tensor, start: int) -> torch.Tensor:
        tokens = torch.cat(
            [latents, F.one_hot(actions, self.num_actions).to(latents.dtype)], dim=-1
        )
        positions = torch.arange(start, start + latents.shape[1], device=latents.device)
        return self.input_norm(self.stem(tokens) + self.position(positions))

    def forward(self, latents: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Full causal pass: latents (B, T, latent), actions (B, T) -> features (B, T, hidden)."""
        x = self._embed(latents, actions, start=0)
        for block in self.blocks:
            x = block(x)
        return x

    def new_cache(self, batch: int, rolling: bool = False) -> KVCache:
        """An empty cache for `batch` sequences, in the dtype the layers compute in; a rolling one
        keeps half the position embedding's length when it starts again."""
        config, weight = self.config, self.position.weight
        device = weight.device
        dtype = (
            torch.get_autocast_dtype(device.type)
            if torch.is_autocast_enabled(device.type)
            else weight.dtype
        )
        shape = (batch, config.heads, config.max_length, config.hidden // config.heads)

        def tensors() -> list[torch.Tensor]:
            return [torch.empty(shape, device=device, dtype=dtype) for _ in range(config.layers)]

        return KVCache(tensors(), tensors(), keep=config.max_length // 2 if rolling else None)

    def step(self, latents: torch.Tensor, actions: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Feeds T new tokens (B, T, ...) after those in `cache`; returns their features."""
        room = self.config.max_length - cache.length
        if cache.keep is not None and latents.shape[1] > room:
            if room == 0:  # full: start again from the last `keep` tokens, at position 0
                kept = cache.latents, cache.actions
                cache.length, cache.latents, cache.actions = 0, None, None
                if cache.keep:
                    self.step(*kept, cache)
                return self.step(latents, actions, cache)
            first = self.step(latents[:, :room], actions[:, :room], cache)
            return torch.cat([first, self.step(latents[:, room:], actions[:, room:], cache)], 1)
        if latents.shape[1] > room:
            raise ValueError(
                f"sequence longer than the position embedding ({self.config.max_length})"
            )
        x = self._embed(latents, actions, start=cache.length)
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer)
        cache.length += latents.shape[1]
        if cache.keep is not None:
            cache.remember(latents, actions)
        return x
