"""make_env on real ALE ROMs and on tiny gym envs: what the protocols fix (docs/algorithm.md)."""

import cv2
import gymnasium as gym
import numpy as np
import pytest

from storm_wm.envs import GameSpec, make_env, resolve_game
from storm_wm.envs.atari import AtariFrameSkip
from storm_wm.errors import StormError
from storm_wm.games import ATARI_100K_GAMES

NOOP, FIRE = 0, 1


def resize(frame: np.ndarray) -> np.ndarray:
    return cv2.resize(frame, (64, 64), interpolation=cv2.INTER_AREA)


def raw_atari(game: str, *, sticky: float, max_frames: int = 108_000) -> gym.Env:
    """The unwrapped ALE game, one frame per step: the reference the wrappers must match."""
    return gym.make(
        f"ALE/{game}-v5",
        frameskip=1,
        repeat_action_probability=sticky,
        max_num_frames_per_episode=max_frames,
    )


# --- names ---------------------------------------------------------------------------------


def test_atari_100k_games_resolve_to_themselves():
    for name in ATARI_100K_GAMES:
        assert resolve_game(name) == GameSpec(name=name, kind="atari", atari_name=name)


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("pong", "Pong"),
        ("PONG", "Pong"),
        ("ms_pacman", "MsPacman"),
        ("montezuma_revenge", "MontezumaRevenge"),
        ("MontezumaRevenge", "MontezumaRevenge"),
        ("space invaders", "SpaceInvaders"),  # not an Atari 100k game, but an ALE ROM
        ("up-n-down", "UpNDown"),
    ],
)
def test_ale_games_resolve_ignoring_case_and_separators(typed, canonical):
    assert resolve_game(typed) == GameSpec(name=canonical, kind="atari", atari_name=canonical)


def test_misspelled_game_names_the_closest_valid_names_on_one_line():
    with pytest.raises(StormError) as caught:
        resolve_game("Pongg")
    message = str(caught.value)
    assert "unknown game 'Pongg'; did you mean: Pong" in message
    assert "\n" not in message
    with pytest.raises(StormError, match="did you mean: toy:catch"):
        resolve_game("catch")


def test_gym_ids_must_be_registered():
    assert resolve_game("gym:CartPole-v1") == GameSpec("gym:CartPole-v1", "gym", None)
    with pytest.raises(StormError, match="did you mean: gym:CartPole-v1"):
        resolve_game("gym:CartPol-v1")


def test_unknown_protocol_is_a_storm_error():
    with pytest.raises(StormError, match="unknown protocol 'dreamer'; use one of: storm, standard"):
        make_env("Pong", protocol="dreamer")


# --- Atari -----------------------------------------------------------------------------------


def test_atari_observations_are_64x64_rgb_uint8_with_minimal_actions():
    env = make_env("Pong", seed=0)
    observation, info = env.reset()
    assert observation.shape == (64, 64, 3) and observation.dtype == np.uint8
    assert env.observation_space.shape == (64, 64, 3)
    assert env.action_space == gym.spaces.Discrete(6)  # Pong's minimal action set
    assert info["life_loss"] is False
    observation, reward, terminated, truncated, info = env.step(NOOP)
    assert observation.shape == (64, 64, 3) and observation.dtype == np.uint8
    assert isinstance(reward, float) and info["life_loss"] is False
    # Any ALE ROM works, not only the 26 benchmark games; full-action games get 18 actions.
    montezuma = make_env("montezuma_revenge", seed=0)
    assert montezuma.reset()[0].shape == (64, 64, 3)
    assert montezuma.action_space == gym.spaces.Discrete(18)


def test_sticky_actions_are_a_quarter_under_storm_and_off_under_standard():
    storm, standard = make_env("Pong", protocol="storm"), make_env("Pong", protocol="standard")
    assert frame_skip(storm).repeat_action_probability == pytest.approx(0.25)
    assert frame_skip(standard).repeat_action_probability == 0.0
    # The wrapper draws them (so that a checkpoint can hold them), never the ALE as well.
    for env in (storm, standard):
        assert env.unwrapped.ale.getFloat("repeat_action_probability") == 0.0
    # The ALE itself repeats one frame at a time: the wrapper, not the ALE, skips frames.
    assert make_env("Pong").unwrapped._frameskip == 1


