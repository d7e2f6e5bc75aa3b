"""``hero figure attention|moments|curves``: the figures of the docs, from a model and a corpus.

* ``attention``: head-averaged attention maps of every Cross-modal layer for one subtitle group
  of a video (frames and subtitle tokens; paper Fig. 3).
* ``moments``: a retrieval model's start/end probabilities over a clip's frames for a query, with
  the subtitles on the timeline, the ground-truth moment and the predicted one (paper Fig. 2).
* ``curves``: per-objective loss curves of a run (same as ``hero plot``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hero.argtypes import nonnegative_int

FIGURES = ("attention", "moments", "curves")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("figure", choices=FIGURES, help="which figure")
    p.add_argument("--model", type=Path, help="a saved model, checkpoint or run directory (attention, moments)")
    p.add_argument("--corpus", type=Path, help="prepared dataset directory (attention, moments)")
    p.add_argument("--run", type=Path, help="run directory with log.jsonl (curves)")
    p.add_argument("--vid", help="video id (attention; default: the first video)")
    p.add_argument("--group", type=nonnegative_int, default=None,
                   help="subtitle group of the video (attention; default: the group with most frames)")
    p.add_argument("--dataset", default="tvr", help="retrieval annotations (moments)")
    p.add_argument("--split", default="val", help="annotation split (moments)")
    p.add_argument("--qid", default=None, help="query id (moments; default: the first query)")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")


def _need(args: argparse.Namespace, *names: str) -> None:
    from hero.errors import HeroError

    missing = [f"--{n}" for n in names if getattr(args, n) is None]
    if missing:
        raise HeroError(f"hero figure {args.figure} needs {', '.join(missing)}")


def run(args: argparse.Namespace) -> int:
    if args.figure == "curves":
        _need(args, "run")
        from hero.viz.curves import plot_loss_curves

        out = plot_loss_curves(args.run, args.out)
    elif args.figure == "attention":
        _need(args, "model", "corpus")
        from hero.data.corpus import Corpus
        from hero.viz.attention import attention_figure
        from hero.viz.models import load_any_model

        out = attention_figure(load_any_model(args.model), Corpus(args.corpus), args.out, vid=args.vid,
                               group=args.group)
    else:
        _need(args, "model", "corpus")
        from hero.data.corpus import Corpus
        from hero.viz.models import load_any_model
        from hero.viz.moments import moments_figure

        out = moments_figure(load_any_model(args.model), Corpus(args.corpus), args.out, dataset=args.dataset,
                             split=args.split, qid=args.qid)
    print(f"wrote {out}")
    return 0
