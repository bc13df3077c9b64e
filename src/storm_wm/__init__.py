"""storm-wm: STORM, a stochastic-transformer world model agent (Zhang et al., NeurIPS 2023)."""

__version__ = "0.1.0"
