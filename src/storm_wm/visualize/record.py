"""`storm-wm dream`'s work: the agent plays the real game, the world model dreams the same."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gymnasium
import numpy as np
import torch

from storm_wm.acting import Policy
from storm_wm.device import autocast
from storm_wm.envs import action_meanings, make_env
from storm_wm.errors import StormError
from storm_wm.persistence.agent import load_agent
from storm_wm.visualize.compose import compose_dream
from storm_wm.visualize.dream import DreamRollout, dream_rollout
from storm_wm.visualize.video import check_video_path, write_video


@dataclass
class RealSteps:
    """Steps as the replay stores them: the frame each action was chosen on, and its outcome."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    actions: np.ndarray  # (T,)
    rewards: np.ndarray  # (T,)
    terminations: np.ndarray  # (T,) episode end or life lost
    episodes_ended: int
    """Episode ends among the kept steps (a new episode follows each)."""


def record_real_play(
    env: gymnasium.Env, policy: Policy, steps: int, skip: int = 0, seed: int | None = None
) -> RealSteps:
    """The agent plays `skip` + `steps` steps and the last `steps` are kept.

    When an episode ends, the next one starts, as in the training replay (whose windows cross
    episode ends too, so the world model has learned what follows an end): games with short
    episodes still give a video of the length asked for.
    """
    frame, _ = env.reset(seed=seed)
    kept: list[tuple[np.ndarray, int, float, bool]] = []
    episodes_ended = 0
    for step in range(skip + steps):
        action = int(policy.act(frame[None])[0])
        next_frame, reward, terminated, truncated, info = env.step(action)
        if step >= skip:
            end = bool(terminated or info.get("life_loss", False))
            kept.append((frame, action, float(reward), end))
        frame = next_frame
        if terminated or truncated:
            episodes_ended += step >= skip
            policy.reset(0)
            frame, _ = env.reset()
    frames, actions, rewards, ends = zip(*kept, strict=True)
    return RealSteps(
        np.stack(frames),
        np.array(actions),
        np.array(rewards, np.float32),
        np.array(ends),
        episodes_ended,
    )


@dataclass
class DreamVideo:
    path: Path
    rollout: DreamRollout
    frame_size: tuple[int, int]  # (height, width)
    episodes_ended: int


def make_dream_video(
    run_dir: Path,
    out: Path,
    *,
    steps: int = 64,
    context: int | None = None,
    skip: int = 0,
    checkpoint: int | None = None,
    seed: int = 10_000,
    fps: float = 8.0,
    scale: int = 3,
    device: str = "auto",
) -> DreamVideo:
    """Records `context` + `steps` real steps of the agent's play (after `skip` steps), runs the
    world model over them (`dream_rollout`) and writes the side-by-side video to `out`."""
    check_video_path(out)
    if steps < 1 or skip < 0 or scale < 1 or fps <= 0:
        raise StormError("--steps, --scale and --fps must be positive and --start 0 or more")
    agent = load_agent(run_dir, checkpoint, device)
    config = agent.config
    context = config.agent.context_length if context is None else context
    if context < 1:
        raise StormError(f"--context must be at least 1 real frame, got {context}")
    env = make_env(config.env)
    models = agent.models_for(env)
    torch.manual_seed(seed)
    policy = Policy(models, config.train, 1, np.random.default_rng(seed), dtype=agent.dtype)
    real = record_real_play(env, policy, context + steps, skip, seed)
    names = action_meanings(env)
    env.close()
    with autocast(agent.device, agent.dtype):
        rollout = dream_rollout(
            models.world_model,
            real.frames,
            real.actions,
            real.rewards,
            real.terminations,
            context,
        )
    composed = compose_dream(rollout, scale=scale, action_names=names)
    write_video(out, composed, fps)
    return DreamVideo(out, rollout, composed.shape[1:3], real.episodes_ended)
