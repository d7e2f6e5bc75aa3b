"""Benchmark: memory of a long pre-training run (does RSS grow with the step count?).

Users of the reference code report memory that grows over thousands of steps until the job is
killed. This script runs ``hero pretrain`` on the synthetic corpus with DataLoader workers for
several thousand steps and, every ``--sample-every`` steps (one ``log.jsonl`` record each), reads
from ``/proc`` the memory of the training process and of its worker processes:

* ``main_rss``: VmRSS of the training process;
* ``workers_rss``: VmRSS of the DataLoader workers, summed;
* ``total_rss``: both summed (counts pages that forked workers share with the parent twice);
* ``total_pss``: proportional set size of all of them (``smaps_rollup``; shared pages counted once,
  split among every process of the machine that maps them, so other jobs move it);
* ``*_anon`` (RssAnon: heap, tensors, Python objects: where a leak shows) and ``main_file``
  (RssFile: pages of mapped files, mostly the code of libtorch and friends, which grows as new code
  paths run for the first time and is bounded by the size of those libraries).

After the warm-up (``--warmup-steps``: the allocator, the optimizer state and the first
checkpoint reach their size) it fits a least-squares line per series and reports its slope in MiB
per 1,000 steps. The run is a plain ``hero pretrain`` in a child process: the script only watches.

Usage:
    python benchmarks/bench_memory_soak.py [--steps 6000] [--sample-every 50] [--warmup-steps 1000]
        [--preset hero-small] [--workers 2] [--batch-size 16] [--videos 300]
        [--out benchmarks/results/memory_soak.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERIES = ("main_rss", "main_anon", "main_file", "workers_rss", "workers_anon", "total_rss", "total_anon", "total_pss")


def _read_kib(path: str, key: str) -> int | None:
    """The ``key:  N kB`` value of a ``/proc`` status-like file, in KiB (None if gone)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (DataLoader workers are forked by the training process)."""
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    kids.extend(int(k) for k in f.read().split())
            except FileNotFoundError:
                continue
    except FileNotFoundError:
        return []
    return kids


def memory_of(pid: int) -> dict[str, float] | None:
    """Memory of ``pid`` and its children, in MiB (None when the process is gone)."""
    main = _read_kib(f"/proc/{pid}/status", "VmRSS")
    if main is None:
        return None
    main_anon = _read_kib(f"/proc/{pid}/status", "RssAnon") or 0
    main_file = _read_kib(f"/proc/{pid}/status", "RssFile") or 0
    pss = _read_kib(f"/proc/{pid}/smaps_rollup", "Pss") or 0
    workers_rss = workers_anon = 0
    live = 0
    for k in children(pid):
        rss = _read_kib(f"/proc/{k}/status", "VmRSS")
        if not rss:
            continue  # exited (a zombie has no VmRSS line)
        live += 1
        workers_rss += rss
        workers_anon += _read_kib(f"/proc/{k}/status", "RssAnon") or 0
        pss += _read_kib(f"/proc/{k}/smaps_rollup", "Pss") or 0
    return {"main_rss": main / 1024, "main_anon": main_anon / 1024, "main_file": main_file / 1024,
            "workers_rss": workers_rss / 1024, "workers_anon": workers_anon / 1024,
            "total_rss": (main + workers_rss) / 1024, "total_anon": (main_anon + workers_anon) / 1024,
            "total_pss": pss / 1024, "workers": live}


def slope_per_1k(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ``ys`` over ``xs`` (steps), times 1,000."""
    n = len(xs)
    if n < 2:
        return float("nan")
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return float("nan")
    return 1000.0 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


