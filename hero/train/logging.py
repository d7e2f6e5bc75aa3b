"""What a run shows and records: a progress bar, ``log.jsonl`` and TensorBoard scalars (rank 0).

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
from pathlib import Path
from typing import Any

from hero.io import json_problem, read_text, write_text_atomic

LOG_FILE = "log.jsonl"


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


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Records of a ``log.jsonl`` (a run directory or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / LOG_FILE
    if not path.is_file():
        from hero.errors import HeroError

        raise HeroError(f"{path}: no training log here")
    from hero.errors import HeroError

    out = []
    lines = read_text(path).splitlines()
    for i, line in enumerate(lines, 1):
        if line.strip():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                if i != len(lines):  # only the last line may be cut short
                    raise HeroError(f"{path}:{i}: invalid JSON ({json_problem(err, line)})") from None
                continue
            if not isinstance(rec, dict):
                raise HeroError(f"{path}:{i}: expected a JSON object, got {type(rec).__name__}")
            out.append(rec)
    return out


class RunLogger:
    """Rank-0 logging; on other ranks every method is a no-op."""

    def __init__(self, run_dir: str | Path, enabled: bool, total_steps: int, start_step: int,
                 progress: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self._file = None
        self._tb = None
        self._bar = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        truncate_log(self.run_dir / LOG_FILE, start_step)
        self._file = open(self.run_dir / LOG_FILE, "a", buffering=1)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=start_step + 1)
            except ImportError:  # tensorboard is a dependency, but keep the run alive without it
                self._tb = None
        if progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                             disable=not sys.stderr.isatty() and os.environ.get("HERO_PROGRESS") != "1",
                             file=sys.stderr)

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

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

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


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = v
    return out
