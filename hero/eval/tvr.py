"""Retrieval metrics equal to the official TVR standalone evaluator (``TVRetrieval
standalone_eval/eval.py``, copied by HERO as ``utils/tvr_standalone_eval.py``; notes §4.2).

`eval_retrieval` returns the same keys, in the same order, with the same values: ``VCMR`` and ``SVMR``
(``{iou}-r{k}``), ``VR`` (``r{k}``), then ``VCMR_by_type`` / ``SVMR_by_type`` / ``VR_by_type`` (``{type}-…`` and
``desc_type_ratio``). The semantics it reproduces (checked on the whole TVR val set, see
``tests/test_tvr_metric.py``):

* only the first 100 predictions of a query count; ``[video_idx, st, ed]`` are read as float32;
* IoU in float32, ``max(0, min(ed) − max(st)) / (max(ed) − min(st))`` (0 when that span is 0), set to 0 on
  a wrong video; correct iff ``IoU ≥ float32(thd)``;
* VCMR: a correct prediction among the first k; SVMR: the same after removing predictions on other videos;
  VR: the GT video among the first k (repeated videos take up ranks);
* DiDeMo (a GT ``ts`` with ≥ 4 spans): correct iff ``IoU ≥ thd`` with at least 2 of the spans;
* percentages ``round(100 · mean, 2)`` as NumPy rounds a float64.

It is vectorised over queries (NumPy), so the 10,895-query TVR val set takes about a second once loaded.
Where the official code would crash or silently pick one of two records (an empty prediction list,
duplicated desc ids, a GT video missing from ``video2idx``), `check_submission` raises a `HeroError` listing
every problem with counts and examples. Desc ids are matched by their string form (``7`` and ``"7"`` are the
same query); otherwise the sets must be equal, as the official ``match_number`` assertion requires.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hero.errors import HeroError
from hero.eval.formats import annotation_kind, prediction_kind
from hero.io import iter_jsonl, read_json, write_json_atomic

TASK_TYPES = ("VCMR", "SVMR", "VR")
DESC_TYPES = ("v", "t", "vt")
RECALL_TOPKS = (1, 5, 10, 100)
MAX_PRED_PER_QUERY = 100
MAX_TIME = 86_400.0
"""Seconds. A start or end time beyond a day is a unit or encoding error, not a moment of a video."""
DIDEMO_MIN_SPANS = 4
"""A GT ``ts`` with this many spans or more is scored with the DiDeMo rule."""
DIDEMO_MIN_OVERLAPS = 2
"""DiDeMo: a prediction must reach the IoU threshold with at least this many GT spans."""
NO_HIT = -1


# ---------------------------------------------------------------------------------------------
# Ground truth
# ---------------------------------------------------------------------------------------------


@dataclass
class GroundTruth:
    """Validated retrieval ground truth, in file order (``Q`` queries).

    ``ts[i]``: ``(S_i, 2)`` float32 spans (``S_i = 1`` for ``[st, ed]``; ≥ 4 for DiDeMo), or None (VR-only GT
    such as MSR-VTT). ``types[i]``: the TVR desc type or None.
    """

    desc_ids: list[Any]
    vid_names: list[str]
    ts: list[np.ndarray | None]
    types: list[str | None]
    where: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.desc_ids)

    @property
    def has_types(self) -> bool:
        return all(t is not None for t in self.types)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _parse_ts(ts: Any, where: str) -> np.ndarray | None:
    if ts is None:
        return None
    if isinstance(ts, (list, tuple)) and len(ts) == 2 and all(_is_number(x) for x in ts):
        return np.asarray([ts], dtype=np.float32)
    if isinstance(ts, (list, tuple)) and ts and all(isinstance(s, (list, tuple)) for s in ts):
        if len(ts) < DIDEMO_MIN_SPANS:
            raise HeroError(f"{where}: 'ts' is a list of {len(ts)} spans; the official evaluator scores a list of "
                            f"spans only with at least {DIDEMO_MIN_SPANS} (DiDeMo), otherwise 'ts' must be [st, ed]")
        for j, s in enumerate(ts):
            if len(s) != 2 or not all(_is_number(x) for x in s):
                raise HeroError(f"{where}: 'ts'[{j}] must be [st, ed] with two finite numbers, found {s!r}")
        return np.asarray(ts, dtype=np.float32)
    raise HeroError(f"{where}: 'ts' must be [st, ed], a list of >= {DIDEMO_MIN_SPANS} such spans, or null; "
                    f"found {ts!r}")


def parse_ground_truth(records: Iterable[Mapping[str, Any]], where: Sequence[str] | None = None) -> GroundTruth:
    """Validate GT records: the official TVR format (``desc_id``, ``vid_name``, ``ts``, ``type``) or a
    corpus annotation record (``qid``, ``vid``, ``ts``, ``type``). ``where`` names each record in errors
    (default ``ground_truth[i]``)."""
    gt = GroundTruth([], [], [], [], [])
    seen: dict[str, str] = {}
    for i, rec in enumerate(records):
        w = where[i] if where is not None else f"ground_truth[{i}]"
        if not isinstance(rec, Mapping):
            raise HeroError(f"{w}: expected a JSON object, found {type(rec).__name__}")
        desc_id = rec.get("desc_id", rec.get("qid"))
        if desc_id is None or isinstance(desc_id, (bool, float, list, dict)):
            raise HeroError(f"{w}: missing or invalid 'desc_id' (or 'qid'): {desc_id!r}")
        vid = rec.get("vid_name", rec.get("vid"))
        if not isinstance(vid, str):
            raise HeroError(f"{w}: missing or invalid 'vid_name' (or 'vid'): {vid!r}")
        key = str(desc_id)
        if key in seen:
            raise HeroError(f"{w}: desc_id {desc_id!r} already used at {seen[key]}")
        seen[key] = w
        typ = rec.get("type")
        if typ is not None and typ not in DESC_TYPES:
            raise HeroError(f"{w}: 'type' must be one of {list(DESC_TYPES)} or absent, found {typ!r}")
        gt.desc_ids.append(desc_id)
        gt.vid_names.append(vid)
        gt.ts.append(_parse_ts(rec.get("ts"), w))
        gt.types.append(typ)
        gt.where.append(w)
    return gt


def load_ground_truth(path: str | Path) -> GroundTruth:
    """GT JSONL (``.gz`` accepted): official TVR records or corpus annotations; errors name ``file:line``."""
    path = Path(path)
    records, where = [], []
    for lineno, record in iter_jsonl(path):
        records.append(record)
        where.append(f"{path}:{lineno}")
    if not records:
        raise HeroError(f"{path}: no records")
    kind = annotation_kind(records[0])
    if kind not in (None, "retrieval"):
        raise HeroError(f"{path}: this annotation file is for {kind}, not retrieval (score it with `hero eval {kind}`)")
    return parse_ground_truth(records, where)


# ---------------------------------------------------------------------------------------------
# Submission
# ---------------------------------------------------------------------------------------------


def load_submission(path: str | Path) -> dict:
    """A submission JSON (``.gz`` accepted): ``{"video2idx", "VCMR"?, "SVMR"?, "VR"?}``."""
    path = Path(path)
    if not path.is_file():
        raise HeroError(f"{path}: no such file")
    sub = read_json(path)  # .gz read transparently; bad bytes, bad JSON or a cut gzip name the file
    kind = prediction_kind(sub)
    if kind not in (None, "retrieval"):
        raise HeroError(f"{path}: this looks like a {kind} prediction file, not a retrieval submission "
                        f"(score it with `hero eval {kind}`)")
    if not isinstance(sub, dict):
        raise HeroError(f"{path}: expected a JSON object with 'video2idx' and 'VCMR'/'SVMR'/'VR' lists")
    return sub


def _plural(count: int, singular: str, plural: str) -> str:
    return f"{count:,} {singular if count == 1 else plural}"


class _Issues:
    """Problems of a submission, one clause each (count, what, first offender), joined into one line."""

    def __init__(self) -> None:
        self.clauses: list[str] = []

    def add(self, task: str | None, what: str, first: str | None = None) -> None:
        """``what`` already carries its count (`_plural`); ``first`` names the first offender."""
        self.clauses.append((f"{task}: " if task else "") + what + (f"; first at {first}" if first else ""))

    def message(self) -> str:
        return "; ".join(self.clauses)

    def __bool__(self) -> bool:
        return bool(self.clauses)


@dataclass
class _TaskPredictions:
    """First ``MAX_PRED_PER_QUERY`` predictions of every GT query: ``(Q, K, 3)`` float32 and validity."""

    pred: np.ndarray
    valid: np.ndarray


def _examples(ids: Sequence[Any], n: int = 5) -> str:
    shown = ", ".join(repr(x) for x in list(ids)[:n])
    return shown + (", ..." if len(ids) > n else "")


_FIELDS = ("video_idx", "st", "ed", "score")


def _is_number_type(t: type) -> bool:
    """JSON numbers (and NumPy scalars from in-memory predictions); booleans are not numbers."""
    return issubclass(t, (int, float, np.integer, np.floating)) and not issubclass(t, (bool, np.bool_))


def _well_typed(preds: list) -> bool:
    """Fast check that every prediction is a list or tuple of 4 numbers (no str, bool or null)."""
    if not all(type(p) in (list, tuple) and len(p) == 4 for p in preds):
        return False
    return all(_is_number_type(t) for t in {type(x) for p in preds for x in p})


def _what_is_malformed(preds: list) -> str:
    """The first malformed prediction of a list that fails `_well_typed`, in words."""
    for j, p in enumerate(preds):
        if not isinstance(p, (list, tuple)):
            return f"prediction {j} is {p!r} (a {type(p).__name__}), not a [video_idx, st, ed, score] list"
        if len(p) != 4:
            return f"prediction {j} has {len(p)} values, not 4 ([video_idx, st, ed, score])"
        for name, x in zip(_FIELDS, p):
            if not _is_number_type(type(x)):
                return f"prediction {j}: {name} is {x!r} (a {type(x).__name__}), not a number"
    return "malformed"


def _desc_id_ok(desc_id: Any) -> bool:
    return isinstance(desc_id, (str, int)) and not isinstance(desc_id, bool)


def _task_arrays(task: str, entries: Any, gt: GroundTruth, known_videos: np.ndarray, match_number: bool,
                 strict: bool, issues: _Issues, warnings: list[str]) -> tuple[_TaskPredictions, list[int]]:
    """Validate one task's list and gather its first 100 predictions per GT query (GT order).

    Returns the arrays for the evaluated GT rows and the indices of those rows (all rows when
    ``match_number``)."""
    empty = _TaskPredictions(np.zeros((0, 0, 3), np.float32), np.zeros((0, 0), bool))
    if not isinstance(entries, list):
        issues.add(task, f"not a list of {{desc_id, predictions}} entries but a {type(entries).__name__}")
        return empty, []
    by_id: dict[str, Any] = {}
    bad_entries: list[str] = []
    twice: list[Any] = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not _desc_id_ok(e.get("desc_id")) or not isinstance(e.get("predictions"), list):
            bad_entries.append(f"{task}[{i}]")
            continue
        key = str(e["desc_id"])
        if key in by_id:
            twice.append(e["desc_id"])
            continue
        by_id[key] = e
    if bad_entries:
        issues.add(task, _plural(len(bad_entries), "entry", "entries")
                   + " without a 'desc_id' (string or integer) and a 'predictions' list", bad_entries[0])
    if twice:
        issues.add(task, _plural(len(twice), "desc_id", "desc_ids") + " given twice", f"desc_id {twice[0]!r}")
    gt_keys = [str(d) for d in gt.desc_ids]
    gt_set = set(gt_keys)
    missing = [d for d, k in zip(gt.desc_ids, gt_keys) if k not in by_id]
    extra = [by_id[k]["desc_id"] for k in by_id if k not in gt_set]
    if match_number and missing:
        issues.add(task, f"{len(missing):,} of {len(gt):,} ground-truth queries missing from the submission",
                   f"desc_id {missing[0]!r}")
    if match_number and extra:
        issues.add(task, _plural(len(extra), "query", "queries") + " not in the ground truth",
                   f"desc_id {extra[0]!r}")
    rows = [i for i, k in enumerate(gt_keys) if k in by_id]
    arrays: list[np.ndarray] = []
    empty_lists: list[str] = []
    malformed: list[str] = []
    too_many: list[str] = []
    for i in rows:
        preds = by_id[gt_keys[i]]["predictions"]
        where = f"desc_id {gt.desc_ids[i]!r}"
        if not preds:
            empty_lists.append(where)
            continue
        if not _well_typed(preds):
            malformed.append(f"{where}: {_what_is_malformed(preds)}")
            continue
        if len(preds) > MAX_PRED_PER_QUERY:
            too_many.append(f"{where} ({len(preds)})")
        arrays.append(np.asarray(preds, dtype=np.float64))
    if empty_lists:
        issues.add(task, _plural(len(empty_lists), "query", "queries") + " with an empty prediction list",
                   empty_lists[0])
    if malformed:
        issues.add(task, _plural(len(malformed), "query", "queries") + " with malformed predictions "
                   "(each must be [video_idx, st, ed, score], four numbers)", malformed[0])
    if too_many:
        what = (_plural(len(too_many), "query", "queries")
                + f" with more than {MAX_PRED_PER_QUERY} predictions")
        if strict:
            issues.add(task, what + f" (the official evaluator reads at most {MAX_PRED_PER_QUERY})", too_many[0])
        else:
            warnings.append(f"{task}: {what}; only the first {MAX_PRED_PER_QUERY} count (first at {too_many[0]})")
    q = len(rows)
    if len(arrays) < q:  # already reported; the arrays are not needed
        return empty, rows
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    flat = np.concatenate(arrays) if arrays else np.zeros((0, 4))
    query = np.repeat(np.arange(q), lengths)

    def report(bad: np.ndarray, singular: str, plural: str, warn: bool = False) -> None:
        if not bad.any():
            return
        first = np.flatnonzero(bad)[0]
        where = f"desc_id {gt.desc_ids[rows[query[first]]]!r}: {flat[first].tolist()}"
        if warn:
            warnings.append(f"{task}: {_plural(int(bad.sum()), singular, plural)}, scored as the official "
                            f"evaluator does (first at {where})")
        else:
            issues.add(task, _plural(int(bad.sum()), singular, plural), where)

    finite = np.isfinite(flat[:, :3]).all(axis=1)
    report(~finite, "prediction with a non-finite video_idx, st or ed", "predictions with a non-finite video_idx, "
           "st or ed")
    report(~np.isfinite(flat[:, 3]), "non-finite score", "non-finite scores")
    vid = np.where(finite, flat[:, 0], 0.0)
    integral = vid == np.round(vid)
    report(finite & ~integral, "prediction whose video_idx is not an integer",
           "predictions whose video_idx is not an integer")
    report(finite & integral & ~np.isin(vid, known_videos), "prediction with a video_idx not in video2idx",
           "predictions with a video_idx not in video2idx")
    times = np.where(finite[:, None], flat[:, 1:3], 0.0)
    report((times < 0).any(axis=1), "prediction with a negative time", "predictions with a negative time",
           warn=not strict)
    report((times > MAX_TIME).any(axis=1), f"prediction with a time over {MAX_TIME:g} s",
           f"predictions with a time over {MAX_TIME:g} s", warn=not strict)
    if task != "VR":
        inverted = int(np.count_nonzero(flat[:, 1] > flat[:, 2]))
        zero_len = int(np.count_nonzero(flat[:, 1] == flat[:, 2]))
        if inverted or zero_len:
            warnings.append(f"{task}: {inverted} predictions with st > ed and {zero_len} of zero length "
                            f"(scored as the official evaluator does: their IoU is 0)")
    # the first MAX_PRED_PER_QUERY of each query, read as float32 like the official evaluator
    width = int(min(lengths.max(initial=0), MAX_PRED_PER_QUERY))
    pos = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    head = pos < width
    pred = np.zeros((q, width, 3), np.float32)
    valid = np.zeros((q, width), bool)
    pred[query[head], pos[head]] = flat[head, :3].astype(np.float32)
    valid[query[head], pos[head]] = True
    return _TaskPredictions(pred, valid), rows


def check_submission(submission: Any, gt: GroundTruth, tasks: Sequence[str] | None = None,
                     match_number: bool = True, strict: bool = True,
                     ) -> tuple[dict[str, tuple[_TaskPredictions, list[int]]], list[str]]:
    """Validate a submission against the GT and gather its predictions.

    Raises one `HeroError` line listing every problem, each with its count and first offender
    (``VCMR: 1,234 non-finite scores; first at desc_id 17: [...]``): missing or extra queries,
    duplicated desc ids, empty or malformed prediction lists (each prediction must be
    ``[video_idx, st, ed, score]``, four JSON numbers: no strings, booleans or nulls), NaN or infinite
    values, video indices not in ``video2idx``, GT videos missing from ``video2idx``; with ``strict``
    (the default) also negative times, times over `MAX_TIME` and more than 100 predictions per query,
    which the official evaluator scores without a word (``strict=False`` scores them as it does, with
    a warning). Returns ``({task: (predictions, gt_rows)}, warnings)``; warnings also count inverted
    (st > ed) and zero-length spans.
    """
    if not isinstance(submission, dict):
        raise HeroError(f"the submission must be a JSON object, found {type(submission).__name__}")
    video2idx = submission.get("video2idx")
    if not isinstance(video2idx, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in video2idx.items()):
        raise HeroError("the submission needs 'video2idx': an object {video name: integer index}")
    present = [t for t in TASK_TYPES if t in submission]
    tasks = present if tasks is None else [t for t in tasks if t in present]
    if not tasks:
        raise HeroError(f"the submission has none of the tasks {list(TASK_TYPES)} (keys: {sorted(submission)})")
    issues = _Issues()
    warnings: list[str] = []
    gt_missing = sorted({v for v in gt.vid_names if v not in video2idx})
    if gt_missing:
        issues.add(None, _plural(len(gt_missing), "ground-truth video", "ground-truth videos")
                   + f" missing from video2idx (e.g. {_examples(gt_missing)})")
    no_ts = [d for d, t in zip(gt.desc_ids, gt.ts) if t is None]
    for task in tasks:
        if task != "VR" and no_ts:
            issues.add(task, f"needs ground-truth 'ts': {_plural(len(no_ts), 'query', 'queries')} without it",
                       f"desc_id {no_ts[0]!r}")
    known = np.array(sorted(set(video2idx.values())), dtype=np.float64)
    out = {t: _task_arrays(t, submission[t], gt, known, match_number, strict, issues, warnings) for t in tasks}
    if issues:
        raise HeroError(issues.message())
    return out, warnings


# ---------------------------------------------------------------------------------------------
# Metric
# ---------------------------------------------------------------------------------------------


def _iou(pred: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Official ``compute_temporal_iou_batch`` in float32. ``pred`` ``(Q, K, 3)``, ``span`` ``(Q, 2)``."""
    st, ed = pred[..., 1], pred[..., 2]
    g_st, g_ed = span[:, 0:1], span[:, 1:2]
    inter = np.maximum(np.float32(0), np.minimum(ed, g_ed) - np.maximum(st, g_st))
    union = np.maximum(ed, g_ed) - np.minimum(st, g_st)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union != 0)


