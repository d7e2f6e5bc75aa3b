"""Multiple-choice video QA: TVQA and How2QA (paper §4.1, App. A.3; reference ``model/videoQA.py``).

Every answer candidate is scored by its own pass over the video, with the question and the
answer *early-fused* into the encoder (reference ``HeroForVideoQA``):

1. The clip is replicated once per answer ``a``. Every subtitle group's text becomes
   ``[SEP] subtitles [SEP] q [SEP] a`` (subtitles with ``sub_ctx_len`` previous ones as context),
   and the Cross-modal Transformer and the residual give the fused frames as usual (`Hero.fuse`).
2. The Temporal Transformer reads ``[frames (position + LN) ; [SEP] q [SEP] a]``: the QA tokens
   are embedded with the backbone's text embeddings, appended after the frames, and attended to
   by them. Only the frame outputs are kept.
3. **Answer**: attention pooling over the frames (``qa_pool``, softmax over frames) → an MLP
   (``qa_pred_head``) → one logit per answer; cross-entropy over the candidates.
4. **Span** (when the question has a moment ``ts``): attention pooling over the *answers* at
   every frame (``st_ed_pool``) → an MLP (``st_ed_pred_head``) → start/end logits over the
   frames; ``lw_st_ed · (CE_st + CE_ed) / 2`` is added to the loss.

All clips × answers of a batch go through the backbone in one call (the replicated groups are
packed like any other batch); there is no Python loop over answers in the forward pass.

The early fusion, `encode_with_text`, lives in `hero.tasks.common` (shared with VIOLIN and open-ended QA).

Reference settings (``train-tvqa-8gpu.json``): ``lw_st_ed = 0.4`` (the paper says λ = 0.5; set
``task_config.lw_st_ed`` to use it), ``lr_mul = 10`` for the heads (``optim.lr_mul``),
``max_txt_len = 120`` (training questions whose ``len(q) + max len(a)`` exceeds it are skipped, and
counted). Predictions are ``{qid: answer_idx}``; the metric is accuracy, also per ``q_type``
(`hero.eval.classification.qa_accuracy`).

Shape letters: ``Q`` questions, ``A`` answers per question, ``R = Q·A`` video copies, ``L``
frames, ``T`` QA tokens, ``D`` hidden.
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
from hero.data.batch import collate_video, pad_token_rows
from hero.data.problems import Problems
from hero.data.protocol import CorpusLike
from hero.errors import HeroError, check_settings
from hero.model.baselines import build_backbone
from hero.model.hero import REFERENCE_KEY_MAP as BACKBONE_KEY_MAP
from hero.model.hero import VideoInputs
from hero.model.layers import MLPHead, mask_logits
from hero.tasks.common import (
    TaskModelMixin,
    attention_pool,
    check_finite_logits,
    checked_records,
    config_from_dict,
    context_groups,
    encode_with_text,
    is_token_ids,
    where,
    write_json_predictions,
)
from hero.tasks.spec import Demo, TaskSpec

IGNORE = -1
"""Span target of a question without a (usable) moment, as in the reference."""


@dataclass
class QaConfig:
    """TVQA/How2QA settings; defaults = reference ``train-tvqa-8gpu.json``."""

    lw_st_ed: float = 0.4
    """Weight of the span loss (reference 0.4; the paper's App. A.3 says 0.5). 0 turns it off."""
    sub_ctx_len: int = 0
    """Each subtitle group's text also holds this many previous subtitles."""
    max_txt_len: int = 120
    """Training skips (and counts) questions with ``len(q) + max_a len(a)`` above this (reference
    ``id2len`` filter). Inference keeps every question."""

    def __post_init__(self) -> None:
        check_settings(self, "task_config", lw_st_ed=">=0")
        problems = []
        if self.lw_st_ed < 0:
            problems.append(f"lw_st_ed must be >= 0, got {self.lw_st_ed}")
        if self.sub_ctx_len < 0:
            problems.append(f"sub_ctx_len must be >= 0, got {self.sub_ctx_len}")
        if self.max_txt_len < 1:
            problems.append(f"max_txt_len must be >= 1, got {self.max_txt_len}")
        if problems:
            raise HeroError("invalid QaConfig: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QaConfig:
        return config_from_dict(cls, data)


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


QA_KEY_MAP: list[tuple[str, str | None]] = [
    ("v_encoder.f_encoder.lm_head.", None),  # pre-training heads inside the reference's video encoder
    ("v_encoder.feat_regress.", None),
    ("v_encoder.fom_output.", None),
    ("qa_pool.", "qa_pool."),
    ("qa_pred_head.", "qa_pred_head."),
    ("st_ed_pool.", "st_ed_pool."),
    ("st_ed_pred_head.", "st_ed_pred_head."),
]
"""Reference ``HeroForVideoQA`` keys that are not backbone keys (the heads keep their names)."""


@dataclass
class QaOutput:
    """Scores of a QA batch.

    Attributes:
        answer_logits: ``(Q, A)``.
        st_logits, ed_logits: ``(Q, L)`` span start/end logits, −1e4 on padded frames.
    """

    answer_logits: Tensor
    st_logits: Tensor
    ed_logits: Tensor


class HeroForVideoQa(nn.Module, TaskModelMixin):
    """HERO + the QA heads (reference ``HeroForVideoQA``).

    Attributes:
        hero: the backbone (`build_backbone`: HERO or an ablation baseline).
        qa_pool, qa_pred_head: frame pooling and answer scoring.
        st_ed_pool, st_ed_pred_head: answer pooling and span scoring.

    The heads keep PyTorch's default initialisation, as in the reference (they are created after
    its initialisation pass). They are outside ``hero.``, so they train at ``lr · optim.lr_mul``.
    """

    REFERENCE_KEY_MAP = QA_KEY_MAP + [
        (ref, None if ours is None else "hero." + ours) for ref, ours in BACKBONE_KEY_MAP
    ]
    task_config_class = QaConfig

    def __init__(self, config: HeroConfig, task_config: QaConfig | None = None) -> None:
        super().__init__()
        self.config = config
        self.task_config = task_config or QaConfig()
        self.hero = build_backbone(config)
        d = config.hidden_size
        self.qa_pool = nn.Linear(d, 1, bias=False)
        self.qa_pred_head = MLPHead(d, 1)
        self.st_ed_pool = nn.Linear(d, 1, bias=False)
        self.st_ed_pred_head = MLPHead(d, 2)

    def forward(self, batch: QaBatch) -> QaOutput:
        frames = encode_with_text(self.hero, batch.video, batch.txt_ids, batch.txt_mask)  # (R, L, D)
        r, length, d = frames.shape
        a = batch.num_answers
        frames = frames.view(r // a, a, length, d)
        frame_mask = batch.video.frame_mask.view(r // a, a, length)
        pooled = attention_pool(self.qa_pool, frames, frame_mask, dim=-2)  # (Q, A, D)
        answer_logits = self.qa_pred_head(pooled).squeeze(-1).float()  # (Q, A)
        per_frame = attention_pool(self.st_ed_pool, frames, torch.ones_like(frame_mask), dim=-3)  # (Q, L, D)
        span = mask_logits(self.st_ed_pred_head(per_frame).float(), frame_mask[:, 0, :, None])  # (Q, L, 2)
        return QaOutput(answer_logits, span[..., 0], span[..., 1])

# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------


@dataclass
class QaBatch:
    """Questions × answers as video copies, answer-major within a question.

    Attributes:
        video: ``R = Q·A`` clips; copy ``q·A + a`` carries answer ``a`` of question ``q`` in its
            subtitle groups.
        txt_ids: ``(R, T)`` ``[SEP] q [SEP] a`` of every copy, padded with the pad id.
        txt_mask: ``(R, T)`` bool.
        num_answers: ``A``.
        targets: ``(Q,)`` gold answer index; None at inference.
        span_targets: ``(Q, 2)`` inclusive start/end frame, −1 where the question has no moment;
            None at inference.
    """

    video: VideoInputs
    txt_ids: Tensor
    txt_mask: Tensor
    num_answers: int
    targets: Tensor | None = None
    span_targets: Tensor | None = None

    def to(self, device: torch.device | str) -> QaBatch:
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return QaBatch(self.video.to(device), move(self.txt_ids), move(self.txt_mask), self.num_answers,
                       move(self.targets), move(self.span_targets))


def span_target(ts: Any, nframes: int, interval: float) -> tuple[int, int]:
    """Inclusive ``(st, ed)`` frame targets of a question's moment; ``(-1, -1)`` without one.

    ``ts`` is ``[st, ed]`` in seconds (our records), the raw TVQA ``"st-ed"`` string, or None.
    A moment that is not a finite pair (TVQA's ``"NaN-NaN"``, kept as ``[NaN, NaN]`` by corpora
    converted before that rule) gives no target, as the reference's ``get_st_ed_label``.
    """
    import math

    from hero.data.alignment import tvqa_span_target, vcmr_span_target

    if ts is None:
        return IGNORE, IGNORE
    if isinstance(ts, str):
        return tvqa_span_target(ts, nframes, interval)
    if not all(isinstance(t, (int, float)) and math.isfinite(t) for t in ts):
        return IGNORE, IGNORE
    return vcmr_span_target(ts, nframes, interval)


def qa_tokens(item: dict, answer: int, sep_id: int) -> list[int]:
    """``[SEP] q [SEP] a`` of one candidate."""
    return [sep_id, *item["q_ids"], sep_id, *item["a_ids"][answer]]


def _qa_batch(corpus: CorpusLike, items: Sequence[dict], cfg: QaConfig, with_targets: bool) -> QaBatch:
    if not items:
        raise HeroError("cannot collate an empty QA batch")
    counts = {len(it["a_ids"]) for it in items}
    if len(counts) != 1:
        raise HeroError(f"questions of one batch must have the same number of answers; got {sorted(counts)} "
                        f"(qids {[it['qid'] for it in items][:5]})")
    a = counts.pop()
    sep, pad = corpus.tokens.sep_id, corpus.tokens.pad_id
    clips = [corpus.clip(it["vid"]) for it in items]
    feats, groups, texts = [], [], []
    for item, clip in zip(items, clips):
        base = context_groups(clip, sep, cfg.sub_ctx_len)
        for j in range(a):
            qa = qa_tokens(item, j, sep)
            feats.append(clip.features)
            groups.append([(frames, [*text, *qa]) for frames, text in base])
            texts.append(qa)
    video = collate_video(feats, groups)
    txt_ids, txt_mask = pad_token_rows(texts, pad)
    batch = QaBatch(video, txt_ids, txt_mask.bool(), a)
    if with_targets:
        batch.targets = torch.tensor([it["answer_idx"] for it in items], dtype=torch.long)
        batch.span_targets = torch.tensor(
            [span_target(it["ts"], clip.num_frames, corpus.frame_interval) for it, clip in zip(items, clips)],
            dtype=torch.long).view(len(items), 2)
    return batch


def collate(corpus: CorpusLike, items: Sequence[dict], cfg: QaConfig,
            generator: torch.Generator | None = None) -> QaBatch:
    """A training batch from `train_items` items (no random choice: ``generator`` is unused)."""
    return _qa_batch(corpus, items, cfg, with_targets=True)


# ---------------------------------------------------------------------------------------------
# Records and items
# ---------------------------------------------------------------------------------------------


def check_record(record: Any, where: str, need_answer: bool) -> None:
    """Raise a `HeroError` naming ``where`` unless ``record`` is a usable QA record."""
    if not isinstance(record, dict):
        raise HeroError(f"{where}: expected a QA record object")
    for key in ("qid", "vid", "q_ids", "a_ids"):
        if key not in record:
            raise HeroError(f"{where}: missing {key!r}")
    if not is_token_ids(record["q_ids"]):
        raise HeroError(f"{where}: 'q_ids' must be a list of token ids")
    a_ids = record["a_ids"]
    if not (isinstance(a_ids, list) and len(a_ids) >= 2 and all(is_token_ids(a) for a in a_ids)):
        raise HeroError(f"{where}: 'a_ids' must be a list of at least 2 token-id lists (one per answer)")
    idx = record.get("answer_idx")
    if idx is not None and not (isinstance(idx, int) and not isinstance(idx, bool) and 0 <= idx < len(a_ids)):
        raise HeroError(f"{where}: 'answer_idx' must be an integer in [0, {len(a_ids)}), got {idx!r}")
    if need_answer and idx is None:
        raise HeroError(f"{where}: 'answer_idx' is null; a training split needs answers")
    ts = record.get("ts")
    if ts is not None and not isinstance(ts, str) and not (
            isinstance(ts, (list, tuple)) and len(ts) == 2 and all(isinstance(t, (int, float)) for t in ts)):
        raise HeroError(f"{where}: 'ts' must be [start, end] in seconds, an \"st-ed\" string or null, got {ts!r}")


def to_item(record: dict) -> dict:
    """The JSON-able item of a record (what `collate` reads)."""
    return {"qid": record["qid"], "vid": record["vid"], "q_ids": list(record["q_ids"]),
            "a_ids": [list(a) for a in record["a_ids"]], "answer_idx": record.get("answer_idx"),
            "ts": record.get("ts")}


def train_items(corpus: CorpusLike, dataset: str, split: str, cfg: QaConfig,
                problems: Problems | None = None) -> list[dict]:
    """One item per question (`to_item`), in annotation order.

    Skipped, and counted in ``problems`` (a warning lists them when none is given): questions whose
    video is not in the corpus, and questions longer than ``cfg.max_txt_len`` (reference filter).
    """
    own = problems is None
    problems = problems or Problems()
    videos = set(corpus.video_ids())
    items = []
    for i, record in enumerate(corpus.annotations(dataset, split)):
        at = where(dataset, split, i)
        check_record(record, at, need_answer=True)
        if record["vid"] not in videos:
            problems.skip("missing video", at, f"video {record['vid']!r} is not in the corpus")
            continue
        length = len(record["q_ids"]) + max(len(a) for a in record["a_ids"])
        if length > cfg.max_txt_len:
            problems.skip("question too long", at,
                          f"len(q) + max len(a) = {length} tokens > max_txt_len {cfg.max_txt_len}")
            continue
        items.append(to_item(record))
    if own and problems.num_skipped:
        warnings.warn(f"{dataset}/{split}: skipped {problems.num_skipped} questions:\n{problems.summary()}",
                      RuntimeWarning, stacklevel=2)
    return items


def eval_records(corpus: CorpusLike, dataset: str, split: str) -> list[dict]:
    """All records of a split, checked (answers may be null)."""
    return checked_records(corpus, dataset, split, lambda r, at: check_record(r, at, need_answer=False))


# ---------------------------------------------------------------------------------------------
# Loss, inference, metric
# ---------------------------------------------------------------------------------------------


def loss(model: HeroForVideoQa, batch: QaBatch, cfg: QaConfig, step: int = 0) -> dict[str, Any]:
    """``qa_loss`` = CE over the answers; ``span_loss`` = ``lw_st_ed · (CE_st + CE_ed) / 2`` over the
    questions with a moment (0 when none has one). ``normalizer`` = questions."""
    out = model(batch)
    qa = F.cross_entropy(out.answer_logits, batch.targets)
    terms: dict[str, Any] = {"qa_loss": qa}
    spans = batch.span_targets
    if cfg.lw_st_ed > 0 and spans is not None:
        keep = (spans[:, 0] != IGNORE) & (spans[:, 1] != IGNORE)
        if bool(keep.any()):
            ce = (F.cross_entropy(out.st_logits[keep], spans[keep, 0])
                  + F.cross_entropy(out.ed_logits[keep], spans[keep, 1])) / 2
        else:
            ce = out.st_logits.sum() * 0.0  # keeps the graph (and DDP's reducer) the same shape
        terms["span_loss"] = cfg.lw_st_ed * ce
    total = sum(terms.values())
    return {"loss": total, **terms, "normalizer": int(batch.targets.shape[0])}


@torch.no_grad()
def predict_logits(model: HeroForVideoQa, corpus: CorpusLike, dataset: str, split: str, cfg: QaConfig,
                   batch_size: int = 8, device: torch.device | str = "cpu") -> dict[str, list[float]]:
    """``{qid: answer logits}`` of every question of a split (annotation order)."""
    records = eval_records(corpus, dataset, split)
    out: dict[str, list[float]] = {}
    was_training = model.training
    model.eval()
    try:
        # questions with the same number of answers are batched together
        order = sorted(range(len(records)), key=lambda i: len(records[i]["a_ids"]))
        for start in range(0, len(order), max(1, batch_size)):
            chunk = [records[i] for i in order[start:start + batch_size]]
            by_count: dict[int, list[dict]] = {}
            for r in chunk:
                by_count.setdefault(len(r["a_ids"]), []).append(r)
            for group in by_count.values():
                batch = _qa_batch(corpus, [to_item(r) for r in group], cfg, with_targets=False).to(device)
                logits = model(batch).answer_logits.float().cpu().tolist()
                for r, row in zip(group, logits):
                    out[str(r["qid"])] = row
    finally:
        model.train(was_training)
    return {str(r["qid"]): out[str(r["qid"])] for r in records}


def predict(model: HeroForVideoQa, corpus: CorpusLike, dataset: str, split: str, cfg: QaConfig, batch_size: int = 8,
            device: torch.device | str = "cpu") -> dict[str, int]:
    """``{qid: answer_idx}`` (argmax of the answer logits) for every question of a split.

    ``batch_size`` counts questions (each is ``A`` video copies).
    """
    logits = predict_logits(model, corpus, dataset, split, cfg, batch_size, device)
    check_finite_logits(logits, "questions' answer scores")
    return {qid: max(range(len(row)), key=row.__getitem__) for qid, row in logits.items()}


def write_predictions(predictions: dict[str, int], path: str | os.PathLike, cfg: QaConfig | None = None) -> None:
    """Write ``{qid: prediction}`` as one JSON object, atomically."""
    write_json_predictions(predictions, path, cfg)


def evaluate(predictions: dict[str, int], corpus: CorpusLike, dataset: str, split: str,
             cfg: QaConfig) -> dict[str, float]:
    """Accuracy (%) overall and per ``q_type`` against the split's answers."""
    from hero.eval.classification import qa_accuracy

    return qa_accuracy(predictions, corpus.annotations(dataset, split), pred_source="predictions",
                       gt_source=f"annotations/{dataset}/{split}.jsonl")


TASK = TaskSpec(
    name="video_qa", datasets=("tvqa", "how2qa"), config_class=QaConfig, model_class=HeroForVideoQa,
    train_items=train_items, collate=collate, loss=loss, predict=predict, evaluate=evaluate,
    write_predictions=write_predictions, eval_kind="qa",
    demo=Demo(dataset="tvqa", title="video QA (tvqa)", steps=400, headline=(("accuracy", "QA accuracy"),),
              lr_mul=10.0),
)
