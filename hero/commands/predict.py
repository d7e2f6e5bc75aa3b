"""``hero predict --model DIR --corpus DIR --dataset NAME --split SPLIT --out FILE`` (torchrun-ready).

Runs a fine-tuned model (a run directory, a checkpoint, a saved model, or a reference ``.pt``
task checkpoint) over a split and writes its predictions in the task's official format (TVR
submission JSON, ``{qid: answer}`` JSON, TVC JSONL, ...). With ``--eval`` it also scores them
against the split's annotations.

A reference checkpoint (``.../ckpt/model_step_N.pt``) is loaded as `hero.tasks.load`
describes: its task from ``--task``, else from its keys or ``../log/hps.json``; its task settings
from ``../log/hps.json``, then the ``key=value`` arguments.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hero.argtypes import positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path,
                   help="fine-tuned run directory, checkpoint or model dir, or a reference .pt task checkpoint")
    p.add_argument("--task", default=None,
                   help="vcmr, vr, qa, violin or tvc: the task of a reference .pt (default: from its keys or "
                        "log/hps.json); with a model directory, checked against the model's task")
    p.add_argument("--corpus", required=True, type=Path, help="prepared dataset directory")
    p.add_argument("--dataset", required=True, help="annotation dataset, e.g. tvr, tvqa, violin, tvc")
    p.add_argument("--split", default="val")
    p.add_argument("--out", required=True, type=Path, help="prediction file to write")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--max-clip-len", type=positive_int, default=100)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--eval", action="store_true", help="also score the predictions (needs ground truth)")
    p.add_argument("task_config", nargs="*", metavar="key=value", help="task settings to change for inference")


def run(args: argparse.Namespace) -> int:
    import json

    import torch
    import yaml

    from hero.data.corpus import Corpus
    from hero.errors import HeroError, NonFiniteError
    from hero.tasks.load import load_task_model
    from hero.train.distributed import setup

    overrides = {}
    for kv in args.task_config:
        if "=" not in kv:
            raise HeroError(f"{kv!r}: expected key=value")
        k, v = kv.split("=", 1)
        try:
            overrides[k] = yaml.safe_load(v)
        except yaml.YAMLError as err:
            raise HeroError(f"--task-config {kv!r}: cannot parse the value ({' '.join(str(err).split())})") from None
    if args.model.is_file():
        from hero.tasks.load import load_reference_task_model

        task, cfg, model, how = load_reference_task_model(args.model, args.task, overrides)
        print(f"{args.model}: reference {task.name} checkpoint ({how}); {model.load_report.summary().splitlines()[0]}")
    else:
        task, cfg, model = load_task_model(args.model, overrides)
        if args.task is not None:
            from hero.tasks.reference import task_name

            if task_name(args.task) != task.name:
                raise HeroError(f"--task {args.task}: {args.model} holds a {task.name} model")
    from hero.tasks import check_dataset

    check_dataset(task, args.dataset)  # a VCMR model on tvqa: the mismatch, not a missing annotation key
    # Under torchrun, tasks that support it (retrieval) shard the corpus encoding across ranks;
    # every rank returns the same predictions and rank 0 writes them.
    env = setup(args.device)
    device = env.device
    model = model.to(device).eval()
    corpus = Corpus(args.corpus, max_clip_len=args.max_clip_len)
    try:
        with torch.no_grad():
            preds = task.predict(model, corpus, args.dataset, args.split, cfg, args.batch_size, device)
    except NonFiniteError as err:  # nothing is written: a NaN submission scores as if it meant something
        raise HeroError(f"{args.model}: the model gives {err}; refusing to write {args.out}") from None
    if not env.is_main:
        return 0
    task.write_predictions(preds, args.out, cfg)  # retrieval's writer reads the run's NMS threshold
    print(f"wrote {args.out}")
    if args.eval:
        metrics = task.evaluate(preds, corpus, args.dataset, args.split, cfg)
        print(json.dumps(metrics, indent=2))
    return 0
