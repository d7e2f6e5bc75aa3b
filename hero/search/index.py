"""A searchable, encoded corpus: build it once from a fine-tuned retrieval model, query it by text.

Layout of an index directory (written to a temporary sibling, renamed into place when complete)::

    meta.json      {"format": "hero-search-index", "format_version": 1, "num_videos", "num_frames",
                    "dim", "dtype", "frame_interval", "model": {"path", "sha256", "architecture"},
                    "corpus": {...}, "faiss": {"kind", "nlist", "hnsw_m"}, "task_config": {...}}
    frames.npy     (N, D) float16/float32 frame representations (temporal-transformer outputs),
                   videos one after another (memory-mapped at search time)
    offsets.npy    (V + 1,) int64: video v owns rows offsets[v]:offsets[v+1]
    vids.json      the V video ids, in row order
    faiss.index    FAISS inner-product index over the L2-normalised frames
    tokenizer/     the corpus tokenizer (queries are encoded with it)

A query runs: text → tokens → query vector (the model's query encoder) → FAISS top frames →
their videos, re-scored exactly (max over each video's frames of the cosine) → the best videos get
span scores ``P_st(m) · exp(α·S) · P_ed(n)`` under the length mask → moments in seconds.
The model itself is not copied: ``meta.json`` records its path and the SHA-256 of its weights,
checked when the index is opened.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hero.config import from_dict, merge_settings, to_dict
from hero.data.protocol import CorpusLike
from hero.errors import HeroError
from hero.io import check_replaceable, publish_dir, read_json, writing
from hero.search.rank import (
    build_faiss_index,
    exact_video_scores,
    faiss_top_videos,
    normalize_rows,
    set_search_effort,
    top_k,
)
from hero.tempdirs import make_temp_dir

FORMAT = "hero-search-index"
FORMAT_VERSION = 1


def weights_sha256(model_dir: str | os.PathLike) -> str:
    """SHA-256 of a saved model's ``model.safetensors``: the hash its ``config.json`` records (loading
    the model checks the file against it), else computed from the file (models saved before hashes
    were recorded)."""
    from hero.model.checkpoint import WEIGHTS_FILE, file_sha256, recorded_weights_hash

    return recorded_weights_hash(model_dir) or file_sha256(Path(model_dir) / WEIGHTS_FILE)


@dataclass
class Moment:
    """One search result: a moment of a video, in seconds."""

    vid: str
    start: float
    end: float
    score: float
    """``P_st · exp(α·S) · P_ed`` (comparable across videos of one query)."""
    video_score: float
    """``S``: max over the video's frames of the query–frame cosine."""


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------


_REPLACE_HOW = "--overwrite replaces only an earlier index; move it away or choose another --out"


def _load_npy(path: Path, mmap_mode: str | None = None) -> np.ndarray:
    """A ``.npy`` file of an index; a missing or damaged one is a `HeroError` naming it."""
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except FileNotFoundError:
        raise HeroError(f"{path}: missing; rebuild the index") from None
    except (OSError, ValueError, EOFError) as err:
        raise HeroError(f"{path}: cannot read ({err}); rebuild the index") from None


