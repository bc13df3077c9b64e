"""Evaluation: the trained agent plays whole episodes in parallel environments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from storm_wm.acting import Policy
from storm_wm.analysis.scores import human_normalized
from storm_wm.config import Config
from storm_wm.envs import make_env, resolve_game
from storm_wm.errors import StormError
from storm_wm.training.checkpoint import find_checkpoint, load_checkpoint
from storm_wm.training.device import resolve_device, resolve_precision
from storm_wm.training.trainer import Models, build_models


def load_models(
    run_dir: Path, step: int | None = None, device: str = "auto"
) -> tuple[Config, Models, dict]:
    """The run's config and its models restored from a checkpoint, checked against each other."""
    config = Config.load(run_dir / "config.json")
    path = find_checkpoint(run_dir, step)
    state = load_checkpoint(path)
    spec = resolve_game(config.env.game)
    if state.get("game") != spec.name:
        raise StormError(
            f"{path} was trained on {state.get('game')}, but the run's config says {spec.name}"
        )
    models = build_models(config, int(state["num_actions"]), resolve_device(device))
    try:
        models.world_model.load_state_dict(state["world_model"])
        models.actor_critic.load_state_dict(state["actor_critic"])
    except RuntimeError as error:
        raise StormError(
            f"{path} does not match the run's architecture: {str(error).splitlines()[1].strip()}"
        ) from None
    return config, models, {"path": path, **state}


def evaluate(
    run_dir: Path,
    episodes: int = 20,
    *,
    protocol: str | None = None,
    greedy: bool = False,
    step: int | None = None,
    device: str = "auto",
    seed: int = 10_000,
) -> dict[str, Any]:
    """Plays `episodes` full episodes, all at once, and writes RUN_DIR/eval.json.

    Every episode runs to its natural end (game over or the frame cap, never a life loss), and
    its return includes the final step's reward. Evaluation seeds differ from training seeds.
    """
    if episodes <= 0:
        raise StormError(f"--episodes must be positive, got {episodes}")
    config, models, checkpoint = load_models(run_dir, step, device)
    protocol = protocol or config.env.protocol
    spec = resolve_game(config.env.game)
    device_ = next(models.world_model.parameters()).device
    dtype = resolve_precision(config.precision, device_)
    torch.manual_seed(seed)
    envs = [
        make_env(spec, protocol=protocol, image_size=config.env.image_size,
                 max_episode_frames=config.env.max_episode_frames)
        for _ in range(episodes)
    ]  # fmt: skip
    num_actions = int(envs[0].action_space.n)
    policy = Policy(
        models.world_model, models.actor_critic, episodes, num_actions,
        context_length=config.train.act_context, device=device_, dtype=dtype,
        rng=np.random.default_rng(seed), act_on_posterior=config.train.act_on_posterior,
        greedy=greedy,
    )  # fmt: skip
    frames = np.stack([env.reset(seed=seed + index)[0] for index, env in enumerate(envs)])
    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, dtype=np.int64)
    running = np.ones(episodes, dtype=bool)
    while running.any():
        actions = policy.act(frames)
        for index in np.flatnonzero(running):
            frame, reward, terminated, truncated, _ = envs[index].step(int(actions[index]))
            returns[index] += reward
            lengths[index] += 1
            frames[index] = frame
            if terminated or truncated:
                running[index] = False
    for env in envs:
        env.close()
    mean = float(returns.mean())
    result = {
        "game": spec.name,
        "game_kind": spec.kind,
        "protocol": protocol,
        "seed": config.seed,
        "step": int(checkpoint["step"]),
        "checkpoint": str(Path(checkpoint["path"]).relative_to(run_dir)),
        "policy": "greedy" if greedy else "sampled",
        "episodes": episodes,
        "returns": returns.tolist(),
        "lengths": lengths.tolist(),
        "mean": mean,
        "std": float(returns.std()),
        "human_normalized": human_normalized(spec.atari_name, mean) if spec.atari_name else None,
    }
    (run_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
