"""Downstream tasks (paper §4): one module each, exposing a ``TASK`` object (see DEVELOPERS.md).

`TASKS` maps task names to ``module:attribute`` of their task object (imported on first use);
`DATASET_TASKS` says which task reads which annotation dataset.
"""

from __future__ import annotations

import importlib
from typing import Any

from hero.errors import HeroError

TASKS: dict[str, str] = {
    "vcmr": "hero.tasks.retrieval:VCMR",
    "vr": "hero.tasks.retrieval:VR",
    "video_qa": "hero.tasks.video_qa:TASK",
    "violin": "hero.tasks.violin:TASK",
    "tvc": "hero.tasks.captioning:TASK",
}

DATASET_TASKS: dict[str, str] = {
    "tvr": "vcmr", "how2r": "vcmr", "didemo": "vcmr",
    "msrvtt": "vr",
    "tvqa": "video_qa", "how2qa": "video_qa",
    "violin": "violin",
    "tvc": "tvc",
}


def get_task(name: str) -> Any:
    """The ``TASK`` object of a task name (or of a dataset name, via `DATASET_TASKS`)."""
    name = DATASET_TASKS.get(name, name)
    if name not in TASKS:
        raise HeroError(f"unknown task {name!r}; choose one of {sorted(TASKS)} "
                        f"(or a dataset: {sorted(DATASET_TASKS)})")
    module, attr = TASKS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def check_dataset(task: Any, dataset: str) -> None:
    """A `HeroError` naming the mismatch when ``task`` does not read ``dataset`` (a VCMR model given
    ``tvqa`` would otherwise fail on a missing annotation key)."""
    if dataset not in task.datasets:
        other = DATASET_TASKS.get(dataset)
        hint = f" ({dataset} is read by task {other})" if other else ""
        raise HeroError(f"model task {task.name} reads datasets {', '.join(task.datasets)}; got {dataset}{hint}")


def prediction_suffix(task: Any) -> str:
    """The file suffix of the task's prediction files (``.jsonl`` for TVC, else ``.json``)."""
    return getattr(task, "prediction_suffix", ".json")


def write_task_predictions(task: Any, predictions: Any, path: Any, cfg: Any = None) -> None:
    """Write predictions in the task's official format, atomically, through the task's own writer
    (the one `hero predict` uses), so that `hero eval` reads what fine-tuning writes."""
    import inspect

    writer = getattr(task, "write_predictions", None)
    if writer is None:
        from hero.io import write_json_atomic

        write_json_atomic(path, predictions)
    elif len(inspect.signature(writer).parameters) >= 3:  # writers that take the task settings
        writer(predictions, path, cfg)
    else:
        writer(predictions, path)


def task_of_model(architecture: str) -> Any:
    """The ``TASK`` whose model class is named ``architecture`` (from a checkpoint's config.json)."""
    for name in TASKS:
        try:
            task = get_task(name)
        except ImportError:
            continue
        if task.model_class.__name__ == architecture:
            return task
    raise HeroError(f"no task has the model class {architecture!r}")