class IndexWriter:
    """Writes an index directory from frame embeddings, video by video, in bounded memory.

    Frames are appended to a raw file in a temporary sibling of ``out_dir``; `finish` turns them into
    ``frames.npy``, builds the FAISS index, writes the metadata and renames the directory into place.
    Used as a context manager, an exception removes the temporary directory.
    """

    def __init__(self, out_dir: str | os.PathLike, dim: int, dtype: str = "float16", overwrite: bool = False) -> None:
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not overwrite:
            raise HeroError(f"{self.out_dir} exists; pass overwrite=True (--overwrite) to replace it")
        check_replaceable(self.out_dir, kind=FORMAT, how=_REPLACE_HOW)
        if dtype not in ("float16", "float32"):
            raise HeroError(f"index dtype must be float16 or float32, got {dtype!r}")
        self.dim, self.dtype = int(dim), dtype
        self.vids: list[str] = []
        self.lengths: list[int] = []
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        # named with the pid: a SIGKILLed build's temporary is removed by the next build of this index
        self.tmp = make_temp_dir(self.out_dir)
        self._raw = open(self.tmp / "frames.raw", "wb")

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def add(self, vid: str, frames: np.ndarray) -> None:
        """Append the ``(n, D)`` frame embeddings of one video (``n ≥ 1``)."""
        frames = np.asarray(frames)
        if frames.ndim != 2 or frames.shape[1] != self.dim or frames.shape[0] < 1:
            raise HeroError(f"index: video {vid!r} has frames of shape {frames.shape}, expected (n >= 1, {self.dim})")
        if not np.isfinite(frames).all():
            raise HeroError(f"index: video {vid!r} has non-finite frame embeddings")
        with writing(self.out_dir):
            self._raw.write(np.ascontiguousarray(frames, dtype=self.dtype).tobytes())
        self.vids.append(vid)
        self.lengths.append(int(frames.shape[0]))

    def finish(self, frame_interval: float, kind: str = "flat", nlist: int | None = None, hnsw_m: int = 32,
               tokenizer: Any = None, extra_meta: dict[str, Any] | None = None, log=print) -> Path:
        """Write ``frames.npy``, ``offsets.npy``, ``vids.json``, ``faiss.index``, ``tokenizer/`` and
        ``meta.json``; rename into place. On any failure the temporary directory is removed and a
        previous index at ``out_dir`` is left as it was (a full disk: one `DiskFullError`)."""
        try:
            with writing(self.out_dir):
                return self._finish(frame_interval, kind, nlist, hnsw_m, tokenizer, extra_meta, log)
        except BaseException:
            self.abort()
            raise

    def _finish(self, frame_interval: float, kind: str, nlist: int | None, hnsw_m: int, tokenizer: Any,
                extra_meta: dict[str, Any] | None, log) -> Path:
        import faiss

        self._raw.close()
        if not self.vids:
            raise HeroError("no video to index")
        if len(set(self.vids)) != len(self.vids):
            raise HeroError("the videos to index hold duplicates")
        tmp, d = self.tmp, self.dim
        offsets = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)
        total = int(offsets[-1])
        # Written with write() calls, not through a writable memmap: on a full tmpfs a store into a
        # mapped page that cannot be allocated is a SIGBUS, where write() reports ENOSPC.
        with open(tmp / "frames.npy", "wb") as out, open(tmp / "frames.raw", "rb") as raw:
            np.lib.format.write_array_header_1_0(
                out, {"descr": np.lib.format.dtype_to_descr(np.dtype(self.dtype)), "fortran_order": False,
                      "shape": (total, d)})
            shutil.copyfileobj(raw, out, 1 << 24)
            out.flush()
        (tmp / "frames.raw").unlink()
        frames = np.load(tmp / "frames.npy", mmap_mode="r")
        np.save(tmp / "offsets.npy", offsets)
        (tmp / "vids.json").write_text(json.dumps(self.vids))
        index = _faiss_from_frames(frames, kind, nlist, hnsw_m, log)
        faiss.write_index(index, str(tmp / "faiss.index"))
        if tokenizer is not None and hasattr(tokenizer, "save"):
            tokenizer.save(tmp / "tokenizer")
        meta = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "num_videos": len(self.vids), "num_frames": total, "dim": d, "dtype": self.dtype,
            "frame_interval": float(frame_interval),
            "faiss": {"kind": kind, "nlist": getattr(index, "nlist", None),
                      "hnsw_m": hnsw_m if kind == "hnsw" else None},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **(extra_meta or {}),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        publish_dir(tmp, self.out_dir, how=_REPLACE_HOW)
        log(f"wrote {self.out_dir}: {len(self.vids)} videos, {total} frames, FAISS {kind}")
        return self.out_dir

    def abort(self) -> None:
        self._raw.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def model_meta(model: Any, model_dir: str | os.PathLike | None, cfg: Any) -> dict[str, Any]:
    """The ``model`` and ``task_config`` entries of ``meta.json``."""
    return {"model": {"path": str(Path(model_dir).resolve()) if model_dir else None,
                      "sha256": weights_sha256(model_dir) if model_dir else None,
                      "architecture": type(model).__name__},
            "task_config": dataclasses.asdict(cfg)}


