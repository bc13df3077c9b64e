"""A trained agent loaded from a run directory: its config and a checkpoint that matches it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import torch

from storm_wm.config import Config
from storm_wm.device import resolve_device, resolve_precision
from storm_wm.errors import StormError
from storm_wm.models.agent import Models, build_models
from storm_wm.persistence.checkpoint import load_intact_checkpoint
from storm_wm.persistence.compatibility import check_checkpoint_matches


def check_run_dir(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise StormError(f"{run_dir} is not a directory; give the run directory written by train")


@dataclass
class TrainedAgent:
    """A run's config (read once) and a checkpoint of the same game and architecture."""

    run_dir: Path
    config: Config
    checkpoint: dict[str, Any]
    """What the checkpoint holds (its step, the weights), and its `path`."""
    device: torch.device
    dtype: torch.dtype
    """The precision the run's config asks for on `device`."""

    def models_for(self, env: gymnasium.Env) -> Models:
        """The trained networks, for `env`, whose action count must be the checkpoint's."""
        state, path = self.checkpoint, self.checkpoint["path"]
        check_checkpoint_matches(state, self.config, path, num_actions=int(env.action_space.n))
        models = build_models(self.config, int(state["num_actions"]), self.device)
        try:
            models.world_model.load_state_dict(state["world_model"])
            models.actor_critic.load_state_dict(state["actor_critic"])
        except RuntimeError as error:
            reason = str(error).splitlines()[1].strip()
            raise StormError(f"{path} does not match the run's architecture: {reason}") from None
        return models


def load_agent(run_dir: Path, step: int | None = None, device: str = "auto") -> TrainedAgent:
    """The run's config and its checkpoint of `step`, or else its newest intact one (past
    damaged ones, with a warning), checked against each other."""
    check_run_dir(run_dir)
    config = Config.load(run_dir / "config.json")
    path, state = load_intact_checkpoint(run_dir, step)
    check_checkpoint_matches(state, config, path)
    resolved = resolve_device(device)
    precision = resolve_precision(config.precision, resolved)
    return TrainedAgent(run_dir, config, {"path": path, **state}, resolved, precision)
