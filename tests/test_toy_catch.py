"""toy:catch: the pixels are where the rules say, a perfect policy always scores, chance rarely."""

import numpy as np
import pytest

from storm_wm.envs import make_env, resolve_game
from storm_wm.envs.toy import LEFT, RIGHT, STAY, CatchEnv
from storm_wm.errors import StormError

RED = (255, 0, 0)
WHITE = (255, 255, 255)


def test_toy_catch_resolves_and_builds_64x64_rgb_frames():
    spec = resolve_game("toy:catch")
    assert (spec.name, spec.kind, spec.atari_name) == ("toy:catch", "toy", None)
    env = make_env("toy:catch", seed=0)
    observation, info = env.reset()
    assert observation.shape == (64, 64, 3)
    assert observation.dtype == np.uint8
    assert env.observation_space.contains(observation)
    assert env.action_space.n == 3
    assert info["life_loss"] is False


def test_ball_fills_its_cell_and_paddle_fills_lower_half_of_its_cell():
    env = CatchEnv(image_size=64)
    frame, _ = env.reset(seed=3)
    ball, paddle = env.ball_column, env.paddle_column
    # Ball: the whole 8x8 cell in row 0 is red.
    assert (frame[0:8, 8 * ball : 8 * ball + 8] == RED).all()
    # Paddle: rows 60..63 (lower half of the bottom row) white, rows 56..59 black.
    assert (frame[60:64, 8 * paddle : 8 * paddle + 8] == WHITE).all()
    assert (frame[56:60, 8 * paddle : 8 * paddle + 8] == 0).all()
    # Everything else is black: 64 red pixels and 32 white pixels, nothing more.
    lit = frame.any(axis=-1)
    assert lit.sum() == 64 + 32


def test_ball_falls_one_row_per_step_after_the_paddle_moves():
    env = CatchEnv(image_size=64)
    env.reset(seed=0)
    env.ball_column, env.paddle_column = 5, 0
    frame, reward, terminated, truncated, info = env.step(LEFT)  # clipped at the left wall
    assert (env.ball_row, env.paddle_column) == (1, 0)
    assert (frame[8:16, 40:48] == RED).all() and not frame[0:8].any()
    frame, *_ = env.step(RIGHT)
    assert env.paddle_column == 1
    assert (frame[60:64, 8:16] == WHITE).all() and not frame[60:64, 0:8].any()
    assert (reward, terminated, truncated, info["life_loss"]) == (0.0, False, False, False)


def test_image_size_scales_cells():
    env = CatchEnv(image_size=16)
    frame, _ = env.reset(seed=1)
    assert frame.shape == (16, 16, 3)
    assert (frame[0:2, 2 * env.ball_column : 2 * env.ball_column + 2] == RED).all()
    with pytest.raises(StormError, match="multiple of 8"):
        CatchEnv(image_size=60)


def run_episode(env, choose_action):
    env.reset()
    rewards = []
    terminated = False
    while not terminated:
        _, reward, terminated, truncated, _ = env.step(choose_action())
        assert not truncated
        rewards.append(reward)
    return rewards


def test_every_episode_lasts_7_steps_and_only_the_last_reward_can_be_nonzero():
    env = make_env("toy:catch", seed=0)
    random_actions = np.random.default_rng(0)
    for _ in range(50):
        rewards = run_episode(env, lambda: int(random_actions.integers(3)))
        assert len(rewards) == 7 == CatchEnv.episode_length
        assert all(reward == 0.0 for reward in rewards[:-1])
        assert rewards[-1] in (0.0, 1.0)


def test_scripted_optimal_policy_always_scores_max_return():
    env = make_env("toy:catch", seed=1)
    catch = env.unwrapped
    returns = [sum(run_episode(env, catch.optimal_action)) for _ in range(300)]
    assert returns == [CatchEnv.max_return] * 300


def test_uniformly_random_policy_rarely_catches():
    env = make_env("toy:catch", seed=2)
    random_actions = np.random.default_rng(2)
    returns = [sum(run_episode(env, lambda: int(random_actions.integers(3)))) for _ in range(2000)]
    # Clipped random moves keep a uniformly placed paddle uniform over the 8 columns, so chance
    # catches exactly 1/8 of the balls in expectation (standard error 0.007 over 2000 episodes).
    assert 0.08 <= np.mean(returns) <= 0.30


def test_same_seed_gives_same_episode():
    actions = [STAY, LEFT, RIGHT, RIGHT, LEFT, STAY, RIGHT]

    def play(seed):
        env = CatchEnv()
        frames = [env.reset(seed=seed)[0]]
        frames += [env.step(action)[0] for action in actions]
        return np.stack(frames)

    assert np.array_equal(play(7), play(7))
    starts = {play(seed)[0].tobytes() for seed in range(10)}
    assert len(starts) > 1  # the seed does pick the start


def test_make_env_seed_makes_first_reset_reproducible():
    first = make_env("toy:catch", seed=11).reset()[0]
    again = make_env("toy:catch", seed=11).reset()[0]
    explicit = make_env("toy:catch").reset(seed=11)[0]
    assert np.array_equal(first, again) and np.array_equal(first, explicit)


def test_stepping_after_the_end_asks_for_reset():
    env = CatchEnv()
    env.reset(seed=0)
    for _ in range(7):
        env.step(STAY)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(STAY)
