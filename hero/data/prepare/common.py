"""What every dataset converter shares: reading raw annotation files, field checks, tokenising.

A converter turns one raw annotation file into records of the documented annotation formats
(DEVELOPERS.md, "Annotations"). A file that cannot be read at all (not JSON, wrong top-level
type) raises a `HeroError` naming ``file:line``; a record that is malformed (a missing or
ill-typed field) is a counted skip through `Problems` (fatal with ``--strict``), also named by
``file:line``.

Annotation text (queries, questions, answers, statements, captions) is tokenised like the
reference ``prepro_query.py``: all-caps lower-cased, no HTML unescaping, no special tokens.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hero import io as _io
from hero.data.problems import Problems
from hero.errors import HeroError

KNOWN_SPLITS = ("test_challenge", "test_public", "train", "val", "valid", "validate", "dev", "test")
SPLIT_ALIASES = {"valid": "val", "validate": "val", "dev": "val"}
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".3gp", ".wmv", ".flv")


class Malformed(Exception):
    """A record-level problem; the caller turns it into a counted skip."""


@dataclass
class AnnotationSpec:
    """One ``--annotations`` argument: ``[dataset:][split=]path``."""

    dataset: str
    split: str | None
    path: Path


def parse_annotation_spec(text: str, default_dataset: str) -> AnnotationSpec:
    """``tvqa:train=path`` → (tvqa, train, path); ``path`` → (default, None = from the name, path)."""
    dataset, split, path = default_dataset, None, text
    head, sep, rest = text.partition("=")
    if sep and "/" not in head and "\\" not in head:
        split, path = head, rest
        if ":" in split:
            dataset, _, split = split.partition(":")
    elif ":" in text.split("/")[0] and not Path(text).exists():
        dataset, _, path = text.partition(":")
    return AnnotationSpec(dataset, split or None, Path(path))


def split_from_name(path: Path) -> str:
    """The split a raw file name names: ``tvr_test_public_release.jsonl`` → ``test_public``.

    The longest known split word (train, val, valid/validate/dev → val, test, test_public,
    test_challenge) delimited by ``_``, ``-`` or ``.`` wins.
    """
    name = path.name.lower()
    for split in KNOWN_SPLITS:  # longest names first
        if re.search(rf"(^|[_.\-]){split}([_.\-]|$)", name):
            return SPLIT_ALIASES.get(split, split)
    raise HeroError(f"{path}: cannot tell the split from the file name; write it as SPLIT=PATH (e.g. train={path})")


def normalize_split(split: str) -> str:
    return SPLIT_ALIASES.get(split, split)


def iter_jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    """``(where, record)`` for every non-empty line; ``where`` is ``file:line``.

    Read through `hero.io.iter_jsonl`: a line that is not UTF-8, not JSON or not a JSON object
    is a `HeroError` naming ``file:line`` (the file itself is broken, not one record).
    """
    for lineno, record in _io.iter_jsonl(path):
        yield f"{path}:{lineno}", record


def load_json(path: Path) -> Any:
    """A whole JSON file (`hero.io.read_json`: ``file:line`` errors, not-UTF-8 named)."""
    return _io.read_json(path)


def iter_records(path: Path) -> Iterator[tuple[str, Any]]:
    """Records of a ``.jsonl`` file (one per line) or a ``.json`` list/dict (one per item or key).

    ``where`` is ``file:line`` for JSONL, ``file[index]`` or ``file[key]`` for JSON.
    """
    if not path.is_file():
        raise HeroError(f"{path}: annotation file not found")
    if path.suffix.lower() == ".jsonl":
        yield from iter_jsonl(path)
        return
    data = load_json(path)
    if isinstance(data, list):
        for i, rec in enumerate(data):
            yield f"{path}[{i}]", rec
    elif isinstance(data, dict):
        for key, rec in data.items():
            yield f"{path}[{key!r}]", rec
    else:
        raise HeroError(f"{path}: expected a JSON list or object of records, got {type(data).__name__}")


def iter_csv(path: Path, required: Sequence[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """Rows of a CSV file with a header, as ``(file:line, row)``."""
    reader = csv.DictReader(io.StringIO(_io.read_text(path), newline=""))
    try:
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise HeroError(f"{path}:1: the CSV header lacks column(s) {missing} (has {reader.fieldnames})")
        for row in reader:
            yield f"{path}:{reader.line_num}", row
    except csv.Error as err:
        raise HeroError(f"{path}:{reader.line_num}: not valid CSV ({err})") from None


# -- field checks (raise Malformed, turned into a counted skip by `convert_file`) ----------------


def need(rec: Any, key: str, kind: type | tuple[type, ...] = object) -> Any:
    if not isinstance(rec, dict):
        raise Malformed(f"expected a JSON object, got {type(rec).__name__}")
    if key not in rec or rec[key] is None:
        raise Malformed(f"missing field {key!r}")
    value = rec[key]
    if kind is not object and (not isinstance(value, kind) or isinstance(value, bool) and bool not in _tuple(kind)):
        raise Malformed(f"field {key!r} must be {_names(kind)}, got {value!r}")
    return value


def text_field(rec: Any, key: str) -> str:
    value = need(rec, key, str)
    if not value.strip():
        raise Malformed(f"field {key!r} is empty")
    return value


def id_field(rec: Any, key: str) -> str:
    """An id given as a string or an integer, returned as a string (the reference keys are strings)."""
    value = need(rec, key, (str, int))
    return str(value)


def number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Malformed(f"{what} must be a finite number, got {value!r}")
    return float(value)


def span(value: Any, what: str = "ts") -> list[float]:
    """A ``[st, ed]`` pair of seconds (``ed >= st >= 0`` is not required: the reference accepts any)."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise Malformed(f"{what} must be [start, end] in seconds, got {value!r}")
    return [number(value[0], f"{what}[0]"), number(value[1], f"{what}[1]")]


