"""Downstream tasks (paper §4): one module each, exposing a ``TASK`` registry entry
(`hero.tasks.spec.TaskSpec`, satisfying the `hero.tasks.spec.Task` protocol; DEVELOPERS.md).

`TASKS` maps task names to ``module:attribute`` of their entry (imported on first use): it is the
only table a new task edits. Everything else is read off the entries: `DATASET_TASKS` (which task
reads which annotation dataset), prediction suffixes and writers, the quickstart's datasets,
budgets and headline metrics (``TaskSpec.demo``).
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from hero.errors import HeroError

TASKS: dict[str, str] = {
    "vcmr": "hero.tasks.retrieval:VCMR",
    "vr": "hero.tasks.retrieval:VR",
    "video_qa": "hero.tasks.video_qa:TASK",
    "violin": "hero.tasks.violin:TASK",
    "tvc": "hero.tasks.captioning:TASK",
    "video_qa_open": "hero.tasks.open_qa:TASK",
}


def _load(name: str) -> Any:
    module, attr = TASKS[name].split(":")
    task = getattr(importlib.import_module(module), attr)
    if task.name != name:
        raise HeroError(f"hero.tasks.TASKS[{name!r}] names the entry of task {task.name!r}")
    return task


@cache
def dataset_tasks() -> dict[str, str]:
    """``{annotation dataset: task name}`` from the registry entries' ``datasets``."""
    out: dict[str, str] = {}
    for name in TASKS:
        for dataset in _load(name).datasets:
            if dataset in out:
                raise HeroError(f"dataset {dataset!r} is claimed by tasks {out[dataset]!r} and {name!r}")
            out[dataset] = name
    return out


def __getattr__(attr: str) -> Any:
    if attr == "DATASET_TASKS":  # computed on first use: it imports every task module
        return dataset_tasks()
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def get_task(name: str) -> Any:
    """The registry entry of a task name (or of a dataset name, via `DATASET_TASKS`)."""
    if name not in TASKS:
        name = dataset_tasks().get(name, name)
    if name not in TASKS:
        raise HeroError(f"unknown task {name!r}; choose one of {sorted(TASKS)} "
                        f"(or a dataset: {sorted(dataset_tasks())})")
    return _load(name)


def all_tasks() -> list[Any]:
    """Every registered task entry, in registry order."""
    return [_load(name) for name in TASKS]


def check_dataset(task: Any, dataset: str) -> None:
    """A `HeroError` naming the mismatch when ``task`` does not read ``dataset`` (a VCMR model given
    ``tvqa`` would otherwise fail on a missing annotation key)."""
    if dataset not in task.datasets:
        other = dataset_tasks().get(dataset)
        hint = f" ({dataset} is read by task {other})" if other else ""
        raise HeroError(f"model task {task.name} reads datasets {', '.join(task.datasets)}; got {dataset}{hint}")


def prediction_suffix(task: Any) -> str:
    """The file suffix of the task's prediction files (``.jsonl`` for TVC, else ``.json``)."""
    return task.prediction_suffix


def write_task_predictions(task: Any, predictions: Any, path: Any, cfg: Any = None) -> None:
    """Write predictions in the task's official format, atomically, through the task's own writer
    (the one `hero predict` uses), so that `hero eval` reads what fine-tuning writes. Retrieval's
    writer uses ``cfg`` (the run's NMS threshold)."""
    task.write_predictions(predictions, path, cfg)


def task_of_model(architecture: str) -> Any:
    """The ``TASK`` whose model class is named ``architecture`` (from a checkpoint's config.json)."""
    for name in TASKS:
        try:
            task = _load(name)
        except ImportError:
            continue
        if task.model_class.__name__ == architecture:
            return task
    raise HeroError(f"no task has the model class {architecture!r}")
