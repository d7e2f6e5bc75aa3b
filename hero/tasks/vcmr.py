"""Video corpus moment retrieval (VCMR), single-video moment retrieval (SVMR) and video retrieval
(VR): inference scores (reference ``eval_vcmr.py`` / ``utils/tvr_eval_utils.py``, notes §4.1).

A query ranks clips by ``exp(α·S)`` with ``S`` the VSM global score; inside a clip, a moment
``[m, n]`` (inclusive frame indices) scores ``P_st(m) · exp(α·S) · P_ed(n)`` under a length mask.
"""

from __future__ import annotations

import torch
from torch import Tensor


def length_mask(length: int, min_len: int, max_len: int, device=None) -> Tensor:
    """``(L, L)`` float mask: 1 where ``min_len ≤ n − m < max_len`` (m start row, n end column).

    Equals the reference ``triu(ones, k=min_l) · (1 − triu(ones, k=max_l))``.
    """
    idx = torch.arange(length, device=device)
    diff = idx[None, :] - idx[:, None]
    return ((diff >= min_len) & (diff < max_len)).float()


def span_probabilities(st_logits: Tensor, ed_logits: Tensor) -> tuple[Tensor, Tensor]:
    """Softmax over frames of masked start/end logits ``(…, L)`` (padded frames get probability 0)."""
    return st_logits.float().softmax(-1), ed_logits.float().softmax(-1)


def video_scores(scores: Tensor, alpha: float = 20.0) -> Tensor:
    """``exp(α·S)``: the clip ranking score of VR and the clip factor of VCMR. ``(Q, V)``."""
    return torch.exp(alpha * scores.float())


def moment_scores(st_prob: Tensor, ed_prob: Tensor, mask: Tensor, clip_scores: Tensor | None = None) -> Tensor:
    """Scores of every moment ``[m, n]``.

    Args:
        st_prob, ed_prob: ``(…, L)``.
        mask: ``(L, L)`` length mask.
        clip_scores: ``(…)`` clip factor ``exp(α·S)`` (VCMR) or None (SVMR).
    Returns:
        ``(…, L, L)`` ``P_st[m] · clip · P_ed[n] · mask[m, n]``.
    """
    st = st_prob[..., :, None]
    if clip_scores is not None:
        st = st * clip_scores[..., None, None]
    return st * ed_prob[..., None, :] * mask
