"""Small experiments on the synthetic corpus: pre-train, fine-tune, compare (quickstart, ablations).

Each function runs one ordinary `hero pretrain` / `hero finetune` recipe (the same code paths as
the CLI, with configs built in code) in its own run directory, so every experiment leaves the
usual logs, curves, checkpoints and resolved configs behind.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hero.train.config import ModelSpec, OptimConfig, TrainConfig


@dataclass
class Budget:
    """Sizes of a miniature experiment (defaults: the quickstart's, about 4 minutes on 2 cores)."""

    preset: str = "hero-tiny"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    pretrain_steps: int = 400
    pretrain_batch: int = 16
    pretrain_lr: float = 1e-3
    finetune_steps: dict[str, int] = field(default_factory=lambda: {"vcmr": 200, "video_qa": 150, "violin": 150,
                                                                     "tvc": 150})
    finetune_batch: int = 16
    finetune_lr: float = 5e-4
    threads: int = 0
    """torch CPU threads per run (0: torch's default)."""


# The datasets of the synthetic corpus each task is evaluated on.
TASK_DATASETS = {"vcmr": "tvr", "video_qa": "tvqa", "violin": "violin", "tvc": "tvc"}

# Headline metric of each task: (key in the task's metrics, label).
HEADLINE = {
    "vcmr": [("VCMR/0.7-r1", "VCMR R@1 (IoU 0.7)"), ("VCMR/0.7-r10", "VCMR R@10 (IoU 0.7)"),
             ("VR/r1", "VR R@1")],
    "video_qa": [("accuracy", "QA accuracy")],
    "violin": [("accuracy", "VIOLIN accuracy")],
    "tvc": [("CIDEr", "TVC CIDEr-D"), ("Bleu_4", "TVC BLEU@4")],
}


def _quiet(*_: Any) -> None:
    return None


def _train(steps: int, batch: int, seed: int, threads: int, save_every: int | None = None) -> TrainConfig:
    return TrainConfig(num_train_steps=steps, batch_size=batch, precision="fp32", seed=seed, num_workers=0,
                       device="cpu", threads=threads, save_every=save_every or steps, keep_last=1, progress=False)


def fresh_dir(path: Path) -> Path:
    """An empty run directory (our own earlier output there is removed: runs never mix)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def pretrain(run_dir: Path, corpus: Path, budget: Budget, *, mix: dict[str, float], seed: int = 0,
             backbone: str = "hero", log: Callable[..., None] = _quiet) -> Path:
    """Pre-train a small model on ``corpus``; returns its model directory."""
    from hero.train.pretrain import DataSpec, PretrainConfig, run_pretrain

    steps = budget.pretrain_steps
    config = PretrainConfig(
        output_dir=str(fresh_dir(run_dir)),
        data=DataSpec(corpora=[str(corpus)], videos="exclude-eval"),
        model=ModelSpec(preset=budget.preset, overrides={**budget.model_overrides, "backbone": backbone}),
        mix=dict(mix),
        optim=OptimConfig(lr=budget.pretrain_lr, warmup_steps=max(1, steps // 10)),
        train=_train(steps, budget.pretrain_batch, seed, budget.threads),
    )
    return run_pretrain(config, log=log)


def finetune(run_dir: Path, corpus: Path, budget: Budget, *, task: str, init: Path | None, seed: int = 0,
             backbone: str = "hero", eval_split: str = "val", task_config: dict[str, Any] | None = None,
             log: Callable[..., None] = _quiet) -> dict[str, Any]:
    """Fine-tune ``task`` from ``init`` (None: from scratch) and return the metrics on ``eval_split``."""
    from hero.train.finetune import FinetuneConfig, run_finetune

    steps = budget.finetune_steps[task]
    config = FinetuneConfig(
        output_dir=str(fresh_dir(run_dir)), task=task, dataset=TASK_DATASETS[task], corpus=str(corpus),
        eval_split=eval_split,
        model=ModelSpec(preset=budget.preset, overrides={**budget.model_overrides, "backbone": backbone},
                        init=None if init is None else str(init)),
        task_config=dict(task_config or {}),
        optim=OptimConfig(lr=budget.finetune_lr, warmup_steps=max(1, steps // 10)),
        train=_train(steps, budget.finetune_batch, seed, budget.threads),
    )
    return run_finetune(config, log=log)


def flatten_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested metric dicts as ``{"VCMR/0.7-r10": value, ...}`` (numbers only)."""
    flat: dict[str, float] = {}
    for k, v in metrics.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            flat.update(flatten_metrics(v, key + "/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            flat[key] = float(v)
    return flat


def headline(task: str, metrics: dict[str, Any]) -> dict[str, float]:
    """The headline metrics of a task, by label."""
    flat = flatten_metrics(metrics)
    out = {}
    for key, label in HEADLINE[task]:
        if key not in flat:
            raise KeyError(f"{task} metrics lack {key!r}; have {sorted(flat)[:20]}")
        out[label] = flat[key]
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)


def replace_budget(budget: Budget, **changes: Any) -> Budget:
    return dataclasses.replace(budget, **changes)