def frame_skip(env: gym.Env) -> AtariFrameSkip:
    while not isinstance(env, AtariFrameSkip):
        env = env.env
    return env


def record_frame_actions(env: gym.Env) -> list[int]:
    """The action each emulator frame of `env` is played with, appended as they are played."""
    base, played = env.unwrapped, []
    real_step = base.step

    def step(action):
        played.append(int(action))
        return real_step(action)

    base.step = step
    return played


@pytest.mark.parametrize("protocol", ["storm", "standard"])
def test_each_frame_repeats_the_previous_frames_action_a_quarter_of_the_time(protocol):
    """The ALE's sticky actions, per emulator frame: the action asked for, or with probability
    0.25 (storm) the one the frame before played; NOOP is the previous action after a reset."""
    env = make_env("Boxing", protocol=protocol, seed=3)  # a round lasts 7,200 frames
    played = record_frame_actions(env)
    env.reset()
    asked = []
    for step in range(1000):
        action = 2 + step % 2  # UP and RIGHT alternate, so each step's first frame could stick
        *_, terminated, truncated, _ = env.step(action)
        assert not (terminated or truncated)  # each step played its 4 frames
        asked += [action] * 4
    frames = played[-len(asked) :]
    previous = [NOOP, *frames[:-1]]
    assert all(p in (a, before) for p, a, before in zip(frames, asked, previous, strict=True))
    # Frames asked for another action than the one before: how often did they repeat it?
    could_stick = [
        (p, before) for p, a, before in zip(frames, asked, previous, strict=True) if a != before
    ]
    repeated = np.mean([p == before for p, before in could_stick])
    if protocol == "standard":
        assert repeated == 0.0
        return
    # About 1,300 such frames (each step's first, and those after a sticky one): s.e. 0.012.
    assert repeated == pytest.approx(0.25, abs=0.04)
    env.reset()
    env.step(FIRE)
    assert played[-4] in (FIRE, NOOP)  # the first frame after a reset can only stick to NOOP


def test_storm_protocol_starts_at_frame_0_and_standard_after_1_to_30_noop_frames():
    def start_frames(env, seeds):
        frames = []
        for seed in seeds:
            env.reset(seed=seed)
            frames.append(env.unwrapped.ale.getEpisodeFrameNumber())
        return frames

    # A seeded reset reloads the ROM (0.2 s), so most resets here continue the seeded generators.
    unseeded = [None] * 20
    assert set(start_frames(make_env("Pong", protocol="storm"), [0, *unseeded])) == {0}
    standard = make_env("Pong", protocol="standard")
    per_seed = start_frames(standard, range(6))
    later = start_frames(standard, unseeded)
    # No-ops are single ALE frames (the ALE runs with frameskip 1), so 1..30 frames, not 4..120.
    assert set(per_seed + later) <= set(range(1, 31))
    assert len(set(per_seed)) >= 3 and len(set(later)) >= 5  # drawn afresh for each episode
    assert start_frames(standard, range(6)) == per_seed  # and reproducibly per seed


def test_observation_is_max_of_last_two_frames_and_reward_sums_the_four_frames():
    # Boxing flickers and scores often, so both facts are exercised within 150 steps.
    env = make_env("Boxing", protocol="storm", seed=0)
    played = record_frame_actions(env)  # the frames' actions, sticky ones included
    raw = raw_atari("Boxing", sticky=0.0)
    observation, _ = env.reset()
    raw_frame, _ = raw.reset(seed=0)
    assert np.array_equal(observation, resize(raw_frame))

    actions = np.random.default_rng(0).integers(env.action_space.n, size=150)
    pooling_mattered = rewarded_before_last_frame = 0
    for action in actions:
        observation, reward, terminated, truncated, _ = env.step(action)
        frames, rewards = [], []
        for frame_action in played[-4:]:
            raw_frame, raw_reward, *_ = raw.step(frame_action)
            frames.append(raw_frame)
            rewards.append(raw_reward)
        expected = resize(np.maximum(frames[-2], frames[-1]))
        assert np.array_equal(observation, expected)
        assert reward == sum(rewards)
        assert not (terminated or truncated)
        pooling_mattered += not np.array_equal(expected, resize(frames[-1]))
        rewarded_before_last_frame += any(raw_reward != 0 for raw_reward in rewards[:3])
    assert pooling_mattered > 0
    assert rewarded_before_last_frame > 0


