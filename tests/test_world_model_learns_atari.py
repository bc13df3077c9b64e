"""The paper's world model learns real Atari: frames of a random policy, on the CPU.

Real frames (storm protocol, sticky actions) are played by a uniformly random policy:
TRAINING_STEPS steps from one seed fill a replay buffer, HELD_OUT_STEPS from another are cut
into windows that training never sees. The world model of the default WorldModelConfig (the
paper's 4-stage encoder and decoder, 32 x 32 latents, 2-layer transformer, 255-bin reward
head) is trained alone, through Trainer.update_world_model, for a fixed number of updates of
a reduced batch (the paper: 16 x 64 steps at 1e-4). Errors are squared errors per frame,
summed over its 64 x 64 x 3 values in [0, 1], on the held-out frame right after each
window's 8-frame context; "moving pixels" are those that differ from the training frames'
mean frame.

Boxing, 1,000 updates of 2 x 8 steps at the paper's learning rate 1e-4:
- (a) the reconstruction (decoded posterior sample) beats drawing the training frames' mean
  frame, on all pixels and on the moving ones, and beats the held-out frames' own mean frame,
  the best any single image can do on them: the latent carries what differs between frames;
- (b) the k = 1 open-loop prediction (prior sample after the context, decoded) comes within
  15 % of the reconstruction error and beats every constant frame too: the transformer
  predicts the next latent about as well as the encoder reads it;
- (c) the reward loss falls to a tenth of its initial value and to within 1.5 times the loss
  of a head that knows only how often each reward comes.
Measured with one thread (training seeds 0 and 1): reconstruction 2417 -> 34.8 (seed 1 at
900 updates: 36.1), mean frame 43.2, repeating the last frame 20.9; moving pixels (388 a
frame) 28.4 against 42.2; k = 1 error 37.8 (x 1.09); the curves of both seeds agree within
2 %. Learning is steady from about 300 updates on; the k = 1 ratio grows slowly with
training (x 1.10 at 1,200 updates, x 1.17 at 1,900: the encoder reads more than the prior
predicts), so the budget is not "the longer the better". The test itself (two threads, 2026-11-30):
reconstruction 34.5 against 43.2 (mean frame) and 41.7 (held-out own mean frame), moving
pixels 27.9 against 42.2, k = 1 37.1 (x 1.08; the diagnostics' own draw 36.9), reward loss
5.76 -> 0.209 against 0.211 of the reward frequencies (255 nonzero rewards in training, 35
held out), in 173 s with collection and evaluation.

Pong, 800 updates of 4 x 16 steps at 1e-3, asserts (c) and that the reconstruction falls
from ~2620 to within 10 % of the mean frame's error (measured 5.45 against 5.21; 193 nonzero
rewards in the training steps, 21 held out; reward loss 5.46 -> 0.121 against 0.118 of the
reward frequencies alone). Pong, whose moving objects are a few pixels, is where the paper's
model first draws the mean frame whatever its input: within 50-100 updates every frame is
pushed to the same latent code (the decoder first learns the mean frame, a gradient common
to all frames) and the posterior saturates at unimix's 0.99 (at 400 updates the 64 held-out
frames share the same most likely code in all 32 categoricals). The way out is a matter of
chance within a CPU budget (one thread; moving-pixel error, the mean frame's is 4.87):
2 x 8 steps at 1e-4 got out at about 1,500 updates with training seed 0 (3.97 at 3,000,
reconstruction 4.61 against the mean frame's 5.21) and not by 2,900 with seed 1 (4.91);
at 5e-5, seed 1 got out at about 1,500 (3.99 at 3,000) and seed 2 not by 3,100 (4.86);
4 x 16 or 16 x 8 at 3e-4 and 4 x 16 at 1e-3 stayed at 4.92-4.99 to 600-800 updates. A
test must not hang on a seed that happens to get out, so (a) and (b) are asserted on Boxing.
Breakout behaves like Pong (2 x 8 at 1e-4: 10.7 against the mean frame's 9.4 at 800 updates,
moving pixels 9.17 against 9.22).

The figures above were measured while the ALE drew the sticky actions. Since the frame-skip
wrapper draws them (the same probability per frame, other draws: other random play), the test
measured (one thread, 2026-12-04): Boxing reconstruction 2419 -> 34.9 against 42.2 (mean
frame) and 40.5 (held-out own mean frame), moving pixels 28.0 against 41.3, k = 1 37.8
(x 1.08), reward loss 5.75 -> 0.184 against 0.177 (269 nonzero rewards in training, 28 held
out), 163 s; Pong 2609 -> 5.62 against the mean frame's 18.95 (the held-out play now spans a
game's end and the next game's start, whose score displays no single frame matches; one
window's context holds that end, so its target is left out of the k-step errors), reward loss
5.44 -> 0.114 against 0.114 (195 and 21 nonzero rewards), 323 s.
"""

