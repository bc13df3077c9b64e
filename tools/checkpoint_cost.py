"""Measures what checkpointing costs a run, as a fraction of its training time.

    python tools/checkpoint_cost.py [--preset atari100k] [--game Pong]

Builds the preset's real models, optimizers and replay buffer in a temporary run directory on
the current disk, times a few training steps, then times complete checkpoints (a new replay
chunk of `checkpoint_every` steps, the payload, fsync, pruning) exactly as training writes
them. The fraction is checkpoint seconds / (checkpoint_every x step seconds). It also gives
the fraction for the paper's GPU speed (4.3 h per 100k steps), since a CPU's slow steps make
any checkpoint look cheap. docs/resume.md quotes its output.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from storm_wm.config import build_config
from storm_wm.envs import make_env, resolve_game
from storm_wm.run.state import save_training_checkpoint
from storm_wm.run.train import build_components
from storm_wm.training.loop import LoopState

PAPER_GPU_STEP_SECONDS = 4.3 * 3600 / 100_000
"""The paper's reported speed: 4.3 hours per 100k-step run on one RTX 3090."""


def add_random_steps(components, count: int, rng: np.random.Generator) -> None:
    """Fills the replay with `count` steps of noise (their content does not change the cost)."""
    replay, shape = components.replay, components.replay.frames.shape[1:]
    for _ in range(count):
        frame = rng.integers(0, 256, size=shape, dtype=np.uint8)
        replay.add(frame, int(rng.integers(components.num_actions)), 0.0, False)


def measure(preset: str, game: str, train_steps: int, checkpoints: int) -> dict[str, float]:
    config = build_config(preset, {"env.game": game})
    every = config.train.checkpoint_every
    spec = resolve_game(game)
    env = make_env(config.env, seed=config.seed)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix=".checkpoint_cost_") as directory:
        run_dir = Path(directory)
        components = build_components(config, run_dir, spec.name, env)
        add_random_steps(components, max(every, config.train.warmup_steps), rng)
        components.trainer.train_step(components.replay, components.rng)  # warm-up
        started = time.perf_counter()
        for _ in range(train_steps):
            components.trainer.train_step(components.replay, components.rng)
        step_seconds = (time.perf_counter() - started) / train_steps

        state = LoopState(step=0, frame=env.reset()[0])
        durations, sizes = [], []
        for _ in range(checkpoints):
            if state.step:
                add_random_steps(components, every, rng)
            state.step += every
            started = time.perf_counter()
            path = save_training_checkpoint(run_dir, config, components, state)
            durations.append(time.perf_counter() - started)
            chunk = components.replay_store.chunks[-1]["name"]
            sizes.append((path.stat().st_size, (run_dir / "replay" / chunk).stat().st_size))
    env.close()
    checkpoint_seconds = float(np.median(durations))
    return {
        "checkpoint_every": every,
        "train_step_seconds": step_seconds,
        "checkpoint_seconds": checkpoint_seconds,
        "checkpoint_mb": sizes[-1][0] / 2**20,
        "replay_chunk_mb": sizes[-1][1] / 2**20,
        "fraction": checkpoint_seconds / (every * step_seconds),
        "fraction_at_paper_gpu_speed": checkpoint_seconds / (every * PAPER_GPU_STEP_SECONDS),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="atari100k")
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--train-steps", type=int, default=3, help="training steps timed")
    parser.add_argument("--checkpoints", type=int, default=3, help="checkpoints timed")
    args = parser.parse_args()
    result = measure(args.preset, args.game, args.train_steps, args.checkpoints)
    print(
        f"{args.preset} on {args.game}: one checkpoint every {result['checkpoint_every']} steps "
        f"takes {result['checkpoint_seconds']:.2f} s ({result['checkpoint_mb']:.0f} MB file + "
        f"{result['replay_chunk_mb']:.0f} MB replay chunk); a training step takes "
        f"{result['train_step_seconds']:.2f} s here, so checkpoints cost "
        f"{100 * result['fraction']:.3f} % of training time "
        f"({100 * result['fraction_at_paper_gpu_speed']:.2f} % at the paper's GPU speed, "
        f"{PAPER_GPU_STEP_SECONDS:.3f} s per step)"
    )


if __name__ == "__main__":
    main()
