"""How well the world model predicts open loop: k-step frame, reward and termination errors.

A window of real steps (frame o_t, action a_t, reward r_t, end flag d_t, as the replay stores
them) is split into a context of C steps and what follows. The model encodes the C context
frames, then runs open loop: each next latent is sampled from its prior and fed back with the
*real* action, never seeing another real frame. Its k-th step predicts the k-th transition
after the last real frame: frame o_{C+k-1} (decoded from the prior sample), reward r_{C+k-2}
and end flag d_{C+k-2} (read from the feature h_{C+k-2}). So k = 1 is a one-step prediction,
exactly what the agent's imagination starts from.

Two baselines stand beside each frame error: repeating the last real frame (a model that
predicts nothing moves) and decoding the target frame's own posterior sample (what the
autoencoder loses drawing a frame it is shown: no prediction can be expected to do better).
The first splits "predicts motion" from "does not"; the second splits "cannot draw the frame"
from "cannot foresee it".
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import torch

from storm_wm.models import WorldModel
from storm_wm.models.world_model import frames_to_input

HORIZONS = (1, 5, 15)
"""Open-loop steps at which errors are reported."""


def fitting_horizons(
    horizons: tuple[int, ...], context: int, length: int, max_length: int
) -> tuple[list[int], list[dict[str, Any]]]:
    """Splits horizons into those a window and the position embedding allow, and the rest.

    The k-th prediction needs C + k - 1 transformer positions (C real tokens, k - 1 imagined
    ones) and a window of C + k frames.
    """
    measured, skipped = [], []
    for k in sorted(set(horizons)):
        if k < 1:
            raise ValueError(f"horizons must be positive, got {k}")
        if context + k - 1 > max_length:
            reason = (
                f"context {context} + {k} steps need {context + k - 1} transformer positions; "
                f"the model has {max_length}"
            )
            skipped.append({"k": k, "reason": reason})
        elif context + k > length:
            reason = f"windows of {length} steps are shorter than context {context} + {k} steps"
            skipped.append({"k": k, "reason": reason})
        else:
            measured.append(k)
    return measured, skipped


def _open_loop_chunk(
    world_model: WorldModel,
    frames: torch.Tensor,
    actions: torch.Tensor,
    context: int,
    horizon: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per window and k (B, K): frame MSE, MSE of repeating the last context frame, predicted
    rewards and predicted end flags. Frames are compared chunk by chunk: 256 windows of 15
    decoded 64 x 64 frames would be 190 MB of floats at once."""
    batch = len(frames)
    latent, feature, cache = world_model.start_from_context(
        frames[:, :context],
        actions[:, :context],
        world_model.latent_noise(batch, context),
        world_model.latent_noise(batch),
    )
    latents, features = [latent], [feature]
    for k in range(1, horizon):
        action = actions[:, context + k - 1]  # a_{C+k-1}, taken on the imagined frame
        feature, latent = world_model.step(latent, action, cache, world_model.latent_noise(batch))
        latents.append(latent)
        features.append(feature)
    predicted = world_model.decode(torch.stack(latents, dim=1)).float().clamp(0.0, 1.0)
    targets = frames_to_input(frames[:, context : context + horizon])  # (B, K, 3, H, W)
    last_context = frames_to_input(frames[:, context - 1 : context])
    stacked = torch.stack(features, dim=1)  # (B, K, hidden)
    return (
        (predicted - targets).square().mean((-3, -2, -1)),
        (last_context - targets).square().mean((-3, -2, -1)),
        world_model.predict_reward(stacked).float(),
        world_model.predict_termination(stacked),
    )


def _own_frame_errors(
    world_model: WorldModel, frames: torch.Tensor, context: int, horizon: int
) -> torch.Tensor:
    """Per window and k (B, K): MSE of decoding the target frame's own posterior sample."""
    targets = frames[:, context : context + horizon]
    noise = world_model.latent_noise(len(frames), horizon)
    drawn = world_model.decode(world_model.encode(targets, noise)).float().clamp(0.0, 1.0)
    return (drawn - frames_to_input(targets)).square().mean((-3, -2, -1))


