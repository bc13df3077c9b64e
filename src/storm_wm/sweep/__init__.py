"""Sweeps: many ordinary runs (games x seeds), launched, tracked and resumed as one.

Each run is a `storm-wm train` then `storm-wm eval` subprocess writing its own run directory,
so a sweep adds scheduling and bookkeeping, never a second way to train. The pieces, in the
order a sweep uses them: `plan` (which runs, which commands), `state` (sweep.json), `execute`
(one run's subprocesses, on whichever machine runs it), `backends` (where runs execute),
`driver` (submit, retry, track) and `progress` (what the user sees).
"""
