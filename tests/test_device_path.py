"""The GPU fast path, checked on the CPU: device-side replay and the device-side update skip.

On a machine without CUDA these run the tensor code paths with the CPU as the "device"; the
same facts on a GPU are in test_cuda.py (`pytest -m cuda`).
"""

import dataclasses
import os
import shutil

import numpy as np
import pytest
import torch

from conftest import random_steps
from storm_wm.acting import Policy, act_on_padded_context
from storm_wm.compilation import CompiledFunction
from storm_wm.config import build_config
from storm_wm.device import replay_device
from storm_wm.errors import StormError
from storm_wm.imagination import Imagination, ImaginationNoise, imagine
from storm_wm.logs.metrics import MetricAccumulator
from storm_wm.models.agent import build_models
from storm_wm.replay import ReplayBuffer
from storm_wm.training.trainer import Trainer
from storm_wm.training.update import NonfiniteCounters, adam

# The networks and schedule these tests run on: toy+tiny with these fields changed.
TINY_CHANGES = {
    "world_model.hidden": 32,
    "world_model.feedforward": 32,
    "world_model.bins": 17,
    "world_model.sequence_length": 6,
    "world_model.dropout": 0.0,
    "agent.bins": 17,
    "agent.imagination_batch": 3,
    "agent.context_length": 3,
    "agent.horizon": 4,
}


def test_device_replay_samples_exactly_the_windows_of_the_host_replay():
    host = ReplayBuffer(50, (4, 4, 3))
    mirrored = ReplayBuffer(50, (4, 4, 3), device=torch.device("cpu"))
    frames, actions, rewards, terminations = random_steps(130, 0, (4, 4, 3), 0.2)
    for replay in (host, mirrored):  # restored in bulk past the capacity, then stepped: a wrap
        replay.extend(frames[:70], actions[:70], rewards[:70], terminations[:70])
        for index in range(70, 130):
            replay.add(
                frames[index], int(actions[index]), float(rewards[index]), bool(terminations[index])
            )
    assert mirrored.mirror is not None and host.mirror is None
    for name in ("frames", "actions", "rewards", "terminations"):
        np.testing.assert_array_equal(getattr(mirrored.mirror, name).numpy(), getattr(host, name))
    host_batch = host.sample(64, 7, np.random.default_rng(3))
    device_batch = mirrored.sample(64, 7, np.random.default_rng(3))
    for name in ("frames", "actions", "rewards", "terminations"):
        expected, actual = getattr(host_batch, name), getattr(device_batch, name)
        assert actual.dtype == expected.dtype and torch.equal(actual, expected), name
    # Both consumed the generator alike: the next windows agree too.
    generator_host, generator_device = np.random.default_rng(4), np.random.default_rng(4)
    host.sample(5, 3, generator_host), mirrored.sample(5, 3, generator_device)
    assert generator_host.integers(1 << 30) == generator_device.integers(1 << 30)


def test_cleared_device_replay_refills_from_disk_like_a_fresh_one():
    replay = ReplayBuffer(20, (4, 4, 3), device=torch.device("cpu"))
    frames, actions, rewards, terminations = random_steps(30, 1, (4, 4, 3), 0.2)
    replay.extend(frames, actions, rewards, terminations)
    replay.clear()
    replay.extend(frames[:12], actions[:12], rewards[:12], terminations[:12])
    assert len(replay) == 12
    batch = replay.sample(100, 12, np.random.default_rng(0))  # the only window: steps 0..11
    assert torch.equal(batch.frames[0], torch.from_numpy(frames[:12]))
    assert torch.equal(batch.rewards[-1], torch.from_numpy(rewards[:12]))


def test_replay_device_rule():
    cpu, accelerator = torch.device("cpu"), torch.device("meta")
    paper = ReplayBuffer.bytes_needed(100_000, (64, 64, 3))
    assert paper == 100_000 * (64 * 64 * 3 + 13)  # about 1.2 GB
    for setting in ("auto", "on", "off"):  # on the CPU the host arrays are already there
        assert replay_device(setting, cpu, paper) is None
    assert replay_device("on", accelerator, paper) == accelerator
    assert replay_device("off", accelerator, paper) is None
    assert replay_device("auto", accelerator, paper) is None  # free memory unknown: host
    with pytest.raises(StormError, match="auto, on or off"):
        replay_device("yes", cpu, paper)


def filled_trainer(seed: int = 0):
    config = build_config("toy+tiny", TINY_CHANGES)
    torch.manual_seed(seed)
    models = build_models(config, 3, torch.device("cpu"))
    trainer = Trainer(models, config, torch.device("cpu"), torch.float32)
    replay = ReplayBuffer(100, (16, 16, 3))
    replay.extend(*random_steps(100, seed, (16, 16, 3), 0.2))
    return trainer, replay


