"""``hero quickstart``: the main job (see `hero.quickstart`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="run folder")
    p.add_argument("--steps", type=int, default=70)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="hero-tiny")


def run(args: argparse.Namespace) -> int:
    from hero.quickstart import run as run_quickstart

    run_quickstart(args.out, steps=args.steps, seed=args.seed, preset=args.preset)
    return 0
