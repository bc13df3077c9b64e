"""Results analysis for `storm-wm report`.

- `scores`: published per-seed scores (package data) and human normalization;
- `stats`: aggregate metrics with stratified-bootstrap intervals (Agarwal et al. 2021);
- `runs`, `curves`: what a run directory holds, and learning curves binned over seeds;
- `report`: everything the report shows, computed once; `output` writes it as CSV tables,
  `plots` (PNG) and `markdown` (report.md).
"""
