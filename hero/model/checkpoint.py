"""Checkpoints: our safetensors format, reference HERO checkpoints, and RoBERTa initialisation.

* **Our format** is a directory with ``config.json`` (architecture + `HeroConfig`) and
  ``model.safetensors``. It is loaded with ``from_pretrained(dir)``, never with pickle, and written
  atomically (temporary directory, then rename). ``config.json`` records the SHA-256 of the weights
  file (``weights_sha256``); loading checks it, so a corrupted file is an error, not NaN scores.
* **Reference checkpoints** (``linjieli222/HERO``: ``hero-tv-ht100.pt``, ``model_step_*.pt``,
  ``restore.pt``) are torch pickles of a flat state dict, fp16 under apex O2, with a non-tensor
  ``vocab_padded`` entry, ``pad`` buffers and possibly old ``gamma``/``beta`` LayerNorm names. They are
  read with ``torch.load(weights_only=True)`` and mapped through each model's prefix table
  (``REFERENCE_KEY_MAP``); the conversion reports loaded, missing and ignored keys.
* **RoBERTa initialisation** (reference ``load_partial_pretrained``): layers 1, 3, 5, 7, 9, 11 of a
  12-layer RoBERTa become cross-modal layers 0–5, the single token-type row is duplicated, the
  vocabulary is padded with zero rows to the model's padded size.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hero.config import HeroConfig
from hero.errors import HeroError

FORMAT_NAME = "hero"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_HASH_KEY = "weights_sha256"
"""Key of ``config.json``: SHA-256 (hex) of the ``model.safetensors`` bytes. Models saved before it
existed lack it; they load unchecked."""

# Keys of reference checkpoints that are known and deliberately not modelled.
_REFERENCE_NOT_MODELLED = ("decoder.tri_mask", "loss_func.one_hot")


@dataclass
class LoadReport:
    """What a checkpoint conversion did. Keys are the model's names unless noted."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    """Model parameters the checkpoint did not provide (they keep their initial values)."""
    ignored: list[str] = field(default_factory=list)
    """Checkpoint entries not used, each as ``"key (reason)"`` (checkpoint names)."""
    notes: list[str] = field(default_factory=list)
    """Conversions applied (dtype casts, vocabulary padding, type-row duplication, renames)."""

    def summary(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors; {len(self.missing)} missing; {len(self.ignored)} ignored"]
        lines += [f"  missing: {k}" for k in self.missing]
        lines += [f"  ignored: {k}" for k in self.ignored]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


class CheckpointError(HeroError):
    """A checkpoint that cannot be loaded into the model (names the file and key)."""


# ---------------------------------------------------------------------------------------------
# Our format
# ---------------------------------------------------------------------------------------------


class PretrainedMixin:
    """``save_pretrained`` / ``from_pretrained`` / ``from_reference`` for HERO models.

    A class using it defines ``config: HeroConfig``, ``__init__(config)`` and ``REFERENCE_KEY_MAP``.
    """

    REFERENCE_KEY_MAP: list[tuple[str, str | None]] = []

    def save_pretrained(self, directory: str | os.PathLike, metadata: dict[str, Any] | None = None) -> Path:
        return save_pretrained(self, directory, metadata)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, strict: bool = True):
        """Load a model saved by `save_pretrained`.

        With ``strict=False`` a checkpoint of another HERO architecture loads too (e.g. a
        pre-training checkpoint into a fine-tuning model): keys it lacks are reported missing.
        """
        model, report = load_pretrained(cls, directory, strict=strict)
        model.load_report = report
        return model

    @classmethod
    def from_reference(cls, path: str | os.PathLike, config: HeroConfig | None = None,
                       num_attention_heads: int | None = None, vocab_size: int | None = None,
                       strict: bool = False):
        """Build a model from a reference checkpoint file (config inferred when not given)."""
        state = read_reference_checkpoint(path)
        if config is None:
            config = reference_config_for(path, state, num_attention_heads, vocab_size)
        model = cls(config)
        model.load_report = load_reference_state_dict(model, state, strict=strict, source=str(path))
        return model


