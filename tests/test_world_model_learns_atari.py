"""The paper's world model learns real Atari: Pong frames of a random policy, on the CPU.

Real frames of Pong (storm protocol, sticky actions) are played by a uniformly random policy:
TRAINING_STEPS steps from one seed fill a replay buffer, HELD_OUT_STEPS from another are cut
into windows that training never sees. The world model of the default WorldModelConfig (the
paper's 4-stage encoder and decoder, 32 x 32 latents, 2-layer transformer, 255-bin reward
head) is trained alone, through Trainer.update_world_model, for UPDATES updates of BATCH
windows of SEQUENCE steps at LEARNING_RATE (the paper: 16 x 64 steps at 1e-4), sized to fit
a few minutes of a 2-core CPU. On the held-out frames (errors are squared errors summed over
a frame's 64 x 64 x 3 values in [0, 1]):

- the reconstruction error (decoded posterior sample against the frame) falls from the
  untrained model's ~2620 to within 10 % of the error of drawing the training frames' mean
  frame: the model has learned the scene;
- the reward loss falls to a tenth of its initial value and to within 1.5 times the loss of
  a head that knows only how often each reward comes. The data hold enough rewards for this
  to be a fact about rewards: a random player loses a Pong point about every 40 steps (193
  nonzero rewards in the 8,000 training steps, 21 in the 1,024 held-out ones), and a head
  sure of "0" everywhere would pay dearly on those steps.

Measured (one thread, seeds as below, 800 updates; the same at lr 2e-3 in brackets):
reconstruction 2624 -> 5.45 (5.43), mean frame 5.21, repeating the last frame 3.74;
k = 1 open-loop error 5.46 (5.43); reward loss 5.46 -> 0.121 (0.127), reward frequencies
alone 0.118. The test took 514 s on one idle core, collection and evaluation included.

What this budget does not reach: the model does not yet cross the mean-frame error, and its
k = 1 open-loop error equals its reconstruction error because both decode to about the mean
frame whatever the latent (Boxing, whose boxers are large, showed the same at 800 updates
and lr 2e-3: 43.9 against a mean frame of 43.2). Why: within the first 50-100 updates every
frame is pushed to the same latent code (the decoder first learns the mean frame, a gradient
common to all frames) and the posterior saturates at unimix's 0.99: at 400 updates the 64
held-out frames measured share the same most likely code in all 32 categoricals. The way out
is slow and a matter of chance. Measured (one thread, same data, errors on the ~95 pixels a frame
that differ from the mean frame, whose own error there is 4.87): 4 x 16 and 16 x 8 windows
at 3e-4 give the same curve per update (the batch hardly matters) and sit at 4.92-4.99 to
600 updates; 2 x 8 at 3e-4 to 1,600. 2 x 8 at the paper's 1e-4 with training seed 0 gets out
at about 1,500 updates (4.92 at 1,400, 4.61 at 1,500, 3.97 at 3,000, when the whole frame's
reconstruction error is 4.61 against the training mean frame's 5.21 and the held-out frames'
own 5.06, and the k = 1 error 4.70, within 2 %); with
training seed 1 it was still at 4.91 after 2,900 updates. A test that asserts the crossing
needs a schedule that gets out reliably, not a seed that happens to: not found yet.
"""

import time

import numpy as np
import pytest
import torch

from storm_wm.config import build_config
from storm_wm.diagnostics import open_loop_errors
from storm_wm.envs import make_env
from storm_wm.models.world_model import frames_to_input
from storm_wm.replay import ReplayBuffer
from storm_wm.training.trainer import Trainer, build_models

GAME = "Pong"
SEED = 0
TRAINING_STEPS = 8_000
HELD_OUT_STEPS = 1_024
WINDOW = 16
"""Held-out steps are cut into windows of this many steps."""
CONTEXT = 8
"""Real frames the open-loop prediction starts from."""
UPDATES = 800
BATCH = 4
SEQUENCE = 16
LEARNING_RATE = 1e-3
MIN_TRAINING_REWARDS = 100
MIN_HELD_OUT_REWARDS = 10
MEAN_FRAME_TOLERANCE = 1.1
REWARD_LOSS_FALL = 10.0
REWARD_FREQUENCY_TOLERANCE = 1.5


def play_randomly(seed: int, steps: int) -> dict[str, np.ndarray]:
    """`steps` steps of uniformly random actions, stored as the training loop stores them:
    the frame each action was chosen on, its reward and the training end flag (episode end
    or life lost)."""
    env = make_env(GAME, protocol="storm", seed=seed)
    rng = np.random.default_rng(seed)
    frame, _ = env.reset()
    frames, actions, rewards, ends = [], [], [], []
    for _ in range(steps):
        action = int(rng.integers(env.action_space.n))
        next_frame, reward, terminated, truncated, info = env.step(action)
        frames.append(frame)
        actions.append(action)
        rewards.append(float(reward))
        ends.append(bool(terminated or info["life_loss"]))
        frame = env.reset()[0] if terminated or truncated else next_frame
    env.close()
    return {
        "frames": np.stack(frames),
        "actions": np.array(actions, dtype=np.int64),
        "rewards": np.array(rewards, dtype=np.float32),
        "terminations": np.array(ends, dtype=bool),
        "num_actions": env.action_space.n,
    }


