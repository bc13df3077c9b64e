"""`storm-wm eval`: whole episodes in parallel, final rewards counted, world-model figures."""

import json

import numpy as np
import pytest
import torch

from storm_wm.acting import Policy
from storm_wm.cli import main
from storm_wm.config import build_config
from storm_wm.diagnostics import WindowReservoir
from storm_wm.envs import make_env
from storm_wm.evaluation import play_episodes
from storm_wm.training.trainer import build_models

pytestmark = pytest.mark.usefixtures("one_thread")


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
    policy = Policy(
        models.world_model, models.actor_critic, 2, 3, context_length=16,
        device=torch.device("cpu"), dtype=torch.float32, rng=np.random.default_rng(0),
    )  # fmt: skip
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
