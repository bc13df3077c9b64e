"""Atari through the ALE, preprocessed as the two evaluation protocols say, with sticky actions
drawn by our frame-skip wrapper so that a checkpoint saves the whole environment state
(docs/algorithm.md#2-observations-and-environments says why, and why not
gymnasium's ``AtariPreprocessing``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, SupportsFloat, get_args

import ale_py
import cv2
import gymnasium as gym
import numpy as np
from ale_py.registration import rom_id_to_name

from storm_wm.config import LifeLossRule, Protocol

gym.register_envs(ale_py)

FRAME_SKIP = 4
"""ALE frames per agent step: the agent repeats its action this many times."""

NOOP_ACTION = 0
"""Index of NOOP in every game's minimal action set."""


@dataclass(frozen=True)
class AtariProtocol:
    """How an evaluation protocol configures the ALE (docs/algorithm.md, section 2)."""

    repeat_action_probability: float
    """Sticky actions: chance that each emulator frame repeats the previous frame's action."""
    noop_max: int
    """Reset plays a uniform 1..noop_max NOOP frames; 0 turns no-op starts off."""


PROTOCOLS: dict[Protocol, AtariProtocol] = {
    # What the STORM authors ran: the v5 default sticky actions and no no-op starts.
    "storm": AtariProtocol(repeat_action_probability=0.25, noop_max=0),
    # IRIS, DIAMOND and DreamerV3's atari100k config: deterministic ALE, random no-op starts.
    "standard": AtariProtocol(repeat_action_probability=0.0, noop_max=30),
}


def normalize_game_name(name: str) -> str:
    """Key under which "montezuma_revenge", "MontezumaRevenge" and "montezuma revenge" meet."""
    return name.lower().replace("_", "").replace("-", "").replace(" ", "")


@functools.cache
def atari_game_names() -> dict[str, str]:
    """Map normalized name -> canonical name for every single-player ROM shipped with ale-py.

    The canonical name is the one in the ``ALE/<Game>-v5`` id; ROMs with no v5 id
    (two-player-only games) are left out because they cannot be played alone.
    """
    names = {}
    for rom_id in ale_py.roms.get_all_rom_ids():
        name = rom_id_to_name(rom_id)
        if f"ALE/{name}-v5" in gym.registry:
            names[normalize_game_name(name)] = name
    return names


class AtariFrameSkip(gym.Wrapper):
    """Repeat each action for 4 ALE frames, sum the rewards and return the max of the last 2 frames.

    The max removes the flicker of sprites drawn only on every other frame. The pooled frame is
    resized to ``image_size`` square with area interpolation. With ``noop_max > 0``,
    reset plays a uniform 1..noop_max NOOP frames so that deterministic games start in varied
    states. Only frames of the current step are pooled: a step cut short by the episode's end
    after one frame returns that frame alone.

    Sticky actions (``repeat_action_probability`` > 0) work as the ALE's own: on each emulator
    frame, with that probability the previous frame's action is played again instead of the
    one asked for, and every reset makes NOOP the previous action. The draws come from the
    env's NumPy generator (reseeded by ``reset(seed=...)``, as the ALE's is), and the previous
    action is ``sticky_action``: both are saved with a checkpoint. The ALE underneath must run
    without sticky actions of its own.
    """

    def __init__(
        self,
        env: gym.Env,
        *,
        image_size: int,
        noop_max: int = 0,
        repeat_action_probability: float = 0.0,
    ) -> None:
        super().__init__(env)
        base = env.unwrapped
        if getattr(base, "_frameskip", None) != 1:
            raise ValueError("AtariFrameSkip needs an ALE env created with frameskip=1")
        if base.ale.getFloat("repeat_action_probability") != 0.0:
            raise ValueError(
                "AtariFrameSkip draws sticky actions itself: create the ALE env with "
                "repeat_action_probability=0"
            )
        if not 0.0 <= repeat_action_probability < 1.0:
            raise ValueError(
                f"repeat_action_probability must lie in [0, 1), got {repeat_action_probability}"
            )
        if (noop_max > 0 or repeat_action_probability > 0) and (
            base.get_action_meanings()[NOOP_ACTION] != "NOOP"
        ):
            raise ValueError("no-op starts and sticky actions need NOOP as action 0")
        self.image_size = image_size
        self.noop_max = noop_max
        self.repeat_action_probability = repeat_action_probability
        self._ale_env = base
        self.sticky_action = NOOP_ACTION
        """The action the emulator played on the last frame: what a sticky frame plays again."""
        self.observation_space = gym.spaces.Box(0, 255, (image_size, image_size, 3), dtype=np.uint8)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        frame, info = self.env.reset(seed=seed, options=options)
        self.sticky_action = NOOP_ACTION  # as the ALE's reset does
        if self.noop_max > 0:
            # The ALE env's own generator is reseeded by reset(seed), so the count is reproducible.
            noops = int(self.env.unwrapped.np_random.integers(1, self.noop_max + 1))
            for _ in range(noops):
                frame, _, terminated, truncated, step_info = self.env.step(NOOP_ACTION)
                info = {**info, **step_info}
                if terminated or truncated:  # only with an absurdly small frame cap
                    frame, info = self.env.reset(options=options)
        return self._resize(frame), info

    def step(self, action: int) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        total_reward = 0.0
        frames: list[np.ndarray] = []
        for _ in range(FRAME_SKIP):
            frame, reward, terminated, truncated, info = self.env.step(self._frame_action(action))
            total_reward += float(reward)
            frames = [*frames[-1:], frame]
            if terminated or truncated:
                break
        pooled = frames[0] if len(frames) == 1 else np.maximum(frames[0], frames[1])
        return self._resize(pooled), total_reward, terminated, truncated, info

    def _frame_action(self, action: int) -> int:
        """The action one emulator frame plays: the previous frame's with probability
        ``repeat_action_probability`` (one draw per frame, none without sticky actions)."""
        probability = self.repeat_action_probability
        # np_random, looked up each time: a seeded reset replaces the generator.
        if probability == 0.0 or self._ale_env.np_random.random() >= probability:
            self.sticky_action = int(action)
        return self.sticky_action

    def _resize(self, frame: np.ndarray) -> np.ndarray:
        size = (self.image_size, self.image_size)
        return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


