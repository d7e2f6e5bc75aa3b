"""``hero extract --preset``: reference sampling rules (pure and streamed), preset plumbing, Caffe2 weights."""

from __future__ import annotations

import json
import pickle
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from hero.cli import main
from hero.errors import HeroError
from hero.extract.backbones import build_backbone, load_weights
from hero.extract.caffe2 import caffe2_name, read_caffe2_blobs, to_caffe2_blobs
from hero.extract.presets import PRESETS, get_preset
from hero.extract.slowfast import slowfast_r50
from hero.extract.video import (
    FrameSampler,
    ReferenceClipSampler,
    Resize,
    VideoInfo,
    decode_samples,
    num_features,
    probe_video,
    reference_frame_rate,
    select_frames,
    tile_tick,
)

av = pytest.importorskip("av")
sys.path.insert(0, str(Path(__file__).parent))
from test_extract import FIXTURES, level_of, write_video  # noqa: E402

CPU = torch.device("cpu")
REF = PRESETS["hero-reference"]
TINY = ["--random-init", "--size", "32", "--width", "8", "--no-progress", "--backbones", "resnet152,slowfast_r50"]


# ------------------------------------------------------------------------------------------------
# the rules, on hand-made timestamps


def test_reference_short_video_rate():
    # fps = 2 / int(D) for 0 < D < interval + 0.1; D < 1 divides by zero in the reference: default kept
    assert reference_frame_rate(0.5, 1.5) is None
    assert reference_frame_rate(0.99, 1.5) is None
    assert reference_frame_rate(1.0, 1.5) == 2 and reference_frame_rate(1.59, 1.5) == 2
    assert reference_frame_rate(1.6, 1.5) is None and reference_frame_rate(30.0, 1.5) is None
    assert reference_frame_rate(None, 1.5) is None  # ffprobe gave no duration
    assert reference_frame_rate(1.5, 2.0) == 2 and reference_frame_rate(2.05, 2.0) == 1
    assert reference_frame_rate(2.1, 2.0) is None
    # the count: min(2-D ticks at that rate, 3-D clips)
    assert num_features(1.2, 1.5, rate=2) == 1 == num_features(1.2, 1.5)
    assert num_features(2.05, 2.0, rate=1) == 2 and num_features(2.05, 2.0) == 1
    assert all(num_features(d, 1.5, rate=Fraction(2, 3)) == num_features(d, 1.5) for d in (0.3, 1.0, 4.0, 7.4, 99.9))


def test_tile_tick_repeats_the_last_second():
    # 95 ticks (3.17 s at 30 fps): frame padding to 120 with tick 94, then copies of ticks 90..119
    assert [tile_tick(j, 95) for j in (0, 94, 95, 119)] == [0, 94, 94, 94]
    assert [tile_tick(j, 95) for j in (120, 121, 124, 125, 149, 150)] == [90, 91, 94, 94, 94, 90]
    # a whole number of seconds: ticks 60.. repeat 30..59
    assert [tile_tick(j, 60) for j in (59, 60, 61, 89, 90, 134)] == [59, 30, 31, 59, 30, 44]
    assert [tile_tick(j, 5, block=4) for j in (5, 7, 8, 9, 11, 12)] == [4, 4, 4, 4, 4, 4]


def test_select_frames_last_and_first_rules():
    times = [0, 0.1, 0.15, 0.9, 1.0, 2.0, 2.05, 2.4]
    r = Fraction(2, 3)  # fps = 1/1.5: windows [-0.75, 0.75), [0.75, 2.25), [2.25, 3.75)
    assert select_frames(times, 2.5, r, [0, 1, 2], "last") == [2, 6, 7]
    assert select_frames(times, 2.5, r, [0, 1, 2], "first") == [0, 3, 7]
    # an empty window repeats the previous tick under both rules
    assert select_frames([0, 0.1, 3.0], 3.1, r, [0, 1, 2], "last") == [1, 1, 2]
    assert select_frames([0, 0.1, 3.0], 3.1, r, [0, 1, 2], "first") == [0, 0, 2]
    # a window boundary belongs to the later window (the filter rounds half away from zero)
    assert select_frames([0, 0.75, 0.8], 1.0, r, [0, 1], "first") == [0, 1]
    assert select_frames([0, 0.75, 0.8], 1.0, r, [0, 1], "last") == [0, 2]
    # tiling: 10 frames at 30 fps in a 30 fps grid (10 ticks); tick 31 → tick 1 of the last second → frame 1
    t30 = [i / 30 for i in range(10)]
    assert select_frames(t30, 10 / 30, 30, [9, 15, 29, 30, 31], "last", tail_block=30) == [9, 9, 9, 0, 1]
    assert select_frames(t30, 10 / 30, 30, [30, 31], "last") == [9, 9]


