"""``hero finetune --config configs/finetune/NAME.yaml [key=value ...]``.

Fine-tunes (or resumes) a downstream task; evaluates on ``eval_split`` every ``train.eval_every``
steps and at the end. Many processes: ``torchrun --nproc-per-node G -m hero finetune --config ...``.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML run config (configs/finetune/*.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. model.init=runs/pretrain-tiny train.num_train_steps=200")
    p.add_argument("--print-config", action="store_true",
                   help="check the config (corpus, model, init weights) as a run would, print it resolved, exit")


def run(args: argparse.Namespace) -> int:
    from hero.commands._runtime import bound_onednn_cache

    bound_onednn_cache()  # before torch: oneDNN reads it once
    from hero.train.config import dump_config, load_config
    from hero.train.finetune import FinetuneConfig, check_finetune, run_finetune

    config = load_config(FinetuneConfig, args.config, args.overrides)
    if args.print_config:
        check_finetune(config)
        print(dump_config(config), end="")
        return 0
    # the main metrics were printed as a table by the run; all of them are in metrics.json
    run_finetune(config)
    return 0
