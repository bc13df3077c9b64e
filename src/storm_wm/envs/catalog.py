"""Turn the game name a user types into a GameSpec, or say which names were probably meant."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import gymnasium as gym

from storm_wm.envs.atari import atari_game_names, normalize_game_name
from storm_wm.errors import StormError

TOY_GAMES: tuple[str, ...] = ("toy:catch",)
"""The built-in pixel games (``storm_wm.envs.toy``)."""

GAME_NAME_HELP = "an Atari game such as Pong or MsPacman (any ALE ROM), toy:catch, or gym:<env id>"


@dataclass(frozen=True)
class GameSpec:
    """A resolved game: which family builds it and under which name results are reported."""

    name: str
    """Canonical name, as the user should write it: "Pong", "toy:catch", "gym:CarRacing-v3"."""
    kind: str
    """Which family builds the env: "atari", "toy" or "gym"."""
    atari_name: str | None
    """The ALE game name (for human-normalized scores); None for non-Atari games."""


def resolve_game(name: str) -> GameSpec:
    """Resolve an Atari, toy or gym game name; a typo gets the closest valid names in the error.

    Atari names match ALE's ROM list ignoring case, underscores, hyphens and spaces, so
    "montezuma_revenge" and "MontezumaRevenge" both give "MontezumaRevenge".
    """
    stripped = name.strip()
    prefix, _, rest = stripped.partition(":")
    if prefix.lower() == "gym" and rest:
        return GameSpec(name=f"gym:{_resolve_gym_id(rest)}", kind="gym", atari_name=None)
    if prefix.lower() == "toy" and f"toy:{rest.lower()}" in TOY_GAMES:
        return GameSpec(name=f"toy:{rest.lower()}", kind="toy", atari_name=None)
    atari_names = atari_game_names()
    key = normalize_game_name(stripped)
    if key in atari_names:
        return GameSpec(name=atari_names[key], kind="atari", atari_name=atari_names[key])

    candidates = {**atari_names, **{normalize_game_name(toy): toy for toy in TOY_GAMES}}
    matches = difflib.get_close_matches(key, candidates, n=3, cutoff=0.5)
    if matches:
        suggestion = ", ".join(candidates[match] for match in matches)
        raise StormError(f"unknown game {name!r}; did you mean: {suggestion}? Use {GAME_NAME_HELP}")
    raise StormError(f"unknown game {name!r}; use {GAME_NAME_HELP}")


def _resolve_gym_id(env_id: str) -> str:
    """Find a registered gymnasium id, exactly or else ignoring case."""
    if env_id in gym.registry:
        return env_id
    same_but_case = [known for known in gym.registry if known.lower() == env_id.lower()]
    if len(same_but_case) == 1:
        return same_but_case[0]
    matches = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
    suggestion = ", ".join(f"gym:{match}" for match in matches)
    suggestion = f"did you mean: {suggestion}? " if matches else ""
    raise StormError(
        f"gym:{env_id} is not a registered gymnasium env; {suggestion}"
        "import the package that registers it or check the id with gymnasium.pprint_registry()"
    )
