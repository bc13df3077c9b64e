"""`storm-wm bench`: how long each phase of a training step takes, how many FLOPs it does and
how close that comes to the device's matrix-product peak, measured on the real training code.

`run.run_benchmark` ties the pieces together: timing, FLOP counting and matrix-product peaks
(storm_wm.measure, shared with the start-of-run estimate), the machine and its memory
(machine.py), the phases on the real Trainer, imagination and Policy (phases.py), the
profiler's summary (profile.py), and the figures and their table (results.py). The real
training loop end to end, alone or as concurrent runs, is timed by end_to_end.py from the runs'
own metrics (run_metrics.py). The harnesses that use these on a rented machine
(tools/device_check, tools/checkpoint_cost.py) live beside the package and import it; nothing
here imports them.
"""
