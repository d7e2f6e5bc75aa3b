"""Benchmark: one pre-training step of ``hero_base`` on the shared batch specification.

Times forward + loss + backward + gradient clipping (1.0) + AdamW step for each objective (MLM,
MNCE, FOM, VSM with the span branch off and on) and for the 2:2:1:2 mix, in fp32 and under bf16
autocast, on the batch of ``reference_speed.md`` (32 clips of 40–100 frames, 847 sentences, 11,953
tokens, 2,110 frames). Reports clips/s, model FLOPs (counted by ``torch.utils.flop_counter``), the
achieved FLOP/s as a fraction of the matmul peak measured in the same run for the same dtype, the
peak resident memory of each dtype's process, and a per-operator profile of the bf16 mix.

Usage:
    python benchmarks/bench_pretrain_step.py [--clips 32] [--steps 3] [--out benchmarks/results/pretrain_step.json]

Each dtype runs in its own subprocess (so peak memory is per dtype). Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MIX = {"mlm": 2, "mfm-nce": 2, "fom": 1, "vsm": 2}
VSM_SPAN_PROB = 0.2  # the span branch runs in 1 - drop_svmr_prob = 20% of VSM steps


def matmul_peak(dtype, n: int = 4096, repeats: int = 7) -> float:
    """Median FLOP/s of an n×n matmul in ``dtype``."""
    import torch

    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    for _ in range(2):
        torch.mm(a, b, out=out)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b, out=out)
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times)


def build(num_clips: int, seed: int = 0):
    import torch

    from hero.config import TextTokens, hero_base
    from hero.data.synthetic import benchmark_clips
    from hero.objectives import FomObjective, HeroForPretraining, MfmObjective, MlmObjective, VsmObjective

    torch.manual_seed(seed)
    model = HeroForPretraining(hero_base()).train()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(p)
    optim = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                              lr=3e-5, betas=(0.9, 0.98), eps=1e-6, fused=True)
    tokens = TextTokens()
    clips = benchmark_clips(num_clips, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    objectives = {"mlm": MlmObjective(tokens=tokens), "mfm-nce": MfmObjective(tokens=tokens),
                  "fom": FomObjective(tokens=tokens), "vsm": VsmObjective(tokens=tokens)}
    batches = {
        "mlm": objectives["mlm"].collate(clips, gen),
        "mfm-nce": objectives["mfm-nce"].collate(clips, gen),
        "fom": objectives["fom"].collate(clips, gen),
        "vsm": objectives["vsm"].collate(clips, gen, use_span=False),
        "vsm+span": objectives["vsm"].collate(clips, gen, use_span=True),
    }
    objectives["vsm+span"] = objectives["vsm"]
    return model, optim, objectives, batches


def run_dtype(dtype_name: str, num_clips: int, steps: int, profile: bool) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    model, optim, objectives, batches = build(num_clips)

    def step(name: str) -> None:
        optim.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype_name == "bf16"):
            loss = objectives[name](model, batches[name])["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()

    results = {}
    for name in batches:
        with FlopCounterMode(display=False) as counter:
            step(name)  # also the warm-up step
        flops = counter.get_total_flops()
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            step(name)
            times.append(time.perf_counter() - t)
        sec = statistics.median(times)
        results[name] = {"seconds": sec, "times": times, "clips_per_s": num_clips / sec, "flops": flops}
        print(f"[{dtype_name}] {name:9s} {sec:7.2f} s/step  {num_clips / sec:6.2f} clips/s  "
              f"{flops / 1e12:.2f} TFLOP  {flops / sec / 1e9:7.1f} GFLOP/s", flush=True)

    # the mix: expected time and FLOPs of a step drawn with the 2:2:1:2 ratios
    total = sum(MIX.values())

    def expected(key: str) -> float:
        vsm = (1 - VSM_SPAN_PROB) * results["vsm"][key] + VSM_SPAN_PROB * results["vsm+span"][key]
        return sum(r / total * (vsm if n == "vsm" else results[n][key]) for n, r in MIX.items())

    mix_sec, mix_flops = expected("seconds"), expected("flops")
    results["mix"] = {"seconds": mix_sec, "clips_per_s": num_clips / mix_sec, "flops": mix_flops}
    peak = matmul_peak(dtype)
    for r in results.values():
        r["achieved_flops_per_s"] = r["flops"] / r["seconds"]
        r["mfu"] = r["achieved_flops_per_s"] / peak
    print(f"[{dtype_name}] mix       {mix_sec:7.2f} s/step  {num_clips / mix_sec:6.2f} clips/s  "
          f"matmul peak {peak / 1e9:.0f} GFLOP/s  MFU {results['mix']['mfu']:.1%}", flush=True)

    out = {"dtype": dtype_name, "matmul_peak_flops_per_s": peak, "objectives": results,
           "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if profile:
        out["profile"] = profile_ops(step, list(MIX), dtype_name)
    return out


OP_GROUPS = [
    ("matmul (linear/mm/bmm)", ("addmm", "mm", "bmm", "linear", "matmul", "baddbmm", "einsum")),
    ("attention (sdpa)", ("scaled_dot_product", "_softmax", "softmax")),
    ("layer_norm", ("layer_norm",)),
    ("gelu/relu", ("gelu", "relu", "threshold")),
    ("dropout rng", ("random_", "bernoulli", "dropout", "rand")),
    ("gather/scatter/index", ("index", "gather", "scatter", "embedding", "cat")),
    ("optimizer (adamw)", ("adam", "_foreach", "lerp", "addcdiv", "sqrt")),
    ("copy/cast", ("copy_", "to", "_to_copy", "clone", "contiguous")),
    ("elementwise", ("add", "mul", "sub", "div", "where", "masked_fill", "fill_", "zero_", "neg", "exp")),
]


def profile_ops(step, names, dtype_name: str) -> dict:
    """Self CPU time of one step per objective, grouped by operator family."""
    from torch.profiler import ProfilerActivity, profile

    groups: dict[str, float] = {}
    total = 0.0
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for name in names:
            step(name)
    for evt in prof.key_averages():
        self_us = evt.self_cpu_time_total
        total += self_us
        key = evt.key.lower().removeprefix("aten::")
        label = "other"
        for group, patterns in OP_GROUPS:
            if any(key.startswith(p) or p in key for p in patterns):
                label = group
                break
        groups[label] = groups.get(label, 0.0) + self_us
    shares = {k: v / total for k, v in sorted(groups.items(), key=lambda kv: -kv[1])}
    print(f"[{dtype_name}] profile (share of self CPU time over one step of each objective):")
    for k, v in shares.items():
        print(f"    {k:24s} {v:6.1%}")
    return {"objectives_profiled": names, "total_seconds": total / 1e6, "shares": shares}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per objective (after 1 warm-up)")
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pretrain_step.json")
    parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    if args._child:
        result = run_dtype(args._child, args.clips, args.steps, profile=not args.no_profile and args._child == "bf16")
        print("RESULT_JSON " + json.dumps(result))
        return

    runs = {}
    for dtype_name in args.dtypes.split(","):
        cmd = [sys.executable, __file__, "--clips", str(args.clips), "--steps", str(args.steps),
               "--threads", str(args.threads), "--_child", dtype_name] + (["--no-profile"] if args.no_profile else [])
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
        lines = proc.stdout.splitlines()
        print("\n".join(line for line in lines if not line.startswith("RESULT_JSON")))
        if proc.returncode != 0:
            raise SystemExit(f"{dtype_name} run failed with exit code {proc.returncode}")
        runs[dtype_name] = json.loads(next(line for line in lines if line.startswith("RESULT_JSON"))[12:])
    report = {
        "benchmark": "pretrain_step", "model": "hero_base", "clips": args.clips, "timed_steps": args.steps,
        "threads": args.threads, "torch": torch.__version__, "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(), "runs": runs,
    }
    if "fp32" in runs and "bf16" in runs:
        mix = {k: r["objectives"]["mix"]["seconds"] for k, r in runs.items()}
        report["bf16_speedup_vs_fp32"] = mix["fp32"] / mix["bf16"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
