"""Every random generator a run draws from, as plain data a weights-only checkpoint can hold.

A resumed run must draw the same numbers as the run left alone would have: Python's `random`,
NumPy's global generator, the run's own `np.random.Generator` (replay sampling, random actions),
and torch's generators (sampling latents and actions, dropout) on the CPU and any accelerator.
The environment's generators travel with the environment's state (`env_state`).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture_rng_state(generator: np.random.Generator) -> dict[str, Any]:
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"] = {
        "key": numpy_state["state"]["key"].tolist(),
        "pos": int(numpy_state["state"]["pos"]),
    }
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": numpy_state,
        "generator": generator.bit_generator.state,
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any], generator: np.random.Generator) -> None:
    """Puts every generator back; `generator` is the run's own, restored in place."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = {
        "key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32),
        "pos": numpy_state["state"]["pos"],
    }
    np.random.set_state(numpy_state)
    generator.bit_generator.state = state["generator"]
    torch.set_rng_state(state["torch"])
    # A run moved to a machine with another number of GPUs cannot replay their streams exactly.
    if torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])
