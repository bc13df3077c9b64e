"""Evaluation: the trained agent plays whole episodes in parallel environments.

Besides the returns, the episodes it plays serve as held-out data for the world model: they
were never in the training replay, so windows cut from them measure how well the model
predicts open loop on data it has not fitted (`storm_wm.diagnostics`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch

from storm_wm.acting import Policy
from storm_wm.analysis.scores import human_normalized
from storm_wm.config import Config
from storm_wm.device import autocast, resolve_device, resolve_precision
from storm_wm.diagnostics import HORIZONS, WindowReservoir, open_loop_errors
from storm_wm.envs import make_env, resolve_game
from storm_wm.errors import StormError
from storm_wm.persistence.atomic import write_text_atomically
from storm_wm.persistence.checkpoint import load_intact_checkpoint
from storm_wm.training.trainer import Models, build_models


def load_models(
    run_dir: Path, step: int | None = None, device: str = "auto"
) -> tuple[Config, Models, dict]:
    """The run's config and its models restored from a checkpoint, checked against each other."""
    config = Config.load(run_dir / "config.json")
    path, state = load_intact_checkpoint(run_dir, step)  # past damaged ones, with a warning
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


def play_episodes(
    envs: list[gymnasium.Env],
    policy: Policy,
    seed: int,
    reservoir: WindowReservoir | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Plays one episode in each env at once (env i reset with seed + i): (returns, lengths).

    An episode runs to its natural end (game over or the frame cap, never a life loss) and its
    return includes the final step's reward. Every step also goes to `reservoir`, with the
    replay's end flag (episode end or life lost), which is what the world model learned.
    """
    count = len(envs)
    frames = np.stack([env.reset(seed=seed + index)[0] for index, env in enumerate(envs)])
    returns = np.zeros(count)
    lengths = np.zeros(count, dtype=np.int64)
    running = np.ones(count, dtype=bool)
    while running.any():
        for index in np.flatnonzero(~running):
            policy.reset(index)  # a finished env's empty context costs no forward pass
        actions = policy.act(frames)
        # A new array each step: the policy keeps the rows it was given as its context.
        next_frames = frames.copy()
        for index in np.flatnonzero(running):
            frame, reward, terminated, truncated, info = envs[index].step(int(actions[index]))
            returns[index] += float(reward)
            lengths[index] += 1
            if reservoir is not None:
                end = bool(terminated or info.get("life_loss", False))
                reservoir.add(index, frames[index], int(actions[index]), float(reward), end)
            next_frames[index] = frame
            if terminated or truncated:
                running[index] = False
                if reservoir is not None:
                    reservoir.end_episode(index)
        frames = next_frames
    return returns, lengths


def evaluate(
    run_dir: Path,
    episodes: int = 20,
    *,
    protocol: str | None = None,
    greedy: bool = False,
    step: int | None = None,
    device: str = "auto",
    seed: int = 10_000,
    diagnostic_windows: int = 256,
) -> dict[str, Any]:
    """Plays `episodes` full episodes, all at once, and writes RUN_DIR/eval.json.

    Evaluation seeds (seed, seed + 1, ...) differ from training seeds. With
    `diagnostic_windows` > 0, that many windows of the episodes (a uniform sample) also measure
    the world model's open-loop k-step errors, under `world_model_quality`.
    """
    if episodes <= 0:
        raise StormError(f"--episodes must be positive, got {episodes}")
    if diagnostic_windows < 0:
        raise StormError(f"--diagnostic-windows must be 0 or more, got {diagnostic_windows}")
    started = time.perf_counter()
    config, models, checkpoint = load_models(run_dir, step, device)
    protocol = protocol or config.env.protocol
    spec = resolve_game(config.env.game)
    device_ = next(models.world_model.parameters()).device
    dtype = resolve_precision(config.precision, device_)
    torch.manual_seed(seed)
    envs = [
        make_env(spec, protocol=protocol, image_size=config.env.image_size,
                 max_episode_frames=config.env.max_episode_frames,
                 life_loss=config.env.life_loss)
        for _ in range(episodes)
    ]  # fmt: skip
    num_actions = int(envs[0].action_space.n)
    policy = Policy(
        models.world_model, models.actor_critic, episodes, num_actions,
        context_length=config.train.act_context, device=device_, dtype=dtype,
        rng=np.random.default_rng(seed), act_on_posterior=config.train.act_on_posterior,
        greedy=greedy,
    )  # fmt: skip
    context = config.agent.context_length
    reservoir = None
    if diagnostic_windows:
        reservoir = WindowReservoir(
            diagnostic_windows, context + max(HORIZONS), context, episodes,
            np.random.default_rng([seed, 1]),
        )  # fmt: skip
    returns, lengths = play_episodes(envs, policy, seed, reservoir)
    for env in envs:
        env.close()
    quality = None
    if reservoir is not None and reservoir.windows:
        with autocast(device_, dtype):
            quality = open_loop_errors(models.world_model, **reservoir.tensors(), context=context)
        quality["source"] = "windows of these evaluation episodes (not seen in training)"
    mean = float(returns.mean())
    result = {
        "game": spec.name,
        "game_kind": spec.kind,
        "protocol": protocol,
        "seed": config.seed,
        "eval_seed": seed,
        "step": int(checkpoint["step"]),
        "checkpoint": str(Path(checkpoint["path"]).relative_to(run_dir)),
        "policy": "greedy" if greedy else "sampled",
        "episodes": episodes,
        "returns": returns.tolist(),
        "lengths": lengths.tolist(),
        "mean": mean,
        "std": float(returns.std()),
        "human_normalized": human_normalized(spec.atari_name, mean) if spec.atari_name else None,
        "world_model_quality": quality,
        "seconds": round(time.perf_counter() - started, 1),
    }
    # Atomic: a sweep takes the presence of eval.json to mean the run is finished.
    write_text_atomically(run_dir / "eval.json", json.dumps(result, indent=2) + "\n")
    return result
