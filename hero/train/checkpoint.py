"""Resumable training checkpoints: safetensors and JSON, written atomically, the last N kept.

Layout of a run directory::

    RUN/checkpoints/step-00001000/
        config.json, model.safetensors   the model (our format: `from_pretrained` loads it)
        optimizer.safetensors            every optimizer state tensor, keyed ``state.{param}.{name}``
        rng.safetensors                  the torch (and CUDA) RNG state of every rank
        trainer_state.json               step, optimizer param groups, gradient-scaler state
    RUN/checkpoints/latest               name of the newest complete checkpoint

A checkpoint is written into a temporary sibling directory, flushed, and renamed into place; only
then does ``latest`` move (itself replaced atomically) and older checkpoints get pruned. A run
killed at any moment (SIGKILL included) therefore leaves ``latest`` naming a complete checkpoint.
The data position is the step: batches are a pure function of (seed, step), see `hero.train.data`.
Nothing is pickled.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hero.errors import HeroError
from hero.io import publish_dir, read_json, write_text_atomic, writing

# latest_checkpoint and resolve_model_dir live beside the model format; re-exported for the engine
from hero.model.checkpoint import (  # noqa: F401
    LATEST,
    latest_checkpoint,
    read_safetensors,
    resolve_model_dir,
    write_model_files,
)

FORMAT = "hero-train-state"
FORMAT_VERSION = 1
# Names this module gives the entries of RUN/checkpoints (nothing else there is ever removed).
_STEP_DIR = re.compile(r"step-\d{8}")
_STEP_TMP = re.compile(r"\.step-\d{8}\.tmp-\d+")


def step_name(step: int) -> str:
    return f"step-{step:08d}"


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Split an optimizer state dict into flat tensors and JSON-able parameter groups."""
    sd = optimizer.state_dict()
    tensors = {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if not isinstance(value, torch.Tensor):
                value = torch.tensor(value)
            tensors[f"state.{pid}.{key}"] = value.detach().to("cpu").contiguous()
    return tensors, sd["param_groups"]


def optimizer_state_dict(tensors: dict[str, torch.Tensor], groups: list[dict]) -> dict:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": groups}


def save_checkpoint(run_dir: str | Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scaler_state: dict | None, rng_states: list[dict[str, torch.Tensor]], keep_last: int,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write checkpoint ``step`` (rank 0 only), move ``latest`` to it, prune to ``keep_last``.

    Args:
        rng_states: one dict per rank (``{"cpu": ByteTensor, "cuda": ByteTensor?}``), in rank order.
    """
    from safetensors.torch import save_file

    root = Path(run_dir) / "checkpoints"
    final = root / step_name(step)
    with writing(final):
        root.mkdir(parents=True, exist_ok=True)
        _write_checkpoint(root, final, step, model, optimizer, scaler_state, rng_states, extra, save_file)
        write_text_atomic(root / LATEST, final.name + "\n", mkdir=False, fsync=True)
    prune(root, keep_last)
    return final


def _write_checkpoint(root: Path, final: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                      scaler_state: dict | None, rng_states: list[dict[str, torch.Tensor]],
                      extra: dict[str, Any] | None, save_file: Any) -> None:
    """Write the checkpoint into a temporary sibling of ``final`` and rename it into place."""
    tmp = root / f".{step_name(step)}.tmp-{os.getpid()}"
    if tmp.exists():  # a dead run of the same pid left it (our own name, see `_STEP_TMP`)
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        write_model_files(model, tmp, metadata={"training_step": step})
        opt_tensors, groups = optimizer_tensors(optimizer)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        rng = {f"rank{r}.{k}": v.contiguous() for r, st in enumerate(rng_states) for k, v in st.items()}
        save_file(rng, str(tmp / "rng.safetensors"))
        state = {"format": FORMAT, "format_version": FORMAT_VERSION, "step": step,
                 "world_size": len(rng_states), "param_groups": groups, "scaler": scaler_state,
                 **(extra or {})}
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2) + "\n")
        # a previous run may have died after renaming but before moving `latest`: that one is replaced
        if final.exists() and not (final / "trainer_state.json").is_file():
            raise HeroError(f"{final}: exists and is not a checkpoint of this run; move it away to continue")
        publish_dir(tmp, final, how="move it away to continue", fsync=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def prune(root: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` complete checkpoints and stale temporary dirs.

    Only entries named as this module names them (``step-NNNNNNNN`` holding ``trainer_state.json``,
    ``.step-NNNNNNNN.tmp-PID``) are candidates: a user's ``step-best`` copy is left alone.
    """
    done = sorted(p for p in root.iterdir() if _STEP_DIR.fullmatch(p.name) and p.is_dir() and not p.is_symlink()
                  and (p / "trainer_state.json").is_file())
    for old in done[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.iterdir():
        if _STEP_TMP.fullmatch(stale.name) and stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)


def load_trainer_state(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    state = read_json(path / "trainer_state.json", expect=dict)
    if state.get("format") != FORMAT or state.get("format_version", 0) > FORMAT_VERSION:
        raise HeroError(f"{path}: not a training checkpoint this version can read")
    return state


def load_optimizer(path: str | Path, optimizer: torch.optim.Optimizer, groups: list[dict]) -> None:
    tensors = read_safetensors(Path(path) / "optimizer.safetensors")
    try:
        optimizer.load_state_dict(optimizer_state_dict(tensors, groups))
    except (ValueError, KeyError) as err:
        raise HeroError(f"{path}: optimizer state does not fit this model/optimizer ({err})") from None


def load_rng(path: str | Path, rank: int) -> dict[str, torch.Tensor] | None:
    """This rank's saved RNG states, or None if the checkpoint has none for it."""
    tensors = read_safetensors(Path(path) / "rng.safetensors")
    prefix = f"rank{rank}."
    mine = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    return mine or None


def rng_state() -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
