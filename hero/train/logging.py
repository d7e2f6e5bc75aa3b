"""What a run shows and records: a progress bar, ``log.jsonl`` and TensorBoard scalars (rank 0).

On a terminal a progress bar shows the run. Where stderr is not a terminal (nohup, SLURM,
``| tee``), or the bar is off, a progress line (step, loss, throughput, ETA) goes to stderr every
``train.progress_every`` seconds instead (``HERO_PROGRESS_EVERY`` overrides it; 0: never), so
logs hold no carriage-return frames. An evaluation prints a compact table of the main metrics;
the full set goes to ``log.jsonl``.

``log.jsonl`` holds one JSON object per logged optimizer step (``{"step", "objective", "loss",
<each loss term>, "lr", "grad_norm", "items_per_s", "time"}``) and one per evaluation
(``{"step", "eval": {...}}``). It is what `hero plot` draws. On resume, records of steps after
the resumed checkpoint are dropped first, so a run killed and resumed has one clean curve.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from hero.io import RUN_LOG_FILE as LOG_FILE
from hero.io import read_log as read_log  # its home is hero.io (figures read logs); re-exported
from hero.io import read_text, write_text_atomic


def truncate_log(path: Path, last_step: int) -> None:
    """Keep only records with ``step <= last_step`` (atomic rewrite)."""
    if not path.is_file():
        return
    kept = []
    for line in read_text(path).splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if isinstance(rec, dict) and rec.get("step", 0) <= last_step:
            kept.append(line)
    write_text_atomic(path, "".join(k + "\n" for k in kept))


class RunLogger:
    """Rank-0 logging; on other ranks every method is a no-op."""

    def __init__(self, run_dir: str | Path, enabled: bool, total_steps: int, start_step: int,
                 progress: bool = True, tensorboard: bool = True, progress_every: float = 30.0) -> None:
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self._file = None
        self._tb = None
        self._bar = None
        self._lines = None
        if not enabled:
            return
        bar = progress and (sys.stderr.isatty() or os.environ.get("HERO_PROGRESS") == "1")
        every = progress_interval(progress_every)
        if not bar and every > 0:
            self._lines = ProgressLines(self.run_dir.name or str(self.run_dir), total_steps, start_step, every)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        truncate_log(self.run_dir / LOG_FILE, start_step)
        self._file = open(self.run_dir / LOG_FILE, "a", buffering=1)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=start_step + 1)
            except ImportError:  # tensorboard is a dependency, but keep the run alive without it
                self._tb = None
        if bar:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True, file=sys.stderr)

    def step(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._file.write(json.dumps(record) + "\n")
        if self._tb is not None:
            obj = record.get("objective", "train")
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "time") and math.isfinite(value):
                    tag = f"{obj}/{key}" if key.endswith("loss") or key.startswith("loss") else f"train/{key}"
                    self._tb.add_scalar(tag, value, record["step"])
        if self._bar is not None:
            shown = {"obj": record.get("objective", ""), "loss": f"{record.get('loss', float('nan')):.4f}",
                     "it/s": f"{record.get('items_per_s', 0):.1f}"}
            self._bar.set_postfix(shown, refresh=False)
        if self._lines is not None:
            self._lines.record(record)

    def advance(self, n: int = 1, items: int = 0) -> None:
        """``n`` more optimizer steps done, over ``items`` training items."""
        if self._bar is not None:
            self._bar.update(n)
        if self._lines is not None:
            line = self._lines.advance(n, items)
            if line:
                print(line, file=sys.stderr, flush=True)

    def eval(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._file.write(json.dumps({"step": step, "eval": metrics}) + "\n")
        if self._tb is not None:
            for key, value in _flatten(metrics).items():
                if isinstance(value, (int, float)):
                    self._tb.add_scalar(f"eval/{key}", value, step)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None and not self._bar.disable:
            self._bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        if self._file is not None:
            self._file.close()


def progress_interval(configured: float) -> float:
    """Seconds between progress lines: ``HERO_PROGRESS_EVERY`` if set, else ``configured``."""
    raw = os.environ.get("HERO_PROGRESS_EVERY")
    if raw is None or raw.strip() == "":
        return float(configured)
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value >= 0):
        from hero.errors import HeroError

        raise HeroError(f"HERO_PROGRESS_EVERY must be a number of seconds >= 0 (0: never), got {raw!r}")
    return value


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


class ProgressLines:
    """A progress line every ``every`` seconds (the bar's replacement outside a terminal).

    ``name step 120/600 (20%): loss 2.3412 (mlm), 41.2 items/s, 2.58 steps/s, ETA 3m06s``; the
    rates are over the time since the previous line, the ETA uses the rate since the run (or its
    resumption) started.
    """

    def __init__(self, name: str, total: int, start: int, every: float, clock=time.monotonic) -> None:
        self.name, self.total, self.start, self.every, self.clock = name, total, start, every, clock
        self.step = start
        self.t_start = self.t_last = clock()
        self.step_last, self.items = start, 0
        self.last_record: dict[str, Any] = {}

    def record(self, record: dict[str, Any]) -> None:
        self.last_record = record

    def advance(self, n: int = 1, items: int = 0) -> str | None:
        """Count ``n`` steps; the line to print when ``every`` seconds have passed, else None."""
        self.step += n
        self.items += items
        now = self.clock()
        if now - self.t_last < self.every:
            return None
        dt, done = max(now - self.t_last, 1e-9), self.step - self.step_last
        rate = (self.step - self.start) / max(now - self.t_start, 1e-9)
        eta = (self.total - self.step) / rate if rate > 0 else float("inf")
        rec = self.last_record
        loss = rec.get("loss")
        parts = [f"{self.name} step {self.step}/{self.total} ({self.step / max(self.total, 1):.0%})"]
        stats = []
        if isinstance(loss, (int, float)):
            obj = rec.get("objective")
            stats.append(f"loss {loss:.4f}" + (f" ({obj}, step {rec.get('step')})" if obj else
                                               f" (step {rec.get('step')})"))
        stats.append(f"{self.items / dt:.1f} items/s")
        stats.append(f"{done / dt:.2f} steps/s")
        stats.append(f"ETA {_duration(eta) if math.isfinite(eta) else '?'}")
        self.t_last, self.step_last, self.items = now, self.step, 0
        return parts[0] + ": " + ", ".join(stats)


def metrics_table(metrics: dict[str, Any], max_groups: int = 6) -> str:
    """The main metrics of an evaluation in a few lines (the full set goes to ``log.jsonl``).

    Nested metrics are grouped by their first component (``VCMR/0.7-r1`` → group ``VCMR``);
    breakdowns (``*_by_*``) and repeated sets (``*_nms_*``) are left out; at most ``max_groups``
    group lines.
    """
    flat = {k: v for k, v in _flatten(metrics).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"}
    groups: dict[str, list[tuple[str, float]]] = {}
    for key, value in flat.items():
        group, _, name = key.rpartition("/")
        if "_by_" in group or "by_" in name or "_nms" in group:
            continue
        groups.setdefault(group, []).append((name, value))
    shown = 0
    lines = []
    for group, items in list(groups.items())[:max_groups]:
        shown += len(items)
        cells = "  ".join(f"{n} {v:.4g}" for n, v in items)
        lines.append(f"  {group + ':' if group else ''}{' ' if group else ''}{cells}")
    rest = len(flat) - shown
    if rest > 0:
        lines.append(f"  (+{rest} more metrics in log.jsonl)")
    return "\n".join(lines)


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = v
    return out
