"""Moment retrieval inference pieces: VR / VCMR / SVMR rankings and their submission lists.

Equal to the reference ``eval_vcmr.py:validate_full_vcmr`` and ``utils/tvr_eval_utils.py``
(notes §4.1; checked against ``official_data_eval/vcmr_inference``), but torch-based, batched
over queries, with top-k selection instead of full sorts and a vectorised greedy NMS.

The pipeline for a batch of ``Q`` queries over a corpus of ``V`` clips of at most ``L`` frames:

1. ``video_scores(S, α)``: ``w = exp(α·S)`` ``(Q, V)``; ``top_videos(w, K)`` keeps the ``K`` best clips
   (VR list: ``[video_idx, 0, 0, w]``).
2. ``span_probabilities``: softmax over frames of the start / end logits of those clips ``(Q, K, L)``.
3. ``top_vcmr_moments``: scores ``P_st[m] · w · P_ed[n] · mask[m, n]`` over ``(K, L, L)``, the best
   ``max_before_nms``; ``top_svmr_moments``: ``P_st[m] · P_ed[n] · mask`` on the ground-truth clip.
4. ``frames_to_seconds``: ``[m·Δ, (n+1)·Δ]`` (``n`` is inclusive).
5. ``*_entries``: official submission lists; ``top_n_entries`` cuts them to ``max_after_nms``;
   ``nms_vcmr_entries`` / ``nms_svmr_entries`` apply the reference temporal NMS.

`corpus_predictions` runs 1–5 on score tensors of a whole (small) corpus, the way the reference does.

Frame indices ``m`` (start) and ``n`` (end) are inclusive everywhere; times are seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

# The reference caps every per-video NMS at 100 kept moments whatever ``max_after_nms`` is.
REFERENCE_NMS_CAP = 100


# ---------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------


def length_mask(length: int, min_len: int, max_len: int, device: torch.device | str | None = None) -> Tensor:
    """``(L, L)`` float32 mask: 1 where ``min_len ≤ n − m < max_len`` (row m = start, column n = end).

    Equals the reference ``generate_min_max_length_mask`` (``triu(ones, min_l) · (1 − triu(ones, max_l))``)
    with its leading unit dimensions dropped, including its behaviour for negative ``min_len`` and for
    ``max_len ≤ min_len`` (all zero). TVR: ``min_len=2, max_len=16`` (spans of 3–16 frames).
    """
    idx = torch.arange(length, device=device)
    diff = idx[None, :] - idx[:, None]
    return ((diff >= min_len) & (diff < max_len)).float()


def span_probabilities(st_logits: Tensor, ed_logits: Tensor,
                       frame_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Softmax over frames of start / end logits ``(…, L)`` in float32.

    ``frame_mask`` ``(…, L)`` (broadcastable; True = real frame) sets padded frames to probability 0
    exactly; logits the model already masked (−10000, like the reference) need no mask.
    """
    st, ed = st_logits.float(), ed_logits.float()
    if frame_mask is not None:
        st = st.masked_fill(~frame_mask.bool(), float("-inf"))
        ed = ed.masked_fill(~frame_mask.bool(), float("-inf"))
    return st.softmax(-1), ed.softmax(-1)


def video_scores(scores: Tensor, alpha: float = 20.0) -> Tensor:
    """``exp(α·S)`` in float32, the clip ranking score of VR and the clip factor of VCMR. ``(Q, V)``."""
    return torch.exp(alpha * scores.float())


def moment_scores(st_prob: Tensor, ed_prob: Tensor, mask: Tensor, clip_scores: Tensor | None = None) -> Tensor:
    """Scores of every moment ``[m, n]`` (dense; for small inputs and parity checks).

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


def top_videos(clip_scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` best clips per query, descending (``torch.topk``, as the reference).

    Args:
        clip_scores: ``(Q, V)`` ``exp(α·S)`` (or any score where larger is better).
    Returns:
        ``(values (Q, k'), indices (Q, k'))`` with ``k' = min(k, V)``; indices are corpus rows.
    """
    return torch.topk(clip_scores, min(k, clip_scores.shape[1]), dim=1, largest=True, sorted=True)


