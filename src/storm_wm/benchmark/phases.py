"""The phases of a training step and the acting step, run by the real training code.

Nothing here re-implements a model: the world-model update, imagination and the agent update are
`Trainer`'s own methods and acting is `Policy.act`, so the benchmark times what training runs.
"""

from __future__ import annotations

import numpy as np
import torch

from storm_wm.acting import Policy
from storm_wm.config import Config
from storm_wm.device import replay_device
from storm_wm.imagination import ImaginedRollout
from storm_wm.models.agent import build_models
from storm_wm.replay import ReplayBuffer
from storm_wm.training.trainer import Trainer

TRAINING_PHASES = ("world_model_update", "imagination", "agent_update")
"""The three phases of one training step, in the order training runs them."""

_FILL_CHUNK = 10_000


def filled_replay(
    config: Config, num_actions: int, rng: np.random.Generator, device: torch.device
) -> ReplayBuffer:
    """A replay buffer of the configured capacity, every slot holding a random frame.

    Full, so that the process's resident memory is that of a run's end (the paper's 100,000
    uint8 frames are about 1.2 GB); random, because no phase's cost depends on pixel values.
    Placed where training would place it (`train.replay_on_device`, device.replay_device): on
    a GPU, batches are then gathered on the device as in training, instead of crossing the bus
    (about 100 MB per imagination batch of the paper's config).
    """
    capacity, size = config.train.replay_capacity, config.env.image_size
    shape = (size, size, 3)
    placement = replay_device(
        config.train.replay_on_device, device, ReplayBuffer.bytes_needed(capacity, shape)
    )
    replay = ReplayBuffer(capacity, shape, device=placement)
    for start in range(0, capacity, _FILL_CHUNK):
        count = min(_FILL_CHUNK, capacity - start)
        replay.extend(
            rng.integers(0, 256, size=(count, size, size, 3), dtype=np.uint8),
            rng.integers(0, num_actions, size=count),
            rng.standard_normal(count).astype(np.float32),
            rng.random(count) < 0.01,
        )
    return replay


class TrainingWorkload:
    """One model pair, its Trainer and a full replay buffer; each method runs one phase."""

    def __init__(
        self, config: Config, num_actions: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        self.config = config
        self.dtype = dtype
        self.rng = np.random.default_rng(config.seed)
        self.models = build_models(config, num_actions, device)
        self.trainer = Trainer(self.models, config, device, dtype)
        self.replay = filled_replay(config, num_actions, self.rng, device)
        self.rollout: ImaginedRollout | None = None

    def world_model_update(self) -> dict:
        return self.trainer.update_world_model(self.replay, self.rng)

    def imagination(self) -> ImaginedRollout:
        self.rollout = self.trainer.imagine(self.replay, self.rng)
        return self.rollout

    def agent_update(self) -> dict:
        if self.rollout is None:
            raise RuntimeError("imagination must run before the agent update")
        return self.trainer.update_agent(self.rollout)


class ActingStep:
    """The policy of one environment with a full episode context, as in steady-state training."""

    def __init__(self, workload: TrainingWorkload) -> None:
        config = workload.config
        self.frames = workload.replay.frames
        self.rng = workload.rng
        self.policy = Policy(workload.models, config.train, 1, workload.rng, dtype=workload.dtype)
        for _ in range(config.train.act_context):  # the context a long episode has
            self.policy.act(self._frame(), random=True)

    def _frame(self) -> np.ndarray:
        return self.frames[self.rng.integers(0, len(self.frames))][None]

    def act(self) -> np.ndarray:
        return self.policy.act(self._frame())
