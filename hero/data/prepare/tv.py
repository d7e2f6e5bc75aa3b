"""Converters of the TV-show benchmarks (frames every 1.5 s): TVR, TVQA, TVC, VIOLIN.

Raw formats (official releases; notes §3.2):

* TVR ``tvr_{train,val,test_public}_release.jsonl``: ``{"vid_name", "duration", "ts": [st, ed],
  "desc", "type": "v"|"t"|"vt", "desc_id"}``; the test file has only ``desc`` and ``desc_id``.
* TVQA ``tvqa_{train,val,test_public}.jsonl``: ``{"qid", "q", "a0".."a4", "answer_idx", "vid_name",
  "ts": "st-ed", "show_name"}`` (no ``answer_idx`` in test).
* TVC ``tvc_{train,val,test_public}_release.jsonl``: ``{"vid_name", "clip_id", "ts": [st, ed],
  "duration", "descs": [{"desc_id", "desc"}]}`` (no ``descs`` in test).
* VIOLIN, in HERO's converted JSONL: ``{"desc_id": "...-{label}", "desc", "vid_name", "label"}``.

The same record readers serve How2R (TVR-like) and How2QA (TVQA-like, any number ≥ 2 of answers).
"""

from __future__ import annotations

import math
from typing import Any

from hero.data.prepare.common import Malformed, id_field, need, number, optional, span, text_field


def _vid(rec: dict, required: bool = True) -> str | None:
    if not required and rec.get("vid_name") is None:
        return None
    return text_field(rec, "vid_name")


def retrieval_record(rec: Any) -> dict:
    """TVR / How2R / DiDeMo-JSONL query → ``{"qid", "vid", "desc", "ts", "duration", "type"}``.

    ``vid``/``ts``/``duration``/``type`` are None when absent (test queries). ``ts`` is ``[st, ed]``
    or, for DiDeMo-style ground truth, a list of such spans.
    """
    key = "desc_id" if "desc_id" in rec or "qid" not in rec else "qid"
    qid = id_field(rec, key)
    if isinstance(rec.get(key), int) and not isinstance(rec[key], bool):
        qid = rec[key]  # TVR desc_ids are ints, and the official evaluator requires them in submissions
    desc = text_field(rec, "desc")
    ts = rec.get("ts")
    if ts is not None:
        if isinstance(ts, list) and ts and isinstance(ts[0], (list, tuple)):
            ts = [span(t, f"ts[{i}]") for i, t in enumerate(ts)]
        else:
            ts = span(ts)
    qtype = rec.get("type")
    if qtype is not None and not isinstance(qtype, str):
        raise Malformed(f"field 'type' must be a string, got {qtype!r}")
    return {"qid": qid, "vid": _vid(rec, required=False), "desc": desc, "ts": ts,
            "duration": optional(rec, "duration", lambda v: number(v, "duration")), "type": qtype}


def parse_tvqa_ts(value: Any) -> list[float] | None:
    """A TVQA ``"st-ed"`` string as ``[st, ed]``, or None where the reference gives no target.

    Same rules as `hero.data.alignment.tvqa_span_target`: the first two ``-``-separated parts as
    floats (a third is ignored); anything unparsable or non-finite → None (reference ``[-1, -1]``).
    An end before the start is None too (the reference would make a target of it); the caller
    notes every None.
    """
    if isinstance(value, (list, tuple)):
        st, ed = span(value)
    elif not isinstance(value, str):
        raise Malformed(f"field 'ts' must be a 'st-ed' string or [st, ed], got {value!r}")
    else:
        try:
            parts = value.split("-")
            st, ed = float(parts[0]), float(parts[1])
        except (ValueError, IndexError):
            return None
    # an end before the start names no moment (the question itself is still usable)
    return [st, ed] if math.isfinite(st) and math.isfinite(ed) and 0 <= st <= ed else None


def qa_record(rec: Any, num_answers: int | None = 5) -> dict:
    """TVQA / How2QA question → ``{"qid", "vid", "q", "answers", "answer_idx", "ts", "q_type"}``.

    Args:
        num_answers: answers ``a0..a{n-1}`` required (5 for TVQA); None: every consecutive
            ``a<i>`` present (at least 2).
    """
    qid = id_field(rec, "qid")
    q = text_field(rec, "q")
    if num_answers is None:
        num_answers = 0
        while f"a{num_answers}" in rec:
            num_answers += 1
        if num_answers < 2:
            raise Malformed("needs at least two answers 'a0', 'a1', ...")
    answers = [need(rec, f"a{i}", str) for i in range(num_answers)]
    idx = rec.get("answer_idx")
    if idx is not None:
        if isinstance(idx, str) and idx.strip().isdigit():
            idx = int(idx)
        if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < num_answers:
            raise Malformed(f"field 'answer_idx' must be an integer in [0, {num_answers}), got {idx!r}")
    ts = parse_tvqa_ts(rec["ts"]) if rec.get("ts") is not None else None
    q_type = rec.get("q_type")
    return {"qid": qid, "vid": _vid(rec), "q": q, "answers": answers, "answer_idx": idx, "ts": ts,
            "q_type": q_type if isinstance(q_type, str) else None, "_ts_raw": rec.get("ts")}


def caption_record(rec: Any) -> dict:
    """TVC clip → ``{"clip_id", "vid", "ts", "duration", "captions": [{"desc_id", "desc"}]}``."""
    clip_id = id_field(rec, "clip_id")
    descs = rec.get("descs") or []
    if not isinstance(descs, list):
        raise Malformed(f"field 'descs' must be a list, got {type(descs).__name__}")
    captions = []
    for i, d in enumerate(descs):
        try:
            captions.append({"desc_id": id_field(d, "desc_id"), "desc": text_field(d, "desc")})
        except Malformed as err:
            raise Malformed(f"descs[{i}]: {err}") from None
    return {"clip_id": clip_id, "vid": _vid(rec), "ts": span(need(rec, "ts")),
            "duration": optional(rec, "duration", lambda v: number(v, "duration")), "captions": captions}


def violin_record(rec: Any) -> dict:
    """VIOLIN statement → ``{"qid", "vid", "statement", "label"}`` (label 1 = true, 0 = false)."""
    qid = id_field(rec, "desc_id")
    statement = text_field(rec, "desc")
    label = rec.get("label")
    if label is not None:
        if isinstance(label, str) and label.strip() in ("0", "1"):
            label = int(label)
        if isinstance(label, bool):
            label = int(label)
        if label not in (0, 1):
            raise Malformed(f"field 'label' must be 0 or 1, got {label!r}")
    return {"qid": qid, "vid": _vid(rec), "statement": statement, "label": label}


__all__ = ["caption_record", "parse_tvqa_ts", "qa_record", "retrieval_record", "violin_record"]
