"""``hero ablate``: the paper's Tables 1 and 2 in miniature, over several seeds (see `hero.ablate`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hero.argtypes import positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("runs/ablate"),
                   help="run folder: created, or replaced when an earlier `hero ablate` made it; "
                   "any other non-empty folder is refused")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--tables", default="1,2", help="which tables: 1 (pre-training tasks), 2 (model design)")
    p.add_argument("--pretrain-steps", type=positive_int, default=None)
    p.add_argument("--finetune-steps", type=positive_int, default=None, help="fine-tuning steps of every task")


def _ints(text: str, what: str) -> list[int]:
    from hero.errors import HeroError

    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise HeroError(f"{what}: expected comma-separated integers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from hero.commands._runtime import bound_onednn_cache

    bound_onednn_cache()  # before torch: oneDNN reads it once
    from hero.ablate import run as run_ablation
    from hero.errors import HeroError
    from hero.experiments import Budget

    budget = Budget()
    if args.pretrain_steps is not None:
        budget.pretrain_steps = args.pretrain_steps
    if args.finetune_steps is not None:
        budget.finetune_steps = {t: args.finetune_steps for t in budget.finetune_steps}
    tables = _ints(args.tables, "--tables")
    if not tables or set(tables) - {1, 2}:
        raise HeroError(f"--tables: choose from 1 and 2, got {args.tables!r}")
    seeds = _ints(args.seeds, "--seeds")
    if not seeds:
        raise HeroError("--seeds: give at least one seed")
    run_ablation(args.out, seeds=seeds, budget=budget, tables=tables)
    return 0
