"""Downstream tasks (paper §4): one module each."""
