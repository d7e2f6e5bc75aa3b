"""Pre-training objectives (paper §3.2): one module each, holding its collate, head and loss.

`OBJECTIVES` maps the names used in run configs (``mix:`` ratios and per-objective sections) to
``(config class, objective class)``: the registry entry. `hero.train.pretrain.PretrainConfig` reads
its objective sections off it (section ``name`` with ``-`` as ``_``, of the entry's config class),
so an objective is one module and one entry here. An objective is built as ``cls(config, tokens)`` and called as
``objective(model, batch, step=...)``; ``objective.collate(clips, randomness)`` builds its batches.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from hero.objectives.fom import FomBatch, FomConfig, FomObjective
from hero.objectives.mfm import MffrConfig, MfmBatch, MfmConfig, MfmObjective
from hero.objectives.mlm import MlmBatch, MlmConfig, MlmObjective
from hero.objectives.model import HeroForPretraining
from hero.objectives.vsm import VsmBatch, VsmConfig, VsmObjective


@runtime_checkable
class Objective(Protocol):
    """A pre-training objective: ``cls(config, tokens)``, then ``collate`` per batch and a call per
    step. ``clips`` are `hero.data.batch.Clip`; every random choice of ``collate`` comes from
    ``generator``; the call returns ``{"loss": sum of the "*_loss" terms, "<name>_loss": ..., ...}``."""

    def collate(self, clips: list[Any], generator: torch.Generator | None = None) -> Any: ...

    def __call__(self, model: torch.nn.Module, batch: Any, **kwargs: Any) -> dict[str, torch.Tensor]: ...


OBJECTIVES: dict[str, tuple[type, type]] = {
    "mlm": (MlmConfig, MlmObjective),
    "mfm-nce": (MfmConfig, MfmObjective),
    "mffr": (MffrConfig, MfmObjective),
    "fom": (FomConfig, FomObjective),
    "vsm": (VsmConfig, VsmObjective),
}

__all__ = [
    "OBJECTIVES",
    "Objective",
    "HeroForPretraining",
    "MlmObjective", "MlmConfig", "MlmBatch",
    "MfmObjective", "MfmConfig", "MffrConfig", "MfmBatch",
    "FomObjective", "FomConfig", "FomBatch",
    "VsmObjective", "VsmConfig", "VsmBatch",
]