def build_index(out_dir: str | os.PathLike, model: Any, corpus: CorpusLike, *, vids: Sequence[str] | None = None,
                model_dir: str | os.PathLike | None = None, cfg: Any = None, batch_size: int = 32,
                device: torch.device | str = "cpu", dtype: str = "float16", kind: str = "flat",
                nlist: int | None = None, hnsw_m: int = 32, chunk_videos: int = 1024, overwrite: bool = False,
                log=print) -> Path:
    """Encode ``vids`` (default: every video of the corpus) and write a search index.

    Args:
        model: a `HeroForVcmr`/`HeroForVr` (eval mode is set here).
        model_dir: where the model is saved (recorded with its weights' hash; needed by `SearchIndex`
            unless a model is passed to it).
        dtype: storage of ``frames.npy`` (``float16`` halves the disk and memory-map size).
        kind, nlist, hnsw_m: the FAISS index (`hero.search.rank.build_faiss_index`).
        chunk_videos: videos encoded, then appended to disk, at a time (bounds memory).
    """
    from hero.tasks.retrieval import encode_corpus

    cfg = cfg or model.task_config
    vids = list(corpus.video_ids() if vids is None else vids)
    known = set(corpus.video_ids())
    missing = [v for v in vids if v not in known]
    if missing:
        raise HeroError(f"{len(missing)} video(s) to index are not in the corpus, e.g. {missing[:5]}")
    model.eval()
    t0 = time.perf_counter()
    with IndexWriter(out_dir, model.config.hidden_size, dtype, overwrite) as writer:
        for s in range(0, len(vids), chunk_videos):
            enc = encode_corpus(model, corpus, vids[s:s + chunk_videos], batch_size, device, cfg)
            frames, lengths = enc.frames.float().cpu().numpy(), enc.mask.sum(1).tolist()
            for vid, f, n in zip(enc.vids, frames, lengths):
                writer.add(vid, f[:n])
            log(f"encoded {min(s + chunk_videos, len(vids))}/{len(vids)} videos ({time.perf_counter() - t0:.1f} s)")
        root = getattr(corpus, "root", None)
        extra = {**model_meta(model, model_dir, cfg), "corpus": {"path": str(Path(root).resolve()) if root else None}}
        return writer.finish(corpus.frame_interval, kind, nlist, hnsw_m, getattr(corpus, "tokenizer", None),
                             extra, log)


def _faiss_from_frames(frames: np.ndarray, kind: str, nlist: int | None, hnsw_m: int, log, chunk: int = 1 << 16):
    """A FAISS index over the normalised rows of ``frames``, filled in chunks."""
    n, d = frames.shape
    index = build_faiss_index(d, kind, nlist=nlist, hnsw_m=hnsw_m, num_frames=n)
    if not index.is_trained:
        nl = index.nlist
        if n < nl:
            raise HeroError(f"FAISS {kind}: {n} frames cannot train {nl} lists; use kind=flat or a smaller nlist")
        rs = np.random.RandomState(0)
        sample = np.sort(rs.choice(n, size=min(n, 64 * nl), replace=False))
        log(f"training FAISS {kind} ({nl} lists) on {len(sample)} frames")
        index.train(normalize_rows(frames[sample]))
    for s in range(0, n, chunk):
        index.add(normalize_rows(frames[s:s + chunk]))
    return index


# ---------------------------------------------------------------------------------------------
# Searching
# ---------------------------------------------------------------------------------------------


