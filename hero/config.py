"""Typed configuration of the HERO model and its named presets.

`HeroConfig` is the single source of truth for the sizes of the backbone (paper §3.1) and of the
pre-training heads. Presets:

* ``hero-base``: the paper's model and the reference ``config/hero_pretrain.json`` (6 cross-modal
  layers, 3 temporal layers, hidden 768, 12 heads, 4352-d frame features, RoBERTa vocabulary
  50265 padded to 50272).
* ``hero-tiny``: a few-thousand-parameter model for tests and CPU debugging.

Token ids (CLS/PAD/SEP/MASK) belong to the tokenizer, not to the model: see `TextTokens`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

from hero.errors import HeroError, SettingError

BACKBONES = ("hero", "f-trm", "h-trm")
"""Names of the video encoders `hero.model.build_backbone` builds."""


@dataclass
class HeroConfig:
    """Sizes and numerical settings of the HERO backbone and its pre-training heads."""

    hidden_size: int = 768
    """D: width of every transformer (cross-modal, temporal, query encoder)."""
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    """FFN width of the transformer layers."""
    num_cross_layers: int = 6
    """Layers of the Cross-modal Transformer (reference ``f_config.num_hidden_layers``)."""
    num_temporal_layers: int = 3
    """Layers of the Temporal Transformer (reference ``c_config.num_hidden_layers``)."""
    vocab_size: int = 50265
    """Real vocabulary: MLM logits are cut to this many columns."""
    vocab_size_padded: int = 50272
    """Rows of the word table; the reference pads the vocabulary to a multiple of 8."""
    max_position_embeddings: int = 514
    """Rows of the text, temporal and query position tables."""
    type_vocab_size: int = 2
    """Token-type rows. Only row ``token_type_id`` is ever used (reference behaviour)."""
    token_type_id: int = 1
    """The reference feeds token-type row 1 to both text and frames; row 0 is never used."""
    pad_token_id: int = 1
    """Padding row of the word table (receives no gradient, as in the reference)."""
    vfeat_dim: int = 4352
    """d: raw frame-feature size (ResNet-152 2048 ‖ SlowFast 2304 in the reference)."""
    max_frm_seq_len: int = 100
    """Rows of the per-subtitle frame position table (frames per subtitle group)."""
    fom_num_classes: int = 100
    """FOM classifier width; the reference hard-codes 100 (= max clip length)."""
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    layer_norm_eps_block: float = 1e-12
    """eps of the LayerNorms inside transformer blocks (reference quirk: BERT default 1e-12)."""
    layer_norm_eps: float = 1e-5
    """eps of every other LayerNorm (embeddings, frame projections, heads)."""
    initializer_range: float = 0.02
    span_kernel_size: int = 5
    """Kernel of the VSM start/end 1-D convolutions."""
    backbone: str = "hero"
    """Video encoder: ``hero`` (the paper's), or the ablation baselines of paper §4.3,
    ``f-trm`` (one flat transformer over frames and all subtitle tokens) and ``h-trm`` (frames
    plus max-pooled subtitle embeddings into the Temporal Transformer). See `hero.model.baselines`."""

    def __post_init__(self) -> None:
        problems = []
        if self.hidden_size % self.num_attention_heads:
            problems.append(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})"
            )
        if self.vocab_size > self.vocab_size_padded:
            problems.append(
                f"vocab_size ({self.vocab_size}) exceeds vocab_size_padded ({self.vocab_size_padded})"
            )
        if not 0 <= self.token_type_id < self.type_vocab_size:
            problems.append(
                f"token_type_id ({self.token_type_id}) outside type_vocab_size ({self.type_vocab_size})"
            )
        if self.span_kernel_size % 2 != 1:
            problems.append(f"span_kernel_size must be odd, got {self.span_kernel_size}")
        for name in ("num_cross_layers", "num_temporal_layers", "vfeat_dim", "max_frm_seq_len"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.backbone not in BACKBONES:
            problems.append(f"backbone must be one of {list(BACKBONES)}, got {self.backbone!r}")
        if problems:
            raise ValueError("invalid HeroConfig: " + "; ".join(problems))

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeroConfig:
        """Build from a dict (`from_dict`): unknown keys and values of the wrong type are errors."""
        return from_dict(cls, data, where=cls.__name__)

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> HeroConfig:
        """A named preset (`PRESETS`), optionally with fields overridden."""
        try:
            base = PRESETS[name]()
        except KeyError:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
        return dataclasses.replace(base, **overrides)

    @classmethod
    def from_reference_json(
        cls,
        model_json: dict[str, Any],
        vfeat_dim: int = 4352,
        max_frm_seq_len: int = 100,
        fom_num_classes: int = 100,
    ) -> HeroConfig:
        """Translate a reference ``model_config.json`` (``f_config``/``c_config``/``q_config``).

        The reference pads the vocabulary to a multiple of 8 and rebuilds a 2-row type table at
        initialisation, whatever the JSON says; this mirrors that.
        """
        try:
            f_cfg, c_cfg = model_json["f_config"], model_json["c_config"]
        except KeyError as err:
            raise ValueError(f"reference model config lacks the {err.args[0]!r} block") from None
        for key in ("hidden_size", "num_attention_heads", "intermediate_size"):
            if f_cfg.get(key) != c_cfg.get(key):
                raise ValueError(
                    f"reference model config: f_config.{key}={f_cfg.get(key)} differs from "
                    f"c_config.{key}={c_cfg.get(key)}; HERO needs one width for both transformers"
                )
        vocab = int(f_cfg["vocab_size"])
        return cls(
            hidden_size=int(f_cfg["hidden_size"]),
            num_attention_heads=int(f_cfg["num_attention_heads"]),
            intermediate_size=int(f_cfg["intermediate_size"]),
            num_cross_layers=int(f_cfg["num_hidden_layers"]),
            num_temporal_layers=int(c_cfg["num_hidden_layers"]),
            vocab_size=vocab,
            vocab_size_padded=pad_to_multiple(vocab, 8),
            max_position_embeddings=int(f_cfg.get("max_position_embeddings", 514)),
            hidden_dropout_prob=float(f_cfg.get("hidden_dropout_prob", 0.1)),
            attention_probs_dropout_prob=float(f_cfg.get("attention_probs_dropout_prob", 0.1)),
            initializer_range=float(f_cfg.get("initializer_range", 0.02)),
            layer_norm_eps_block=float(f_cfg.get("layer_norm_eps", 1e-12)),
            vfeat_dim=vfeat_dim,
            max_frm_seq_len=max_frm_seq_len,
            fom_num_classes=fom_num_classes,
        )


def pad_to_multiple(n: int, multiple: int) -> int:
    return (n + multiple - 1) // multiple * multiple


def hero_base() -> HeroConfig:
    """The paper's HERO (reference ``config/hero_pretrain.json`` after initialisation)."""
    return HeroConfig()


def hero_tiny() -> HeroConfig:
    """A tiny HERO for unit tests and CPU debugging (same structure, toy sizes)."""
    return HeroConfig(
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=64,
        num_cross_layers=2,
        num_temporal_layers=1,
        vocab_size=1003,
        vocab_size_padded=1008,
        max_position_embeddings=128,
        vfeat_dim=16,
        max_frm_seq_len=32,
        fom_num_classes=32,
    )


def hero_small() -> HeroConfig:
    """A small HERO for the quickstart and the miniature ablations: hero-tiny at width 64.

    Large enough to learn the synthetic corpus's tasks in a few hundred steps on a CPU, small
    enough that pre-training visibly helps when fine-tuning data is scarce.
    """
    return dataclasses.replace(hero_tiny(), hidden_size=64, intermediate_size=128)


PRESETS = {"hero-base": hero_base, "hero-small": hero_small, "hero-tiny": hero_tiny}


@dataclass(frozen=True)
class TextTokens:
    """Special token ids of the tokenizer (reference ``txt_db/meta.json``; RoBERTa defaults)."""

    cls_id: int = 0
    pad_id: int = 1
    sep_id: int = 2
    unk_id: int = 3
    mask_id: int = 50264
    random_range: tuple[int, int] = (4, 50264)
    """Half-open id range MLM draws random replacement tokens from (reference ``v_range``)."""

    def __post_init__(self) -> None:
        lo, hi = self.random_range
        if not 0 <= lo < hi:
            raise ValueError(f"TextTokens.random_range must be a non-empty [lo, hi), got {self.random_range}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextTokens:
        data = dict(data)
        if "random_range" in data:
            data["random_range"] = tuple(data["random_range"])
        return cls(**data)


# ---------------------------------------------------------------------------------------------
# The typed dict-to-dataclass loader
# ---------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def convert_value(value: Any, tp: Any, where: str) -> Any:
    """Check/convert a (YAML or JSON) value to the annotated type ``tp``; errors name ``where``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert_value(value, arg, where)
            except HeroError as err:
                errors.append(str(err))
        raise HeroError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise HeroError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (dict,):
        if not isinstance(value, dict):
            raise HeroError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = typing.get_args(tp) or (Any, Any)
        return {convert_value(k, kt, where): convert_value(v, vt, _join(where, k)) for k, v in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise HeroError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise HeroError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(convert_value(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        items = [convert_value(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
                try:
                    return float(value)
                except ValueError:
                    pass
            raise HeroError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise HeroError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise HeroError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise HeroError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if isinstance(tp, type) and not isinstance(value, tp):
        raise HeroError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass ``cls`` from a (nested) dict: values checked and converted to the annotated
    types (nested dataclasses, tuples, unions), unknown keys an error naming ``where.key``. The one
    loader of every config dataclass (model, run, task settings); a `HeroError` on bad input.
    A class with a ``migrate_settings(data, where)`` classmethod gets ``data`` rewritten first
    (older key layouts, e.g. `hero.tasks.retrieval.RetrievalConfig`'s flat VSM keys)."""
    migrate = getattr(cls, "migrate_settings", None)
    if migrate is not None and isinstance(data, dict):
        data = migrate(data, where)  # older key layouts (e.g. flat VSM keys of RetrievalConfig)
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise HeroError(f"{where or 'config'}: unknown key(s) {', '.join(repr(k) for k in unknown)}; "
                        f"known keys: {', '.join(sorted(known))}")
    kwargs = {name: convert_value(value, hints[name], _join(where, name)) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except SettingError as err:
        raise err.at(where) from None
    except HeroError:
        raise
    except (TypeError, ValueError) as err:
        raise HeroError(f"{where}: {err}" if where else str(err)) from None


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def merge_settings(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` on top, mappings merged key by key (a partial nested mapping,
    e.g. ``{"vsm": {"margin": 0.2}}``, keeps the other nested values); a dotted key
    (``vsm.margin``) is the nested one."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(key, str) and "." in key:
            head, rest = key.split(".", 1)
            value, key = {rest: value}, head
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_settings(out[key], value)
        else:
            out[key] = value
    return out


def to_dict(obj: Any) -> Any:
    """A dataclass (tree) as plain YAML-able data (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


__all__ = [
    "HeroConfig",
    "TextTokens",
    "convert_value",
    "from_dict",
    "merge_settings",
    "to_dict",
    "PRESETS",
    "hero_base",
    "hero_small",
    "hero_tiny",
    "pad_to_multiple",
]