def _write_atomic_dir(directory: Path, write) -> None:
    """``write(tmp)`` into a temporary sibling, then put it in place as ``directory`` (`hero.io.atomic_dir`).

    An existing ``directory`` is replaced only when it is empty or a saved model
    (`hero.io.check_replaceable`), checked before writing and again before the rename; a full
    disk is one `hero.io.DiskFullError` naming ``directory``; the temporary is removed on failure.
    """
    from hero.io import atomic_dir

    with atomic_dir(directory, kind=FORMAT_NAME,
                    how="only a saved model is replaced; move it away or choose another output path") as tmp:
        write(tmp)


def write_model_files(model: nn.Module, directory: str | os.PathLike,
                      metadata: dict[str, Any] | None = None) -> None:
    """Write ``config.json`` and ``model.safetensors`` into an existing ``directory`` (not atomic:
    callers write into a temporary directory and rename it).

    ``config.json`` records the SHA-256 of the ``model.safetensors`` bytes (``weights_sha256``), so
    a corrupted or altered weights file is caught at load (`check_weights`).
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "architecture": type(model).__name__,
        "config": model.config.to_dict(),
        **(metadata or {}),
    }
    task_config = getattr(model, "task_config", None)
    if task_config is not None and "task_config" not in meta:
        import dataclasses

        meta["task_config"] = dataclasses.asdict(task_config)
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    meta[WEIGHTS_HASH_KEY] = file_sha256(directory / WEIGHTS_FILE)  # of what is on disk
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def save_pretrained(model: nn.Module, directory: str | os.PathLike,
                    metadata: dict[str, Any] | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` atomically."""
    directory = Path(directory)
    _write_atomic_dir(directory, lambda tmp: write_model_files(model, tmp, metadata))
    return directory


def _read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file whose top level must be an object; anything else is a `CheckpointError` naming it."""
    from hero.io import read_json

    try:
        return read_json(path, expect=dict)
    except HeroError as err:
        raise CheckpointError(str(err)) from None


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """Read and validate ``config.json`` of a saved model."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory}: not a HERO checkpoint directory (no {CONFIG_FILE})")
    meta = _read_json_object(path)
    if meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: 'format' is {meta.get('format')!r}, expected {FORMAT_NAME!r}")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {meta['format_version']} is newer than this "
                              f"library supports ({FORMAT_VERSION})")
    for key in ("architecture", "config"):
        if key not in meta:
            raise CheckpointError(f"{path}: missing key {key!r}")
    return meta


def load_pretrained(cls, directory: str | os.PathLike, strict: bool = True):
    """Instantiate ``cls`` from a saved directory; returns ``(model, LoadReport)``."""
    meta = read_config(directory)
    if strict and meta["architecture"] != cls.__name__:
        raise CheckpointError(
            f"{directory}: holds a {meta['architecture']}, not a {cls.__name__} "
            f"(pass strict=False to load the shared weights)"
        )
    try:
        config = HeroConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{Path(directory) / CONFIG_FILE}: bad 'config': {err}") from None
    model = cls(config)
    return model, load_weights(model, directory, strict=strict)


def load_weights(model: nn.Module, directory: str | os.PathLike, strict: bool = False) -> LoadReport:
    """Load ``model.safetensors`` of a saved directory into ``model`` (in place).

    Backbone keys move to where ``model`` keeps its backbone, so the weights of one HERO
    architecture load into another (e.g. pre-training → a task model); keys the checkpoint lacks
    are reported missing (an error when ``strict``), keys the model lacks are reported ignored.
    """
    weights = Path(directory) / WEIGHTS_FILE
    state = read_weights(directory)
    state, notes = _align_backbone_prefix(state, model)
    report = _load_mapped(model, state, source=str(weights), strict=strict)
    report.notes += notes
    return report