def windows(steps: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    count = len(steps["frames"]) // WINDOW
    names = ("frames", "actions", "rewards", "terminations")
    return {
        name: torch.from_numpy(steps[name][: count * WINDOW]).unflatten(0, (count, WINDOW))
        for name in names
    }


@torch.no_grad()
def held_out_figures(world_model, held_out: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per-frame squared errors on the frames right after each window's context, and the
    reward loss over every held-out step; the world model stays in eval mode."""
    frames = held_out["frames"]
    targets = frames_to_input(frames[:, CONTEXT])
    decoded = world_model.decode(world_model.encode(frames[:, CONTEXT, None]))[:, 0]
    reconstruction = (decoded.clamp(0.0, 1.0) - targets).square().sum((-3, -2, -1)).mean()
    open_loop = open_loop_errors(world_model, **held_out, context=CONTEXT, horizons=(1,))
    k1 = open_loop["horizons"][0]
    assert k1["frame_windows"] == len(frames)
    _, metrics = world_model.loss(**held_out)
    pixels = targets[0].numel()
    return {
        "reconstruction": float(reconstruction),
        "open_loop_k1": k1["frame_mse"] * pixels,
        "repeat_last": k1["frame_mse_repeat_last"] * pixels,
        "reward_loss": float(metrics["reward_loss"]),
    }


@pytest.fixture(scope="module")
def learned():
    started = time.monotonic()
    training = play_randomly(SEED, TRAINING_STEPS)
    held_out_steps = play_randomly(SEED + 1, HELD_OUT_STEPS)
    held_out = windows(held_out_steps)
    config = build_config("atari100k", {
        "env.game": GAME, "seed": SEED, "device": "cpu", "precision": "fp32",
        "world_model.batch_size": BATCH, "world_model.sequence_length": SEQUENCE,
        "world_model.learning_rate": LEARNING_RATE,
    })  # fmt: skip
    replay = ReplayBuffer(TRAINING_STEPS, training["frames"].shape[1:])
    replay.extend(
        training["frames"], training["actions"], training["rewards"], training["terminations"]
    )
    torch.manual_seed(SEED)
    device = torch.device("cpu")
    models = build_models(config, training["num_actions"], device)
    trainer = Trainer(models, config, device, torch.float32)
    initial = held_out_figures(models.world_model, held_out)
    rng = np.random.default_rng(SEED)
    for _ in range(UPDATES):
        metrics = trainer.update_world_model(replay, rng)
        assert float(metrics["world_model/nonfinite"]) == 0.0
    final = held_out_figures(models.world_model, held_out)
    mean_frame = frames_to_input(torch.from_numpy(training["frames"])).mean(0)
    targets = frames_to_input(held_out["frames"][:, CONTEXT])
    mean_frame_error = float((mean_frame - targets).square().sum((-3, -2, -1)).mean())
    # The reward loss of a head that knows only how often each reward comes: the training
    # rewards' mean two-hot distribution, scored on every held-out step.
    twohot = models.world_model.reward_twohot
    frequencies = twohot.encode(torch.from_numpy(training["rewards"])).mean(0)
    held_out_targets = twohot.encode(held_out["rewards"].flatten())
    frequency_loss = float(-(held_out_targets * frequencies.clamp_min(1e-6).log()).sum(-1).mean())
    figures = {
        "initial": initial, "final": final, "mean_frame": mean_frame_error,
        "reward_frequency_loss": frequency_loss,
        "training_rewards": int(np.count_nonzero(training["rewards"])),
        "held_out_rewards": int(np.count_nonzero(held_out["rewards"])),
    }  # fmt: skip
    print(f"{GAME}: {UPDATES} updates in {time.monotonic() - started:.0f} s: {figures}")
    return figures


@pytest.mark.slow
def test_reconstruction_falls_to_the_mean_frame_level(learned):
    initial, final = learned["initial"]["reconstruction"], learned["final"]["reconstruction"]
    assert final < initial / 100, learned
    assert final < MEAN_FRAME_TOLERANCE * learned["mean_frame"], learned


@pytest.mark.slow
def test_reward_loss_falls_on_data_with_rewards(learned):
    assert learned["training_rewards"] >= MIN_TRAINING_REWARDS, learned
    assert learned["held_out_rewards"] >= MIN_HELD_OUT_REWARDS, learned
    initial, final = learned["initial"]["reward_loss"], learned["final"]["reward_loss"]
    assert final < initial / REWARD_LOSS_FALL, learned
    assert final < REWARD_FREQUENCY_TOLERANCE * learned["reward_frequency_loss"], learned
