"""Run configuration: typed dataclasses filled from YAML files and ``key=value`` overrides.

The dataclasses are the schema: every field has a default and a docstring; a YAML file lists only
what differs; ``a.b=value`` overrides on the command line come last. Unknown keys and values of
the wrong type are errors naming the file (or override) and the key. The resolved config is
written with the run (``config.yaml``) and alone reproduces it.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hero.config import convert_value, from_dict, to_dict
from hero.errors import HeroError, SettingError, check_settings


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then linear decay (reference ``optim/``)."""

    lr: float = 3e-5
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.01
    """Not applied to biases and LayerNorm parameters."""
    warmup_steps: int = 10000
    schedule: str = "linear"
    """``linear``: ``lr·s/warmup`` then ``lr·(T−s)/(T−warmup)`` (reference); ``constant`` after warm-up."""
    grad_norm: float = 1.0
    """Clip the global gradient norm to this; 0 disables clipping."""
    lr_mul: float = 1.0
    """Learning-rate multiplier of the parameters outside the backbone (task heads)."""

    def __post_init__(self) -> None:
        if self.schedule not in ("linear", "constant"):
            raise SettingError("schedule", "'linear' or 'constant'", self.schedule, "optim")
        check_settings(self, "optim", lr=">0", eps=">0", weight_decay=">=0", warmup_steps=">=0",
                       grad_norm=">=0 (0: no clipping)", lr_mul=">0")
        for i, beta in enumerate(self.betas):
            if not 0 <= beta < 1:
                raise SettingError(f"betas[{i}]", "in [0, 1)", beta, "optim")


@dataclass
class TrainConfig:
    """The loop: length, batch, precision, logging and checkpoints."""

    num_train_steps: int = 100000
    """Optimizer steps."""
    batch_size: int = 32
    """Items (clips for pre-training) per process and micro-batch."""
    grad_accum_steps: int = 1
    grad_accum_reduction: str = "mean"
    """``mean`` averages micro-batch gradients; ``sum`` adds them (the reference's behaviour, which
    scales the effective learning rate with the number of micro-batches)."""
    precision: str = "fp32"
    """``fp32``, ``bf16`` (autocast, CPU or GPU) or ``fp16`` (autocast + gradient scaler, GPU only)."""
    seed: int = 77
    num_workers: int = 2
    """DataLoader worker processes per rank (0 = collate in the training process)."""
    device: str = "auto"
    """``auto`` (CUDA when available, one GPU per local rank), ``cpu`` or ``cuda``."""
    threads: int = 0
    """CPU threads for torch (0 = torch's default)."""
    log_every: int = 1
    """Write a log record every this many steps (each step trains one objective, so 1 keeps every
    objective's curve complete)."""
    save_every: int = 1000
    """Write a resumable checkpoint every this many optimizer steps (and at the end)."""
    keep_last: int = 3
    """Checkpoints kept on disk (older ones are deleted once a newer one is complete)."""
    eval_every: int = 0
    """Evaluate every this many steps (0: only at the end, when the run has an evaluation)."""
    progress: bool = True
    """Show a progress bar (rank 0) when stderr is a terminal."""
    progress_every: float = 30.0
    """Seconds between progress lines (step, loss, throughput, ETA) written to stderr when no bar
    is shown: stderr is not a terminal (nohup, SLURM, ``| tee``) or ``progress`` is off. 0: never.
    The environment variable ``HERO_PROGRESS_EVERY`` overrides it."""
    compile: bool = False
    """``torch.compile`` the model (GPU runs; the dynamic shapes of subtitle packing recompile often)."""

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise SettingError("precision", "fp32, bf16 or fp16", self.precision, "train")
        if self.grad_accum_reduction not in ("mean", "sum"):
            raise SettingError("grad_accum_reduction", "'mean' or 'sum'", self.grad_accum_reduction, "train")
        if self.device not in ("auto", "cpu", "cuda"):
            raise SettingError("device", "auto, cpu or cuda", self.device, "train")
        check_settings(self, "train", num_train_steps=">=1", batch_size=">=1", grad_accum_steps=">=1",
                       seed=">=0", num_workers=">=0 (0: no worker process)", threads=">=0 (0: torch's default)",
                       log_every=">=1", save_every=">=1", keep_last=">=1",
                       eval_every=">=0 (0: only at the end)", progress_every=">=0 (0: never)")


