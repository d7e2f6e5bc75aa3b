"""Pre-training objectives (paper §3.2): one module each, holding its collate, head and loss.

`OBJECTIVES` maps the names used in run configs (``mix:`` ratios and per-objective sections) to
``(config class, objective class)``. An objective is built as ``cls(config, tokens)`` and called as
``objective(model, batch, step=...)``; ``objective.collate(clips, randomness)`` builds its batches.
"""

from hero.objectives.fom import FomBatch, FomConfig, FomObjective
from hero.objectives.mfm import MffrConfig, MfmBatch, MfmConfig, MfmObjective
from hero.objectives.mlm import MlmBatch, MlmConfig, MlmObjective
from hero.objectives.model import HeroForPretraining
from hero.objectives.vsm import VsmBatch, VsmConfig, VsmObjective

OBJECTIVES = {
    "mlm": (MlmConfig, MlmObjective),
    "mfm-nce": (MfmConfig, MfmObjective),
    "mffr": (MffrConfig, MfmObjective),
    "fom": (FomConfig, FomObjective),
    "vsm": (VsmConfig, VsmObjective),
}

__all__ = [
    "OBJECTIVES",
    "HeroForPretraining",
    "MlmObjective", "MlmConfig", "MlmBatch",
    "MfmObjective", "MfmConfig", "MffrConfig", "MfmBatch",
    "FomObjective", "FomConfig", "FomBatch",
    "VsmObjective", "VsmConfig", "VsmBatch",
]
