"""Task models from disk, for inference and further training: our saved models and reference
``.pt`` task checkpoints, with their task settings checked against the task's config dataclass.

* `task_settings`: a task's config dataclass from a dict (typed, unknown keys refused).
* `load_task_model`: a fine-tuned model saved in our format (a model directory, a training
  checkpoint or a run directory): ``(task, settings, model)``.
* `load_reference_task_model`: a reference task checkpoint (``hero convert``, ``hero predict``).
  The checkpoint file gives the weights; ``../log/model_config.json`` the sizes shapes cannot tell
  (attention heads, real vocabulary); ``../log/hps.json`` the task (when the keys do not) and the
  task settings the official evaluation ran with.

Nothing here trains: `hero.train` builds on these, never the reverse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hero.config import from_dict, merge_settings
from hero.errors import HeroError


def task_settings(task: Any, values: dict[str, Any], where: str = "task_config") -> Any:
    """``task.config_class`` from ``values``; a `HeroError` names ``where`` and the key."""
    try:
        return from_dict(task.config_class, values, where=where)
    except HeroError as err:
        text = str(err)
        raise HeroError(text if text.startswith(where) else f"{where}: {text}") from None


def load_task_model(directory: str | Path, task_overrides: dict[str, Any] | None = None):
    """A fine-tuned model saved by `hero finetune` (or any task checkpoint): ``(task, cfg, model)``.

    ``directory``: a model directory, a training checkpoint or a run directory
    (`hero.model.checkpoint.resolve_model_dir`); ``task_overrides`` win over the saved settings.
    """
    from hero.config import HeroConfig
    from hero.model.checkpoint import load_weights, read_config, resolve_model_dir
    from hero.tasks import task_of_model

    directory = resolve_model_dir(directory)
    meta = read_config(directory)
    task = task_of_model(meta["architecture"])
    cfg = task_settings(task, merge_settings(meta.get("task_config", {}), task_overrides or {}),
                        where=f"{directory}/config.json task_config")
    model = task.model_class(HeroConfig.from_dict(meta["config"]), cfg)
    load_weights(model, directory, strict=True)
    return task, cfg, model


# Backbone parts a reference task model may lack because that task never uses them: the reference
# QA, VIOLIN and TVC models have no query encoder.
_UNUSED_BY = {"video_qa": ("hero.q_encoder.",), "violin": ("hero.q_encoder.",), "tvc": ("hero.q_encoder.",)}


def load_reference_task_model(path: str | Path, task: str | None = None, overrides: dict[str, Any] | None = None,
                              num_attention_heads: int | None = None,
                              vocab_size: int | None = None) -> tuple[Any, Any, Any, str]:
    """``(task object, task settings, model, how the task was told)`` for a reference ``.pt`` file.

    Args:
        task: a task name or alias (``vcmr``, ``vr``, ``qa``, ``violin``, ``tvc``); None: detected
            (`hero.tasks.reference.reference_task_of`), an error when nothing tells it.
        overrides: task settings that win over the run's options.
        num_attention_heads, vocab_size: sizes shapes cannot tell, when ``log/model_config.json``
            is not beside the checkpoint (`hero.model.checkpoint.reference_config_for`).
    Raises:
        HeroError: the file is not a checkpoint, lacks the task's heads, or leaves model
            parameters unset.
    """
    from hero.model.checkpoint import load_reference_state_dict, read_reference_checkpoint, reference_config_for
    from hero.tasks import get_task
    from hero.tasks.reference import check_heads, read_hps, reference_task_of, reference_task_settings, task_name

    path = Path(path)
    state = read_reference_checkpoint(path)
    hps = read_hps(path)
    if task is None:
        name, how = reference_task_of(state, hps)
        if name is None:
            raise HeroError(f"{path}: cannot tell the task of this checkpoint ({how}); pass --task")
    else:
        name, how = task_name(task), "given"
    check_heads(state, name, str(path))
    task_obj = get_task(name)
    values = merge_settings(reference_task_settings(task_obj, hps), overrides or {})
    config = reference_config_for(path, state, num_attention_heads, vocab_size)
    if name == "tvc":
        import dataclasses

        from hero.tasks.captioning import reference_tvc_config

        sizes = reference_tvc_config(state, config, str(path))
        values = {**{f.name: getattr(sizes, f.name) for f in dataclasses.fields(sizes)
                     if f.name in ("num_layers", "num_attention_heads", "intermediate_size",
                                   "max_position_embeddings")}, **values}
    where = f"{path}: task settings (log/hps.json and the command line)"
    cfg = task_settings(task_obj, values, where=where)
    model = task_obj.model_class(config, cfg)
    report = load_reference_state_dict(model, state, source=str(path))
    unset = [k for k in report.missing if not k.startswith(_UNUSED_BY.get(name, ()))]
    if unset:
        raise HeroError(f"{path}: the checkpoint leaves {len(unset)} parameter(s) of the {name} model unset, "
                        f"e.g. {unset[:3]}")
    model.load_report = report
    return task_obj, cfg, model, how


__all__ = ["load_reference_task_model", "load_task_model", "task_settings"]
