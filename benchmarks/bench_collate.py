"""Benchmark: data loading and collation of ``hero_base``-shaped pre-training batches.

Builds an on-disk corpus (our LMDB stores, float16 features) of clips following the batch
specification of ``reference_speed.md`` (40–100 frames, 4352-d features, sentences of 8–20 tokens
covering 2–3 frames each), then, for each pre-training objective, times batches of 32 clips:

* ``read``: ``Corpus.clip(vid)`` for the 32 clips (LMDB read, float16 → float32, loader groups);
* ``collate``: the objective's collate on clips already read (masking, packing, every index);
* ``read+collate``: both, what one DataLoader worker does per batch.

Clips/s are single-threaded (one worker); ``num_workers`` workers scale it roughly linearly. The
target is at least 5× the bf16 training-step rate of ``benchmarks/results/pretrain_step.json``
(the foundation benchmark), when that file exists.

Usage:
    python benchmarks/bench_collate.py [--videos 96] [--batches 8] [--out benchmarks/results/collate.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OBJECTIVES = ("mlm", "mfm-nce", "fom", "vsm")
MIX = {"mlm": 2, "mfm-nce": 2, "fom": 1, "vsm": 2}


def write_corpus(root: Path, num_videos: int, dim: int, interval: float = 1.5) -> list[str]:
    """A corpus directory of benchmark clips, written with the store writers (no tokenizer needed)."""
    from hero.config import TextTokens
    from hero.data.build import CORPUS_FORMAT
    from hero.data.stores import FORMAT_VERSION, SubtitleStoreWriter, VideoStoreWriter, write_json
    from hero.data.synthetic import random_clips

    clips = random_clips(num_videos, dim, seed=0)
    tokens = TextTokens()
    root.mkdir(parents=True)
    with VideoStoreWriter(root / "video", frame_interval=interval,
                          features=[("resnet152", 2048), ("slowfast_r50", dim - 2048)] if dim == 4352
                          else [("features", dim)]) as videos, \
            SubtitleStoreWriter(root / "subtitles", frame_interval=interval) as subs:
        for clip in clips:
            videos.add(clip.vid, clip.features.numpy())
            subs.add(clip.vid, {
                "vid": clip.vid, "nframes": clip.num_frames,
                "subs": [{"start": fr[0] * interval, "end": (fr[-1] + 1) * interval, "text": "", "speaker": None}
                         for _, fr in clip.sub2frames],
                "input_ids": clip.subtitles, "unique_sub2frames": [[k, fr] for k, fr in clip.sub2frames],
                "unmatched_frames": [], "pseudo": False})
    write_json(root / "corpus.json", {
        "format": CORPUS_FORMAT, "format_version": FORMAT_VERSION, "name": "bench", "frame_interval": interval,
        "tokenizer": {"name_or_path": "roberta-base", "local_dir": None, "vocab_size": 50265,
                      "tokens": {"cls_id": tokens.cls_id, "pad_id": tokens.pad_id, "sep_id": tokens.sep_id,
                                 "unk_id": tokens.unk_id, "mask_id": tokens.mask_id,
                                 "random_range": list(tokens.random_range)}},
        "created_by": {"builder": "benchmarks/bench_collate.py"}})
    return [c.vid for c in clips]


def time_objective(corpus, objective, name: str, vids: list[str], batch: int, batches: int, seed: int) -> dict:
    import numpy as np
    import torch

    rs = np.random.RandomState(seed)
    draws = [list(rs.choice(vids, batch, replace=False)) for _ in range(batches + 1)]
    extra = {"use_span": False} if name == "vsm" else {}
    read, coll, both = [], [], []
    for i, chosen in enumerate(draws):
        gen = torch.Generator().manual_seed(seed + i)
        t0 = time.perf_counter()
        clips = [corpus.clip(v) for v in chosen]
        t1 = time.perf_counter()
        out = objective.collate(clips, gen, **extra)
        t2 = time.perf_counter()
        del out
        if i == 0:
            continue  # warm-up (first LMDB touch, allocator)
        read.append(t1 - t0)
        coll.append(t2 - t1)
        both.append(t2 - t0)
    med = {k: statistics.median(v) for k, v in (("read", read), ("collate", coll), ("read+collate", both))}
    return {k: {"seconds_per_batch": s, "clips_per_s": batch / s} for k, s in med.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=96, help="videos in the on-disk store")
    parser.add_argument("--clips", type=int, default=32, help="clips per batch")
    parser.add_argument("--batches", type=int, default=8, help="timed batches per objective (after 1 warm-up)")
    parser.add_argument("--dim", type=int, default=4352)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a DataLoader worker uses 1)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "collate.json")
    args = parser.parse_args()

    import torch

    from hero.data.corpus import Corpus
    from hero.objectives import OBJECTIVES as REGISTRY

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hero-bench-collate-") as scratch:
        root = Path(scratch) / "corpus"
        t = time.perf_counter()
        vids = write_corpus(root, args.videos, args.dim)
        build_s = time.perf_counter() - t
        store_bytes = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
        corpus = Corpus(root)
        tokens = corpus.tokens
        results = {}
        for name in OBJECTIVES:
            cfg_cls, cls = REGISTRY[name]
            results[name] = time_objective(corpus, cls(cfg_cls(), tokens), name, vids, args.clips, args.batches,
                                           seed=1)
            r = results[name]
            print(f"{name:8s} read {r['read']['clips_per_s']:8.1f} clips/s   collate "
                  f"{r['collate']['clips_per_s']:8.1f} clips/s   read+collate {r['read+collate']['clips_per_s']:8.1f} "
                  f"clips/s", flush=True)

    total = sum(MIX.values())
    mix_s = sum(MIX[n] / total * results[n]["read+collate"]["seconds_per_batch"] for n in OBJECTIVES)
    mix = {"seconds_per_batch": mix_s, "clips_per_s": args.clips / mix_s}
    print(f"mix 2:2:1:2 read+collate {mix['clips_per_s']:.1f} clips/s")
    target = None
    step_file = ROOT / "benchmarks" / "results" / "pretrain_step.json"
    if step_file.is_file():
        step = json.loads(step_file.read_text())
        bf16 = step.get("runs", {}).get("bf16", {}).get("objectives", {}).get("mix", {}).get("clips_per_s")
        if bf16:
            target = {"bf16_step_clips_per_s": bf16, "required_clips_per_s": 5 * bf16,
                      "ratio_one_worker": mix["clips_per_s"] / bf16}
            print(f"bf16 training step: {bf16:.2f} clips/s; one worker collates {target['ratio_one_worker']:.1f}× that "
                  f"(target ≥ 5×)")
    report = {
        "benchmark": "collate", "clips_per_batch": args.clips, "videos_in_store": args.videos, "dim": args.dim,
        "store": {"dtype": "float16", "bytes": store_bytes, "build_seconds": build_s},
        "timed_batches": args.batches, "threads": args.threads, "objectives": results, "mix": mix, "target": target,
        "command": "python benchmarks/bench_collate.py " + " ".join(sys.argv[1:]),
        "torch": torch.__version__, "python": platform.python_version(), "cpu": platform.machine(),
        "wall_seconds": time.perf_counter() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out} ({report['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