def state_of(trainer: Trainer) -> dict[str, torch.Tensor]:
    models = trainer.models
    tensors = {f"world_model.{k}": v for k, v in models.world_model.state_dict().items()}
    tensors |= {f"actor_critic.{k}": v for k, v in models.actor_critic.state_dict().items()}
    for name in ("world_model_optimizer", "agent_optimizer"):
        for index, state in getattr(trainer, name).state_dict()["state"].items():
            tensors |= {f"{name}.{index}.{key}": value for key, value in state.items()}
    return {name: value.clone() for name, value in tensors.items()}


def test_adam_is_fused_where_pytorch_has_the_kernel():
    trainer, _ = filled_trainer()
    for optimizer in (trainer.world_model_optimizer, trainer.agent_optimizer):
        assert optimizer.defaults["fused"] is True  # the CPU has a fused Adam kernel


@pytest.mark.parametrize("broken", ["world_model", "agent"])
def test_update_skipped_on_the_device_changes_nothing_and_a_finite_one_changes_all(
    monkeypatch, broken
):
    trainer, replay = filled_trainer()
    rng = np.random.default_rng(0)
    trainer.train_step(replay, rng, step=1)  # Adam's moments exist from here on
    before = state_of(trainer)
    module = trainer.models.world_model if broken == "world_model" else trainer.models.actor_critic
    real_loss = type(module).loss
    monkeypatch.setattr(
        type(module),
        "loss",
        lambda self, *args: (real_loss(self, *args)[0] * float("nan"), real_loss(self, *args)[1]),
    )
    metrics = trainer.train_step(replay, rng, step=2)
    after = state_of(trainer)
    prefix = "world_model" if broken == "world_model" else "actor_critic"
    optimizer = "world_model_optimizer" if broken == "world_model" else "agent_optimizer"
    unchanged = [name for name in before if name.startswith((prefix, optimizer))]
    assert unchanged and all(torch.equal(after[name], before[name]) for name in unchanged)
    assert float(metrics[f"{'agent' if broken == 'agent' else 'world_model'}/nonfinite"]) == 1.0
    assert trainer.nonfinite.streaks[broken] == 1 and int(trainer.nonfinite.skipped) == 1
    # The other model's update was finite and did change its weights, moments and step count.
    other = "actor_critic" if broken == "world_model" else "world_model"
    other_optimizer = "agent_optimizer" if broken == "world_model" else "world_model_optimizer"
    changed = [name for name in before if name.startswith(f"{other_optimizer}.0.")]
    assert all(not torch.equal(after[name], before[name]) for name in changed)
    weights = [name for name in before if name.startswith(other) and "weight" in name]
    assert any(not torch.equal(after[name], before[name]) for name in weights)
    monkeypatch.undo()
    trainer.train_step(replay, rng, step=3)
    assert trainer.nonfinite.streaks[broken] == 0
    again = state_of(trainer)
    step_name = f"{optimizer}.0.step"
    assert float(again[step_name]) == float(before[step_name]) + 1
    assert not torch.equal(again[f"{optimizer}.0.exp_avg"], before[f"{optimizer}.0.exp_avg"])


def test_nonfinite_counters_report_streaks_once_per_read():
    counters = NonfiniteCounters()
    true, false = torch.tensor(True), torch.tensor(False)
    for step, finite in [(1, true), (2, false), (3, false), (4, true), (5, false)]:
        counters.record("world_model", finite, step)
        counters.record("agent", true, step)
    report = counters.read()
    assert report.streaks == {"world_model": 1, "agent": 0}
    assert report.longest == {"world_model": 2, "agent": 0}
    assert report.streak_started == {"world_model": 5, "agent": None}
    assert report.skipped_updates == 3
    counters.record("world_model", false, 6)
    report = counters.read()  # the same streak goes on: no new start to warn about
    assert report.streaks["world_model"] == 2 and report.longest["world_model"] == 2
    assert report.streak_started["world_model"] is None
    restored = NonfiniteCounters()
    restored.load_state_dict(counters.state_dict())
    assert restored.streaks == {"world_model": 2, "agent": 0} and restored.skipped == 4
    # A checkpoint written before 2026-12-07 holds each streak in column 0 of a table.
    restored.load_state_dict({"table": torch.tensor([[0, 0, -1, 0], [3, 3, 7, 1]]), "skipped": 5})
    assert restored.streaks == {"world_model": 0, "agent": 3} and restored.skipped == 5


