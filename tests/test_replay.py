import numpy as np
import pytest

from storm_wm.replay import ReplayBuffer


def filled(capacity, steps):
    replay = ReplayBuffer(capacity, (2, 2, 3))
    for t in range(steps):
        replay.add(np.full((2, 2, 3), t % 256, np.uint8), t % 4, float(t), t % 10 == 9)
    return replay


def test_windows_are_consecutive_steps():
    replay = filled(100, 50)
    batch = replay.sample(32, 8, np.random.default_rng(0))
    assert batch.frames.shape == (32, 8, 2, 2, 3) and batch.actions.shape == (32, 8)
    rewards = batch.rewards.numpy()
    np.testing.assert_array_equal(np.diff(rewards, axis=1), 1.0)
    np.testing.assert_array_equal(batch.frames.numpy()[:, :, 0, 0, 0], rewards.astype(np.uint8))
    np.testing.assert_array_equal(batch.terminations.numpy(), rewards % 10 == 9)
    np.testing.assert_array_equal(batch.actions.numpy(), rewards.astype(np.int64) % 4)


def test_ring_buffer_keeps_the_newest_steps_and_never_wraps_a_window():
    replay = filled(20, 47)  # holds steps 27..46
    assert len(replay) == 20
    batch = replay.sample(2000, 5, np.random.default_rng(1))
    rewards = batch.rewards.numpy()
    assert rewards.min() == 27 and rewards.max() == 46
    np.testing.assert_array_equal(np.diff(rewards, axis=1), 1.0)


def test_window_starts_are_uniform():
    replay = filled(100, 10)
    starts = replay.sample(60_000, 4, np.random.default_rng(2)).rewards.numpy()[:, 0]
    counts = np.bincount(starts.astype(int), minlength=7)
    assert counts.shape == (7,)  # starts 0..6 only
    np.testing.assert_allclose(counts / counts.sum(), 1 / 7, atol=0.01)


def test_too_few_steps_for_a_window():
    with pytest.raises(ValueError):
        filled(100, 3).sample(1, 4, np.random.default_rng(0))


def test_paper_buffer_is_uint8():
    replay = ReplayBuffer(100_000, (64, 64, 3))
    assert replay.frames.dtype == np.uint8 and replay.frames.nbytes == 100_000 * 64 * 64 * 3
