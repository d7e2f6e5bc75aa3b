"""``hero predict --model DIR --corpus DIR --dataset NAME --split SPLIT --out FILE`` (torchrun-ready).

Runs a fine-tuned model (a run directory, a checkpoint or a saved model) over a split and writes
its predictions in the task's official format (TVR submission JSON, ``{qid: answer}`` JSON, TVC
JSONL, ...). With ``--eval`` it also scores them against the split's annotations.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path, help="fine-tuned run directory, checkpoint or model dir")
    p.add_argument("--corpus", required=True, type=Path, help="prepared dataset directory")
    p.add_argument("--dataset", required=True, help="annotation dataset, e.g. tvr, tvqa, violin, tvc")
    p.add_argument("--split", default="val")
    p.add_argument("--out", required=True, type=Path, help="prediction file to write")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-clip-len", type=int, default=100)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--eval", action="store_true", help="also score the predictions (needs ground truth)")
    p.add_argument("task_config", nargs="*", metavar="key=value", help="task settings to change for inference")


def run(args: argparse.Namespace) -> int:
    import inspect
    import json

    import torch
    import yaml

    from hero.data.corpus import Corpus
    from hero.errors import HeroError
    from hero.io import write_json_atomic
    from hero.train.distributed import setup
    from hero.train.finetune import load_task_model

    overrides = {}
    for kv in args.task_config:
        if "=" not in kv:
            raise HeroError(f"{kv!r}: expected key=value")
        k, v = kv.split("=", 1)
        overrides[k] = yaml.safe_load(v)
    task, cfg, model = load_task_model(args.model, overrides)
    from hero.tasks import check_dataset

    check_dataset(task, args.dataset)  # a VCMR model on tvqa: the mismatch, not a missing annotation key
    # Under torchrun, tasks that support it (retrieval) shard the corpus encoding across ranks;
    # every rank returns the same predictions and rank 0 writes them.
    env = setup(args.device)
    device = env.device
    model = model.to(device).eval()
    corpus = Corpus(args.corpus, max_clip_len=args.max_clip_len)
    with torch.no_grad():
        preds = task.predict(model, corpus, args.dataset, args.split, cfg, args.batch_size, device)
    if not env.is_main:
        return 0
    writer = getattr(task, "write_predictions", None)
    if writer is not None:
        # writers that take the task settings (retrieval: the run's NMS threshold) get them
        if len(inspect.signature(writer).parameters) >= 3:
            writer(preds, args.out, cfg)
        else:
            writer(preds, args.out)
    else:
        write_json_atomic(args.out, preds)
    print(f"wrote {args.out}")
    if args.eval:
        metrics = task.evaluate(preds, corpus, args.dataset, args.split, cfg)
        print(json.dumps(metrics, indent=2))
    return 0
