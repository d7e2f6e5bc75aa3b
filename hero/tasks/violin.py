"""Video-and-language inference, VIOLIN (paper §4.1, App. A.3; reference ``model/violin.py``).

Does a statement follow from a video with subtitles? The statement is early-fused exactly like a
QA candidate (`hero.tasks.common.encode_with_text`): ``[SEP] statement`` is appended to every
subtitle group's text and to the Temporal Transformer's input. Attention pooling over the frames
(``violin_pool``) and an MLP (``violin_pred_head``) give one logit; the loss is binary
cross-entropy on ``sigmoid(logit)`` (the paper says cross-entropy; the reference uses BCE on a
single logit, kept here). A statement is predicted entailed when ``sigmoid(logit) > 0.5``.

Training uses statement pairs, as the reference: VIOLIN writes, for each clip, a true statement
and a minimally edited false one. HERO's converted records name them ``<id>-1`` and ``<id>-0``
(the suffix is the label), and a training item is such a pair, both statements in the same batch
(``batch_size`` counts pairs). Records whose qid has no ``-0``/``-1`` partner on the same video
are items of their own.

Reference settings (``train-violin-8gpu.json``): lr 3e-5, ``lr_mul = 8`` for the heads
(``optim.lr_mul``), 6000 steps, warm-up 600, ``sub_ctx_len = 2``, ``max_txt_len = 120``.
Predictions are ``{qid: 0 | 1}``; the metric is accuracy (`hero.eval.classification.violin_accuracy`).

Shape letters: ``R`` statements (one video copy each), ``L`` frames, ``T`` statement tokens, ``D`` hidden.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hero.config import HeroConfig
from hero.data.problems import Problems
from hero.data.protocol import CorpusLike
from hero.errors import HeroError
from hero.model.baselines import build_backbone
from hero.model.hero import REFERENCE_KEY_MAP as BACKBONE_KEY_MAP
from hero.model.hero import VideoInputs
from hero.model.layers import MLPHead
from hero.tasks.common import (
    TaskModelMixin,
    attention_pool,
    check_finite_logits,
    checked_records,
    config_from_dict,
    encode_with_text,
    fused_text_batch,
    where,
    write_json_predictions,
)
from hero.tasks.spec import Demo, TaskSpec


@dataclass
class ViolinConfig:
    """VIOLIN settings; defaults = reference ``train-violin-8gpu.json``."""

    sub_ctx_len: int = 2
    """Each subtitle group's text also holds this many previous subtitles."""
    max_txt_len: int = 120
    """Training skips (and counts) statements longer than this; inference keeps every statement."""
    pair_statements: bool = True
    """Train on (true, false) statement pairs of a clip, as the reference; False: single statements."""

    def __post_init__(self) -> None:
        problems = []
        if self.sub_ctx_len < 0:
            problems.append(f"sub_ctx_len must be >= 0, got {self.sub_ctx_len}")
        if self.max_txt_len < 1:
            problems.append(f"max_txt_len must be >= 1, got {self.max_txt_len}")
        if problems:
            raise HeroError("invalid ViolinConfig: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ViolinConfig:
        return config_from_dict(cls, data)


VIOLIN_KEY_MAP: list[tuple[str, str | None]] = [
    ("v_encoder.f_encoder.lm_head.", None),  # pre-training heads inside the reference's video encoder
    ("v_encoder.feat_regress.", None),
    ("v_encoder.fom_output.", None),
    ("violin_pool.", "violin_pool."),
    ("violin_pred_head.", "violin_pred_head."),
]
"""Reference ``HeroForViolin`` keys that are not backbone keys."""


class HeroForViolin(nn.Module, TaskModelMixin):
    """HERO + the VIOLIN head (reference ``HeroForViolin``).

    The head keeps PyTorch's default initialisation (as the reference) and trains at
    ``lr · optim.lr_mul`` (it is outside ``hero.``).
    """

    REFERENCE_KEY_MAP = VIOLIN_KEY_MAP + [
        (ref, None if ours is None else "hero." + ours) for ref, ours in BACKBONE_KEY_MAP
    ]
    task_config_class = ViolinConfig

    def __init__(self, config: HeroConfig, task_config: ViolinConfig | None = None) -> None:
        super().__init__()
        self.config = config
        self.task_config = task_config or ViolinConfig()
        self.hero = build_backbone(config)
        self.violin_pool = nn.Linear(config.hidden_size, 1, bias=False)
        self.violin_pred_head = MLPHead(config.hidden_size, 1)

    def forward(self, batch: ViolinBatch) -> Tensor:
        """Entailment logits ``(R,)``."""
        frames = encode_with_text(self.hero, batch.video, batch.txt_ids, batch.txt_mask)  # (R, L, D)
        pooled = attention_pool(self.violin_pool, frames, batch.video.frame_mask, dim=-2)  # (R, D)
        return self.violin_pred_head(pooled).squeeze(-1).float()

# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------


@dataclass
class ViolinBatch:
    """Statements, each with its own copy of its video.

    Attributes:
        video: ``R`` clips whose subtitle groups end with ``[SEP] statement``.
        txt_ids: ``(R, T)`` ``[SEP] statement``, padded with the pad id.
        txt_mask: ``(R, T)`` bool.
        labels: ``(R,)`` float 0/1; None at inference.
    """

    video: VideoInputs
    txt_ids: Tensor
    txt_mask: Tensor
    labels: Tensor | None = None

    def to(self, device: torch.device | str) -> ViolinBatch:
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return ViolinBatch(self.video.to(device), move(self.txt_ids), move(self.txt_mask), move(self.labels))


def _violin_batch(corpus: CorpusLike, rows: Sequence[tuple[str, Sequence[int], int | None]],
                  cfg: ViolinConfig) -> ViolinBatch:
    """Batch of ``(vid, statement ids, label or None)`` rows."""
    if not rows:
        raise HeroError("cannot collate an empty VIOLIN batch")
    video, txt_ids, txt_mask = fused_text_batch(corpus, [(vid, ids) for vid, ids, _ in rows], cfg.sub_ctx_len)
    labels = None
    if all(label is not None for _, _, label in rows):
        labels = torch.tensor([float(label) for _, _, label in rows])
    return ViolinBatch(video, txt_ids, txt_mask, labels)


def collate(corpus: CorpusLike, items: Sequence[dict], cfg: ViolinConfig,
            generator: torch.Generator | None = None) -> ViolinBatch:
    """A training batch from `train_items` items: every statement of every item, in order
    (no random choice: ``generator`` is unused)."""
    rows = [(item["vid"], s["input_ids"], s["label"]) for item in items for s in item["statements"]]
    return _violin_batch(corpus, rows, cfg)


# ---------------------------------------------------------------------------------------------
# Records and items
# ---------------------------------------------------------------------------------------------


def check_record(record: Any, where: str, need_label: bool) -> None:
    """Raise a `HeroError` naming ``where`` unless ``record`` is a usable VIOLIN record."""
    if not isinstance(record, dict):
        raise HeroError(f"{where}: expected a VIOLIN record object")
    for key in ("qid", "vid", "input_ids"):
        if key not in record:
            raise HeroError(f"{where}: missing {key!r}")
    ids = record["input_ids"]
    if not (isinstance(ids, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in ids)):
        raise HeroError(f"{where}: 'input_ids' must be a list of token ids")
    label = record.get("label")
    if label is not None and (isinstance(label, bool) or label not in (0, 1)):
        raise HeroError(f"{where}: 'label' must be 0, 1 or null, got {label!r}")
    if need_label and label is None:
        raise HeroError(f"{where}: 'label' is null; a training split needs labels")


def pair_key(record: dict) -> tuple[str, str]:
    """Records with the same key form a (true, false) pair: same video, qid up to a ``-0``/``-1`` suffix."""
    qid = str(record["qid"])
    stem = qid[:-2] if qid.endswith(("-0", "-1")) else qid
    return str(record["vid"]), stem


def train_items(corpus: CorpusLike, dataset: str, split: str, cfg: ViolinConfig,
                problems: Problems | None = None) -> list[dict]:
    """Items ``{"vid", "statements": [{"qid", "input_ids", "label"}, ...]}``: statement pairs (or
    single statements without ``cfg.pair_statements``), in order of first appearance.

    Skipped and counted (a warning lists them when no ``problems`` is given): statements whose video
    is not in the corpus, and statements longer than ``cfg.max_txt_len`` tokens.
    """
    own = problems is None
    problems = problems or Problems()
    videos = set(corpus.video_ids())
    items: dict[Any, dict] = {}
    for i, record in enumerate(corpus.annotations(dataset, split)):
        at = where(dataset, split, i)
        check_record(record, at, need_label=True)
        if record["vid"] not in videos:
            problems.skip("missing video", at, f"video {record['vid']!r} is not in the corpus")
            continue
        if len(record["input_ids"]) > cfg.max_txt_len:
            problems.skip("statement too long", at,
                          f"{len(record['input_ids'])} tokens > max_txt_len {cfg.max_txt_len}")
            continue
        key = pair_key(record) if cfg.pair_statements else i
        statement = {"qid": record["qid"], "input_ids": list(record["input_ids"]), "label": record["label"]}
        items.setdefault(key, {"vid": record["vid"], "statements": []})["statements"].append(statement)
    if own and problems.num_skipped:
        warnings.warn(f"{dataset}/{split}: skipped {problems.num_skipped} statements:\n{problems.summary()}",
                      RuntimeWarning, stacklevel=2)
    return list(items.values())


def eval_records(corpus: CorpusLike, dataset: str, split: str) -> list[dict]:
    """All records of a split, checked (labels may be null): every video in the corpus, qids unique."""
    return checked_records(corpus, dataset, split, lambda r, at: check_record(r, at, need_label=False))


# ---------------------------------------------------------------------------------------------
# Loss, inference, metric
# ---------------------------------------------------------------------------------------------


def loss(model: HeroForViolin, batch: ViolinBatch, cfg: ViolinConfig, step: int = 0) -> dict[str, Any]:
    """Binary cross-entropy of the entailment logits, mean over statements (``normalizer``)."""
    value = F.binary_cross_entropy_with_logits(model(batch), batch.labels)
    return {"loss": value, "violin_loss": value, "normalizer": int(batch.labels.shape[0])}


@torch.no_grad()
def predict_logits(model: HeroForViolin, corpus: CorpusLike, dataset: str, split: str, cfg: ViolinConfig,
                   batch_size: int = 16, device: torch.device | str = "cpu") -> dict[str, float]:
    """``{qid: logit}`` of every statement of a split (annotation order)."""
    records = eval_records(corpus, dataset, split)
    out: dict[str, float] = {}
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(records), max(1, batch_size)):
            chunk = records[start:start + batch_size]
            batch = _violin_batch(corpus, [(r["vid"], r["input_ids"], None) for r in chunk], cfg).to(device)
            for r, logit in zip(chunk, model(batch).float().cpu().tolist()):
                out[str(r["qid"])] = logit
    finally:
        model.train(was_training)
    return out


