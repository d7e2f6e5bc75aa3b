"""Small experiments on the synthetic corpus: pre-train, fine-tune, compare (quickstart, ablations).

Each function runs one ordinary `hero pretrain` / `hero finetune` recipe (the same code paths as
the CLI, with configs built in code) in its own run directory, so every experiment leaves the
usual logs, curves, checkpoints and resolved configs behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hero.io import claim_output_dir, write_json_atomic
from hero.train.config import ModelSpec, OptimConfig, TrainConfig


@dataclass
class Budget:
    """Sizes of a miniature experiment (defaults: the quickstart's, about 4 minutes on 2 cores)."""

    preset: str = "hero-small"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    pretrain_steps: int = 2000
    pretrain_batch: int = 16
    pretrain_lr: float = 2e-3
    finetune_steps: dict[str, int] = field(default_factory=lambda: {t.name: t.demo.steps for t in demo_tasks()})
    finetune_batch: int = 16
    finetune_lr: float = 5e-4
    threads: int = 0
    """torch CPU threads per run (0: torch's default)."""
    jobs: int = 2
    """Fine-tuning runs executed at the same time (each with one thread when > 1)."""
    task_configs: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        t.name: dict(t.demo.task_config) for t in demo_tasks() if t.demo.task_config})
    """Task settings (`task_config` of a fine-tuning run) that differ from the reference's."""
    lr_mul: dict[str, float] = field(default_factory=lambda: {t.name: t.demo.lr_mul for t in demo_tasks()
                                                              if t.demo.lr_mul != 1.0})
    """Learning-rate multiplier of the task heads per task (`optim.lr_mul`; default 1). QA and VIOLIN
    use the reference's (their heads start from scratch)."""


def demo_tasks() -> list[Any]:
    """The registered tasks that say how to run them on the synthetic corpus (``TaskSpec.demo``)."""
    from hero.tasks import all_tasks

    return [t for t in all_tasks() if t.demo is not None]


def demo_of(task: str) -> Any:
    """The ``demo`` metadata of a registered task (`hero.tasks.spec.Demo`)."""
    from hero.tasks import get_task

    demo = get_task(task).demo
    if demo is None:
        from hero.errors import HeroError

        raise HeroError(f"task {task!r} has no synthetic-corpus demo (TaskSpec.demo)")
    return demo


