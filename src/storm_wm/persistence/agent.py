"""A trained agent loaded from a run directory: its config and its models from a checkpoint."""

from __future__ import annotations

from pathlib import Path

from storm_wm.config import Config
from storm_wm.device import resolve_device
from storm_wm.envs import resolve_game
from storm_wm.errors import StormError
from storm_wm.models.agent import Models, build_models
from storm_wm.persistence.checkpoint import load_intact_checkpoint


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
