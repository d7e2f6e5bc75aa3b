"""``hero quickstart``: the main job (see `hero.quickstart`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hero.argtypes import nonnegative_int, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("runs/quickstart"),
                   help="run folder: created, or replaced when an earlier `hero quickstart` made it; "
                   "any other non-empty folder is refused")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--pretrain-steps", type=positive_int, default=None,
                   help="pre-training steps (default: the quickstart's)")
    p.add_argument("--finetune-steps", type=positive_int, default=None, help="fine-tuning steps of every task")
    p.add_argument("--tasks", default="vcmr,video_qa,violin,tvc",
                   help="comma-separated tasks to fine-tune (vcmr, video_qa, violin, tvc)")


def run(args: argparse.Namespace) -> int:
    from hero.commands._runtime import bound_onednn_cache

    bound_onednn_cache()  # before torch: oneDNN reads it once
    from hero.errors import HeroError
    from hero.experiments import TASK_DATASETS, Budget
    from hero.quickstart import run as run_quickstart

    budget = Budget()
    if args.pretrain_steps is not None:
        budget.pretrain_steps = args.pretrain_steps
    if args.finetune_steps is not None:
        budget.finetune_steps = {t: args.finetune_steps for t in budget.finetune_steps}
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASK_DATASETS]
    if unknown:
        raise HeroError(f"--tasks: unknown task(s) {unknown}; choose from {sorted(TASK_DATASETS)}")
    run_quickstart(args.out, budget=budget, seed=args.seed, tasks=tasks)
    return 0