def _mean(values: torch.Tensor) -> float | None:
    return float(values.float().mean()) if values.numel() else None


@torch.no_grad()
def open_loop_errors(
    world_model: WorldModel,
    frames: torch.Tensor,
    actions: torch.Tensor,
    rewards: torch.Tensor,
    terminations: torch.Tensor,
    context: int,
    horizons: tuple[int, ...] = HORIZONS,
    valid: torch.Tensor | None = None,
    chunk_size: int = 64,
) -> dict[str, Any]:
    """Open-loop k-step errors of `world_model` on windows (B, L) of real steps.

    frames (B, L, H, W, 3) uint8; actions, rewards, terminations (B, L); `valid` (B, L) marks
    real steps (False pads windows cut short by an episode's end). A target counts only if it
    lies in the same episode as the context: no end flag before it in the window (the
    reward and flag of the ending transition itself count). Frame errors are pixel MSE on
    [0, 1] (decoded frames clamped to it), averaged over pixels and windows; beside each are the
    MSE of simply repeating the last context frame, the error of a model that predicts nothing
    moves (`frame_mse_repeat_last`), and the MSE of decoding the target frame's own posterior
    sample, the autoencoder's error on that frame (`frame_mse_posterior`). Horizons that do not
    fit the window or the position embedding are listed, with the reason, under
    `skipped_horizons`. Call in the world model's eval mode; sampling uses torch's global
    generator.
    """
    batch, length = frames.shape[:2]
    max_length = world_model.transformer.config.max_length
    measured, skipped = fitting_horizons(tuple(horizons), context, length, max_length)
    result: dict[str, Any] = {
        "context": context,
        "windows": batch,
        "horizons": [],
        "skipped_horizons": skipped,
    }
    if not measured or batch == 0:
        return result
    horizon = max(measured)
    device = next(world_model.parameters()).device
    frames, actions = frames.to(device), actions.to(device).long()
    rewards, terminations = rewards.to(device).float(), terminations.to(device).bool()
    valid = torch.ones_like(terminations) if valid is None else valid.to(device).bool()

    row_chunks = torch.arange(batch, device=device).split(chunk_size)
    chunks = [
        _open_loop_chunk(world_model, frames[rows], actions[rows], context, horizon)
        for rows in row_chunks
    ]
    frame_errors, copy_errors, predicted_rewards, predicted_ends = (
        torch.cat(parts) for parts in zip(*chunks, strict=True)
    )  # each (B, K)
    # After every rollout, so the predictions draw the same numbers as they would without it.
    drawn_errors = torch.cat(
        [_own_frame_errors(world_model, frames[rows], context, horizon) for rows in row_chunks]
    )
    steps = slice(context - 1, context + horizon - 1)  # transitions predicted at k = 1..K
    reward_errors = (predicted_rewards - rewards[:, steps]).abs()
    real_ends = terminations[:, steps]
    correct_ends = predicted_ends == real_ends

    # A step is usable when it is real and no end flag comes before it in the window.
    ended_before = (terminations.long().cumsum(1) - terminations.long()) > 0
    usable = valid & ~ended_before & valid[:, :context].all(1, keepdim=True)
    frame_usable = usable[:, context : context + horizon]
    step_usable = usable[:, steps]
    for k in measured:
        index = k - 1
        frame_rows, step_rows = frame_usable[:, index], step_usable[:, index]
        ends = real_ends[:, index] & step_rows
        result["horizons"].append(
            {
                "k": k,
                "frame_windows": int(frame_rows.sum()),
                "frame_mse": _mean(frame_errors[frame_rows, index]),
                "frame_mse_repeat_last": _mean(copy_errors[frame_rows, index]),
                "frame_mse_posterior": _mean(drawn_errors[frame_rows, index]),
                "step_windows": int(step_rows.sum()),
                "reward_abs_error": _mean(reward_errors[step_rows, index]),
                "termination_accuracy": _mean(correct_ends[step_rows, index]),
                "terminations": int(ends.sum()),
                "termination_recall": _mean(predicted_ends[ends, index]),
            }
        )
    return result


