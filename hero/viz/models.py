"""Load any saved model of the package (pre-training or a downstream task) for inspection."""

from __future__ import annotations

from pathlib import Path

from torch import nn


def load_any_model(directory: str | Path) -> nn.Module:
    """The model saved in ``directory`` (a model dir, a checkpoint or a run dir), in eval mode.

    Every model of the package holds the backbone as ``.hero``; figures only use that and, for
    retrieval figures, the task's own inference.
    """
    from hero.model.checkpoint import read_config, resolve_model_dir

    directory = resolve_model_dir(directory)
    architecture = read_config(directory).get("architecture")
    if architecture == "HeroForPretraining":
        from hero.objectives import HeroForPretraining

        return HeroForPretraining.from_pretrained(directory).eval()
    from hero.tasks.load import load_task_model

    return load_task_model(directory)[2].eval()
