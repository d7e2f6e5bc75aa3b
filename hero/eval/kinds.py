"""The ``hero eval`` kinds: one `EvalKind` entry per file-scoring metric, read by the command.

`EVAL_KINDS` is the registry ``hero eval KIND`` builds its sub-commands from (order = the order
of ``hero eval --help``); a task entry names its kind (`hero.tasks.spec.TaskSpec.eval_kind`) and
``tests/test_registry.py`` scores each task's written predictions through it. A kind is a
reader of predictions, a reader of ground truth and a metric, named as ``"module:function"`` and
imported only when the kind runs, so that ``hero eval --help`` loads no heavy library (the task
modules import torch, which is why the kinds are not stored on the task entries themselves).

Adding a metric: one function (``metric(preds, records, pred_source=, gt_source=, where=)`` for
the default readers) and one entry here; `hero.commands.eval` is not edited.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _resolve(path: str) -> Callable[..., Any]:
    module, attr = path.split(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class EvalKind:
    """One ``hero eval KIND``: ``--pred P --gt G [--out M]`` scored by ``metric`` on what
    ``read_predictions`` and ``read_ground_truth`` return (the latter ``(records, line numbers)``).

    A kind with options of its own (retrieval, caption) gives ``add_arguments`` (called on its
    sub-parser, after ``--gt``) and ``run`` (``args -> metrics``, writing ``args.out`` itself)."""

    name: str
    help: str
    metric: str = ""
    """``"module:function"``: ``(preds, records, pred_source=, gt_source=, where=) -> metrics``."""
    read_predictions: str = "hero.eval.classification:read_predictions"
    read_ground_truth: str = "hero.eval.classification:read_ground_truth"
    pred_flag: str = "--pred"
    pred_help: str = "prediction file"
    gt_help: str = "ground truth JSONL"
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    run: Callable[[argparse.Namespace], dict] | None = None
    options_before_out: bool = True
    """Where ``add_arguments``'s options stand in ``--help``: before ``--out`` or after it."""

    def score(self, pred_path: str | Path, gt_path: str | Path, out: str | Path | None = None) -> dict[str, float]:
        """Metrics of a prediction file against a ground-truth file (the default readers' path);
        written atomically to ``out`` when given."""
        from hero.eval.classification import _record_where, write_metrics

        preds = _resolve(self.read_predictions)(pred_path)
        records, lines = _resolve(self.read_ground_truth)(gt_path)
        metrics = _resolve(self.metric)(preds, records, pred_source=str(pred_path), gt_source=str(gt_path),
                                        where=_record_where(str(gt_path), lines))
        if out is not None:
            write_metrics(metrics, out)
        return metrics

    def evaluate(self, args: argparse.Namespace) -> dict:
        """What ``hero eval KIND`` prints: ``run(args)`` or the default readers and metric."""
        if self.run is not None:
            return self.run(args)
        return self.score(args.pred, args.gt, args.out)


def _iou_threshold(text: str) -> float:
    """argparse ``type=``: an IoU threshold in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"an IoU threshold must be in (0, 1], got {text}")
    return value


def _retrieval_arguments(r: argparse.ArgumentParser) -> None:
    r.add_argument("--iou", type=_iou_threshold, nargs="+", default=[0.5, 0.7],
                   help="IoU thresholds in (0, 1] (default 0.5 0.7)")
    types = r.add_mutually_exclusive_group()
    types.add_argument("--by-type", dest="use_desc_type", action="store_true", default=None,
                       help="always add the *_by_type blocks (default: when every GT record has a type)")
    types.add_argument("--no-by-type", dest="use_desc_type", action="store_false",
                       help="never add the *_by_type blocks (as HERO evaluates DiDeMo / How2R)")
    r.add_argument("--partial", action="store_true",
                   help="evaluate only the GT queries the submission covers (official match_number=False)")
    r.add_argument("--lenient", action="store_true",
                   help="score negative or huge times and more than 100 predictions per query as the official "
                        "evaluator does (only the first 100 count), with a note, instead of rejecting them")


def _retrieval_run(args: argparse.Namespace) -> dict:
    from hero.eval.tvr import evaluate_files

    warnings: list[str] = []
    metrics = evaluate_files(args.pred, args.gt, args.out, iou_thds=tuple(args.iou),
                             use_desc_type=args.use_desc_type, match_number=not args.partial,
                             warnings=warnings, strict=not args.lenient)
    for w in warnings:
        print(f"hero eval retrieval: note: {w}", file=sys.stderr)
    return metrics


def _caption_arguments(k: argparse.ArgumentParser) -> None:
    k.add_argument("--no-meteor", action="store_true", help="skip METEOR (needs Java)")


def _caption_run(args: argparse.Namespace) -> dict:
    from hero.eval.captioning import evaluate_files

    return evaluate_files(args.pred, args.gt, args.out, meteor=not args.no_meteor)


EVAL_KINDS: dict[str, EvalKind] = {k.name: k for k in (
    EvalKind("retrieval", "VCMR / SVMR / VR recall, equal to the official TVR evaluator",
             pred_flag="--submission",
             pred_help="submission JSON (.gz accepted): video2idx and VCMR / SVMR / VR lists",
             gt_help="ground truth JSONL (.gz accepted): official TVR records or corpus annotations",
             add_arguments=_retrieval_arguments, run=_retrieval_run),
    EvalKind("qa", "multiple-choice QA accuracy (TVQA, How2QA)", metric="hero.eval.classification:qa_accuracy"),
    EvalKind("violin", "VIOLIN accuracy", metric="hero.eval.classification:violin_accuracy"),
    EvalKind("caption", "TVC caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D)",
             add_arguments=_caption_arguments, run=_caption_run, options_before_out=False),
    EvalKind("open_qa", "open-ended QA accuracy (MSR-VTT-QA: exact match with the answer)",
             metric="hero.eval.classification:open_qa_accuracy"),
)}


__all__ = ["EVAL_KINDS", "EvalKind"]
