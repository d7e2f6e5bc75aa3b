"""Loss functions shared by pre-training objectives and downstream tasks (pure tensor functions).

Each function states the reference behaviour it reproduces (``linjieli222/HERO``, notes §2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def nce_loss(pred: Tensor, targets: Tensor, negatives: Tensor, temperature: float = 1.0,
             label_offset: int = 0) -> tuple[Tensor, Tensor]:
    """Softmax NCE of MFM-NCE (reference ``mfm_nce``).

    Each prediction must pick its own target among all targets and the negatives:
    ``logits = [pred·targetsᵀ , pred·negativesᵀ] / T`` (computed in fp32), label = own row.

    Args:
        pred: ``(M, d)`` predicted features of the masked frames.
        targets: ``(M', d)`` original features of the masked frames; ``pred[i]``'s own target is
            row ``label_offset + i`` (``M' > M`` when targets were gathered from other ranks).
        negatives: ``(N, d)`` negative features.
    Returns:
        per-frame losses ``(M,)`` and logits ``(M, M' + N)``.
    """
    with torch.autocast(device_type=pred.device.type, enabled=False):
        pred = pred.float()
        logits = torch.cat([pred @ targets.float().t(), pred @ negatives.float().t()], dim=1) / temperature
    labels = torch.arange(pred.shape[0], device=pred.device) + label_offset
    return F.cross_entropy(logits, labels, reduction="none"), logits


def l2_regression_loss(pred: Tensor, targets: Tensor) -> Tensor:
    """MFFR per-frame loss ``‖pred − target‖₂`` (reference: L2 norm, not its square). ``(M,)``."""
    return (pred.float() - targets.float()).pow(2).sum(-1).sqrt()


def ranking_terms(pos: Tensor, neg: Tensor, margin: float, kind: str = "hinge") -> Tensor:
    """Per-negative ranking terms: hinge ``max(0, δ + s⁻ − s⁺)`` or lse ``log(1 + exp(s⁻ − s⁺))``.

    Args:
        pos: ``(Q,)`` positive scores.
        neg: ``(Q, K)`` negative scores (−inf marks an absent negative; its term is 0).
    """
    diff = neg - pos[:, None]
    if kind == "hinge":
        return torch.clamp(margin + diff, min=0)
    if kind == "lse":
        return F.softplus(diff)
    raise ValueError(f"unknown ranking loss {kind!r}; use 'hinge' or 'lse'")


def hard_negative_weights(num: int, pool_size: int, hard_weight: float, rest_weight: float = 0.1,
                          device: torch.device | None = None) -> Tensor:
    """Reference hard-negative weighting of negatives sorted by descending score: ``(num,)``."""
    w = torch.full((num,), rest_weight, device=device)
    w[:pool_size] = hard_weight
    return w


def sorted_negatives(scores: Tensor, positive: Tensor) -> tuple[Tensor, Tensor]:
    """Negatives of every row, sorted by descending score.

    Args:
        scores: ``(R, C)``.
        positive: ``(R, C)`` bool, True where the entry is a positive (not a negative).
    Returns:
        ``neg (R, K)`` scores and ``valid (R, K)`` bool, with ``K`` the largest negative count of
        a row; rows with fewer negatives are padded with invalid entries at the end.
    """
    masked = scores.masked_fill(positive, float("-inf"))
    neg, order = masked.sort(dim=1, descending=True)
    k = int((~positive).sum(1).max()) if scores.numel() else 0
    valid = ~positive.gather(1, order)
    return neg[:, :k], valid[:, :k]


def vsm_ranking_losses(scores: Tensor, q_vidx: Tensor, margin: float = 0.1, kind: str = "hinge",
                       hard_pool_size: int | None = None, hard_weight: float = 10.0) -> dict[str, Tensor]:
    """Video-level VSM ranking losses over in-batch negatives (reference ``get_video_level_loss``,
    ``use_all_neg=True``).

    * ``neg_ctx``: a query against the other videos (pos query, negative video).
    * ``neg_q``: a video against the other videos' queries (negative query, pos video).

    Negatives are sorted by descending score; with ``hard_pool_size`` set (the hard-negative
    phase) the first ``hard_pool_size`` get ``hard_weight`` and the rest 0.1, otherwise all get 1.
    Each query's loss is the mean over its negatives.

    Args:
        scores: ``(Q, V)`` query-video scores.
        q_vidx: ``(Q,)`` the positive video of every query.
    Returns:
        ``neg_ctx``/``neg_q`` per-query losses ``(Q,)`` and the sorted terms ``hinge_neg_ctx``
        ``(Q, K_ctx)`` / ``hinge_neg_q`` ``(Q, K_q)`` (weighted, 0 where no negative exists).
    """
    q, v = scores.shape
    rows = torch.arange(q, device=scores.device)
    pos = scores[rows, q_vidx]
    is_pos_video = torch.zeros(q, v, dtype=torch.bool, device=scores.device)
    is_pos_video[rows, q_vidx] = True
    out = {}
    # neg_ctx: row q, negatives = scores[q, other videos]
    neg, valid = sorted_negatives(scores, is_pos_video)
    out["neg_ctx"], out["hinge_neg_ctx"] = _reduce(pos, neg, valid, margin, kind, hard_pool_size, hard_weight)
    # neg_q: row v, negatives = scores[queries of other videos, v]; each query uses its video's row
    neg_v, valid_v = sorted_negatives(scores.t(), is_pos_video.t())
    out["neg_q"], out["hinge_neg_q"] = _reduce(pos, neg_v[q_vidx], valid_v[q_vidx], margin, kind,
                                               hard_pool_size, hard_weight)
    return out


def _reduce(pos, neg, valid, margin, kind, hard_pool_size, hard_weight):
    terms = ranking_terms(pos, neg, margin, kind).masked_fill(~valid, 0.0)
    if hard_pool_size is not None:
        terms = terms * hard_negative_weights(neg.shape[1], hard_pool_size, hard_weight, device=neg.device)
    count = valid.sum(1).clamp(min=1)
    return terms.sum(1) / count, terms


def span_cross_entropy(st_logits: Tensor, ed_logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Start/end cross-entropy per query ``(Q,)`` each; targets ``(Q, 2)`` (−1 = no target)."""
    ce_st = F.cross_entropy(st_logits.float(), targets[:, 0], ignore_index=-1, reduction="none")
    ce_ed = F.cross_entropy(ed_logits.float(), targets[:, 1], ignore_index=-1, reduction="none")
    return ce_st, ce_ed
