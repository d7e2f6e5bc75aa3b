"""``hero convert``, ``hero init-roberta`` and ``hero info``: checkpoint conversion and inspection."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hero.argtypes import positive_int


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    if name == "convert":
        p.add_argument("checkpoint", type=Path, help="reference .pt file (e.g. hero-tv-ht100.pt)")
        p.add_argument("out", type=Path, help="output directory (safetensors + config.json)")
        p.add_argument("--num-heads", type=positive_int, default=None, help="attention heads (default hidden/64)")
        p.add_argument("--vocab-size", type=positive_int, default=None,
                       help="real vocabulary (default 50265 for RoBERTa)")
        p.add_argument("--task", default=None,
                       help="pretrain, vcmr, vr, qa, violin or tvc (default: from the checkpoint's head keys, else "
                            "the task in ../log/hps.json, else pretrain)")
    elif name == "init-roberta":
        p.add_argument("roberta", help="local Hugging Face RoBERTa directory, or a hub name when online")
        p.add_argument("out", type=Path)
        p.add_argument("--preset", default="hero-base")
        p.add_argument("--load-lm-head", action="store_true",
                       help="also load RoBERTa's MLM head (the reference does not)")
    else:
        p.add_argument("checkpoint", type=Path)
    p.set_defaults(checkpoint_command=name)


def run(args: argparse.Namespace) -> int:
    return {"convert": _convert, "init-roberta": _init_roberta, "info": _info}[args.checkpoint_command](args)


def _convert(args: argparse.Namespace) -> int:
    from hero.model.checkpoint import read_reference_checkpoint
    from hero.tasks.reference import read_hps, reference_task_of

    task, how = args.task, "given"
    if task is None:
        task, how = reference_task_of(read_reference_checkpoint(args.checkpoint), read_hps(args.checkpoint))
        if task is None:
            task, how = "pretrain", f"{how}: the pre-training model (pass --task vcmr for a retrieval checkpoint)"
    if task == "pretrain":
        from hero.objectives import HeroForPretraining

        model = HeroForPretraining.from_reference(args.checkpoint, num_attention_heads=args.num_heads,
                                                  vocab_size=args.vocab_size)
    else:
        from hero.tasks.load import load_reference_task_model

        task_obj, _, model, _ = load_reference_task_model(args.checkpoint, task, num_attention_heads=args.num_heads,
                                                          vocab_size=args.vocab_size)
        task = task_obj.name
    print(f"task: {task} ({how})")
    print(model.load_report.summary())
    out = model.save_pretrained(args.out, metadata={"converted_from": str(args.checkpoint)})
    print(f"wrote {out}")
    return 0


def _init_roberta(args: argparse.Namespace) -> int:
    from hero.config import HeroConfig
    from hero.model.checkpoint import init_from_roberta
    from hero.objectives import HeroForPretraining

    model = HeroForPretraining(HeroConfig.from_name(args.preset))
    report = init_from_roberta(model, args.roberta, load_lm_head=args.load_lm_head)
    print(report.summary())
    out = model.save_pretrained(args.out, metadata={"initialised_from": str(args.roberta)})
    print(f"wrote {out}")
    return 0


def _info(args: argparse.Namespace) -> int:
    import sys

    from hero.model.checkpoint import describe_weights, read_config

    meta = read_config(args.checkpoint)
    weights = describe_weights(args.checkpoint)  # checks the file against the hash in config.json
    print(json.dumps(meta, indent=2, sort_keys=True))
    print(weights, file=sys.stderr)  # stdout stays pure JSON (for jq and scripts)
    return 0
