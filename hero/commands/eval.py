"""``hero eval KIND ...``: score prediction files with the official metrics.

| kind | usage | metric |
|---|---|---|
| ``retrieval`` | ``--submission PRED.json --gt GT.jsonl`` | TVR standalone evaluator (VCMR / SVMR / VR) |
| ``qa`` | ``--pred P.json --gt G.jsonl`` | TVQA / How2QA accuracy |
| ``violin`` | ``--pred P.json --gt G.jsonl`` | VIOLIN accuracy |
| ``caption`` | ``--pred P.jsonl --gt G.jsonl`` | TVC captioning (BLEU, METEOR, ROUGE-L, CIDEr-D) |

Every kind prints the metrics as JSON and, with ``--out``, writes them atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# kind -> one-line help
KINDS: dict[str, str] = {
    "retrieval": "VCMR / SVMR / VR recall, equal to the official TVR evaluator",
    "qa": "multiple-choice QA accuracy (TVQA, How2QA)",
    "violin": "VIOLIN accuracy",
    "caption": "TVC caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D)",
}


def _iou_threshold(text: str) -> float:
    """argparse ``type=``: an IoU threshold in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"an IoU threshold must be in (0, 1], got {text}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    r = sub.add_parser("retrieval", help=KINDS["retrieval"], description=KINDS["retrieval"])
    r.add_argument("--submission", type=Path, required=True,
                   help="submission JSON (.gz accepted): video2idx and VCMR / SVMR / VR lists")
    r.add_argument("--gt", type=Path, required=True,
                   help="ground truth JSONL (.gz accepted): official TVR records or corpus annotations")
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
    r.add_argument("--out", type=Path, default=None, help="write the metrics JSON here")
    for kind in ("qa", "violin", "caption"):
        k = sub.add_parser(kind, help=KINDS[kind], description=KINDS[kind])
        k.add_argument("--pred", type=Path, required=True, help="prediction file")
        k.add_argument("--gt", type=Path, required=True, help="ground truth JSONL")
        k.add_argument("--out", type=Path, default=None, help="write the metrics JSON here")
        if kind == "caption":
            k.add_argument("--no-meteor", action="store_true", help="skip METEOR (needs Java)")


def _print(metrics: dict) -> None:
    print(json.dumps(metrics, indent=4))


def run(args: argparse.Namespace) -> int:
    if args.kind == "retrieval":
        from hero.eval.tvr import evaluate_files

        warnings: list[str] = []
        metrics = evaluate_files(args.submission, args.gt, args.out, iou_thds=tuple(args.iou),
                                 use_desc_type=args.use_desc_type, match_number=not args.partial,
                                 warnings=warnings, strict=not args.lenient)
        for w in warnings:
            print(f"hero eval retrieval: note: {w}", file=sys.stderr)
    elif args.kind == "qa":
        from hero.eval.classification import evaluate_qa_files

        metrics = evaluate_qa_files(args.pred, args.gt, out=args.out)
    elif args.kind == "violin":
        from hero.eval.classification import evaluate_violin_files

        metrics = evaluate_violin_files(args.pred, args.gt, out=args.out)
    else:
        from hero.eval.captioning import evaluate_files as caption_files

        metrics = caption_files(args.pred, args.gt, args.out, meteor=not args.no_meteor)
    _print(metrics)
    if args.out is not None:
        print(f"wrote {args.out}", file=sys.stderr)
    return 0
