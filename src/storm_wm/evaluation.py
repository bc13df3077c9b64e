"""Evaluation: the trained agent plays whole episodes in a bounded pool of environments.

Besides the returns, the episodes it plays serve as held-out data for the world model: they
were never in the training replay, so windows cut from them measure how well the model
predicts open loop on data it has not fitted (`storm_wm.diagnostics`).

Two bookkeepings (`--bookkeeping`, default `train.eval_bookkeeping`): `whole`, every episode
played to its end (an unbiased mean), and `released`, the authors' eval script
(docs/algorithm.md#7-evaluation-protocol).
"""

from __future__ import annotations

import json
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import gymnasium
import numpy as np
import torch

from storm_wm.acting import Policy
from storm_wm.analysis.scores import human_normalized
from storm_wm.atomic import write_text_atomically
from storm_wm.config import Bookkeeping, Config, Protocol
from storm_wm.device import autocast
from storm_wm.diagnostics import HORIZONS, WindowReservoir, open_loop_errors
from storm_wm.envs import make_env, resolve_game
from storm_wm.envs.catalog import GameSpec
from storm_wm.errors import StormError
from storm_wm.persistence.agent import TrainedAgent

RELEASED_ENVS = 5
"""Parallel environments of the authors' eval script."""
MAX_DEFAULT_ENVS = 16
"""Parallel environments at most unless --envs says otherwise: memory stays flat however many
episodes are asked for."""
BENCHMARK_EPISODE_FRAMES = 108_000
"""The Atari 100k benchmark's episode cap (30 minutes of play at 60 frames a second)."""
EVAL_SEED_TAG = int.from_bytes(b"eval", "big")
"""Mixed with the run's seed, so that evaluation seeds differ from training seeds and between
runs, while each run's evaluation is reproducible."""


@dataclass
class Episodes:
    """Finished episodes in the order they finished (compact arrays: a million cost ~24 MB)."""

    returns: array = field(default_factory=lambda: array("d"))
    lengths: array = field(default_factory=lambda: array("q"))
    seeds: array = field(default_factory=lambda: array("q"))

    def __len__(self) -> int:
        return len(self.seeds)  # appended last: an interrupted `add` leaves no half episode

    def add(self, episode_return: float, length: int, seed: int) -> None:
        self.returns.append(episode_return)
        self.lengths.append(length)
        self.seeds.append(seed)


def evaluation_seeds(run_seed: int, first: int | None = None) -> Callable[[int], int]:
    """The reset seed of the k-th episode started: `first + k` when given (--seed), else drawn
    from SeedSequence([run seed, "eval", k]), so that the evaluation noise of runs with
    different seeds is independent."""
    if first is not None:
        return lambda k: first + k
    return lambda k: int(np.random.SeedSequence([run_seed, EVAL_SEED_TAG, k]).generate_state(1)[0])


