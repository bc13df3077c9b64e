"""Which action the held keys mean, from each game's own action names. No pygame here."""

from __future__ import annotations

FIRE = "FIRE"


def action_for(held: set[str], meanings: list[str], chosen_number: int | None = None) -> int:
    """The action whose ALE name matches the held controls best; NOOP (or 0) when none does.

    `held` holds control names (UP, DOWN, LEFT, RIGHT, FIRE). ALE names combine them as
    vertical + horizontal + FIRE ("UPRIGHTFIRE"); when a game lacks the exact combination, FIRE
    and then one direction are dropped, so that holding fire never blocks moving. A number key
    (`chosen_number`) picks that action directly, for games whose actions have no names.
    """
    if chosen_number is not None and 0 <= chosen_number < len(meanings):
        return chosen_number
    vertical = "UP" if "UP" in held and "DOWN" not in held else ""
    vertical = "DOWN" if "DOWN" in held and "UP" not in held else vertical
    horizontal = "LEFT" if "LEFT" in held and "RIGHT" not in held else ""
    horizontal = "RIGHT" if "RIGHT" in held and "LEFT" not in held else horizontal
    fire = FIRE if FIRE in held else ""
    candidates = [
        vertical + horizontal + fire,
        vertical + horizontal,
        horizontal + fire,
        vertical + fire,
        horizontal,
        vertical,
        fire,
    ]
    for name in candidates:
        if name and name in meanings:
            return meanings.index(name)
    return meanings.index("NOOP") if "NOOP" in meanings else 0