import time
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from storm_wm.config import build_config
from storm_wm.diagnostics import open_loop_errors
from storm_wm.envs import make_env
from storm_wm.models.agent import build_models
from storm_wm.models.world_model import frames_to_input
from storm_wm.replay import ReplayBuffer
from storm_wm.training.trainer import Trainer

SEED = 0
TRAINING_STEPS = 8_000
HELD_OUT_STEPS = 1_024
WINDOW = 16
"""Held-out steps are cut into windows of this many steps."""
CONTEXT = 8
"""Real frames the open-loop prediction starts from."""
MOVING_PIXEL_THRESHOLD = 0.1
"""A pixel moves if its three values differ from the mean frame's by more than this, summed."""


@dataclass(frozen=True)
class Schedule:
    game: str
    updates: int
    batch: int
    sequence: int
    learning_rate: float


BOXING = Schedule("Boxing", updates=1_000, batch=2, sequence=8, learning_rate=1e-4)
PONG = Schedule("Pong", updates=800, batch=4, sequence=16, learning_rate=1e-3)
ONE_STEP_TOLERANCE = 1.15
MIN_TRAINING_REWARDS = 100
MIN_HELD_OUT_REWARDS = 10
MEAN_FRAME_TOLERANCE = 1.1
REWARD_LOSS_FALL = 10.0
REWARD_FREQUENCY_TOLERANCE = 1.5


def play_randomly(game: str, seed: int, steps: int) -> dict[str, np.ndarray]:
    """`steps` steps of uniformly random actions, stored as the training loop stores them:
    the frame each action was chosen on, its reward and the training end flag (episode end
    or life lost)."""
    env = make_env(game, protocol="storm", seed=seed)
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


def frame_errors(images: torch.Tensor, targets: torch.Tensor, moving: torch.Tensor):
    """Squared error per frame, summed over all values and over the moving pixels' values."""
    squared = (images - targets).square()
    return (
        float(squared.sum((-3, -2, -1)).mean()),
        float((squared * moving).sum((-3, -2, -1)).mean()),
    )


@torch.no_grad()
def held_out_figures(
    world_model, held_out: dict[str, torch.Tensor], moving: torch.Tensor
) -> dict[str, float]:
    """Per-frame squared errors on the frames right after each window's context (all pixels,
    and the moving ones), and the reward loss over every held-out step; eval mode."""
    frames = held_out["frames"]
    targets = frames_to_input(frames[:, CONTEXT])
    windows = len(frames)
    posterior = world_model.encode(frames[:, CONTEXT, None], world_model.latent_noise(windows, 1))
    decoded = world_model.decode(posterior)[:, 0]
    reconstruction, reconstruction_moving = frame_errors(decoded.clamp(0.0, 1.0), targets, moving)
    latent, _, _ = world_model.start_from_context(
        frames[:, :CONTEXT],
        held_out["actions"][:, :CONTEXT],
        world_model.latent_noise(windows, CONTEXT),
        world_model.latent_noise(windows),
    )
    predicted = world_model.decode(latent[:, None])[:, 0].float().clamp(0.0, 1.0)
    open_loop, open_loop_moving = frame_errors(predicted, targets, moving)
    # The k = 1 error as the diagnostics report it (its own prior draw), beside the above.
    k1 = open_loop_errors(world_model, **held_out, context=CONTEXT, horizons=(1,))["horizons"][0]
    # Every window counts but one whose context holds an episode's end (the target is then in
    # another episode).
    assert k1["frame_windows"] == int((~held_out["terminations"][:, :CONTEXT].any(1)).sum())
    _, metrics = world_model.loss(**held_out)
    return {
        "reconstruction": reconstruction,
        "reconstruction_moving": reconstruction_moving,
        "open_loop_k1": open_loop,
        "open_loop_k1_moving": open_loop_moving,
        "open_loop_k1_diagnostics": k1["frame_mse"] * targets[0].numel(),
        "repeat_last": k1["frame_mse_repeat_last"] * targets[0].numel(),
        "reward_loss": float(metrics["reward_loss"]),
    }


