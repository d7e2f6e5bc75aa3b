"""Benchmark: corpus-scale retrieval inference at ``hero_base`` width (768-d frame embeddings).

For corpora of 1k, 10k and 100k synthetic videos it measures

1. **Corpus encoding** (the HERO video encoder, once per corpus): timed on a small sample of
   ``hero_base`` clips (4352-d features, subtitles) and **extrapolated linearly** to the corpus sizes
   (one process; encoding is embarrassingly parallel and shards across ranks). Query encoding is
   timed the same way (per query).
2. **The ranking stage, for real**, on synthetic frame embeddings stored as float16 (clustered around
   topic directions, as real embeddings are; queries are noisy copies of random frames):
   * *exact*: every frame of the corpus scored, max over each video's frames, ``torch.topk``;
   * *FAISS*: an inverted-file index over the normalised frames (``ivf`` flat vectors below 1M
     frames, ``ivf-sq8`` 8-bit vectors above), top frames → candidate videos → exact
     max-over-frames re-score → top videos; at several ``nprobe``. Recall@10 / @100 of its top
     videos against the exact ranking.
   * *span stage*: span scores ``P_st · exp(α·S) · P_ed`` of the top ``K`` videos of a query
     (``hero_base`` VSM head), whose cost does not depend on the corpus size; scoring every video
     of the corpus this way is extrapolated from it, to show why only the top ``K`` are scored.

At 100k videos the default is 8 frames per video (0.8M frames, 1.2 GB in float16) instead of ~30
(4.6 GB), to fit the shared test machine; ``--frames-large`` changes it.

Usage:
    python benchmarks/bench_retrieval.py [--sizes 1000 10000 100000] [--queries 64]
        [--out benchmarks/results/retrieval.json]

Writes JSON (settings, machine, timings, recalls).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(fn, repeats: int = 3) -> tuple[float, object]:
    """Median seconds of ``fn()`` over ``repeats`` calls (after one warm-up) and its last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def synthetic_embeddings(num_videos: int, frames_per_video: int, dim: int, videos_per_topic: int = 200,
                         seed: int = 0, chunk: int = 1 << 17) -> tuple[np.ndarray, np.ndarray]:
    """float16 ``(N, dim)`` unit frames with graded structure: topic centre → video centre → frame
    (so a query has a neighbourhood of related videos at every corpus size), generated in chunks."""
    from hero.search.rank import normalize_rows

    rs = np.random.default_rng(seed)
    topics = max(1, num_videos // videos_per_topic)
    centers = rs.standard_normal((topics, dim), dtype=np.float32)
    video_centers = centers[rs.integers(0, topics, size=num_videos)]
    video_centers += 0.7 * rs.standard_normal(video_centers.shape, dtype=np.float32)
    n = num_videos * frames_per_video
    frames = np.empty((n, dim), dtype=np.float16)
    owner = np.repeat(np.arange(num_videos), frames_per_video)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        noise = rs.standard_normal((e - s, dim), dtype=np.float32)
        frames[s:e] = normalize_rows(video_centers[owner[s:e]] + 0.7 * noise)
    offsets = np.arange(num_videos + 1, dtype=np.int64) * frames_per_video
    return frames, offsets


def make_queries(frames: np.ndarray, n: int, seed: int = 1) -> np.ndarray:
    from hero.search.rank import normalize_rows

    rs = np.random.RandomState(seed)
    picks = rs.randint(0, len(frames), size=n)
    noise = rs.randn(n, frames.shape[1]).astype(np.float32) / np.sqrt(frames.shape[1])
    return normalize_rows(frames[picks].astype(np.float32) + 0.7 * noise)


def recall(exact_rows: np.ndarray, rows: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(exact_rows, rows)]))


