"""The device check: scripts/device-check.sh's body, which measures this project on a rented
GPU within one command's time limit (see check.py). It imports the storm_wm package and is
never imported by it: it lives beside the package, not in the installed wheel."""
