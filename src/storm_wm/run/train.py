"""A training run from a Config: check what can be refused, open the run directory, build the
run's objects (restored on resume), say what runs where, then run the loop with its parts."""

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
    deterministic_algorithms,
    replay_device,
    resolve_device,
    resolve_precision,
    warn_about_precision,
)
from storm_wm.envs import make_env, resolve_game
from storm_wm.errors import StormError
from storm_wm.logs.metrics import Logger, MetricAccumulator
from storm_wm.models.agent import build_models
from storm_wm.persistence.replay_store import ReplayStore
from storm_wm.persistence.resume import (
    check_resume_config,
    load_run_config,
    record_resume,
    select_checkpoint,
)
from storm_wm.persistence.writer import CheckpointWriter
from storm_wm.replay import ReplayBuffer
from storm_wm.run.directory import opened, refuse_existing_run
from storm_wm.run.estimate import announce_workload
from storm_wm.run.parts import Checkpointing, Diagnostics, MetricsLog, NonfiniteWatch, ProgressBar
from storm_wm.run.signals import StopSignals
from storm_wm.run.state import Components, restore, save_training_checkpoint
from storm_wm.training.loop import LoopState, train_loop
from storm_wm.training.trainer import Trainer


def train(
    config: Config, run_dir: Path, show_progress: bool = True, *, resume: bool = False
) -> LoopState:
    """Trains a new run in `run_dir`, or with `resume` continues the run there.

    `state.stopped_by` of the result names the signal if SIGINT or SIGTERM ended it early.
    """
    # Everything that can be refused is checked before the run directory is created or
    # changed: a refused command leaves nothing behind that would block it once corrected.
    game = resolve_game(config.env.game).name
    # One name for one game everywhere (config.json, the progress bar): "pong" is "Pong".
    config = dataclasses.replace(config, env=dataclasses.replace(config.env, game=game))
    warn_about_precision(config.precision, resolve_device(config.device))
    run_dir, saved = Path(run_dir), None
    if resume:
        saved = load_run_config(run_dir)
        check_resume_config(saved, config, run_dir)
    else:
        refuse_existing_run(run_dir)
    env = make_env(config.env, seed=config.seed)
    try:
        new = None if resume else config
        with opened(run_dir, new), deterministic_algorithms(config.train.deterministic):
            components = build_components(config, run_dir, game, env)
            return _train(config, run_dir, components, show_progress, saved)
    finally:
        env.close()


def build_components(config: Config, run_dir: Path, game: str, env) -> Components:
    """Models, trainer, replay (and its store on disk), policy and generator of one run."""
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = resolve_device(config.device)
    dtype = resolve_precision(config.precision, device)
    num_actions = int(env.action_space.n)
    models = build_models(config, num_actions, device)
    capacity, frame_shape = config.train.replay_capacity, env.observation_space.shape
    needed = ReplayBuffer.bytes_needed(capacity, frame_shape)
    placement = replay_device(config.train.replay_on_device, device, needed)
    return Components(
        game=game,
        num_actions=num_actions,
        env=env,
        models=models,
        trainer=Trainer(models, config, device, dtype),
        replay=ReplayBuffer(capacity, frame_shape, device=placement),
        replay_store=ReplayStore(run_dir, capacity),
        policy=Policy(models, config.train, 1, rng, dtype=dtype, compile=config.train.compile),
        accumulator=MetricAccumulator(),
        rng=rng,
    )


def _train(config, run_dir, components, show_progress, saved: Config | None) -> LoopState:
    """Restores the run when resuming (`saved`: its config.json), says what runs where and in
    what precision, and runs the loop."""
    state, resume_step, changes = None, None, []
    if saved is not None:
        state, changes = _resume(config, run_dir, components, saved)
        resume_step = state.step if state else 0
    device = next(components.models.world_model.parameters()).device
    precision = choose_precision(config.precision, device)
    verb = f"resuming at step {resume_step}" if resume_step else "training"
    print(
        f"storm-wm: {verb} {components.game} ({config.preset}, seed {config.seed}) for "
        f"{config.train.steps} steps on {device} in {precision.name} -> {run_dir}\n"
        f"storm-wm: precision {precision.name}: {precision.reason}"
    )
    for line in changes:
        print(line)
    announce_workload(config, device, components.env, done=resume_step or 0)
    writer = CheckpointWriter(background=config.train.async_checkpoints)
    # The writer closes first: the last checkpoint is on disk (or its error raised) on return.
    with Logger(run_dir, resume_step) as logger, StopSignals() as stop, writer:

        def save(state: LoopState) -> None:
            logger.flush()  # TensorBoard's events up to the checkpoint are on disk with it
            save_training_checkpoint(run_dir, config, components, state, writer)

        step, replay, trainer = resume_step or 0, components.replay, components.trainer
        checkpoints = Checkpointing(save, config.train)
        parts = [
            MetricsLog(logger, components.accumulator, trainer, config, step),
            Diagnostics(logger, components.models.world_model, replay, config),
            stop,
            NonfiniteWatch(trainer, config, checkpoints),
            checkpoints,
            ProgressBar(config, replay, step, show_progress),
        ]
        policy, rng = components.policy, components.rng
        return train_loop(config, components.env, replay, trainer, policy, rng, parts, state)


def _resume(config, run_dir, components, saved) -> tuple[LoopState | None, list[str]]:
    """Restores the newest good checkpoint (None: there is none yet, the run starts over),
    drops replay chunks written after it, and records the resume (the lines that say what
    changed)."""
    replay, store = components.replay, components.replay_store
    checkpoint = select_checkpoint(run_dir, config, components.num_actions, replay, store)
    state = None
    if checkpoint is None:
        print(f"storm-wm: {run_dir} has no checkpoint yet; starting it over", file=sys.stderr)
    else:
        state = restore(config, components, checkpoint)
    step = state.step if state else 0
    if step > config.train.steps:
        raise StormError(
            f"{run_dir} is already at step {step}, past --steps {config.train.steps}; give a "
            f"budget of at least {step}"
        )
    store.discard_after(replay.total_added)
    return state, record_resume(run_dir, saved, config, step)