def test_fused_adam_found_inf_skips_the_step_and_keeps_the_step_count():
    parameter = torch.nn.Parameter(torch.ones(3))
    optimizer = adam([parameter], lr=0.1)
    parameter.grad = torch.ones(3)
    optimizer.found_inf = torch.zeros(())
    optimizer.step()
    saved = {key: value.clone() for key, value in optimizer.state[parameter].items()}
    weights = parameter.detach().clone()
    parameter.grad = torch.full((3,), float("nan"))
    optimizer.found_inf = torch.ones(())
    optimizer.step()
    assert torch.equal(parameter.detach(), weights)
    assert all(torch.equal(optimizer.state[parameter][k], v) for k, v in saved.items())


def test_accumulator_leaves_nan_out_of_means_and_drops_metrics_without_values():
    accumulator = MetricAccumulator()
    accumulator.add({"a": torch.tensor(1.0), "b": torch.tensor(float("nan"))})
    accumulator.add({"a": torch.tensor(float("nan")), "b": torch.tensor(float("nan"))})
    accumulator.add({"a": torch.tensor(4.0), "b": torch.tensor(float("nan"))})
    assert accumulator.flush() == {"a": 2.5}


def tiny_models(seed: int = 0, **overrides):
    config = build_config("toy+tiny", {**TINY_CHANGES, **overrides})
    torch.manual_seed(seed)
    return config, build_models(config, 3, torch.device("cpu"))


def test_imagination_noise_is_drawn_in_the_rollouts_order_and_gives_its_rollout():
    _, models = tiny_models()
    world_model, actor_critic = models.world_model, models.actor_critic
    frames = torch.randint(0, 256, (3, 3, 16, 16, 3), dtype=torch.uint8)
    actions = torch.randint(0, 3, (3, 3))
    torch.manual_seed(5)
    noise = ImaginationNoise.draw(world_model, 3, 3, 4)
    torch.manual_seed(5)  # what torch.rand draws, sample by sample in the rollout's order
    latent = (world_model.config.categoricals, world_model.config.classes)
    posterior, priors, steps = torch.rand(3, 3, *latent), [torch.rand(3, *latent)], []
    for _ in range(4):
        steps.append(torch.rand(3, 3))
        priors.append(torch.rand(3, *latent))
    assert torch.equal(noise.posterior, posterior) and torch.equal(
        noise.priors, torch.stack(priors)
    )
    assert torch.equal(noise.actions, torch.stack(steps))
    imagination = Imagination(torch.device("cpu"))
    torch.manual_seed(5)
    drawn = imagination(world_model, actor_critic, frames, actions, 4)
    given = imagine(world_model, actor_critic, frames, actions, 4, noise)
    for name, value in drawn.__dict__.items():
        assert torch.equal(getattr(given, name), value), name
    torch.manual_seed(6)
    other = imagination(world_model, actor_critic, frames, actions, 4)
    assert not torch.equal(other.states, drawn.states)


def acting_policies(compiled: bool, act_on_posterior: bool = False):
    """A policy padding its contexts to the longest, and one padding them to act_context (the
    compiled step's fixed shape), with the same networks."""
    config, models = tiny_models(
        1, **{"train.act_context": 5, "train.act_on_posterior": act_on_posterior}
    )

    def policy(compile: bool) -> Policy:
        return Policy(
            models,
            config.train,
            4,
            np.random.default_rng(0),
            dtype=torch.float32,
            compile=compile,
        )

    eager, padded = policy(False), policy(True)
    if not compiled:
        padded.function.compiled = None  # the fixed-shape step, run eagerly
    return eager, padded


@pytest.mark.parametrize("act_on_posterior", [False, True])
def test_padding_at_the_end_never_changes_the_action_of_a_context(act_on_posterior):
    """Contexts of several lengths act as one batch, padded at their end; each env's action is
    the one its context alone, unpadded, chooses with the same sampling noise."""
    eager, padded = acting_policies(compiled=False, act_on_posterior=act_on_posterior)
    config = eager.world_model.config
    latent = (config.categoricals, config.classes)
    frames = np.random.default_rng(2).integers(0, 256, (8, 4, 16, 16, 3), dtype=np.uint8)
    chosen = []
    for step, frame in enumerate(frames):  # contexts grow from 0 to 5 steps, then slide
        if step == 6:  # one environment starts a new episode: contexts of two lengths
            eager.reset(2), padded.reset(2)
        rows = [index for index, context in enumerate(eager.actions) if context]
        contexts = [(np.stack(eager.frames[index]), list(eager.actions[index])) for index in rows]
        torch.manual_seed(step)
        chosen.append(eager.act(frame))
        torch.manual_seed(step)
        np.testing.assert_array_equal(padded.act(frame), chosen[-1])
        if not rows:
            continue
        torch.manual_seed(step)  # the step's noise, in the order the policy draws it
        longest = max(len(actions) for _, actions in contexts)
        posterior, prior = torch.rand(len(rows), longest, *latent), torch.rand(len(rows), *latent)
        current = (torch.rand if act_on_posterior else torch.zeros)(len(rows), 1, *latent)
        action_noise = torch.rand(len(rows), 3)
        for row, (index, (context, actions)) in enumerate(zip(rows, contexts, strict=True)):
            length = len(actions)
            (alone,) = act_on_padded_context(
                eager.world_model,
                eager.actor_critic,
                torch.from_numpy(context)[None],
                torch.tensor([actions]),
                torch.tensor([length]),
                torch.from_numpy(frame[index : index + 1]),
                posterior[row : row + 1, :length],
                prior[row : row + 1],
                current[row : row + 1],
                action_noise[row : row + 1],
                act_on_posterior,
                False,
            )
            assert int(alone[0]) == chosen[-1][index], (step, index)
    assert len(set(np.stack(chosen).flatten().tolist())) > 1  # not a constant policy


