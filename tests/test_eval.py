"""`storm-wm eval`: whole episodes in parallel, final rewards counted, world-model figures."""

import json
import os
import signal
import subprocess
import sys

import gymnasium
import numpy as np
import pytest
import torch

from storm_wm import evaluation
from storm_wm.acting import Policy
from storm_wm.cli import main
from storm_wm.config import build_config
from storm_wm.diagnostics import WindowReservoir
from storm_wm.envs import make_env, resolve_game
from storm_wm.evaluation import (
    RELEASED_ENVS,
    comparability,
    evaluation_seeds,
    play_pool,
)
from storm_wm.models.agent import build_models
from storm_wm.sweep.execute import run_is_finished

pytestmark = pytest.mark.usefixtures("one_thread")


def play_episodes(envs, policy, seed, reservoir=None):
    """One whole episode in each env at once (env i reset with seed + i): (returns, lengths)."""
    played = play_pool(envs, policy, len(envs), lambda k: seed + k, reservoir=reservoir)
    order = np.argsort(np.asarray(played.seeds), kind="stable")
    return np.asarray(played.returns)[order], np.asarray(played.lengths)[order]


class PerfectPlayer:
    """Acts like `Policy` but plays toy:catch perfectly, so every episode returns exactly 1."""

    def __init__(self, envs):
        self.envs = envs

    def act(self, frames):
        return np.array([env.unwrapped.optimal_action() for env in self.envs])

    def reset(self, index):
        pass


def test_returns_include_the_final_step_reward():
    envs = [make_env("toy:catch") for _ in range(3)]
    returns, lengths = play_episodes(envs, PerfectPlayer(envs), seed=0)
    # toy:catch pays its only reward, 1.0 for a catch, on the last of its 7 steps.
    assert returns.tolist() == [1.0, 1.0, 1.0]
    assert lengths.tolist() == [7, 7, 7]


def test_the_policy_context_holds_each_step_frame_not_copies_of_the_last():
    config = build_config("debug", {"env.game": "toy:catch"})
    models = build_models(config, 3, torch.device("cpu"))
    envs = [make_env("toy:catch") for _ in range(2)]
    policy = Policy(models, config.train, 2, np.random.default_rng(0), dtype=torch.float32)
    reservoir = WindowReservoir(100, 19, 4, 2, np.random.default_rng(0))
    play_episodes(envs, policy, seed=0, reservoir=reservoir)
    for context in policy.frames:
        # The ball falls one row per step: the 7 frames acted on are all different.
        assert len(context) == 7
        assert len({frame.tobytes() for frame in context}) == 7
    # Windows starting at steps 0..3 of each 7-step episode have a full 4-frame context.
    assert reservoir.offered == 2 * 4


def test_eval_command_writes_protocol_policy_checkpoint_and_k_step_figures(
    tmp_path, capsys, make_run_dir
):
    run_dir = make_run_dir(tmp_path / "run", step=100)
    make_run_dir(run_dir, step=200)  # a newer checkpoint that --checkpoint 100 must skip
    arguments = ["eval", str(run_dir), "--episodes", "3", "--protocol", "standard", "--greedy"]
    assert main([*arguments, "--checkpoint", "100", "--diagnostic-windows", "5"]) == 0
    result = json.loads((run_dir / "eval.json").read_text())
    assert (result["protocol"], result["policy"], result["step"]) == ("standard", "greedy", 100)
    assert result["episodes"] == 3 and len(result["returns"]) == 3
    assert result["lengths"] == [7, 7, 7]
    assert result["mean"] == pytest.approx(np.mean(result["returns"]))
    quality = result["world_model_quality"]
    assert quality["context"] == 4 and quality["windows"] == 5
    assert [record["k"] for record in quality["horizons"]] == [1, 5, 15]
    one_step = quality["horizons"][0]
    assert one_step["frame_windows"] > 0 and 0 <= one_step["frame_mse"] <= 1
    # toy:catch episodes are 7 steps: 4 context frames leave no room for a 5-step prediction.
    assert quality["horizons"][1]["frame_windows"] == 0
    assert "world model, open loop after 4 real frames" in capsys.readouterr().out


