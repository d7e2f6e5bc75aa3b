"""Open-ended video QA, MSR-VTT-QA style: the answer is a class of a fixed answer vocabulary.

The question is early-fused like a VIOLIN statement (`hero.tasks.common.encode_with_text`):
``[SEP] q`` is appended to every subtitle group's text and to the Temporal Transformer's input.
Attention pooling over the frames (``open_qa_pool``) and an MLP (``open_qa_head``) give one logit
per answer of ``cfg.answers``; the loss is cross-entropy. Following the MSR-VTT-QA protocol,
training questions whose answer is outside the vocabulary are skipped (and counted), while at
evaluation every question counts (an answer outside the vocabulary is always wrong).

The vocabulary is a task setting (``task_config.answers``, saved with the model): MSR-VTT-QA
uses the 1000 most frequent training answers (`answer_vocabulary` lists them).

Records (``annotations/msrvtt_qa/<split>.jsonl``): ``{"qid", "vid", "q", "q_ids", "answer": str |
null, "q_type": str | null}``. Predictions are ``{qid: answer}``; the metric is accuracy (%),
also per ``q_type``.

Shape letters: ``R`` questions (one video copy each), ``L`` frames, ``T`` question tokens,
``D`` hidden, ``K`` answers.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hero.config import HeroConfig
from hero.data.problems import Problems
from hero.data.protocol import CorpusLike
from hero.data.synth import OPEN_QA_ANSWERS
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
    is_token_ids,
    where,
    write_json_predictions,
)
from hero.tasks.spec import Demo, TaskSpec


@dataclass
class OpenQaConfig:
    """Open-ended QA settings."""

    answers: tuple[str, ...] = ()
    """The answer vocabulary: one class per answer (MSR-VTT-QA: the 1000 most frequent training
    answers, `answer_vocabulary`)."""
    sub_ctx_len: int = 0
    """Each subtitle group's text also holds this many previous subtitles."""
    max_txt_len: int = 60
    """Training skips (and counts) questions longer than this; inference keeps every question."""

    def __post_init__(self) -> None:
        self.answers = tuple(self.answers)
        problems = []
        if len(self.answers) < 2:
            problems.append(f"answers must list at least 2 answers (the vocabulary), got {len(self.answers)}")
        if not all(isinstance(a, str) and a for a in self.answers):
            problems.append("answers must be non-empty strings")
        elif len(set(self.answers)) != len(self.answers):
            twice = sorted(a for a, n in Counter(self.answers).items() if n > 1)
            problems.append(f"answers must be distinct, repeated: {twice[:5]}")
        if self.sub_ctx_len < 0:
            problems.append(f"sub_ctx_len must be >= 0, got {self.sub_ctx_len}")
        if self.max_txt_len < 1:
            problems.append(f"max_txt_len must be >= 1, got {self.max_txt_len}")
        if problems:
            raise HeroError("invalid OpenQaConfig: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OpenQaConfig:
        return config_from_dict(cls, data)


def answer_vocabulary(records: Sequence[dict], top_k: int = 1000) -> list[str]:
    """The ``top_k`` most frequent answers of ``records`` (ties: first seen first), for ``answers``."""
    counts = Counter(r["answer"] for r in records if r.get("answer") is not None)
    return [a for a, _ in counts.most_common(top_k)]


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


OPEN_QA_KEY_MAP: list[tuple[str, str | None]] = [
    ("v_encoder.f_encoder.lm_head.", None),  # pre-training heads inside the reference's video encoder
    ("v_encoder.feat_regress.", None),
    ("v_encoder.fom_output.", None),
    ("open_qa_pool.", "open_qa_pool."),  # no reference model: the heads keep their names
    ("open_qa_head.", "open_qa_head."),
]


class HeroForVideoQaOpen(nn.Module, TaskModelMixin):
    """HERO + attention pooling over the frames + an MLP over the answer vocabulary.

    The heads keep PyTorch's default initialisation and train at ``lr · optim.lr_mul``.
    """

    REFERENCE_KEY_MAP = OPEN_QA_KEY_MAP + [
        (ref, None if ours is None else "hero." + ours) for ref, ours in BACKBONE_KEY_MAP
    ]
    task_config_class = OpenQaConfig

    def __init__(self, config: HeroConfig, task_config: OpenQaConfig | None = None) -> None:
        super().__init__()
        if task_config is None:
            raise HeroError("HeroForVideoQaOpen needs its task settings: the answer vocabulary (answers)")
        self.config = config
        self.task_config = task_config
        self.hero = build_backbone(config)
        self.open_qa_pool = nn.Linear(config.hidden_size, 1, bias=False)
        self.open_qa_head = MLPHead(config.hidden_size, len(task_config.answers))

    def forward(self, batch: OpenQaBatch) -> Tensor:
        """Answer logits ``(R, K)``."""
        frames = encode_with_text(self.hero, batch.video, batch.txt_ids, batch.txt_mask)  # (R, L, D)
        pooled = attention_pool(self.open_qa_pool, frames, batch.video.frame_mask, dim=-2)  # (R, D)
        return self.open_qa_head(pooled).float()


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------


@dataclass
class OpenQaBatch:
    """Questions, each with its own copy of its video.

    Attributes:
        video: ``R`` clips whose subtitle groups end with ``[SEP] q``.
        txt_ids: ``(R, T)`` ``[SEP] q``, padded with the pad id.
        txt_mask: ``(R, T)`` bool.
        targets: ``(R,)`` answer class; None at inference.
    """

    video: VideoInputs
    txt_ids: Tensor
    txt_mask: Tensor
    targets: Tensor | None = field(default=None)

    def to(self, device: torch.device | str) -> OpenQaBatch:
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return OpenQaBatch(self.video.to(device), move(self.txt_ids), move(self.txt_mask), move(self.targets))


def _batch(corpus: CorpusLike, rows: Sequence[tuple[str, Sequence[int], int | None]],
           cfg: OpenQaConfig) -> OpenQaBatch:
    """Batch of ``(vid, question ids, answer class or None)`` rows."""
    if not rows:
        raise HeroError("cannot collate an empty open-ended QA batch")
    video, txt_ids, txt_mask = fused_text_batch(corpus, [(vid, ids) for vid, ids, _ in rows], cfg.sub_ctx_len)
    targets = None
    if all(target is not None for _, _, target in rows):
        targets = torch.tensor([target for _, _, target in rows], dtype=torch.long)
    return OpenQaBatch(video, txt_ids, txt_mask, targets)


def collate(corpus: CorpusLike, items: Sequence[dict], cfg: OpenQaConfig,
            generator: torch.Generator | None = None) -> OpenQaBatch:
    """A training batch from `train_items` items (no random choice: ``generator`` is unused)."""
    return _batch(corpus, [(it["vid"], it["q_ids"], it["target"]) for it in items], cfg)


# ---------------------------------------------------------------------------------------------
# Records and items
# ---------------------------------------------------------------------------------------------


def check_record(record: Any, at: str, need_answer: bool) -> None:
    """Raise a `HeroError` naming ``at`` unless ``record`` is a usable open-ended QA record."""
    if not isinstance(record, dict):
        raise HeroError(f"{at}: expected an open-ended QA record object")
    for key in ("qid", "vid", "q_ids"):
        if key not in record:
            raise HeroError(f"{at}: missing {key!r}")
    if not is_token_ids(record["q_ids"]):
        raise HeroError(f"{at}: 'q_ids' must be a list of token ids")
    answer = record.get("answer")
    if answer is not None and not isinstance(answer, str):
        raise HeroError(f"{at}: 'answer' must be a string or null, got {answer!r}")
    if need_answer and answer is None:
        raise HeroError(f"{at}: 'answer' is null; a training split needs answers")


def train_items(corpus: CorpusLike, dataset: str, split: str, cfg: OpenQaConfig,
                problems: Problems | None = None) -> list[dict]:
    """Items ``{"qid", "vid", "q_ids", "target"}`` in annotation order.

    Skipped and counted (a warning lists them when no ``problems`` is given): questions whose video
    is not in the corpus, longer than ``cfg.max_txt_len``, or whose answer is not in ``cfg.answers``.
    """
    own = problems is None
    problems = problems or Problems()
    videos = set(corpus.video_ids())
    index = {a: i for i, a in enumerate(cfg.answers)}
    items = []
    for i, record in enumerate(corpus.annotations(dataset, split)):
        at = where(dataset, split, i)
        check_record(record, at, need_answer=True)
        if record["vid"] not in videos:
            problems.skip("missing video", at, f"video {record['vid']!r} is not in the corpus")
        elif len(record["q_ids"]) > cfg.max_txt_len:
            problems.skip("question too long", at, f"{len(record['q_ids'])} tokens > max_txt_len {cfg.max_txt_len}")
        elif record["answer"] not in index:
            problems.skip("answer not in the vocabulary", at, f"{record['answer']!r} is not in task_config.answers")
        else:
            items.append({"qid": record["qid"], "vid": record["vid"], "q_ids": list(record["q_ids"]),
                          "target": index[record["answer"]]})
    if own and problems.num_skipped:
        warnings.warn(f"{dataset}/{split}: skipped {problems.num_skipped} questions:\n{problems.summary()}",
                      RuntimeWarning, stacklevel=2)
    return items


# ---------------------------------------------------------------------------------------------
# Loss, inference, metric
# ---------------------------------------------------------------------------------------------


def loss(model: HeroForVideoQaOpen, batch: OpenQaBatch, cfg: OpenQaConfig, step: int = 0) -> dict[str, Any]:
    """Cross-entropy over the answer vocabulary, mean over questions (``normalizer``)."""
    value = F.cross_entropy(model(batch), batch.targets)
    return {"loss": value, "open_qa_loss": value, "normalizer": int(batch.targets.shape[0])}


@torch.no_grad()
def predict(model: HeroForVideoQaOpen, corpus: CorpusLike, dataset: str, split: str, cfg: OpenQaConfig,
            batch_size: int = 16, device: torch.device | str = "cpu") -> dict[str, str]:
    """``{qid: answer}`` (argmax over the vocabulary) for every question; ``batch_size`` counts questions."""
    records = checked_records(corpus, dataset, split, lambda r, at: check_record(r, at, need_answer=False))
    logits: dict[str, list[float]] = {}
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(records), max(1, batch_size)):
            chunk = records[start:start + batch_size]
            batch = _batch(corpus, [(r["vid"], r["q_ids"], None) for r in chunk], cfg).to(device)
            for r, row in zip(chunk, model(batch).float().cpu().tolist()):
                logits[str(r["qid"])] = row
    finally:
        model.train(was_training)
    check_finite_logits(logits, "questions' answer scores")
    return {qid: cfg.answers[max(range(len(row)), key=row.__getitem__)] for qid, row in logits.items()}