def optional(rec: dict, key: str, parse: Callable[[Any], Any]) -> Any:
    return parse(rec[key]) if rec.get(key) is not None else None


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _names(kind: type | tuple[type, ...]) -> str:
    names = {"str": "a string", "int": "an integer", "float": "a number", "list": "a list", "dict": "an object"}
    return " or ".join(names.get(k.__name__, k.__name__) for k in _tuple(kind))


# -- the annotation record formats (DEVELOPERS.md, "Annotations") ------------------------------
#
# One validator per record format, used on the records that `hero data prepare` converts from a
# raw release and on the records `hero data build --annotations` reads as they are, and again by
# `hero.data.build` before anything is written (with the frame counts of the videos at hand).

DURATION_SLACK = 0.5
"""Seconds a moment may end after the ``duration`` a record gives (released durations are rounded)."""


def is_test_split(split: str | None) -> bool:
    """Test splits carry no ground truth: a query's video, times and labels may be null there."""
    return split is not None and split.startswith("test")


def token_ids(value: Any, what: str) -> list[int]:
    if not isinstance(value, list) or any(isinstance(t, bool) or not isinstance(t, int) or t < 0 for t in value):
        raise Malformed(f"field {what!r} must be a list of token ids (integers >= 0), got {_short(value)}")
    return value


def moment(value: Any, what: str = "ts", duration: float | None = None) -> list[float]:
    """A ``[st, ed]`` moment in seconds with ``0 <= st <= ed`` and, given the video's ``duration``, inside it."""
    st, ed = span(value, what)
    if st < 0 or ed < st:
        raise Malformed(f"{what} {_short(value)} must be [start, end] with 0 <= start <= end")
    if duration is not None and (st > duration or ed > duration + DURATION_SLACK):
        raise Malformed(f"{what} {_short(value)} lies outside the video (duration {duration:g} s)")
    return [st, ed]


def moments(rec: dict, key: str = "ts", duration: float | None = None) -> list[list[float]]:
    """Every moment of ``rec[key]``: ``[st, ed]`` or a non-empty list of them (DiDeMo); [] when null."""
    value = rec.get(key)
    if value is None:
        return []
    if isinstance(value, list) and value and isinstance(value[0], (list, tuple)):
        return [moment(t, f"{key}[{i}]", duration) for i, t in enumerate(value)]
    return [moment(value, key, duration)]


def check_record(kind: str, rec: Any, split: str | None, *, ids: bool = True) -> None:
    """Check one annotation record of format ``kind``; raises `Malformed` saying what is wrong.

    Args:
        kind: ``retrieval``, ``qa``, ``violin`` or ``captioning``.
        split: the split the record belongs to; outside test splits the record must name its video.
        ids: the token ids must be present (records about to be written); otherwise they are
            checked only where given (records not yet tokenised).
    """
    if not isinstance(rec, dict):
        raise Malformed(f"expected a JSON object, got {_io.json_type_name(rec)}")
    check = _CHECKS.get(kind)
    if check is None:
        raise HeroError(f"unknown annotation format {kind!r}; known: {', '.join(sorted(_CHECKS))}")
    id_field(rec, KIND_KEY[kind])
    vid = rec.get("vid")
    if vid is None:
        if not is_test_split(split):
            raise Malformed(f"missing field 'vid' (only test splits may leave the video out; split {split!r})")
    elif not isinstance(vid, str) or not vid.strip():
        raise Malformed(f"field 'vid' must be a non-empty string, got {_short(vid)}")
    check(rec, ids)


