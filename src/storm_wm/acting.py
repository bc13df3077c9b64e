"""Acting in real environments from the context of each environment's current episode."""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

from storm_wm.compilation import CompiledFunction
from storm_wm.config import TrainConfig
from storm_wm.device import autocast
from storm_wm.models import ActorCritic, WorldModel
from storm_wm.models.actor_critic import agent_state
from storm_wm.models.agent import Models


class Policy:
    """Chooses actions for N environments, each with its own episode context.

    Each environment keeps its last `settings.act_context` (frame, action) pairs of the current
    episode. As in the authors' code, the frame just observed joins the context only after the
    action is chosen: the policy acts on the model's prior sample for the current frame, which is
    what it sees in imagination. With `settings.act_on_posterior` it acts on the current frame's
    posterior sample instead. With an empty context (the first step of an episode) the action
    is uniform. The networks' device is the policy's; `dtype` is the autocast precision.

    The contexts of all environments run as one batch, padded at their end to the longest
    (`act_on_padded_context`). With `compile` they are padded to `act_context` instead and the
    step runs through torch.compile as one fixed-shape graph. The sampling noise is drawn first
    either way, so compiled and eager steps take the same numbers from PyTorch's generator.
    """

    def __init__(
        self,
        models: Models,
        settings: TrainConfig,
        num_envs: int,
        rng: np.random.Generator,
        *,
        dtype: torch.dtype,
        greedy: bool = False,
        compile: bool = False,
    ) -> None:
        self.world_model, self.actor_critic = models.world_model, models.actor_critic
        self.num_actions = self.world_model.num_actions
        self.device = next(self.world_model.parameters()).device
        self.dtype, self.rng, self.greedy = dtype, rng, greedy
        self.act_on_posterior = settings.act_on_posterior
        length = settings.act_context
        self.frames: list[deque[np.ndarray]] = [deque(maxlen=length) for _ in range(num_envs)]
        self.actions: list[deque[int]] = [deque(maxlen=length) for _ in range(num_envs)]
        self.padded_length = length if compile else None  # the compiled step's one shape
        self.function = (
            CompiledFunction(act_on_padded_context, self.device, "the acting step")
            if compile
            else act_on_padded_context
        )

    def reset(self, env_index: int) -> None:
        """Forgets env `env_index`'s context: its episode ended."""
        self.frames[env_index].clear()
        self.actions[env_index].clear()

    def context_state(self, env_index: int) -> dict[str, torch.Tensor]:
        """Env `env_index`'s episode context as tensors, to checkpoint an episode in progress."""
        frames = self.frames[env_index]
        return {
            "frames": torch.from_numpy(np.stack(frames)) if frames else torch.zeros(0),
            "actions": torch.tensor(list(self.actions[env_index]), dtype=torch.int64),
        }

    def restore_context(self, env_index: int, state: dict[str, torch.Tensor]) -> None:
        """Puts back a context saved by `context_state`, so acting continues exactly."""
        self.reset(env_index)
        for frame, action in zip(state["frames"], state["actions"].tolist(), strict=True):
            self.frames[env_index].append(frame.numpy())
            self.actions[env_index].append(int(action))

    @torch.no_grad()
    def act(self, frames: np.ndarray, random: bool = False) -> np.ndarray:
        """frames (N, H, W, 3) uint8, the current observation of each env -> actions (N,)."""
        actions = self.rng.integers(0, self.num_actions, size=len(frames))
        rows = [] if random else [index for index, context in enumerate(self.actions) if context]
        if rows:
            actions[rows] = self._act(rows, frames[rows])
        for index, action in enumerate(actions):
            self.frames[index].append(np.array(frames[index]))  # a copy: callers reuse buffers
            self.actions[index].append(int(action))
        return actions

    def _act(self, rows: list[int], current: np.ndarray) -> np.ndarray:
        lengths = [len(self.actions[index]) for index in rows]
        longest = max(lengths)
        padded = self.padded_length or longest
        frames = np.zeros((len(rows), padded, *current.shape[1:]), np.uint8)
        actions = np.zeros((len(rows), padded), np.int64)
        for row, (index, length) in enumerate(zip(rows, lengths, strict=True)):
            frames[row, :length] = np.stack(self.frames[index])
            actions[row, :length] = self.actions[index]
        device = self.device
        with autocast(device, self.dtype):
            (chosen,) = self.function(
                self.world_model,
                self.actor_critic,
                torch.from_numpy(frames).to(device),
                torch.from_numpy(actions).to(device),
                torch.tensor(lengths, device=device),
                torch.from_numpy(np.ascontiguousarray(current)).to(device),
                *self._noise(len(rows), longest, padded),
                self.act_on_posterior,
                self.greedy,
            )
        return chosen.cpu().numpy()

    def _noise(self, batch: int, longest: int, padded: int) -> tuple[torch.Tensor, ...]:
        """Uniform numbers for the samples of one acting step, in the order the step uses them:
        the contexts' posteriors (0.5 past the longest context), the prior, the current frame's
        posterior (zeros unless acted on), the action (zeros when greedy)."""
        config, device = self.world_model.config, self.device
        latent = (config.categoricals, config.classes)
        posterior = torch.full((batch, padded, *latent), 0.5, device=device)
        posterior[:, :longest] = torch.rand(batch, longest, *latent, device=device)
        prior = torch.rand(batch, *latent, device=device)
        acted_on = torch.rand if self.act_on_posterior else torch.zeros
        current = acted_on(batch, 1, *latent, device=device)
        action = (torch.zeros if self.greedy else torch.rand)(
            batch, self.num_actions, device=device
        )
        return posterior, prior, current, action


@torch.no_grad()
def act_on_padded_context(
    world_model: WorldModel,
    actor_critic: ActorCritic,
    frames: torch.Tensor,
    actions: torch.Tensor,
    lengths: torch.Tensor,
    current: torch.Tensor,
    posterior_noise: torch.Tensor,
    prior_noise: torch.Tensor,
    current_noise: torch.Tensor,
    action_noise: torch.Tensor,
    act_on_posterior: bool,
    greedy: bool,
) -> tuple[torch.Tensor]:
    """The acting step on contexts padded at their end to one length: frames (N, T, H, W, 3),
    actions (N, T), lengths (N,) of the real parts; current (N, H, W, 3) -> actions (N,).

    Padding at the end changes nothing for the real tokens: causal attention never lets a
    token see a later one. The feature that predicts the next step is the last real token's.
    """
    latents = world_model.encode(frames, posterior_noise)  # (N, T, latent)
    features = world_model.transformer(latents, actions)  # (N, T, hidden)
    rows = torch.arange(len(lengths), device=lengths.device)
    feature = features[rows, lengths - 1]  # (N, hidden)
    latent = world_model.sample(world_model.prior_logits(feature), prior_noise)
    if act_on_posterior:
        latent = world_model.encode(current[:, None], current_noise)[:, 0]
    return (actor_critic.act(agent_state(latent, feature), action_noise, greedy),)
