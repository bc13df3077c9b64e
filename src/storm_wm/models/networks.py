"""Building blocks shared by the world model and the actor-critic."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def mlp_trunk(inputs: int, hidden: int, layers: int = 2) -> nn.Sequential:
    """Linear (no bias) -> LayerNorm -> ReLU, `layers` times: the trunk of every STORM head."""
    modules: list[nn.Module] = []
    for index in range(layers):
        modules += [
            nn.Linear(inputs if index == 0 else hidden, hidden, bias=False),
            nn.LayerNorm(hidden),
            nn.ReLU(),
        ]
    return nn.Sequential(*modules)


class Encoder(nn.Module):
    """Frames (N, 3, H, W) in [0, 1] -> features (N, channels[-1] * (H / 2^k)^2)."""

    def __init__(self, channels: tuple[int, ...], image_size: int) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        previous = 3
        for width in channels:
            modules += [
                nn.Conv2d(previous, width, kernel_size=4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            ]
            previous = width
        self.layers = nn.Sequential(*modules)
        self.final_size = image_size // 2 ** len(channels)
        self.output_size = channels[-1] * self.final_size**2

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.layers(frames).flatten(1)
        return self._folded_forward(frames).flatten(1)

    def _folded_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Eval mode: each BatchNorm folded into its convolution's weight and bias.

        The same function as conv -> BatchNorm(running statistics) -> ReLU, but one pass over
        the activations instead of three; imagination and acting encode many frames this way.
        The folding is recomputed per call (the weights are tiny), so it is never stale.
        """
        modules = list(self.layers)
        for conv, norm in zip(modules[0::3], modules[1::3], strict=True):
            scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
            weight = conv.weight * scale[:, None, None, None]
            bias = norm.bias - norm.running_mean * scale
            x = F.relu(F.conv2d(x, weight, bias, stride=2, padding=1), inplace=True)
        return x


class Decoder(nn.Module):
    """Latents (N, latent) -> frames (N, 3, H, W), the mirror image of the encoder."""

    def __init__(self, latent_size: int, channels: tuple[int, ...], image_size: int) -> None:
        super().__init__()
        self.final_size = image_size // 2 ** len(channels)
        self.first_channels = channels[-1]
        self.project = nn.Sequential(
            nn.Linear(latent_size, channels[-1] * self.final_size**2, bias=False),
            nn.Unflatten(1, (channels[-1], self.final_size, self.final_size)),
            nn.BatchNorm2d(channels[-1]),
            nn.ReLU(),
        )
        modules: list[nn.Module] = []
        widths = list(reversed(channels))
        for previous, width in zip(widths[:-1], widths[1:], strict=True):
            modules += [
                nn.ConvTranspose2d(previous, width, kernel_size=4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            ]
        modules.append(nn.ConvTranspose2d(widths[-1], 3, kernel_size=4, stride=2, padding=1))
        self.layers = nn.Sequential(*modules)

    def forward(self, latents):
        return self.layers(self.project(latents))
