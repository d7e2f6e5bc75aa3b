"""Training curves from a run's ``log.jsonl``: one panel per objective, every loss term."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hero.errors import HeroError
from hero.viz import pyplot, save_figure


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    head = np.cumsum(values[: window - 1]) / np.arange(1, window)
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def loss_series(records: list[dict]) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """``{objective: {term: (steps, values)}}`` from training records (evaluation records skipped)."""
    out: dict[str, dict[str, tuple[list, list]]] = {}
    for rec in records:
        if "eval" in rec:
            continue
        obj = rec.get("objective", "train")
        for key, value in rec.items():
            if key.endswith("loss") and isinstance(value, (int, float)):
                steps, values = out.setdefault(obj, {}).setdefault(key, ([], []))
                steps.append(rec["step"])
                values.append(value)
    return {o: {k: (np.asarray(s), np.asarray(v)) for k, (s, v) in terms.items()} for o, terms in out.items()}


def plot_loss_curves(run_dir: str | Path, out: str | Path, smooth: int = 0) -> Path:
    """Draw every objective's loss terms against the step; writes ``out`` (PNG) atomically."""
    plt = pyplot()

    from hero.io import read_log

    series = loss_series(read_log(run_dir))
    if not series:
        raise HeroError(f"{run_dir}: the log holds no loss record yet")
    names = sorted(series)
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for term, (steps, values) in sorted(series[name].items()):
            window = smooth or max(1, len(values) // 20)
            ax.plot(steps, values, alpha=0.25, linewidth=0.8)
            ax.plot(steps, _smooth(values, window), label=term, color=ax.lines[-1].get_color())
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(f"training losses: {Path(run_dir).name}")
    fig.tight_layout()
    return save_figure(fig, out, dpi=110)