def test_compiling_unavailable_warns_once_and_runs_eagerly(monkeypatch, capsys):
    def no_compiler(function, **settings):
        def fails(*args):
            raise RuntimeError("InductorError: no working C++ compiler found\nmore detail")

        return fails

    monkeypatch.setattr(torch, "compile", no_compiler)
    function = CompiledFunction(lambda x: (x * 2,), torch.device("cpu"), "the doubling")
    assert torch.equal(function(torch.ones(2))[0], torch.full((2,), 2.0))
    assert torch.equal(function(torch.ones(2))[0], torch.full((2,), 2.0))
    assert capsys.readouterr().err.splitlines() == [
        "storm-wm: warning: torch.compile of the doubling is unavailable (InductorError: no "
        "working C++ compiler found); running it eagerly"
    ]

    def refused(function, **settings):
        raise RuntimeError("torch.compile is not supported on this Python")

    monkeypatch.setattr(torch, "compile", refused)
    function = CompiledFunction(lambda x: (x + 1,), torch.device("cpu"), "the increment")
    assert torch.equal(function(torch.zeros(1))[0], torch.ones(1))
    assert "running it eagerly" in capsys.readouterr().err


def _has_cpp_compiler() -> bool:
    return any(shutil.which(name) for name in (os.environ.get("CXX", "g++"), "c++", "clang++"))


@pytest.mark.slow
@pytest.mark.skipif(not _has_cpp_compiler(), reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_imagination_and_acting_compute_the_eager_function(capsys):
    """train.compile on the CPU (inductor): the trainer's rollout and the policy's step.

    Fresh random weights and inputs; both paths take the same sampling noise (drawn eagerly in
    the same order), so discrete samples agree and fp32 values differ only by the compiler's
    reordered arithmetic (1e-4). Any recompilation is an error here (and would show as the eager
    fallback): one graph serves every call, whatever the context's length. Compiling takes a few
    minutes on a 2-core CPU.
    """
    torch._dynamo.reset()
    with torch._dynamo.config.patch(error_on_recompile=True):
        _compiled_equals_eager()
    assert "warning" not in capsys.readouterr().err
    torch._dynamo.reset()


def _compiled_equals_eager() -> None:
    config, models = tiny_models(3, **{"train.compile": True, "agent.horizon": 2})
    compiled = Trainer(models, config, torch.device("cpu"), torch.float32)
    eager = Trainer(
        models,
        dataclasses.replace(config, train=dataclasses.replace(config.train, compile=False)),
        torch.device("cpu"),
        torch.float32,
    )
    assert isinstance(compiled.imagination.function, CompiledFunction)
    replay = ReplayBuffer(100, (16, 16, 3))
    replay.extend(*random_steps(100, 3, (16, 16, 3), 0.2))
    for seed in (0, 1):  # the second call reuses the graph with new inputs
        rollouts = []
        for trainer in (compiled, eager):
            torch.manual_seed(seed)
            rollouts.append(trainer.imagine(replay, np.random.default_rng(seed)))
        for name, value in rollouts[1].__dict__.items():
            torch.testing.assert_close(getattr(rollouts[0], name), value, atol=1e-4, rtol=1e-4)
    assert compiled.imagination.function.compiled is not None  # no fallback happened

    eager_policy, compiled_policy = acting_policies(compiled=True)
    frames = np.random.default_rng(4).integers(0, 256, (7, 4, 16, 16, 3), dtype=np.uint8)
    for step, frame in enumerate(frames):
        chosen = []
        for policy in (eager_policy, compiled_policy):
            torch.manual_seed(step)
            chosen.append(policy.act(frame))
        np.testing.assert_array_equal(chosen[1], chosen[0])
    assert compiled_policy.function.compiled is not None
