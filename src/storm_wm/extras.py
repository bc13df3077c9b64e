"""Optional features and the packages they need.

The core (train, eval, resume, report tables, bench, sweep) needs only the dependencies in
pyproject.toml's `dependencies`. The window of `storm-wm play`, the report's plots and MP4
videos need packages installed as extras (`pip install 'storm-wm[play,plots,video]'`; `make`
installs them all). A feature whose package is missing stops before any work with one line
that names the extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from storm_wm.errors import StormError

EXTRAS = {"pygame": "play", "matplotlib": "plots", "imageio": "video", "imageio_ffmpeg": "video"}
"""Each optional package (its import name) and the extra that installs it."""


def require(module: str, feature: str) -> ModuleType:
    """Imports `module` for `feature` (what the user asked for, e.g. "storm-wm play"), or fails
    with one line that says how to install it."""
    package = module.partition(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = EXTRAS[package]
        raise StormError(
            f"{feature} needs the optional package {package}, which is not installed: "
            f"pip install 'storm-wm[{extra}]'"
        ) from None


def available(module: str) -> bool:
    """Whether `module` is installed, found without importing it."""
    return importlib.util.find_spec(module) is not None
