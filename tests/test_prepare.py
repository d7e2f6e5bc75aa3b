"""``hero data prepare <dataset>`` on small samples in the real raw formats.

Every ``raw/<dataset>/`` folder of ``tests/fixtures`` (and of each directory in
``HERO_DATA_FIXTURES``) is converted; the written records are checked against the raw records
with the format's rules (`_check_*`), which must also fail on a perturbed raw value.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from hero.data.prepare import DATASETS, add_arguments, prepare
from hero.data.prepare.common import iter_records, parse_annotation_spec, split_from_name
from hero.data.tokenizer import train_tokenizer
from hero.errors import HeroError

FIXTURES = Path(__file__).parent / "fixtures"


def _raw_dirs() -> list[tuple[str, Path]]:
    roots = [FIXTURES] + [Path(p) for p in os.environ.get("HERO_DATA_FIXTURES", "").split(":") if p]
    out = []
    for root in roots:
        for d in sorted((root / "raw").glob("*")) if (root / "raw").is_dir() else []:
            if d.is_dir():
                assert d.name in DATASETS, f"{d}: not a dataset name ({sorted(DATASETS)})"
                out.append((d.name, d))
    return out


RAW_DIRS = _raw_dirs()


def _is_subtitle(path: Path) -> bool:
    return path.suffix in (".srt", ".vtt") or "subtitles" in path.name or path.name.startswith("asr")


def _files(d: Path) -> tuple[list[Path], list[Path]]:
    files = sorted(p for p in d.iterdir() if p.is_file() and p.name not in ("videos.json", "README.md"))
    return [p for p in files if not _is_subtitle(p)], [p for p in files if _is_subtitle(p)]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    texts = []
    for _, d in RAW_DIRS:
        for p in d.iterdir():
            texts += p.read_text(encoding="utf-8").splitlines()
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    train_tokenizer(texts, 500, out)
    return out


def _features(d: Path, out: Path, dim: int = 8) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for vid, n in json.loads((d / "videos.json").read_text()).items():
        np.save(out / f"{vid}.npy", rng.standard_normal((n, dim)).astype(np.float32))
    return out


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def _prepare(dataset: str, d: Path, tmp: Path, tokenizer: Path | None, extra: list[str] = (),
             annotations: list[str] | None = None) -> Path:
    ann, subs = _files(d)
    argv = [dataset, "--features", str(_features(d, tmp / "features")), "--out", str(tmp / "corpus"),
            "--annotations", *(annotations or [str(p) for p in ann])]
    if subs:
        argv += ["--subtitles", *map(str, subs)]
    argv += ["--tokenizer", str(tokenizer)] if tokenizer else []
    return prepare(_args(argv + list(extra)), log=lambda *_: None)


def _read_out(corpus: Path, dataset: str) -> dict[str, list[dict]]:
    out = {}
    for f in sorted((corpus / "annotations" / dataset).glob("*.jsonl")):
        out[f.stem] = [json.loads(line) for line in f.read_text().splitlines()]
    return out


def _raw_by_split(d: Path, dataset: str) -> dict[str, list]:
    """Raw records per split, read with the plain JSON/CSV libraries (not the converter)."""
    import csv

    out: dict[str, list] = {}
    for p in _files(d)[0]:
        if p.suffix == ".csv":
            with open(p, newline="") as fh:
                out.setdefault(split_from_name(p), []).extend(csv.DictReader(fh))
        elif dataset == "msrvtt" and p.suffix == ".json":
            data = json.loads(p.read_text())
            split = {v["video_id"]: {"validate": "val"}.get(v["split"], v["split"]) for v in data["videos"]}
            for s in data["sentences"]:
                out.setdefault(split[s["video_id"]], []).append(s)
        else:
            out.setdefault(split_from_name(p), []).extend(r for _, r in iter_records(p))
    return out


def _enc(tok, text: str) -> list[int]:
    return tok.encode(text, unescape=False)


def _tvqa_ts(ts):
    if isinstance(ts, list):
        return ts
    try:
        st, ed = (float(x) for x in ts.split("-")[:2])
    except ValueError:
        return None
    return [st, ed] if math.isfinite(st) and math.isfinite(ed) else None


def _check(dataset: str, raw: dict, out: dict, tok, vids: set[str]) -> None:
    """The written records follow from the raw ones by the documented rules."""
    kind = DATASETS[dataset].kind
    assert set(out) == set(raw), (sorted(out), sorted(raw))
    for split, raws in raw.items():
        written = out[split]
        assert len(written) == len(raws), f"{dataset}/{split}: {len(written)} of {len(raws)} records written"
        for r, w in zip(raws, written):
            if kind == "retrieval":
                assert set(w) == {"qid", "vid", "desc", "input_ids", "ts", "duration", "type"}
                assert w["input_ids"] == _enc(tok, w["desc"]) and w["input_ids"]
            if dataset in ("tvr", "how2r"):
                # the id keeps its type: the official TVR evaluator needs int desc_ids in submissions
                assert w["qid"] == r["desc_id"] and type(w["qid"]) is type(r["desc_id"]) and w["desc"] == r["desc"]
                assert (w["vid"], w["ts"], w["duration"], w["type"]) == (
                    r.get("vid_name"), r.get("ts"), r.get("duration"), r.get("type"))
            elif dataset == "didemo":
                assert w["qid"] == str(r["annotation_id"]) and w["desc"] == r["description"]
                assert w["vid"] in vids and r["video"].startswith(w["vid"])
                assert w["ts"] == [[5.0 * s, 5.0 * (e + 1)] for s, e in r["times"]]
            elif dataset == "msrvtt":
                assert w["qid"] == str(r.get("sen_id", r.get("key")))
                assert w["vid"] == r["video_id"] and w["desc"] == r.get("caption", r.get("sentence"))
                assert w["ts"] is None
            elif kind == "qa":
                n = 5 if dataset == "tvqa" else len([k for k in r if k[:1] == "a" and k[1:].isdigit()])
                assert set(w) == {"qid", "vid", "q", "answers", "q_ids", "a_ids", "answer_idx", "ts", "q_type"}
                assert w["qid"] == str(r["qid"]) and w["vid"] == r["vid_name"] and w["q"] == r["q"]
                assert w["answers"] == [r[f"a{i}"] for i in range(n)]
                assert w["q_ids"] == _enc(tok, r["q"])
                assert w["a_ids"] == [_enc(tok, a) for a in w["answers"]]
                assert w["answer_idx"] == r.get("answer_idx") and w["ts"] == _tvqa_ts(r["ts"])
            elif kind == "violin":
                assert set(w) == {"qid", "vid", "statement", "input_ids", "label"}
                assert (w["qid"], w["vid"], w["statement"], w["label"]) == (
                    r["desc_id"], r["vid_name"], r["desc"], r.get("label"))
                assert w["input_ids"] == _enc(tok, r["desc"])
            elif kind == "captioning":
                assert set(w) == {"clip_id", "vid", "ts", "duration", "captions"}
                assert (w["clip_id"], w["vid"], w["ts"], w["duration"]) == (
                    str(r["clip_id"]), r["vid_name"], r["ts"], r.get("duration"))
                assert [(c["desc_id"], c["desc"]) for c in w["captions"]] == [
                    (str(c["desc_id"]), c["desc"]) for c in r.get("descs", [])]
                assert all(c["input_ids"] == _enc(tok, c["desc"]) for c in w["captions"])


@pytest.mark.parametrize("dataset, d", RAW_DIRS, ids=[f"{n}:{d}" for n, d in RAW_DIRS])
def test_prepare_real_format_sample(dataset, d, tmp_path, tokenizer_dir):
    from hero.data.tokenizer import Tokenizer

    corpus = _prepare(dataset, d, tmp_path, tokenizer_dir)
    meta = json.loads((corpus / "corpus.json").read_text())
    assert meta["frame_interval"] == DATASETS[dataset].frame_interval
    assert meta["name"] == DATASETS[dataset].family
    assert (corpus / "problems.json").is_file() and (corpus / "video").is_dir() and (corpus / "subtitles").is_dir()
    vids = set(json.loads((d / "videos.json").read_text()))
    raw, out = _raw_by_split(d, dataset), _read_out(corpus, dataset)
    tok = Tokenizer.load(tokenizer_dir)
    _check(dataset, raw, out, tok, vids)
    # perturbing a raw value is caught by the same check
    split = next(iter(raw))
    bent = copy.deepcopy(raw)
    rec = bent[split][0]
    key = next(k for k in ("desc", "description", "caption", "sentence", "q", "clip_id") if k in rec)
    rec[key] = f"{rec[key]} extra"
    with pytest.raises(AssertionError):
        _check(dataset, bent, out, tok, vids)
    assert not list(tmp_path.glob(".corpus*")), "temporary directories left behind"


def test_video_only_dataset_gets_pseudo_subtitles(tmp_path, tokenizer_dir):
    from hero.data.stores import SubtitleStore

    corpus = _prepare("didemo", FIXTURES / "raw" / "didemo", tmp_path, tokenizer_dir)
    store = SubtitleStore(corpus / "subtitles")
    rec = store.get("10015567@N08_3655084291_d8b58466fa")
    assert rec["pseudo"] and all(s["text"] == "" for s in rec["subs"])
    assert rec["unique_sub2frames"][0][1] == [0, 1, 2, 3, 4]
    # ASR text given as subtitles replaces the pseudo ones
    corpus = _prepare("how2r", FIXTURES / "raw" / "how2r", tmp_path / "b", tokenizer_dir)
    rec = SubtitleStore(corpus / "subtitles").get("d7rzBcvQhcA_30_90")
    assert not rec["pseudo"] and rec["subs"][0]["text"] == "so now we take the onion"


def test_tv_subtitles_are_aligned_and_tokenized(tmp_path, tokenizer_dir):
    from hero.data.alignment import align_subtitles
    from hero.data.stores import SubtitleStore
    from hero.data.subtitles import read_subtitle_file
    from hero.data.tokenizer import Tokenizer

    d = FIXTURES / "raw" / "tvr"
    corpus = _prepare("tvr", d, tmp_path, tokenizer_dir)
    subs = read_subtitle_file(d / "tv_subtitles.jsonl")
    nframes = json.loads((d / "videos.json").read_text())
    tok = Tokenizer.load(tokenizer_dir)
    store = SubtitleStore(corpus / "subtitles")
    vid = "friends_s04e21_seg02_clip_18"
    rec = store.get(vid)
    assert rec["input_ids"] == [tok.encode(s.text) for s in subs[vid]]
    expected = align_subtitles(subs[vid], nframes[vid], 1.5)
    assert [tuple(x) for x in rec["unique_sub2frames"]] == [(k, v) for k, v in expected.unique_sub2frames]
    amp = store.get("friends_s01e03_seg02_clip_19")["input_ids"][2]
    assert amp == tok.encode(" Phoebe : It tastes like strawberries & cream.")  # subtitles are unescaped


def test_combined_tv_corpus_and_train_tokenizer(tmp_path):
    raw = FIXTURES / "raw"
    corpus = _prepare("tvr", raw / "tvr", tmp_path, None, extra=["--train-tokenizer", "300"], annotations=[
        str(raw / "tvr" / "tvr_val_release.jsonl"), f"tvqa:{raw / 'tvqa' / 'tvqa_val.jsonl'}",
        f"tvc:train={raw / 'tvc' / 'tvc_val_release.jsonl'}", f"violin:{raw / 'violin' / 'violin_val.jsonl'}"])
    meta = json.loads((corpus / "corpus.json").read_text())
    assert meta["annotations"] == {"tvr": {"val": 4}, "tvqa": {"val": 3}, "tvc": {"train": 2}, "violin": {"val": 4}}
    assert (corpus / "tokenizer").is_dir() and meta["tokenizer"]["local_dir"] == "tokenizer"
    with pytest.raises(HeroError, match="cannot share a corpus"):
        _prepare("tvr", raw / "tvr", tmp_path / "x", None, annotations=[f"msrvtt:{raw / 'msrvtt' / 'x.csv'}"])


def test_annotation_spec_parsing():
    assert parse_annotation_spec("a/tvr_val_release.jsonl", "tvr") == parse_annotation_spec(
        "tvr:a/tvr_val_release.jsonl", "tvqa")
    spec = parse_annotation_spec("tvqa:train=some/file.jsonl", "tvr")
    assert (spec.dataset, spec.split, str(spec.path)) == ("tvqa", "train", "some/file.jsonl")
    assert split_from_name(Path("tvr_test_public_release.jsonl")) == "test_public"
    assert split_from_name(Path("MSRVTT_JSFUSION_test.csv")) == "test"
    assert split_from_name(Path("x_validate.json")) == "val"
    with pytest.raises(HeroError, match="cannot tell the split"):
        split_from_name(Path("annotations.jsonl"))


def _tvr_copy(tmp_path: Path, extra_line: str) -> Path:
    d = tmp_path / "raw_tvr"
    shutil.copytree(FIXTURES / "raw" / "tvr", d)
    f = d / "tvr_val_release.jsonl"
    f.write_text(f.read_text() + extra_line + "\n")
    return d


def test_malformed_record_is_counted_or_fatal(tmp_path, tokenizer_dir):
    d = _tvr_copy(tmp_path, json.dumps({"vid_name": "s02e14_seg02_clip_02", "desc_id": 1, "ts": [1, 2]}))
    corpus = _prepare("tvr", d, tmp_path / "a", tokenizer_dir)
    problems = json.loads((corpus / "problems.json").read_text())
    assert problems["skipped"] == {"malformed annotation": 1}
    assert problems["examples"]["malformed annotation"] == [
        f"{d / 'tvr_val_release.jsonl'}:5: missing field 'desc'"]
    with pytest.raises(HeroError, match=r"tvr_val_release.jsonl:5: missing field 'desc' \(strict mode"):
        _prepare("tvr", d, tmp_path / "b", tokenizer_dir, extra=["--strict"])
    assert not (tmp_path / "b" / "corpus").exists()


@pytest.mark.parametrize("line, message", [
    ("{oops", r"tvr_val_release.jsonl:5: invalid JSON \(Expecting property name"),
    ("null", r"tvr_val_release.jsonl:5: expected a JSON object, got null"),
    ("42", r"tvr_val_release.jsonl:5: expected a JSON object, got a number"),
    ('"a string"', r"tvr_val_release.jsonl:5: expected a JSON object, got a string"),
    ("[1, 2]", r"tvr_val_release.jsonl:5: expected a JSON object, got a list"),
    ('{"vid_name": "s02e14_seg02_clip_02", "desc": "cut sh',
     r"tvr_val_release.jsonl:5: invalid JSON \(the line ends before the JSON value is complete\)"),
])
def test_unreadable_line_is_an_error(tmp_path, tokenizer_dir, line, message):
    d = _tvr_copy(tmp_path, line)
    with pytest.raises(HeroError, match=message):
        _prepare("tvr", d, tmp_path / "a", tokenizer_dir)
    assert not (tmp_path / "a" / "corpus").exists()


def test_non_utf8_annotation_file_is_named(tmp_path, tokenizer_dir):
    d = tmp_path / "raw_tvr"
    shutil.copytree(FIXTURES / "raw" / "tvr", d)
    f = d / "tvr_val_release.jsonl"
    lines = f.read_text().splitlines()
    lines[1] = lines[1].replace("}", ', "note": "caf\u00e9"}')
    f.write_bytes("\n".join(lines).encode("latin-1") + b"\n")
    with pytest.raises(HeroError, match=r"tvr_val_release\.jsonl:2: not UTF-8 text \(byte 0xe9 at column \d+\)"):
        _prepare("tvr", d, tmp_path / "a", tokenizer_dir)
    assert not (tmp_path / "a" / "corpus").exists()


def test_val_query_without_video_is_counted_or_fatal(tmp_path, tokenizer_dir):
    d = _tvr_copy(tmp_path, json.dumps({"desc": "who left?", "desc_id": 99, "ts": [1, 2], "duration": 9.0}))
    corpus = _prepare("tvr", d, tmp_path / "a", tokenizer_dir)
    problems = json.loads((corpus / "problems.json").read_text())
    assert problems["skipped"] == {"malformed annotation": 1}
    assert problems["examples"]["malformed annotation"] == [
        f"{d / 'tvr_val_release.jsonl'}:5: missing field 'vid' (only test splits may leave the video out; "
        "split 'val')"]
    assert all(r["vid"] is not None for r in _read_out(corpus, "tvr")["val"])
    with pytest.raises(HeroError, match=r"tvr_val_release.jsonl:5: missing field 'vid' .*\(strict mode"):
        _prepare("tvr", d, tmp_path / "b", tokenizer_dir, extra=["--strict"])


@pytest.mark.parametrize("dataset, record, message", [
    ("tvr", {"desc": "x", "desc_id": 5, "vid_name": "v", "ts": [1]}, "ts must be \\[start, end\\]"),
    ("tvr", {"desc": "x", "desc_id": 5, "vid_name": "v", "ts": [3, 1], "duration": 9},
     "ts \\[3\\.0, 1\\.0\\] must be \\[start, end\\] with 0 <= start <= end"),
    ("tvr", {"desc": "x", "desc_id": 5, "vid_name": "v", "ts": [30, 40], "duration": 9},
     "ts \\[30\\.0, 40\\.0\\] lies outside the video \\(duration 9 s\\)"),
    ("tvr", {"desc": "x", "desc_id": 5, "ts": [1, 2], "duration": 9}, "missing field 'vid'"),
    ("tvr", {"desc": "x", "desc_id": 5, "vid_name": "v", "ts": [1, 2], "duration": -3},
     "duration must be > 0 seconds"),
    ("tvc", {"vid_name": "v", "clip_id": 3, "ts": [1, 2], "descs": "a caption"}, "field 'descs' must be a list"),
    ("how2qa", {"qid": 1, "q": "q?", "a0": "a", "a1": "b", "answer_idx": 2, "vid_name": "v"},
     "field 'answer_idx' must be an integer in \\[0, 2\\)"),
    ("tvqa", {"qid": 1, "q": "q?", "a0": "a", "a1": "b", "a2": "c", "a3": "d", "vid_name": "v", "ts": "1-2"},
     "missing field 'a4'"),
    ("tvqa", {"qid": 1, "q": "q?", "a0": "a", "a1": "b", "a2": "c", "a3": "d", "a4": "e", "answer_idx": 7,
              "vid_name": "v", "ts": "1-2"}, "field 'answer_idx' must be an integer in \\[0, 5\\)"),
    ("tvc", {"vid_name": "v", "clip_id": 3, "ts": [1, 2], "descs": [{"desc": "x"}]},
     "descs\\[0\\]: missing field 'desc_id'"),
    ("violin", {"desc_id": "v-0", "desc": "x", "vid_name": "v", "label": 2}, "field 'label' must be 0 or 1"),
    ("didemo", {"annotation_id": 1, "description": "x", "video": "v", "times": [[2, 9]]}, "times\\[0\\]"),
    ("msrvtt", {"sen_id": 3, "video_id": "video1"}, "missing field 'caption'"),
])
def test_malformed_records_name_file_and_line(tmp_path, dataset, record, message):
    from hero.data.prepare import read_annotations
    from hero.data.problems import Problems

    f = tmp_path / f"{dataset}_val.jsonl"
    f.write_text(json.dumps(record) + "\n")
    with pytest.raises(HeroError, match=f"{dataset}_val.jsonl:1: {message}"):
        read_annotations(DATASETS[dataset], f, None, Problems(strict=True))


def test_missing_video_is_counted(tmp_path, tokenizer_dir):
    line = json.dumps({"vid_name": "no_such_video", "duration": 9.0, "ts": [1, 2], "desc": "gone", "type": "v",
                       "desc_id": 77})
    d = _tvr_copy(tmp_path, line)
    corpus = _prepare("tvr", d, tmp_path / "a", tokenizer_dir)
    problems = json.loads((corpus / "problems.json").read_text())
    assert problems["skipped"].get("missing video") == 1
    assert len(_read_out(corpus, "tvr")["val"]) == 4