def test_frame_cap_truncates_and_a_cut_short_step_shows_its_own_last_frame():
    env = make_env("Pong", seed=0, max_episode_frames=101)
    raw = raw_atari("Pong", sticky=0.25, max_frames=101)
    env.reset()
    raw.reset(seed=0)
    for _ in range(25):  # 25 steps of 4 frames = 100 frames
        _, _, terminated, truncated, _ = env.step(NOOP)
        assert not (terminated or truncated)
        for _ in range(4):
            raw.step(NOOP)
    observation, _, terminated, truncated, info = env.step(NOOP)
    last_frame, *_ = raw.step(NOOP)
    assert truncated and not terminated
    assert info["episode_frame_number"] == 101
    # Only frame 101 was played in this step: the observation is that frame, not a stale one.
    assert np.array_equal(observation, resize(last_frame))


def test_life_loss_is_flagged_in_breakout_and_does_not_end_the_episode():
    env = make_env("Breakout", seed=0)
    _, info = env.reset()
    lives = info["lives"]
    assert lives == 5 and info["life_loss"] is False
    for _ in range(400):  # FIRE launches the ball; the paddle never moves, so it is missed
        _, _, terminated, truncated, info = env.step(FIRE)
        assert not (terminated or truncated)
        assert info["life_loss"] == (info["lives"] < lives)
        if info["life_loss"]:
            break
        lives = info["lives"]
    assert info["life_loss"] and info["lives"] == 4
    _, _, terminated, _, info = env.step(FIRE)
    assert not terminated and info["life_loss"] is False


def play_one_episode_flags(game: str, life_loss: str) -> tuple[list[int], list[int], bool]:
    """One episode of random actions (seed 0): the life counter (at reset, then after each
    step), the steps whose life_loss flag was set, and whether it ended by game over."""
    env = make_env(game, seed=0, max_episode_frames=8_000, life_loss=life_loss)
    actions = np.random.default_rng(0)
    _, info = env.reset()
    lives, flagged = [info["lives"]], []
    while True:
        action = int(actions.integers(env.action_space.n))
        _, _, terminated, truncated, info = env.step(action)
        lives.append(info["lives"])
        if info["life_loss"]:
            flagged.append(len(lives) - 1)
        if terminated or truncated:
            return lives, flagged, terminated


def test_released_life_loss_rule_never_flags_amidar_whose_counter_starts_at_zero():
    lives, every, game_over = play_one_episode_flags("Amidar", "every")
    # The ALE's counter reads 0 at reset and 11 one step later.
    assert lives[:2] == [0, 11] and game_over
    falls = [step for step in range(1, len(lives)) if lives[step] < lives[step - 1]]
    assert every == falls and len(every) >= 3
    released_lives, released, _ = play_one_episode_flags("Amidar", "released")
    assert released_lives == lives  # the rule changes the flags only, never the game
    assert released == []  # nothing ever falls below the 0 recorded at reset


def test_released_life_loss_rule_flags_only_the_last_life_of_demon_attack():
    lives, every, game_over = play_one_episode_flags("DemonAttack", "every")
    # The ALE's counter reads 1 at reset and 4 one step later.
    assert lives[:2] == [1, 4] and game_over and lives[-1] == 0
    falls = [step for step in range(1, len(lives)) if lives[step] < lives[step - 1]]
    assert every == falls and len(every) >= 3
    released_lives, released, _ = play_one_episode_flags("DemonAttack", "released")
    assert released_lives == lives
    # Only the fall below the 1 recorded at reset counts: the step where the last life goes.
    last_life_lost = next(step for step in range(1, len(lives)) if lives[step] < 1)
    assert released == [last_life_lost]


