"""Acting in real environments from the context of each environment's current episode."""

from __future__ import annotations

from collections import defaultdict, deque

import numpy as np
import torch

from storm_wm.compilation import CompiledFunction
from storm_wm.config import TrainConfig
from storm_wm.device import autocast
from storm_wm.models import ActorCritic, WorldModel
from storm_wm.models.agent import Models


class Policy:
    """Chooses actions for N environments, each with its own episode context.

    Each environment keeps its last `settings.act_context` (frame, action) pairs of the current
    episode. As in the authors' code, the frame just observed joins the context only after the
    action is chosen: the policy acts on the model's prior sample for the current frame, which is
    what it sees in imagination. With `settings.act_on_posterior` it acts on the current frame's
    posterior sample instead. With an empty context (the first step of an episode) the action
    is uniform. The networks' device is the policy's; `dtype` is the autocast precision.

    With `compile`, the acting step runs through torch.compile as one fixed-shape graph
    (`act_on_padded_context`): contexts are padded to `act_context`, and the sampling noise
    is drawn eagerly, in the order and shapes the eager step draws it.
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
        self.dtype = dtype
        self.rng = rng
        self.act_on_posterior = settings.act_on_posterior
        self.greedy = greedy
        self.context_length = context_length = settings.act_context
        self.frames: list[deque[np.ndarray]] = [
            deque(maxlen=context_length) for _ in range(num_envs)
        ]
        self.actions: list[deque[int]] = [deque(maxlen=context_length) for _ in range(num_envs)]
        self.compiled = (
            CompiledFunction(act_on_padded_context, self.device, "the acting step")
            if compile
            else None
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
        if not random:
            # Envs whose contexts have the same length run as one batch.
            groups: dict[int, list[int]] = defaultdict(list)
            for index, context in enumerate(self.actions):
                if context:
                    groups[len(context)].append(index)
            for indices in groups.values():
                actions[indices] = self._act_batch(indices, frames[indices])
        for index, action in enumerate(actions):
            self.frames[index].append(np.array(frames[index]))  # a copy: callers reuse buffers
            self.actions[index].append(int(action))
        return actions

    def _act_batch(self, indices: list[int], current: np.ndarray) -> np.ndarray:
        if self.compiled is not None:
            return self._act_batch_compiled(indices, current)
        context_frames = torch.from_numpy(np.stack([np.stack(self.frames[i]) for i in indices]))
        context_actions = torch.tensor([list(self.actions[i]) for i in indices])
        with autocast(self.device, self.dtype):
            start = self.world_model.start_from_context(
                context_frames.to(self.device), context_actions.to(self.device)
            )
            latent = start.latent
            if self.act_on_posterior:
                latent = self.world_model.encode(
                    torch.from_numpy(current[:, None]).to(self.device)
                )[:, 0]
            state = torch.cat([latent, start.feature.float()], dim=-1)
            return self.actor_critic.act(state, greedy=self.greedy).cpu().numpy()

    def _act_batch_compiled(self, indices: list[int], current: np.ndarray) -> np.ndarray:
        length = len(self.actions[indices[0]])  # a group's contexts all have this length
        frames = np.zeros((len(indices), self.context_length, *current.shape[1:]), np.uint8)
        actions = np.zeros((len(indices), self.context_length), np.int64)
        for row, index in enumerate(indices):
            frames[row, :length] = np.stack(self.frames[index])
            actions[row, :length] = list(self.actions[index])
        noise = self._acting_noise(len(indices), length)
        with autocast(self.device, self.dtype):
            (chosen,) = self.compiled(
                self.world_model, self.actor_critic,
                torch.from_numpy(frames).to(self.device),
                torch.from_numpy(actions).to(self.device),
                torch.full((len(indices),), length, device=self.device),
                torch.from_numpy(np.ascontiguousarray(current)).to(self.device),
                *noise, self.act_on_posterior, self.greedy,
            )  # fmt: skip
        return chosen.cpu().numpy()

    def _acting_noise(self, batch: int, length: int) -> tuple[torch.Tensor, ...]:
        """Uniform numbers for the samples of one acting step, drawn as the eager step draws
        them (the context's posterior, the prior, the current frame's posterior, the action);
        the context's noise is padded with 0.5 where the context is padding."""
        config, device = self.world_model.config, self.device
        latent_shape = (batch, config.categoricals, config.classes)
        posterior = torch.full((batch, self.context_length, *latent_shape[1:]), 0.5, device=device)
        posterior[:, :length] = torch.rand(batch, length, *latent_shape[1:], device=device)
        prior = torch.rand(latent_shape, device=device)
        current = (
            torch.rand(batch, 1, *latent_shape[1:], device=device)
            if self.act_on_posterior
            else torch.zeros(batch, 1, *latent_shape[1:], device=device)
        )
        action = (
            torch.zeros(batch, self.num_actions, device=device)
            if self.greedy
            else torch.rand(batch, self.num_actions, device=device)
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
    state = torch.cat([latent, feature.float()], dim=-1)
    return (actor_critic.act(state, greedy=greedy, uniform=action_noise),)