@dataclass
class ModelSpec:
    """Which model to build and how to initialise it."""

    preset: str = "hero-base"
    """A `hero.config.PRESETS` name."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """`HeroConfig` fields to change. ``vfeat_dim`` and the vocabulary sizes are taken from the
    corpus (feature store and tokenizer) unless given here."""
    init: str | None = None
    """``None`` (random, reference initialisation), a directory saved by ``save_pretrained`` or a
    training checkpoint (e.g. a pre-training run's), ``reference:FILE`` (a reference ``.pt``), or
    ``roberta:DIR_OR_NAME`` (a Hugging Face RoBERTa, as the reference pre-training starts)."""


# ---------------------------------------------------------------------------------------------
# Loading (the typed dict-to-dataclass loader itself is `hero.config.from_dict`)
# ---------------------------------------------------------------------------------------------


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply ``a.b.c=value`` to a nested dict (the value is parsed as YAML)."""
    if "=" not in override:
        raise HeroError(f"override {override!r}: expected key=value (e.g. optim.lr=1e-4)")
    key, raw = override.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise HeroError(f"override {override!r}: empty key component")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise HeroError(f"override {override!r}: cannot parse value ({_yaml_problem(err)[1]})") from None
    node = data
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise HeroError(f"override {override!r}: {p!r} is not a mapping")
        node = nxt
    node[parts[-1]] = value


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise HeroError(f"{path}: no such config file")
    from hero.io import read_text

    try:
        data = yaml.safe_load(read_text(path))
    except yaml.YAMLError as err:
        line, problem = _yaml_problem(err)
        raise HeroError(f"{path}{f':{line}' if line else ''}: invalid YAML ({problem})") from None
    except RecursionError:
        raise HeroError(f"{path}: invalid YAML (nested too deeply)") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        got = "a list" if isinstance(data, list) else f"a single value ({str(data)[:40]!r})"
        raise HeroError(f"{path}: the top level must be a mapping of keys to values, got {got}")
    return data


def _yaml_problem(err: yaml.YAMLError) -> tuple[int | None, str]:
    """``(line, what is wrong)`` of a YAML error in one line (PyYAML's own text spans several,
    with the offending source line and a caret)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None)
    if mark is None or not problem:
        return None, " ".join(str(err).split())
    text = f"{problem} at column {mark.column + 1}"
    context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and context_mark is not None:
        text += f"; {context} that starts at line {context_mark.line + 1} column {context_mark.column + 1}"
    return mark.line + 1, text


def check_override(cls: type, override: str) -> None:
    """Check one ``a.b=value`` override against the schema ``cls`` alone: an unknown key, a value
    of the wrong type or out of range is an error naming the override (not the YAML file)."""
    key, raw = override.split("=", 1)
    parts = key.strip().split(".")
    value = yaml.safe_load(raw)
    tp, path = cls, []
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(tp):
            return  # inside a free-form mapping (mix, task_config, model.overrides): checked later
        known = {f.name for f in dataclasses.fields(tp)}
        where = ".".join(path) or "config"
        if part not in known:
            raise HeroError(f"override {override!r}: unknown key {'.'.join(path + [part])!r}; "
                            f"known keys of {where}: {', '.join(sorted(known))}")
        if i == len(parts) - 1:
            try:
                from_dict(tp, {part: value}, where=".".join(path))
            except HeroError as err:
                raise HeroError(f"override {override!r}: {err}") from None
            return
        inner = typing.get_type_hints(tp)[part]
        if typing.get_origin(inner) in (dict,):
            # a mapping of free keys: the value type of its entries is known
            if i == len(parts) - 2:
                try:
                    convert_value(value, (typing.get_args(inner) or (Any, Any))[1], ".".join(path + [part, parts[-1]]))
                except HeroError as err:
                    raise HeroError(f"override {override!r}: {err}") from None
            return
        tp, path = inner, path + [part]


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] = ()) -> Any:
    """Dataclass ``cls`` from defaults ← YAML file ← ``key=value`` overrides.

    A bad override is reported as that override; anything else wrong is reported with the file
    and the key.
    """
    data = read_yaml(path) if path is not None else {}
    for o in overrides:
        apply_override(data, o)
        check_override(cls, o)
    return from_dict(cls, data, where=str(path) if path is not None else "config")


def dump_config(obj: Any) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False)
