"""A training run: validate, build and restore its objects, run the loop with its parts."""
