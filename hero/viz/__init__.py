"""Figures (matplotlib, PNG): loss curves, moment predictions, attention maps."""
