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
from hero.errors import HeroError
from hero.train.config import ModelSpec


def corpus_sizes(corpus: Any) -> dict[str, int]:
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


def hero_config(spec: ModelSpec, corpus: Any | None = None) -> HeroConfig:
    """Preset ← corpus sizes ← explicit overrides."""
    fields = {f.name for f in dataclasses.fields(HeroConfig)}
    unknown = sorted(set(spec.overrides) - fields)
    if unknown:
        raise HeroError(f"model.overrides: unknown HeroConfig key(s) {unknown}; known: {sorted(fields)}")
    sizes = corpus_sizes(corpus) if corpus is not None else {}
    return HeroConfig.from_name(spec.preset, **{**sizes, **spec.overrides})


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
        from hero.model.checkpoint import load_weights
        from hero.train.checkpoint import resolve_model_dir

        report = load_weights(model, resolve_model_dir(init))
    log(f"initialised from {init}: {report.summary().splitlines()[0]}")
    if not report.loaded:
        raise HeroError(f"{init}: no weight of the checkpoint fits this model")
