"""Converters of the video-only retrieval benchmarks: DiDeMo (1.5 s frames) and MSR-VTT (2 s frames).

These videos have no dialogue: unless ASR subtitles are given, the corpus gets the reference's
pseudo subtitles (empty text over groups of 5 frames).

Raw formats read:

* DiDeMo (LocalizingMoments ``{train,val,test}_data.json``): a JSON list of ``{"annotation_id",
  "description", "video", "times": [[s, e], ...]}`` where ``s``/``e`` are 5-second segment indices
  (0–5); each span becomes ``[5·s, 5·(e+1)]`` seconds, and ``ts`` keeps every annotator's span
  (≥ 4), the official DiDeMo evaluation rule. HERO-style JSONL (``{"desc_id", "desc", "vid_name",
  "ts": [[st, ed], ...]}``) is read too.
* MSR-VTT: ``MSRVTT_data.json`` (``{"videos": [{"video_id", "split"}], "sentences": [{"video_id",
  "sen_id", "caption"}]}``, split ``validate`` → ``val``); the 1k-A test CSV
  (``MSRVTT_JSFUSION_test.csv``: ``key, vid_key, video_id, sentence``); or JSONL with
  ``clip_name``/``vid_name``, ``sen_id``/``retrieval_key``/``desc_id`` and ``caption``/``desc``.
  Queries are whole-video retrieval: ``ts`` is None.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hero.data.prepare.common import (
    Malformed,
    id_field,
    iter_csv,
    load_json,
    need,
    normalize_split,
    text_field,
)
from hero.data.prepare.tv import retrieval_record
from hero.errors import HeroError

DIDEMO_SEGMENT_SECONDS = 5.0
DIDEMO_NUM_SEGMENTS = 6


def didemo_record(rec: Any) -> dict:
    """A DiDeMo query (LocalizingMoments or HERO-style) → retrieval record with a list of spans."""
    if not (isinstance(rec, dict) and "description" in rec and "times" in rec):
        out = retrieval_record(rec)
        if out["ts"] is not None and not isinstance(out["ts"][0], list):
            out["ts"] = [out["ts"]]
        return out
    qid = id_field(rec, "annotation_id")
    desc = text_field(rec, "description")
    vid = text_field(rec, "video")
    times = need(rec, "times", list)
    spans = []
    for i, t in enumerate(times):
        ok = isinstance(t, (list, tuple)) and len(t) == 2 and all(
            isinstance(x, int) and not isinstance(x, bool) and 0 <= x < DIDEMO_NUM_SEGMENTS for x in t)
        if not ok or t[1] < t[0]:
            raise Malformed(f"times[{i}] must be [first, last] segment indices in 0..{DIDEMO_NUM_SEGMENTS - 1}, "
                            f"got {t!r}")
        spans.append([t[0] * DIDEMO_SEGMENT_SECONDS, (t[1] + 1) * DIDEMO_SEGMENT_SECONDS])
    if not spans:
        raise Malformed("field 'times' is empty")
    return {"qid": qid, "vid": vid, "desc": desc, "ts": spans, "duration": None, "type": None}


def msrvtt_record(rec: Any) -> dict:
    """An MSR-VTT query in JSONL form → retrieval record (whole-video: ``ts`` None)."""
    if not isinstance(rec, dict):
        raise Malformed(f"expected a JSON object, got {type(rec).__name__}")
    if "_bad" in rec:
        raise Malformed(rec["_bad"])
    key = next((k for k in ("retrieval_key", "sen_id", "desc_id", "qid") if k in rec), "sen_id")
    vkey = next((k for k in ("clip_name", "vid_name", "video_id") if k in rec), "clip_name")
    tkey = next((k for k in ("caption", "desc", "sentence") if k in rec), "caption")
    return {"qid": id_field(rec, key), "vid": text_field(rec, vkey), "desc": text_field(rec, tkey),
            "ts": None, "duration": None, "type": None}


def msrvtt_qa_record(rec: Any) -> dict:
    """An MSR-VTT-QA question (``{"id", "video_id" | "video", "question", "answer", "category_id"}``)
    → open-ended QA record; ``video_id`` ``7010`` names video ``video7010``."""
    if not isinstance(rec, dict):
        raise Malformed(f"expected a JSON object, got {type(rec).__name__}")
    vkey = next((k for k in ("video", "video_id", "vid") if k in rec), "video_id")
    vid = rec.get(vkey)
    vid = f"video{vid}" if isinstance(vid, int) and not isinstance(vid, bool) else text_field(rec, vkey)
    answer = rec.get("answer")
    if answer is not None and not isinstance(answer, str):
        raise Malformed(f"field 'answer' must be a string, got {answer!r}")
    q_type = rec.get("category_id", rec.get("q_type"))
    return {"qid": id_field(rec, next((k for k in ("id", "qid") if k in rec), "id")), "vid": vid,
            "q": text_field(rec, "question"), "answer": answer, "q_type": None if q_type is None else str(q_type)}


def iter_msrvtt_data_json(path: Path) -> Iterator[tuple[str, str, dict]]:
    """``(where, split, record)`` of every sentence of ``MSRVTT_data.json``."""
    data = load_json(path)
    if not (isinstance(data, dict) and isinstance(data.get("videos"), list)
            and isinstance(data.get("sentences"), list)):
        raise HeroError(f"{path}: expected MSRVTT_data.json with 'videos' and 'sentences' lists")
    split_of: dict[str, str] = {}
    for i, v in enumerate(data["videos"]):
        if isinstance(v, dict) and isinstance(v.get("video_id"), str) and isinstance(v.get("split"), str):
            split_of[v["video_id"]] = normalize_split(v["split"])
        else:
            raise HeroError(f"{path}: videos[{i}] needs string 'video_id' and 'split', got {v!r}")
    for i, s in enumerate(data["sentences"]):
        where = f"{path}: sentences[{i}]"
        vid = s.get("video_id") if isinstance(s, dict) else None
        if vid not in split_of:
            yield where, "?", {"_bad": f"video_id {vid!r} is not in 'videos'"}
            continue
        yield where, split_of[vid], {"sen_id": s.get("sen_id"), "clip_name": vid, "caption": s.get("caption")}


def iter_msrvtt_csv(path: Path) -> Iterator[tuple[str, dict]]:
    """``(file:line, record)`` of the JSFusion 1k-A CSV (``key, vid_key, video_id, sentence``)."""
    for where, row in iter_csv(path, ("key", "video_id", "sentence")):
        yield where, {"retrieval_key": row["key"], "clip_name": row["video_id"], "caption": row["sentence"]}


__all__ = ["didemo_record", "iter_msrvtt_csv", "iter_msrvtt_data_json", "msrvtt_record"]
