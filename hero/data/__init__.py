"""Data: clips, batching, stores and the synthetic corpus."""
