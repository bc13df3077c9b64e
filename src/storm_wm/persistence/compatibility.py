"""Whether a checkpoint or a resumed run fits a config: mismatches are named, never guessed at.

Loading weights of another game, action count or architecture either crashes deep inside
`load_state_dict` or, worse, silently plays with a policy trained on something else; these
checks turn every such case into one line that names the fields that differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from storm_wm.config import Config, settings
from storm_wm.envs import resolve_game
from storm_wm.errors import StormError

ARCHITECTURE_FIELDS: tuple[str, ...] = tuple(s.name for s in settings() if s.shapes_weights)
"""Fields that shape the weights (or what they mean): they must match to evaluate a checkpoint
(declared `shapes_weights` in config.py)."""

RESUMABLE_FIELDS: tuple[str, ...] = tuple(
    sorted((s.name for s in settings() if s.on_resume != "fixed"), key=lambda name: "." in name)
)
"""Fields a resumed run may change (an `on_resume` other than "fixed" in config.py), the
top-level ones first: the step budget, and bookkeeping that leaves the experiment as it is. With
another device or precision the run continues the same experiment, but no longer bit for bit."""

KEPT_ON_RESUME: tuple[str, ...] = tuple(s.name for s in settings() if s.on_resume == "kept")
"""The resumable fields whose new value config.json keeps for later resumes: the step budget is
the run's length, and a `--train.checkpoint_keep 1` after a disk-full stop must not be undone
by the next resume (`resume.record_resume`)."""


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"agent": {"gamma": 0.9}} -> {"agent.gamma": 0.9}; tuples and lists compare equal."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = list(value) if isinstance(value, tuple | list) else value
    return flat


def _canonical_game(name: Any) -> Any:
    try:
        return resolve_game(str(name)).name
    except StormError:
        return name


def config_differences(
    expected: Mapping[str, Any],
    actual: Mapping[str, Any],
    *,
    only: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
) -> list[str]:
    """`name: expected -> actual` for every differing field (all of them, or those in `only`)."""
    # A field a saved config lacks was added after it was written, with the behaviour from before
    # as its default: it compares as that default.
    defaults = flatten(Config().to_dict())
    left, right = {**defaults, **flatten(expected)}, {**defaults, **flatten(actual)}
    for flat in (left, right):
        if "env.game" in flat:
            flat["env.game"] = _canonical_game(flat["env.game"])
    names = list(only) if only is not None else sorted(set(left) | set(right))
    skipped = set(ignore)
    missing = "<absent>"
    return [
        f"{name} {left.get(name, missing)!r} vs {right.get(name, missing)!r}"
        for name in names
        if name not in skipped and left.get(name, missing) != right.get(name, missing)
    ]


def check_checkpoint_matches(
    checkpoint: Mapping[str, Any],
    config: Config,
    path: Path,
    *,
    num_actions: int | None = None,
    only: Iterable[str] | None = ARCHITECTURE_FIELDS,
) -> None:
    """Raises a one-line StormError naming each difference between a loaded checkpoint and
    `config` (and the env's action count): checkpoint value vs config value."""
    problems = []
    game = resolve_game(config.env.game).name
    if checkpoint.get("game") != game:
        problems.append(f"game {checkpoint.get('game')!r} vs {game!r}")
    if num_actions is not None and checkpoint.get("num_actions") != num_actions:
        problems.append(f"num_actions {checkpoint.get('num_actions')!r} vs {num_actions!r}")
    saved = checkpoint.get("config")
    if isinstance(saved, Mapping):
        ignore = ("env.game", *RESUMABLE_FIELDS)
        problems += config_differences(saved, config.to_dict(), only=only, ignore=ignore)
    if problems:
        raise StormError(
            f"{path} does not match this run (checkpoint vs run): {'; '.join(problems)}; "
            "use the checkpoint with the run directory it was written in"
        )
