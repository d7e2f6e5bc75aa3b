"""What several task modules share: task-config loading, the early fusion of text into the video
encoder (QA, VIOLIN, open-ended QA), attention pooling, record checks, prediction writing and the
plain save/load functions of task models.

Task modules import from here (and from the model), never from each other.

Shape letters: ``R`` video copies (one per text row), ``L`` frames, ``T`` text tokens, ``D`` hidden.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hero.config import HeroConfig, from_dict
from hero.data.batch import Clip, Group, collate_video, pad_token_rows
from hero.data.protocol import CorpusLike
from hero.errors import HeroError, NonFiniteError
from hero.io import write_json_atomic
from hero.model.checkpoint import (
    CheckpointError,
    PretrainedMixin,
    load_reference_state_dict,
    load_weights,
    read_config,
    read_reference_checkpoint,
    reference_config_for,
)
from hero.model.hero import Hero, VideoInputs
from hero.model.layers import AttentionLayout, mask_logits

# ---------------------------------------------------------------------------------------------
# Settings and records
# ---------------------------------------------------------------------------------------------


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """A task config dataclass from a dict, through the one typed loader (`hero.config.from_dict`):
    values converted to the annotated types, unknown keys an error naming the known ones."""
    from hero.config import from_dict

    return from_dict(cls, data, where=cls.__name__)


def where(dataset: str, split: str, i: int) -> str:
    """``annotations/<dataset>/<split>.jsonl:<line>`` of record ``i`` (0-based), for error messages."""
    return f"annotations/{dataset}/{split}.jsonl:{i + 1}"


def is_token_ids(x: Any) -> bool:
    """True for a list of ints (bools excluded)."""
    return isinstance(x, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in x)


def checked_records(corpus: CorpusLike, dataset: str, split: str, check: Callable[[dict, str], None]) -> list[dict]:
    """All records of a split, each passed to ``check(record, where)``; every video must be in the
    corpus and qids unique (inference of the classification tasks)."""
    records = corpus.annotations(dataset, split)
    videos = set(corpus.video_ids())
    seen: dict[str, int] = {}
    for i, record in enumerate(records):
        at = where(dataset, split, i)
        check(record, at)
        if record["vid"] not in videos:
            raise HeroError(f"{at}: video {record['vid']!r} is not in the corpus")
        qid = str(record["qid"])
        if qid in seen:
            raise HeroError(f"{at}: qid {qid!r} already appears at line {seen[qid] + 1}")
        seen[qid] = i
    return records


def check_finite_logits(logits: dict[str, Any], what: str) -> None:
    """Raise `NonFiniteError` when a ``{qid: logit | [logits]}`` value holds NaN or infinity (an
    argmax or a threshold over it would pick an answer at random, without a word)."""
    bad = [q for q, v in logits.items() if not all(math.isfinite(x) for x in (v if isinstance(v, list) else [v]))]
    if bad:
        raise NonFiniteError(what, len(bad), len(logits), bad[0])


def write_json_predictions(predictions: Any, path: str | os.PathLike, cfg: Any = None) -> None:
    """Write predictions as one JSON document, atomically (``cfg`` is unused: every task's writer
    takes ``(predictions, path, cfg)``)."""
    write_json_atomic(path, predictions)


# ---------------------------------------------------------------------------------------------
# Early fusion of a text into the video encoder
# ---------------------------------------------------------------------------------------------


def context_groups(clip: Clip, sep_id: int, sub_ctx_len: int) -> list[Group]:
    """Subtitle groups whose text is ``[SEP]`` + the subtitles ``sub_idx − sub_ctx_len … sub_idx``
    (reference ``VideoFeatSubTokDataset``; tokens not truncated).

    The reference also requires a context index to be below the number of groups. On its data that
    never bites (every subtitle up to the loader's cut has a group, possibly frameless), and where it
    would (groups that skip a subtitle) it would drop the group's own text; so it is not reproduced.
    """
    groups = []
    for sub_idx, frames in clip.sub2frames:
        text = [sep_id]
        for j in range(max(0, sub_idx - sub_ctx_len), sub_idx + 1):
            text += clip.subtitles[j]
        groups.append((frames, text))
    return groups


def fused_groups(clip: Clip, sep_id: int, sub_ctx_len: int, suffix: Sequence[int]) -> list[Group]:
    """The clip's subtitle groups (`context_groups`) with ``suffix`` appended to every group's text."""
    return [(frames, [*text, *suffix]) for frames, text in context_groups(clip, sep_id, sub_ctx_len)]


def fused_text_batch(corpus: CorpusLike, rows: Sequence[tuple[str, Sequence[int]]],
                     sub_ctx_len: int) -> tuple[VideoInputs, Tensor, Tensor]:
    """Video inputs and text rows for tasks that fuse one text with the clip (a VIOLIN statement,
    an open-ended question): every subtitle group of a row's clip ends with ``[SEP] text``.

    Args:
        rows: ``R`` ``(vid, text ids)`` pairs (a clip read once however many rows name it).

    Returns:
        ``(video, txt_ids, txt_mask)``: ``R`` clips; ``(R, T)`` ``[SEP] text`` padded with the pad
        id; ``(R, T)`` bool.
    """
    sep, pad = corpus.tokens.sep_id, corpus.tokens.pad_id
    clips: dict[str, Clip] = {}
    feats, groups, texts = [], [], []
    for vid, ids in rows:
        if vid not in clips:
            clips[vid] = corpus.clip(vid)
        clip = clips[vid]
        text = [sep, *ids]
        feats.append(clip.features)
        groups.append(fused_groups(clip, sep, sub_ctx_len, text))
        texts.append(text)
    txt_ids, txt_mask = pad_token_rows(texts, pad)
    return collate_video(feats, groups), txt_ids, txt_mask.bool()


def text_positions(ids: Tensor, max_positions: int) -> Tensor:
    """``0..T-1`` for ``ids (R, T)``, clamped to the position table (and to 511, as the reference)."""
    r, t = ids.shape
    return torch.arange(t, device=ids.device).clamp(max=min(511, max_positions - 1)).expand(r, t)


def encode_with_text(hero: Hero, video: VideoInputs, txt_ids: Tensor, txt_mask: Tensor) -> Tensor:
    """Frame outputs ``(R, L, D)`` of the Temporal Transformer run over ``[frames ; text]``.

    Args:
        hero: the backbone.
        video: ``R`` clips whose subtitle groups already carry the text (`fused_groups`).
        txt_ids: ``(R, T)`` the text appended to the temporal input (``[SEP] q [SEP] a`` or
            ``[SEP] statement``), padded.
        txt_mask: ``(R, T)`` True/1 on real tokens.

    The frames get the Temporal Transformer's position embedding and LayerNorm; the text gets the
    Cross-modal Transformer's text embedding (0-based positions, as the reference). A backbone
    without a second stage (the F-TRM baseline) sees the text through the subtitle groups only.
    """
    fused = hero.fuse(video)  # (R, L, D)
    c_encoder = getattr(hero, "c_encoder", None)
    if c_encoder is None:
        return fused
    r, length, d = fused.shape
    frames = c_encoder.embeddings(fused)
    text = hero.f_encoder.embeddings(txt_ids, text_positions(txt_ids, hero.config.max_position_embeddings))
    x = torch.cat([frames, text.to(frames.dtype)], dim=1)  # (R, L+T, D)
    mask = torch.cat([video.frame_mask.bool(), txt_mask.bool()], dim=1)
    out = c_encoder.encoder(x.reshape(-1, d), AttentionLayout.padded(mask)).view(r, -1, d)
    return out[:, :length]


def attention_pool(pool: nn.Linear, h: Tensor, mask: Tensor, dim: int) -> Tensor:
    """Softmax-weighted sum of ``h`` along ``dim`` with weights ``pool(h)`` (reference pooling).

    Args:
        pool: ``Linear(D, 1)`` giving one score per position.
        h: ``(..., D)``.
        mask: broadcastable to ``h.shape[:-1]``; masked positions get the reference's −1e4 score.
        dim: the pooled dimension of ``h`` (negative, counted before ``D``: e.g. ``-2``).
    """
    scores = mask_logits(pool(h).squeeze(-1).float(), mask)
    weights = F.softmax(scores, dim=dim + 1 if dim < 0 else dim).to(h.dtype)
    return (weights.unsqueeze(-1) * h).sum(dim)


# ---------------------------------------------------------------------------------------------
# Saving and loading task models
# ---------------------------------------------------------------------------------------------


def load_saved(cls: type, directory: str | os.PathLike, strict: bool = True, task_config: Any = None) -> Any:
    """``cls(config, task_config)`` with the weights of a directory written by ``save_pretrained``;
    the task settings come from its ``config.json`` unless given (``cls.task_config_class``)."""
    meta = read_config(directory)
    if strict and meta["architecture"] != cls.__name__:
        raise CheckpointError(f"{directory}: holds a {meta['architecture']}, not a {cls.__name__} "
                              f"(pass strict=False to load the shared weights)")
    try:
        config = HeroConfig.from_dict(meta["config"])
        # the typed loader: JSON lists become the tuples the settings declare
        cfg = task_config or from_dict(cls.task_config_class, meta.get("task_config", {}), where="task_config")
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{Path(directory) / 'config.json'}: {err}") from None
    model = cls(config, cfg)
    model.load_report = load_weights(model, directory, strict=strict)
    return model


def load_reference(cls: type, path: str | os.PathLike, config: HeroConfig | None = None, task_config: Any = None,
                   num_attention_heads: int | None = None, vocab_size: int | None = None,
                   strict: bool = False) -> Any:
    """``cls`` built from a reference checkpoint file: sizes not given are read off the tensor
    shapes; task settings not given come from ``cls.reference_task_config(state, config, path)``
    (e.g. the TVC decoder's sizes), else the defaults."""
    state = read_reference_checkpoint(path)
    if config is None:
        config = reference_config_for(path, state, num_attention_heads, vocab_size)
    if task_config is None:
        task_config = cls.reference_task_config(state, config, str(path))
    model = cls(config, task_config)
    model.load_report = load_reference_state_dict(model, state, strict=strict, source=str(path))
    return model


class TaskModelMixin(PretrainedMixin):
    """``save_pretrained`` / ``from_pretrained`` / ``from_reference`` of task models, through
    `load_saved` and `load_reference` (one definition for every ``HeroFor<Task>``).

    A task model defines ``task_config_class`` and ``__init__(config, task_config=None)``.
    """

    task_config_class: type

    @classmethod
    def reference_task_config(cls, state: dict[str, Any], config: HeroConfig, source: str) -> Any:
        """Task settings a reference state dict implies (None: the defaults)."""
        return None

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, strict: bool = True, task_config: Any = None):
        """Load a saved model; its ``task_config`` comes from ``config.json`` unless given."""
        return load_saved(cls, directory, strict, task_config)

    @classmethod
    def from_reference(cls, path: str | os.PathLike, config: HeroConfig | None = None, task_config: Any = None,
                       num_attention_heads: int | None = None, vocab_size: int | None = None,
                       strict: bool = False):
        """Build from a reference checkpoint; sizes not given are read off the tensor shapes."""
        return load_reference(cls, path, config, task_config, num_attention_heads, vocab_size, strict)