# A run directory of `hero pretrain` / `hero finetune`: RUN/model/ (the final model) and
# RUN/checkpoints/step-NNNNNNNN/ (training checkpoints, each with this format's model files), the
# newest complete one named by RUN/checkpoints/latest (written by `hero.train.checkpoint`).
LATEST = "latest"


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint ``RUN/checkpoints/latest`` names, or None when the run has none."""
    root = Path(run_dir) / "checkpoints"
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    from hero.io import read_text

    name = read_text(pointer).strip()
    # the pointer names a sibling folder; anything else (a path, an empty file) is not ours to follow
    if not name or "/" in name or name in (".", ".."):
        raise HeroError(f"{pointer}: does not name a checkpoint folder (got {name[:60]!r})")
    path = root / name
    if not (path / "trainer_state.json").is_file():
        raise HeroError(f"{pointer}: names {path.name}, which is not a complete checkpoint")
    return path


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """A directory holding ``config.json`` + ``model.safetensors`` for ``path``: itself, a
    training checkpoint, or a run directory (its final model, else its latest checkpoint)."""
    path = Path(path)
    if (path / WEIGHTS_FILE).is_file():
        return path
    if (path / "model" / WEIGHTS_FILE).is_file():
        return path / "model"
    latest = latest_checkpoint(path) if (path / "checkpoints").is_dir() else None
    if latest is not None:
        return latest
    raise HeroError(f"{path}: no model here (expected config.json + model.safetensors, a run directory "
                    f"with model/ or checkpoints/, or a training checkpoint)")


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read ({err.strerror or err})") from None
    return digest.hexdigest()


def recorded_weights_hash(directory: str | os.PathLike) -> str | None:
    """The ``weights_sha256`` that ``config.json`` of ``directory`` records, or None (no config,
    or a model saved before hashes were stored)."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text()).get(WEIGHTS_HASH_KEY)
    except (OSError, ValueError, AttributeError):
        return None  # read_config names a broken config.json where one is required
    return value if isinstance(value, str) else None


def check_weights(directory: str | os.PathLike) -> str | None:
    """Compare ``model.safetensors`` with the hash ``config.json`` records.

    Returns the matching hash, or None when ``config.json`` records none (a model saved before
    hashes were stored: nothing to check). Raises `CheckpointError` naming the file when the weights
    are missing or do not match.
    """
    weights = Path(directory) / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{directory}: missing {WEIGHTS_FILE}")
    expected = recorded_weights_hash(directory)
    if expected is None:
        return None
    if file_sha256(weights) != expected:
        raise CheckpointError(f"{weights}: weights do not match the hash in {CONFIG_FILE}: "
                              f"the file is corrupt or was changed")
    return expected


# The safetensors reader's header errors, in words a user can act on.
_SAFETENSORS_PROBLEMS = (
    ("incomplete metadata", "truncated (shorter than its header says: an interrupted copy or download?)"),
    ("header too small", "truncated or empty (no complete header)"),
    ("invalid header length", "truncated or not a safetensors file (header length past the end)"),
    ("header too large", "not a safetensors file or corrupt (impossible header length)"),
    ("invalid json", "corrupt header (not valid JSON)"),
    ("invalid utf-8", "corrupt header (not UTF-8)"),
)


