"""The GPU fast path on a real GPU: run with `pytest -m cuda` (skipped without CUDA).

The same facts as test_device_path.py checks on the CPU, on CUDA with bf16 autocast: replay
gathered on the device, the skip decided on the device, no host synchronisation inside a
training step, and compiled (CUDA graphs) imagination and acting against eager code.
Tolerances: bf16 keeps 8 bits of mantissa, so compiled and eager bf16 values (rounded at
different points of fused kernels) are held to 5e-2; a categorical sample whose two best
scores are that close can come out differently, so sampled paths are compared where they
agree and must agree for most rows.
"""

import dataclasses

import numpy as np
import pytest
import torch

from conftest import random_steps
from storm_wm.acting import Policy
from storm_wm.config import build_config
from storm_wm.device import replay_device
from storm_wm.models.agent import build_models
from storm_wm.replay import ReplayBuffer
from storm_wm.training.trainer import Trainer

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

SMALL = {
    "world_model.hidden": 64,
    "world_model.layers": 2,
    "world_model.heads": 4,
    "world_model.feedforward": 128,
    "world_model.head_hidden": 64,
    "world_model.channels": "8,16,16,16",
    "world_model.categoricals": 8,
    "world_model.classes": 8,
    "world_model.bins": 33,
    "world_model.batch_size": 4,
    "world_model.sequence_length": 16,
    "world_model.dropout": 0.0,
    "agent.hidden": 64,
    "agent.bins": 33,
    "agent.imagination_batch": 64,
    "agent.context_length": 4,
    "agent.horizon": 6,
    "env.image_size": 32,
}


def device() -> torch.device:
    return torch.device("cuda")


def setup(seed: int = 0, **overrides):
    config = build_config("toy", {**SMALL, **overrides})
    torch.manual_seed(seed)
    models = build_models(config, 3, device())
    trainer = Trainer(models, config, device(), torch.bfloat16)
    replay = ReplayBuffer(300, (32, 32, 3), device=device())
    replay.extend(*random_steps(300, seed, (32, 32, 3), 0.1))
    return config, models, trainer, replay


def test_replay_on_cuda_samples_the_host_windows():
    host = ReplayBuffer(200, (32, 32, 3))
    mirrored = ReplayBuffer(200, (32, 32, 3), device=device())
    steps = random_steps(260, 1, (32, 32, 3), 0.1)
    for replay in (host, mirrored):
        replay.extend(*(array[:150] for array in steps))
        for index in range(150, 260):
            replay.add(*(array[index] for array in steps))
    expected = host.sample(128, 16, np.random.default_rng(2))
    actual = mirrored.sample(128, 16, np.random.default_rng(2))
    for name in ("frames", "actions", "rewards", "terminations"):
        value = getattr(actual, name)
        assert value.device.type == "cuda"
        assert torch.equal(value.cpu(), getattr(expected, name)), name


def test_paper_replay_goes_on_the_gpu_automatically():
    paper = ReplayBuffer.bytes_needed(100_000, (64, 64, 3))
    free, _ = torch.cuda.mem_get_info()
    chosen = replay_device("auto", device(), paper)
    assert chosen == (device() if paper <= free / 4 else None)


def test_a_training_step_never_waits_for_the_host():
    _, _, trainer, replay = setup()
    rng = np.random.default_rng(0)
    trainer.train_step(replay, rng, step=1)  # optimizer states and caches exist from here on
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        metrics = trainer.train_step(replay, rng, step=2)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(value.device.type == "cuda" for value in metrics.values())
    assert trainer.world_model_optimizer.defaults["fused"] is True


def test_nonfinite_update_on_cuda_changes_nothing_and_the_next_finite_one_does(monkeypatch):
    _, models, trainer, replay = setup()
    rng = np.random.default_rng(0)
    trainer.train_step(replay, rng, step=1)

    def snapshot():
        state = {k: v.clone() for k, v in models.world_model.state_dict().items()}
        optimizer = trainer.world_model_optimizer.state_dict()["state"][0]
        return state, {k: v.clone() for k, v in optimizer.items()}

    weights, moments = snapshot()
    real_loss = type(models.world_model).loss

    def nan_loss(self, *args):
        loss, metrics = real_loss(self, *args)
        return loss * float("nan"), metrics

    monkeypatch.setattr(type(models.world_model), "loss", nan_loss)
    trainer.train_step(replay, rng, step=2)
    after_weights, after_moments = snapshot()
    assert all(torch.equal(after_weights[k], v) for k, v in weights.items())
    assert all(torch.equal(after_moments[k], v) for k, v in moments.items())
    assert trainer.nonfinite.streaks == {"world_model": 1, "agent": 0}
    monkeypatch.undo()
    trainer.train_step(replay, rng, step=3)
    final_weights, final_moments = snapshot()
    assert float(final_moments["step"]) == float(moments["step"]) + 1
    assert any(not torch.equal(final_weights[k], v) for k, v in weights.items())
    assert trainer.nonfinite.read().streaks["world_model"] == 0


def test_compiled_imagination_on_cuda_matches_eager_in_bf16():
    config, models, compiled, replay = setup(3, **{"train.compile": True})
    eager_config = dataclasses.replace(
        config, train=dataclasses.replace(config.train, compile=False)
    )
    eager = Trainer(models, eager_config, device(), torch.bfloat16)
    latent_size = config.world_model.latent_size
    for seed in (0, 1, 2):  # the graph is captured once and replayed with new inputs
        rollouts = []
        for trainer in (compiled, eager):
            torch.manual_seed(seed)
            rollouts.append(trainer.imagine(replay, np.random.default_rng(seed)))
        fast, plain = rollouts
        same_path = (fast.actions == plain.actions).all(1) & (
            fast.states[..., :latent_size] == plain.states[..., :latent_size]
        ).all(-1).all(-1)
        assert same_path.float().mean() >= 0.75, same_path.float().mean()
        torch.testing.assert_close(
            fast.states[same_path], plain.states[same_path], atol=5e-2, rtol=5e-2
        )
        torch.testing.assert_close(
            fast.rewards[same_path], plain.rewards[same_path], atol=5e-2, rtol=5e-2
        )
    assert compiled.imagination.function.compiled is not None  # no eager fallback


def test_compiled_acting_on_cuda_matches_eager_in_bf16():
    config = build_config("toy", {**SMALL, "train.act_context": 6})
    torch.manual_seed(4)
    models = build_models(config, 3, device())

    def policy(compile: bool) -> Policy:
        return Policy(
            models,
            config.train,
            16,
            np.random.default_rng(0),
            dtype=torch.bfloat16,
            compile=compile,
        )

    eager, compiled = policy(False), policy(True)
    frames = np.random.default_rng(5).integers(0, 256, (10, 16, 32, 32, 3), dtype=np.uint8)
    agreement = []
    for step, frame in enumerate(frames):
        chosen = []
        for acting in (eager, compiled):
            torch.manual_seed(step)
            chosen.append(acting.act(frame))
        agreement.append(np.mean(chosen[0] == chosen[1]))
    assert np.mean(agreement) >= 0.9, agreement
    assert compiled.function.compiled is not None
