"""Figures (matplotlib, PNG): loss curves, moment predictions, attention maps.

Every figure module draws with `pyplot()` and writes with `save_figure`, so all of them render
off-screen (Agg) and write their PNG atomically (a temporary sibling renamed into place; a full
disk is one `hero.io.DiskFullError`), and none leaves a figure open in matplotlib's registry.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the off-screen Agg backend (imported on first use: matplotlib is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, out: str | os.PathLike, dpi: int) -> Path:
    """Write ``fig`` to ``out`` as PNG, atomically, and close it (also when writing fails); returns ``out``."""
    from hero.io import write_file_atomic

    try:
        return write_file_atomic(out, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"), suffix=".tmp.png")
    finally:
        pyplot().close(fig)


__all__ = ["pyplot", "save_figure"]