def read_safetensors(path: str | os.PathLike) -> dict[str, Tensor]:
    """``safetensors.torch.load_file`` with a `CheckpointError` naming the file for a truncated or
    corrupt file (instead of the reader's raw ``SafetensorError``)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        return load_file(str(path))
    except SafetensorError as err:
        text = str(err)
        detail = text.split("header: ", 1)[-1]
        problem = next((words for key, words in _SAFETENSORS_PROBLEMS if key in text.lower()), "corrupt")
        raise CheckpointError(f"{path}: not a readable safetensors file: {problem} [{detail}]") from None
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read ({err.strerror or err})") from None


def read_weights(directory: str | os.PathLike) -> dict[str, Tensor]:
    """The tensors of a saved model directory, after `check_weights` (``(name -> tensor)``, as saved)."""
    check_weights(directory)
    return read_safetensors(Path(directory) / WEIGHTS_FILE)


def describe_weights(directory: str | os.PathLike) -> str:
    """One line on the weights of a saved model for ``hero info``: tensor and parameter counts and
    the hash check. Raises `CheckpointError` for missing, unreadable or corrupt weights."""
    from safetensors import SafetensorError, safe_open

    weights = Path(directory) / WEIGHTS_FILE
    expected = check_weights(directory)
    try:
        with safe_open(str(weights), framework="pt") as f:
            keys = list(f.keys())
            params = sum(math.prod(f.get_slice(k).get_shape()) for k in keys)
    except SafetensorError:
        read_safetensors(weights)  # raises the named error
        raise
    head = f"weights: {weights.name}, {len(keys)} tensors, {params:,} values"
    if expected is None:
        return f"{head}; no hash in {CONFIG_FILE} (saved by an older version): not checked"
    return f"{head}; sha256 {expected[:16]}... matches {CONFIG_FILE}"


_BACKBONE_MARKER = "f_encoder.embeddings.word_embeddings.weight"


def _backbone_prefix(keys: Iterable[str]) -> str | None:
    for key in keys:
        if key.endswith(_BACKBONE_MARKER):
            return key[: -len(_BACKBONE_MARKER)]
    return None


def _align_backbone_prefix(state: dict[str, Tensor], model: nn.Module) -> tuple[dict[str, Tensor], list[str]]:
    """Move backbone keys to where ``model`` keeps its backbone (e.g. ``hero.`` in task models), so a
    checkpoint of one HERO architecture loads into another."""
    src, dst = _backbone_prefix(state), _backbone_prefix(model.state_dict())
    if src is None or dst is None or src == dst:
        return state, []
    backbone_keys = {k[len(dst):] for k in model.state_dict() if k.startswith(dst)}
    out = {}
    for key, value in state.items():
        if key.startswith(src) and key[len(src):] in backbone_keys:
            key = dst + key[len(src):]
        out[key] = value
    return out, [f"backbone keys moved from prefix {src!r} to {dst!r}"]


# ---------------------------------------------------------------------------------------------
# Reference checkpoints
# ---------------------------------------------------------------------------------------------


def _torch_load_problem(path: Path, err: Exception) -> str:
    """What is wrong with a file ``torch.load(weights_only=True)`` refused, in one line.

    torch's own messages are unfit to show: a KeyError code for a file that is not a pickle at all,
    and, for a pickle holding other objects, advice to load it with ``weights_only=False`` (which
    would run whatever code the file carries).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as os_err:
        return f"cannot read ({os_err.strerror or os_err})"
    text = str(err)
    if not head:
        return "the file is empty, not a torch checkpoint"
    if "Weights only load failed" in text:
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if found:
            return (f"refused for safety: the file holds Python objects other than tensors ({found.group(1)}), "
                    f"which a checkpoint never needs; nothing in it was run")
        operand = re.search(r"Unsupported operand \d+", text)
        return ("not a torch checkpoint of tensors: its pickle stream uses instructions a saved state dict "
                f"never does{f' ({operand.group(0).lower()})' if operand else ''}; refused, nothing in it was run")
    first = text.split(". ")[0].splitlines()[0][:120] if text.strip() else type(err).__name__
    if head.startswith(b"PK\x03\x04"):  # torch's zip format
        return f"corrupt or truncated torch checkpoint (a damaged zip archive: {first})"
    if head.startswith(b"\x80"):  # a pickle: torch's legacy format
        return f"corrupt or truncated torch checkpoint (legacy pickle format: {first})"
    return (f"not a torch checkpoint (a .pt file is a zip archive or a pickle; this one starts with "
            f"{head[:16]!r})")


