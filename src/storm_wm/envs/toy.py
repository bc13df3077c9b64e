"""toy:catch, a pixel game small enough to learn in minutes, for tests and demos.

An 8 x 8 grid: a red ball starts in a random column of the top row and falls one row per
step; a white paddle in the bottom row moves to catch it. The episode always lasts 7 steps and
returns 1.0 for a catch, 0.0 for a miss. Pure numpy, so it runs anywhere.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from storm_wm.errors import StormError

GRID_SIZE = 8
"""Cells per side of the board."""

STAY, LEFT, RIGHT = 0, 1, 2
"""The three actions."""

BALL_COLOR = (255, 0, 0)
PADDLE_COLOR = (255, 255, 255)


class CatchEnv(gym.Env[np.ndarray, np.int64]):
    """Catch the falling ball: reward 1.0 when the paddle is under it as it reaches the bottom."""

    metadata = {"render_modes": ["rgb_array"]}
    max_return = 1.0
    """Return of a perfect episode, so that scores can be shown as a fraction of it."""
    episode_length = GRID_SIZE - 1
    """Steps from the ball leaving the top row to it reaching the bottom row."""

    def __init__(self, image_size: int = 64, render_mode: str | None = None) -> None:
        if image_size < GRID_SIZE or image_size % GRID_SIZE != 0:
            raise StormError(
                f"toy:catch needs an image size that is a multiple of {GRID_SIZE}, "
                f"got {image_size}; use e.g. 64"
            )
        self.image_size = image_size
        self.cell_size = image_size // GRID_SIZE
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0, 255, (image_size, image_size, 3), dtype=np.uint8)
        self.action_space = gym.spaces.Discrete(3)
        self.ball_row = 0
        self.ball_column = 0
        self.paddle_column = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.ball_row = 0
        self.ball_column = int(self.np_random.integers(GRID_SIZE))
        self.paddle_column = int(self.np_random.integers(GRID_SIZE))
        return self._frame(), {"life_loss": False}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.ball_row >= GRID_SIZE - 1:
            raise RuntimeError("the episode has ended; call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be 0 (stay), 1 (left) or 2 (right), got {action!r}")
        move = {STAY: 0, LEFT: -1, RIGHT: 1}[int(action)]
        self.paddle_column = min(max(self.paddle_column + move, 0), GRID_SIZE - 1)
        self.ball_row += 1
        terminated = self.ball_row == GRID_SIZE - 1
        caught = terminated and self.paddle_column == self.ball_column
        reward = 1.0 if caught else 0.0
        return self._frame(), reward, terminated, False, {"life_loss": False}

    def optimal_action(self) -> int:
        """The move that brings the paddle toward the ball's column: a perfect scripted policy."""
        if self.paddle_column < self.ball_column:
            return RIGHT
        if self.paddle_column > self.ball_column:
            return LEFT
        return STAY

    def render(self) -> np.ndarray | None:
        return self._frame() if self.render_mode == "rgb_array" else None

    def _frame(self) -> np.ndarray:
        """Draw the board: the ball fills its cell, the paddle the lower half of its cell."""
        cell = self.cell_size
        frame = np.zeros((self.image_size, self.image_size, 3), dtype=np.uint8)
        ball_top, ball_left = self.ball_row * cell, self.ball_column * cell
        frame[ball_top : ball_top + cell, ball_left : ball_left + cell] = BALL_COLOR
        # Drawn after the ball so that a caught ball still shows in the upper half of the cell.
        paddle_top = (GRID_SIZE - 1) * cell + cell // 2
        paddle_left = self.paddle_column * cell
        frame[paddle_top:, paddle_left : paddle_left + cell] = PADDLE_COLOR
        return frame