def predict(model: HeroForViolin, corpus: CorpusLike, dataset: str, split: str, cfg: ViolinConfig, batch_size: int = 16,
            device: torch.device | str = "cpu") -> dict[str, int]:
    """``{qid: 1 if sigmoid(logit) > 0.5 else 0}`` for every statement; ``batch_size`` counts statements."""
    logits = predict_logits(model, corpus, dataset, split, cfg, batch_size, device)
    check_finite_logits(logits, "statements' scores")
    return {qid: int(logit > 0.0) for qid, logit in logits.items()}


def evaluate(predictions: dict[str, int], corpus: CorpusLike, dataset: str, split: str,
             cfg: ViolinConfig) -> dict[str, float]:
    """Accuracy (%) against the split's labels."""
    from hero.eval.classification import violin_accuracy

    return violin_accuracy(predictions, corpus.annotations(dataset, split), pred_source="predictions",
                           gt_source=f"annotations/{dataset}/{split}.jsonl")


def write_predictions(predictions: dict[str, int], path: str | os.PathLike, cfg: ViolinConfig | None = None) -> None:
    """Write ``{qid: 0 | 1}`` as one JSON object, atomically."""
    write_json_predictions(predictions, path, cfg)


TASK = TaskSpec(
    name="violin", datasets=("violin",), config_class=ViolinConfig, model_class=HeroForViolin,
    train_items=train_items, collate=collate, loss=loss, predict=predict, evaluate=evaluate,
    write_predictions=write_predictions, eval_kind="violin",
    demo=Demo(dataset="violin", title="VIOLIN (violin)", steps=600, headline=(("accuracy", "VIOLIN accuracy"),),
              lr_mul=8.0),
)
