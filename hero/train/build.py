"""Building a model for a run: the `HeroConfig` from a preset and the corpus, then its weights.

The corpus decides two sizes unless the run config overrides them: the frame-feature size
(``vfeat_dim``, from the video store) and the vocabulary (from the tokenizer; the word table is
padded to a multiple of 8 like the reference's). ``ModelSpec.init`` then chooses the weights:
random (the reference's initialisation), one of our checkpoints or a run directory, a reference
``.pt`` file, or a Hugging Face RoBERTa.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from hero.config import HeroConfig, pad_to_multiple
from hero.data.protocol import CorpusLike
from hero.errors import HeroError
from hero.train.config import ModelSpec


def corpus_sizes(corpus: CorpusLike) -> dict[str, int]:
    """``vfeat_dim`` and vocabulary sizes a corpus implies."""
    sizes: dict[str, int] = {}
    store = getattr(corpus, "video_store", None)
    if store is not None:
        sizes["vfeat_dim"] = int(store.meta.dim)
    # corpus.vocab_size comes from corpus.json without loading the tokenizer (which may need a
    # download for a roberta-base corpus); the tokenizer is the fallback for corpus-like objects.
    vocab = getattr(corpus, "vocab_size", None)
    if vocab is None and getattr(corpus, "tokenizer", None) is not None:
        vocab = corpus.tokenizer.vocab_size
    if vocab is not None:
        vocab = int(vocab)
        sizes["vocab_size"] = vocab
        sizes["vocab_size_padded"] = pad_to_multiple(vocab, 8)
    return sizes


def hero_config(spec: ModelSpec, corpus: CorpusLike | None = None) -> HeroConfig:
    """Preset ← corpus sizes ← explicit overrides."""
    fields = {f.name for f in dataclasses.fields(HeroConfig)}
    unknown = sorted(set(spec.overrides) - fields)
    if unknown:
        raise HeroError(f"model.overrides: unknown HeroConfig key(s) {unknown}; known: {sorted(fields)}")
    sizes = corpus_sizes(corpus) if corpus is not None else {}
    from hero.config import PRESETS

    if spec.preset not in PRESETS:
        raise HeroError(f"model.preset: unknown preset {spec.preset!r}; choose one of {sorted(PRESETS)}")
    try:
        return HeroConfig.from_name(spec.preset, **{**sizes, **spec.overrides})
    except HeroError as err:
        raise HeroError(f"model.overrides: {err}") from None
    except (TypeError, ValueError) as err:
        raise HeroError(f"model.overrides: {err}") from None


def check_init(spec: ModelSpec) -> None:
    """``model.init`` names something readable (checked before a run writes anything; whether
    the weights fit the model is checked when they are loaded, also before anything is written)."""
    import os
    from pathlib import Path

    init = spec.init
    if not init:
        return
    if init.startswith("roberta:"):
        name = init[len("roberta:"):]
        path = Path(name)
        # a Hugging Face hub name cannot be checked offline; a path can
        if (path.is_absolute() or name.startswith(".") or os.sep in name and path.parent.is_dir()) \
                and not path.is_dir():
            raise HeroError(f"model.init: {name}: no such RoBERTa directory")
        return
    if init.startswith("reference:"):
        path = Path(init[len("reference:"):])
        if not path.is_file():
            raise HeroError(f"model.init: {path}: no such file (a reference HERO .pt checkpoint)")
        if not os.access(path, os.R_OK):
            raise HeroError(f"model.init: {path}: not readable")
        return
    from hero.model.checkpoint import read_config, resolve_model_dir

    if not Path(init).exists():
        raise HeroError(f"model.init: {init}: no such file or directory")
    try:
        directory = resolve_model_dir(init)
        read_config(directory)
    except HeroError as err:
        raise HeroError(f"model.init: {err}") from None
    except ValueError as err:
        raise HeroError(f"model.init: {err}") from None
    weights = directory / "model.safetensors"
    if not os.access(weights, os.R_OK):
        raise HeroError(f"model.init: {weights}: not readable")


def check_device(train: Any) -> None:
    """``train.device`` exists here and ``train.precision`` runs on it."""
    import torch

    cuda = torch.cuda.is_available()
    if train.device == "cuda" and not cuda:
        raise HeroError("train.device=cuda, but no CUDA device is available")
    if train.precision == "fp16" and (train.device == "cpu" or not cuda):
        raise HeroError("train.precision=fp16 needs a CUDA device; use bf16 on the CPU")


def initialise(model: nn.Module, spec: ModelSpec, log=print) -> None:
    """Load the weights ``spec.init`` names into ``model`` (in place); report what was loaded."""
    init = spec.init
    if not init:
        return
    from hero.model.checkpoint import (
        init_from_roberta,
        load_reference_state_dict,
        read_reference_checkpoint,
    )

    if init.startswith("roberta:"):
        report = init_from_roberta(model, init[len("roberta:"):])
    elif init.startswith("reference:"):
        path = init[len("reference:"):]
        report = load_reference_state_dict(model, read_reference_checkpoint(path), source=path)
    else:
        from hero.model.checkpoint import load_weights, resolve_model_dir

        report = load_weights(model, resolve_model_dir(init))
    log(f"initialised from {init}: {report.summary().splitlines()[0]}")
    if not report.loaded:
        raise HeroError(f"{init}: no weight of the checkpoint fits this model")
