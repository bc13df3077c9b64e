"""`storm-wm bench`: how long each phase of a training step takes, how many FLOPs it does and
how close that comes to the device's matrix-product peak, measured on the real training code.

`run.run_benchmark` ties the pieces together: timing (timing.py), FLOP counting (flops.py),
matrix-product peaks (peak.py), the machine and its memory (machine.py), the phases on the
real Trainer, imagination and Policy (phases.py), environment speed (environment.py), the
profiler's top operators (profile.py), and the figures and their table (results.py, table.py).
The real training loop end to end, alone or as concurrent runs, is timed by end_to_end.py from
the runs' own metrics (run_metrics.py); device_check.py (with device_stages.py and
device_table.py) is scripts/device-check.sh's body.
"""
