"""Commands quoted in messages, spelled so that they work when typed as printed."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def storm_wm_command() -> str:
    """`storm-wm` when it is on PATH; otherwise the console script next to this Python.

    `make install` puts the console in `.venv/bin/`, which is not on PATH unless the venv is
    activated: the hint then reads `.venv/bin/storm-wm ...` (relative to the current directory
    where possible), or `python -m storm_wm.cli` if there is no console script at all.
    """
    if shutil.which("storm-wm"):
        return "storm-wm"
    script = Path(sys.executable).parent / "storm-wm"
    if not script.exists():
        return f"{sys.executable} -m storm_wm.cli"
    try:
        relative = script.absolute().relative_to(Path.cwd())
    except ValueError:
        return str(script)
    return str(relative) if len(relative.parts) > 1 else f"./{relative}"


def command(arguments: str) -> str:
    """`storm-wm train --resume runs/x`, with the command spelled as `storm_wm_command` says."""
    return f"{storm_wm_command()} {arguments}"
