"""Our LMDB stores: round trips, metadata checks, atomic writes, map growth, fork safety."""

from __future__ import annotations

import json
import multiprocessing as mp
import pickle

import numpy as np
import pytest

from hero.data import stores
from hero.data.stores import (
    SubtitleStore,
    SubtitleStoreWriter,
    VideoFeatureStore,
    VideoStoreWriter,
    decode_array,
    encode_array,
)
from hero.errors import HeroError

FEATURES = [("resnet152", 3), ("slowfast_r50", 5)]


def random_videos(n=4, dim=8, seed=0):
    rs = np.random.RandomState(seed)
    return {f"vid_{i}": rs.randn(int(rs.randint(1, 12)), dim).astype(np.float32) for i in range(n)}


def write_store(path, videos, **kw):
    with VideoStoreWriter(path, frame_interval=1.5, features=FEATURES, **kw) as w:
        for vid, arr in videos.items():
            w.add(vid, arr)
    return VideoFeatureStore(path)


def test_encode_decode_roundtrip():
    arr = np.random.RandomState(1).randn(7, 5).astype(np.float32)
    for dtype, tol in (("float16", 1e-2), ("float32", 0.0)):
        out = decode_array(encode_array(arr, dtype))
        assert out.dtype == np.float32 and out.shape == arr.shape
        np.testing.assert_allclose(out, arr.astype(dtype).astype(np.float32), atol=0, rtol=0)
        np.testing.assert_allclose(out, arr, atol=tol * 4)


def test_video_store_roundtrip(tmp_path):
    videos = random_videos()
    store = write_store(tmp_path / "video", videos, source={"test": 1})
    assert len(store) == len(videos) and sorted(store.keys()) == sorted(videos)
    for vid, arr in videos.items():
        assert vid in store
        assert store.num_frames(vid) == arr.shape[0]
        got = store.get(vid)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, arr.astype(np.float16).astype(np.float32))
    assert "nope" not in store
    m = store.meta
    assert (m.dim, m.dtype, m.frame_interval, m.num_videos, m.format_version) == (8, "float16", 1.5, 4, 1)
    assert [f["name"] for f in m.features] == ["resnet152", "slowfast_r50"]
    assert m.source == {"test": 1}
    with pytest.raises(KeyError, match="nope"):
        store.get("nope")
    # stored values are exactly what the documented layout says: header length, msgpack header, raw bytes
    import msgpack

    with stores.open_readonly(tmp_path / "video").begin() as txn:
        raw = txn.get(b"vid_0")
    hlen = int.from_bytes(raw[:4], "little")
    header = msgpack.unpackb(raw[4:4 + hlen])
    assert header == {"shape": list(videos["vid_0"].shape), "dtype": "<f2"}
    assert raw[4 + hlen:] == videos["vid_0"].astype("<f2").tobytes()


def test_video_store_float32(tmp_path):
    videos = random_videos(2)
    store = write_store(tmp_path / "v", videos, dtype="float32")
    for vid, arr in videos.items():
        np.testing.assert_array_equal(store.get(vid), arr)


def test_writer_rejects_bad_arrays(tmp_path):
    with pytest.raises(HeroError, match="dimension 7, the store holds 8"):
        with VideoStoreWriter(tmp_path / "a", frame_interval=1.5, features=FEATURES) as w:
            w.add("x", np.zeros((3, 7)))
    assert not (tmp_path / "a").exists()
    assert not any(p.name.startswith(".a.") for p in tmp_path.iterdir()), "temporary directory left behind"
    cases = [(np.zeros((0, 8)), "zero frames"), (np.full((2, 8), np.nan), "non-finite"),
             (np.full((2, 8), 1e6), "non-finite"), (np.zeros(8), "2-D")]
    for arr, msg in cases:
        with pytest.raises(HeroError, match=msg):
            with VideoStoreWriter(tmp_path / "b", frame_interval=1.5, features=FEATURES) as w:
                w.add("x", arr)
    with pytest.raises(HeroError, match="written twice"):
        with VideoStoreWriter(tmp_path / "c", frame_interval=1.5, features=FEATURES) as w:
            w.add("x", np.zeros((2, 8)))
            w.add("x", np.zeros((2, 8)))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_failure_keeps_previous_store(tmp_path):
    videos = random_videos(2)
    write_store(tmp_path / "v", videos)
    with pytest.raises(HeroError, match="already exists"):
        write_store(tmp_path / "v", videos)
    with pytest.raises(RuntimeError):
        with VideoStoreWriter(tmp_path / "v", frame_interval=1.5, features=FEATURES, overwrite=True) as w:
            w.add("new", np.zeros((2, 8)))
            raise RuntimeError("boom")
    store = VideoFeatureStore(tmp_path / "v")
    assert sorted(store.keys()) == sorted(videos)
    # overwrite succeeds and replaces
    store = write_store(tmp_path / "v", {"only": np.ones((3, 8))}, overwrite=True)
    assert store.keys() == ["only"]
    assert [p.name for p in tmp_path.iterdir()] == ["v"]


