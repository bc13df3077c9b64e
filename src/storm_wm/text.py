"""Words and numbers as the command line prints them."""

from __future__ import annotations


def format_duration(seconds: float) -> str:
    """`0:42`, `3:05:12`, `41 days`: hours:minutes:seconds up to two days, days beyond."""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
