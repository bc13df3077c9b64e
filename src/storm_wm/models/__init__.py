"""Neural networks of STORM. Models compute their own losses and return (loss, metrics);
they never own optimizers and never import environments or the trainer."""

from storm_wm.models.actor_critic import ActorCritic
from storm_wm.models.world_model import WorldModel

__all__ = ["ActorCritic", "WorldModel"]
