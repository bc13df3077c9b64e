"""Open-loop k-step errors: known answers on hand-made cases, masks, and the training hook."""

import json

import numpy as np
import pytest
import torch

from storm_wm import diagnostics
from storm_wm.diagnostics import (
    WindowReservoir,
    fitting_horizons,
    open_loop_errors,
    open_loop_metrics,
)
from storm_wm.logs.metrics import Logger
from storm_wm.models.world_model import frames_to_input
from storm_wm.replay import ReplayBuffer
from storm_wm.visualize.training import log_world_model_diagnostics

CONTEXT = 2
HORIZONS = (1, 3, 5)
LENGTH = CONTEXT + max(HORIZONS)


pytestmark = pytest.mark.usefixtures("one_thread")


def windows(batch=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {
        # Values up to 200 keep frames + 0.1 inside [0, 1], where decoded frames are clamped.
        "frames": torch.randint(0, 201, (batch, LENGTH, 64, 64, 3), generator=generator).to(
            torch.uint8
        ),
        "actions": torch.randint(0, 3, (batch, LENGTH), generator=generator),
        "rewards": torch.tensor([[0.0, 1.0, 2.0, -1.0, 0.5, 0.0, 3.0]] * batch),
        "terminations": torch.zeros(batch, LENGTH, dtype=torch.bool),
    }


def by_k(result):
    return {record["k"]: record for record in result["horizons"]}


def test_a_decoder_that_returns_the_real_frames_has_zero_error_and_an_offset_the_known_mse(
    tiny_world_model,
):
    model, _ = tiny_world_model()
    data = windows()
    targets = frames_to_input(data["frames"][:, CONTEXT:LENGTH])  # (B, K, 3, H, W)
    model.decode = lambda latents: targets
    exact = by_k(open_loop_errors(model, **data, context=CONTEXT, horizons=HORIZONS))
    model.decode = lambda latents: targets + 0.1
    offset = by_k(open_loop_errors(model, **data, context=CONTEXT, horizons=HORIZONS))
    for k in HORIZONS:
        assert exact[k]["frame_mse"] == 0.0 and exact[k]["frame_mse_posterior"] == 0.0
        assert offset[k]["frame_mse"] == pytest.approx(0.01, rel=1e-4)
        assert offset[k]["frame_mse_posterior"] == pytest.approx(0.01, rel=1e-4)
        assert exact[k]["frame_windows"] == 3
        # The baseline repeats the last context frame (index 1) for frame C + k - 1.
        last = frames_to_input(data["frames"][:, CONTEXT - 1])
        target = frames_to_input(data["frames"][:, CONTEXT + k - 1])
        expected = float((last - target).square().mean())
        assert exact[k]["frame_mse_repeat_last"] == pytest.approx(expected, rel=1e-5)


def test_the_autoencoder_baseline_encodes_the_target_frames_themselves(tiny_world_model):
    model, _ = tiny_world_model()
    data = windows()
    encoded, encode = [], model.encode
    model.encode = lambda frames, uniform: encoded.append(frames) or encode(frames, uniform)
    result = by_k(open_loop_errors(model, **data, context=CONTEXT, horizons=HORIZONS))
    assert len(encoded) == 2
    assert torch.equal(encoded[0], data["frames"][:, :CONTEXT])  # the context, once
    assert torch.equal(encoded[1], data["frames"][:, CONTEXT:LENGTH])  # frames C..C+K-1
    for k in HORIZONS:
        assert 0.0 < result[k]["frame_mse_posterior"] <= 1.0


def test_the_autoencoder_baseline_leaves_the_predictions_samples_as_they_were(
    tiny_world_model, monkeypatch
):
    model, _ = tiny_world_model()
    data = windows(batch=3)

    def errors():
        torch.manual_seed(3)  # chunks of one window: every rollout before any baseline draw
        result = open_loop_errors(model, **data, context=CONTEXT, horizons=HORIZONS, chunk_size=1)
        return [record["frame_mse"] for record in result["horizons"]]

    with_baseline = errors()
    monkeypatch.setattr(
        diagnostics,
        "_own_frame_errors",
        lambda model, frames, context, horizon: torch.zeros(len(frames), horizon),
    )
    assert errors() == with_baseline


def test_reward_and_termination_errors_compare_the_transition_after_the_last_real_frame(
    tiny_world_model,
):
    model, _ = tiny_world_model()
    data = windows()
    data["terminations"][:, CONTEXT + 1] = True  # the 3rd predicted transition ends the episode
    model.predict_reward = lambda features: torch.full(features.shape[:-1], 0.5)
    model.predict_termination = lambda features: torch.zeros(features.shape[:-1], dtype=bool)
    result = by_k(open_loop_errors(model, **data, context=CONTEXT, horizons=HORIZONS))
    # k-th prediction: reward r_{C+k-2}; rewards are [0, 1, 2, -1, 0.5, 0, 3].
    assert result[1]["reward_abs_error"] == pytest.approx(abs(1.0 - 0.5))
    assert result[3]["reward_abs_error"] == pytest.approx(abs(-1.0 - 0.5))
    # The end at step C + 1 is the k = 3 transition: counted, and missed by a model that
    # never predicts an end.
    assert result[3]["terminations"] == 3
    assert result[3]["termination_accuracy"] == 0.0 and result[3]["termination_recall"] == 0.0
    assert result[1]["termination_accuracy"] == 1.0 and result[1]["termination_recall"] is None
    # The frame after the end belongs to another episode: neither k = 3 (frame C + 2) nor
    # k = 5 compares frames; k = 1 (frame C) does.
    assert result[3]["frame_windows"] == 0 and result[3]["step_windows"] == 3
    assert result[5]["frame_windows"] == 0 and result[5]["frame_mse"] is None
    assert result[1]["frame_windows"] == 3


def test_padding_marks_steps_that_do_not_exist(tiny_world_model):
    model, _ = tiny_world_model()
    data = windows()
    valid = torch.ones(3, LENGTH, dtype=torch.bool)
    valid[0, CONTEXT:] = False  # window 0 ends with its context
    result = by_k(open_loop_errors(model, **data, context=CONTEXT, horizons=HORIZONS, valid=valid))
    # k = 1 compares frame C (missing in window 0) and transition C - 1 (present).
    assert result[1]["frame_windows"] == 2 and result[1]["step_windows"] == 3
    assert result[3]["frame_windows"] == 2 and result[3]["step_windows"] == 2


def test_the_imagination_never_sees_a_real_frame_after_the_context_but_follows_the_actions(
    tiny_world_model,
):
    model, _ = tiny_world_model()
    data = windows(batch=2)
    seen = []
    real_decode = model.decode
    model.decode = lambda latents: seen.append(latents.clone()) or real_decode(latents)

    def run(**changes):
        seen.clear()
        torch.manual_seed(5)
        open_loop_errors(model, **{**data, **changes}, context=CONTEXT, horizons=HORIZONS)
        return seen[0]  # the imagined latents (the second decode draws the target frames)

    baseline = run()
    later_frames = data["frames"].clone()
    later_frames[:, CONTEXT:] = 255 - later_frames[:, CONTEXT:]
    torch.testing.assert_close(run(frames=later_frames), baseline)
    other_actions = data["actions"].clone()
    other_actions[:, CONTEXT:] = (other_actions[:, CONTEXT:] + 1) % 3
    assert not torch.equal(run(actions=other_actions), baseline)


def test_horizons_that_do_not_fit_are_skipped_with_the_reason(tiny_world_model):
    measured, skipped = fitting_horizons((1, 5, 15), context=8, length=23, max_length=16)
    assert measured == [1, 5]
    assert skipped == [
        {"k": 15, "reason": "context 8 + 15 steps need 22 transformer positions; the model has 16"}
    ]
    measured, skipped = fitting_horizons((1, 5, 15), context=4, length=10, max_length=64)
    assert measured == [1, 5] and "shorter than context 4 + 15" in skipped[0]["reason"]

    model, _ = tiny_world_model(**{"world_model.max_length": 16})
    data = windows()
    result = open_loop_errors(model, **data, context=CONTEXT, horizons=(1, 15))
    assert [record["k"] for record in result["horizons"]] == [1]
    assert [record["k"] for record in result["skipped_horizons"]] == [15]
    assert set(open_loop_metrics(result)) == {
        "open_loop/frame_mse_k1",
        "open_loop/frame_mse_repeat_last_k1",
        "open_loop/frame_mse_posterior_k1",
        "open_loop/reward_abs_error_k1",
        "open_loop/termination_accuracy_k1",
    }


def test_reservoir_offers_every_window_with_a_full_context_once():
    reservoir = WindowReservoir(100, length=5, context=2, num_envs=2, rng=np.random.default_rng(0))
    for step in range(7):  # env 0: a 7-step episode
        reservoir.add(0, np.full((4, 4, 3), step, np.uint8), step, float(step), step == 6)
    for step in range(3):  # env 1: a 3-step episode, shorter than a window
        reservoir.add(1, np.full((4, 4, 3), 100 + step, np.uint8), 0, 0.0, step == 2)
    reservoir.end_episode(0)
    reservoir.end_episode(1)
    # env 0: starts 0..5 (at least 2 steps left), env 1: starts 0..1.
    assert reservoir.offered == 6 + 2
    tensors = reservoir.tensors()
    starts = sorted(int(row[0, 0, 0, 0]) for row in tensors["frames"])
    assert starts == [0, 1, 2, 3, 4, 5, 100, 101]
    row = [int(row[0, 0, 0, 0]) for row in tensors["frames"]].index(4)
    assert tensors["valid"][row].tolist() == [True, True, True, False, False]
    assert tensors["actions"][row, :3].tolist() == [4, 5, 6]
    assert tensors["terminations"][row].tolist() == [False, False, True, False, False]


def test_reservoir_keeps_a_bounded_uniform_sample():
    counts = np.zeros(50)
    for seed in range(200):
        reservoir = WindowReservoir(5, 1, 1, 1, np.random.default_rng(seed))
        for step in range(50):
            reservoir.add(0, np.full((1, 1, 3), step, np.uint8), 0, 0.0, False)
        assert len(reservoir.windows) == 5
        for steps in reservoir.windows:
            counts[int(steps[0][0][0, 0, 0])] += 1
    # Each of the 50 windows is kept with probability 5/50: 20 times in 200 runs on average,
    # the first ones as often as the last.
    assert counts.sum() == 1000
    assert 5 < counts.min() and counts.max() < 40
    assert abs(counts[:25].sum() - counts[25:].sum()) < 100


def filled_replay(steps=120, seed=0):
    rng = np.random.default_rng(seed)
    replay = ReplayBuffer(1000, (64, 64, 3))
    for step in range(steps):
        frame = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        replay.add(frame, int(rng.integers(3)), float(step % 7 == 6), False)
    return replay


def test_training_hook_logs_k_step_errors_on_schedule_without_touching_the_training_rng(
    tmp_path, tiny_world_model
):
    model, config = tiny_world_model(
        **{"train.diagnostics_every": 50, "train.video_every": 0, "precision": "fp32"}
    )
    replay = filled_replay()
    with Logger(tmp_path) as logger:
        torch.manual_seed(123)
        log_world_model_diagnostics(logger, model, replay, 50, config)
        log_world_model_diagnostics(logger, model, replay, 51, config)  # not due
        after_hook = torch.rand(3)
    torch.manual_seed(123)
    torch.testing.assert_close(after_hook, torch.rand(3))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == [50]
    assert {"open_loop/frame_mse_k1", "open_loop/frame_mse_k5", "open_loop/frame_mse_k15"} <= set(
        records[0]
    )
    assert not model.training
