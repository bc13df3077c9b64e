"""Measuring computation: timing on a device, FLOP counting, matrix-product peaks. Shared by
`storm-wm bench` and the start-of-run estimate (run.estimate)."""
