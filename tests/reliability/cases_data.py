"""Building corpora from user files: annotation records, raw releases, subtitle encodings, features.

Each case writes small inputs into its workspace and runs ``hero data build`` or ``hero data
prepare``. The tokenizer is the shared synthetic corpus's own (read only), so nothing is
downloaded. A case that ends in an error also checks that no corpus and no temporary directory
were left behind; a case with counted skips checks the skip count and what was written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from reliability.matrix import Case, Outcome, Workspace

RAW = Path(__file__).resolve().parents[1] / "fixtures" / "raw"
DIM = 8
VIDEOS = {"v0": 10, "v1": 8}  # frames (1.5 s each: 15 s and 12 s)
GOOD = {
    "tvr": {"qid": "q1", "vid": "v0", "desc": "alice takes the cup", "ts": [0, 3], "duration": 15.0, "type": "v"},
    "tvqa": {"qid": "a1", "vid": "v0", "q": "what does alice take?", "answers": ["a cup", "a pen", "a hat"],
             "answer_idx": 0, "ts": [0, 3], "q_type": None},
    "violin": {"qid": "7-1", "vid": "v1", "statement": "alice takes a cup", "label": 1},
    "tvc": {"clip_id": 5, "vid": "v1", "ts": [1, 4], "duration": 12.0,
            "captions": [{"desc_id": 50, "desc": "alice takes a cup"}]},
}


# -- setup helpers -----------------------------------------------------------------------------


def _features(ws: Workspace, videos: dict[str, int] | None = None, extra: dict[str, np.ndarray] | None = None,
              name: str = "feat") -> Path:
    """``<vid>.npy`` random features of ``videos`` (plus ``extra`` arrays as given) under ``ws.tmp/name``."""
    root = ws.tmp / name
    root.mkdir(parents=True, exist_ok=True)
    rs = np.random.RandomState(0)
    for vid, n in (VIDEOS if videos is None else videos).items():
        np.save(root / f"{vid}.npy", rs.rand(n, DIM).astype(np.float32))
    for vid, arr in (extra or {}).items():
        np.save(root / f"{vid}.npy", arr)
    return root


def _tokenizer(ws: Workspace) -> str:
    return str(ws.corpus() / "tokenizer")


def _line(record: dict | str) -> str:
    return record if isinstance(record, str) else json.dumps(record)


def _build(ws: Workspace, annotations: dict[str, dict[str, list]] | None = None, *, strict: bool = False,
           subtitles: list[Path] | None = None, features: Path | None = None) -> list[str]:
    """``hero data build`` argv over ``ws.tmp`` inputs: ``annotations`` = {dataset: {split: [record or raw line]}}."""
    argv = ["data", "build", "--features", str(features or _features(ws)), "--tokenizer", _tokenizer(ws),
            "--out", str(ws.tmp / "out")]
    if annotations:
        for dataset, splits in annotations.items():
            for split, lines in splits.items():
                ws.write(f"ann/{dataset}/{split}.jsonl", "".join(_line(r) + "\n" for r in lines))
        argv += ["--annotations", str(ws.tmp / "ann")]
    if subtitles:
        argv += ["--subtitles", *map(str, subtitles)]
    return argv + (["--strict"] if strict else [])


def _raw_tvr(ws: Workspace, extra_lines: list[str] = (), content: bytes | None = None) -> Path:
    """A copy of the raw TVR sample, with lines appended to (or all bytes replaced in) the val file."""
    raw = ws.tmp / "raw"
    shutil.copytree(RAW / "tvr", raw)
    val = raw / "tvr_val_release.jsonl"
    if content is not None:
        val.write_bytes(content)
    else:
        val.write_text(val.read_text(encoding="utf-8") + "".join(line + "\n" for line in extra_lines),
                       encoding="utf-8")
    return raw


def _prepare(ws: Workspace, raw: Path, *, strict: bool = False) -> list[str]:
    """``hero data prepare tvr`` over a raw TVR folder (features made from its ``videos.json``)."""
    feats = _features(ws, json.loads((raw / "videos.json").read_text()), name="raw_feat")
    argv = ["data", "prepare", "tvr", "--features", str(feats), "--subtitles", str(raw / "tv_subtitles.jsonl"),
            "--annotations", str(raw / "tvr_val_release.jsonl"), "--tokenizer", _tokenizer(ws),
            "--out", str(ws.tmp / "out")]
    return argv + (["--strict"] if strict else [])


# -- checks ------------------------------------------------------------------------------------


def nothing_written(ws: Workspace, outcome: Outcome) -> None:
    """No corpus, and no temporary sibling of it, was left behind."""
    assert not (ws.tmp / "out").exists(), "a corpus was written despite the error"
    left = [p.name for p in ws.tmp.iterdir() if p.name.startswith(".out")]
    assert not left, f"temporary output left behind: {left}"


def written(dataset: str, split: str, count: int, skipped: dict[str, int] | None = None):
    """The corpus holds ``count`` records of ``dataset/split`` and ``problems.json`` counts ``skipped``."""
    def check(ws: Workspace, outcome: Outcome) -> None:
        out = ws.tmp / "out"
        lines = (out / "annotations" / dataset / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines]
        assert len(records) == count, f"{len(records)} {dataset}/{split} records written, want {count}"
        assert not any("_where" in r for r in records), "bookkeeping field written"
        problems = json.loads((out / "problems.json").read_text())
        for kind, n in (skipped or {}).items():
            assert problems["skipped"].get(kind) == n, f"problems.json: {problems['skipped']}, want {kind}: {n}"
    return check


def all_with_video(ws: Workspace, outcome: Outcome) -> None:
    records = [json.loads(line) for line in
               (ws.tmp / "out" / "annotations" / "tvr" / "val.jsonl").read_text().splitlines()]
    assert records and all(isinstance(r["vid"], str) for r in records), records


def subtitle_text(vid: str, text: str):
    def check(ws: Workspace, outcome: Outcome) -> None:
        from hero.data.corpus import Corpus

        subs = Corpus(ws.tmp / "out").subtitles(vid)
        assert any(s.text == text for s in subs), [s.text for s in subs]
    return check


def videos_kept(count: int, skipped: dict[str, int]):
    def check(ws: Workspace, outcome: Outcome) -> None:
        meta = json.loads((ws.tmp / "out" / "corpus.json").read_text())
        assert meta["num_videos"] == count, meta["num_videos"]
        problems = json.loads((ws.tmp / "out" / "problems.json").read_text())
        for kind, n in skipped.items():
            assert problems["skipped"].get(kind) == n, problems["skipped"]
    return check


def _with(dataset: str, **changes) -> dict:
    return {**GOOD[dataset], **changes}


SRT = "1\n00:00:00,500 --> 00:00:03,000\nAlice: café au lait\n\n2\n00:00:04,000 --> 00:00:07,500\nBob: oui\n"
VTT = "WEBVTT\n\n00:00:01.000 --> 00:00:04.000\n<v Bob>crème brûlée\n"
TVQA_SUBS = json.dumps({"vid_name": "v0", "sub": [{"text": "Alice : déjà vu", "start": 0.5, "end": 3.0}]},
                       ensure_ascii=False) + "\n"


def _subs(ws: Workspace, name: str, data: bytes) -> list[Path]:
    path = ws.write(f"subs/{name}", data)
    return [path]


CASES = [
    # ---- defect 5: hero data build --annotations checks every field, like hero data prepare ----
    Case("data-build-ann-ts-reversed", "data",
         "`hero data build --annotations`: a TVR record whose `ts` ends before it starts (counted skip)",
         lambda ws: _build(ws, {"tvr": {"train": [GOOD["tvr"], _with("tvr", qid="q2", ts=[9, 2])]}}),
         defect=5, expect="ok", match=r"skipped 1 × malformed annotation",
         check=written("tvr", "train", 1, {"malformed annotation": 1})),
    Case("data-build-ann-ts-beyond-duration-strict", "data",
         "`hero data build --annotations --strict`: a TVR `ts` outside the record's `duration`",
         lambda ws: _build(ws, {"tvr": {"train": [GOOD["tvr"], _with("tvr", qid="q2", ts=[40, 50])]}}, strict=True),
         defect=5, match=r"train\.jsonl:2: ts \[40, 50\] lies outside the video \(duration 15 s\) \(strict mode",
         check=nothing_written),
    Case("data-build-ann-moment-after-last-frame", "data",
         "`hero data build --annotations`: a moment that starts after the video's last feature frame "
         "(no `duration` given)",
         lambda ws: _build(ws, {"tvr": {"train": [GOOD["tvr"], _with("tvr", qid="q2", ts=[30, 33], duration=None)]}}),
         defect=5, expect="ok", match=r"skipped 1 × moment outside the video",
         check=written("tvr", "train", 1, {"moment outside the video": 1})),
    Case("data-build-ann-ts-shape", "data",
         "`hero data build --annotations --strict`: `ts` with one number",
         lambda ws: _build(ws, {"tvr": {"val": [_with("tvr", ts=[3])]}}, strict=True),
         defect=5, match=r"val\.jsonl:1: ts must be \[start, end\] in seconds", check=nothing_written),
    Case("data-build-ann-input-ids-string", "data",
         "`hero data build --annotations --strict`: `input_ids` given as a string",
         lambda ws: _build(ws, {"tvr": {"train": [_with("tvr", input_ids="5 6 7")]}}, strict=True),
         defect=5, match=r"train\.jsonl:1: field 'input_ids' must be a list of token ids", check=nothing_written),
    Case("data-build-ann-desc-number", "data",
         "`hero data build --annotations --strict`: a query `desc` that is a number",
         lambda ws: _build(ws, {"tvr": {"train": [_with("tvr", desc=12)]}}, strict=True),
         defect=5, match=r"train\.jsonl:1: field 'desc' must be a string, got 12", check=nothing_written),
    Case("data-build-ann-qa-answer-idx", "data",
         "`hero data build --annotations --strict`: a TVQA `answer_idx` beyond the answers",
         lambda ws: _build(ws, {"tvqa": {"train": [_with("tvqa", answer_idx=3)]}}, strict=True),
         defect=5, match=r"train\.jsonl:1: field 'answer_idx' must be an integer in \[0, 3\), got 3",
         check=nothing_written),
    Case("data-build-ann-qa-one-answer", "data",
         "`hero data build --annotations`: a TVQA record with a single answer (counted skip)",
         lambda ws: _build(ws, {"tvqa": {"train": [GOOD["tvqa"], _with("tvqa", qid="a2", answers=["yes"])]}}),
         defect=5, expect="ok", match=r"skipped 1 × malformed annotation",
         check=written("tvqa", "train", 1, {"malformed annotation": 1})),
    Case("data-build-ann-violin-label", "data",
         "`hero data build --annotations --strict`: a VIOLIN label of 2",
         lambda ws: _build(ws, {"violin": {"train": [_with("violin", label=2)]}}, strict=True),
         defect=5, match=r"train\.jsonl:1: field 'label' must be 0 or 1, got 2", check=nothing_written),
    Case("data-build-ann-duplicate-id", "data",
         "`hero data build --annotations`: two TVR records with the same `qid` (the second is a counted skip)",
         lambda ws: _build(ws, {"tvr": {"train": [GOOD["tvr"], _with("tvr", vid="v1", ts=[1, 2], duration=12.0)]}}),
         defect=5, expect="ok", match=r"skipped 1 × duplicate annotation",
         check=written("tvr", "train", 1, {"duplicate annotation": 1})),
    Case("data-build-ann-val-without-vid", "data",
         "`hero data build --annotations --strict`: a val record with `vid: null` (only test splits may)",
         lambda ws: _build(ws, {"tvr": {"val": [_with("tvr", vid=None)]}}, strict=True),
         defect=5, match=r"val\.jsonl:1: missing field 'vid' \(only test splits", check=nothing_written),
    Case("data-build-ann-unknown-dataset", "data",
         "`hero data build --annotations`: a directory `ann/tvrr/` (a misspelt dataset name)",
         lambda ws: _build(ws, {"tvrr": {"train": [GOOD["tvr"]]}}),
         defect=5, match=r"tvrr/train\.jsonl: unknown dataset directory 'tvrr'; known: ", check=nothing_written),
    # ---- defect 6: malformed records and JSONL lines that are not objects ----
    Case("data-build-tvc-captions-string", "data",
         "`hero data build --annotations`: a TVC record whose `captions` is a string (counted skip)",
         lambda ws: _build(ws, {"tvc": {"train": [GOOD["tvc"], _with("tvc", clip_id=6, captions="she leaves")]}}),
         defect=6, expect="ok", match=r"skipped 1 × malformed annotation",
         check=written("tvc", "train", 1, {"malformed annotation": 1})),
    Case("data-build-tvc-caption-item-string-strict", "data",
         "`hero data build --annotations --strict`: a TVC caption that is a string, not an object",
         lambda ws: _build(ws, {"tvc": {"train": [_with("tvc", captions=["she leaves"])]}}, strict=True),
         defect=6, match=r"train\.jsonl:1: captions\[0\]: expected an object, got a string", check=nothing_written),
    Case("data-build-ann-null-line", "data",
         "`hero data build --annotations`: a JSONL line that is `null`",
         lambda ws: _build(ws, {"tvr": {"train": [GOOD["tvr"], "null"]}}),
         defect=6, match=r"train\.jsonl:2: expected a JSON object, got null", check=nothing_written),
    Case("data-prepare-null-line", "data",
         "`hero data prepare tvr`: a raw annotation line that is `null`",
         lambda ws: _prepare(ws, _raw_tvr(ws, ["null"])),
         defect=6, match=r"tvr_val_release\.jsonl:5: expected a JSON object, got null", check=nothing_written),
    Case("data-prepare-number-line", "data",
         "`hero data prepare tvr`: a raw annotation line that is a number",
         lambda ws: _prepare(ws, _raw_tvr(ws, ["42"])),
         defect=6, match=r"tvr_val_release\.jsonl:5: expected a JSON object, got a number", check=nothing_written),
    Case("data-prepare-string-line", "data",
         "`hero data prepare tvr`: a raw annotation line that is a JSON string",
         lambda ws: _prepare(ws, _raw_tvr(ws, ['"Phoebe puts one of her ponytails in her mouth."'])),
         defect=6, match=r"tvr_val_release\.jsonl:5: expected a JSON object, got a string", check=nothing_written),
    Case("data-prepare-list-line", "data",
         "`hero data prepare tvr`: a raw annotation line that is a JSON list",
         lambda ws: _prepare(ws, _raw_tvr(ws, ["[16.48, 33.87]"])),
         defect=6, match=r"tvr_val_release\.jsonl:5: expected a JSON object, got a list", check=nothing_written),
    Case("data-build-subtitles-null-line", "data",
         "`hero data build --subtitles`: a TVQA-style subtitle JSONL line that is `null`",
         lambda ws: _build(ws, subtitles=_subs(ws, "subs.jsonl", (TVQA_SUBS + "null\n").encode())),
         defect=6, match=r"subs\.jsonl:2: expected a JSON object, got null", check=nothing_written),
    # ---- defect 7: a raw annotation file that is not UTF-8 ----
    Case("data-prepare-latin1-annotations", "data",
         "`hero data prepare tvr`: a raw annotation file saved as Latin-1",
         lambda ws: _prepare(ws, _raw_tvr(ws, content=(RAW / "tvr" / "tvr_val_release.jsonl").read_text()
                                          .replace("Phoebe", "Phoébé").encode("latin-1"))),
         defect=7, match=r"tvr_val_release\.jsonl:1: not UTF-8 text \(byte 0xe9 at column \d+\)",
         check=nothing_written),
    Case("data-prepare-utf16-annotations", "data",
         "`hero data prepare tvr`: a raw annotation file saved as UTF-16",
         lambda ws: _prepare(ws, _raw_tvr(ws, content=(RAW / "tvr" / "tvr_val_release.jsonl").read_text()
                                          .encode("utf-16"))),
         defect=7, match=r"tvr_val_release\.jsonl:1: not UTF-8 text \(UTF-16 text", check=nothing_written),
    # ---- defect 21: a val record without vid_name ----
    Case("data-prepare-val-without-vid", "data",
         "`hero data prepare tvr`: a val query without `vid_name` (counted skip, not `vid: null`)",
         lambda ws: _prepare(ws, _raw_tvr(ws, [json.dumps({"desc": "who left?", "desc_id": 99, "ts": [1, 2],
                                                           "duration": 9.0, "type": "v"})])),
         defect=21, expect="ok", match=r"skipped 1 × malformed annotation", check=all_with_video),
    Case("data-prepare-val-without-vid-strict", "data",
         "`hero data prepare tvr --strict`: a val query without `vid_name`",
         lambda ws: _prepare(ws, _raw_tvr(ws, [json.dumps({"desc": "who left?", "desc_id": 99, "ts": [1, 2]})]),
                             strict=True),
         defect=21, match=r"tvr_val_release\.jsonl:5: missing field 'vid' \(only test splits may leave the video "
                          r"out; split 'val'\)", check=nothing_written),
    # ---- defect 22 (JSONL part): a truncated line ----
    Case("data-prepare-truncated-line", "data",
         "`hero data prepare tvr`: the last raw annotation line cut short",
         lambda ws: _prepare(ws, _raw_tvr(ws, ['{"vid_name": "s02e14_seg02_clip_02", "ts": [1.2, 3'])),
         defect=22, match=r"tvr_val_release\.jsonl:5: invalid JSON \(the line ends before the JSON value is complete\)",
         check=nothing_written),
    # ---- inputs that already behaved ----
    Case("data-prepare-duplicate-id", "data",
         "`hero data prepare tvr`: a raw file repeating a `desc_id` (the repeat is a counted skip)",
         lambda ws: _prepare(ws, _raw_tvr(ws, [(RAW / "tvr" / "tvr_val_release.jsonl").read_text().splitlines()[0]])),
         expect="ok", match=r"skipped 1 × duplicate annotation", check=written("tvr", "val", 4,
                                                                               {"duplicate annotation": 1})),
    Case("data-build-srt-utf8-bom", "data", "`hero data build --subtitles`: an SRT file with a UTF-8 byte-order mark",
         lambda ws: _build(ws, subtitles=_subs(ws, "v0.srt", b"\xef\xbb\xbf" + SRT.encode())),
         expect="ok", check=subtitle_text("v0", "Alice: café au lait")),
    Case("data-build-vtt-utf8-bom", "data", "`hero data build --subtitles`: a WebVTT file with a UTF-8 byte-order mark",
         lambda ws: _build(ws, subtitles=_subs(ws, "v1.vtt", b"\xef\xbb\xbf" + VTT.encode())),
         expect="ok", check=subtitle_text("v1", "crème brûlée")),
    Case("data-build-tvqa-subs-utf8-bom", "data",
         "`hero data build --subtitles`: a TVQA-style subtitle JSONL file with a UTF-8 byte-order mark",
         lambda ws: _build(ws, subtitles=_subs(ws, "subs.jsonl", b"\xef\xbb\xbf" + TVQA_SUBS.encode())),
         expect="ok", check=subtitle_text("v0", "Alice : déjà vu")),
    Case("data-build-srt-utf16", "data", "`hero data build --subtitles`: an SRT file saved as UTF-16",
         lambda ws: _build(ws, subtitles=_subs(ws, "v0.srt", SRT.encode("utf-16"))),
         match=r"v0\.srt.*not UTF-8 text", check=nothing_written),
    Case("data-build-srt-latin1", "data", "`hero data build --subtitles`: an SRT file saved as Latin-1",
         lambda ws: _build(ws, subtitles=_subs(ws, "v0.srt", SRT.encode("latin-1"))),
         match=r"v0\.srt.*not UTF-8 text", check=nothing_written),
    Case("data-build-vtt-latin1", "data", "`hero data build --subtitles`: a WebVTT file saved as Latin-1",
         lambda ws: _build(ws, subtitles=_subs(ws, "v1.vtt", VTT.encode("latin-1"))),
         match=r"v1\.vtt.*not UTF-8 text", check=nothing_written),
    Case("data-build-tvqa-subs-utf16", "data",
         "`hero data build --subtitles`: a TVQA-style subtitle JSONL file saved as UTF-16",
         lambda ws: _build(ws, subtitles=_subs(ws, "subs.jsonl", TVQA_SUBS.encode("utf-16"))),
         match=r"subs\.jsonl:1: not UTF-8 text", check=nothing_written),
    Case("data-build-tvqa-subs-latin1", "data",
         "`hero data build --subtitles`: a TVQA-style subtitle JSONL file saved as Latin-1",
         lambda ws: _build(ws, subtitles=_subs(ws, "subs.jsonl", TVQA_SUBS.encode("latin-1"))),
         match=r"subs\.jsonl:1: not UTF-8 text", check=nothing_written),
    Case("data-build-features-nan", "data",
         "`hero data build --features`: one video's features hold NaN (counted skip; the others are built)",
         lambda ws: _build(ws, features=_features(ws, extra={"vnan": np.full((6, DIM), np.nan, np.float32)})),
         expect="ok", match=r"skipped 1 × non-finite features", check=videos_kept(2, {"non-finite features": 1})),
    Case("data-build-features-nan-strict", "data",
         "`hero data build --features --strict`: one video's features hold NaN",
         lambda ws: _build(ws, features=_features(ws, extra={"vnan": np.full((6, DIM), np.nan, np.float32)}),
                           strict=True),
         match=r"video 'vnan': NaN/inf features .*\(strict mode: non-finite features is fatal\)",
         check=nothing_written),
    Case("data-build-features-wrong-dim", "data",
         "`hero data build --features`: one video with another feature dimension (counted skip)",
         lambda ws: _build(ws, features=_features(ws, extra={"wide": np.ones((6, DIM + 3), np.float32)})),
         expect="ok", match=r"skipped 1 × dimension mismatch", check=videos_kept(2, {"dimension mismatch": 1})),
    Case("data-build-features-zero-frames", "data",
         "`hero data build --features`: one video with zero frames (counted skip)",
         lambda ws: _build(ws, features=_features(ws, extra={"empty": np.zeros((0, DIM), np.float32)})),
         expect="ok", match=r"skipped 1 × zero-frame video", check=videos_kept(2, {"zero-frame video": 1})),
    Case("data-build-features-all-bad", "data",
         "`hero data build --features`: every video's features are NaN",
         lambda ws: _build(ws, features=_features(ws, videos={}, extra={"a": np.full((4, DIM), np.nan, np.float32),
                                                                        "b": np.full((5, DIM), np.inf, np.float32)})),
         match=r"no usable video: every video was skipped \(2 × non-finite features\)", check=nothing_written),
]
