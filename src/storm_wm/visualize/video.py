"""Writing composed frames as MP4 or GIF files, and as animated images in TensorBoard."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from storm_wm.errors import StormError
from storm_wm.extras import require

if TYPE_CHECKING:
    from storm_wm.logs.events import EventWriter

VIDEO_SUFFIXES = (".mp4", ".gif")


def check_video_path(path: Path) -> None:
    """Fails before any work is done when the file type is one we cannot write, or an MP4
    when the video extra (imageio and its ffmpeg) is not installed."""
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise StormError(
            f"cannot write {path.name!r}: --out must end in {' or '.join(VIDEO_SUFFIXES)}"
        )
    if path.suffix.lower() == ".mp4":
        for module in ("imageio", "imageio_ffmpeg"):
            require(module, f"writing {path.name!r}")


def gif_bytes(frames: np.ndarray, fps: float) -> bytes:
    """(T, H, W, 3) uint8 -> an animated GIF that loops forever."""
    # Fast octree palettes without dithering: several times faster than Pillow's default median
    # cut and smaller files, and exact for the few flat colours of game frames and text.
    images = [
        Image.fromarray(frame).quantize(method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
        for frame in frames
    ]
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=max(20, round(1000 / fps)),
        loop=0,
    )
    return buffer.getvalue()


def write_video(path: Path, frames: np.ndarray, fps: float) -> None:
    """(T, H, W, 3) uint8 frames -> `path` (.mp4 with H.264 through imageio-ffmpeg, or .gif)."""
    check_video_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        path.write_bytes(gif_bytes(frames, fps))
        return
    imageio = require("imageio.v2", f"writing {path.name!r}")
    # Frames are composed at multiples of 16 pixels, so the encoder never has to resize them.
    with imageio.get_writer(
        path, format="FFMPEG", fps=fps, codec="libx264", quality=8, macro_block_size=16
    ) as writer:
        for frame in frames:
            writer.append_data(frame)


def add_video(
    writer: EventWriter, tag: str, frames: np.ndarray, step: int, fps: float = 4.0
) -> None:
    """Logs frames to TensorBoard as an animated GIF, what `SummaryWriter.add_video` writes.

    tensorboardX's own `add_video` encodes through moviepy and, without it, logs an error and
    writes an empty image; this builds the same summary (an image whose bytes are a GIF, shown
    animated under TensorBoard's Images tab) with Pillow alone.
    """
    from tensorboardX.proto.summary_pb2 import Summary

    height, width = frames.shape[1:3]
    image = Summary.Image(
        height=height, width=width, colorspace=3, encoded_image_string=gif_bytes(frames, fps)
    )
    summary = Summary(value=[Summary.Value(tag=tag, image=image)])
    writer.add_summary(summary, step)
