"""Reference task checkpoints: which task a ``model_step_*.pt`` of the official code holds, which
heads it must hold, and the task settings its run's options (``log/hps.json``) imply.

A reference run directory is ``<output_dir>/ckpt/model_step_N.pt`` with ``<output_dir>/log/``
holding ``model_config.json`` (sizes) and ``hps.json`` (training and evaluation options).
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

from hero.errors import HeroError
from hero.tasks import DATASET_TASKS, TASKS

TASK_ALIASES: dict[str, str] = {"qa": "video_qa", "videoqa": "video_qa", "caption": "tvc", "retrieval": "vcmr"}
"""Short task names the command line accepts (``hero predict --task qa``)."""

# Heads that only one reference task model has (notes §1.7). The retrieval heads are also in
# pre-training checkpoints, so they tell nothing.
_ONLY_IN: dict[str, tuple[str, ...]] = {
    "video_qa": ("qa_pool.", "qa_pred_head.", "st_ed_pool.", "st_ed_pred_head."),
    "violin": ("violin_pool.", "violin_pred_head."),
    "tvc": ("decoder.layer.", "emb_LayerNorm."),
}
_RETRIEVAL_HEADS = ("video_query_linear.", "video_st_predictor.", "video_ed_predictor.", "q_feat_attn.")

# reference option (hps.json) -> our task setting, for the options named otherwise
_OPTION_NAMES = {
    "ranking_loss_type": "ranking_loss",
    "vcmr_eval_batch_size": "query_batch_size",
    "vcmr_eval_video_batch_size": "video_batch_size",
    "hard_neg_weights": "hard_neg_weight",
    "hard_negtiave_start_step": "hard_negative_start_step",  # sic, the reference's spelling
    "full_eval_tasks": "tasks",
}

REFERENCE_VIDEO_BATCH_SIZE = 50
"""``vcmr_eval_video_batch_size`` of the released retrieval configs (``train-tvr-8gpu.json``)."""


def task_name(name: str) -> str:
    """A task name of `hero.tasks.TASKS` for a task, alias (``qa``) or dataset (``tvr``) name."""
    resolved = DATASET_TASKS.get(name, TASK_ALIASES.get(name, name))
    if resolved not in TASKS:
        raise HeroError(f"unknown task {name!r}; choose one of {sorted(TASKS)} or {sorted(TASK_ALIASES)}")
    return resolved


def read_hps(checkpoint: str | Path) -> dict[str, Any] | None:
    """``log/hps.json`` of the reference run a checkpoint file belongs to (two levels up), or None."""
    path = Path(checkpoint).resolve().parent.parent / "log" / "hps.json"
    if not path.is_file():
        return None
    from hero.io import read_json

    return read_json(path, expect=dict)


def reference_task_of(state: Any, hps: dict[str, Any] | None = None) -> tuple[str | None, str]:
    """The task of a reference checkpoint: ``(task name or None, how it was told)``.

    Heads only one task model has (QA, VIOLIN, TVC) decide; else the ``task`` of the run's options
    (``tvr`` → ``vcmr``, ``msrvtt`` → ``vr``, ...); else None: a pre-training checkpoint and a VCMR
    one hold the same keys.
    """
    found = [name for name, heads in _ONLY_IN.items() if any(str(k).startswith(heads) for k in state)]
    if len(found) > 1:
        raise HeroError(f"the checkpoint holds the heads of several tasks ({', '.join(found)}); pass the task")
    if found:
        return found[0], f"its {found[0]} head keys"
    dataset = (hps or {}).get("task")
    if isinstance(dataset, str) and dataset in DATASET_TASKS:
        return DATASET_TASKS[dataset], f"task {dataset!r} in log/hps.json"
    return None, "neither its keys nor a log/hps.json beside it tell the task"


def check_heads(state: Any, task: str, source: str) -> None:
    """A `HeroError` when the checkpoint lacks the heads of ``task`` (e.g. a pre-training checkpoint
    given as a QA model: its QA head would be random)."""
    heads = _RETRIEVAL_HEADS if task in ("vcmr", "vr") else _ONLY_IN.get(task, ())
    missing = [h for h in heads if not any(str(k).startswith(h) for k in state)]
    if missing:
        raise HeroError(f"{source}: not a {task} checkpoint: no {', '.join(h + '*' for h in missing)} keys "
                        f"(fine-tune it for {task} first)")


def reference_task_settings(task: Any, hps: dict[str, Any] | None) -> dict[str, Any]:
    """Task settings read off a reference run's options: every option naming a field of the task's
    config (directly or through the reference's other name); the one-element lists of the
    reference's hard-negative schedule give their element, longer schedules are left out.

    A retrieval checkpoint also gets the reference's corpus chunking (``video_batch_size`` 50 when
    the options do not say), so that its scores are those of the official evaluation.
    """
    fields = {f.name for f in dataclasses.fields(task.config_class)}
    # the retrieval settings hold the VSM objective's as a nested ``vsm`` block
    hints = typing.get_type_hints(task.config_class) if "vsm" in fields else {}
    nested = {f.name for f in dataclasses.fields(hints["vsm"])} if hints else set()
    out: dict[str, Any] = {}
    for key, value in (hps or {}).items():
        name = _OPTION_NAMES.get(key, key)
        if (name not in fields and name not in nested) or value is None:
            continue
        if name == "tasks":
            value = list(value) if isinstance(value, (list, tuple)) else value
        elif isinstance(value, list):
            if len(value) != 1:
                continue
            value = value[0]
        if name in nested:
            out.setdefault("vsm", {})[name] = value
        else:
            out[name] = value
    if "video_batch_size" in fields:
        out.setdefault("video_batch_size", REFERENCE_VIDEO_BATCH_SIZE)
        out.setdefault("vsm", {}).setdefault("span_padding", "reference")
    return out


__all__ = ["REFERENCE_VIDEO_BATCH_SIZE", "TASK_ALIASES", "check_heads", "read_hps", "reference_task_of",
           "reference_task_settings", "task_name"]
