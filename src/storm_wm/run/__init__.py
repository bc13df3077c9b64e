"""Composing a training run: validate, build every object, wire callbacks, run the loop."""