def _correct(pred: np.ndarray, valid: np.ndarray, match: np.ndarray, ts: list[np.ndarray],
             thd: float) -> np.ndarray:
    """``(Q, K)`` bool: prediction correct at IoU threshold ``thd`` (DiDeMo rule for ≥ 4 spans)."""
    q, k = valid.shape
    thd32 = np.float32(thd)
    out = np.zeros((q, k), bool)
    n_spans = np.array([len(t) for t in ts], dtype=np.int64)
    single = np.flatnonzero(n_spans < DIDEMO_MIN_SPANS)
    if len(single):
        span = np.stack([ts[i][0] for i in single])
        iou = _iou(pred[single], span) * match[single]
        out[single] = iou >= thd32
    multi = np.flatnonzero(n_spans >= DIDEMO_MIN_SPANS)
    if len(multi):
        count = np.zeros((len(multi), k), np.int64)
        for s in range(int(n_spans[multi].max())):
            has = n_spans[multi] > s
            span = np.stack([ts[i][s] if len(ts[i]) > s else ts[i][0] for i in multi])
            hit = (_iou(pred[multi], span) * match[multi]) >= thd32
            count += hit & has[:, None]
        out[multi] = count >= DIDEMO_MIN_OVERLAPS
    return out & valid  # padded slots are never correct (the official pads after scoring)


