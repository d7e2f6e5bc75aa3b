"""``hero plot RUN_DIR [--out curves.png]``: loss curves of a run, one panel per objective."""

from __future__ import annotations

import argparse
from pathlib import Path

from hero.argtypes import nonnegative_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="a run directory (holds log.jsonl)")
    p.add_argument("--out", type=Path, default=None, help="PNG path (default RUN_DIR/loss_curves.png)")
    p.add_argument("--smooth", type=nonnegative_int, default=0, help="moving-average window in steps (0 = auto)")


def run(args: argparse.Namespace) -> int:
    from hero.viz.curves import plot_loss_curves

    out = plot_loss_curves(args.run_dir, args.out or args.run_dir / "loss_curves.png", smooth=args.smooth)
    print(f"wrote {out}")
    return 0
