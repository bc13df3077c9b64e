"""The `released` preset: each behaviour of the authors' released code, switched by its field.

The life-loss rule is checked on the real ROMs in test_envs.py and the percentiles by hand in
test_ops.py; here: the training loop's episode ends (acting context, reset seeds), the resume
of an episode that cannot be restored, and the config a `--preset debug+released` run records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest
import torch

from storm_wm.config import Config, build_config
from storm_wm.envs import make_env
from storm_wm.models.actor_critic import ActorCritic
from storm_wm.persistence.checkpoint import find_checkpoint, load_checkpoint
from storm_wm.persistence.compatibility import flatten
from storm_wm.run.state import capture, restore
from storm_wm.run.train import build_components, train
from storm_wm.training.loop import LoopState, train_loop

EPISODE = 7
"""Steps of every toy:catch episode."""

# On the tiny preset's networks (stacked on toy): three whole episodes, all in the warm-up, so
# the loop's bookkeeping alone, no updates.
SCHEDULE = {
    "train.steps": 3 * EPISODE,
    "train.warmup_steps": 1000,
    "train.log_every": 1000,
    "train.checkpoint_every": 1000,
    "train.diagnostics_every": 0,
    "train.video_every": 0,
}


class RecordResets(gymnasium.Wrapper):
    """Notes each reset's seed, first frame and the policy's context length at that moment."""

    def __init__(self, env: gymnasium.Env) -> None:
        super().__init__(env)
        self.policy = None
        self.resets: list[tuple[int | None, np.ndarray, int]] = []

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        frame, info = self.env.reset(seed=seed, options=options)
        self.resets.append((seed, frame, len(self.policy.actions[0])))
        return frame, info


def run_three_episodes(tmp_path: Path, preset: str) -> tuple[Config, RecordResets, LoopState]:
    config = build_config(preset, SCHEDULE)
    env = RecordResets(make_env("toy:catch", seed=config.seed, image_size=16))
    components = build_components(config, tmp_path, "toy:catch", env)
    env.policy = components.policy
    replay, trainer, policy = components.replay, components.trainer, components.policy
    state = train_loop(config, env, replay, trainer, policy, components.rng)  # no parts
    assert state.episode == 3 and len(env.resets) == 4
    return config, env, state


def test_paper_setting_clears_the_context_and_continues_the_reset_generator(tmp_path: Path):
    config, env, _ = run_three_episodes(tmp_path, "toy+tiny")
    seeds, frames, contexts = zip(*env.resets, strict=True)
    assert seeds == (config.seed, None, None, None)
    assert contexts == (0, 0, 0, 0)
    # The generator seeded once goes on: the episodes start from different frames.
    assert not np.array_equal(frames[0], frames[1]) and not np.array_equal(frames[1], frames[2])


def test_released_setting_keeps_the_context_and_resets_with_the_run_seed(tmp_path: Path):
    config, env, _ = run_three_episodes(tmp_path, "toy+tiny+released")
    seeds, frames, contexts = zip(*env.resets, strict=True)
    assert seeds == (config.seed,) * 4
    for frame in frames[1:]:
        assert np.array_equal(frame, frames[0])
    # The policy still holds the earlier episodes' frames when the next one starts (at most
    # train.act_context of them, 16).
    assert contexts == (0, EPISODE, 2 * EPISODE, min(3 * EPISODE, config.train.act_context))


@pytest.mark.parametrize("preset", ["toy+tiny", "toy+tiny+released"])
def test_an_unrestorable_episode_restarts_as_any_episode_end_would(tmp_path: Path, preset: str):
    """gym:<id> games on resume: the new episode's seed and the policy's context follow the
    same two fields as an episode's end in the loop."""
    config = build_config(preset, SCHEDULE)
    components = build_components(config, tmp_path, "toy:catch", make_env("toy:catch", seed=1))
    frame, _ = components.env.reset()
    for _ in range(3):
        components.policy.act(frame[None], random=True)
    payload = capture(config, components, LoopState(step=45, episode_length=3, frame=frame))
    payload["env"] = {"kind": "unsupported", "env": "SomeGymEnv"}
    state = restore(config, components, payload)
    assert state.frame is None
    if preset == "toy+tiny":
        assert state.reset_seed != config.seed and len(components.policy.actions[0]) == 0
    else:
        assert state.reset_seed == config.seed and len(components.policy.actions[0]) == 3


def test_actor_critic_reads_the_percentiles_the_config_names():
    for preset, mode in [("debug", "interpolate"), ("debug+released", "kthvalue")]:
        agent = build_config(preset).agent
        assert ActorCritic(agent, 8, 3).return_normalizer.percentile == mode


RELEASED_FIELDS = {
    "env.life_loss": "released",
    "agent.lambda_variant": "released",
    "agent.return_norm_percentile": "kthvalue",
    "train.clear_context_on_episode_end": False,
    "train.repeat_reset_seed": True,
    "train.eval_bookkeeping": "released",
}
"""Every field the preset changes, with the authors' setting (the README's difference table)."""


def test_train_with_the_released_preset_records_every_changed_field(tmp_path: Path):
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "storm_wm.cli",
            "train",
            "--game",
            "Pong",
            "--preset",
            "debug+released",
            "--steps",
            "12",
            "--no-progress",
            "--run-dir",
            str(run_dir),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    recorded = flatten(json.loads((run_dir / "config.json").read_text()))
    assert recorded["preset"] == "debug+released"
    for name, value in RELEASED_FIELDS.items():
        assert recorded[name] == value, name
    # Against the debug preset alone, these fields (and the step budget) are all that differ;
    # debug's own settings stay.
    debug = flatten(build_config("debug").to_dict())
    differing = {name for name in recorded if recorded[name] != debug[name]}
    assert differing == {*RELEASED_FIELDS, "preset", "train.steps"}
    for name, value in RELEASED_FIELDS.items():
        assert debug[name] != value, f"{name} is already {value!r} without the preset"


def test_a_released_run_resumed_mid_episode_matches_one_left_alone(tmp_path: Path):
    """Resumed at step 20 (the third episode's 6th step, with the two before in the acting
    context), it ends with the weights and replay of the run that was never stopped."""
    steps = {
        **SCHEDULE,
        "train.warmup_steps": 12,
        "train.train_every": 4,
        "train.checkpoint_every": 10,
        "train.deterministic": "true",
    }
    whole = build_config("toy+tiny+released", {**steps, "train.steps": 34})
    train(whole, tmp_path / "whole", show_progress=False)
    first_part = build_config("toy+tiny+released", {**steps, "train.steps": 20})
    train(first_part, tmp_path / "resumed", show_progress=False)
    train(whole, tmp_path / "resumed", show_progress=False, resume=True)
    expected = load_checkpoint(find_checkpoint(tmp_path / "whole"))
    resumed = load_checkpoint(find_checkpoint(tmp_path / "resumed"))
    assert resumed["step"] == expected["step"] == 34
    assert resumed["loop"]["episode"] == expected["loop"]["episode"] == 4
    for model in ("world_model", "actor_critic"):
        for name, tensor in expected[model].items():
            assert torch.equal(resumed[model][name], tensor), f"{model}.{name} differs"
    # 6 steps into the fifth episode the context still holds 10 frames of the episodes before.
    assert len(resumed["policy_context"]["frames"]) == whole.train.act_context == 16
    assert torch.equal(resumed["policy_context"]["frames"], expected["policy_context"]["frames"])
