"""Masked Frame Modelling (paper §3.2, MFM) in its two variants.

15% of the frames of every clip (at least one) are zeroed and replaced by a learned mask vector
(on both levels: frame tokens of the Cross-modal Transformer and clip-level features). The
Temporal Transformer's outputs at the masked positions go through the frame-feature head and must
recover the original features:

* **MFFR** (feature regression): ``‖pred − target‖₂``, averaged over masked frames.
* **MNCE** (noise-contrastive): each prediction must pick its own target among all targets and
  the predicted features of unmasked positions (temperature 1).

Across processes, the MNCE candidates (all targets and all negatives) are gathered from every
rank, so N processes see the same candidates as one process with the whole global batch.

Reference quirk, kept as an option: its MNCE negatives are *all* unmasked positions of the padded
batch, padding included (``nce_negatives='all_unmasked'``). The default, ``'valid'``, uses real
frames only: padding positions are not frames, their number depends on which clips share a batch,
and they make the loss depend on batch composition.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hero.config import HeroConfig, TextTokens
from hero.data.batch import Clip, Randomness, as_randomness, clip_groups, collate_video
from hero.distributed import gather_with_grad
from hero.errors import check_settings
from hero.losses import l2_regression_loss, nce_loss
from hero.model.hero import VideoInputs


@dataclass
class MfmConfig:
    mask_prob: float = 0.15
    loss: str = "nce"
    """``nce`` (MNCE) or ``mffr`` (feature regression)."""
    nce_temperature: float = 1.0
    nce_negatives: str = "valid"
    """``valid``: unmasked real frames; ``all_unmasked``: also padding positions (reference)."""

    def __post_init__(self) -> None:
        if self.loss not in ("nce", "mffr"):
            raise ValueError(f"MfmConfig.loss must be 'nce' or 'mffr', got {self.loss!r}")
        if self.nce_negatives not in ("valid", "all_unmasked"):
            raise ValueError(f"MfmConfig.nce_negatives must be 'valid' or 'all_unmasked', got {self.nce_negatives!r}")
        check_settings(self, "mfm", mask_prob="[0,1]", nce_temperature=">0")


@dataclass
class MffrConfig(MfmConfig):
    """`MfmConfig` whose default loss is feature regression (the ``mffr`` section of a run config)."""

    loss: str = "mffr"


class FrameFeatureHead(nn.Module):
    """``out(LN(gelu(dense(h))))``: hidden → raw frame features (reference ``feat_regress``)."""

    def __init__(self, config: HeroConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.out = nn.Linear(config.hidden_size, config.vfeat_dim)

    def forward(self, h: Tensor) -> Tensor:
        """``h (M, D)`` → ``(M, d)``."""
        return self.out(self.LayerNorm(F.gelu(self.dense(h))))


@dataclass
class MfmBatch:
    """An MFM batch: ``video.mfm_mask`` marks masked frames (already zeroed); ``targets (M, d)``
    are their original features in row-major (clip, frame) order."""

    video: VideoInputs
    targets: Tensor

    def to(self, device) -> MfmBatch:
        return MfmBatch(self.video.to(device), self.targets.to(device))


class MfmObjective:
    """MFM (MNCE or MFFR): collate (frame masking) and loss."""

    def __init__(self, cfg: MfmConfig | None = None, tokens: TextTokens | None = None) -> None:
        self.cfg = cfg or MfmConfig()
        self.tokens = tokens or TextTokens()
        self.name = "mfm-nce" if self.cfg.loss == "nce" else "mffr"

    def mask_frames(self, n: int, generator: torch.Generator) -> Tensor:
        """``(n,)`` bool: each frame with probability ``mask_prob``; at least one."""
        mask = torch.rand(n, generator=generator) < self.cfg.mask_prob
        if not mask.any():
            mask[torch.randint(n, (1,), generator=generator)] = True
        return mask

    def collate(self, clips: list[Clip], generator: torch.Generator | Randomness | None = None,
                frame_masks: list[list[bool]] | None = None) -> MfmBatch:
        """Build an MFM batch from ``frame_masks`` (per clip, one bool per frame) or from the batch's
        random streams (clip ``i`` uses stream ``i``)."""
        rng = None if frame_masks is not None else as_randomness(generator, len(clips), "MFM")
        groups = [clip_groups(c, self.tokens.sep_id) for c in clips]
        video = collate_video([c.features for c in clips], groups)
        b, length = video.frame_mask.shape
        mask = torch.zeros(b, length, dtype=torch.bool)
        for i, clip in enumerate(clips):
            if frame_masks is not None:
                m = torch.as_tensor(frame_masks[i], dtype=torch.bool)
                if m.shape != (clip.num_frames,):
                    raise ValueError(f"clip {clip.vid!r}: frame mask of {m.shape[0]} entries for "
                                     f"{clip.num_frames} frames")
            else:
                m = self.mask_frames(clip.num_frames, rng.clips[i])
            mask[i, : clip.num_frames] = m
        targets = video.frame_feats[mask]  # (M, d), row-major
        video.frame_feats = video.frame_feats.masked_fill(mask[..., None], 0.0)
        video.mfm_mask = mask
        return MfmBatch(video, targets)

    def predict(self, model, batch: MfmBatch) -> dict[str, Tensor]:
        """Predicted features of masked frames ``pred (M, d)`` and, for MNCE, of the negatives."""
        video = batch.video
        frames = model.hero.encode_video(video)  # (B, L, D)
        out = {"frames": frames, "pred": model.mfm_head(frames[video.mfm_mask])}
        if self.cfg.loss == "nce":
            neg = ~video.mfm_mask
            if self.cfg.nce_negatives == "valid":
                neg = neg & video.frame_mask
            out["neg_pred"] = model.mfm_head(frames[neg])
        return out

    def __call__(self, model, batch: MfmBatch, **_) -> dict[str, Tensor]:
        """Mean loss over this rank's masked frames (``normalizer`` = their number)."""
        pred = self.predict(model, batch)
        m = pred["pred"].shape[0]
        if self.cfg.loss == "nce":
            targets, offset = gather_with_grad(batch.targets)
            negatives, _ = gather_with_grad(pred["neg_pred"])
            per_frame, _ = nce_loss(pred["pred"], targets, negatives, self.cfg.nce_temperature, label_offset=offset)
            loss = per_frame.mean()
            return {"loss": loss, "mnce_loss": loss, "normalizer": m}
        loss = l2_regression_loss(pred["pred"], batch.targets).mean()
        return {"loss": loss, "mffr_loss": loss, "normalizer": m}
