"""Commands quoted in messages, spelled so that they work when pasted into a shell as printed."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path


def storm_wm_command() -> str:
    """`storm-wm` when it is on PATH; otherwise the console script next to this Python.

    `make install` puts the console in `.venv/bin/`, which is not on PATH unless the venv is
    activated: the hint then reads `.venv/bin/storm-wm ...` (relative to the current directory
    where possible), or `python -m storm_wm.cli` if there is no console script at all. A path
    with spaces or other characters a shell would split on is quoted.
    """
    if shutil.which("storm-wm"):
        return "storm-wm"
    script = Path(sys.executable).parent / "storm-wm"
    if not script.exists():
        return f"{shlex.quote(sys.executable)} -m storm_wm.cli"
    try:
        relative = script.absolute().relative_to(Path.cwd())
    except ValueError:
        return shlex.quote(str(script))
    return shlex.quote(str(relative) if len(relative.parts) > 1 else f"./{relative}")


def command(*arguments: object) -> str:
    """`storm-wm train --resume 'runs/my run'`: the console as `storm_wm_command` spells it,
    then each argument (a word, a path, a placeholder such as RUN_DIR) quoted for the shell, so
    a run directory with spaces or quotes in its name is one argument when the hint is pasted.
    """
    return " ".join([storm_wm_command(), *(shlex.quote(str(argument)) for argument in arguments)])
