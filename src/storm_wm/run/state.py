"""The full training state, captured into a checkpoint payload and restored from one.

Everything that decides what a run does next is here, so that a resumed run continues exactly:
both models (the slow critic and the return normalizer's EMAs are buffers of the actor-critic),
the optimizers, the loop's counters and episode in progress, the acting context, the
environment's state, every RNG, the metric sums not yet logged, and which replay chunks rebuild
the replay buffer. Only tensors and plain containers, so it loads with `weights_only=True`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from storm_wm.acting import Policy
from storm_wm.config import Config
from storm_wm.errors import StormError
from storm_wm.logs.metrics import MetricAccumulator
from storm_wm.models.agent import Models
from storm_wm.persistence.checkpoint import (
    checkpoint_path,
    prune_checkpoints,
    read_header,
    save_checkpoint,
    write_failure_message,
)
from storm_wm.persistence.env_state import capture_env_state, restore_env_state
from storm_wm.persistence.replay_store import ReplayStore, chunk_name
from storm_wm.persistence.rng_state import capture_rng_state, restore_rng_state
from storm_wm.persistence.writer import CheckpointWriter, host_copy
from storm_wm.replay import ReplayBuffer
from storm_wm.training.loop import LoopState
from storm_wm.training.trainer import Trainer


@dataclass
class Components:
    """The built objects of one run whose state a checkpoint holds."""

    game: str
    num_actions: int
    env: gymnasium.Env
    models: Models
    trainer: Trainer
    replay: ReplayBuffer
    replay_store: ReplayStore
    policy: Policy
    accumulator: MetricAccumulator
    rng: np.random.Generator


def capture(config: Config, components: Components, state: LoopState) -> dict[str, Any]:
    """The checkpoint payload. Its `replay` entry lists the chunks written so far: a caller that
    writes the newest chunk afterwards (`save_training_checkpoint`, on the writer's thread)
    lists it then."""
    replay_total = components.replay.total_added
    return {
        "game": components.game,
        "num_actions": components.num_actions,
        "config": config.to_dict(),
        "world_model": components.models.world_model.state_dict(),
        "actor_critic": components.models.actor_critic.state_dict(),
        "trainer": components.trainer.state_dict(),
        "loop": state.state_dict(),
        "policy_context": components.policy.context_state(0),
        "env": capture_env_state(components.env),
        "rng": capture_rng_state(components.rng),
        "metrics": components.accumulator.state_dict(),
        "replay": {
            "total": replay_total,
            "first": replay_total - len(components.replay),  # the oldest step the buffer holds
            "chunks": components.replay_store.manifest(replay_total),
        },
    }


def restore(config: Config, components: Components, checkpoint: dict[str, Any]) -> LoopState:
    """Loads everything but the replay buffer (restored first, see `resume.select_checkpoint`).

    If the environment's state cannot be restored (gym:<id> games), the episode in progress is
    ended and the next one starts from a reset seeded by the run's seed and the step (by the
    run's seed alone with train.repeat_reset_seed).
    """
    models, trainer = components.models, components.trainer
    try:
        models.world_model.load_state_dict(checkpoint["world_model"])
        models.actor_critic.load_state_dict(checkpoint["actor_critic"])
        trainer.load_state_dict(checkpoint["trainer"])
    except (RuntimeError, ValueError, KeyError) as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise StormError(
            "the checkpoint's weights do not fit this run's architecture "
            f"({lines[-1] if lines else type(error).__name__}); resume it with its own config"
        ) from None
    device = next(models.world_model.parameters()).device
    components.accumulator.load_state_dict(checkpoint["metrics"], device)
    state = LoopState.from_state_dict(checkpoint["loop"])
    if restore_env_state(components.env, checkpoint["env"]):
        components.policy.restore_context(0, checkpoint["policy_context"])
    else:
        print(
            f"storm-wm: note: {config.env.game} cannot restore an episode mid-way; the episode "
            f"in progress at step {state.step} ends there and a new one starts",
            file=sys.stderr,
        )
        seed = np.random.SeedSequence([config.seed, state.step]).generate_state(1)[0]
        if config.train.repeat_reset_seed:  # every training episode starts from the run's seed
            seed = config.seed
        state.frame, state.reset_seed = None, int(seed)
        state.episode_return, state.episode_length = 0.0, 0
        if config.train.clear_context_on_episode_end:
            components.policy.reset(0)
        else:  # as at any episode's end, the next episode's policy sees this one's last frames
            components.policy.restore_context(0, checkpoint["policy_context"])
    # Last: nothing above may draw from the generators after they are put back.
    restore_rng_state(checkpoint["rng"], components.rng)
    return state


def save_training_checkpoint(
    run_dir: Path,
    config: Config,
    components: Components,
    state: LoopState,
    writer: CheckpointWriter | None = None,
) -> Path:
    """Appends the new replay steps as a chunk, writes the checkpoint, prunes old ones.

    The state is captured here, on the training thread; with a `writer` the rest (the chunk,
    then the checkpoint that lists it, then pruning) happens on its background thread and the
    returned path exists once `writer.wait()` returns. Without one, all of it happens here.
    """
    writer = writer or CheckpointWriter(background=False)
    writer.wait()  # the previous write's chunks are in `store.chunks`; its error surfaces here
    store, replay = components.replay_store, components.replay
    pending_chunk = store.take(replay)
    payload = host_copy(capture(config, components, state))
    replay_entry = payload["replay"]
    summary = {"game": components.game, "num_actions": components.num_actions}
    summary["replay_total"] = replay_entry["total"]
    step = state.step  # the loop goes on counting while the writer works

    def write() -> None:
        if pending_chunk is not None:
            try:
                store.write(pending_chunk)
            except OSError as error:
                chunk = store.directory / chunk_name(pending_chunk.first, pending_chunk.stop)
                message = write_failure_message(run_dir, f"replay chunk {chunk}", error)
                raise StormError(message) from None
        # Listed only now: the chunk just written is on disk before the checkpoint naming it.
        replay_entry["chunks"] = store.manifest(replay_entry["total"])
        save_checkpoint(run_dir, step, payload, summary)
        kept = prune_checkpoints(run_dir, config.train.checkpoint_keep)
        if config.train.checkpoint_keep > 0 and kept:
            try:
                oldest_total = int(read_header(kept[0][1])["replay_total"])
            except (StormError, KeyError, ValueError):
                return  # an unreadable old checkpoint: keep every chunk
            store.prune(oldest_total - replay.capacity)

    writer.submit(write)
    return checkpoint_path(run_dir, step)
