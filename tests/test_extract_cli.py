"""``hero extract`` end to end: outputs, counted failures, resume, settings guard, store, sharding, hf models."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hero.cli import main
from hero.extract.video import num_features

av = pytest.importorskip("av")
sys.path.insert(0, str(Path(__file__).parent))
from test_extract import FIXTURES, write_video  # noqa: E402

TINY = ["--random-init", "--size", "32", "--width", "8", "--no-progress"]


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "cfr.mp4", [20 + 5 * i for i in range(40)])  # 4.0 s → 3 features
    (root / "show").mkdir()
    write_video(root / "show" / "vfr.mp4", [40 + 15 * i for i in range(6)],
                times_ms=[0, 300, 350, 1600, 1700, 2900])
    (root / "carphone.mp4").write_bytes((FIXTURES / "carphone_distorted.mp4").read_bytes())
    good = (root / "cfr.mp4").read_bytes()
    (root / "broken.mp4").write_bytes(good[: len(good) // 4])
    (root / "notes.txt").write_text("not a video")
    return root


def load(out: Path, feature_dir: str, vid: str) -> np.ndarray:
    with np.load(out / feature_dir / f"{vid}.npz") as f:
        assert list(f.keys()) == ["features"]
        return f["features"]


def test_extract_outputs_failures_resume_and_store(video_dir, tmp_path, capsys):
    out, store = tmp_path / "feats", tmp_path / "video"
    assert main(["extract", str(video_dir), "--out", str(out), "--store", str(store), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "extracted 3 videos" in printed and "1 failed" in printed and "broken.mp4" in printed
    problems = json.loads((out / "problems.json").read_text())
    assert problems["skipped"] == {"unreadable video": 1}
    assert "broken.mp4" in problems["examples"]["unreadable video"][0]
    meta = json.loads((out / "extract.json").read_text())
    assert meta["settings"]["interval"] == 1.5
    assert [f["name"] for f in meta["settings"]["features"]] == ["resnet152", "slowfast_r50"]
    assert meta["settings"]["features"][0]["weights"] == {"random_init": True, "seed": 0}

    expected_n = {"cfr": num_features(4.0, 1.5), "carphone": num_features(4.004, 1.5)}
    for vid, n in expected_n.items():
        r, s = load(out, "resnet_features", vid), load(out, "slowfast_features", vid)
        assert r.dtype == np.float16 and r.shape == (n, 256) and s.shape == (n, 288)
        assert np.allclose(np.linalg.norm(r.astype(np.float32), axis=1), 1.0, atol=2e-3)
    vfr = load(out, "resnet_features", "vfr")
    assert len(vfr) == 2  # last frame at 2.9 s: 2.9 < duration <= 3.2, so round(duration / 1.5) = 2
    assert not (out / "resnet_features" / "broken.npz").exists()
    assert not list(out.rglob(".*tmp"))

    from hero.data.stores import VideoFeatureStore

    vs = VideoFeatureStore(store)
    assert sorted(vs.keys()) == ["carphone", "cfr", "vfr"] and vs.meta.dim == 544
    assert [f["name"] for f in vs.meta.features] == ["resnet152", "slowfast_r50"]
    both = np.concatenate([load(out, "resnet_features", "cfr"), load(out, "slowfast_features", "cfr")], 1)
    assert np.array_equal(vs.get("cfr"), both.astype(np.float32))

    # resume: nothing is recomputed, files are untouched
    stamp = (out / "resnet_features" / "cfr.npz").stat().st_mtime_ns
    assert main(["extract", str(video_dir), "--out", str(out), *TINY]) == 0
    assert "3 already done" in capsys.readouterr().out
    assert (out / "resnet_features" / "cfr.npz").stat().st_mtime_ns == stamp
    # deterministic: a fresh run gives the same features
    again, listing = tmp_path / "again", tmp_path / "one.txt"
    listing.write_text(str(video_dir / "carphone.mp4") + "\n")
    assert main(["extract", str(listing), "--out", str(again), *TINY]) == 0
    assert np.array_equal(load(again, "slowfast_features", "carphone"), load(out, "slowfast_features", "carphone"))


def test_settings_guard_weights_and_strict(video_dir, tmp_path, capsys):
    out = tmp_path / "feats"
    listing = tmp_path / "list.txt"
    listing.write_text(f"# one video\n{video_dir / 'cfr.mp4'}\n")
    assert main(["extract", str(listing), "--out", str(out), "--backbones", "resnet152", *TINY]) == 0
    assert (out / "resnet_features" / "cfr.npz").exists() and not (out / "slowfast_features").exists()
    capsys.readouterr()
    # other settings into the same folder are refused, naming the difference
    assert main(["extract", str(listing), "--out", str(out), "--backbones", "resnet152", "--interval", "2",
                 *TINY]) == 2
    assert "settings.interval: was 1.5, now 2.0" in capsys.readouterr().err
    assert main(["extract", str(listing), "--out", str(out), "--backbones", "resnet152", "--seed", "3",
                 *TINY]) == 2
    assert "seed" in capsys.readouterr().err
    # no weights and no --random-init
    assert main(["extract", str(listing), "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "--random-init" in capsys.readouterr().err
    # a strict run stops at the corrupt file and names it
    assert main(["extract", str(video_dir), "--out", str(tmp_path / "strict"), "--strict", *TINY]) == 2
    assert "broken.mp4" in capsys.readouterr().err
    # two videos with the same id (file name) in different folders
    dup = tmp_path / "dup"
    (dup / "a").mkdir(parents=True)
    (dup / "b").mkdir()
    for sub in ("a", "b"):
        (dup / sub / "clip.mp4").write_bytes((FIXTURES / "carphone_distorted.mp4").read_bytes())
    assert main(["extract", str(dup), "--out", str(tmp_path / "d"), *TINY]) == 2
    assert "'clip' is used twice" in capsys.readouterr().err
    # a list naming a missing file
    listing.write_text("missing.mp4\n")
    assert main(["extract", str(listing), "--out", str(out), *TINY]) == 2
    assert "list.txt:1" in capsys.readouterr().err


def test_hugging_face_image_model_as_a_feature_set(video_dir, tmp_path):
    transformers = pytest.importorskip("transformers")
    model_dir = tmp_path / "tiny-vit"
    config = transformers.ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=32, image_size=32, patch_size=8)
    transformers.ViTModel(config).save_pretrained(model_dir)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(model_dir)
    listing = tmp_path / "list.txt"
    listing.write_text(str(video_dir / "cfr.mp4") + "\n")
    out = tmp_path / "feats"
    assert main(["extract", str(listing), "--out", str(out), "--backbones", f"hf:{model_dir}", *TINY]) == 0
    hf = load(out, "hf_tiny-vit_features", "cfr")
    assert hf.shape == (num_features(4.0, 1.5), 16) and np.isfinite(hf).all()
    meta = json.loads((out / "extract.json").read_text())
    assert len(meta["settings"]["features"][0]["weights"]["sha256"]) == 64


@pytest.mark.slow
def test_torchrun_shards_the_videos(video_dir, tmp_path):
    out = tmp_path / "feats"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29731",
           "-m", "hero", "extract", str(video_dir), "--out", str(out), *TINY]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    done = sorted(p.stem for p in (out / "resnet_features").glob("*.npz"))
    assert done == ["carphone", "cfr", "vfr"]
    problems = json.loads((out / "problems.json").read_text())
    assert problems["skipped"] == {"unreadable video": 1}  # gathered from the rank that had it
    # each rank printed its own share: 4 videos sorted by id, every 2nd one each
    # (two processes share one pipe, so their lines may interleave: count the reports, not lines)
    shares = re.findall(r"extracted (\d+) videos .*?(\d+) failed", proc.stdout)
    assert len(shares) == 2
    assert sorted(int(n) + int(f) for n, f in shares) == [2, 2]