def summarise(samples: list[dict], warmup_steps: int) -> dict:
    """Slopes and ranges of every series over the samples after the warm-up."""
    after = [s for s in samples if s["step"] > warmup_steps]
    out: dict = {"samples_after_warmup": len(after)}
    for key in SERIES:
        ys = [s[key] for s in after]
        out[key] = {
            "slope_mib_per_1k_steps": slope_per_1k([s["step"] for s in after], ys),
            "first_mib": ys[0] if ys else None, "last_mib": ys[-1] if ys else None,
            "min_mib": min(ys) if ys else None, "max_mib": max(ys) if ys else None,
        }
    return out


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def onednn_cache_capacity(env: dict[str, str]) -> int:
    """The oneDNN primitive cache capacity ``hero pretrain`` runs with under ``env``."""
    sys.path.insert(0, str(ROOT))
    from hero.commands._runtime import bound_onednn_cache

    env = dict(env)
    bound_onednn_cache(env)
    return int(env.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY", env.get("DNNL_PRIMITIVE_CACHE_CAPACITY", "1024")))


def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="hero-soak-"))
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    hero = [sys.executable, "-m", "hero"]
    corpus = work / "data"
    subprocess.run([*hero, "data", "synth", "--out", str(corpus), "--videos", str(args.videos)],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    run_dir = work / "run"
    overrides = [
        f"output_dir={run_dir}", f"data.corpora=[{corpus}]", f"model.preset={args.preset}",
        f"train.num_train_steps={args.steps}", f"train.num_workers={args.workers}",
        f"train.batch_size={args.batch_size}", f"train.log_every={args.sample_every}",
        "train.progress=false", f"train.threads={args.threads}",
    ]
    command = [*hero, "pretrain", "--config", str(ROOT / "configs/pretrain/tiny_synthetic.yaml"), *overrides]
    log_path = run_dir / "log.jsonl"
    samples: list[dict] = []
    start = time.time()
    with open(work / "pretrain.out", "w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        offset = 0
        pending = ""
        while True:
            finished = proc.poll() is not None
            if log_path.is_file():
                with open(log_path) as f:
                    f.seek(offset)
                    chunk = f.read()
                    offset = f.tell()
                pending += chunk
                *lines, pending = pending.split("\n")
                for line in lines:
                    rec = json.loads(line) if line.strip() else {}
                    if "loss" not in rec:
                        continue  # evaluation records
                    mem = memory_of(proc.pid)
                    # Samples taken while the workers start or after they exit (the last step)
                    # would mix in a different set of processes: only full sets are compared.
                    if mem is not None and mem["workers"] == args.workers:
                        samples.append({"step": rec["step"], "time_s": round(time.time() - start, 2),
                                        **{k: round(v, 2) for k, v in mem.items()}})
            if finished:
                break
            time.sleep(0.05)
    wall = time.time() - start
    if proc.returncode != 0:
        tail = (work / "pretrain.out").read_text()[-3000:]
        raise SystemExit(f"hero pretrain failed (exit {proc.returncode}):\n{tail}")
    import torch

    result = {
        "benchmark": "memory_soak",
        "command": " ".join(sys.argv),
        "pretrain_command": " ".join(command[2:]).replace(str(work), "$WORK").replace(str(ROOT) + "/", ""),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "platform": platform.platform()},
        "config": {"preset": args.preset, "steps": args.steps, "workers": args.workers,
                   "batch_size": args.batch_size, "videos": args.videos, "sample_every": args.sample_every,
                   "warmup_steps": args.warmup_steps, "threads": args.threads},
        "env": {k: v for k, v in sorted(os.environ.items())
                if k.startswith(("MALLOC_", "OMP_", "ONEDNN_", "DNNL_", "LD_PRELOAD"))},
        "onednn_cache_capacity": onednn_cache_capacity(env),
        "wall_s": round(wall, 1),
        "steps_per_s": round(args.steps / wall, 2),
        "summary": summarise(samples, args.warmup_steps),
        "samples": samples,
    }
    import shutil

    shutil.rmtree(work)  # the temporary directory this run created (mkdtemp above)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--sample-every", type=int, default=50, help="steps between memory samples")
    p.add_argument("--warmup-steps", type=int, default=1000, help="samples up to this step are not fitted")
    p.add_argument("--preset", default="hero-small", choices=("hero-tiny", "hero-small"))
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers (0: load in the training process)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--videos", type=int, default=300, help="videos of the synthetic corpus")
    p.add_argument("--threads", type=int, default=0, help="torch threads of the training process (0: default)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/memory_soak.json")
    args = p.parse_args(argv)
    if args.workers < 0:
        p.error("--workers must be >= 0")
    if args.steps <= args.warmup_steps:
        p.error("--steps must be larger than --warmup-steps")
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, args.out)
    s = result["summary"]
    print(f"{args.steps} steps in {result['wall_s']} s; after step {args.warmup_steps} "
          f"({s['samples_after_warmup']} samples):")
    for key in SERIES:
        v = s[key]
        print(f"  {key:12s} {v['first_mib']:8.1f} -> {v['last_mib']:8.1f} MiB  "
              f"slope {v['slope_mib_per_1k_steps']:+.2f} MiB / 1k steps")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