class SearchIndex:
    """An opened index directory (see module docstring).

    Args:
        directory: the index.
        model: the retrieval model; default: loaded from the path in ``meta.json``, whose weights
            must still have the recorded hash.
        device: where queries are encoded and spans scored.
        task_overrides: inference settings to change (``max_vcmr_video``, ``min_pred_l``, ``nms_thd``…;
            VSM ones nested: ``{"vsm": {"span_padding": "zeros"}}`` or ``{"vsm.span_padding": "zeros"}``).
    """

    def __init__(self, directory: str | os.PathLike, model: Any = None, device: torch.device | str = "cpu",
                 task_overrides: dict[str, Any] | None = None, tokenizer: Any = None) -> None:
        import faiss

        self.directory = Path(directory)
        path = self.directory / "meta.json"
        if not path.is_file():
            raise HeroError(f"{self.directory}: not a search index (no meta.json); build one with `hero index`")
        self.meta = read_json(path, expect=dict)
        if self.meta.get("format") != FORMAT:
            raise HeroError(f"{path}: 'format' is {self.meta.get('format')!r}, expected {FORMAT!r}")
        if self.meta.get("format_version", 0) > FORMAT_VERSION:
            raise HeroError(f"{path}: format_version {self.meta['format_version']} is newer than this library "
                            f"reads ({FORMAT_VERSION})")
        for key in ("num_frames", "num_videos", "dim"):
            value = self.meta.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise HeroError(f"{path}: {key!r} must be a non-negative integer, got {value!r}; rebuild the index")
        self.frames = _load_npy(self.directory / "frames.npy", mmap_mode="r")
        self.offsets = _load_npy(self.directory / "offsets.npy")
        vids_file = self.directory / "vids.json"
        self.vids = read_json(vids_file, expect=list)
        if not all(isinstance(v, str) for v in self.vids):
            raise HeroError(f"{vids_file}: expected a JSON list of video ids (strings); rebuild the index")
        n, v = int(self.meta["num_frames"]), int(self.meta["num_videos"])
        if self.frames.shape != (n, self.meta["dim"]) or len(self.offsets) != v + 1 or len(self.vids) != v \
                or int(self.offsets[-1]) != n:
            raise HeroError(f"{self.directory}: frames.npy / offsets.npy / vids.json disagree with meta.json "
                            f"({n} frames, {v} videos); rebuild the index")
        try:
            self.index = faiss.read_index(str(self.directory / "faiss.index"))
        except RuntimeError as err:
            reason = "missing" if not (self.directory / "faiss.index").is_file() else "not a FAISS index"
            raise HeroError(f"{self.directory / 'faiss.index'}: cannot read ({reason}); rebuild the index") from err
        if self.index.ntotal != n:
            raise HeroError(f"{self.directory}/faiss.index holds {self.index.ntotal} vectors, expected {n}")
        self.device = torch.device(device)
        self.model = model if model is not None else self._load_model(task_overrides)
        self.model = self.model.to(self.device).eval()
        cfg = self.model.task_config
        # a partial ``vsm`` mapping (or a dotted ``vsm.span_padding`` key) changes only those keys
        self.cfg = (from_dict(type(cfg), merge_settings(to_dict(cfg), task_overrides), where="task_overrides")
                    if task_overrides else cfg)
        if tokenizer is None and (self.directory / "tokenizer").is_dir():
            from hero.data.tokenizer import Tokenizer

            tokenizer = Tokenizer.load(self.directory / "tokenizer")
        self.tokenizer = tokenizer
        self.interval = float(self.meta["frame_interval"])

    def _load_model(self, overrides: dict[str, Any] | None):
        from hero.tasks.load import load_task_model

        info = self.meta.get("model") or {}
        path = info.get("path")
        if not path:
            raise HeroError(f"{self.directory}/meta.json records no model path; pass the model explicitly")
        if not Path(path, "model.safetensors").is_file():
            raise HeroError(f"{self.directory}: the index was built with the model at {path}, which is gone")
        if info.get("sha256") and weights_sha256(path) != info["sha256"]:
            raise HeroError(f"{self.directory}: the model at {path} changed since the index was built "
                            f"(weights hash differs); rebuild the index")
        return load_task_model(path, overrides)[2]

    def __len__(self) -> int:
        return len(self.vids)

    # -- stages ---------------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, queries: Sequence[str] | Sequence[Sequence[int]]) -> torch.Tensor:
        """Query vectors ``(Q, D)`` of texts (tokenised with the index's tokenizer) or token-id lists."""
        from hero.tasks.retrieval import encode_queries

        ids = [self._ids(q) for q in queries]
        tokens = self.tokenizer.tokens if self.tokenizer is not None else _default_tokens()
        return encode_queries(self.model, tokens, ids, self.cfg, len(ids) or 1, self.device)

    def _ids(self, query: str | Sequence[int]) -> list[int]:
        if isinstance(query, str):
            if not query.strip():
                raise HeroError("the query is empty")
            if self.tokenizer is None:
                raise HeroError(f"{self.directory} has no tokenizer/; pass token ids or a tokenizer")
            ids = self.tokenizer.encode(query)
            if not ids:
                raise HeroError(f"the query {query!r} has no token")
            return ids
        return [int(t) for t in query]

    def top_videos(self, q: torch.Tensor, k: int, exact: bool = False, n_frames: int | None = None,
                   nprobe: int | None = None, ef_search: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best videos of each query vector: ``S (Q, k)`` descending and rows ``(Q, k)``
        (row −1 / −inf where FAISS found fewer candidates).

        ``exact``: score every frame; otherwise FAISS top ``n_frames`` frames (default ``20·k``,
        at least 200), their videos re-scored exactly.
        """
        qn = normalize_rows(q.float().cpu().numpy())
        if exact:
            return top_k(exact_video_scores(qn, self.frames, self.offsets), k)
        set_search_effort(self.index, nprobe, ef_search)
        return faiss_top_videos(self.index, qn, self.frames, self.offsets, k, n_frames or max(200, 20 * k))

    def video_encoding(self, rows: Sequence[int]):
        """`CorpusEncoding` of the videos ``rows`` (frames zero-padded), on the index's device."""
        from hero.tasks.retrieval import CorpusEncoding

        rows = [int(r) for r in rows]
        lengths = [int(self.offsets[r + 1] - self.offsets[r]) for r in rows]
        length = max(lengths, default=1)
        frames = np.zeros((len(rows), length, self.frames.shape[1]), dtype=np.float32)
        for i, r in enumerate(rows):
            frames[i, :lengths[i]] = self.frames[self.offsets[r]:self.offsets[r + 1]]
        mask = np.arange(length)[None, :] < np.asarray(lengths)[:, None]
        return CorpusEncoding([self.vids[r] for r in rows], torch.from_numpy(frames).to(self.device),
                              torch.from_numpy(mask).to(self.device))

    # -- the whole query ------------------------------------------------------------------------

    @torch.no_grad()
    def search(self, queries: str | Sequence[str] | Sequence[Sequence[int]], top: int = 10,
               videos: int | None = None, exact: bool = False, n_frames: int | None = None,
               nms: bool | None = None, nprobe: int | None = None,
               ef_search: int | None = None) -> list[Moment] | list[list[Moment]]:
        """The ``top`` moments of each query, best first.

        Args:
            queries: a text, or a list of texts or of token-id lists.
            videos: videos that get span scores (default ``max_vcmr_video`` of the model's settings).
            exact: rank videos over every frame instead of through FAISS.
            nms: temporal NMS at ``nms_thd`` (default: when ``nms_thd ≠ −1``), per video, as the reference.
        Returns:
            a list of `Moment` for a single text, else one list per query.

        The moments are ranked by `hero.tasks.retrieval.rank_moments`, as `hero predict` ranks them
        (the same ``max_before_nms`` / ``max_after_nms`` caps, NMS as `apply_nms`), over the index's
        stored frames: real frames only, i.e. ``span_padding: zeros``.
        """
        from hero.eval import moments as mo
        from hero.tasks.retrieval import rank_moments

        single = isinstance(queries, str)
        qs = [queries] if single else list(queries)
        cfg = self.cfg
        k = min(videos or cfg.max_vcmr_video, len(self.vids))
        s, rows = self.top_videos(self.encode(qs), k, exact, n_frames, nprobe, ef_search)
        use_nms = cfg.nms_thd != -1 if nms is None else nms
        keep = max(top, cfg.max_after_nms)
        tokens = self.tokenizer.tokens if self.tokenizer is not None else _default_tokens()
        out = []
        for i, query in enumerate(qs):
            found = rows[i] >= 0
            r, si = rows[i][found], s[i][found]
            if len(r) == 0:
                out.append([])
                continue
            # this query's candidate videos, as rows 0..len(r)-1 of their own encoding
            local = torch.arange(len(r))[None]
            ranked = rank_moments(self.model, tokens, [self._ids(query)], [0], self.video_encoding(r), cfg,
                                  self.interval, candidates=(torch.from_numpy(si)[None], local), tasks=("VCMR",),
                                  keep=keep, device=self.device)
            entries = ranked["VCMR"][0]["predictions"]
            if use_nms:
                entries = mo.nms_vcmr(entries, cfg.nms_thd, cfg.max_before_nms, keep)
            out.append([Moment(self.vids[int(r[int(v)])], float(a), float(b), float(c), float(si[int(v)]))
                        for v, a, b, c in entries[:top]])
        return out[0] if single else out


def _default_tokens():
    from hero.config import TextTokens

    return TextTokens()
