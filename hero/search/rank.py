"""Video ranking over stored frame embeddings: exact max-over-frames scores and the FAISS route.

A corpus is a flat ``(N, D)`` array of frame embeddings (videos one after another) and
``offsets (V + 1,)``: video ``v`` owns rows ``offsets[v] : offsets[v + 1]``. A query's score for a
video is the VSM global score ``S = max over the video's frames of cos(q, frame)``.

* `exact_video_scores`: every frame of the corpus, in chunks of whole videos (bounded memory;
  works on a memory-mapped float16 array).
* `faiss_top_videos`: an inner-product FAISS index over the normalised frames gives the best
  ``n_frames`` frames of each query; their videos are the candidates, re-scored exactly
  (`rescore`) and the best ``k`` kept. With an exact (flat) index and enough frames this equals
  the exact ranking; approximate indexes (IVF, HNSW) trade recall for speed.

Nothing here needs a model: the benchmark and the search index share it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from hero.objectives.vsm import NORMALIZE_EPS


def normalize_rows(x: np.ndarray | Tensor) -> np.ndarray:
    """Rows scaled to unit L2 norm (eps as the VSM cosine), float32 ``(n, D)``."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.maximum(np.linalg.norm(x, axis=1, keepdims=True), NORMALIZE_EPS)
    return x / norm


def frame_owner(offsets: np.ndarray) -> np.ndarray:
    """``(N,)`` video row of every frame."""
    lengths = np.diff(offsets)
    return np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)


def _video_chunks(offsets: np.ndarray, max_frames: int) -> list[tuple[int, int]]:
    """Consecutive video ranges ``[a, b)`` holding at most ``max_frames`` frames (at least one video)."""
    out, a, v = [], 0, len(offsets) - 1
    while a < v:
        b = int(np.searchsorted(offsets, offsets[a] + max_frames, side="right")) - 1
        b = min(max(b, a + 1), v)
        out.append((a, b))
        a = b
    return out


def exact_video_scores(qn: np.ndarray, frames: np.ndarray, offsets: np.ndarray,
                       chunk_frames: int = 1 << 18, normalized: bool = False) -> np.ndarray:
    """``S`` of every query against every video, from all frames.

    Args:
        qn: ``(Q, D)`` unit query vectors.
        frames: ``(N, D)`` frame embeddings (any float dtype, e.g. a float16 memory map), raw.
        offsets: ``(V + 1,)``; every video needs at least one frame.
        chunk_frames: frames normalised and scored at once.
        normalized: the stored frames are already unit vectors (skips the per-chunk normalisation).
    Returns:
        ``(Q, V)`` float32.
    """
    qt = torch.from_numpy(np.ascontiguousarray(qn, dtype=np.float32))
    out = np.empty((qn.shape[0], len(offsets) - 1), dtype=np.float32)
    for a, b in _video_chunks(offsets, chunk_frames):
        lo, hi = int(offsets[a]), int(offsets[b])
        block = np.asarray(frames[lo:hi], dtype=np.float32)
        fn = torch.from_numpy(block if normalized else normalize_rows(block))
        cos = (qt @ fn.T).numpy()  # (Q, n)
        out[:, a:b] = np.maximum.reduceat(cos, (offsets[a:b] - lo).astype(np.int64), axis=1)
    return out


def video_scores_for(qn: np.ndarray, frames: np.ndarray, offsets: np.ndarray, rows: np.ndarray,
                     normalized: bool = False, chunk_frames: int = 1 << 18) -> np.ndarray:
    """Exact ``S`` of queries ``qn (Q, D)`` for the videos ``rows (C,)`` only: ``(Q, C)`` float32.

    The frames of those videos are gathered in chunks (ascending rows read memory maps fastest).
    """
    rows = np.asarray(rows, dtype=np.int64)
    qt = torch.from_numpy(np.ascontiguousarray(qn, dtype=np.float32))
    out = np.empty((qt.shape[0], len(rows)), dtype=np.float32)
    lengths = (offsets[rows + 1] - offsets[rows]).astype(np.int64)
    local = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)  # offsets inside the gathered set
    for a, b in _video_chunks(local, chunk_frames):
        starts, lens = offsets[rows[a:b]], lengths[a:b]
        base = local[a:b] - local[a]
        idx = np.repeat(starts - base, lens) + np.arange(int(lens.sum()))
        order = np.argsort(idx, kind="stable")
        block = np.empty((len(idx), frames.shape[1]), dtype=np.float32)
        block[order] = frames[idx[order]]
        fn = torch.from_numpy(block if normalized else normalize_rows(block))
        out[:, a:b] = np.maximum.reduceat((qt @ fn.T).numpy(), base, axis=1)
    return out


