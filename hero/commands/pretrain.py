"""``hero pretrain --config configs/pretrain/NAME.yaml [key=value ...]``.

Runs (or resumes) a pre-training run. Launch on many processes with torchrun:
``torchrun --nproc-per-node 8 -m hero pretrain --config ...`` (see docs/distributed.md).
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML run config (configs/pretrain/*.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. optim.lr=1e-4 train.num_train_steps=200")
    p.add_argument("--print-config", action="store_true",
                   help="check the config (corpus, model, init weights) as a run would, print it resolved, exit")


def run(args: argparse.Namespace) -> int:
    from hero.commands._runtime import bound_onednn_cache

    bound_onednn_cache()  # before torch: oneDNN reads it once
    from hero.train.config import dump_config, load_config
    from hero.train.pretrain import PretrainConfig, check_pretrain, run_pretrain

    config = load_config(PretrainConfig, args.config, args.overrides)
    if args.print_config:
        check_pretrain(config)
        print(dump_config(config), end="")
        return 0
    run_pretrain(config)
    return 0
