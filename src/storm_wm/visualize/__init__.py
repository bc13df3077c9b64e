"""Seeing the world model: aligned real, reconstructed and imagined frames, as videos."""

from storm_wm.visualize.compose import compose_dream
from storm_wm.visualize.dream import DreamRollout, dream_rollout
from storm_wm.visualize.video import add_video, check_video_path, write_video

__all__ = [
    "DreamRollout",
    "add_video",
    "check_video_path",
    "compose_dream",
    "dream_rollout",
    "write_video",
]