def rescore(qn: np.ndarray, frames: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Exact ``S`` of one query ``qn (D,)`` for the videos ``rows (C,)``: ``(C,)`` float32."""
    if len(rows) == 0:
        return np.zeros(0, dtype=np.float32)
    return video_scores_for(np.asarray(qn)[None], frames, offsets, rows)[0]


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns of every row, descending (``torch.topk``): ``(values, indices)``."""
    t = torch.from_numpy(np.ascontiguousarray(scores))
    v, i = torch.topk(t, min(k, t.shape[1]), dim=1)
    return v.numpy(), i.numpy()


def faiss_top_videos(index, qn: np.ndarray, frames: np.ndarray, offsets: np.ndarray, k: int,
                     n_frames: int, normalized: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best videos of each query through FAISS, re-scored exactly.

    Args:
        index: a FAISS inner-product index over the normalised frames (row ``i`` = frame ``i``).
        qn: ``(Q, D)`` unit query vectors.
        k: videos to return; n_frames: frames asked from FAISS (candidates = their videos).
        normalized: the stored frames are unit vectors already.
    Returns:
        ``scores (Q, k)`` exact ``S`` descending and ``rows (Q, k)`` video rows; a query with fewer
        than ``k`` candidate videos is padded with row −1 and score −inf.

    The candidates of all queries are re-scored together: their frames are gathered once and
    scored with one matmul per chunk, then each query keeps its own candidates.
    """
    qn = np.ascontiguousarray(qn, dtype=np.float32)
    _, ids = index.search(qn, int(min(n_frames, index.ntotal)))
    owners = np.where(ids >= 0, np.searchsorted(offsets, np.maximum(ids, 0), side="right") - 1, -1)
    union = np.unique(owners[owners >= 0])
    scores = np.full((len(qn), k), -np.inf, dtype=np.float32)
    rows = np.full((len(qn), k), -1, dtype=np.int64)
    if len(union) == 0:
        return scores, rows
    exact = video_scores_for(qn, frames, offsets, union, normalized)  # (Q, U)
    mine = np.zeros(exact.shape, dtype=bool)
    q_idx = np.repeat(np.arange(len(qn)), owners.shape[1]).reshape(owners.shape)
    hit = owners >= 0
    mine[q_idx[hit], np.searchsorted(union, owners[hit])] = True
    exact[~mine] = -np.inf
    v, i = top_k(exact, k)
    found = np.isfinite(v)
    scores[:, :v.shape[1]] = np.where(found, v, -np.inf)
    rows[:, :v.shape[1]] = np.where(found, union[i], -1)
    return scores, rows


def build_faiss_index(dim: int, kind: str = "flat", nlist: int | None = None, hnsw_m: int = 32,
                      num_frames: int | None = None):
    """An empty FAISS inner-product index.

    Args:
        kind: ``flat`` (exact), ``ivf`` (inverted lists, float32 vectors), ``ivf-sq8`` (inverted
            lists, 8-bit scalar-quantised vectors: 4x less memory) or ``hnsw`` (graph).
        nlist: inverted lists (``ivf*``); default ``4·√num_frames``.
    Returns:
        the index; ``ivf*`` indexes need ``train`` before ``add``.
    """
    import faiss

    ip = faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind in ("ivf", "ivf-sq8"):
        nlist = nlist or max(1, int(4 * np.sqrt(max(num_frames or 1, 1))))
        quantizer = faiss.IndexFlatIP(dim)
        if kind == "ivf":
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, ip)
        else:
            index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, ip)
        return index  # faiss's Python wrapper keeps the quantizer alive with the index
    if kind == "hnsw":
        return faiss.IndexHNSWFlat(dim, hnsw_m, ip)
    raise ValueError(f"unknown FAISS index kind {kind!r}; use flat, ivf, ivf-sq8 or hnsw")


def set_search_effort(index, nprobe: int | None = None, ef_search: int | None = None) -> None:
    """Search-time effort of approximate indexes (``nprobe`` lists for IVF, ``efSearch`` for HNSW)."""
    import faiss

    if nprobe is not None:
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf.nprobe = int(nprobe)
    if ef_search is not None and hasattr(index, "hnsw"):
        index.hnsw.efSearch = int(ef_search)