def learn(schedule: Schedule) -> dict:
    """Trains the paper's world model alone on random play of `schedule.game` and returns its
    held-out figures before and after, beside the baselines."""
    started = time.monotonic()
    training = play_randomly(schedule.game, SEED, TRAINING_STEPS)
    held_out = windows(play_randomly(schedule.game, SEED + 1, HELD_OUT_STEPS))
    config = build_config(
        "atari100k",
        {
            "env.game": schedule.game,
            "seed": SEED,
            "device": "cpu",
            "precision": "fp32",
            "world_model.batch_size": schedule.batch,
            "world_model.sequence_length": schedule.sequence,
            "world_model.learning_rate": schedule.learning_rate,
        },
    )
    replay = ReplayBuffer(TRAINING_STEPS, training["frames"].shape[1:])
    replay.extend(
        training["frames"], training["actions"], training["rewards"], training["terminations"]
    )
    torch.manual_seed(SEED)
    device = torch.device("cpu")
    models = build_models(config, training["num_actions"], device)
    trainer = Trainer(models, config, device, torch.float32)
    mean_frame = frames_to_input(torch.from_numpy(training["frames"])).mean(0)
    targets = frames_to_input(held_out["frames"][:, CONTEXT])
    difference = (targets - mean_frame).abs().sum(-3, keepdim=True)
    moving = (difference > MOVING_PIXEL_THRESHOLD).float().expand_as(targets)
    initial = held_out_figures(models.world_model, held_out, moving)
    rng = np.random.default_rng(SEED)
    for _ in range(schedule.updates):
        metrics = trainer.update_world_model(replay, rng)
        assert float(metrics["world_model/nonfinite"]) == 0.0
    final = held_out_figures(models.world_model, held_out, moving)
    mean_frame_error, mean_frame_moving = frame_errors(mean_frame, targets, moving)
    own_mean_error, _ = frame_errors(targets.mean(0), targets, moving)
    # The reward loss of a head that knows only how often each reward comes: the training
    # rewards' mean two-hot distribution, scored on every held-out step.
    twohot = models.world_model.reward_twohot
    frequencies = twohot.encode(torch.from_numpy(training["rewards"])).mean(0)
    held_out_targets = twohot.encode(held_out["rewards"].flatten())
    frequency_loss = float(-(held_out_targets * frequencies.clamp_min(1e-6).log()).sum(-1).mean())
    figures = {
        "initial": initial,
        "final": final,
        "mean_frame": mean_frame_error,
        "mean_frame_moving": mean_frame_moving,
        "held_out_own_mean_frame": own_mean_error,
        "moving_pixels_per_frame": float(moving[:, 0].sum((-2, -1)).mean()),
        "reward_frequency_loss": frequency_loss,
        "training_rewards": int(np.count_nonzero(training["rewards"])),
        "held_out_rewards": int(np.count_nonzero(held_out["rewards"])),
    }
    seconds = time.monotonic() - started
    print(f"{schedule.game}: {schedule.updates} updates in {seconds:.0f} s: {figures}")
    return figures


@pytest.fixture(scope="module")
def boxing():
    return learn(BOXING)


@pytest.fixture(scope="module")
def pong():
    return learn(PONG)


def assert_reward_loss_falls(learned: dict) -> None:
    assert learned["training_rewards"] >= MIN_TRAINING_REWARDS, learned
    assert learned["held_out_rewards"] >= MIN_HELD_OUT_REWARDS, learned
    initial, final = learned["initial"]["reward_loss"], learned["final"]["reward_loss"]
    assert final < initial / REWARD_LOSS_FALL, learned
    assert final < REWARD_FREQUENCY_TOLERANCE * learned["reward_frequency_loss"], learned


@pytest.mark.slow
def test_boxing_reconstruction_beats_every_constant_frame(boxing):
    initial, final = boxing["initial"], boxing["final"]
    assert final["reconstruction"] < initial["reconstruction"] / 10, boxing
    assert final["reconstruction"] < boxing["mean_frame"], boxing
    assert final["reconstruction_moving"] < boxing["mean_frame_moving"], boxing
    assert final["reconstruction"] < boxing["held_out_own_mean_frame"], boxing


@pytest.mark.slow
def test_boxing_one_step_prediction_comes_close_to_reconstruction(boxing):
    final = boxing["final"]
    assert final["open_loop_k1"] < ONE_STEP_TOLERANCE * final["reconstruction"], boxing
    assert final["open_loop_k1_diagnostics"] < ONE_STEP_TOLERANCE * final["reconstruction"], boxing
    assert final["open_loop_k1"] < boxing["held_out_own_mean_frame"], boxing


@pytest.mark.slow
def test_boxing_reward_loss_falls(boxing):
    assert_reward_loss_falls(boxing)


@pytest.mark.slow
def test_pong_reconstruction_falls_to_the_mean_frame_level(pong):
    initial, final = pong["initial"]["reconstruction"], pong["final"]["reconstruction"]
    assert final < initial / 100, pong
    assert final < MEAN_FRAME_TOLERANCE * pong["mean_frame"], pong


@pytest.mark.slow
def test_pong_reward_loss_falls_on_data_with_rewards(pong):
    assert_reward_loss_falls(pong)
