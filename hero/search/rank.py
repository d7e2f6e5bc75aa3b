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
                       chunk_frames: int = 1 << 18) -> np.ndarray:
    """``S`` of every query against every video, from all frames.

    Args:
        qn: ``(Q, D)`` unit query vectors.
        frames: ``(N, D)`` frame embeddings (any float dtype, e.g. a float16 memory map), raw.
        offsets: ``(V + 1,)``; every video needs at least one frame.
        chunk_frames: frames normalised and scored at once.
    Returns:
        ``(Q, V)`` float32.
    """
    qt = torch.from_numpy(np.ascontiguousarray(qn, dtype=np.float32))
    out = np.empty((qn.shape[0], len(offsets) - 1), dtype=np.float32)
    for a, b in _video_chunks(offsets, chunk_frames):
        lo, hi = int(offsets[a]), int(offsets[b])
        fn = torch.from_numpy(normalize_rows(frames[lo:hi]))
        cos = (qt @ fn.T).numpy()  # (Q, n)
        out[:, a:b] = np.maximum.reduceat(cos, (offsets[a:b] - lo).astype(np.int64), axis=1)
    return out


def rescore(qn: np.ndarray, frames: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Exact ``S`` of one query ``qn (D,)`` for the videos ``rows (C,)``: ``(C,)`` float32."""
    if len(rows) == 0:
        return np.zeros(0, dtype=np.float32)
    starts, ends = offsets[rows], offsets[rows + 1]
    lengths = ends - starts
    idx = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(lengths.sum())
    order = np.argsort(idx, kind="stable")  # memory maps read faster in ascending order
    gathered = np.empty((len(idx), frames.shape[1]), dtype=np.float32)
    gathered[order] = frames[idx[order]]
    cos = normalize_rows(gathered) @ np.asarray(qn, dtype=np.float32)
    return np.maximum.reduceat(cos, np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64))


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns of every row, descending (``torch.topk``): ``(values, indices)``."""
    t = torch.from_numpy(np.ascontiguousarray(scores))
    v, i = torch.topk(t, min(k, t.shape[1]), dim=1)
    return v.numpy(), i.numpy()


def faiss_top_videos(index, qn: np.ndarray, frames: np.ndarray, offsets: np.ndarray, k: int,
                     n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best videos of each query through FAISS, re-scored exactly.

    Args:
        index: a FAISS inner-product index over the normalised frames (row ``i`` = frame ``i``).
        qn: ``(Q, D)`` unit query vectors.
        k: videos to return; n_frames: frames asked from FAISS (candidates = their videos).
    Returns:
        ``scores (Q, k)`` exact ``S`` descending and ``rows (Q, k)`` video rows; a query with fewer
        than ``k`` candidate videos is padded with row −1 and score −inf.
    """
    qn = np.ascontiguousarray(qn, dtype=np.float32)
    _, ids = index.search(qn, int(min(n_frames, index.ntotal)))
    scores = np.full((len(qn), k), -np.inf, dtype=np.float32)
    rows = np.full((len(qn), k), -1, dtype=np.int64)
    for i, frame_ids in enumerate(ids):
        frame_ids = frame_ids[frame_ids >= 0]
        cand = np.unique(np.searchsorted(offsets, frame_ids, side="right") - 1)
        s = rescore(qn[i], frames, offsets, cand)
        best = np.argsort(-s, kind="stable")[:k]
        scores[i, :len(best)], rows[i, :len(best)] = s[best], cand[best]
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
