"""Benchmark: greedy TVC decoding with a key/value cache vs the reference's re-decoding.

The reference (``TvcGenerator.greedy_decode``) re-runs the decoder over the whole prefix at every
step and scores every position through the 50,272-way output head, for all ``max_gen_step`` steps.
Ours (`hero.tasks.captioning.greedy_decode`) embeds only the newest token, appends its
self-attention keys/values to a per-layer cache, projects the memory keys/values once and scores
only the newest position. Both run here on the same model and memory, with early stopping off (a
randomly initialised model never emits ``</s>``), and must return identical tokens.

Model: ``hero_base`` with the reference TVC decoder (hidden 768, 2 layers, 12 heads, FFN 3072,
vocabulary 50,272). Input: ``--captions`` moments of 3–16 encoded frames (random, seeded). CPU, fp32.

Usage:
    python benchmarks/bench_decode.py [--captions 32] [--steps 30] [--repeats 3] [--out benchmarks/results/decode.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(fn, repeats: int) -> tuple[list[float], object]:
    out, times = None, []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30, help="max_gen_step (reference: 30)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "decode.json")
    args = parser.parse_args()

    import torch

    from hero.config import TextTokens, hero_base
    from hero.tasks.captioning import HeroForTvc, TvcConfig, greedy_decode

    torch.manual_seed(args.seed)
    config, cfg = hero_base(), TvcConfig(max_gen_step=args.steps)
    model = HeroForTvc(config, cfg).eval()
    gen = torch.Generator().manual_seed(args.seed)
    lengths = torch.randint(3, 17, (args.captions,), generator=gen)
    mask = torch.arange(int(lengths.max()))[None, :] < lengths[:, None]
    memory = torch.randn(args.captions, mask.shape[1], config.hidden_size, generator=gen) * mask[..., None]
    tokens = TextTokens()

    def run(use_cache: bool):
        return greedy_decode(model, memory, mask, tokens.cls_id, tokens.sep_id, args.steps,
                             use_cache=use_cache, early_stop=False)

    run(True), run(False)  # warm-up
    cached_times, cached = timed(lambda: run(True), args.repeats)
    naive_times, naive = timed(lambda: run(False), args.repeats)
    same = bool(torch.equal(cached, naive))
    cached_s, naive_s = statistics.median(cached_times), statistics.median(naive_times)
    result = {
        "benchmark": "decode",
        "model": "hero_base + TVC decoder (2 layers, hidden 768, vocab 50272)",
        "captions": args.captions,
        "steps": args.steps,
        "memory_frames": {"min": int(lengths.min()), "mean": float(lengths.float().mean()),
                          "max": int(lengths.max())},
        "dtype": "fp32",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "same_tokens": same,
        "naive_redecode": {"seconds": naive_s, "times": naive_times,
                           "captions_per_s": args.captions / naive_s},
        "kv_cache": {"seconds": cached_s, "times": cached_times, "captions_per_s": args.captions / cached_s},
        "speedup": naive_s / cached_s,
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"naive re-decoding {naive_s:.2f} s, KV cache {cached_s:.2f} s: {result['speedup']:.1f}x; "
          f"same tokens: {same}; wrote {args.out}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
