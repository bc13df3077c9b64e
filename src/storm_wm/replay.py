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
        return Batch(*(getattr(self, name).to(device, non_blocking=True) for name in FIELDS))


FIELDS = ("frames", "actions", "rewards", "terminations")
"""What each step holds, in this order: the fields of `Batch`, the arrays of `ReplayBuffer`."""


class ReplayBuffer:
    """Holds (frame_t, action_t, reward_t, termination_t) for the last `capacity` steps.

    `termination_t` is the training flag: the episode ended or a life was lost on that step.
    The frame stored at index t is the one the action was chosen on. `total_added` counts every
    step ever added, so each step has a global index that survives the ring wrapping around: the
    checkpoint's chunked copy of the buffer (storm_wm.persistence.replay_store) is keyed by it.

    With a `device`, every step is also mirrored into tensors on that device as it is added, and
    `sample` gathers its windows there: a training step then copies only the window starts
    (B integers) to the device, never frames. The host arrays stay the record the checkpoint
    reads (`steps`). Window starts are drawn from the caller's generator exactly as without a
    device, so the same windows are sampled either way.
    """

    def __init__(
        self, capacity: int, frame_shape: tuple[int, ...], device: torch.device | None = None
    ) -> None:
        self.capacity = capacity
        self.frames = np.zeros((capacity, *frame_shape), dtype=np.uint8)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminations = np.zeros(capacity, dtype=bool)
        self.size = 0
        self.next_index = 0
        self.total_added = 0
        self.device = device
        self.mirror: Batch | None = None
        """(capacity, ...) device copies of the four arrays, when the buffer has a device."""
        if device is not None:
            self.mirror = Batch(
                frames=torch.zeros(self.frames.shape, dtype=torch.uint8, device=device),
                actions=torch.zeros(capacity, dtype=torch.int64, device=device),
                rewards=torch.zeros(capacity, dtype=torch.float32, device=device),
                terminations=torch.zeros(capacity, dtype=torch.bool, device=device),
            )

    @staticmethod
    def bytes_needed(capacity: int, frame_shape: tuple[int, ...]) -> int:
        """Memory of a buffer's arrays: uint8 frames plus action, reward and termination."""
        return capacity * (int(np.prod(frame_shape)) + 8 + 4 + 1)

    def __len__(self) -> int:
        return self.size

    def add(self, frame: np.ndarray, action: int, reward: float, termination: bool) -> None:
        index = self.next_index
        self.frames[index] = frame
        self.actions[index] = action
        self.rewards[index] = reward
        self.terminations[index] = termination
        if self.mirror is not None:
            self.mirror.frames[index].copy_(_host_tensor(self.frames[index]), non_blocking=True)
            # Python scalars are written by a fill kernel: no host-to-device copy at all.
            self.mirror.actions[index] = int(action)
            self.mirror.rewards[index] = float(reward)
            self.mirror.terminations[index] = bool(termination)
        self.next_index = (index + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.total_added += 1

    def clear(self) -> None:
        """Forgets every step (the device copies need no reset: `size` says what is valid)."""
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
        for name, array in zip(FIELDS, (frames, actions, rewards, terminations), strict=True):
            getattr(self, name)[indices] = array
        if self.mirror is not None:
            self._mirror_range(self.next_index, count)
        self.next_index = (self.next_index + count) % self.capacity
        self.size = min(self.size + count, self.capacity)
        self.total_added += count

    def _mirror_range(self, first: int, count: int) -> None:
        """Copies ring slots first..first+count-1 (wrapping) from the host arrays to the mirror.

        At most two contiguous slices, each in chunks, so no index tensor and no second
        full-size frame buffer is ever allocated on the device.
        """
        assert self.mirror is not None
        end = min(first + count, self.capacity)
        for start, stop in ((first, end), (0, first + count - end)):
            for chunk in range(start, stop, _MIRROR_CHUNK):
                piece = slice(chunk, min(chunk + _MIRROR_CHUNK, stop))
                for name in FIELDS:
                    source = _host_tensor(getattr(self, name)[piece])
                    getattr(self.mirror, name)[piece].copy_(source, non_blocking=True)

    def steps(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Copies of the steps with global indices start..stop-1, which must still be held."""
        oldest = self.total_added - self.size
        if not oldest <= start <= stop <= self.total_added:
            raise ValueError(
                f"steps {start}..{stop} are not all held (the buffer holds {oldest}.."
                f"{self.total_added})"
            )
        indices = (self.next_index - (self.total_added - np.arange(start, stop))) % self.capacity
        return {name: getattr(self, name)[indices] for name in FIELDS}

    def sample(self, batch_size: int, length: int, generator: np.random.Generator) -> Batch:
        """`batch_size` windows of `length` consecutive steps, start positions uniform."""
        if self.size < length:
            raise ValueError(f"replay holds {self.size} steps, fewer than one window of {length}")
        oldest = (self.next_index - self.size) % self.capacity
        starts = generator.integers(0, self.size - length + 1, size=batch_size)
        if self.mirror is not None:
            # Only the starts cross to the device; the windows are gathered there.
            starts_on_device = _host_tensor(starts).to(self.mirror.frames.device, non_blocking=True)
            offsets = torch.arange(length, device=starts_on_device.device)
            indices_on_device = (oldest + starts_on_device[:, None] + offsets) % self.capacity
            return Batch(*(getattr(self.mirror, name)[indices_on_device] for name in FIELDS))
        indices = (oldest + starts[:, None] + np.arange(length)[None, :]) % self.capacity
        return Batch(*(torch.from_numpy(getattr(self, name)[indices]) for name in FIELDS))


_MIRROR_CHUNK = 4096
"""Steps per host-to-device copy when restoring a buffer (48 MB of 64 x 64 frames)."""


def _host_tensor(array: np.ndarray) -> torch.Tensor:
    """A CPU tensor of `array` for a host-to-device copy: pinned where CUDA is available, so a
    non-blocking copy is truly asynchronous (the caching host allocator keeps it alive until the
    copy has run); shares the array's memory otherwise."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if torch.cuda.is_available():
        return tensor.pin_memory()
    return tensor
