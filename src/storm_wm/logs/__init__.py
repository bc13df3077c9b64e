"""What a run writes as it goes: metrics.jsonl and TensorBoard events (`metrics`, `events`),
and metrics.jsonl read back (`records`)."""