@dataclass
class Moments:
    """The best moments of each query, best first (``M`` per query).

    ``video``: ``(Q, M)`` long, position along the clip axis given to the function (for
    `top_vcmr_moments`: the ``K`` axis; map it to corpus rows / global video indices yourself);
    ``st``, ``ed``: ``(Q, M)`` long, inclusive frame indices; ``score``: ``(Q, M)`` float32.
    """

    video: Tensor
    st: Tensor
    ed: Tensor
    score: Tensor


def _top_masked_products(st_prob: Tensor, ed_prob: Tensor, mask: Tensor, n: int,
                         chunk_elems: int) -> Moments:
    """Top ``n`` of ``st_prob[q, k, m] · ed_prob[q, k, n] · mask[m, n]`` over ``(k, m, n)``.

    ``st_prob`` is expected to already carry any per-clip factor. Spans outside the mask get −1 so
    they rank after every valid span (valid scores are ≥ 0); ``n`` is cut to the number of valid spans.
    Queries are processed in chunks of at most ``chunk_elems`` score elements to bound memory.
    """
    q, k, length = st_prob.shape
    valid = int(mask.count_nonzero()) * k
    n = min(n, valid)
    outside = (mask == 0)
    per_query = max(1, k * length * length)
    step = max(1, chunk_elems // per_query)
    vals, flat = [], []
    for s in range(0, q, step):
        prod = st_prob[s:s + step, :, :, None] * ed_prob[s:s + step, :, None, :]  # (q', K, L, L)
        prod = prod.masked_fill(outside, -1.0)
        v, i = torch.topk(prod.reshape(prod.shape[0], -1), n, dim=1, largest=True, sorted=True)
        vals.append(v)
        flat.append(i)
    score = torch.cat(vals) if vals else st_prob.new_zeros((0, n))
    idx = torch.cat(flat) if flat else torch.zeros((0, n), dtype=torch.long, device=st_prob.device)
    return Moments(video=idx // (length * length), st=(idx // length) % length, ed=idx % length, score=score)


def top_vcmr_moments(st_prob: Tensor, ed_prob: Tensor, clip_weight: Tensor, mask: Tensor, n: int,
                     chunk_elems: int = 1 << 25) -> Moments:
    """VCMR: the ``n`` best moments over the top clips of each query.

    Args:
        st_prob, ed_prob: ``(Q, K, L)`` span probabilities of each query's top ``K`` clips (in
            `top_videos` order; padded frames at probability 0).
        clip_weight: ``(Q, K)`` ``exp(α·S)`` of those clips.
        mask: ``(L, L)`` `length_mask`.
        n: how many to keep (the reference ``max_before_nms``, 200 for TVR).
    Returns:
        `Moments` with ``video`` indexing the ``K`` axis, ranked by ``P_st[m] · w · P_ed[n]``
        (the reference flattens ``(K, L, L)`` and sorts it fully; top-k gives the same list).
    """
    weighted = st_prob.float() * clip_weight.float()[..., None]
    return _top_masked_products(weighted, ed_prob.float(), mask, n, chunk_elems)


def top_svmr_moments(st_prob: Tensor, ed_prob: Tensor, mask: Tensor, n: int,
                     chunk_elems: int = 1 << 25) -> Moments:
    """SVMR: the ``n`` best moments ``P_st[m] · P_ed[n] · mask[m, n]`` within one clip per query.

    Args:
        st_prob, ed_prob: ``(Q, L)`` span probabilities on each query's (ground-truth) clip.
    Returns:
        `Moments` (``video`` is all zeros).
    """
    return _top_masked_products(st_prob.float()[:, None], ed_prob.float()[:, None], mask, n, chunk_elems)


def top_triples(upper_product: Tensor, top_n: int) -> Tensor:
    """The reference ``find_max_triples_from_upper_triangle_product``: per row of ``(N, L, L)`` scores,
    the ``top_n`` largest as ``[m, n, value]`` rows, descending. Returns ``(N, min(top_n, L·L), 3)``
    float64 (the reference returns the indices as floats too)."""
    num, length, _ = upper_product.shape
    v, i = torch.topk(upper_product.reshape(num, -1), min(top_n, length * length), dim=1)
    return torch.stack([(i // length).double(), (i % length).double(), v.double()], dim=-1)


def frames_to_seconds(st: Tensor, ed: Tensor, interval: float, float64: bool = False) -> tuple[Tensor, Tensor]:
    """Inclusive frame indices → ``[m·Δ, (n+1)·Δ]`` seconds.

    The reference computes VCMR times in float32 (``m·Δ`` and ``n·Δ + Δ``) and SVMR times in float64
    (``m·Δ`` and ``(n+1)·Δ``); ``float64`` picks the SVMR rule. They differ only for a Δ that float32
    cannot represent (1.5 and 2.0 are exact).
    """
    if float64:
        return st.double() * interval, (ed.double() + 1) * interval
    step = torch.tensor(interval, dtype=torch.float32)
    return st.float() * step, ed.float() * step + step


# ---------------------------------------------------------------------------------------------
# Temporal NMS (vectorised over queries)
# ---------------------------------------------------------------------------------------------


def _greedy(st: Tensor, ed: Tensor, alive: Tensor, group: Tensor | None, iou_threshold: float, max_keep: int,
            group_cap: int | None) -> Tensor:
    """The greedy pass of `temporal_nms` on score-sorted ``(B, N)`` candidates; returns ``keep`` ``(B, N)``."""
    b, n = st.shape
    # (N, B, N) layout: row i of every batch entry is one contiguous slice in the loop below
    st_i, ed_i, st_j, ed_j = st.T[:, :, None], ed.T[:, :, None], st[None], ed[None]
    inter = (torch.minimum(ed_i, ed_j) - torch.maximum(st_i, st_j)).clamp_min_(0.0)
    union = torch.maximum(ed_i, ed_j) - torch.minimum(st_i, st_j)
    suppress = inter.div_(union.masked_fill_(union == 0, 1.0)) > iou_threshold  # IoU 0 where the union is 0
    del inter, union
    if group is not None:
        suppress &= group.T[:, :, None] == group[None]
    alive = alive.clone()
    keep = torch.zeros_like(alive)
    kept = torch.zeros(b, dtype=torch.long, device=st.device)
    per_group = torch.zeros((b, n + 1), dtype=torch.long, device=st.device) if group_cap is not None else None
    for i in range(n):
        take = alive[:, i] & (kept < max_keep)
        if per_group is not None:
            gi = group[:, i:i + 1]
            take &= per_group.gather(1, gi)[:, 0] < group_cap
            per_group.scatter_add_(1, gi, take[:, None].long())
        if not bool(take.any()):
            continue
        keep[:, i] = take
        kept += take.long()
        alive[:, i + 1:] &= ~(suppress[i, :, i + 1:] & take[:, None])
    return keep


def temporal_nms(st: Tensor, ed: Tensor, score: Tensor, iou_threshold: float, max_keep: int = REFERENCE_NMS_CAP,
                 valid: Tensor | None = None, group: Tensor | None = None,
                 group_cap: int | None = None, chunk_elems: int = 1 << 21) -> tuple[Tensor, Tensor]:
    """Greedy temporal NMS of the reference, for a batch of candidate lists at once.

    Per row: candidates are stably sorted by score (descending); then, in that order, a candidate is kept
    unless a kept one of the same ``group`` has IoU **strictly greater** than ``iou_threshold`` with it,
    until ``max_keep`` are kept (and at most ``group_cap`` per group). IoU is computed in float64 as
    ``max(0, min(ed) − max(st)) / (max(ed) − min(st))`` and is 0 when that denominator is 0, so identical
    spans survive a threshold of 1.0. Without ``group`` this is ``temporal_non_maximum_suppression``; with
    ``group`` = video index and ``group_cap`` = 100 it is the NMS part of ``filter_vcmr_by_nms`` (no
    suppression across videos).

    Args:
        st, ed, score: ``(B, N)`` candidate spans (seconds) and scores.
        valid: ``(B, N)`` bool, False for padding (never kept); default all valid.
        group: ``(B, N)`` long group ids (e.g. video index); default one group.
    Returns:
        ``order`` ``(B, N)`` long: the candidate indices in stable descending-score order, and
        ``keep`` ``(B, N)`` bool aligned with ``order`` (``keep[b, j]``: candidate ``order[b, j]`` kept).
    """
    st, ed, score = st.double(), ed.double(), score.double()
    b, n = st.shape
    if valid is None:
        valid = torch.ones((b, n), dtype=torch.bool, device=st.device)
    key = score.masked_fill(~valid, float("-inf"))
    # padding goes last even against -inf scores: sort by validity first, then by score
    order = torch.argsort(key, dim=1, descending=True, stable=True)
    order = order.gather(1, torch.argsort((~valid).gather(1, order).to(torch.int8), dim=1, stable=True))
    st, ed, alive = st.gather(1, order), ed.gather(1, order), valid.gather(1, order)
    # dense per-row labels in [0, N] (first position of the group) for the per-group counters
    grp = _first_position(group.gather(1, order), alive) if group is not None else None
    keep = torch.zeros_like(alive)
    # rows in chunks so the (rows, N, N) suppression matrix stays small
    step = max(1, chunk_elems // max(1, n * n))
    for s in range(0, b, step):
        g = grp[s:s + step] if grp is not None else None
        keep[s:s + step] = _greedy(st[s:s + step], ed[s:s + step], alive[s:s + step], g, iou_threshold,
                                   max_keep, group_cap)
    return order, keep


def _pad_lists(lists: Sequence[Sequence[Sequence[float]]], width: int) -> tuple[Tensor, Tensor]:
    """Pad ``B`` prediction lists into ``(B, N, width)`` float64 values and a ``(B, N)`` validity mask."""
    n = max((len(x) for x in lists), default=0)
    values = torch.zeros((len(lists), n, width), dtype=torch.float64)
    valid = torch.zeros((len(lists), n), dtype=torch.bool)
    flat = [list(p[:width]) for x in lists for p in x]
    if flat:
        lengths = torch.tensor([len(x) for x in lists])
        valid = torch.arange(n)[None, :] < lengths[:, None]
        values[valid] = torch.tensor(flat, dtype=torch.float64).reshape(-1, width)
    return values, valid


def _first_position(ids: Tensor, valid: Tensor, chunk: int = 512) -> Tensor:
    """``(B, N)``: for each entry, the first position in its row holding the same id (a group label
    that also orders the groups by first appearance)."""
    b, n = ids.shape
    out = torch.zeros((b, n), dtype=torch.long)
    if n == 0:
        return out
    pos = torch.arange(n)
    for s in range(0, b, chunk):
        same = (ids[s:s + chunk, :, None] == ids[s:s + chunk, None, :]) & valid[s:s + chunk, None, :]
        out[s:s + chunk] = torch.where(same, pos, n).min(-1).values
    return out


def nms_moments_batch(lists: Sequence[Sequence[Sequence[float]]], iou_threshold: float,
                      max_after_nms: int = REFERENCE_NMS_CAP) -> list[list[list[float]]]:
    """`nms_moments` on many ``[[st, ed, score], …]`` lists with one vectorised NMS pass."""
    values, valid = _pad_lists(lists, 3)
    order, keep = temporal_nms(values[..., 0], values[..., 1], values[..., 2], iou_threshold, max_after_nms, valid)
    out = []
    for x, o, k in zip(lists, order.tolist(), keep.tolist()):
        if len(x) == 1:  # the reference returns one-element lists unchanged
            out.append([list(x[0])])
        else:
            out.append([list(x[j]) for j, kept in zip(o, k) if kept])
    return out


def nms_moments(predictions: Sequence[Sequence[float]], iou_threshold: float,
                max_after_nms: int = REFERENCE_NMS_CAP) -> list[list[float]]:
    """Reference ``temporal_non_maximum_suppression`` on ``[[st, ed, score], …]``: the kept
    predictions, by score descending. A one-element list is returned unchanged (as the reference)."""
    return nms_moments_batch([predictions], iou_threshold, max_after_nms)[0]


def nms_vcmr_batch(lists: Sequence[Sequence[Sequence[float]]], iou_threshold: float, max_before_nms: int,
                   max_after_nms: int) -> list[list[list[float]]]:
    """`nms_vcmr` on many ``[[video_idx, st, ed, score], …]`` lists with one vectorised NMS pass."""
    heads = [list(x[:max_before_nms]) for x in lists]
    values, valid = _pad_lists(heads, 4)
    group = _first_position(values[..., 0], valid)  # video label ordered by first appearance
    order, keep = temporal_nms(values[..., 1], values[..., 2], values[..., 3], iou_threshold,
                               values.shape[1], valid, group=group, group_cap=REFERENCE_NMS_CAP)
    # the reference concatenates the per-video NMS results in order of first appearance, then stably
    # sorts by score: order the survivors by (score desc, first appearance of the video, rank in video)
    score = values[..., 3].gather(1, order).masked_fill(~keep, float("-inf"))
    first = group.gather(1, order).masked_fill(~keep, values.shape[1])
    by_group = torch.argsort(first, dim=1, stable=True)
    by_score = torch.argsort(score.gather(1, by_group), dim=1, descending=True, stable=True)
    final = order.gather(1, by_group.gather(1, by_score))
    counts = keep.sum(1).clamp(max=max_after_nms).tolist()
    return [[list(h[j]) for j in f[:c]] for h, f, c in zip(heads, final.tolist(), counts)]


def nms_vcmr(predictions: Sequence[Sequence[float]], iou_threshold: float, max_before_nms: int,
             max_after_nms: int) -> list[list[float]]:
    """Reference ``filter_vcmr_by_nms`` on ``[[video_idx, st, ed, score], …]``.

    The first ``max_before_nms`` entries (input order, not re-sorted) are grouped by video; NMS runs per
    video with the reference's fixed cap of 100; the survivors are stably sorted by score (ties: video in
    order of first appearance, then rank inside the video) and cut to ``max_after_nms``.
    """
    return nms_vcmr_batch([predictions], iou_threshold, max_before_nms, max_after_nms)[0]


def nms_svmr_batch(lists: Sequence[Sequence[Sequence[float]]], iou_threshold: float, max_before_nms: int,
                   max_after_nms: int) -> list[list[list[float]]]:
    """`nms_svmr` on many lists with one vectorised NMS pass."""
    kept = nms_moments_batch([[list(p[1:]) for p in x[:max_before_nms]] for x in lists], iou_threshold)
    return [[[x[0][0], *p] for p in k[:max_after_nms]] if x else [] for x, k in zip(lists, kept)]


def nms_svmr(predictions: Sequence[Sequence[float]], iou_threshold: float, max_before_nms: int,
             max_after_nms: int) -> list[list[float]]:
    """Reference SVMR NMS (``post_processing_svmr_nms`` on one query): NMS (cap 100) on the first
    ``max_before_nms`` ``[video_idx, st, ed, score]``, cut to ``max_after_nms``, with the video index of
    the first input prediction put back on every row."""
    return nms_svmr_batch([predictions], iou_threshold, max_before_nms, max_after_nms)[0]


# ---------------------------------------------------------------------------------------------
# Submission lists
# ---------------------------------------------------------------------------------------------


def _entry(desc_id: Any, predictions: list) -> dict:
    return {"desc_id": desc_id, "desc": "", "predictions": predictions}


def vr_entries(desc_ids: Sequence[Any], video_idx: Tensor, clip_weight: Tensor,
               max_after_nms: int | None = None) -> list[dict]:
    """VR lists ``[video_idx, 0, 0, w]`` from `top_videos` output mapped to global video indices.

    Args:
        video_idx: ``(Q, K)`` global video indices (``video2idx`` values), best first.
        clip_weight: ``(Q, K)`` their ``exp(α·S)``.
    """
    vids = video_idx.tolist()
    ws = clip_weight.float().tolist()
    cut = max_after_nms if max_after_nms is not None else len(vids[0]) if vids else 0
    return [_entry(d, [[int(v), 0, 0, float(w)] for v, w in zip(vr[:cut], wr[:cut])])
            for d, vr, wr in zip(desc_ids, vids, ws)]


def moment_entries(desc_ids: Sequence[Any], video_idx: Tensor, moments: Moments, interval: float,
                   float64_times: bool = False) -> list[dict]:
    """VCMR / SVMR lists ``[video_idx, st_seconds, ed_seconds, score]``.

    Args:
        video_idx: ``(Q, M)`` global video index of each moment (for VCMR, gather the top clips'
            indices with ``moments.video``; for SVMR, the GT clip's index repeated).
        moments: the ranked moments (inclusive frame indices).
        interval: seconds per frame (Δ).
        float64_times: the SVMR time rule (see `frames_to_seconds`).
    """
    st, ed = frames_to_seconds(moments.st, moments.ed, interval, float64=float64_times)
    vids, sts, eds, scores = video_idx.tolist(), st.tolist(), ed.tolist(), moments.score.float().tolist()
    return [_entry(d, [[int(v), s, e, c] for v, s, e, c in zip(*row)])
            for d, *row in zip(desc_ids, vids, sts, eds, scores)]


def top_n_entries(entries: list[dict], top_n: int) -> list[dict]:
    """Reference ``get_submission_top_n`` for one task: every list cut to ``top_n`` (new dicts)."""
    return [{**e, "predictions": e["predictions"][:top_n]} for e in entries]


def nms_vcmr_entries(entries: list[dict], iou_threshold: float, max_before_nms: int,
                     max_after_nms: int) -> list[dict]:
    """Reference ``post_processing_vcmr_nms``: `nms_vcmr` on every query, batched (new dicts)."""
    kept = nms_vcmr_batch([e["predictions"] for e in entries], iou_threshold, max_before_nms, max_after_nms)
    return [{**e, "predictions": k} for e, k in zip(entries, kept)]


def nms_svmr_entries(entries: list[dict], iou_threshold: float, max_before_nms: int,
                     max_after_nms: int) -> list[dict]:
    """Reference ``post_processing_svmr_nms``: `nms_svmr` on every query, batched (new dicts)."""
    kept = nms_svmr_batch([e["predictions"] for e in entries], iou_threshold, max_before_nms, max_after_nms)
    return [{**e, "predictions": k} for e, k in zip(entries, kept)]


# ---------------------------------------------------------------------------------------------
# Whole-corpus rankings from score tensors (the reference procedure)
# ---------------------------------------------------------------------------------------------


@dataclass
class InferenceConfig:
    """Reference VCMR inference settings (TVR defaults, notes §4.1)."""

    alpha: float = 20.0
    """``q2c_alpha``: clip factor ``exp(α·S)``."""
    max_videos: int = 100
    """``max_vcmr_video``: clips ranked per query (VR list length and VCMR candidates)."""
    min_len: int = 2
    """``min_pred_l``: a span needs ``n − m ≥ min_len``."""
    max_len: int = 16
    """``max_pred_l``: a span needs ``n − m < max_len``."""
    max_before_nms: int = 200
    max_after_nms: int = 100
    interval: float = 1.5
    """Seconds per frame (``vfeat_interval``)."""
    nms_threshold: float = 0.5
    """Temporal NMS IoU threshold; −1 disables NMS."""


@dataclass
class CorpusPredictions:
    """Submission lists for a batch of queries.

    ``vcmr`` / ``svmr`` / ``vr`` are cut to ``max_after_nms`` without NMS (``svmr`` is None without GT
    clips); ``vcmr_nms`` / ``svmr_nms`` are the NMS'ed lists (None when NMS is off or there is no GT),
    computed from the cut lists exactly as the reference does (NMS sees only the top ``max_after_nms``).
    """

    vcmr: list[dict]
    vr: list[dict]
    svmr: list[dict] | None = None
    vcmr_nms: list[dict] | None = None
    svmr_nms: list[dict] | None = None


def corpus_predictions(desc_ids: Sequence[Any], clip_scores: Tensor, st_logits: Tensor, ed_logits: Tensor,
                       video_idx: Sequence[int] | Tensor, cfg: InferenceConfig,
                       gt_rows: Sequence[int] | Tensor | None = None,
                       frame_mask: Tensor | None = None) -> CorpusPredictions:
    """VR, VCMR and SVMR lists for ``Q`` queries over a corpus whose logits are all in memory.

    Args:
        desc_ids: ``Q`` query ids.
        clip_scores: ``(Q, V)`` the global score ``S`` (max over frames of query–frame cosine).
        st_logits, ed_logits: ``(Q, V, L)`` start / end logits (padded frames masked, e.g. −10000, or
            give ``frame_mask``).
        video_idx: ``V`` global video index (``video2idx`` value) of each corpus row.
        gt_rows: ``Q`` corpus row of each query's GT clip (enables SVMR and NMS); None for a test split.
        frame_mask: optional ``(V, L)`` bool, True = real frame.
    Returns:
        `CorpusPredictions`.

    For corpora too large for ``(Q, V, L)`` logits, call `top_videos` on ``S`` first and compute the
    logits of the top clips only; the rest of this function is then the same.
    """
    vidx = torch.as_tensor(video_idx, dtype=torch.long, device=clip_scores.device)
    fmask = frame_mask[None] if frame_mask is not None else None
    st_prob, ed_prob = span_probabilities(st_logits, ed_logits, fmask)
    w = video_scores(clip_scores, cfg.alpha)
    top_w, top_rows = top_videos(w, cfg.max_videos)
    length = st_logits.shape[-1]
    mask = length_mask(length, cfg.min_len, cfg.max_len, device=st_prob.device)
    rows = torch.arange(len(desc_ids), device=st_prob.device)[:, None]
    vcmr = top_vcmr_moments(st_prob[rows, top_rows], ed_prob[rows, top_rows], top_w, mask, cfg.max_before_nms)
    vcmr_vids = vidx[top_rows.gather(1, vcmr.video)]
    out = CorpusPredictions(
        vcmr=top_n_entries(moment_entries(desc_ids, vcmr_vids, vcmr, cfg.interval), cfg.max_after_nms),
        vr=top_n_entries(vr_entries(desc_ids, vidx[top_rows], top_w), cfg.max_after_nms),
    )
    if gt_rows is None:
        return out
    gt = torch.as_tensor(gt_rows, dtype=torch.long, device=st_prob.device)
    svmr = top_svmr_moments(st_prob[rows[:, 0], gt], ed_prob[rows[:, 0], gt], mask, cfg.max_before_nms)
    svmr_vids = vidx[gt][:, None].expand_as(svmr.st)
    out.svmr = top_n_entries(moment_entries(desc_ids, svmr_vids, svmr, cfg.interval, float64_times=True),
                             cfg.max_after_nms)
    if cfg.nms_threshold != -1:
        out.vcmr_nms = nms_vcmr_entries(out.vcmr, cfg.nms_threshold, cfg.max_before_nms, cfg.max_after_nms)
        out.svmr_nms = nms_svmr_entries(out.svmr, cfg.nms_threshold, cfg.max_before_nms, cfg.max_after_nms)
    return out


def submission(video2idx: dict[str, int], vcmr: list[dict] | None = None, svmr: list[dict] | None = None,
               vr: list[dict] | None = None) -> dict:
    """The official submission dict ``{"video2idx", "VCMR", "SVMR", "VR"}`` (absent tasks left out)."""
    out: dict[str, Any] = {"video2idx": dict(video2idx)}
    for name, entries in (("VCMR", vcmr), ("SVMR", svmr), ("VR", vr)):
        if entries is not None:
            out[name] = entries
    return out

