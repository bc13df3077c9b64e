"""Words and numbers as the command line prints them."""

from __future__ import annotations


def format_duration(seconds: float) -> str:
    """`0:42`, `3:05:12`, `41 days`: hours:minutes:seconds up to two days, days beyond."""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def rough_duration(seconds: float) -> str:
    """An estimate's order of magnitude: `29 days`, `5 hours`, `40 minutes`, `75 s`."""
    for unit, length in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * length:
            return f"{seconds / length:.0f} {unit}"
    return f"{seconds:.0f} s"


def run_name(game: str, *parts: str) -> str:
    """A directory name: `game`, then `parts`, joined by `_`. The game's `:` and `/`
    (`toy:catch`, `gym:ALE/Pong-v5`) and the parts' `+` (a stacked preset's `toy+tiny`) become
    `-`."""
    game = game.replace(":", "-").replace("/", "-")
    return "_".join([game, *(part.replace("+", "-") for part in parts)])


def plural(count: int, noun: str) -> str:
    """plural(1, "game") -> `1 game`, plural(2, "game") -> `2 games`."""
    return f"{count} {noun}" + ("" if count == 1 else "s")