# ------------------------------------------------------------------------------------------------
# the streaming decoder picks what select_frames picks


def _decoded(path: Path, samplers, interval: float, count_rate=None):
    info = VideoInfo(str(path))
    items = list(decode_samples(path, samplers, interval, info, count_rate))
    out = [[a for _, _, a in sorted((x for x in items if x[0] == i), key=lambda x: x[1])] for i in range(len(samplers))]
    return info, out


def write_indexed_video(path: Path, n: int, fps: int) -> Path:
    """Frame ``i`` has a left half of grey ``20 + 7·(i mod 30)`` and a right half of ``40 + 50·⌊i/30⌋``."""
    w, h = 64, 48
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "4"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            img = np.empty((h, w, 3), np.uint8)
            img[:, : w // 2], img[:, w // 2:] = 20 + 7 * (i % 30), 40 + 50 * (i // 30)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def index_of(image: np.ndarray) -> int:
    left, right = float(image[:6, :6].mean()), float(image[:6, -6:].mean())
    return round((left - 20) / 7) + 30 * round((right - 40) / 50)


@pytest.mark.parametrize("case", ["30fps-tiled", "60fps", "vfr"])
def test_streamed_frames_equal_the_pure_rules(tmp_path, case):
    if case == "vfr":
        times_ms = [0, 100, 150, 700, 760, 1400, 2000, 2050, 2400, 3300, 3350, 3990]
        levels = [30 + 18 * i for i in range(len(times_ms))]
        path = write_video(tmp_path / "v.mp4", levels, times_ms=times_ms)
        times, fps = [Fraction(t, 1000) for t in times_ms], 10.0

        def decoded_index(image):
            return int(np.argmin([abs(level_of(image) - v) for v in levels]))
    else:
        # 4.0 s at 30 fps: 120 ticks, the third clip reaches tick 134 (tiled); 2.5 s at 60 fps: two frames a tick
        fps, n = (30, 120) if case == "30fps-tiled" else (60, 150)
        path = write_indexed_video(tmp_path / "v.mp4", n, fps)
        times, decoded_index = [Fraction(i, fps) for i in range(n)], index_of  # exact: ties matter
    picks = {}
    for preset in PRESETS.values():
        samplers = [FrameSampler(1.5, Resize(32, None, preset.interpolation), preset),
                    ReferenceClipSampler(1.5, fps, Resize(32, 32, preset.interpolation), preset=preset)]
        info, (frames, clips) = _decoded(path, samplers, 1.5)
        assert len(frames) == len(clips) == info.num_features
        picks[preset.name] = []
        for sampler, items in zip(samplers, (frames, clips)):
            for k, item in enumerate(items):
                want = select_frames(times, info.duration, sampler.rate, sampler.ticks(k), preset.frame_rule,
                                     sampler.tail_block)
                got = [decoded_index(image) for image in (item[None] if item.ndim == 3 else item)]
                assert got == want, (preset.name, k)
                picks[preset.name].append(want)
    assert picks["hero"] != picks["hero-reference"]  # the rules differ on this video
    if case == "30fps-tiled":
        assert picks["hero"][-1][-1] == 119 and picks["hero-reference"][-1][-1] == 104  # tick 134 → 104


def test_short_video_rate_through_the_sampler(tmp_path):
    # 41 frames at 20 fps = 2.05 s, interval 2: the reference ran its 2-D pass at 2/int(2.05) = 1 fps
    levels = [10 + 5 * i for i in range(41)]
    path = write_video(tmp_path / "short.mp4", levels, fps=20)
    fps, duration = probe_video(path)
    assert fps == 20 and abs(duration - 2.05) < 1e-6
    backbone = build_backbone("resnet152", weights=None, random_init=True, seed=0, device=CPU, size=32, width=8,
                              preset=REF)
    sampler = backbone.make_sampler(2.0, fps, duration)
    assert sampler.rate == 1
    rate = reference_frame_rate(duration, 2.0)
    info, (frames,) = _decoded(path, [sampler], 2.0, count_rate=rate)
    assert info.num_features == len(frames) == 2  # the default rule gives 1
    assert abs(level_of(frames[1]) - levels[10]) < 2.5  # first frame of [0.5 s, 1.5 s)
    hero = build_backbone("resnet152", weights=None, random_init=True, seed=0, device=CPU, size=32, width=8)
    assert hero.make_sampler(2.0, fps, duration).rate == Fraction(1, 2)


def test_interpolation_changes_the_pixels():
    path = FIXTURES / "carphone_distorted.mp4"
    out = []
    for interp in ("bicubic", "bilinear"):
        _, (frames,) = _decoded(path, [FrameSampler(1.5, Resize(64, None, interp))], 1.5)
        out.append(np.stack(frames).astype(np.int16))
    diff = np.abs(out[0] - out[1])
    assert out[0].shape == out[1].shape and 0 < diff.mean() < 8


# ------------------------------------------------------------------------------------------------
# preset plumbing


def test_preset_recorded_and_never_mixed(tmp_path, capsys):
    listing = tmp_path / "list.txt"
    video = write_indexed_video(tmp_path / "clip.mp4", 48, 30)  # 1.6 s: one feature
    listing.write_text(f"{video}\n")
    ref, hero = tmp_path / "ref", tmp_path / "hero"
    assert main(["extract", str(listing), "--out", str(ref), "--preset", "hero-reference", *TINY]) == 0
    assert main(["extract", str(listing), "--out", str(hero), *TINY[:-1], "resnet152"]) == 0
    meta = json.loads((ref / "extract.json").read_text())
    assert meta["settings"]["preset"] == "hero-reference" and meta["preset_rules"] == REF.to_dict()
    assert meta["settings"]["features"][0]["preprocessing"]["resize"]["interpolation"] == "swscale bilinear"
    assert json.loads((hero / "extract.json").read_text())["settings"]["preset"] == "hero"
    a, b = (np.load(root / "resnet_features" / "clip.npz")["features"] for root in (ref, hero))
    assert a.shape == b.shape == (1, 256) and not np.array_equal(a, b)
    capsys.readouterr()
    assert main(["extract", str(listing), "--out", str(ref), *TINY]) == 2
    assert "settings.preset: was 'hero-reference', now 'hero'" in capsys.readouterr().err
    # a folder written before presets existed holds hero-preset features: it resumes
    meta = json.loads((hero / "extract.json").read_text())
    del meta["settings"]["preset"]
    (hero / "extract.json").write_text(json.dumps(meta))
    assert main(["extract", str(listing), "--out", str(hero), *TINY[:-1], "resnet152"]) == 0
    assert "1 already done" in capsys.readouterr().out
    assert main(["extract", str(listing), "--out", str(hero), "--preset", "hero-reference", *TINY]) == 2
    assert "settings.preset: was 'hero', now 'hero-reference'" in capsys.readouterr().err
    with pytest.raises(HeroError, match="choose from hero, hero-reference"):
        get_preset("reference")


# ------------------------------------------------------------------------------------------------
# Caffe2 weights


def _write_pkl(path: Path, blobs: dict, protocol: int = 2) -> Path:
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs, "model_iter": np.int64(3)}, f, protocol=protocol)
    return path


