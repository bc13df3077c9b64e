"""The learning core: the trainer (optimizers, precision, clipping, skipped non-finite
updates), the loop and its progress bar."""
