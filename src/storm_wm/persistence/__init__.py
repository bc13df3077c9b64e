"""Saving and restoring a run: atomic files, checksummed checkpoints, replay chunks, RNG and
environment state, and the checks that decide whether a checkpoint fits a run."""
