"""The learning core: the trainer (optimizers, precision, clipping), the loop, metric logging."""