def encoder_costs(sample: int, frames: int, queries: int, log) -> dict:
    """Seconds per video (``hero_base`` video encoder) and per query (query encoder), measured."""
    import torch

    from hero.config import TextTokens, hero_base
    from hero.data.batch import collate_video
    from hero.data.synthetic import random_clips
    from hero.tasks.retrieval import HeroForVcmr, encode_queries

    torch.manual_seed(0)
    model = HeroForVcmr(hero_base()).eval()
    clips = random_clips(sample, 4352, min_frames=frames, max_frames=frames, seed=0)
    groups = [[(f, [2, *clip.subtitles[s]]) for s, f in clip.sub2frames] for clip in clips]
    video = collate_video([c.features for c in clips], groups)
    with torch.no_grad():
        t_video, _ = timed(lambda: model.hero.encode_video(video), repeats=2)

    class Toks:
        tokens = TextTokens()

    rs = np.random.RandomState(0)
    ids = [rs.randint(4, 50000, size=12).tolist() for _ in range(queries)]
    with torch.no_grad():
        t_query, q = timed(lambda: encode_queries(model, Toks, ids, model.task_config, queries), repeats=2)
    log(f"encoder: {t_video / sample * 1e3:.1f} ms/video ({frames} frames), {t_query / queries * 1e3:.2f} ms/query")
    return {"model": model, "video_s": t_video / sample, "query_s": t_query / queries, "sample_videos": sample,
            "frames_per_video": frames, "q": q}


def span_stage_cost(model, q, k: int, frames: int, log) -> float:
    """Seconds per query of span scoring on its top ``k`` videos (hero_base VSM head + top moments)."""
    import torch

    from hero.eval import moments as mo
    from hero.tasks.retrieval import CorpusEncoding, span_probabilities_on

    cfg = model.task_config
    gen = torch.Generator().manual_seed(0)
    enc = CorpusEncoding([f"v{i}" for i in range(k)], torch.randn(k, frames, q.shape[1], generator=gen),
                         torch.ones(k, frames, dtype=torch.bool))
    rows = torch.arange(k)[None].expand(q.shape[0], -1)
    w = torch.rand(q.shape[0], k, generator=gen)
    mask = mo.length_mask(frames, cfg.min_pred_l, cfg.max_pred_l)

    def run():
        with torch.no_grad():
            st, ed = span_probabilities_on(model, q, enc, rows, cfg)
            return mo.top_vcmr_moments(st, ed, w, mask, cfg.max_before_nms)

    t, _ = timed(run, repeats=2)
    log(f"span stage: {t / q.shape[0] * 1e3:.2f} ms/query for the top {k} videos of {frames} frames")
    return t / q.shape[0]