def test_eval_defaults_to_the_run_protocol_sampled_actions_and_newest_checkpoint(
    tmp_path, make_run_dir
):
    run_dir = make_run_dir(tmp_path / "run", step=100)
    make_run_dir(run_dir, step=200)
    assert main(["eval", str(run_dir), "--episodes", "2", "--diagnostic-windows", "0"]) == 0
    result = json.loads((run_dir / "eval.json").read_text())
    assert (result["protocol"], result["policy"], result["step"]) == ("storm", "sampled", 200)
    assert result["world_model_quality"] is None


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--checkpoint", "7"], "has no checkpoint at step 7; available: 100"),
        (["--episodes", "0"], "--episodes must be positive"),
    ],
)
def test_eval_errors_are_one_line_with_what_to_do(
    tmp_path, capsys, arguments, message, make_run_dir
):
    run_dir = make_run_dir(tmp_path / "run")
    assert main(["eval", str(run_dir), *arguments]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error


class PerfectPong(gymnasium.Env):
    """Pong as a perfect agent plays it: a point (+1) every 3rd step, 21-0 after 63 steps."""

    observation_space = gymnasium.spaces.Box(0, 255, (4, 4, 3), np.uint8)
    action_space = gymnasium.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.steps = 0
        return np.zeros((4, 4, 3), np.uint8), {}

    def step(self, action):
        self.steps += 1
        point = self.steps % 3 == 0
        return np.zeros((4, 4, 3), np.uint8), float(point), self.steps == 63, False, {}


class AnyAction:
    """A policy stub: every action wins in PerfectPong."""

    def act(self, frames):
        return np.zeros(len(frames), dtype=np.int64)

    def reset(self, index):
        pass


def test_released_bookkeeping_reads_20_75_on_a_perfect_pong_agent():
    envs = [PerfectPong() for _ in range(RELEASED_ENVS)]
    whole = play_pool(envs, AnyAction(), 20, lambda k: k, bookkeeping="whole")
    assert list(whole.returns) == [21.0] * 20
    released = play_pool(envs, AnyAction(), 20, lambda k: k, bookkeeping="released")
    # Each env's first episode loses its last point (20); the next ones also get the previous
    # episode's last point (1 + 20). 5 x 20 + 15 x 21 = 415 over 20 episodes.
    assert list(released.returns) == [20.0] * 5 + [21.0] * 15
    assert np.mean(released.returns) == 20.75
    assert list(released.lengths) == [63] * 20


def test_the_pool_caps_the_environments_and_counts_every_episode():
    envs = [make_env("toy:catch") for _ in range(3)]
    played = play_pool(envs, PerfectPlayer(envs), 50, lambda k: 1000 + k)
    assert len(played) == 50
    assert list(played.returns) == [1.0] * 50 and list(played.lengths) == [7] * 50
    assert sorted(played.seeds) == list(range(1000, 1050))  # each episode started once


def test_released_bookkeeping_keeps_the_first_episodes_to_finish():
    envs = [make_env("toy:catch") for _ in range(5)]
    played = play_pool(envs, PerfectPlayer(envs), 2, lambda k: k, bookkeeping="released")
    # 5 episodes end together; the first two (env order) are kept, each without its final +1.
    assert list(played.returns) == [0.0, 0.0] and list(played.seeds) == [0, 1]


def counting_make_env(monkeypatch):
    built = []

    def make(*args, **kwargs):
        built.append(args)
        return make_env(*args, **kwargs)

    monkeypatch.setattr(evaluation, "make_env", make)
    return built


def test_eval_command_plays_many_episodes_on_a_capped_pool(
    make_run_dir, tmp_path, monkeypatch, capsys
):
    run_dir = make_run_dir(tmp_path / "run")
    built = counting_make_env(monkeypatch)
    arguments = ["eval", str(run_dir), "--diagnostic-windows", "0", "--no-progress"]
    assert main([*arguments, "--episodes", "60", "--envs", "4"]) == 0
    result = json.loads((run_dir / "eval.json").read_text())
    assert len(built) == 4
    assert (result["episodes"], result["envs"], len(result["returns"])) == (60, 4, 60)
    assert len(set(result["eval_seeds"])) == 60
    built.clear()
    assert main([*arguments, "--episodes", "40"]) == 0  # default: at most 16 environments
    assert len(built) == 16 and json.loads((run_dir / "eval.json").read_text())["episodes"] == 40


def test_evaluation_seeds_come_from_the_run_seed_unless_given(make_run_dir, tmp_path):
    seeds = {}
    for run_seed in (1, 2):
        run_dir = make_run_dir(tmp_path / f"run{run_seed}", seed=run_seed)
        arguments = ["eval", str(run_dir), "--episodes", "3", "--diagnostic-windows", "0"]
        assert main(arguments) == 0
        seeds[run_seed] = json.loads((run_dir / "eval.json").read_text())["eval_seeds"]
        assert main(arguments) == 0  # the same run evaluates on the same seeds
        assert json.loads((run_dir / "eval.json").read_text())["eval_seeds"] == seeds[run_seed]
    assert not set(seeds[1]) & set(seeds[2])
    assert seeds[1] == [evaluation_seeds(1)(k) for k in range(3)]
    assert main([*arguments, "--seed", "5"]) == 0
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["eval_seeds"] == [5, 6, 7] and result["eval_seed_source"] == "--seed 5"


def test_bookkeeping_defaults_to_the_run_config_and_is_recorded(make_run_dir, tmp_path):
    run_dir = make_run_dir(tmp_path / "run", **{"train.eval_bookkeeping": "released"})
    arguments = ["eval", str(run_dir), "--episodes", "2", "--diagnostic-windows", "0"]
    assert main(arguments) == 0
    result = json.loads((run_dir / "eval.json").read_text())
    assert (result["bookkeeping"], result["envs"], result["episodes"]) == ("released", 5, 2)
    assert main([*arguments, "--bookkeeping", "whole"]) == 0
    result = json.loads((run_dir / "eval.json").read_text())
    assert (result["bookkeeping"], result["envs"]) == ("whole", 2)


def test_episodes_capped_below_the_benchmark_are_marked_not_comparable(make_run_dir, tmp_path):
    pong = resolve_game("Pong")
    assert comparability(pong, build_config("atari100k", {})) == (True, None)
    comparable, reason = comparability(pong, build_config("debug", {}))
    assert not comparable and "capped at 800 frames" in reason and "108,000" in reason
    run_dir = make_run_dir(tmp_path / "run")  # toy:catch: nothing published to compare with
    assert main(["eval", str(run_dir), "--episodes", "1", "--diagnostic-windows", "0"]) == 0
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["comparable"] is False and "not an Atari game" in result["comparable_reason"]
    assert result["max_episode_frames"] == 800 and result["preset"] == "debug"


def test_eval_writes_to_out_and_refuses_an_unwritable_place_before_playing(
    make_run_dir, tmp_path, monkeypatch, capsys
):
    run_dir = make_run_dir(tmp_path / "run")
    out = tmp_path / "elsewhere.json"
    arguments = ["eval", str(run_dir), "--episodes", "1", "--diagnostic-windows", "0"]
    assert main([*arguments, "--out", str(out)]) == 0
    assert json.loads(out.read_text())["episodes"] == 1 and not (run_dir / "eval.json").exists()
    capsys.readouterr()
    built = counting_make_env(monkeypatch)
    for place in ("/proc/eval.json", str(tmp_path / "missing" / "eval.json")):
        assert main([*arguments, "--out", place]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and f"cannot write {place}" in error and "--out" in error
    assert built == []  # refused before a single environment was made


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_eval_on_a_read_only_run_directory_names_it_and_out(make_run_dir, tmp_path, capsys):
    run_dir = make_run_dir(tmp_path / "run")
    run_dir.chmod(0o555)
    try:
        assert main(["eval", str(run_dir), "--episodes", "1"]) == 2
    finally:
        run_dir.chmod(0o755)
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(run_dir / "eval.json") in error and "--out" in error


class InterruptingPolicy(Policy):
    """Ctrl-C on the 10th action: with 2 envs, the 2 first 7-step episodes have finished."""

    calls = 0

    def act(self, frames):
        InterruptingPolicy.calls += 1
        if InterruptingPolicy.calls == 10:
            raise KeyboardInterrupt
        return super().act(frames)


def test_ctrl_c_writes_the_finished_episodes_marked_partial(
    make_run_dir, tmp_path, monkeypatch, capsys
):
    run_dir = make_run_dir(tmp_path / "run")
    monkeypatch.setattr(evaluation, "Policy", InterruptingPolicy)
    arguments = ["eval", str(run_dir), "--episodes", "10", "--envs", "2", "--no-progress"]
    assert main(arguments) == 130
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "interrupted; wrote the 2 of 10 episodes that had finished" in error
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["partial"] is True
    assert (result["episodes"], result["episodes_requested"], len(result["returns"])) == (2, 10, 2)
    assert not run_is_finished(run_dir)  # a sweep evaluates it again
    # A complete evaluation is never replaced by a partial one.
    complete = {**result, "partial": False}
    (run_dir / "eval.json").write_text(json.dumps(complete))
    InterruptingPolicy.calls = 0
    assert main(arguments) == 130
    assert str(run_dir / "eval.partial.json") in capsys.readouterr().err
    assert json.loads((run_dir / "eval.json").read_text()) == complete
    assert json.loads((run_dir / "eval.partial.json").read_text())["partial"] is True


def test_eval_shows_progress_and_sigint_keeps_the_finished_episodes(make_run_dir, tmp_path):
    run_dir = make_run_dir(tmp_path / "run")
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "storm_wm.cli", "eval", str(run_dir), "--episodes"]
    # Started with SIGINT ignored, as a background job of a script (CI) starts it: eval
    # must still stop on Ctrl-C.
    process = subprocess.Popen(
        [*command, "1000000", "--envs", "2", "--diagnostic-windows", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    first = ""
    for _ in range(50):  # past any library warning, to the first progress line
        first = process.stderr.readline()
        if first.startswith("eval: ") or not first:
            break
    assert first.startswith("eval: 1/1000000 episodes, mean return so far ")
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 130
    assert rest.count("\n") == 1 and "storm-wm eval: interrupted; wrote the " in rest
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["partial"] is True and result["episodes"] >= 1
    assert result["episodes"] == len(result["returns"]) == len(result["eval_seeds"])


def test_ctrl_c_during_the_diagnostics_keeps_every_played_episode(
    make_run_dir, tmp_path, monkeypatch, capsys
):
    run_dir = make_run_dir(tmp_path / "run")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluation, "open_loop_errors", interrupted)
    assert main(["eval", str(run_dir), "--episodes", "3", "--no-progress"]) == 130
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "all 3 episodes were played and written to" in error
    result = json.loads((run_dir / "eval.json").read_text())
    assert (result["partial"], result["episodes"], result["world_model_quality"]) == (
        False,
        3,
        None,
    )
