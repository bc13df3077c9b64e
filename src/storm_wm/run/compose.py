"""Builds everything a training run needs from a Config, restores it on resume, runs the loop."""

from __future__ import annotations

import dataclasses
import random
import sys
from pathlib import Path

import numpy as np
import torch

from storm_wm.acting import Policy
from storm_wm.config import Config
from storm_wm.device import (
    choose_precision,
    replay_device,
    resolve_device,
    resolve_precision,
    warn_about_precision,
)
from storm_wm.envs import make_env, resolve_game
from storm_wm.errors import StormError
from storm_wm.hints import command
from storm_wm.logs.metrics import Logger, MetricAccumulator
from storm_wm.models.agent import build_models
from storm_wm.persistence.checkpoint import (
    checkpoint_path,
    prune_checkpoints,
    read_header,
    save_checkpoint,
    write_failure_message,
)
from storm_wm.persistence.lock import directory_lock
from storm_wm.persistence.replay_store import ReplayStore, chunk_name
from storm_wm.persistence.resume import (
    check_resume_config,
    load_run_config,
    record_resume,
    select_checkpoint,
)
from storm_wm.persistence.writer import CheckpointWriter, host_copy
from storm_wm.replay import ReplayBuffer
from storm_wm.run.estimate import announce_workload
from storm_wm.run.signals import StopSignals
from storm_wm.run.state import Components, capture, restore
from storm_wm.training.determinism import deterministic_algorithms
from storm_wm.training.loop import LoopState, train_loop
from storm_wm.training.trainer import Trainer
from storm_wm.visualize.training import log_world_model_diagnostics


def default_run_dir(config: Config) -> Path:
    """`runs/<game>_<preset>_seed<seed>`, with the game as resolved: `--game pong` and
    `--game Pong` are one run."""
    game = resolve_game(config.env.game).name.replace(":", "-").replace("/", "-")
    return Path("runs") / f"{game}_{config.preset.replace('+', '-')}_seed{config.seed}"


def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


RUN_LOCK = ".run.lock"


def refuse_existing_run(run_dir: Path) -> None:
    """Refuses to reuse a run directory: it would mix two runs' metrics and checkpoints."""
    if (run_dir / "config.json").exists():
        raise StormError(
            f"{run_dir} already holds a run (left untouched); continue it with "
            f"`{command('train', '--resume', run_dir)}` or choose another --run-dir"
        )