def _first(hits: np.ndarray) -> np.ndarray:
    """``(Q,)`` index of the first True of each row, `NO_HIT` if none."""
    any_hit = hits.any(axis=1)
    return np.where(any_hit, hits.argmax(axis=1), NO_HIT)


def first_hit_ranks(task: str, preds: _TaskPredictions, gt: GroundTruth, rows: Sequence[int],
                    video2idx: Mapping[str, int], iou_thds: Sequence[float]) -> dict[str, np.ndarray]:
    """0-based rank of each query's first correct prediction among its first 100 (`NO_HIT` if none).

    VCMR: ``{str(thd): (Q,)}``; SVMR: the same, counting only predictions on the GT video; VR:
    ``{"vid": (Q,)}``. Every recall is ``mean(0 ≤ rank < k)``.
    """
    gt_vid = np.array([video2idx[gt.vid_names[i]] for i in rows], dtype=np.float32)
    match = (preds.pred[..., 0] == gt_vid[:, None]) & preds.valid
    if task == "VR":
        return {"vid": _first(match)}
    ts = [gt.ts[i] for i in rows]
    out = {}
    for thd in iou_thds:
        correct = _correct(preds.pred, preds.valid, match, ts, thd)
        if task == "VCMR":
            out[str(thd)] = _first(correct)
        else:
            ok = correct & match
            rank_on_video = np.cumsum(match, axis=1) - 1
            first = _first(ok)
            out[str(thd)] = np.where(first >= 0, np.take_along_axis(rank_on_video, np.maximum(first, 0)[:, None],
                                                                    axis=1)[:, 0], NO_HIT)
    return out


