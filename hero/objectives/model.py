"""`HeroForPretraining`: the backbone plus the four pre-training heads.

Heads are composed, not inherited: ``model.hero`` is the `Hero` backbone, ``model.mlm_head``,
``model.mfm_head``, ``model.fom_head`` and ``model.vsm_head`` the heads. The objectives
(`hero.objectives`) call them: a step is ``objective(model, batch)``, and the model has no task
switch and no ``forward`` of its own. The training engine (`hero.train.engine`) wraps the model in
its own runner module, whose ``forward(fn, ...)`` calls ``fn(model, ...)``, so DDP sees every
objective's step go through one forward.
"""

from __future__ import annotations

from torch import nn

from hero.config import HeroConfig
from hero.model.baselines import build_backbone
from hero.model.checkpoint import PretrainedMixin
from hero.model.hero import REFERENCE_KEY_MAP as BACKBONE_KEY_MAP
from hero.model.layers import init_weights
from hero.objectives.fom import fom_head
from hero.objectives.mfm import FrameFeatureHead
from hero.objectives.mlm import MlmHead
from hero.objectives.vsm import VsmHead

HEAD_KEY_MAP: list[tuple[str, str | None]] = [
    ("v_encoder.f_encoder.lm_head.decoder.", None),  # tied to the word table
    ("v_encoder.f_encoder.lm_head.", "mlm_head."),
    ("v_encoder.feat_regress.net.0.", "mfm_head.dense."),
    ("v_encoder.feat_regress.net.2.", "mfm_head.LayerNorm."),
    ("v_encoder.feat_regress.net.3.", "mfm_head.out."),
    ("v_encoder.fom_output.", "fom_head."),
    ("video_query_linear.", "vsm_head.query_linear."),
    ("video_st_predictor.", "vsm_head.st_conv."),
    ("video_ed_predictor.", "vsm_head.ed_conv."),
]


class HeroForPretraining(nn.Module, PretrainedMixin):
    """HERO with the MLM, MFM (MFFR/MNCE), FOM and VSM heads (reference ``HeroForPretraining``)."""

    REFERENCE_KEY_MAP = HEAD_KEY_MAP + [
        (ref, None if ours is None else "hero." + ours) for ref, ours in BACKBONE_KEY_MAP
    ]

    def __init__(self, config: HeroConfig) -> None:
        super().__init__()
        self.config = config
        self.hero = build_backbone(config)
        self.mlm_head = MlmHead(config)
        self.mfm_head = FrameFeatureHead(config)
        self.fom_head = fom_head(config)
        self.vsm_head = VsmHead(config)
        # The reference initialises the heads that live inside its video encoder; the VSM head
        # keeps PyTorch's default initialisation, as there.
        for head in (self.mlm_head.dense, self.mlm_head.LayerNorm, self.mfm_head, self.fom_head):
            init_weights(head, config.initializer_range)
