"""Fixtures shared by several test files: thread count, and tiny untrained models and runs."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from storm_wm.config import Config, build_config
from storm_wm.device import CPU_BF16_VARIABLE
from storm_wm.models import WorldModel
from storm_wm.models.agent import Models, build_models
from storm_wm.persistence.checkpoint import save_checkpoint

TINY_GAME = "toy:catch"
TINY_ACTIONS = 3
"""toy:catch's actions: left, stay, right."""


def random_steps(count: int, seed: int, shape: tuple[int, ...], end_rate: float):
    """`count` replay steps of noise: uint8 frames of `shape`, actions of toy:catch, normal
    rewards, and end flags set with probability `end_rate`."""
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (count, *shape), dtype=np.uint8),
        rng.integers(0, TINY_ACTIONS, count),
        rng.standard_normal(count).astype(np.float32),
        rng.random(count) < end_rate,
    )


CPU_BF16_ANSWERS = ("native", "emulated")
"""Both answers of the CPU's bf16 detection: a test that depends on it runs under each, so any
machine proves the path of the other kind of CPU too."""


@pytest.fixture(params=CPU_BF16_ANSWERS)
def cpu_bf16(request, monkeypatch) -> str:
    """Runs the test once with each answer of `cpu_has_fast_bf16` (for this process and the
    commands it starts)."""
    monkeypatch.setenv(CPU_BF16_VARIABLE, request.param)
    return request.param


@pytest.fixture
def one_thread():
    """Tiny models run faster on one thread than on two contended ones (a shared CI machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build_tiny_models(**overrides) -> tuple[Config, Models]:
    """The debug preset's models for toy:catch, fp32 on the CPU, initialised from seed 0."""
    config = build_config("debug", {"env.game": TINY_GAME, "precision": "fp32", **overrides})
    torch.manual_seed(0)
    return config, build_models(config, TINY_ACTIONS, torch.device("cpu"))


def build_tiny_world_model(**overrides) -> tuple[WorldModel, Config]:
    """The world model of `build_tiny_models`, with the config it was built from."""
    config, models = build_tiny_models(**overrides)
    return models.world_model, config


def write_tiny_run(path: Path, step: int = 100, **overrides) -> Path:
    """A run directory as `storm-wm train` leaves it, with an untrained debug model saved at
    `step` (calling again on the same directory adds a newer checkpoint)."""
    config, models = build_tiny_models(**overrides)
    path.mkdir(parents=True, exist_ok=True)
    config.save(path / "config.json")
    save_checkpoint(
        path,
        step,
        {
            "game": TINY_GAME,
            "num_actions": TINY_ACTIONS,
            "config": config.to_dict(),
            "world_model": models.world_model.state_dict(),
            "actor_critic": models.actor_critic.state_dict(),
        },
    )
    return path


@pytest.fixture
def tiny_models() -> Callable[..., tuple[Config, Models]]:
    """Builds (config, models) as `build_tiny_models`; keyword arguments override config fields."""
    return build_tiny_models


@pytest.fixture
def tiny_world_model() -> Callable[..., tuple[WorldModel, Config]]:
    """Builds (world model, config) as `build_tiny_world_model`."""
    return build_tiny_world_model


@pytest.fixture
def make_run_dir() -> Callable[..., Path]:
    """Writes a tiny run directory as `write_tiny_run`."""
    return write_tiny_run
