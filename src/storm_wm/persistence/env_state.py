"""The environment's state mid-episode, as plain data, for the games whose state can be restored.

- Atari: the ALE's full emulator state, serialized by `ALEState.serialize()`, the env's NumPy
  generator (sticky-action draws and no-op starts), the action the last emulator frame played
  (what a sticky frame repeats: `AtariFrameSkip.sticky_action`, which the ALE's own state would
  not hold) and the life counter of `LifeLossInfo`. Nothing else carries over between steps.
- toy:catch: the ball and paddle positions and the env's NumPy generator.
- Anything else (gym:<id>): not restorable in general. The resumed run then ends the episode in
  progress as if truncated and starts a new one with a seed derived from the run's seed and the
  step, so resuming stays deterministic (see docs/resume.md).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from ale_py import ALEState
from ale_py.env import AtariEnv
from gymnasium.wrappers.common import OrderEnforcing, PassiveEnvChecker

from storm_wm.envs.atari import NOOP_ACTION, AtariFrameSkip, LifeLossInfo
from storm_wm.envs.factory import SeedFirstReset
from storm_wm.envs.toy import CatchEnv

# Wrappers whose state is captured below or that keep none between steps.
_KNOWN_WRAPPERS = (SeedFirstReset, LifeLossInfo, AtariFrameSkip, OrderEnforcing, PassiveEnvChecker)


def _wrappers(env: gym.Env) -> list[gym.Env]:
    chain = []
    while isinstance(env, gym.Wrapper):
        chain.append(env)
        env = env.env
    return chain


def capture_env_state(env: gym.Env) -> dict[str, Any]:
    """The state to continue the current episode exactly, or `{"kind": "unsupported"}`."""
    base = env.unwrapped
    wrappers = _wrappers(env)
    if not isinstance(base, CatchEnv | AtariEnv) or not all(
        isinstance(wrapper, _KNOWN_WRAPPERS) for wrapper in wrappers
    ):
        return {"kind": "unsupported", "env": type(base).__name__}
    state: dict[str, Any] = {"np_random": base.np_random.bit_generator.state}
    for wrapper in wrappers:
        if isinstance(wrapper, LifeLossInfo):
            state["lives"] = wrapper.lives
        if isinstance(wrapper, AtariFrameSkip):
            state["sticky_action"] = wrapper.sticky_action
    if isinstance(base, CatchEnv):
        state["kind"] = "toy"
        state["board"] = [base.ball_row, base.ball_column, base.paddle_column]
    else:
        state["kind"] = "atari"
        state["ale"] = base.ale.cloneState(include_rng=True).serialize()
    return state


def restore_env_state(env: gym.Env, state: dict[str, Any]) -> bool:
    """Continues the saved episode in `env` (a fresh env of the same game); False if it cannot."""
    base = env.unwrapped
    kind = state.get("kind")
    if (kind, type(base)) not in (("toy", CatchEnv), ("atari", AtariEnv)):
        return False
    # Reset first so the wrappers allow stepping; everything it changes is overwritten below.
    env.reset()
    base.np_random.bit_generator.state = state["np_random"]
    for wrapper in _wrappers(env):
        if isinstance(wrapper, LifeLossInfo):
            wrapper.lives = state["lives"]
        if isinstance(wrapper, AtariFrameSkip):
            # Set, not replayed: no emulator frame and no draw from any generator.
            wrapper.sticky_action = int(state.get("sticky_action", NOOP_ACTION))
    if kind == "toy":
        base.ball_row, base.ball_column, base.paddle_column = state["board"]
    else:
        base.ale.restoreState(ALEState(state["ale"]))
    return True
