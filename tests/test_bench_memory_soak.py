"""The memory soak benchmark, in miniature: a real `hero pretrain` with a worker, sampled from /proc."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_memory_soak as soak  # noqa: E402


def test_slope_is_the_least_squares_line_per_thousand_steps():
    xs = [100.0, 200.0, 300.0, 400.0]
    assert soak.slope_per_1k(xs, [10 + 0.005 * x for x in xs]) == pytest.approx(5.0)
    assert soak.slope_per_1k(xs, [7.0] * 4) == pytest.approx(0.0)
    assert math.isnan(soak.slope_per_1k([1.0], [2.0]))
    samples = [{"step": s, **{k: float(s) for k in soak.SERIES}} for s in (10, 20, 30, 40)]
    summary = soak.summarise(samples, warmup_steps=20)
    assert summary["samples_after_warmup"] == 2
    assert summary["main_rss"]["first_mib"] == 30
    assert summary["main_rss"]["slope_mib_per_1k_steps"] == pytest.approx(1000)


def test_memory_of_this_process_and_a_child():
    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(30 << 20); time.sleep(30)"])
    try:
        import os
        import time

        for _ in range(100):  # until the child has touched its 30 MiB
            mem = soak.memory_of(os.getpid())
            if mem["workers"] == 1 and mem["workers_rss"] > 30:
                break
            time.sleep(0.05)
        assert mem["workers"] == 1 and mem["workers_rss"] > 30 and mem["main_rss"] > 10
        assert mem["total_rss"] == pytest.approx(mem["main_rss"] + mem["workers_rss"])
    finally:
        child.kill()
        child.wait()
    assert soak.memory_of(child.pid) is None


@pytest.mark.slow
def test_tiny_soak_writes_samples_and_slopes(tmp_path):
    out = tmp_path / "soak.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/bench_memory_soak.py"), "--steps", "8",
                           "--sample-every", "2", "--warmup-steps", "2", "--preset", "hero-tiny", "--workers", "1",
                           "--batch-size", "4", "--videos", "30", "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["config"]["steps"] == 8 and result["config"]["workers"] == 1
    steps = [s["step"] for s in result["samples"]]
    assert steps and steps == sorted(steps) and set(steps) <= {2, 4, 6, 8}
    for s in result["samples"]:
        assert s["workers"] == 1 and s["main_rss"] > 50 and s["workers_rss"] > 10 and s["total_pss"] > 0
    summary = result["summary"]
    assert summary["samples_after_warmup"] == sum(1 for x in steps if x > 2)
    for key in soak.SERIES:
        assert set(summary[key]) == {"slope_mib_per_1k_steps", "first_mib", "last_mib", "min_mib", "max_mib"}
    assert result["machine"]["cores"] >= 1 and result["pretrain_command"].startswith("hero pretrain")