def write_predictions(predictions: dict[str, str], path: str | os.PathLike, cfg: OpenQaConfig | None = None) -> None:
    """Write ``{qid: answer}`` as one JSON object, atomically."""
    write_json_predictions(predictions, path, cfg)


def evaluate(predictions: dict[str, str], corpus: CorpusLike, dataset: str, split: str,
             cfg: OpenQaConfig) -> dict[str, float]:
    """Accuracy (%) overall and per ``q_type``: exact match with the record's answer; every
    question counts, a missing prediction is an error naming it."""
    records = corpus.annotations(dataset, split)
    correct: Counter = Counter()
    total: Counter = Counter()
    for i, r in enumerate(records):
        at = where(dataset, split, i)
        if r.get("answer") is None:
            raise HeroError(f"{at}: no answer (a split without answers cannot be scored)")
        qid = str(r["qid"])
        if qid not in predictions:
            raise HeroError(f"predictions: no answer for qid {qid!r} ({at})")
        for key in ("all", f"{r.get('q_type')}" if r.get("q_type") else None):
            if key is not None:
                total[key] += 1
                correct[key] += predictions[qid] == r["answer"]
    if not total["all"]:
        raise HeroError(f"annotations/{dataset}/{split}.jsonl: no question to score")
    out = {"accuracy": round(100.0 * correct["all"] / total["all"], 2)}
    for key in sorted(k for k in total if k != "all"):
        out[f"accuracy_{key}"] = round(100.0 * correct[key] / total[key], 2)
    return out


TASK = TaskSpec(
    name="video_qa_open", datasets=("msrvtt_qa",), config_class=OpenQaConfig, model_class=HeroForVideoQaOpen,
    train_items=train_items, collate=collate, loss=loss, predict=predict, evaluate=evaluate,
    write_predictions=write_predictions, eval_kind="open_qa",
    demo=Demo(dataset="msrvtt_qa", title="open-ended video QA (msrvtt_qa)", steps=400,
              headline=(("accuracy", "open QA accuracy"),), lr_mul=10.0, quickstart=False,
              task_config={"answers": list(OPEN_QA_ANSWERS)}),
)
