"""``hero index`` (encode a corpus into a search index) and ``hero search`` (query it by text).

    hero index --model runs/finetune-tvr --corpus data/tv --out indexes/tv [--faiss flat|ivf|ivf-sq8|hnsw]
    hero search --index indexes/tv "Sheldon knocks on Penny's door" [--top 10]

`hero search` prints the top moments: rank, video, start–end seconds, score (``P_st·exp(α·S)·P_ed``)
and the video's score ``S`` (max over its frames of the query–frame cosine).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hero.argtypes import positive_int


def add_arguments(p: argparse.ArgumentParser, name: str = "search") -> None:
    if name == "index":
        p.add_argument("--model", required=True, type=Path, help="fine-tuned VCMR/VR model, run dir or checkpoint")
        p.add_argument("--corpus", required=True, type=Path, help="prepared dataset directory")
        p.add_argument("--out", required=True, type=Path, help="index directory to write")
        p.add_argument("--dataset", help="index only the videos of this annotation dataset's --split")
        p.add_argument("--split", default="val")
        p.add_argument("--faiss", default="flat", choices=["flat", "ivf", "ivf-sq8", "hnsw"],
                       help="flat: exact; ivf / ivf-sq8 / hnsw: approximate, for millions of frames")
        p.add_argument("--nlist", type=positive_int, help="inverted lists of an ivf index (default 4*sqrt(frames))")
        p.add_argument("--hnsw-m", type=positive_int, default=32)
        p.add_argument("--dtype", default="float16", choices=["float16", "float32"], help="frames.npy storage")
        p.add_argument("--batch-size", type=positive_int, default=32, help="videos per encoder call")
        p.add_argument("--max-clip-len", type=positive_int, default=100)
        p.add_argument("--device", default="auto", help="auto, cpu or cuda")
        p.add_argument("--overwrite", action="store_true")
        return
    p.add_argument("--index", required=True, type=Path, help="index directory (hero index)")
    p.add_argument("query", nargs="+", help="query text (several words are joined)")
    p.add_argument("--top", type=positive_int, default=10, help="moments to print")
    p.add_argument("--videos", type=positive_int,
                   help="videos that get span scores (default: the model's max_vcmr_video)")
    p.add_argument("--exact", action="store_true", help="score every frame instead of going through FAISS")
    p.add_argument("--frames", type=positive_int, help="frames asked from FAISS (default max(200, 20 x videos))")
    p.add_argument("--nprobe", type=positive_int, help="ivf: lists visited per query")
    p.add_argument("--ef-search", type=positive_int, help="hnsw: search breadth")
    p.add_argument("--no-nms", action="store_true", help="no temporal NMS of overlapping moments")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    if args.command == "index":
        return _run_index(args)
    return _run_search(args)


def _run_index(args: argparse.Namespace) -> int:
    from hero.data.corpus import Corpus
    from hero.distributed import pick_device
    from hero.errors import HeroError
    from hero.model.checkpoint import resolve_model_dir
    from hero.search import build_index
    from hero.tasks.load import load_task_model
    from hero.tasks.retrieval import HeroForVcmr, split_videos

    model_dir = resolve_model_dir(args.model)
    _, cfg, model = load_task_model(model_dir)
    if not isinstance(model, HeroForVcmr):
        raise HeroError(f"{model_dir} holds a {type(model).__name__}; hero index needs a fine-tuned VCMR/VR model")
    device = pick_device(args.device, 0)
    model = model.to(device).eval()
    corpus = Corpus(args.corpus, max_clip_len=args.max_clip_len)
    vids = None
    if args.dataset:
        records = corpus.annotations(args.dataset, args.split)
        vids, _ = split_videos(corpus, args.dataset, args.split, records)
    build_index(args.out, model, corpus, vids=vids, model_dir=model_dir, cfg=cfg, batch_size=args.batch_size,
                device=device, dtype=args.dtype, kind=args.faiss, nlist=args.nlist, hnsw_m=args.hnsw_m,
                overwrite=args.overwrite)
    return 0


def _run_search(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    import sys

    from hero.distributed import pick_device
    from hero.errors import HeroError
    from hero.search import SearchIndex
    from hero.tasks.retrieval import inference_query_limit

    text = " ".join(args.query)
    if not text.strip():
        raise HeroError("the query is empty")
    index = SearchIndex(args.index, device=pick_device(args.device, 0))
    kept = inference_query_limit(index.model, index.cfg)
    n_tokens = len(index.tokenizer.encode(text)) if index.tokenizer is not None else 0
    if n_tokens > kept:  # the model has a position table of fixed size: the query is cut, as in evaluation
        print(f"hero search: note: the query has {n_tokens:,} tokens; the model reads the first {kept}",
              file=sys.stderr)
    hits = index.search(text, top=args.top, videos=args.videos, exact=args.exact, n_frames=args.frames,
                        nms=False if args.no_nms else None, nprobe=args.nprobe, ef_search=args.ef_search)
    if args.json:
        print(json.dumps({"query": text, "moments": [dataclasses.asdict(h) for h in hits]}, indent=2))
        return 0
    shown = text if len(text) <= 200 else f"{text[:200]}... ({len(text):,} characters)"
    print(f"query: {shown}")
    if not hits:
        print("no moment found")
        return 0
    width = max(len(h.vid) for h in hits)
    print(f"{'rank':>4}  {'video':<{width}}  {'start':>8}  {'end':>8}  {'score':>10}  {'video S':>8}")
    for rank, h in enumerate(hits, start=1):
        print(f"{rank:>4}  {h.vid:<{width}}  {h.start:>8.1f}  {h.end:>8.1f}  {h.score:>10.4g}  {h.video_score:>8.4f}")
    return 0
