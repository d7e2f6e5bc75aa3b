"""`build_corpus` and the feature readers: layout, alignment, tokenization, and every bad-input case."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from hero.data.alignment import align_subtitles
from hero.data.build import build_corpus, load_feature_file, read_feature_dir
from hero.data.corpus import Corpus
from hero.data.problems import Problems
from hero.data.stores import SubtitleStore, VideoFeatureStore
from hero.data.subtitles import Subtitle
from hero.errors import HeroError

DIM = 6
WORDS = "alice bob takes the red cup and drinks coffee in kitchen leaves door opens".split()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from hero.data.tokenizer import train_tokenizer

    texts = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))]
    return train_tokenizer(texts, 300, tmp_path_factory.mktemp("tok") / "tokenizer")


def feats(n, seed=0, dim=DIM):
    return np.random.RandomState(seed).rand(n, dim).astype(np.float32)


def subs(*spans):
    return [Subtitle(st, ed, text, speaker) for st, ed, text, speaker in spans]


def base_inputs():
    videos = [("ep1", feats(8, 1)), ("ep2", feats(5, 2)), ("ep3", feats(4, 3))]
    subtitles = {
        "ep1": subs((0.0, 2.9, "alice: takes the red cup", "alice"), (3.1, 6.2, "bob: drinks coffee", "bob"),
                    (9.0, 11.0, "leaves", None)),
        "ep2": subs((0.5, 4.0, "the door opens", None)),
    }
    annotations = {"tvr": {"train": [{"qid": "1", "vid": "ep1", "desc": "alice takes the cup", "input_ids": [5],
                                      "ts": [0.0, 3.0], "duration": 12.0, "type": "v"}],
                           "test": [{"qid": "2", "vid": None, "desc": "?", "input_ids": [6], "ts": None,
                                     "duration": None, "type": None}]}}
    return videos, subtitles, annotations


def build(tmp_path, tokenizer, problems=None, name="c", **kw):
    videos, subtitles, annotations = base_inputs()
    args = dict(name="tiny", frame_interval=1.5, videos=videos, subtitles=subtitles, annotations=annotations,
                tokenizer=tokenizer, problems=problems if problems is not None else Problems())
    args.update(kw)
    return build_corpus(tmp_path / name, **args)


def test_layout_and_content(tmp_path, tokenizer):
    problems = Problems()
    root = build(tmp_path, tokenizer, problems, source={"test": True})
    names = sorted(p.name for p in root.iterdir())
    assert names == ["annotations", "corpus.json", "problems.json", "subtitles", "tokenizer", "video"]
    info = json.loads((root / "corpus.json").read_text())
    assert info["format"] == "hero-corpus" and info["format_version"] == 1 and info["name"] == "tiny"
    assert info["frame_interval"] == 1.5 and info["num_videos"] == 3
    assert info["tokenizer"]["local_dir"] == "tokenizer" and info["tokenizer"]["vocab_size"] == tokenizer.vocab_size
    assert info["annotations"] == {"tvr": {"train": 1, "test": 1}}
    video = VideoFeatureStore(root / "video")
    assert video.meta.dim == DIM and video.meta.features == [{"name": "features", "dim": DIM}]
    assert json.loads((root / "video" / "nframes.json").read_text()) == {"ep1": 8, "ep2": 5, "ep3": 4}
    videos, subtitles, _ = base_inputs()
    for vid, arr in videos:
        np.testing.assert_array_equal(video.get(vid), arr.astype(np.float16).astype(np.float32))
    store = SubtitleStore(root / "subtitles")
    for vid, arr in videos:
        rec = store.get(vid)
        n = arr.shape[0]
        if vid in subtitles:
            given = subtitles[vid]
            align = align_subtitles(given, n, 1.5)
            assert not rec["pseudo"]
            assert rec["input_ids"] == [tokenizer.encode(s.text) for s in given]
            assert [s["text"] for s in rec["subs"]] == [s.text for s in given]
            assert [s["speaker"] for s in rec["subs"]] == [s.speaker for s in given]
            assert rec["unique_sub2frames"] == [[k, fr] for k, fr in align.unique_sub2frames]
            assert rec["unmatched_frames"] == align.unmatched_frames
        else:
            assert rec["pseudo"] and rec["input_ids"] == [[]]
            assert rec["unique_sub2frames"] == [[0, [0, 1, 2, 3]]]
    lines = (root / "annotations" / "tvr" / "train.jsonl").read_text().splitlines()
    assert [json.loads(x)["qid"] for x in lines] == ["1"]
    assert problems.noted["no subtitles"] == 1 and problems.num_skipped == 0
    assert json.loads((root / "problems.json").read_text())["adjusted"] == {"no subtitles": 1}


def test_no_subtitles_at_all_gives_pseudo_groups(tmp_path, tokenizer):
    root = build(tmp_path, tokenizer, subtitles=None, annotations=None, save_tokenizer=False)
    store = SubtitleStore(root / "subtitles")
    rec = store.get("ep1")
    assert rec["pseudo"] and rec["unique_sub2frames"] == [[0, [0, 1, 2, 3, 4]], [1, [5, 6, 7]]]
    assert rec["subs"][1]["start"] == 7.5 and rec["subs"][1]["end"] == 12.0
    assert not (root / "tokenizer").exists()
    assert json.loads((root / "corpus.json").read_text())["tokenizer"]["local_dir"] is None


# ---- bad input: each case names what and where; strict makes it fatal; nothing half-written ----


def case_missing_video(kw):
    kw["annotations"]["tvr"]["train"].append({"qid": "9", "vid": "ghost", "desc": "who", "input_ids": [7],
                                              "ts": None, "duration": None, "type": None})
    return "missing video", r"train.jsonl record 2 \(9\): names video 'ghost', which has no \(usable\) features"


def case_dimension(kw):
    kw["videos"].append(("wide", feats(3, dim=DIM + 1)))
    return "dimension mismatch", r"video 'wide': feature dimension 7, expected 6"


def case_empty_subtitle(kw):
    kw["subtitles"]["ep2"] = subs((0.0, 1.0, "   ", None), (1.0, 3.0, "door", None))
    return "empty subtitle", r"video 'ep2' subtitle 0: empty text"


def case_subtitle_after_end(kw):
    kw["subtitles"]["ep3"] = subs((0.0, 1.0, "door", None), (6.0, 7.0, "late", None))
    return "subtitle out of range", r"video 'ep3' subtitle 1: starts at 6.0 s, after the video ends"


def case_subtitle_inverted(kw):
    kw["subtitles"]["ep3"] = subs((2.0, 1.0, "back", None))
    return "subtitle out of range", r"video 'ep3' subtitle 0: invalid time span \[2.0, 1.0\]"


def case_nan(kw):
    bad = feats(3)
    bad[1, 2] = np.nan
    kw["videos"].append(("nan", bad))
    return "non-finite features", r"video 'nan': NaN/inf features"


def case_fp16_overflow(kw):
    kw["videos"].append(("big", feats(3) * 1e6))
    return "non-finite features", r"video 'big': NaN/inf features \(or values beyond the float16 range\)"


def case_zero_frames(kw):
    kw["videos"].append(("empty", np.zeros((0, DIM), np.float32)))
    return "zero-frame video", r"video 'empty': the video has no frame"


def case_duplicate(kw):
    kw["videos"].append(("ep1", feats(3)))
    return "duplicate video", r"video 'ep1': features given twice"


def case_unknown_subtitles(kw):
    kw["subtitles"]["nofeat"] = subs((0.0, 1.0, "x", None))
    return "subtitles of unknown video", r"subtitles of 'nofeat': no \(usable\) features"


CASES = [case_missing_video, case_dimension, case_empty_subtitle, case_subtitle_after_end, case_subtitle_inverted,
         case_nan, case_fp16_overflow, case_zero_frames, case_duplicate, case_unknown_subtitles]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__[5:])
def test_bad_input_counted_or_fatal(tmp_path, tokenizer, case):
    videos, subtitles, annotations = base_inputs()
    kw = {"videos": videos, "subtitles": subtitles, "annotations": annotations}
    kind, message = case(kw)
    problems = Problems()
    root = build(tmp_path, tokenizer, problems, **kw)
    assert problems.skipped[kind] == 1, problems.summary()
    assert any(__import__("re").search(message, ex) for ex in problems.examples[kind]), problems.examples[kind]
    assert kind in problems.summary()
    assert json.loads((root / "problems.json").read_text())["skipped"][kind] == 1
    Corpus(root)  # the rest is usable
    # strict: the same input is fatal, with the same message, and leaves nothing behind
    videos, subtitles, annotations = base_inputs()
    kw = {"videos": videos, "subtitles": subtitles, "annotations": annotations}
    case(kw)
    with pytest.raises(HeroError, match=message):
        build(tmp_path, tokenizer, Problems(strict=True), name="strict", **kw)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_skipped_subtitle_keeps_the_others_aligned(tmp_path, tokenizer):
    videos, subtitles, annotations = base_inputs()
    subtitles["ep3"] = subs((0.0, 1.0, "door", None), (1.0, 2.0, "", None), (2.0, 5.0, "opens", None))
    root = build(tmp_path, tokenizer, videos=videos, subtitles=subtitles, annotations=annotations)
    rec = SubtitleStore(root / "subtitles").get("ep3")
    assert [s["text"] for s in rec["subs"]] == ["door", "opens"]
    assert rec["unique_sub2frames"] == [[k, fr] for k, fr in align_subtitles([(0.0, 1.0), (2.0, 5.0)], 4, 1.5)
                                        .unique_sub2frames]


def test_long_video_note(tmp_path, tokenizer):
    problems = Problems(strict=True)  # a note is never fatal
    root = build(tmp_path, tokenizer, problems, max_frames=5)
    assert problems.noted["video longer than frame limit"] == 1
    assert "video 'ep1': 8 frames; clips keep the first 5" in problems.summary()
    assert VideoFeatureStore(root / "video").num_frames("ep1") == 8  # stored whole
    clip = Corpus(root, max_clip_len=5).clip("ep1")
    assert clip.num_frames == 5 and all(f < 5 for _, fr in clip.sub2frames for f in fr)


def test_unsorted_subtitles_sorted_with_note(tmp_path, tokenizer):
    videos, subtitles, annotations = base_inputs()
    subtitles["ep2"] = subs((3.0, 4.0, "later", None), (0.0, 2.0, "first", None))
    problems = Problems()
    root = build(tmp_path, tokenizer, problems, videos=videos, subtitles=subtitles, annotations=annotations)
    assert problems.noted["unsorted subtitles"] == 1
    assert [s["text"] for s in SubtitleStore(root / "subtitles").get("ep2")["subs"]] == ["first", "later"]


def test_atomic_replace(tmp_path, tokenizer):
    root = build(tmp_path, tokenizer)
    with pytest.raises(HeroError, match="already exists"):
        build(tmp_path, tokenizer)
    videos, subtitles, annotations = base_inputs()
    videos.append(("nan", np.full((2, DIM), np.nan)))
    with pytest.raises(HeroError, match="non-finite"):
        build(tmp_path, tokenizer, Problems(strict=True), videos=videos, overwrite=True)
    assert sorted(Corpus(root).video_ids()) == ["ep1", "ep2", "ep3"]  # previous corpus untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
    build(tmp_path, tokenizer, videos=[("solo", feats(3))], subtitles=None, annotations=None, overwrite=True)
    assert Corpus(root).video_ids() == ["solo"]
    with pytest.raises(HeroError, match="no usable video"):
        build(tmp_path, tokenizer, name="none", videos=[("z", np.zeros((0, DIM)))])
    assert not (tmp_path / "none").exists()


def test_deterministic(tmp_path, tokenizer):
    a = build(tmp_path, tokenizer, name="a", save_tokenizer=False)
    b = build(tmp_path, tokenizer, name="b", save_tokenizer=False)
    for rel in ("corpus.json", "problems.json", "video/meta.json", "video/nframes.json", "subtitles/meta.json",
                "annotations/tvr/train.jsonl", "video/data.mdb", "subtitles/data.mdb"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


# ---- feature readers -----------------------------------------------------------------------------


def test_feature_files(tmp_path):
    arr = feats(4)
    np.save(tmp_path / "a.npy", arr)
    np.savez(tmp_path / "b.npz", features=arr)
    np.savez_compressed(tmp_path / "c.npz", other=arr)
    np.savez(tmp_path / "d.npz", x=arr, y=arr)
    (tmp_path / "e.npz").write_bytes(b"garbage")
    for name in "abc":
        np.testing.assert_array_equal(load_feature_file(tmp_path / f"{name}.npy" if name == "a"
                                                        else tmp_path / f"{name}.npz"), arr)
    with pytest.raises(HeroError, match=r"d.npz: no 'features' array \(arrays: \['x', 'y'\]\)"):
        load_feature_file(tmp_path / "d.npz")
    with pytest.raises(HeroError, match="e.npz: unreadable feature file"):
        load_feature_file(tmp_path / "e.npz")


def test_reference_layout_concatenates_resnet_first(tmp_path, tokenizer):
    rs = np.random.RandomState(0)
    lengths = {"v1": (10, 9), "v2": (7, 7), "v3": (5, 6)}
    for vid, (n_rn, n_sf) in lengths.items():
        (tmp_path / "feat" / "resnet_features" / "show").mkdir(parents=True, exist_ok=True)
        (tmp_path / "feat" / "slowfast_features" / "show").mkdir(parents=True, exist_ok=True)
        np.savez(tmp_path / "feat" / "resnet_features" / "show" / f"{vid}.npz",
                 features=rs.rand(n_rn, 2048).astype(np.float16))
        np.savez(tmp_path / "feat" / "slowfast_features" / "show" / f"{vid}.npz",
                 features=rs.rand(n_sf, 2304).astype(np.float16))
    np.savez(tmp_path / "feat" / "resnet_features" / "only_rn.npz", features=rs.rand(3, 2048))
    problems = Problems()
    source = read_feature_dir(tmp_path / "feat", problems=problems)
    assert source.features == [{"name": "resnet152", "dim": 2048}, {"name": "slowfast_r50", "dim": 2304}]
    got = dict(source)
    assert sorted(got) == ["v1", "v2", "v3"]
    for vid, (n_rn, n_sf) in lengths.items():
        n = min(n_rn, n_sf)
        rn = np.load(tmp_path / "feat" / "resnet_features" / "show" / f"{vid}.npz")["features"]
        sf = np.load(tmp_path / "feat" / "slowfast_features" / "show" / f"{vid}.npz")["features"]
        np.testing.assert_array_equal(got[vid], np.concatenate([rn[:n], sf[:n]], axis=1))
    assert problems.noted["frame counts differ"] == 2
    assert problems.skipped["missing video"] == 1
    assert "no slowfast_r50 features for video 'only_rn'" in problems.summary()
    # through the builder: the store records the feature sets in order
    root = build_corpus(tmp_path / "c", name="ref", frame_interval=1.5, videos=read_feature_dir(tmp_path / "feat"),
                        subtitles=None, annotations=None, tokenizer=tokenizer, problems=Problems())
    meta = VideoFeatureStore(root / "video").meta
    assert meta.dim == 4352 and [f["name"] for f in meta.features] == ["resnet152", "slowfast_r50"]


def test_named_feature_sets_and_paths(tmp_path, tokenizer):
    for name, dim in (("clip", 4), ("audio", 2)):
        (tmp_path / "f" / name).mkdir(parents=True)
        for vid in ("a", "b"):
            np.save(tmp_path / "f" / name / f"{vid}.npy", np.full((3, dim), len(name), np.float32))
    source = read_feature_dir(tmp_path / "f", feature_sets=["audio", "clip"])
    assert source.features == [{"name": "audio", "dim": 2}, {"name": "clip", "dim": 4}]
    np.testing.assert_array_equal(dict(source)["a"][0], [5, 5, 4, 4, 4, 4])
    with pytest.raises(HeroError, match="feature set directory not found"):
        read_feature_dir(tmp_path / "f", feature_sets=["video"])
    # (vid, path) pairs are read by the builder; an unreadable one is a counted skip
    (tmp_path / "bad.npz").write_bytes(b"nope")
    problems = Problems()
    root = build_corpus(tmp_path / "c", name="p", frame_interval=2.0,
                        videos=[("a", tmp_path / "f" / "clip" / "a.npy"), ("bad", tmp_path / "bad.npz")],
                        subtitles=None, annotations=None, tokenizer=tokenizer, problems=problems,
                        feature_names=["clip"])
    assert problems.skipped["unreadable features"] == 1
    assert VideoFeatureStore(root / "video").meta.features == [{"name": "clip", "dim": 4}]


# ---- the official alignment fixtures, end to end through the stores and the Corpus -----------------


def fixture_dirs() -> list[Path]:
    dirs = [Path(__file__).parent / "fixtures" / "official_data_eval"]
    dirs += [Path(p) for p in os.environ.get("HERO_DATA_FIXTURES", "").split(":") if p]
    return [d for d in dirs if (d / "alignment" / "alignment_cases.json").is_file()]


def usable_cases(path: Path):
    """Cases the builder keeps whole: known frame count, every subtitle valid and inside the video."""
    data = json.loads(path.read_text())
    fl = data["frame_length"]
    for case in data["videos"]:
        n = case["vid2nframe"]
        if n <= 0 or "numpy2_expected_diff" in case:
            continue
        if all(0 <= s["start"] < s["end"] and s["start"] < n * fl for s in case["subs"]):
            yield fl, case


@pytest.mark.parametrize("fixture_dir", fixture_dirs(), ids=str)
def test_alignment_fixture_through_corpus(tmp_path, tokenizer, fixture_dir):
    usable = list(usable_cases(fixture_dir / "alignment" / "alignment_cases.json"))
    fl, cases = usable[0][0], [case for _, case in usable]
    assert cases, "no usable alignment case"
    cases = cases[:40]
    root = build_corpus(
        tmp_path / "c", name="align", frame_interval=fl,
        videos=[(c["vid_name"], np.zeros((c["vid2nframe"], 2), np.float32)) for c in cases],
        subtitles={c["vid_name"]: [Subtitle(s["start"], s["end"], "w") for s in c["subs"]] for c in cases},
        annotations=None, tokenizer=tokenizer, problems=Problems(strict=True))
    corpus = Corpus(root, max_clip_len=30)
    for c in cases:
        rec = corpus.subtitle_store.get(c["vid_name"])
        assert rec["unique_sub2frames"] == c["expected"]["db_record"]["unique_sub2frames"], c["vid_name"]
        assert rec["unmatched_frames"] == c["expected"]["db_record"]["unmatched_frames"], c["vid_name"]
        expected = c["expected"]["loader"]["30"]
        clip = corpus.clip(c["vid_name"])
        assert [[k, fr] for k, fr in clip.sub2frames] == expected["sub2frames"], c["vid_name"]
        assert clip.num_frames == expected["nframes"]
        assert clip.extra["unmatched_frames"] == expected["vonly_frames"]
    # a perturbed expectation is caught
    c = next(c for c in cases if any(fr for _, fr in c["expected"]["loader"]["30"]["sub2frames"]))
    perturbed = json.loads(json.dumps(c["expected"]["loader"]["30"]["sub2frames"]))
    next(fr for _, fr in perturbed if fr).append(29)
    assert [[k, fr] for k, fr in corpus.clip(c["vid_name"]).sub2frames] != perturbed


# ---- reference stores → our corpus --------------------------------------------------------------


def test_convert_reference_roundtrip(tmp_path, tokenizer):
    from hero.data.build import convert_reference
    from hero.data.reference_db import hero_to_reference_subtitles, write_reference_txt_db, write_reference_video_db

    ours = Corpus(build(tmp_path, tokenizer))
    vids = ours.video_ids()
    write_reference_video_db(tmp_path / "video_db" / "tv", ((v, ours.video_store.get(v)) for v in vids))
    sub_recs = [(v, hero_to_reference_subtitles(ours.subtitle_store.get(v))) for v in vids if v != "ep3"]
    sub_recs.append(("orphan", sub_recs[0][1]))
    write_reference_txt_db(tmp_path / "sub.db", sub_recs)
    tvr = [(r["qid"], {**r, "vid_name": r["vid"], "desc_id": int(r["qid"]), "target": r["ts"]})
           for r in ours.annotations("tvr", "train")]
    write_reference_txt_db(tmp_path / "tvr_train.db", tvr)
    problems = Problems()
    root = convert_reference(tmp_path / "conv", video_db=tmp_path / "video_db" / "tv", sub_db=tmp_path / "sub.db",
                             txt_dbs={("tvr", "train"): tmp_path / "tvr_train.db"}, tokenizer=tokenizer,
                             problems=problems)
    conv = Corpus(root)
    assert sorted(conv.video_ids()) == sorted(vids) and conv.name == "tv"
    for v in vids:
        a, b = ours.clip(v), conv.clip(v)
        assert torch_equal(a.features, b.features) and a.sub2frames == b.sub2frames and a.subtitles == b.subtitles
    # the same records, the desc_id as the reference db holds it (an int)
    assert conv.annotations("tvr", "train") == [{**r, "qid": int(r["qid"])} for r in ours.annotations("tvr", "train")]
    assert problems.skipped["subtitles of unknown video"] == 1 and problems.noted["no subtitles"] == 1
    assert conv.tokens == tokenizer.tokens
    # offline with an unknown tokenizer name: only the name is recorded
    root2 = convert_reference(tmp_path / "conv2", video_db=tmp_path / "video_db" / "tv", sub_db=None,
                              tokenizer="no-such/tokenizer-xyz", problems=Problems())
    info = json.loads((root2 / "corpus.json").read_text())
    assert info["tokenizer"] == {"name_or_path": "no-such/tokenizer-xyz", "local_dir": None}
    assert all(Corpus(root2).clip(v).extra["pseudo"] for v in vids)


def torch_equal(a, b):
    import torch

    return torch.equal(a, b)


# ---- hero data build | from-reference | info ------------------------------------------------------


def test_cli_build_info_from_reference(tmp_path, capsys):
    from hero.cli import main
    from hero.data.reference_db import hero_to_reference_subtitles, write_reference_txt_db, write_reference_video_db

    rs = np.random.RandomState(0)
    (tmp_path / "feat").mkdir()
    for i in range(3):
        np.save(tmp_path / "feat" / f"v{i}.npy", rs.rand(6 + i, DIM).astype(np.float32))
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "v0.srt").write_text("1\n00:00:00,500 --> 00:00:03,000\nAlice: take the red cup\n\n"
                                              "2\n00:00:04,000 --> 00:00:07,500\nBob: drinks coffee\n")
    (tmp_path / "subs" / "v1.vtt").write_text("WEBVTT\n\n00:00:01.000 --> 00:00:04.000\n<v Bob>the door opens\n")
    (tmp_path / "subs" / "ghost.srt").write_text("1\n00:00:00,500 --> 00:00:03,000\nnobody\n")
    (tmp_path / "ann" / "tvr").mkdir(parents=True)
    (tmp_path / "ann" / "tvr" / "train.jsonl").write_text(
        json.dumps({"qid": "1", "vid": "v0", "desc": "alice takes the cup", "ts": [0, 3], "duration": 9,
                    "type": "v"}) + "\n")
    out = tmp_path / "corpus"
    argv = ["data", "build", "--features", str(tmp_path / "feat"), "--subtitles", str(tmp_path / "subs"),
            "--annotations", str(tmp_path / "ann"), "--train-tokenizer", "280", "--out", str(out)]
    assert main(argv + ["--strict"]) == 2  # ghost.srt names a video without features
    assert "subtitles of 'ghost'" in capsys.readouterr().err and not out.exists()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "skipped 1 × subtitles of unknown video" in printed and "adjusted 1 × no subtitles" in printed
    corpus = Corpus(out)
    rec = corpus.annotations("tvr", "train")[0]
    assert rec["input_ids"] == corpus.tokenizer.encode("alice takes the cup")
    assert corpus.subtitles("v1")[0].speaker == "Bob"
    assert main(["data", "info", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "videos      3  (1 without subtitles)" in printed and "annotations tvr/train 1" in printed
    assert main(["data", "info", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"]["total"] == 6 + 7 + 8 and summary["feature_dim"] == DIM
    assert main(["data", "info", str(tmp_path / "nothing")]) == 2

    # back through the reference layout
    vids = corpus.video_ids()
    write_reference_video_db(tmp_path / "video_db" / "tv", ((v, corpus.video_store.get(v)) for v in vids))
    write_reference_txt_db(tmp_path / "sub.db", [(v, hero_to_reference_subtitles(corpus.subtitle_store.get(v)))
                                                 for v in vids])
    write_reference_txt_db(tmp_path / "tvr.db", [("1", {**rec, "vid_name": "v0"})])
    argv = ["data", "from-reference", "--video-db", str(tmp_path / "video_db" / "tv"), "--sub-db",
            str(tmp_path / "sub.db"), "--txt-db", f"tvr:train={tmp_path / 'tvr.db'}", "--tokenizer",
            str(out / "tokenizer"), "--out", str(tmp_path / "conv")]
    assert main(argv) == 0
    conv = Corpus(tmp_path / "conv")
    assert conv.annotations("tvr", "train") == corpus.annotations("tvr", "train")
    for v in vids:
        assert conv.clip(v).sub2frames == corpus.clip(v).sub2frames
    assert main(argv[:-1] + [str(tmp_path / "conv2"), "--txt-db", "tvr=oops"]) == 2
    assert "expected DATASET:SPLIT=DIR" in capsys.readouterr().err
