"""What a play session runs on: the real game or the world model's imagination, and who acts."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium
import numpy as np
import torch

from storm_wm.acting import Policy
from storm_wm.device import autocast
from storm_wm.models import ActorCritic, WorldModel
from storm_wm.models.actor_critic import agent_state
from storm_wm.models.transformer import KVCache
from storm_wm.visualize.dream import to_uint8_frames


@dataclass
class WorldStep:
    frame: np.ndarray  # (H, W, 3) uint8, what to show next
    reward: float
    ended: bool
    """The episode is over (game over, frame cap, or the model predicts the end)."""


class RealWorld:
    """The game itself; episodes are seeded seed, then continue the env's own generator."""

    name = "real game"

    def __init__(self, env: gymnasium.Env, seed: int | None = None) -> None:
        self.env = env
        self.seed = seed

    def reset(self) -> np.ndarray:
        frame, _ = self.env.reset(seed=self.seed)
        self.seed = None
        return frame

    def step(self, action: int) -> WorldStep:
        frame, reward, terminated, truncated, _ = self.env.step(action)
        return WorldStep(frame, float(reward), bool(terminated or truncated))


class DreamWorld:
    """The world model's imagination, started from the real game's first frame.

    Each step feeds (z_t, a_t) to the transformer, reads the predicted reward and end flag from
    the feature h_t, samples z_{t+1} from the prior and shows its decoded frame, exactly as the
    agent's imagined rollouts run. The dream can go on for any number of steps (the transformer's
    cache rolls).
    """

    name = "world model's dream"

    def __init__(
        self,
        world_model: WorldModel,
        env: gymnasium.Env,
        dtype: torch.dtype = torch.float32,
        seed: int | None = None,
    ) -> None:
        self.world_model = world_model
        self.real = RealWorld(env, seed)
        self.device = next(world_model.parameters()).device
        self.dtype = dtype
        self.latent: torch.Tensor | None = None  # (1, latent): z of the frame on screen
        self.feature: torch.Tensor | None = None  # (1, hidden): h that predicted it
        self.cache: KVCache | None = None

    @torch.no_grad()
    def reset(self) -> np.ndarray:
        frame = self.real.reset()
        with autocast(self.device, self.dtype):
            real = torch.from_numpy(frame)[None, None].to(self.device)
            self.latent = self.world_model.encode(real, self.world_model.latent_noise(1, 1))[:, 0]
            self.feature = None
            self.cache = self.world_model.transformer.new_cache(1, rolling=True)
            return to_uint8_frames(self.world_model.decode(self.latent))[0]

    @torch.no_grad()
    def step(self, action: int) -> WorldStep:
        model = self.world_model
        with autocast(self.device, self.dtype):
            action_tensor = torch.tensor([action], device=self.device)
            self.feature, self.latent = model.step(
                self.latent, action_tensor, self.cache, model.latent_noise(1)
            )
            reward = float(model.predict_reward(self.feature)[0])
            ended = bool(model.predict_termination(self.feature)[0])
            frame = to_uint8_frames(model.decode(self.latent))[0]
        return WorldStep(frame, reward, ended)

    def agent_state(self) -> torch.Tensor | None:
        """s_t = (z_t, h_{t-1}) as in imagination; None on the first frame, which has no h."""
        return None if self.feature is None else agent_state(self.latent, self.feature)


class RealAgent:
    """The trained agent acting in the real game, as in evaluation (sampled actions)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def choose(self, frame: np.ndarray) -> int:
        return int(self.policy.act(np.array(frame)[None])[0])

    def reset(self) -> None:
        self.policy.reset(0)


class DreamAgent:
    """The trained agent acting inside the dream on the states it was trained on."""

    def __init__(
        self, actor_critic: ActorCritic, world: DreamWorld, num_actions: int, seed: int = 0
    ) -> None:
        self.actor_critic = actor_critic
        self.world = world
        self.rng = np.random.default_rng(seed)
        self.num_actions = num_actions

    @torch.no_grad()
    def choose(self, frame: np.ndarray) -> int:
        state = self.world.agent_state()
        if state is None:  # like Policy with an empty context: a uniform first action
            return int(self.rng.integers(self.num_actions))
        noise = torch.rand(1, self.num_actions, device=self.world.device)
        with autocast(self.world.device, self.world.dtype):
            return int(self.actor_critic.act(state, noise)[0])

    def reset(self) -> None:
        pass
