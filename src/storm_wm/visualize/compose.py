"""Side-by-side video frames: real, reconstructed and imagined, with rewards written under each."""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from storm_wm.text import plural
from storm_wm.visualize.dream import DreamRollout

GAP = 4
"""Pixels between panels and around the edges."""

LINE_HEIGHT = 14
"""Pixels per line of text (the default font at size 11)."""

BACKGROUND = (24, 24, 24)
TEXT = (230, 230, 230)
HIGHLIGHT = (255, 200, 60)
"""Colour of the step-counter when the imagination is on its own (past the context)."""

COLUMNS = ("real", "reconstruction", "imagination")


@functools.cache
def font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font: no font file has to be found on the machine."""
    return ImageFont.load_default(size=11)


def round_up(value: int, multiple: int = 16) -> int:
    """Video encoders want sizes in multiples of 16 (macroblocks); padding beats resizing."""
    return -(-value // multiple) * multiple


def compose_frame(
    panels: list[np.ndarray],
    titles: list[str],
    captions: list[list[str]],
    header: str,
    scale: int = 3,
    header_color: tuple[int, int, int] = TEXT,
) -> np.ndarray:
    """Panels (H, W, 3) uint8 scaled up `scale` times, side by side, each with a title above
    and caption lines below, under one header line. Returns a (H', W', 3) uint8 image whose
    sides are multiples of 16."""
    height, width = panels[0].shape[:2]
    panel_width, panel_height = width * scale, height * scale
    caption_lines = max(len(lines) for lines in captions)
    total_width = round_up(GAP + len(panels) * (panel_width + GAP))
    top = GAP + 2 * LINE_HEIGHT
    total_height = round_up(top + panel_height + GAP + caption_lines * LINE_HEIGHT + GAP)
    canvas = Image.new("RGB", (total_width, total_height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((GAP, GAP), header, fill=header_color, font=font())
    for index, (panel, title, lines) in enumerate(zip(panels, titles, captions, strict=True)):
        left = GAP + index * (panel_width + GAP)
        image = Image.fromarray(panel).resize((panel_width, panel_height), Image.Resampling.NEAREST)
        canvas.paste(image, (left, top))
        draw.text((left, top - LINE_HEIGHT), title, fill=TEXT, font=font())
        for line_index, line in enumerate(lines):
            position = (left, top + panel_height + GAP + line_index * LINE_HEIGHT)
            draw.text(position, line, fill=TEXT, font=font())
    return np.asarray(canvas)


def action_label(action: int, action_names: list[str] | None) -> str:
    if action_names and 0 <= action < len(action_names):
        return f"{action_names[action]} ({action})"
    return str(action)


def reward_line(label: str, rewards: np.ndarray, ends: np.ndarray, step: int) -> str:
    """ "reward +1.00", with END where the episode (or a life) ends on this step."""
    return f"{label} {rewards[step]:+.2f}" + ("  END" if ends[step] else "")


def header_line(step: int, length: int, context: int) -> str:
    """`step 9/24   imagining, 1 step past the context` (or the context's length, before it)."""
    if step < context:
        phase = f"context ({plural(context, 'real frame')})"
    else:
        past = step - context + 1
        phase = f"imagining, {plural(past, 'step')} past the context"
    return f"step {step + 1}/{length}   {phase}"


def compose_dream(
    rollout: DreamRollout, scale: int = 3, action_names: list[str] | None = None
) -> np.ndarray:
    """One composed image per step of the rollout: (T, H', W', 3) uint8.

    Under the real frame: the action taken and the real reward (and END where the episode or a
    life ended); under the model's two frames: the reward (and END) each predicts for the same
    transition.
    """
    composed = []
    for step in range(len(rollout)):
        header = header_line(step, len(rollout), rollout.context)
        action = action_label(int(rollout.actions[step]), action_names)
        captions = [
            [
                reward_line("reward", rollout.real_rewards, rollout.real_terminations, step),
                f"action {action}",
            ],
            [
                reward_line(
                    "predicted",
                    rollout.reconstruction_rewards,
                    rollout.reconstruction_terminations,
                    step,
                )
            ],
            [
                reward_line(
                    "predicted", rollout.imagined_rewards, rollout.imagined_terminations, step
                )
            ],
        ]
        panels = [
            rollout.real_frames[step],
            rollout.reconstructions[step],
            rollout.imagined_frames[step],
        ]
        color = HIGHLIGHT if step >= rollout.context else TEXT
        composed.append(compose_frame(panels, list(COLUMNS), captions, header, scale, color))
    return np.stack(composed)