def create_run_dir(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StormError(f"cannot create run directory {run_dir}: {error.strerror}") from None


def run_lock(run_dir: Path):
    """Held while a process trains the run: a second `train` on it is refused, naming the first."""
    refusal = (
        f"{run_dir} is being trained by another storm-wm process ({{holder}}); wait for it to "
        "end or stop it (Ctrl-C or kill PID: it saves a checkpoint first), then resume"
    )
    return directory_lock(run_dir, RUN_LOCK, refusal)


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
    store = components.replay_store
    pending_chunk = store.take(components.replay)
    replay_total = components.replay.total_added
    replay_first = replay_total - len(components.replay)  # later than total - capacity after a loss
    payload = host_copy(capture(config, components, state))
    summary = {
        "game": components.game,
        "num_actions": components.num_actions,
        "replay_total": replay_total,
    }
    step = state.step  # the loop goes on counting while the writer works
    path = checkpoint_path(run_dir, step)

    def write() -> None:
        if pending_chunk is not None:
            try:
                store.write(pending_chunk)
            except OSError as error:
                chunk = store.directory / chunk_name(pending_chunk.first, pending_chunk.stop)
                raise StormError(
                    write_failure_message(run_dir, f"replay chunk {chunk}", error)
                ) from None
        # Listed only now: the chunk just written is on disk before the checkpoint naming it.
        payload["replay"] = {
            "total": replay_total,
            "first": replay_first,
            "chunks": store.manifest(replay_total),
        }
        save_checkpoint(run_dir, step, payload, summary)
        kept = prune_checkpoints(run_dir, config.train.checkpoint_keep)
        if config.train.checkpoint_keep > 0 and kept:
            try:
                oldest_total = int(read_header(kept[0][1])["replay_total"])
            except (StormError, KeyError, ValueError):
                return  # an unreadable old checkpoint: keep every chunk
            store.prune(oldest_total - components.replay.capacity)

    writer.submit(write)
    return path


def train(
    config: Config, run_dir: Path, show_progress: bool = True, *, resume: bool = False
) -> LoopState:
    """Trains a new run in `run_dir`, or with `resume` continues the run there.

    `state.stopped_by` of the result names the signal if SIGINT or SIGTERM ended it early.
    """
    # Everything that can be refused is checked before the run directory is created or
    # changed: a refused command leaves nothing behind that would block it once corrected.
    spec = resolve_game(config.env.game)
    # One name for one game everywhere (config.json, the progress bar): "pong" is "Pong".
    config = dataclasses.replace(config, env=dataclasses.replace(config.env, game=spec.name))
    device = resolve_device(config.device)
    warn_about_precision(config.precision, device)
    run_dir = Path(run_dir)
    saved = None
    if resume:
        saved = load_run_config(run_dir)
        check_resume_config(saved, config, run_dir)
    else:
        refuse_existing_run(run_dir)
    env = make_env(config.env, seed=config.seed)
    try:
        if not resume:
            create_run_dir(run_dir)
        with run_lock(run_dir):
            if not resume:
                refuse_existing_run(run_dir)  # again, now that no other process can start it
                config.save(run_dir / "config.json")
            with deterministic_algorithms(config.train.deterministic):
                return _train(config, run_dir, spec.name, env, show_progress, saved)
    finally:
        env.close()


def build_components(config: Config, run_dir: Path, game: str, env) -> Components:
    """Models, trainer, replay (and its store on disk), policy and generator of one run."""
    rng = seed_everything(config.seed)
    device = resolve_device(config.device)
    dtype = resolve_precision(config.precision, device)
    num_actions = int(env.action_space.n)
    models = build_models(config, num_actions, device)
    trainer = Trainer(models, config, device, dtype)
    capacity, frame_shape = config.train.replay_capacity, env.observation_space.shape
    replay = ReplayBuffer(
        capacity, frame_shape, device=replay_device(
            config.train.replay_on_device, device, ReplayBuffer.bytes_needed(capacity, frame_shape)
        ),
    )  # fmt: skip
    policy = Policy(models, config.train, 1, rng, dtype=dtype, compile=config.train.compile)
    return Components(
        game, num_actions, env, models, trainer, replay,
        ReplayStore(run_dir, config.train.replay_capacity), policy, MetricAccumulator(), rng,
    )  # fmt: skip


def _train(config, run_dir, game, env, show_progress, saved: Config | None) -> LoopState:
    """Builds the run's objects, restores them when resuming (`saved`: the run's config.json),
    says what runs where, and runs the loop."""
    components = build_components(config, run_dir, game, env)
    replay = components.replay
    state, resume_step, changes = None, None, []
    if saved is not None:
        store = components.replay_store
        checkpoint = select_checkpoint(run_dir, config, components.num_actions, replay, store)
        if checkpoint is None:
            print(f"storm-wm: {run_dir} has no checkpoint yet; starting it over", file=sys.stderr)
            resume_step = 0
        else:
            state = restore(config, components, checkpoint)
            resume_step = state.step
        if resume_step > config.train.steps:
            raise StormError(
                f"{run_dir} is already at step {resume_step}, past --steps "
                f"{config.train.steps}; give a budget of at least {resume_step}"
            )
        components.replay_store.discard_after(replay.total_added)
        changes = record_resume(run_dir, saved, config, resume_step)

    # Said with or without a progress bar: what runs, where, in what precision and why, and (on
    # a CPU) for how long.
    device = next(components.models.world_model.parameters()).device
    precision = choose_precision(config.precision, device)
    verb = f"resuming at step {resume_step}" if resume_step else "training"
    print(
        f"storm-wm: {verb} {game} ({config.preset}, seed {config.seed}) for "
        f"{config.train.steps} steps on {device} in {precision.name} -> {run_dir}\n"
        f"storm-wm: precision {precision.name}: {precision.reason}"
    )
    for line in changes:
        print(line)
    announce_workload(config, device, env, done=resume_step or 0)
    writer = CheckpointWriter(background=config.train.async_checkpoints)
    # The writer closes first: the last checkpoint is on disk (or its error raised) on return.
    with Logger(run_dir, resume_step) as logger, StopSignals() as stop, writer:

        def save(loop_state: LoopState) -> None:
            logger.flush()  # TensorBoard's events up to the checkpoint are on disk with it
            save_training_checkpoint(run_dir, config, components, loop_state, writer)

        return train_loop(
            config, env, replay, components.trainer, components.policy, logger, components.rng,
            save, state, show_progress, accumulator=components.accumulator, stop_requested=stop,
            on_step=lambda step: log_world_model_diagnostics(
                logger, components.models.world_model, replay, step, config
            ),
        )  # fmt: skip