def bench_size(num_videos: int, frames_per_video: int, dim: int, num_queries: int, nprobes: list[int],
               log) -> dict:
    import faiss

    from hero.search.rank import (
        build_faiss_index,
        exact_video_scores,
        faiss_top_videos,
        normalize_rows,
        set_search_effort,
        top_k,
    )

    t = time.perf_counter()
    frames, offsets = synthetic_embeddings(num_videos, frames_per_video, dim)
    gen_s = time.perf_counter() - t
    n = len(frames)
    qn = make_queries(frames, num_queries)
    log(f"{num_videos} videos x {frames_per_video} frames = {n} frames ({frames.nbytes / 2**30:.2f} GiB fp16), "
        f"generated in {gen_s:.1f} s")

    # frames are stored unit-norm (normalised once at indexing), so exact scoring is one matmul per chunk
    t_exact, (exact_s, exact_rows) = timed(
        lambda: top_k(exact_video_scores(qn, frames, offsets, normalized=True), 100), repeats=1)
    log(f"  exact: {num_queries / t_exact:.1f} queries/s")

    kind = "ivf" if n < 1_000_000 // 2 else "ivf-sq8"
    nlist = int(min(1024, max(16, 4 * np.sqrt(n))))
    t = time.perf_counter()
    index = build_faiss_index(dim, kind, nlist=nlist)
    rs = np.random.RandomState(0)
    train = normalize_rows(frames[np.sort(rs.choice(n, size=min(n, 40 * nlist), replace=False))])
    index.train(train)
    for s in range(0, n, 1 << 17):
        index.add(normalize_rows(frames[s:s + (1 << 17)]))
    build_s = time.perf_counter() - t
    log(f"  FAISS {kind} ({nlist} lists) built in {build_s:.1f} s")
    runs = []
    for nprobe in nprobes:
        set_search_effort(index, nprobe=nprobe)
        for k, n_frames in ((10, 300), (100, 2000)):
            secs, (s, rows) = timed(lambda k=k, n_frames=n_frames: faiss_top_videos(
                index, qn, frames, offsets, k, n_frames, normalized=True), repeats=1)
            runs.append({"nprobe": nprobe, "top_videos": k, "faiss_frames": n_frames,
                         "queries_per_s": num_queries / secs, "s_per_query": secs / num_queries,
                         f"recall@{k}": recall(exact_rows, rows, k),
                         "recall@1": recall(exact_rows, rows, 1)})
            log(f"  FAISS nprobe {nprobe}, {n_frames} frames -> top {k}: {num_queries / secs:.1f} queries/s, "
                f"recall@{k} {runs[-1][f'recall@{k}']:.3f}, recall@1 {runs[-1]['recall@1']:.3f}")
    out = {"videos": num_videos, "frames_per_video": frames_per_video, "frames": n, "dim": dim,
           "frames_gib_fp16": frames.nbytes / 2**30,
           "exact": {"queries_per_s": num_queries / t_exact, "s_per_query": t_exact / num_queries},
           "faiss": {"kind": kind, "nlist": nlist, "build_s": build_s, "train_frames": len(train),
                     "index_bytes": int(faiss.serialize_index(index).nbytes), "runs": runs}}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    p.add_argument("--frames", type=int, default=30, help="frames per video below 100k videos")
    p.add_argument("--frames-large", type=int, default=8, help="frames per video at >= 100k videos")
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--queries", type=int, default=64)
    p.add_argument("--nprobe", type=int, nargs="+", default=[16, 64])
    p.add_argument("--encoder-sample", type=int, default=4, help="hero_base clips timed for the encoder cost")
    p.add_argument("--top-videos", type=int, default=100, help="K: videos that get span scores")
    p.add_argument("--threads", type=int, default=0, help="torch/FAISS threads (0: library default)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "retrieval.json")
    args = p.parse_args()

    import faiss
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    enc = encoder_costs(args.encoder_sample, args.frames, args.queries, log)
    span_s = span_stage_cost(enc["model"], enc["q"], args.top_videos, args.frames, log)
    del enc["model"], enc["q"]
    sizes = []
    for v in args.sizes:
        fpv = args.frames_large if v >= 100_000 else args.frames
        r = bench_size(v, fpv, args.dim, args.queries, args.nprobe, log)
        r["encode_corpus_s_extrapolated"] = enc["video_s"] * v * fpv / args.frames
        r["span_all_videos_s_per_query_extrapolated"] = span_s * v / args.top_videos
        sizes.append(r)
    result = {
        "benchmark": "retrieval",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "faiss": faiss.__version__, "torch_threads": torch.get_num_threads()},
        "notes": ["corpus encoding is measured on a sample of hero_base clips and extrapolated linearly "
                  "(per frame) to each corpus size; ranking numbers are measured on synthetic float16 "
                  "embeddings of hero_base width",
                  f"at >= 100k videos, {args.frames_large} frames per video instead of {args.frames}"],
        "encoder": {"s_per_video": enc["video_s"], "s_per_query": enc["query_s"],
                    "sample_videos": enc["sample_videos"], "frames_per_video": enc["frames_per_video"]},
        "span_stage": {"top_videos": args.top_videos, "frames_per_video": args.frames, "s_per_query": span_s},
        "sizes": sizes,
        "wall_s": time.perf_counter() - t0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)
    log(f"wrote {args.out} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