def _text_and_ids(rec: dict, text: str, ids_key: str, ids: bool) -> None:
    """``rec[text]`` is a string; the token ids are checked (and required with ``ids``); one of them says something."""
    value = need(rec, text, str)
    if rec.get(ids_key) is not None or ids:
        tokens = token_ids(need(rec, ids_key), ids_key)
        if not tokens and not value.strip():
            raise Malformed(f"field {text!r} is empty and has no token ids")
    elif not value.strip():
        raise Malformed(f"field {text!r} is empty")


def _duration(rec: dict) -> float | None:
    if rec.get("duration") is None:
        return None
    duration = number(rec["duration"], "duration")
    if duration <= 0:
        raise Malformed(f"duration must be > 0 seconds, got {rec['duration']!r}")
    return duration


def _check_retrieval(rec: dict, ids: bool) -> None:
    _text_and_ids(rec, "desc", "input_ids", ids)
    moments(rec, "ts", _duration(rec))
    if rec.get("type") is not None and not isinstance(rec["type"], str):
        raise Malformed(f"field 'type' must be a string, got {_short(rec['type'])}")


def _check_qa(rec: dict, ids: bool) -> None:
    _text_and_ids(rec, "q", "q_ids", ids)
    answers = need(rec, "answers", list)
    if len(answers) < 2 or not all(isinstance(a, str) for a in answers):
        raise Malformed(f"field 'answers' must be a list of at least 2 strings, got {_short(answers)}")
    if rec.get("a_ids") is not None or ids:
        a_ids = need(rec, "a_ids", list)
        if len(a_ids) != len(answers):
            raise Malformed(f"field 'a_ids' has {len(a_ids)} lists for {len(answers)} answers")
        for i, a in enumerate(a_ids):
            token_ids(a, f"a_ids[{i}]")
    idx = rec.get("answer_idx")
    if idx is not None and (isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < len(answers)):
        raise Malformed(f"field 'answer_idx' must be an integer in [0, {len(answers)}), got {_short(idx)}")
    moments(rec, "ts")
    if rec.get("q_type") is not None and not isinstance(rec["q_type"], str):
        raise Malformed(f"field 'q_type' must be a string, got {_short(rec['q_type'])}")


def _check_open_qa(rec: dict, ids: bool) -> None:
    _text_and_ids(rec, "q", "q_ids", ids)
    for key in ("answer", "q_type"):
        if rec.get(key) is not None and not isinstance(rec[key], str):
            raise Malformed(f"field {key!r} must be a string or null, got {_short(rec[key])}")


def _check_violin(rec: dict, ids: bool) -> None:
    _text_and_ids(rec, "statement", "input_ids", ids)
    label = rec.get("label")
    if label is not None and (isinstance(label, bool) or label not in (0, 1)):
        raise Malformed(f"field 'label' must be 0 or 1, got {_short(label)}")


def _check_captioning(rec: dict, ids: bool) -> None:
    moment(need(rec, "ts"), "ts", _duration(rec))
    captions = rec.get("captions")
    if captions is None:
        captions = []
    if not isinstance(captions, list):
        raise Malformed(f"field 'captions' must be a list of {{desc_id, desc, input_ids}} objects, "
                        f"got {_io.json_type_name(captions)}")
    for i, c in enumerate(captions):
        try:
            if not isinstance(c, dict):
                raise Malformed(f"expected an object, got {_io.json_type_name(c)}")
            if c.get("desc_id") is not None:
                id_field(c, "desc_id")
            _text_and_ids(c, "desc", "input_ids", ids)
        except Malformed as err:
            raise Malformed(f"captions[{i}]: {err}") from None


@dataclass(frozen=True)
class RecordFormat:
    """One annotation record format (`hero.data.prepare.DatasetSpec.kind`): what `hero data
    prepare` and `hero data build` need of it. A new format is one entry of `RECORD_FORMATS`."""

    key: str
    """The id field (unique within a split)."""
    text_fields: tuple[tuple[str, str], ...]
    """``(text field, token-id field)`` pairs `hero data prepare` tokenises."""
    check: Callable[[dict, bool], None]
    """``check(rec, ids)``: the format's own fields (after the id and ``vid`` checks of `check_record`)."""
    text_within: str | None = None
    """The texts are those of each element of ``rec[text_within]`` (captioning: ``captions``)."""


