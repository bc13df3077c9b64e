"""The learning core: the trainer (optimizers, precision, clipping, skipped non-finite
updates) and the loop."""
