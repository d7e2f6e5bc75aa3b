"""Pre-training objectives (paper §3.2): one module each, holding its collate, head and loss."""

from hero.objectives.fom import FomBatch, FomConfig, FomObjective
from hero.objectives.mfm import MfmBatch, MfmConfig, MfmObjective
from hero.objectives.mlm import MlmBatch, MlmConfig, MlmObjective
from hero.objectives.model import HeroForPretraining
from hero.objectives.vsm import VsmBatch, VsmConfig, VsmObjective

__all__ = [
    "HeroForPretraining",
    "MlmObjective", "MlmConfig", "MlmBatch",
    "MfmObjective", "MfmConfig", "MfmBatch",
    "FomObjective", "FomConfig", "FomBatch",
    "VsmObjective", "VsmConfig", "VsmBatch",
]