def read_reference_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a reference checkpoint file safely (``weights_only``); unwraps ``restore.pt``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols before refusing a file; the refusal says enough
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad file
        raise CheckpointError(f"{path}: {_torch_load_problem(path, err)}") from None
    if isinstance(state, dict) and "model_state_dict" in state:  # TrainingRestorer's restore.pt
        state = state["model_state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state


def map_reference_key(key: str, key_map: Iterable[tuple[str, str | None]]) -> tuple[str | None, str]:
    """Map one reference key. Returns ``(our key or None, reason when None)``."""
    for old, new in (("gamma", "weight"), ("beta", "bias")):
        if key.endswith("." + old):
            key = key[: -len(old)] + new
    if key.endswith(_REFERENCE_NOT_MODELLED) or key.endswith(".pad") or key == "pad":
        return None, "reference buffer, not modelled"
    for ref_prefix, our_prefix in key_map:
        if key.startswith(ref_prefix) or key == ref_prefix.rstrip("."):
            if our_prefix is None:
                return None, "known, not modelled"
            return our_prefix + key[len(ref_prefix):], ""
    return None, "unknown to this model"


def load_reference_state_dict(model: nn.Module, state: dict[str, Any], strict: bool = False,
                              source: str = "checkpoint") -> LoadReport:
    """Load a reference state dict into ``model`` through its ``REFERENCE_KEY_MAP``."""
    report = LoadReport()
    mapped: dict[str, Tensor] = {}
    renamed = 0
    for key, value in state.items():
        if not isinstance(value, Tensor):
            report.ignored.append(f"{key} (non-tensor entry)")
            continue
        ours, reason = map_reference_key(key, model.REFERENCE_KEY_MAP)
        if ours is None:
            report.ignored.append(f"{key} ({reason})")
            continue
        renamed += key.endswith((".gamma", ".beta"))
        if ours in mapped:
            raise CheckpointError(f"{source}: two checkpoint keys map to {ours!r}")
        mapped[ours] = value
    if renamed:
        report.notes.append(f"renamed {renamed} gamma/beta LayerNorm parameters to weight/bias")
    sub = _load_mapped(model, mapped, source=source, strict=strict)
    report.loaded, report.missing = sub.loaded, sub.missing
    report.ignored += sub.ignored
    report.notes += sub.notes
    return report


def _fit(name: str, value: Tensor, target: Tensor, source: str, notes: list[str]) -> Tensor:
    """Fit a checkpoint tensor to a model tensor: vocabulary padding, type-row duplication, dtype."""
    if value.shape != target.shape:
        rows_only = value.dim() == target.dim() and value.shape[1:] == target.shape[1:]
        if rows_only and name.endswith("token_type_embeddings.weight") and value.shape[0] == 1:
            value = value.expand_as(target).clone()
            notes.append(f"{name}: duplicated the single token-type row to {target.shape[0]} rows")
        elif rows_only and (name.endswith("word_embeddings.weight") or name.endswith("mlm_head.bias")) \
                and value.shape[0] < target.shape[0]:
            pad = value.new_zeros((target.shape[0] - value.shape[0], *value.shape[1:]))
            notes.append(f"{name}: padded vocabulary {value.shape[0]} -> {target.shape[0]} with zero rows")
            value = torch.cat([value, pad])
        else:
            raise CheckpointError(
                f"{source}: shape mismatch for {name!r}: checkpoint {tuple(value.shape)}, "
                f"model {tuple(target.shape)}"
            )
    return value.to(target.dtype)


def _load_mapped(model: nn.Module, mapped: dict[str, Tensor], source: str, strict: bool) -> LoadReport:
    report = LoadReport()
    own = model.state_dict()
    fitted = {}
    casts = set()
    for name, value in mapped.items():
        if name not in own:
            report.ignored.append(f"{name} (not a parameter of {type(model).__name__})")
            continue
        if value.dtype != own[name].dtype:
            casts.add(f"{value.dtype}->{own[name].dtype}")
        fitted[name] = _fit(name, value, own[name], source, report.notes)
    if casts:
        report.notes.append(f"cast tensors {', '.join(sorted(casts))}")
    report.loaded = sorted(fitted)
    report.missing = sorted(set(own) - set(fitted))
    if strict and report.missing:
        raise CheckpointError(f"{source}: missing keys for {type(model).__name__}: {report.missing}")
    model.load_state_dict(fitted, strict=False)
    return report


def infer_reference_config(state: dict[str, Any], num_attention_heads: int | None = None,
                           vocab_size: int | None = None, source: str = "checkpoint") -> HeroConfig:
    """Infer a `HeroConfig` from the tensor shapes of a reference state dict.

    Head count and real vocabulary are not visible in shapes: they default to ``hidden // 64``
    (BERT/RoBERTa convention) and to 50265 for a 50272-row table (RoBERTa), else the table size.
    """
    def get(key: str) -> Tensor:
        for k in (key, key.replace(".weight", ".gamma")):
            if k in state:
                return state[k]
        raise CheckpointError(f"{source}: not a HERO checkpoint (missing {key!r})")

    prefix = "v_encoder."
    word = get(prefix + "f_encoder.embeddings.word_embeddings.weight")
    hidden = int(word.shape[1])

    def count_layers(enc: str) -> int:
        stem = f"{prefix}{enc}.encoder.layer."
        return len({k[len(stem):].split(".")[0] for k in state if k.startswith(stem)})

    heads = num_attention_heads or max(1, hidden // 64)
    rows = int(word.shape[0])
    fom = state.get(prefix + "fom_output.linear_2.weight")
    return HeroConfig(
        hidden_size=hidden,
        num_attention_heads=heads,
        intermediate_size=int(get(prefix + "f_encoder.encoder.layer.0.intermediate.dense.weight").shape[0]),
        num_cross_layers=count_layers("f_encoder"),
        num_temporal_layers=count_layers("c_encoder"),
        vocab_size=vocab_size or (50265 if rows == 50272 else rows),
        vocab_size_padded=rows,
        max_position_embeddings=int(get(prefix + "f_encoder.embeddings.position_embeddings.weight").shape[0]),
        vfeat_dim=int(get(prefix + "f_encoder.img_embeddings.img_linear.weight").shape[1]),
        max_frm_seq_len=int(get(prefix + "f_encoder.img_embeddings.position_embeddings.weight").shape[0]),
        fom_num_classes=int(fom.shape[0]) if fom is not None else 100,
    )


def reference_config_for(path: str | os.PathLike, state: dict[str, Any], num_attention_heads: int | None,
                         vocab_size: int | None) -> HeroConfig:
    """Config of a reference checkpoint: shapes, refined by ``../log/model_config.json`` if present
    (the reference writes it next to ``ckpt/``)."""
    model_json = Path(path).resolve().parent.parent / "log" / "model_config.json"
    f_cfg: dict[str, Any] = {}
    if model_json.is_file() and num_attention_heads is None:
        f_cfg = _read_json_object(model_json).get("f_config", {})
        if not isinstance(f_cfg, dict):
            raise CheckpointError(f"{model_json}: 'f_config' must be a JSON object")
        for key in ("num_attention_heads", "vocab_size"):
            if key in f_cfg and (not isinstance(f_cfg[key], int) or isinstance(f_cfg[key], bool) or f_cfg[key] < 0):
                raise CheckpointError(f"{model_json}: f_config.{key} must be a non-negative integer, "
                                      f"got {f_cfg[key]!r}")
    config = infer_reference_config(state, num_attention_heads, vocab_size, source=str(path))
    if "num_attention_heads" in f_cfg:
        config.num_attention_heads = f_cfg["num_attention_heads"]
    if vocab_size is None and f_cfg.get("vocab_size", 0) and f_cfg["vocab_size"] <= config.vocab_size_padded:
        config.vocab_size = f_cfg["vocab_size"]
    config.__post_init__()
    return config


# ---------------------------------------------------------------------------------------------
# RoBERTa initialisation
# ---------------------------------------------------------------------------------------------


def read_hf_checkpoint(name_or_path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """State dict and config of a Hugging Face (Ro)BERTa checkpoint: local directory or hub name."""
    path = Path(name_or_path)
    if not path.is_dir():
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(str(name_or_path), allow_patterns=[
                "config.json", "*.safetensors", "*.safetensors.index.json", "pytorch_model.bin"]))
        except Exception as err:  # noqa: BLE001 - offline, unknown repo, ...
            raise CheckpointError(
                f"{name_or_path}: not a local directory and could not be fetched from the hub ({err}). "
                f"Offline, pass a directory holding config.json and model.safetensors."
            ) from None
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path}: no config.json")
    config = _read_json_object(config_file)
    state: dict[str, Tensor] = {}
    shards = sorted(path.glob("*.safetensors"))
    if shards:
        for shard in shards:
            state.update(read_safetensors(shard))
    elif (path / "pytorch_model.bin").is_file():
        state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise CheckpointError(f"{path}: no model.safetensors or pytorch_model.bin")
    return state, config


def roberta_key_map(num_src_layers: int, num_dst_layers: int, backbone: str,
                    mlm_head: str | None) -> list[tuple[str, str | None]]:
    """Prefix table RoBERTa → HERO (reference ``load_partial_checkpoint`` + ``from_pretrained``).

    Keeps source layers ``gap-1, 2·gap-1, …`` with ``gap = src // dst`` (1, 3, …, 11 for 12 → 6).
    """
    if num_dst_layers > num_src_layers:
        raise CheckpointError(f"RoBERTa has {num_src_layers} layers; HERO needs {num_dst_layers}")
    gap = num_src_layers // num_dst_layers
    keep = list(range(gap - 1, num_src_layers, gap))[:num_dst_layers]
    table: list[tuple[str, str | None]] = [
        (f"roberta.encoder.layer.{src}.", f"{backbone}f_encoder.encoder.layer.{dst}.")
        for dst, src in enumerate(keep)
    ]
    table += [
        ("roberta.embeddings.position_ids", None),
        ("roberta.embeddings.token_type_ids", None),
        ("roberta.embeddings.", f"{backbone}f_encoder.embeddings."),
        ("roberta.encoder.layer.", None),  # the layers not kept
        ("roberta.pooler.", None),
        ("lm_head.decoder.", None),  # tied to the word table
    ]
    if mlm_head is None:
        table.append(("lm_head.", None))
    else:
        table += [("lm_head.layer_norm.", f"{mlm_head}LayerNorm."), ("lm_head.", mlm_head)]
    return table


def init_from_roberta(model: nn.Module, name_or_path: str | os.PathLike,
                      load_lm_head: bool = False) -> LoadReport:
    """Initialise the cross-modal transformer (and optionally the MLM head) from RoBERTa.

    The reference never loads RoBERTa's ``lm_head`` (its loader expects other key names), so by
    default neither do we (``load_lm_head=False``): the MLM head starts random, its decoder tied to
    the loaded word table, its bias zero.
    """
    state, hf_config = read_hf_checkpoint(name_or_path)
    state = {k if k.startswith(("roberta.", "lm_head.")) else f"roberta.{k}": v for k, v in state.items()}
    backbone = "" if hasattr(model, "f_encoder") else "hero."
    config: HeroConfig = model.config
    if int(hf_config.get("hidden_size", -1)) != config.hidden_size:
        raise CheckpointError(f"{name_or_path}: hidden_size {hf_config.get('hidden_size')} != HERO "
                              f"hidden_size {config.hidden_size}")
    mlm_head = "mlm_head." if (load_lm_head and hasattr(model, "mlm_head")) else None
    table = roberta_key_map(int(hf_config["num_hidden_layers"]), config.num_cross_layers, backbone, mlm_head)
    report = LoadReport()
    mapped = {}
    for key, value in state.items():
        ours, reason = map_reference_key(key, table)
        if ours is None:
            report.ignored.append(f"{key} ({reason})")
        else:
            mapped[ours] = value
    sub = _load_mapped(model, mapped, source=str(name_or_path), strict=False)
    report.loaded, report.missing = sub.loaded, sub.missing
    report.ignored += sub.ignored
    report.notes += sub.notes
    return report
