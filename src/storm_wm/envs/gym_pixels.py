"""gym:<id>: any installed gymnasium env with image observations and discrete actions."""

from __future__ import annotations

from typing import Any, SupportsFloat

import cv2
import gymnasium as gym
import numpy as np

from storm_wm.errors import StormError


def is_image_space(space: gym.Space) -> bool:
    """True for uint8 frames the world model can read: HxWx3 (RGB), HxWx1 or HxW (grayscale)."""
    if not isinstance(space, gym.spaces.Box) or space.dtype != np.uint8:
        return False
    shape = space.shape
    return len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 3))


def describe_space(space: gym.Space) -> str:
    """A short one-line description: Box bounds can print as several lines of numbers."""
    if isinstance(space, gym.spaces.Box):
        return f"Box(shape={space.shape}, dtype={space.dtype})"
    return str(space)


class PixelObservation(gym.Wrapper):
    """Resize image observations to ``image_size`` square RGB, and report no life losses.

    Grayscale frames are repeated over three channels so that every game feeds the same
    encoder. Area interpolation, as for Atari.
    """

    def __init__(self, env: gym.Env, *, image_size: int) -> None:
        super().__init__(env)
        self.image_size = image_size
        self.observation_space = gym.spaces.Box(0, 255, (image_size, image_size, 3), dtype=np.uint8)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        frame, info = self.env.reset(seed=seed, options=options)
        return self._to_rgb(frame), {**info, "life_loss": False}

    def step(self, action: int) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        frame, reward, terminated, truncated, info = self.env.step(action)
        return self._to_rgb(frame), reward, terminated, truncated, {**info, "life_loss": False}

    def _to_rgb(self, frame: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame, dtype=np.uint8)
        if frame.ndim == 3 and frame.shape[-1] == 1:
            frame = frame[..., 0]
        size = (self.image_size, self.image_size)
        resized = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        if resized.ndim == 2:
            resized = np.repeat(resized[..., None], 3, axis=-1)
        return resized


def make_gym_pixel_env(env_id: str, *, image_size: int) -> gym.Env:
    """Build a registered gymnasium env and check that STORM can play it."""
    try:
        env = gym.make(env_id)
    except gym.error.DependencyNotInstalled as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StormError(
            f"gym:{env_id} needs a package that is not installed ({first_line}); install it"
        ) from error
    if not is_image_space(env.observation_space):
        env.close()
        observations = describe_space(env.observation_space)
        raise StormError(
            f"gym:{env_id} has observations {observations}, but storm-wm needs images "
            "(a uint8 Box of shape HxWx3, HxWx1 or HxW); register a pixel version, e.g. the env "
            "wrapped in gymnasium.wrappers.AddRenderObservation(render_only=True) with "
            'render_mode="rgb_array"'
        )
    if not isinstance(env.action_space, gym.spaces.Discrete) or env.action_space.start != 0:
        env.close()
        actions = describe_space(env.action_space)
        raise StormError(
            f"gym:{env_id} has actions {actions}, but storm-wm needs a Discrete(n) "
            "action space starting at 0; register a discrete-action version of the env"
        )
    return PixelObservation(env, image_size=image_size)