def test_caffe2_names_follow_pyslowfast():
    depths = {1: 3, 2: 4, 3: 6, 4: 3}
    assert caffe2_name("blocks.0.multipathway_blocks.0.conv.weight", depths) == "conv1_w"
    assert caffe2_name("blocks.0.multipathway_blocks.1.norm.running_var", depths) == "t_res_conv1_bn_riv"
    assert caffe2_name("blocks.0.multipathway_fusion.norm.weight", depths) == "t_pool1_subsample_bn_s"
    assert caffe2_name("blocks.3.multipathway_fusion.conv_fast_to_slow.weight", depths) == \
        "t_res4_5_branch2c_bn_subsample_w"
    assert caffe2_name("blocks.1.multipathway_blocks.0.res_blocks.0.branch1_norm.running_mean", depths) == \
        "res2_0_branch1_bn_rm"
    assert caffe2_name("blocks.4.multipathway_blocks.1.res_blocks.2.branch2.conv_b.weight", depths) == \
        "t_res5_2_branch2b_w"
    assert caffe2_name("blocks.6.proj.bias", depths) == "pred_b"
    assert caffe2_name("blocks.2.multipathway_blocks.0.res_blocks.1.branch2.norm_a.num_batches_tracked",
                       depths) is None


def test_caffe2_pkl_gives_the_features_of_the_pyth(tmp_path):
    torch.manual_seed(3)
    source = slowfast_r50(width=8)
    for m in source.modules():  # non-trivial statistics, so a swapped mean/var would show
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torch.save({"model_state": source.state_dict()}, tmp_path / "w.pyth")
    blobs = {**to_caffe2_blobs(source), "conv1_w_momentum": np.zeros(1, np.float32), "lr": np.float32(0.1)}
    w = blobs["res2_0_branch2c_w"]  # a 1×1×1 conv stored 2-D: trailing size-1 dims restored, as PySlowFast did
    blobs["res2_0_branch2c_w"] = w.reshape(w.shape[:2])
    pkl = _write_pkl(tmp_path / "w.pkl", blobs)  # protocol 2, as Caffe2 (Python 2) wrote it
    a = build_backbone("slowfast_r50", weights=str(tmp_path / "w.pyth"), random_init=False, seed=0, device=CPU,
                       size=32, width=8)
    b = build_backbone("slowfast_r50", weights=str(pkl), random_init=False, seed=1, device=CPU, size=32, width=8)
    clips = [np.random.default_rng(0).integers(0, 255, (32, 32, 32, 3), dtype=np.uint8) for _ in range(2)]
    fa, fb = a.embed(clips), b.embed(clips)
    assert torch.equal(fa, fb) and fa.abs().sum() > 0
    assert len(b.weights["sha256"]) == 64 and b.weights["sha256"] != a.weights["sha256"]
    # a wrong file is refused, naming the blobs
    target = slowfast_r50(width=8)
    bad = dict(blobs)
    del bad["res3_1_branch2a_w"]
    bad["t_res2_0_branch2b_w"] = np.zeros((5, 5, 1, 3, 3), np.float32)
    bad["res6_0_branch2a_w"] = np.zeros(1, np.float32)
    with pytest.raises(HeroError, match=r"1 missing: res3_1_branch2a_w \(blocks\.2\.multipathway_blocks\.0"
                                        r"\.res_blocks\.1\.branch2\.conv_a\.weight\); 1 unexpected: res6_0_branch2a_w; "
                                        r"1 wrong shape: t_res2_0_branch2b_w \(5, 5, 1, 3, 3\) "
                                        r"\(expected \(1, 1, 1, 3, 3\) for blocks\.1\.multipathway_blocks\.1\."):
        load_weights(target, _write_pkl(tmp_path / "bad.pkl", bad), "slowfast_r50")
    with pytest.raises(HeroError, match="for slowfast_r50 only"):
        build_backbone("resnet152", weights=str(pkl), random_init=False, seed=0, device=CPU, size=32, width=8)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.mkdir, (str(self.marker),)


