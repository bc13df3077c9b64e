"""Environments: every game as uint8 64 x 64 RGB frames, discrete actions and a life-loss flag.

Dependency-light on purpose: envs never import models or the trainer.
"""

from storm_wm.envs.catalog import GameSpec, resolve_game
from storm_wm.envs.factory import action_meanings, make_env

__all__ = ["GameSpec", "action_meanings", "make_env", "resolve_game"]