def test_released_life_loss_rule_matches_every_where_the_counter_never_rises():
    lives, every, _ = play_one_episode_flags("Breakout", "every")
    assert lives[0] == 5 and len(every) == 5
    assert play_one_episode_flags("Breakout", "released")[1] == every


def test_unknown_life_loss_rule_is_refused_on_one_line():
    with pytest.raises(StormError, match="unknown life-loss rule 'some'; use one of: every, rel"):
        make_env("Pong", life_loss="some")


@pytest.mark.parametrize("protocol", ["storm", "standard"])
def test_reset_with_the_same_seed_replays_the_same_episode(protocol):
    actions = np.random.default_rng(1).integers(4, size=60)

    def play(env, seed):
        frames, rewards = [env.reset(seed=seed)[0]], []
        for action in actions:
            frame, reward, *_ = env.step(action)
            frames.append(frame)
            rewards.append(reward)
        return np.stack(frames), rewards

    env = make_env("Breakout", protocol=protocol)
    first = play(env, seed=4)
    again = play(env, seed=4)  # same env object, reseeded
    fresh = play(make_env("Breakout", protocol=protocol, seed=4), seed=None)  # seed via make_env
    assert np.array_equal(first[0], again[0]) and first[1] == again[1]
    assert np.array_equal(first[0], fresh[0]) and first[1] == fresh[1]


# --- gym:<id> --------------------------------------------------------------------------------


class TinyPixelsEnv(gym.Env):
    """A 10 x 12 image whose pixel values are a fixed pattern plus the step count."""

    def __init__(self, channels: int | None = 1, box_actions: bool = False):
        shape = (10, 12) if channels is None else (10, 12, channels)
        self.observation_space = gym.spaces.Box(0, 255, shape, dtype=np.uint8)
        self.action_space = (
            gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
            if box_actions
            else gym.spaces.Discrete(2)
        )
        self.pattern = (np.arange(np.prod(shape)) % 200).reshape(shape).astype(np.uint8)
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.steps = 0
        return self.pattern.copy(), {}

    def step(self, action):
        self.steps += 1
        return self.pattern + self.steps, 1.0, self.steps == 3, False, {}


TINY_ENVS = {
    "StormTest/TinyGray-v0": {"channels": 1},
    "StormTest/TinyFlatGray-v0": {"channels": None},
    "StormTest/TinyRGB-v0": {"channels": 3},
    "StormTest/TinyBoxActions-v0": {"channels": 3, "box_actions": True},
}
for env_id, kwargs in TINY_ENVS.items():
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=TinyPixelsEnv, kwargs=kwargs)


@pytest.mark.parametrize("env_id", ["StormTest/TinyGray-v0", "StormTest/TinyFlatGray-v0"])
def test_gym_grayscale_frames_become_64x64_rgb(env_id):
    env = make_env(f"gym:{env_id}", seed=0)
    observation, info = env.reset()
    gray = resize(env.unwrapped.pattern.reshape(10, 12))
    assert observation.shape == (64, 64, 3) and observation.dtype == np.uint8
    assert info["life_loss"] is False
    for channel in range(3):
        assert np.array_equal(observation[..., channel], gray)
    observation, reward, terminated, _, info = env.step(0)
    assert np.array_equal(observation[..., 0], resize(env.unwrapped.pattern.reshape(10, 12) + 1))
    assert reward == 1.0 and not terminated and info["life_loss"] is False


def test_gym_rgb_frames_are_resized_with_area_interpolation():
    env = make_env("gym:StormTest/TinyRGB-v0", image_size=32)
    observation, _ = env.reset(seed=0)
    assert np.array_equal(
        observation, cv2.resize(env.unwrapped.pattern, (32, 32), interpolation=cv2.INTER_AREA)
    )
    assert env.action_space == gym.spaces.Discrete(2)


def test_gym_env_without_images_or_discrete_actions_is_refused_with_the_requirement():
    with pytest.raises(StormError, match="storm-wm needs images") as caught:
        make_env("gym:CartPole-v1")
    assert "\n" not in str(caught.value)
    with pytest.raises(StormError, match="needs a Discrete"):
        make_env("gym:StormTest/TinyBoxActions-v0")