class LifeLossInfo(gym.Wrapper):
    """Set ``info["life_loss"]`` on the steps where a life was lost, by one of two rules.

    ``every`` flags each step on which the ALE's life counter is below its value on the step
    before. ``released`` is the authors' wrapper: it records the counter at reset and flags a
    step only when the counter falls below that record, which it then lowers to the counter;
    a rise never raises it, so games whose counter rises just after reset (Amidar) flag fewer
    losses. The trainer stores ``terminated or life_loss`` as the replay buffer's termination
    flag; the episode itself goes on until game over or the frame cap
    (docs/algorithm.md#2-observations-and-environments).
    """

    def __init__(self, env: gym.Env, rule: LifeLossRule = "every") -> None:
        super().__init__(env)
        if rule not in get_args(LifeLossRule):
            raise ValueError(
                f"life-loss rule must be one of {get_args(LifeLossRule)}, got {rule!r}"
            )
        self.rule = rule
        self.lives = 0
        """Counter the next step is compared with: the previous step's (every) or the record."""

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        observation, info = self.env.reset(seed=seed, options=options)
        self.lives = self.env.unwrapped.ale.lives()
        return observation, {**info, "life_loss": False}

    def step(self, action: int) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        lives = self.env.unwrapped.ale.lives()
        life_loss = lives < self.lives
        if self.rule == "every" or life_loss:
            self.lives = lives
        return observation, reward, terminated, truncated, {**info, "life_loss": life_loss}


def make_atari_env(
    game: str,
    *,
    protocol: Protocol,
    image_size: int,
    max_episode_frames: int,
    life_loss: LifeLossRule = "every",
) -> gym.Env:
    """Build ``ALE/<game>-v5`` with the given protocol's sticky actions (drawn by AtariFrameSkip)
    and no-op starts, and life-loss flags by the rule ``life_loss`` (see LifeLossInfo)."""
    settings = PROTOCOLS[protocol]
    env = gym.make(
        f"ALE/{game}-v5",
        frameskip=1,  # the wrapper repeats actions so that it can see the last two frames
        repeat_action_probability=0.0,  # the wrapper draws them, so that they can be saved
        full_action_space=False,
        max_num_frames_per_episode=max_episode_frames,
    )
    env = AtariFrameSkip(
        env,
        image_size=image_size,
        noop_max=settings.noop_max,
        repeat_action_probability=settings.repeat_action_probability,
    )
    return LifeLossInfo(env, life_loss)