RECORD_FORMATS: dict[str, RecordFormat] = {
    "retrieval": RecordFormat("qid", (("desc", "input_ids"),), _check_retrieval),
    "qa": RecordFormat("qid", (("q", "q_ids"), ("answers", "a_ids")), _check_qa),
    "open_qa": RecordFormat("qid", (("q", "q_ids"),), _check_open_qa),
    "violin": RecordFormat("qid", (("statement", "input_ids"),), _check_violin),
    "captioning": RecordFormat("clip_id", (("desc", "input_ids"),), _check_captioning, text_within="captions"),
}
_CHECKS: dict[str, Callable[[dict, bool], None]] = {kind: f.check for kind, f in RECORD_FORMATS.items()}
KIND_KEY: dict[str, str] = {kind: f.key for kind, f in RECORD_FORMATS.items()}
"""The id field of each record format (unique within a split)."""


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# -- conversion driver --------------------------------------------------------------------------


def convert_records(
    items: Iterator[tuple[str, Any]],
    convert: Callable[[Any], dict | None],
    problems: Problems,
) -> list[dict]:
    """Apply ``convert`` to every raw record; a `Malformed` one becomes a counted skip at its ``where``.

    ``convert`` returns the normalised record without token ids (added later in one batch) or
    None for a record that the raw format itself marks as not applicable.
    """
    out = []
    for where, rec in items:
        try:
            if not isinstance(rec, dict):
                raise Malformed(f"expected a JSON object, got {_io.json_type_name(rec)}")
            converted = convert(rec)
        except Malformed as err:
            problems.skip("malformed annotation", where, str(err))
            continue
        if converted is not None:
            converted["_where"] = where
            out.append(converted)
    return out


def check_unique(records: list[dict], key: str, problems: Problems) -> list[dict]:
    """Drop (counted) records whose ``key`` repeats an earlier one in the same split."""
    seen: dict[str, str] = {}
    out = []
    for r in records:
        k = r[key]
        if k in seen:
            problems.skip("duplicate annotation", r["_where"], f"{key} {k!r} already given at {seen[k]}")
            continue
        seen[k] = r["_where"]
        out.append(r)
    return out


def resolve_vids(records: list[dict], known: set[str] | None, problems: Problems) -> None:
    """Map raw video names onto feature ids when they differ only by a video-file extension.

    DiDeMo names videos by their file (``..._87ef417396.mov``) while feature files drop the
    extension. Each rewrite is noted.
    """
    if not known:
        return
    for r in records:
        vid = r.get("vid")
        if vid is None or vid in known:
            continue
        stem, dot, ext = vid.rpartition(".")
        if dot and "." + ext.lower() in VIDEO_EXTENSIONS and stem in known:
            problems.note("video id without extension", r["_where"], f"{vid!r} → {stem!r} (the feature file name)")
            r["vid"] = stem


def tokenize_fields(records: list[dict], tokenizer: Any, fields: Sequence[tuple[str, str]]) -> None:
    """Add token ids: for each ``(text_key, ids_key)``, ``record[ids_key] = encode(record[text_key])``.

    ``text_key`` may name a list of strings (e.g. ``answers`` → ``a_ids``). One batched call.
    """
    texts: list[str] = []
    slots: list[tuple[dict, str, int | None]] = []
    for r in records:
        for text_key, ids_key in fields:
            value = r[text_key]
            if isinstance(value, list):
                r[ids_key] = [None] * len(value)
                for i, t in enumerate(value):
                    texts.append(t)
                    slots.append((r, ids_key, i))
            else:
                texts.append(value)
                slots.append((r, ids_key, None))
    ids = tokenizer.encode_batch(texts, unescape=False) if hasattr(tokenizer, "encode_batch") else \
        [tokenizer.encode(t, unescape=False) for t in texts]
    for (r, key, i), token_ids in zip(slots, ids):
        if i is None:
            r[key] = token_ids
        else:
            r[key][i] = token_ids


def strip_where(records: list[dict]) -> list[dict]:
    for r in records:
        r.pop("_where", None)
    return records


__all__ = [
    "AnnotationSpec",
    "Malformed",
    "KIND_KEY",
    "RECORD_FORMATS",
    "RecordFormat",
    "check_record",
    "check_unique",
    "convert_records",
    "is_test_split",
    "moment",
    "moments",
    "id_field",
    "iter_csv",
    "iter_jsonl",
    "iter_records",
    "load_json",
    "need",
    "normalize_split",
    "number",
    "optional",
    "parse_annotation_spec",
    "resolve_vids",
    "span",
    "split_from_name",
    "strip_where",
    "text_field",
    "token_ids",
    "tokenize_fields",
]