def rounded_percentage(count: int, total: int) -> float:
    """``round(100 · count / total, 2)`` exactly as the official evaluator gets it from NumPy (NaN for 0/0)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.round(np.float64(count) / np.float64(total) * 100, 2))


def _recall(ranks: np.ndarray, k: int, select: np.ndarray | None = None) -> float:
    hit = (ranks >= 0) & (ranks < k)
    if select is None:
        return rounded_percentage(int(hit.sum()), len(hit))
    return rounded_percentage(int((hit & select).sum()), int(select.sum()))


def eval_retrieval(submission: Mapping[str, Any], ground_truth: GroundTruth | Sequence[Mapping[str, Any]],
                   iou_thds: Sequence[float] = (0.5, 0.7), verbose: bool = False, match_number: bool = True,
                   use_desc_type: bool | None = True, warnings: list[str] | None = None,
                   strict: bool = True) -> OrderedDict:
    """The official ``eval_retrieval``: metrics for every task present in the submission.

    Args:
        submission: ``{"video2idx", "VCMR"?, "SVMR"?, "VR"?}``, lists of ``{desc_id, predictions:
            [[video_idx, st, ed, score], …]}`` ranked best first.
        ground_truth: `GroundTruth` or GT records (``desc_id``, ``vid_name``, ``ts``, ``type``).
        match_number: True (official default): the desc ids must equal the GT's; False evaluates the GT
            queries present in the submission only.
        use_desc_type: add the ``*_by_type`` blocks (TVR); None = only when every GT record has a type.
        warnings: if given, receives the notes of `check_submission`.
        strict: reject negative or huge times and more than 100 predictions per query (see
            `check_submission`); False scores them as the official evaluator does.
    Returns:
        ``OrderedDict``: ``VCMR`` / ``SVMR`` (``"{thd}-r{k}"``), ``VR`` (``"r{k}"``), then
        ``{task}_by_type`` (``"{type}-{thd}-r{k}"`` / ``"{type}-r{k}"``, ``desc_type_ratio``) when types are used.
    """
    gt = ground_truth if isinstance(ground_truth, GroundTruth) else parse_ground_truth(ground_truth)
    if use_desc_type is None:
        use_desc_type = gt.has_types
    if use_desc_type and not gt.has_types:
        untyped = [d for d, t in zip(gt.desc_ids, gt.types) if t is None]
        raise HeroError(f"desc types requested but {len(untyped)} ground-truth queries have no 'type' "
                        f"(e.g. {_examples(untyped)}); evaluate without desc types")
    arrays, notes = check_submission(submission, gt, match_number=match_number, strict=strict)
    if warnings is not None:
        warnings.extend(notes)
    video2idx = submission["video2idx"]
    blocks: OrderedDict[str, OrderedDict] = OrderedDict()
    by_type: OrderedDict[str, OrderedDict] = OrderedDict()
    for task, (preds, rows) in arrays.items():
        if verbose:
            print(f"Running evaluation with task_type {task}, n results {len(submission[task])}; n gt {len(gt)}")
        ranks = first_hit_ranks(task, preds, gt, rows, video2idx, iou_thds)
        types = np.array([gt.types[i] for i in rows], dtype=object)
        metrics: OrderedDict[str, Any] = OrderedDict()
        typed: OrderedDict[str, Any] = OrderedDict()
        if task == "VR":
            for k in RECALL_TOPKS:
                metrics[f"r{k}"] = _recall(ranks["vid"], k)
            if use_desc_type:
                for t in DESC_TYPES:
                    for k in RECALL_TOPKS:
                        typed[f"{t}-r{k}"] = _recall(ranks["vid"], k, types == t)
        else:
            for thd in iou_thds:
                for k in RECALL_TOPKS:
                    metrics[f"{thd}-r{k}"] = _recall(ranks[str(thd)], k)
            if use_desc_type:
                for t in DESC_TYPES:
                    for thd in iou_thds:
                        for k in RECALL_TOPKS:
                            typed[f"{t}-{thd}-r{k}"] = _recall(ranks[str(thd)], k, types == t)
        if use_desc_type:
            typed["desc_type_ratio"] = "v {} t {} vt {}".format(
                *[rounded_percentage(int((types == t).sum()), len(types)) for t in DESC_TYPES])
        blocks[task] = metrics
        by_type[f"{task}_by_type"] = typed
    result: OrderedDict[str, Any] = OrderedDict(blocks)
    if use_desc_type:
        result.update(by_type)
    return result


def evaluate_files(submission_path: str | Path, gt_path: str | Path, out_path: str | Path | None = None,
                   iou_thds: Sequence[float] = (0.5, 0.7), use_desc_type: bool | None = None,
                   match_number: bool = True, warnings: list[str] | None = None,
                   strict: bool = True) -> OrderedDict:
    """Score a submission file against a GT JSONL; optionally write the metrics JSON atomically
    (``indent=4``, like the official ``eval_main``). ``use_desc_type=None``: by-type blocks when every GT
    record has a ``type`` (TVR), none otherwise (DiDeMo, How2R, MSR-VTT). Errors name the submission
    file once."""
    gt = load_ground_truth(gt_path)
    submission = load_submission(submission_path)  # its errors already name the file
    try:
        metrics = eval_retrieval(submission, gt, iou_thds=iou_thds, match_number=match_number,
                                 use_desc_type=use_desc_type, warnings=warnings, strict=strict)
    except HeroError as err:
        raise HeroError(f"{submission_path}: {err}") from None
    if out_path is not None:
        write_json_atomic(out_path, metrics, indent=4)
    return metrics