def test_caffe2_pickle_is_read_without_building_objects(tmp_path):
    marker = tmp_path / "pwned"
    evil = _write_pkl(tmp_path / "evil.pkl", {"conv1_w": np.zeros(3, np.float32), "x": _Payload(marker)})
    with pytest.raises(HeroError, match="os.mkdir|posix.mkdir|nt.mkdir"):
        read_caffe2_blobs(evil)
    assert not marker.exists()
    plain = _write_pkl(tmp_path / "p4.pkl", {"conv1_w": np.ones((2, 3), np.float32)}, protocol=4)
    assert read_caffe2_blobs(plain)["conv1_w"].tolist() == [[1.0] * 3] * 2
    objects = _write_pkl(tmp_path / "objects.pkl", {"conv1_w": np.array([1, "a"], dtype=object)})
    with pytest.raises(HeroError, match="conv1_w is not a numeric array"):
        read_caffe2_blobs(objects)
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(HeroError, match="not a readable Caffe2 weights pickle"):
        read_caffe2_blobs(tmp_path / "junk.pkl")
    with open(tmp_path / "list.pkl", "wb") as f:
        pickle.dump([1, 2], f)
    with pytest.raises(HeroError, match="expected a dict with a 'blobs' mapping"):
        read_caffe2_blobs(tmp_path / "list.pkl")
