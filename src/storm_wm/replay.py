"""The replay buffer: uint8 frames in a ring, windows sampled uniformly by vectorized gather."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Batch:
    """Windows of consecutive real steps: frames (B, L, H, W, 3) uint8, the rest (B, L)."""

    frames: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    terminations: torch.Tensor

    def to(self, device: torch.device) -> Batch:
        return Batch(*(tensor.to(device, non_blocking=True) for tensor in self.__dict__.values()))


class ReplayBuffer:
    """Holds (frame_t, action_t, reward_t, termination_t) for the last `capacity` steps.

    `termination_t` is the training flag: the episode ended or a life was lost on that step.
    The frame stored at index t is the one the action was chosen on. `total_added` counts every
    step ever added, so each step has a global index that survives the ring wrapping around: the
    checkpoint's chunked copy of the buffer (storm_wm.persistence.replay_store) is keyed by it.
    """

    def __init__(self, capacity: int, frame_shape: tuple[int, ...]) -> None:
        self.capacity = capacity
        self.frames = np.zeros((capacity, *frame_shape), dtype=np.uint8)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminations = np.zeros(capacity, dtype=bool)
        self.size = 0
        self.next_index = 0
        self.total_added = 0

    def __len__(self) -> int:
        return self.size

    def add(self, frame: np.ndarray, action: int, reward: float, termination: bool) -> None:
        index = self.next_index
        self.frames[index] = frame
        self.actions[index] = action
        self.rewards[index] = reward
        self.terminations[index] = termination
        self.next_index = (index + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.total_added += 1

    def clear(self) -> None:
        self.size = 0
        self.next_index = 0
        self.total_added = 0

    def extend(
        self,
        frames: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminations: np.ndarray,
    ) -> None:
        """Adds many steps at once (restoring from disk), as `add` would one by one."""
        count = len(frames)
        if count > self.capacity:  # only the newest `capacity` steps would survive anyway
            self.total_added += count - self.capacity
            frames, actions, rewards, terminations = (
                array[-self.capacity :] for array in (frames, actions, rewards, terminations)
            )
            count = self.capacity
        indices = (self.next_index + np.arange(count)) % self.capacity
        self.frames[indices] = frames
        self.actions[indices] = actions
        self.rewards[indices] = rewards
        self.terminations[indices] = terminations
        self.next_index = (self.next_index + count) % self.capacity
        self.size = min(self.size + count, self.capacity)
        self.total_added += count

    def steps(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Copies of the steps with global indices start..stop-1, which must still be held."""
        oldest = self.total_added - self.size
        if not oldest <= start <= stop <= self.total_added:
            raise ValueError(
                f"steps {start}..{stop} are not all held (the buffer holds {oldest}.."
                f"{self.total_added})"
            )
        indices = (self.next_index - (self.total_added - np.arange(start, stop))) % self.capacity
        return {
            "frames": self.frames[indices],
            "actions": self.actions[indices],
            "rewards": self.rewards[indices],
            "terminations": self.terminations[indices],
        }

    def sample(self, batch_size: int, length: int, generator: np.random.Generator) -> Batch:
        """`batch_size` windows of `length` consecutive steps, start positions uniform."""
        if self.size < length:
            raise ValueError(f"replay holds {self.size} steps, fewer than one window of {length}")
        oldest = (self.next_index - self.size) % self.capacity
        starts = generator.integers(0, self.size - length + 1, size=batch_size)
        indices = (oldest + starts[:, None] + np.arange(length)[None, :]) % self.capacity
        return Batch(
            frames=torch.from_numpy(self.frames[indices]),
            actions=torch.from_numpy(self.actions[indices]),
            rewards=torch.from_numpy(self.rewards[indices]),
            terminations=torch.from_numpy(self.terminations[indices]),
        )
