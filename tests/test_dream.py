"""`storm-wm dream` videos, the rollout behind them, and dream videos in TensorBoard."""

import io
import struct
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from PIL import Image
from tensorboardX.proto.event_pb2 import Event

from storm_wm.cli import main
from storm_wm.config import build_config
from storm_wm.logs.metrics import Logger
from storm_wm.replay import ReplayBuffer
from storm_wm.visualize import compose_dream, dream_rollout
from storm_wm.visualize.training import VIDEO_LENGTH, VIDEO_TAG, log_world_model_diagnostics

CONTEXT = 4  # the debug preset's agent.context_length
FRAME_SIZE = (272, 592)  # three 192-pixel panels (scale 3) with titles and captions, in 16s


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def loud_world_model(tiny_world_model):
    """Builds (world model, config) whose frames, latents and pictures depend on each other."""

    def build(**overrides):
        model, config = tiny_world_model(**overrides)
        with torch.no_grad():
            # An untrained model has near-uniform posteriors and draws nearly the same flat
            # colour for every latent; louder weights make frames, latents and pictures depend
            # on each other.
            model.posterior_head.weight.mul_(50.0)
            model.decoder.layers[-1].weight.mul_(50.0)
        return model, config

    return build


def real_steps(length, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "frames": rng.integers(0, 256, (length, 64, 64, 3), dtype=np.uint8),
        "actions": rng.integers(0, 3, length),
        "rewards": rng.normal(size=length).astype(np.float32),
        "terminations": np.zeros(length, dtype=bool),
    }


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_dream_video_decodes_to_context_plus_steps_frames_of_the_composed_size(
    tmp_path, capsys, suffix, make_run_dir
):
    run_dir = make_run_dir(tmp_path / "run")
    out = tmp_path / f"dream{suffix}"
    # 6 imagined steps: toy:catch episodes last 7 steps, so the video crosses an episode end.
    assert main(["dream", str(run_dir), "--steps", "6", "--out", str(out)]) == 0
    if suffix == ".mp4":
        # Iterated, not list(): the reader's length is unknown (inf) until the stream ends.
        frames = [frame for frame in imageio.get_reader(out, format="FFMPEG")]
        shapes = {frame.shape for frame in frames}
    else:
        image = Image.open(out)
        frames = range(image.n_frames)
        shapes = {(image.height, image.width, 3)}
    assert len(frames) == CONTEXT + 6
    assert shapes == {(*FRAME_SIZE, 3)}
    assert f"{CONTEXT + 6} frames ({CONTEXT} context + 6 imagined" in capsys.readouterr().out


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--out", "dream.avi"], "--out must end in .mp4 or .gif"),
        (["--steps", "0"], "--steps, --scale and --fps must be positive"),
    ],
)
def test_dream_errors_are_one_line_with_what_to_do(
    tmp_path, capsys, arguments, message, make_run_dir
):
    run_dir = make_run_dir(tmp_path / "run")
    assert main(["dream", str(run_dir), *arguments]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error


def test_dream_on_a_run_without_checkpoint_says_to_train_first(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    build_config("debug", {"env.game": "toy:catch"}).save(run_dir / "config.json")
    assert main(["dream", str(run_dir)]) == 2
    assert "has no checkpoint yet; train it first" in capsys.readouterr().err


def test_rollout_imagines_from_the_context_alone_under_the_real_actions(loud_world_model):
    model, _ = loud_world_model()
    steps = real_steps(12)
    torch.manual_seed(1)
    rollout = dream_rollout(model, **steps, context=CONTEXT)
    assert len(rollout) == 12 and rollout.imagined_frames.shape == (12, 64, 64, 3)
    # In the context the imagination is the reconstruction, and predicts the same rewards.
    assert np.array_equal(rollout.imagined_frames[:CONTEXT], rollout.reconstructions[:CONTEXT])
    assert np.array_equal(
        rollout.imagined_rewards[:CONTEXT], rollout.reconstruction_rewards[:CONTEXT]
    )
    # After it, the transformer reads its own latents, not the real frames' posteriors.
    assert not np.array_equal(
        rollout.imagined_rewards[CONTEXT:], rollout.reconstruction_rewards[CONTEXT:]
    )
    # Real frames after the context change the reconstructions but not the imagination.
    changed = {**steps, "frames": steps["frames"].copy()}
    changed["frames"][CONTEXT:] = 255 - changed["frames"][CONTEXT:]
    torch.manual_seed(1)
    other = dream_rollout(model, **changed, context=CONTEXT)
    assert np.array_equal(other.imagined_frames, rollout.imagined_frames)
    assert np.array_equal(other.imagined_rewards, rollout.imagined_rewards)
    assert not np.array_equal(
        other.reconstruction_rewards[CONTEXT:], rollout.reconstruction_rewards[CONTEXT:]
    )


def test_composed_frames_write_the_rewards_under_each_panel(loud_world_model):
    model, _ = loud_world_model()
    torch.manual_seed(1)
    rollout = dream_rollout(model, **real_steps(6), context=CONTEXT)
    frames = compose_dream(rollout, scale=3)
    assert frames.shape == (6, *FRAME_SIZE, 3) and frames.dtype == np.uint8
    # The captions differ where the real reward differs.
    rollout.real_rewards[:] = 0.0
    zero = compose_dream(rollout, scale=3)[0]
    rollout.real_rewards[:] = 1.0
    one = compose_dream(rollout, scale=3)[0]
    caption_rows = slice(36 + 192, FRAME_SIZE[0])
    assert not np.array_equal(zero[caption_rows, :196], one[caption_rows, :196])
    assert np.array_equal(zero[caption_rows, 196:], one[caption_rows, 196:])


def read_events(directory: Path):
    """Every event of a TensorBoard directory, parsed from the TFRecord framing by hand:
    a little-endian uint64 length, its CRC, the serialized Event, the Event's CRC."""
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            yield Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4


def test_training_hook_puts_an_animated_dream_in_the_event_file(tmp_path, loud_world_model):
    model, config = loud_world_model(**{"train.video_every": 100, "train.diagnostics_every": 0})
    replay = ReplayBuffer(1000, (64, 64, 3))
    rng = np.random.default_rng(0)
    for _ in range(VIDEO_LENGTH + 10):
        replay.add(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), 1, 0.0, False)
    with Logger(tmp_path) as logger:
        log_world_model_diagnostics(logger, model, replay, 100, config)
    videos = [
        (event.step, value.image)
        for event in read_events(tmp_path / "tensorboard")
        for value in event.summary.value
        if value.tag == VIDEO_TAG
    ]
    assert len(videos) == 1
    step, image = videos[0]
    assert step == 100 and image.encoded_image_string.startswith(b"GIF89a")
    gif = Image.open(io.BytesIO(image.encoded_image_string))
    assert gif.n_frames == VIDEO_LENGTH
    assert (gif.height, gif.width) == (image.height, image.width)


def test_dream_refuses_an_unwritable_out_before_playing(
    make_run_dir, tmp_path, monkeypatch, capsys
):
    import storm_wm.visualize.record as record

    run_dir = make_run_dir(tmp_path / "run")

    def never(*args, **kwargs):
        raise AssertionError("the episode was played before the output was checked")

    monkeypatch.setattr(record, "make_dream_video", never)
    for place in ("/proc/dream.gif", str(tmp_path / "missing" / "dream.gif")):
        assert main(["dream", str(run_dir), "--out", place]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and f"cannot write {place}" in error and "--out" in error


def test_the_header_counts_steps_past_the_context_in_words_that_agree():
    from storm_wm.visualize.compose import header_line

    assert header_line(0, 24, 8) == "step 1/24   context (8 real frames)"
    assert header_line(8, 24, 8) == "step 9/24   imagining, 1 step past the context"
    assert header_line(9, 24, 8) == "step 10/24   imagining, 2 steps past the context"
