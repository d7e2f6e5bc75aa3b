"""The HERO model: backbone (`Hero`), building blocks and checkpoint conversion."""

from hero.model.baselines import FlatTrm, HierarchicalTrm, build_backbone
from hero.model.checkpoint import CheckpointError, LoadReport, init_from_roberta
from hero.model.hero import CrossModalInputs, Hero, VideoInputs

__all__ = [
    "Hero", "FlatTrm", "HierarchicalTrm", "build_backbone", "VideoInputs", "CrossModalInputs",
    "LoadReport", "CheckpointError", "init_from_roberta",
]
