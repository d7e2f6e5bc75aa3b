"""Frame Order Modelling (paper §3.2, FOM).

15% of the frames of a clip are selected and permuted among themselves *after* cross-modal fusion
(the inputs of the Temporal Transformer are reordered, positions stay ``0..L-1``). A classifier
over ``fom_num_classes`` positions must recover, at every reordered position, the original index
of the frame that now sits there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from hero.config import HeroConfig, TextTokens
from hero.data.batch import Clip, Randomness, as_randomness, clip_groups, collate_video
from hero.errors import check_settings
from hero.model.hero import VideoInputs
from hero.model.layers import MLPHead

IGNORE = -1


def fom_head(config: HeroConfig) -> MLPHead:
    """FOM classifier ``(…, D) → (…, fom_num_classes)`` (reference ``fom_output``)."""
    return MLPHead(config.hidden_size, config.fom_num_classes, config.layer_norm_eps)


@dataclass
class FomConfig:
    reorder_prob: float = 0.15

    def __post_init__(self) -> None:
        check_settings(self, "fom", reorder_prob="[0,1]")


@dataclass
class FomBatch:
    """A FOM batch.

    Attributes:
        orders: ``(B, L)`` frame ``i`` of clip ``b`` moves to position ``orders[b, i]`` (identity
            on unselected frames and on padding).
        targets: ``(B, L)`` original index of the frame now at each position, −1 where nothing
            was reordered (and on padding).
    """

    video: VideoInputs
    orders: Tensor
    targets: Tensor

    def to(self, device) -> FomBatch:
        return FomBatch(self.video.to(device), self.orders.to(device), self.targets.to(device))


class FomObjective:
    """FOM: collate (frame reordering) and loss."""

    name = "fom"

    def __init__(self, cfg: FomConfig | None = None, tokens: TextTokens | None = None) -> None:
        self.cfg = cfg or FomConfig()
        self.tokens = tokens or TextTokens()

    def reorder(self, n: int, generator: torch.Generator) -> tuple[list[int], list[int]]:
        """Reference ``random_reorder``: select each frame with ``reorder_prob``, permute the
        selected among themselves. Returns (order, targets) for the clip's ``n`` frames."""
        selected = torch.nonzero(torch.rand(n, generator=generator) < self.cfg.reorder_prob).flatten()
        shuffled = selected[torch.randperm(len(selected), generator=generator)]
        order, targets = list(range(n)), [IGNORE] * n
        for src, dst in zip(selected.tolist(), shuffled.tolist()):
            order[src] = dst
            targets[dst] = src
        return order, targets

    def collate(self, clips: list[Clip], generator: torch.Generator | Randomness | None = None,
                reorders: list[tuple[list[int], list[int]]] | None = None) -> FomBatch:
        """Build a FOM batch from ``reorders`` (per clip, ``(order, targets)`` as `reorder`
        returns them) or from the batch's random streams (clip ``b`` uses stream ``b``)."""
        rng = None if reorders is not None else as_randomness(generator, len(clips), "FOM")
        groups = [clip_groups(c, self.tokens.sep_id) for c in clips]
        video = collate_video([c.features for c in clips], groups)
        b, length = video.frame_mask.shape
        order_t = torch.arange(length).repeat(b, 1)
        target_t = torch.full((b, length), IGNORE, dtype=torch.long)
        for i, clip in enumerate(clips):
            n = clip.num_frames
            if reorders is not None:
                order, targets = list(reorders[i][0]), list(reorders[i][1])
                consistent = (sorted(order) == list(range(n)) and len(targets) == n
                              and all(t == IGNORE or order[t] == p for p, t in enumerate(targets)))
                if not consistent:
                    raise ValueError(f"clip {clip.vid!r}: FOM order {order} / targets {targets} are not a "
                                     f"permutation of its {n} frames with matching targets")
            else:
                order, targets = self.reorder(n, rng.clips[i])
            order_t[i, :n] = torch.tensor(order)
            target_t[i, :n] = torch.tensor(targets)
        return FomBatch(video, order_t, target_t)

    @staticmethod
    def shuffle(fused: Tensor, orders: Tensor) -> Tensor:
        """``shuffled[b, orders[b, i]] = fused[b, i]`` for ``fused (B, L, D)``, ``orders (B, L)``."""
        return torch.empty_like(fused).scatter(1, orders[..., None].expand_as(fused), fused)

    def shuffled_frames(self, model, batch: FomBatch) -> Tensor:
        """Temporal Transformer outputs on the reordered fused frames ``(B, L, D)``."""
        shuffled = self.shuffle(model.hero.fuse(batch.video), batch.orders)
        return model.hero.temporal(shuffled, batch.video.frame_mask)

    def __call__(self, model, batch: FomBatch, **_) -> dict[str, Tensor]:
        frames = self.shuffled_frames(model, batch)
        selected = batch.targets != IGNORE
        logits = model.fom_head(frames[selected])  # (K, classes)
        if logits.shape[0] == 0:  # nothing was reordered in this batch
            loss = frames.float().sum() * 0.0
        else:
            loss = F.cross_entropy(logits.float(), batch.targets[selected])
        return {"loss": loss, "fom_loss": loss, "normalizer": logits.shape[0]}