def __getattr__(name: str) -> Any:
    # read off the task registry on first use (it imports the task modules)
    if name == "TASK_DATASETS":  # the dataset of the synthetic corpus each quickstart task is evaluated on
        return {t.name: t.demo.dataset for t in demo_tasks() if t.demo.quickstart}
    if name == "HEADLINE":  # headline metrics of each task: (key in the task's metrics, label)
        return {t.name: list(t.demo.headline) for t in demo_tasks()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _quiet(*_: Any) -> None:
    return None


@contextlib.contextmanager
def _console_to(run_dir: Path):
    """Send a run's console output (engine messages) to ``run_dir/console.log`` instead of the terminal."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "console.log", "a") as f, contextlib.redirect_stdout(f):
        yield


def _train(steps: int, batch: int, seed: int, threads: int, save_every: int | None = None) -> TrainConfig:
    return TrainConfig(num_train_steps=steps, batch_size=batch, precision="fp32", seed=seed, num_workers=0,
                       device="cpu", threads=threads, save_every=save_every or steps, keep_last=1, progress=False)


def fresh_dir(path: Path, command: str = "experiment") -> Path:
    """An empty output directory of ``command`` (see `hero.io.claim_output_dir`).

    Runs never mix: an earlier output of the same command there (it carries hero's marker file) is
    removed. Any other non-empty directory is refused with a `HeroError`, never deleted.
    """
    return claim_output_dir(path, command)


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
    with _console_to(run_dir):
        return run_pretrain(config, log=log)


def finetune(run_dir: Path, corpus: Path, budget: Budget, *, task: str, init: Path | None, seed: int = 0,
             backbone: str = "hero", eval_split: str = "val", task_config: dict[str, Any] | None = None,
             log: Callable[..., None] = _quiet) -> dict[str, Any]:
    """Fine-tune ``task`` from ``init`` (None: from scratch) and return the metrics on ``eval_split``."""
    from hero.train.finetune import FinetuneConfig, run_finetune

    steps = budget.finetune_steps[task]
    config = FinetuneConfig(
        output_dir=str(fresh_dir(run_dir)), task=task, dataset=demo_of(task).dataset, corpus=str(corpus),
        eval_split=eval_split,
        model=ModelSpec(preset=budget.preset, overrides={**budget.model_overrides, "backbone": backbone},
                        init=None if init is None else str(init)),
        task_config={**budget.task_configs.get(task, {}), **(task_config or {})},
        optim=OptimConfig(lr=budget.finetune_lr, warmup_steps=max(1, steps // 10), lr_mul=budget.lr_mul.get(task, 1.0)),
        train=_train(steps, budget.finetune_batch, seed, budget.threads),
    )
    with _console_to(run_dir):
        return run_finetune(config, log=log)


def baseline(corpus: Path, budget: Budget, *, task: str, seed: int = 0, eval_split: str = "val") -> dict[str, Any]:
    """What a model gets without learning the task, on ``eval_split``.

    Captioning: the most frequent training caption for every clip (a trivial baseline that already
    scores on n-gram metrics). Every other task: an untrained model of the same size (random
    weights), which scores chance.
    """
    import torch

    from hero.data.corpus import Corpus
    from hero.tasks import get_task
    from hero.tasks.load import task_settings
    from hero.train.finetune import build_task_model

    c = Corpus(corpus)
    t = get_task(task)
    dataset = demo_of(task).dataset
    cfg = task_settings(t, budget.task_configs.get(task, {}))
    if task == "tvc":
        from collections import Counter

        counts = Counter(cap["desc"] for rec in c.annotations(dataset, "train") for cap in rec["captions"])
        common = counts.most_common(1)[0][0]
        preds = [{"vid_name": r["vid"], "clip_id": r["clip_id"], "ts": r["ts"], "descs": [{"desc": common}]}
                 for r in c.annotations(dataset, eval_split)]
    else:
        spec = ModelSpec(preset=budget.preset, overrides=dict(budget.model_overrides))
        torch.manual_seed(seed)
        model = build_task_model(t, cfg, spec, c).eval()
        with torch.no_grad():
            preds = t.predict(model, c, dataset, eval_split, cfg, 32, torch.device("cpu"))
    return t.evaluate(preds, c, dataset, eval_split, cfg)


def _job(args: tuple) -> Any:
    fn, run_dir, corpus, budget, kwargs = args
    return {"pretrain": pretrain, "finetune": finetune, "baseline": lambda r, c, b, **k: baseline(c, b, **k)}[fn](
        run_dir, corpus, budget, **kwargs)


def run_many(kind: str, jobs: Sequence[tuple[Path, Path, Budget, dict[str, Any]]], workers: int) -> list[Any]:
    """Run independent `pretrain` or `finetune` calls (``kind``), ``workers`` at a time in processes.

    Tiny models do not scale over threads, so two one-thread runs side by side use two cores far
    better than one two-thread run. Each job is ``(run_dir, corpus, budget, keyword arguments)``;
    results come back in job order.
    """
    if workers <= 1 or len(jobs) <= 1:
        return [_job((kind, *j)) for j in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    one_thread = [(kind, r, c, dataclasses.replace(b, threads=1), k) for r, c, b, k in jobs]
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_job, one_thread))


def finetune_many(jobs: Sequence[tuple[Path, Path, Budget, dict[str, Any]]], workers: int) -> list[dict[str, Any]]:
    """`run_many` of `finetune` jobs."""
    return run_many("finetune", jobs, workers)


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
    for key, label in demo_of(task).headline:
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
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_json_atomic(path, obj, indent=2)
