"""``hero eval KIND ...``: score prediction files with the official metrics.

The kinds are the entries of `hero.eval.kinds.EVAL_KINDS` (a new metric adds an entry there, not
here):

| kind | usage | metric |
|---|---|---|
| ``retrieval`` | ``--submission PRED.json --gt GT.jsonl`` | TVR standalone evaluator (VCMR / SVMR / VR) |
| ``qa`` | ``--pred P.json --gt G.jsonl`` | TVQA / How2QA accuracy |
| ``violin`` | ``--pred P.json --gt G.jsonl`` | VIOLIN accuracy |
| ``caption`` | ``--pred P.jsonl --gt G.jsonl`` | TVC captioning (BLEU, METEOR, ROUGE-L, CIDEr-D) |
| ``open_qa`` | ``--pred P.json --gt G.jsonl`` | open-ended QA accuracy (MSR-VTT-QA) |

Every kind prints the metrics as JSON and, with ``--out``, writes them atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hero.eval.kinds import EVAL_KINDS

# kind -> one-line help
KINDS: dict[str, str] = {name: kind.help for name, kind in EVAL_KINDS.items()}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    for name, kind in EVAL_KINDS.items():
        k = sub.add_parser(name, help=kind.help, description=kind.help)
        k.add_argument(kind.pred_flag, dest="pred", metavar=kind.pred_flag.lstrip("-").upper(), type=Path,
                       required=True, help=kind.pred_help)
        k.add_argument("--gt", type=Path, required=True, help=kind.gt_help)
        if kind.add_arguments is not None and kind.options_before_out:
            kind.add_arguments(k)
        k.add_argument("--out", type=Path, default=None, help="write the metrics JSON here")
        if kind.add_arguments is not None and not kind.options_before_out:
            kind.add_arguments(k)


def _print(metrics: dict) -> None:
    print(json.dumps(metrics, indent=4))


def run(args: argparse.Namespace) -> int:
    metrics = EVAL_KINDS[args.kind].evaluate(args)
    _print(metrics)
    if args.out is not None:
        print(f"wrote {args.out}", file=sys.stderr)
    return 0