def test_map_grows(tmp_path, monkeypatch):
    monkeypatch.setattr(stores, "_INITIAL_MAP_SIZE", 1 << 16)
    monkeypatch.setattr(stores, "_BATCH_BYTES", 1 << 14)
    videos = {f"v{i}": np.full((50, 64), i, dtype=np.float32) for i in range(40)}  # ~256 KiB fp16
    with VideoStoreWriter(tmp_path / "v", frame_interval=2.0, features=[("x", 64)]) as w:
        for vid, arr in videos.items():
            w.add(vid, arr)
        assert w._writer.map_size > 1 << 16
    store = VideoFeatureStore(tmp_path / "v")
    assert len(store) == 40
    assert float(store.get("v39")[0, 0]) == 39.0


def test_open_checks_format(tmp_path):
    path = tmp_path / "v"
    write_store(path, random_videos(1))
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(HeroError, match="format_version 99.*newer hero"):
        VideoFeatureStore(path)
    (path / "meta.json").write_text(json.dumps({**meta, "format": "something-else"}))
    with pytest.raises(HeroError, match="not a hero-video-store"):
        VideoFeatureStore(path)
    (path / "meta.json").unlink()
    with pytest.raises(HeroError, match="meta.json missing"):
        VideoFeatureStore(path)
    with pytest.raises(HeroError, match="directory missing"):
        VideoFeatureStore(tmp_path / "absent")
    (path / "meta.json").write_text(json.dumps(meta))
    assert len(VideoFeatureStore(path)) == 1
    # a subtitle store path is not a video store
    with pytest.raises(HeroError, match="not a hero-subtitle-store"):
        SubtitleStore(path)


def sub_record(vid, n=6):
    return {"vid": vid, "nframes": n, "subs": [{"start": 0.0, "end": 3.0, "text": "Hi there", "speaker": "A"},
                                              {"start": 3.0, "end": 6.0, "text": "Bye", "speaker": None}],
            "input_ids": [[10, 11], [12]], "unique_sub2frames": [[0, [0, 1]], [1, [2, 3]]],
            "unmatched_frames": [4, 5], "pseudo": False}


def test_subtitle_store_roundtrip(tmp_path):
    recs = {v: sub_record(v) for v in ("a", "b", "c")}
    with SubtitleStoreWriter(tmp_path / "s", frame_interval=1.5, tokenizer={"name_or_path": "x"}) as w:
        for vid, r in recs.items():
            w.add(vid, r)
    store = SubtitleStore(tmp_path / "s")
    assert len(store) == 3 and sorted(store.keys()) == ["a", "b", "c"]
    for vid, r in recs.items():
        assert store.get(vid) == r
    assert "a" in store and "z" not in store
    assert store.meta["tokenizer"] == {"name_or_path": "x"}


def test_subtitle_writer_validates(tmp_path):
    bad = [({"vid": "a"}, "lacks"), ({**sub_record("a"), "input_ids": [[1]]}, "1 token lists for 2"),
           ({**sub_record("a"), "unique_sub2frames": [[5, [0]]]}, "names subtitle 5"),
           ({**sub_record("a"), "unique_sub2frames": [[0, [6]]]}, r"outside \[0, 6\)")]
    for rec, msg in bad:
        with pytest.raises(HeroError, match=msg):
            with SubtitleStoreWriter(tmp_path / "s", frame_interval=1.5) as w:
                w.add("a", rec)
        assert not (tmp_path / "s").exists()


def _child_read(store, vid, queue):
    queue.put(store.get(vid).sum().item())


def test_fork_and_pickle_safe(tmp_path):
    videos = random_videos(3)
    store = write_store(tmp_path / "v", videos)
    expected = float(store.get("vid_1").sum())  # opens the environment in the parent
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_read, args=(store, "vid_1", queue))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 0
    assert queue.get(timeout=5) == pytest.approx(expected)
    assert store._db._pid == __import__("os").getpid()
    clone = pickle.loads(pickle.dumps(store))
    assert clone._db._env is None
    np.testing.assert_array_equal(clone.get("vid_2"), store.get("vid_2"))