def open_loop_metrics(result: dict[str, Any], prefix: str = "open_loop") -> dict[str, float]:
    """Flattens `open_loop_errors`' result into logged scalars such as open_loop/frame_mse_k5."""
    names = (
        "frame_mse",
        "frame_mse_repeat_last",
        "frame_mse_posterior",
        "reward_abs_error",
        "termination_accuracy",
        "termination_recall",
    )
    metrics = {}
    for record in result["horizons"]:
        for name in names:
            if record[name] is not None:
                metrics[f"{prefix}/{name}_k{record['k']}"] = record[name]
    return metrics


class WindowReservoir:
    """A uniform random sample of windows from episodes as they are played, in bounded memory.

    Evaluation episodes can last 27,000 steps; keeping them whole to cut windows afterwards
    would cost gigabytes. Instead every window of `length` steps that starts inside an episode
    with at least `context` steps after its start (windows near the end are padded) is offered
    once to a reservoir sample of `capacity` windows (Vitter's algorithm R).
    """

    def __init__(
        self, capacity: int, length: int, context: int, num_envs: int, rng: np.random.Generator
    ) -> None:
        self.capacity, self.length, self.context, self.rng = capacity, length, context, rng
        self.recent: list[deque[tuple]] = [deque(maxlen=length) for _ in range(num_envs)]
        self.windows: list[list[tuple]] = []
        self.offered = 0

    def add(self, env_index: int, frame: np.ndarray, action: int, reward: float, end: bool) -> None:
        """One step of env `env_index`: the frame the action was chosen on, and its outcome."""
        recent = self.recent[env_index]
        recent.append((np.array(frame, copy=True), int(action), float(reward), bool(end)))
        if len(recent) == self.length:
            self._offer(list(recent))

    def end_episode(self, env_index: int) -> None:
        """Offers the windows that start in the episode's last steps, padded, and forgets it."""
        steps = list(self.recent[env_index])
        first = 1 if len(steps) == self.length else 0  # the full window was offered already
        for start in range(first, len(steps) - self.context + 1):
            self._offer(steps[start:])
        self.recent[env_index].clear()

    def _offer(self, steps: list[tuple]) -> None:
        if len(self.windows) < self.capacity:
            self.windows.append(steps)
        else:
            slot = int(self.rng.integers(0, self.offered + 1))
            if slot < self.capacity:
                self.windows[slot] = steps
        self.offered += 1

    def tensors(self) -> dict[str, torch.Tensor]:
        """frames (N, L, H, W, 3), actions, rewards, terminations and valid (N, L), padded."""
        count = len(self.windows)
        shape = self.windows[0][0][0].shape if count else (0, 0, 3)
        frames = np.zeros((count, self.length, *shape), dtype=np.uint8)
        actions = np.zeros((count, self.length), dtype=np.int64)
        rewards = np.zeros((count, self.length), dtype=np.float32)
        terminations = np.zeros((count, self.length), dtype=bool)
        valid = np.zeros((count, self.length), dtype=bool)
        for row, steps in enumerate(self.windows):
            for column, (frame, action, reward, end) in enumerate(steps):
                frames[row, column] = frame
                actions[row, column], rewards[row, column] = action, reward
                terminations[row, column], valid[row, column] = end, True
        arrays = {"frames": frames, "actions": actions, "rewards": rewards}
        arrays |= {"terminations": terminations, "valid": valid}
        return {name: torch.from_numpy(array) for name, array in arrays.items()}
