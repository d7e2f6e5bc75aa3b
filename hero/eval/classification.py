"""Accuracy of multiple-choice video QA (TVQA, How2QA) and VIOLIN predictions.

Prediction files are what `hero predict` writes (and what the reference ``eval_videoQA.py`` /
``eval_violin.py`` write): one JSON object, ``{qid: answer_idx}`` for QA and ``{qid: 0 | 1}`` for
VIOLIN (1 = the statement is entailed, i.e. ``sigmoid(logit) > 0.5``). Ground truth is the split's
annotation JSONL (DEVELOPERS.md record formats); the raw TVQA lines (``qid``, ``a0..a4``,
``answer_idx``) and HERO's VIOLIN lines (``desc_id``, ``label``) are read too.

Scores are percentages (like every other metric of the package and the paper's tables):

* QA: ``accuracy``, ``num_questions``, and ``accuracy/<q_type>`` / ``num_questions/<q_type>``
  for every question type present in the ground truth (TVQA's ``q_type``; How2QA has none).
* VIOLIN: ``accuracy``, ``num_statements``.

Every prediction of the split must be there, exactly once, and nothing else: a malformed file is a
`HeroError` naming the file and the offending qids (not a silently lower score).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hero.errors import HeroError
from hero.eval.formats import annotation_kind, non_finite, prediction_kind
from hero.io import iter_jsonl, json_problem, read_text, write_json_atomic

Where = Callable[[int], str]

MAX_LISTED = 5
"""How many offending qids an error message names (the count is always exact)."""


def _examples(keys: Sequence[Any]) -> str:
    shown = ", ".join(repr(k) for k in list(keys)[:MAX_LISTED])
    more = f", ... ({len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else ""
    return shown + more


def _qid(record: Mapping[str, Any], where: str) -> str:
    for key in ("qid", "desc_id"):
        if key in record and record[key] is not None:
            return str(record[key])
    raise HeroError(f"{where}: record has no 'qid'")


def _num_answers(record: Mapping[str, Any]) -> int | None:
    """Answer candidates of a QA record: ``answers``/``a_ids`` lists, or raw ``a0, a1, ...`` keys."""
    for key in ("answers", "a_ids"):
        if isinstance(record.get(key), list):
            return len(record[key])
    n = 0
    while f"a{n}" in record:
        n += 1
    return n or None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_task(kind: str, preds: Any, records: Sequence[Any], pred_source: str, gt_source: str) -> None:
    """A ground truth or a prediction file of another task is named as such (not as missing qids)."""
    gt_kind = annotation_kind(records[0]) if records else None
    if gt_kind is not None and gt_kind != kind:
        raise HeroError(f"{gt_source}: this annotation file is for {gt_kind}, not {kind} (score it with "
                        f"`hero eval {gt_kind}`)")
    if prediction_kind(preds) == "retrieval":
        raise HeroError(f"{pred_source}: this looks like a retrieval submission, not {kind} predictions "
                        f"(score it with `hero eval retrieval`)")


def _check_keys(preds: Mapping[Any, Any], gt_qids: Sequence[str], pred_source: str,
                gt_source: str, kind: str = "qa") -> dict[str, Any]:
    """Predictions keyed by ``str(qid)``; every GT qid present, no other one, no NaN or infinity."""
    if not isinstance(preds, Mapping):
        raise HeroError(f"{pred_source}: expected a JSON object {{qid: prediction}}, got {type(preds).__name__}")
    bad = non_finite(preds)
    if bad:
        raise HeroError(f"{pred_source}: {len(bad):,} non-finite prediction{'s' if len(bad) > 1 else ''} "
                        f"(NaN or infinity); first at qid {str(bad[0])!r}")
    by_qid: dict[str, Any] = {}
    for key, value in preds.items():
        k = str(key)
        if k in by_qid:
            raise HeroError(f"{pred_source}: qid {k!r} is predicted twice")
        by_qid[k] = value
    known = set(gt_qids)
    missing = [q for q in gt_qids if q not in by_qid]
    unknown = [q for q in by_qid if q not in known]
    if by_qid and len(unknown) == len(by_qid):  # nothing in common: the wrong file, not a few gaps
        guess = prediction_kind(preds)
        what = (f"this looks like a {guess} prediction file, not {kind}: " if guess not in (None, kind)
                else "")
        raise HeroError(f"{pred_source}: {what}none of its {len(by_qid):,} qids is in {gt_source} "
                        f"(another split or dataset?)")
    if missing:
        raise HeroError(f"{pred_source}: no prediction for {len(missing)} of the {len(gt_qids)} qids of "
                        f"{gt_source}: {_examples(missing)}")
    if unknown:
        raise HeroError(f"{pred_source}: {len(unknown)} predicted qids are not in {gt_source}: "
                        f"{_examples(unknown)}")
    return by_qid


def _gt_qids(records: Sequence[Mapping[str, Any]], where: Where) -> list[str]:
    qids, seen = [], {}
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise HeroError(f"{where(i)}: expected a JSON object, got {type(record).__name__}")
        q = _qid(record, where(i))
        if q in seen:
            raise HeroError(f"{where(i)}: qid {q!r} already appears at {where(seen[q])}")
        seen[q] = i
        qids.append(q)
    return qids


def _record_where(gt_source: str, lines: Sequence[int] | None = None) -> Where:
    """``where(i)``: ``source:line`` of record ``i`` (its 1-based position when lines are unknown)."""
    if lines is None:
        return lambda i: f"{gt_source}:{i + 1}"
    return lambda i: f"{gt_source}:{lines[i]}"


def _accuracies(hits: Sequence[int], groups: Sequence[Any], unit: str) -> dict[str, float]:
    """``accuracy`` (%) and ``num_<unit>`` over all records, and ``accuracy/<g>``, ``num_<unit>/<g>``
    per group ``g`` (records whose group is None are counted only overall)."""
    out = {"accuracy": 100.0 * sum(hits) / len(hits), f"num_{unit}": float(len(hits))}
    per_group: dict[str, list[int]] = {}
    for hit, group in zip(hits, groups):
        if group is not None:
            per_group.setdefault(str(group), []).append(hit)
    for group in sorted(per_group):
        out[f"accuracy/{group}"] = 100.0 * sum(per_group[group]) / len(per_group[group])
        out[f"num_{unit}/{group}"] = float(len(per_group[group]))
    return out


def qa_accuracy(preds: Mapping[Any, Any], records: Sequence[Mapping[str, Any]],
                pred_source: str = "predictions", gt_source: str = "ground truth",
                where: Where | None = None) -> dict[str, float]:
    """Accuracy (%) of ``{qid: answer_idx}`` against QA records, overall and per ``q_type``.

    Args:
        preds: one answer index per question (keys compared as strings: JSON keys are strings).
        records: annotation records with ``qid``, ``answer_idx`` and the answers (for the range
            check); ``q_type`` when present.
        pred_source, gt_source: names used in error messages (file paths).
        where: location of record ``i`` in error messages (default ``gt_source:i+1``).
    Raises:
        HeroError: missing, unknown or repeated qids; an index that is not an integer or is out of
            ``[0, number of answers)``; a record without ``answer_idx`` (e.g. a test split).
    """
    where = where or _record_where(gt_source)
    _check_task("qa", preds, records, pred_source, gt_source)
    qids = _gt_qids(records, where)
    by_qid = _check_keys(preds, qids, pred_source, gt_source, "qa")
    hits: list[int] = []
    for i, (q, record) in enumerate(zip(qids, records)):
        gold = record.get("answer_idx")
        if not _is_int(gold):
            raise HeroError(f"{where(i)}: qid {q!r} has no integer 'answer_idx' (got {gold!r}); "
                            f"a split without answers cannot be scored")
        n = _num_answers(record)
        if gold < 0 or (n is not None and gold >= n):
            raise HeroError(f"{where(i)}: qid {q!r}: answer_idx {gold} is out of range [0, {n})")
        pred = by_qid[q]
        if not _is_int(pred):
            raise HeroError(f"{pred_source}: qid {q!r}: the answer index must be an integer, got {pred!r}")
        if pred < 0 or (n is not None and pred >= n):
            raise HeroError(f"{pred_source}: qid {q!r}: answer index {pred} is out of range [0, {n})")
        hits.append(int(pred == gold))
    if not hits:
        raise HeroError(f"{gt_source}: no question to score")
    return _accuracies(hits, [r.get("q_type") for r in records], "questions")


def violin_accuracy(preds: Mapping[Any, Any], records: Sequence[Mapping[str, Any]],
                    pred_source: str = "predictions", gt_source: str = "ground truth",
                    where: Where | None = None) -> dict[str, float]:
    """Accuracy (%) of ``{qid: 0 | 1}`` against VIOLIN records (``label`` 0 or 1), overall and per
    statement ``kind`` where the records carry one (the synthetic corpus does; VIOLIN does not).

    Raises:
        HeroError: missing, unknown or repeated qids; a prediction or label that is not 0 or 1.
    """
    where = where or _record_where(gt_source)
    _check_task("violin", preds, records, pred_source, gt_source)
    qids = _gt_qids(records, where)
    by_qid = _check_keys(preds, qids, pred_source, gt_source, "violin")
    hits: list[int] = []
    for i, (q, record) in enumerate(zip(qids, records)):
        gold = record.get("label")
        if not _is_int(gold) or gold not in (0, 1):
            raise HeroError(f"{where(i)}: qid {q!r}: 'label' must be 0 or 1 (got {gold!r}); "
                            f"a split without labels cannot be scored")
        pred = by_qid[q]
        if not _is_int(pred) or pred not in (0, 1):
            raise HeroError(f"{pred_source}: qid {q!r}: the prediction must be 0 or 1, got {pred!r}")
        hits.append(int(pred == gold))
    if not hits:
        raise HeroError(f"{gt_source}: no statement to score")
    return _accuracies(hits, [r.get("kind") for r in records], "statements")


def open_qa_accuracy(preds: Mapping[Any, Any], records: Sequence[Mapping[str, Any]],
                     pred_source: str = "predictions", gt_source: str = "ground truth",
                     where: Where | None = None) -> dict[str, float]:
    """Accuracy (%) of ``{qid: answer string}`` against open-ended QA records (``answer``; MSR-VTT-QA),
    overall and per ``q_type``: exact match, every question counts (an answer outside the model's
    vocabulary is simply wrong), as `hero.tasks.open_qa.evaluate`.

    Raises:
        HeroError: missing, unknown or repeated qids; a record without a string ``answer`` (a split
            without answers); a prediction that is not a string.
    """
    where = where or _record_where(gt_source)
    if prediction_kind(preds) == "retrieval":
        raise HeroError(f"{pred_source}: this looks like a retrieval submission, not open_qa predictions "
                        f"(score it with `hero eval retrieval`)")
    qids = _gt_qids(records, where)
    by_qid = _check_keys(preds, qids, pred_source, gt_source, "open_qa")
    hits: list[int] = []
    for i, (q, record) in enumerate(zip(qids, records)):
        gold = record.get("answer")
        if not isinstance(gold, str):
            raise HeroError(f"{where(i)}: qid {q!r} has no string 'answer' (got {gold!r}); "
                            f"a split without answers cannot be scored")
        pred = by_qid[q]
        if not isinstance(pred, str):
            raise HeroError(f"{pred_source}: qid {q!r}: the answer must be a string, got {pred!r}")
        hits.append(int(pred == gold))
    if not hits:
        raise HeroError(f"{gt_source}: no question to score")
    return _accuracies(hits, [r.get("q_type") for r in records], "questions")


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def read_predictions(path: str | os.PathLike) -> dict[str, Any]:
    """A prediction file: one JSON object ``{qid: prediction}``; a qid given twice is an error
    (plain JSON parsing would keep the last one silently)."""
    path = Path(path)
    text = read_text(path)
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as err:
        raise HeroError(f"{path}:{err.lineno}: invalid JSON ({json_problem(err, text, 'file')})") from None
    except RecursionError:
        raise HeroError(f"{path}: invalid JSON (nested too deeply)") from None
    except _DuplicateKey as dup:
        raise HeroError(f"{path}: key {dup.args[0]!r} appears twice (which prediction counts is ambiguous)") from None
    if not isinstance(data, dict):
        raise HeroError(f"{path}: expected a JSON object {{qid: prediction}}, got a {type(data).__name__}")
    return data


def read_ground_truth(path: str | os.PathLike) -> tuple[list[dict[str, Any]], list[int]]:
    """Annotation records, one JSON object per line (blank lines skipped), and their line numbers."""
    records, numbers = [], []
    for n, record in iter_jsonl(path):
        records.append(record)
        numbers.append(n)
    return records, numbers


def write_metrics(metrics: dict[str, float], out: str | os.PathLike) -> None:
    """Write metrics as JSON (``indent=2``, sorted keys), atomically."""
    write_json_atomic(out, metrics, indent=2, sort_keys=True)


def _evaluate_files(score, pred_path, gt_path, out) -> dict[str, float]:
    preds = read_predictions(pred_path)
    records, lines = read_ground_truth(gt_path)
    metrics = score(preds, records, pred_source=str(pred_path), gt_source=str(gt_path),
                    where=_record_where(str(gt_path), lines))
    if out is not None:
        write_metrics(metrics, out)
    return metrics


def evaluate_qa_files(pred_path: str | os.PathLike, gt_path: str | os.PathLike,
                      out: str | os.PathLike | None = None) -> dict[str, float]:
    """Score a ``{qid: answer_idx}`` file against a QA annotation JSONL; optionally write the metrics."""
    return _evaluate_files(qa_accuracy, pred_path, gt_path, out)


def evaluate_violin_files(pred_path: str | os.PathLike, gt_path: str | os.PathLike,
                          out: str | os.PathLike | None = None) -> dict[str, float]:
    """Score a ``{qid: 0 | 1}`` file against a VIOLIN annotation JSONL; optionally write the metrics."""
    return _evaluate_files(violin_accuracy, pred_path, gt_path, out)


__all__ = [
    "evaluate_qa_files",
    "evaluate_violin_files",
    "open_qa_accuracy",
    "qa_accuracy",
    "read_ground_truth",
    "read_predictions",
    "violin_accuracy",
    "write_metrics",
]
