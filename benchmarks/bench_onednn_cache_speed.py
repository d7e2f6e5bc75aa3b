"""Benchmark: training speed under different oneDNN primitive cache capacities.

`hero pretrain` bounds oneDNN's primitive cache (``hero/commands/_runtime.py``) so that the
trainer's memory stops growing (see ``bench_memory_soak.py``). A smaller cache recompiles the
kernels of shapes it evicted; this script measures what that costs. It runs the soak's
pre-training command for ``--steps`` steps once per capacity, the capacities interleaved round
after round (so a change of load on a shared machine hits every arm alike), and times the steps
after ``--skip`` from the ``time`` field of ``log.jsonl`` (start-up and the final checkpoint are
left out). It reports steps/s per run, the median per capacity and its ratio to the first one.

Usage:
    python benchmarks/bench_onednn_cache_speed.py [--capacities 1024,128,0] [--rounds 3]
        [--steps 350] [--skip 50] [--out benchmarks/results/onednn_cache_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_memory_soak import cpu_model  # noqa: E402


def steps_per_s(log_path: Path, skip: int) -> tuple[float, int]:
    """Steps per second between the first logged step after ``skip`` and the last one."""
    recs = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    recs = [r for r in recs if "loss" in r and r["step"] > skip]
    first, last = recs[0], recs[-1]
    return (last["step"] - first["step"]) / (last["time"] - first["time"]), last["step"] - first["step"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--capacities", default="1024,128,0",
                   help="ONEDNN_PRIMITIVE_CACHE_CAPACITY values, first = baseline")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=350)
    p.add_argument("--skip", type=int, default=50, help="steps left out of the timing (start-up)")
    p.add_argument("--preset", default="hero-tiny", choices=("hero-tiny", "hero-small"))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--videos", type=int, default=300)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/onednn_cache_speed.json")
    args = p.parse_args(argv)
    capacities = [int(c) for c in args.capacities.split(",")]
    if args.steps <= args.skip + 10:
        p.error("--steps must exceed --skip by more than 10")

    work = Path(tempfile.mkdtemp(prefix="hero-onednn-speed-"))
    base_env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY",
                                                                  "DNNL_PRIMITIVE_CACHE_CAPACITY")}
    base_env.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    hero = [sys.executable, "-m", "hero"]
    corpus = work / "data"
    subprocess.run([*hero, "data", "synth", "--out", str(corpus), "--videos", str(args.videos)],
                   check=True, env=base_env, stdout=subprocess.DEVNULL)
    runs = []
    for rnd in range(args.rounds):
        for cap in capacities:
            run_dir = work / f"run-{rnd}-{cap}"
            command = [*hero, "pretrain", "--config", str(ROOT / "configs/pretrain/tiny_synthetic.yaml"),
                       f"output_dir={run_dir}", f"data.corpora=[{corpus}]", f"model.preset={args.preset}",
                       f"train.num_train_steps={args.steps}", f"train.num_workers={args.workers}",
                       f"train.batch_size={args.batch_size}", "train.log_every=10", "train.progress=false",
                       f"train.threads={args.threads}", f"train.save_every={args.steps}"]
            env = dict(base_env, ONEDNN_PRIMITIVE_CACHE_CAPACITY=str(cap))
            proc = subprocess.run(command, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"hero pretrain failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
            rate, timed = steps_per_s(run_dir / "log.jsonl", args.skip)
            runs.append({"round": rnd, "capacity": cap, "steps_per_s": round(rate, 3), "timed_steps": timed})
            print(f"round {rnd} capacity {cap:5d}: {rate:.2f} steps/s", flush=True)
            shutil.rmtree(run_dir)
    shutil.rmtree(work)  # the temporary directory this script created (mkdtemp above)

    medians = {c: statistics.median(r["steps_per_s"] for r in runs if r["capacity"] == c) for c in capacities}
    # per-round ratios pair runs made close together in time, so they see similar load
    ratios = {c: [next(r for r in runs if r["round"] == i and r["capacity"] == c)["steps_per_s"]
                  / next(r for r in runs if r["round"] == i and r["capacity"] == capacities[0])["steps_per_s"]
                  for i in range(args.rounds)] for c in capacities}
    import torch

    result = {
        "benchmark": "onednn_cache_speed", "command": " ".join(sys.argv),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
                    "loadavg_at_end": os.getloadavg()},
        "config": vars(args) | {"out": str(args.out)},
        "median_steps_per_s": {str(c): round(v, 3) for c, v in medians.items()},
        "ratio_of_medians_to_first": {str(c): round(medians[c] / medians[capacities[0]], 3) for c in capacities},
        "per_round_ratios_to_first": {str(c): [round(x, 3) for x in v] for c, v in ratios.items()},
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, args.out)
    for c in capacities:
        print(f"capacity {c:5d}: median {medians[c]:.2f} steps/s, ratio {medians[c] / medians[capacities[0]]:.3f}, "
              f"per round {[round(x, 3) for x in ratios[c]]}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