def play_pool(
    envs: list[gymnasium.Env],
    policy: Policy,
    episodes: int,
    seed_of: Callable[[int], int],
    *,
    bookkeeping: Bookkeeping = "whole",
    reservoir: WindowReservoir | None = None,
    finished: Episodes | None = None,
    on_episode: Callable[[Episodes], None] | None = None,
    clear_context: bool = True,
) -> Episodes:
    """Plays `episodes` episodes on the environments of `envs`; a finished env starts the next.

    `whole`: episodes 0..episodes-1 are started (episode k reset with `seed_of(k)`), each played
    to its natural end (game over or the frame cap, never a life loss), and each return
    includes the final step's reward; envs with no episode left idle. `released`: every env
    plays on until `episodes` episodes have finished, those are kept, and an episode's final
    reward is counted in that env's next episode instead (the authors' eval script).

    Finished episodes are appended to `finished` as they end, so a caller interrupted by
    Ctrl-C still has them. Every step also goes to `reservoir`, with the replay's end flag
    (episode end or life lost), which is what the world model learned.
    """
    if bookkeeping not in get_args(Bookkeeping):
        allowed = ", ".join(get_args(Bookkeeping))
        raise StormError(f"bookkeeping must be one of {allowed}: {bookkeeping!r}")
    finished = Episodes() if finished is None else finished
    released = bookkeeping == "released"
    count = len(envs)
    started = 0
    seeds = np.zeros(count, dtype=np.int64)
    totals = np.zeros(count)
    lengths = np.zeros(count, dtype=np.int64)
    running = np.zeros(count, dtype=bool)
    first_frames = []
    for index in range(count):
        seeds[index] = seed_of(started)
        running[index] = released or started < episodes
        started += int(running[index])
        first_frames.append(envs[index].reset(seed=int(seeds[index]))[0])
    frames = np.stack(first_frames)
    while running.any() and len(finished) < episodes:
        for index in np.flatnonzero(~running):
            policy.reset(index)  # an idle env's empty context costs no forward pass
        actions = policy.act(frames)
        # A new array each step: the policy keeps the rows it was given as its context.
        next_frames = frames.copy()
        for index in np.flatnonzero(running):
            frame, reward, terminated, truncated, info = envs[index].step(int(actions[index]))
            reward = float(reward)
            lengths[index] += 1
            if reservoir is not None:
                end = bool(terminated or info.get("life_loss", False))
                reservoir.add(index, frames[index], int(actions[index]), reward, end)
            next_frames[index] = frame
            if not (terminated or truncated):
                totals[index] += reward
                continue
            if reservoir is not None:
                reservoir.end_episode(index)
            # released: the sum is recorded before the final reward is added, and the sum is
            # then reset to zero and the final reward added to it (their env loop's order).
            finished.add(
                float(totals[index] + (0.0 if released else reward)),
                int(lengths[index]),
                int(seeds[index]),
            )
            if on_episode is not None:
                on_episode(finished)
            if len(finished) >= episodes:
                break
            totals[index] = reward if released else 0.0
            lengths[index] = 0
            if released or started < episodes:
                if clear_context:
                    policy.reset(index)
                seeds[index] = seed_of(started)
                started += 1
                next_frames[index] = envs[index].reset(seed=int(seeds[index]))[0]
            else:
                running[index] = False
        frames = next_frames
    return finished


def comparability(spec: GameSpec, config: Config) -> tuple[bool, str | None]:
    """Whether the score may stand beside published Atari 100k scores, and if not, why."""
    if spec.atari_name is None:
        return False, f"{spec.name} is not an Atari game: no published scores to compare with"
    frames = config.env.max_episode_frames
    if frames < BENCHMARK_EPISODE_FRAMES:
        return False, (
            f"episodes capped at {frames:,} frames (env.max_episode_frames); the benchmark "
            f"plays up to {BENCHMARK_EPISODE_FRAMES:,}"
        )
    return True, None


class EvaluationInterrupted(KeyboardInterrupt):
    """Ctrl-C during play: the finished episodes were written to `path` (None: none finished)."""

    def __init__(
        self, finished: int, requested: int, path: Path | None, during_diagnostics: bool = False
    ) -> None:
        super().__init__()
        self.finished, self.requested, self.path = finished, requested, path
        self.during_diagnostics = during_diagnostics


def _partial_path(out: Path) -> Path:
    """Where an interrupted evaluation goes: `out`, unless it holds a complete evaluation that
    a partial one must not replace (a sweep reads eval.json as 'finished')."""
    try:
        previous = json.loads(out.read_text())
    except (OSError, ValueError):
        return out
    if isinstance(previous, dict) and not previous.get("partial", False):
        return out.with_name(f"{out.stem}.partial{out.suffix}")
    return out


def _write(path: Path, result: dict[str, Any]) -> None:
    try:
        # Atomic: a sweep takes the presence of eval.json to mean the run is finished.
        write_text_atomically(path, json.dumps(result, indent=2) + "\n")
    except OSError as error:
        raise StormError(
            f"cannot write {path} ({error.strerror or error}); pick another --out FILE"
        ) from None


