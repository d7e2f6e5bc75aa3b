"""The task contract in code: the `Task` protocol every downstream task satisfies, and `TaskSpec`,
the registry entry that implements it and carries the task's metadata (DEVELOPERS.md, "Downstream
tasks" and "Adding a task").

A task module ends with one ``TASK = TaskSpec(...)`` (retrieval: one per task it serves) and
`hero.tasks.TASKS` names it; everything else (dataset → task lookup, the quickstart's datasets,
titles, budgets and headline metrics, the registry tests) is read off the entry.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from hero.data.protocol import CorpusLike
from hero.tasks.common import write_json_predictions


@runtime_checkable
class Task(Protocol):
    """What the fine-tuning engine, ``hero predict``, ``hero eval`` and the experiments call.

    ``corpus`` is a `hero.data.corpus.Corpus` (or anything with its read interface); ``cfg`` an
    instance of ``config_class``; ``items`` JSON-able training items of ``train_items``.
    """

    name: str
    datasets: tuple[str, ...]
    config_class: type
    model_class: type
    prediction_suffix: str

    def train_items(self, corpus: CorpusLike, dataset: str, split: str, cfg: Any) -> list: ...

    def collate(self, corpus: CorpusLike, items: Sequence[Any], cfg: Any, generator: torch.Generator | None) -> Any: ...

    def loss(self, model: torch.nn.Module, batch: Any, cfg: Any, step: int) -> dict[str, Any]: ...

    def predict(self, model: torch.nn.Module, corpus: CorpusLike, dataset: str, split: str, cfg: Any, batch_size: int,
                device: torch.device | str) -> Any: ...

    def write_predictions(self, predictions: Any, path: str | os.PathLike, cfg: Any) -> None: ...

    def evaluate(self, predictions: Any, corpus: CorpusLike, dataset: str, split: str,
                 cfg: Any) -> dict[str, float]: ...


@dataclass(frozen=True)
class Demo:
    """How the quickstart and the small experiments (`hero.experiments`) run a task on the synthetic
    corpus (`hero.data.synth`)."""

    dataset: str
    """Synthetic annotation dataset the task trains and is evaluated on."""
    title: str
    """Row label of the results table."""
    steps: int
    """Fine-tuning steps of the quickstart budget."""
    headline: tuple[tuple[str, str], ...]
    """``(metric key, label)`` of the metrics the results table shows."""
    lr_mul: float = 1.0
    """``optim.lr_mul`` of the quickstart budget."""
    task_config: dict[str, Any] = field(default_factory=dict, hash=False)
    """Task settings of the quickstart budget that differ from the task's defaults."""
    quickstart: bool = True
    """Part of ``hero quickstart`` (whose table must stay the same for the same seed)."""


@dataclass(frozen=True)
class TaskSpec:
    """A registry entry: the task's functions (`Task`) and its metadata.

    The functions are plain module functions; ``write_predictions`` always takes
    ``(predictions, path, cfg)``.
    """

    name: str
    datasets: tuple[str, ...]
    config_class: type
    model_class: type
    train_items: Callable[..., list]
    collate: Callable[..., Any]
    loss: Callable[..., dict[str, Any]]
    predict: Callable[..., Any]
    evaluate: Callable[..., dict[str, float]]
    write_predictions: Callable[[Any, str | os.PathLike, Any], None] = write_json_predictions
    prediction_suffix: str = ".json"
    """Suffix of prediction files (``.jsonl`` for TVC's official format)."""
    eval_kind: str | None = None
    """``hero eval KIND`` that scores the prediction files."""
    group_key: Callable[[Any], Any] | None = None
    """Items with the same key never share a global batch (retrieval: the video)."""
    encode_corpus: Callable[..., Any] | None = None
    demo: Demo | None = None
    """How the quickstart/experiments run it on the synthetic corpus; None: they do not."""


__all__ = ["Demo", "Task", "TaskSpec"]