def evaluate(
    agent: TrainedAgent,
    episodes: int | None = None,
    *,
    protocol: Protocol | None = None,
    greedy: bool = False,
    seed: int | None = None,
    diagnostic_windows: int = 256,
    envs: int | None = None,
    bookkeeping: Bookkeeping | None = None,
    out: Path | None = None,
    on_episode: Callable[[Episodes], None] | None = None,
) -> dict[str, Any]:
    """Plays `episodes` episodes (default: the run's train.eval_episodes) with a loaded agent and
    writes `out` (default RUN_DIR/eval.json).

    Episode seeds come from the run's seed (`evaluation_seeds`); `seed` makes them seed,
    seed + 1, ... instead. At most `envs` environments play at once (default: 5 for the
    released bookkeeping, else up to 16). With `diagnostic_windows` > 0, that many windows of
    the episodes (a uniform sample) also measure the world model's open-loop k-step errors,
    under `world_model_quality`. Ctrl-C writes the finished episodes, marked partial, and
    raises `EvaluationInterrupted`.
    """
    if episodes is not None and episodes <= 0:
        raise StormError(f"--episodes must be positive, got {episodes}")
    if envs is not None and envs <= 0:
        raise StormError(f"--envs must be positive, got {envs}")
    if diagnostic_windows < 0:
        raise StormError(f"--diagnostic-windows must be 0 or more, got {diagnostic_windows}")
    if bookkeeping is not None and bookkeeping not in get_args(Bookkeeping):
        raise StormError(f"--bookkeeping must be one of {', '.join(get_args(Bookkeeping))}")
    config, checkpoint, run_dir = agent.config, agent.checkpoint, agent.run_dir
    out = Path(out) if out is not None else run_dir / "eval.json"
    started = time.perf_counter()
    episodes = episodes or config.train.eval_episodes
    bookkeeping = bookkeeping or config.train.eval_bookkeeping
    if envs is None:
        envs = RELEASED_ENVS if bookkeeping == "released" else min(episodes, MAX_DEFAULT_ENVS)
    elif bookkeeping == "whole":
        envs = min(envs, episodes)
    protocol = protocol or config.env.protocol
    spec = resolve_game(config.env.game)
    seed_of = evaluation_seeds(config.seed, seed)
    policy_seed = seed
    if policy_seed is None:  # the sampled actions' stream, apart from the episodes' seeds
        policy_seed = int(np.random.SeedSequence([config.seed, EVAL_SEED_TAG]).generate_state(1)[0])
    torch.manual_seed(policy_seed)
    environments = [make_env(config.env, protocol=protocol) for _ in range(envs)]
    models = agent.models_for(environments[0])
    policy = Policy(
        models,
        config.train,
        envs,
        np.random.default_rng(policy_seed),
        dtype=agent.dtype,
        greedy=greedy,
    )
    context = config.agent.context_length
    reservoir = None
    if diagnostic_windows:
        reservoir = WindowReservoir(
            diagnostic_windows,
            context + max(HORIZONS),
            context,
            envs,
            np.random.default_rng([policy_seed, 1]),
        )
    comparable, reason = comparability(spec, config)

    def result(played: Episodes, quality: dict | None, partial: bool) -> dict[str, Any]:
        count = len(played)
        returns = np.asarray(played.returns[:count])
        mean = float(returns.mean())
        return {
            "game": spec.name,
            "game_kind": spec.kind,
            "preset": config.preset,
            "protocol": protocol,
            "bookkeeping": bookkeeping,
            "seed": config.seed,
            "eval_seed_source": f"--seed {seed}" if seed is not None else "the run's seed",
            "eval_seeds": list(played.seeds),
            "step": int(checkpoint["step"]),
            "checkpoint": str(Path(checkpoint["path"]).relative_to(run_dir)),
            "policy": "greedy" if greedy else "sampled",
            "envs": envs,
            "episodes": count,
            "episodes_requested": episodes,
            "partial": partial,
            "returns": returns.tolist(),
            "lengths": list(played.lengths[:count]),
            "mean": mean,
            "std": float(returns.std()),
            "human_normalized": (
                human_normalized(spec.atari_name, mean) if spec.atari_name else None
            ),
            "max_episode_frames": config.env.max_episode_frames,
            "comparable": comparable,
            "comparable_reason": reason,
            "world_model_quality": quality,
            "seconds": round(time.perf_counter() - started, 1),
        }

    played = Episodes()
    try:
        play_pool(
            environments,
            policy,
            episodes,
            seed_of,
            bookkeeping=bookkeeping,
            reservoir=reservoir,
            finished=played,
            on_episode=on_episode,
            clear_context=config.train.clear_context_on_episode_end,
        )
    except KeyboardInterrupt:
        path = None
        if len(played):
            path = _partial_path(out)
            _write(path, result(played, None, partial=True))
        raise EvaluationInterrupted(len(played), episodes, path) from None
    finally:
        for environment in environments:
            environment.close()
    quality = None
    if reservoir is not None and reservoir.windows:
        try:
            with autocast(agent.device, agent.dtype):
                quality = open_loop_errors(
                    models.world_model, **reservoir.tensors(), context=context
                )
        except KeyboardInterrupt:
            # every episode is played: keep them, without the diagnostics
            _write(out, result(played, None, partial=False))
            raise EvaluationInterrupted(
                len(played), episodes, out, during_diagnostics=True
            ) from None
        quality["source"] = "windows of these evaluation episodes (not seen in training)"
    record = result(played, quality, partial=False)
    _write(out, record)
    return record
