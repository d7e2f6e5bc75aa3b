"""Video corpus moment retrieval (VCMR, TVR/How2R/DiDeMo) and video retrieval (VR, MSR-VTT):
fine-tuning with the VSM loss and corpus-scale inference (paper §4.1; reference ``train_vcmr.py``,
``train_vr.py``, ``eval_vcmr.py``; notes §2.3 and §4.1).

* **Training**: one item per query, with its video; ``group_key`` is the video, so the fine-tuning
  packer never puts a video twice into a global batch (the reference can, which makes a video its
  own in-batch negative). The loss is the VSM loss (`hero.objectives.vsm`): local start/end
  cross-entropy (computed on a step with probability ``1 − drop_svmr_prob``) plus the hinge ranking
  losses over in-batch negatives, with the hard-negative weighting from ``hard_negative_start_step``.
* **Inference** (`predict`): the corpus is encoded once (`encode_corpus`, sharded across ranks and
  gathered when ``torch.distributed`` is initialised), queries are encoded, videos are ranked by the
  global score ``S`` (max over frames of the query–frame cosine) with ``torch.topk``, and only the
  top ``max_vcmr_video`` videos get span scores ``P_st(m) · exp(α·S) · P_ed(n)`` under the
  ``min_pred_l ≤ n − m < max_pred_l`` mask (`hero.eval.moments`). Output: the official TVR
  submission dict (``video2idx`` and the ``VCMR``/``SVMR``/``VR`` lists of
  ``[video_idx, st, ed, score]``), each cut to ``max_after_nms``.
* **Metrics** (`evaluate`): the official TVR evaluator (`hero.eval.tvr.eval_retrieval`) on the raw
  lists and, when ``nms_thd ≥ 0``, on the lists after temporal NMS (the official pipeline runs NMS
  on the already cut lists, so the same happens here).

Shape letters: ``V`` videos of the corpus, ``L`` frames (padded), ``D`` hidden, ``Q`` queries,
``K`` top videos per query.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hero.config import HeroConfig, to_dict
from hero.data.batch import Clip, Group, collate_video, pad_token_rows
from hero.data.protocol import CorpusLike
from hero.errors import HeroError, NonFiniteError, SettingError, check_settings
from hero.io import write_text_atomic
from hero.model.baselines import build_backbone
from hero.model.hero import REFERENCE_KEY_MAP as BACKBONE_KEY_MAP
from hero.objectives.vsm import NORMALIZE_EPS, VsmBatch, VsmConfig, VsmHead, VsmObjective
from hero.tasks.common import TaskModelMixin
from hero.tasks.spec import Demo, TaskSpec

SUBMISSION_TASKS = ("VCMR", "SVMR", "VR")


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------


@dataclass
class RetrievalConfig:
    """VCMR settings; defaults = reference ``train-tvr-8gpu.json`` (TVR).

    The same fields serve every dataset; ``configs/finetune/*.yaml`` set the other datasets' values.
    """

    # -- data --
    drop_long_train_queries: bool = True
    """Training queries longer than ``vsm.max_txt_len`` tokens are dropped (reference ``id2len``
    filter) and counted; False truncates them."""
    inference_max_txt_len: int | None = None
    """Query tokens after ``[CLS]`` at inference. None: the whole query, as the official
    evaluation (``QueryTokLmdb(db, -1)``); only the query position table bounds it."""
    sub_ctx_len: int = 0
    """Each subtitle group's text also holds this many previous subtitles (MSR-VTT with ASR: 1)."""
    video_only: bool = False
    """Ignore subtitles: a video is one text-less group of all its frames (reference
    ``VideoFeatDataset``, DiDeMo/MSR-VTT video-only)."""
    video_only_group_len: int = 100
    """With ``video_only``: frames per group (the reference's ``max_frm_seq_len``; at most the
    model's ``max_frm_seq_len``)."""
    # -- loss (VSM) --
    vsm: VsmConfig = dataclasses.field(default_factory=lambda: retrieval_vsm())
    """The VSM objective settings (`hero.objectives.vsm.VsmConfig`): loss weights, margin, ranking
    loss, span-loss drop probability, hard-negative schedule, ``max_txt_len`` (training query tokens
    after ``[CLS]``) and ``span_padding``. Defaults: `retrieval_vsm` (one query per video, hard
    negatives from step 2000). ``span_padding`` also rules inference: ``reference``: as the official
    ``validate_full_vcmr``, the corpus is encoded in chunks of ``video_batch_size`` videos in
    sorted-name order and the temporal transformer's outputs at the padded positions of each chunk
    are kept, so the last two frames' probabilities of a clip shorter than its chunk depend on the
    chunking. ``zeros``: those positions are zero, every clip is scored as if encoded alone
    (independent of batch size and order). ``hard_negative_start_step`` counts optimizer steps
    (1-based; None: never); ``drop_svmr_prob`` is drawn per optimizer step (`span_step`).
    Older flat keys (``task_config.margin``) are moved here when loading (`migrate_settings`)."""
    span_draw_seed: int = 0
    """Seed of the per-step span-loss draws."""
    # -- inference --
    q2c_alpha: float = 20.0
    """α of the video factor ``exp(α·S)``."""
    max_vcmr_video: int = 100
    """K: videos per query that get span scores (and VR list length before the cut)."""
    min_pred_l: int = 2
    max_pred_l: int = 16
    """Valid moments ``[m, n]`` (inclusive frames) have ``min_pred_l ≤ n − m < max_pred_l``."""
    max_before_nms: int = 200
    max_after_nms: int = 100
    nms_thd: float = 0.5
    """Temporal-NMS IoU threshold of the second set of metrics; −1 disables NMS."""
    query_batch_size: int = 80
    """Queries scored together (reference ``vcmr_eval_batch_size``)."""
    video_batch_size: int | None = None
    """Videos per encoder call at inference (reference ``vcmr_eval_video_batch_size``, 50 for
    TVR). None: the ``batch_size`` given to `predict`. With ``span_padding: reference`` it changes
    the scores (see ``span_padding``)."""
    score_chunk_elems: int = 2**25
    """Upper bound on the elements of the intermediate tensors of one scoring step (memory knob)."""
    tasks: tuple[str, ...] = SUBMISSION_TASKS
    """Lists to predict, among VCMR, SVMR, VR."""
    vr_score: str = "exp"
    """VR list scores: ``exp`` (``exp(α·S)``, TVR) or ``cosine`` (raw ``S``, reference MSR-VTT)."""

    def __post_init__(self) -> None:
        if not isinstance(self.vsm, VsmConfig):
            raise HeroError(f"task_config.vsm must be a VsmConfig, got {self.vsm!r}")
        if self.vsm.queries_per_video != 1:
            raise SettingError("vsm.queries_per_video", "1 (fine-tuning pairs each query with its video)",
                               self.vsm.queries_per_video, "task_config")
        check_settings(self, "task_config", span_draw_seed=">=0", q2c_alpha=">0", min_pred_l=">=0",
                       max_pred_l=">=1", score_chunk_elems=">=1")
        if not (self.nms_thd == -1 or 0 <= self.nms_thd <= 1):  # NaN fails both
            raise SettingError("nms_thd", "in [0, 1] or -1 (no NMS)", self.nms_thd, "task_config")
        if self.max_pred_l <= self.min_pred_l:
            raise SettingError("max_pred_l", f"> min_pred_l ({self.min_pred_l})", self.max_pred_l, "task_config")
        problems = []
        for name in ("video_only_group_len", "max_vcmr_video", "max_before_nms", "max_after_nms",
                     "query_batch_size", "inference_max_txt_len", "video_batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.sub_ctx_len < 0:
            problems.append(f"sub_ctx_len must be >= 0, got {self.sub_ctx_len}")
        bad = [t for t in self.tasks if t not in SUBMISSION_TASKS]
        if bad or not self.tasks:
            problems.append(f"tasks must be a non-empty subset of {list(SUBMISSION_TASKS)}, got {list(self.tasks)}")
        if self.vr_score not in ("exp", "cosine"):
            problems.append(f"vr_score must be 'exp' or 'cosine', got {self.vr_score!r}")
        if problems:
            raise HeroError("invalid retrieval settings: " + "; ".join(problems))

    @classmethod
    def migrate_settings(cls, data: dict[str, Any], where: str = "task_config") -> dict[str, Any]:
        """Settings of the older flat layout (``margin: 0.2`` beside the inference keys, as saved
        ``config.json`` files and YAML written before the nested ``vsm`` block hold them) moved
        into ``vsm``, with a one-line deprecation note; a partial ``vsm`` mapping is completed
        with this class's VSM defaults (not `VsmConfig`'s pre-training ones). Flat keys win over
        nested ones (they are the later override when a flat override meets saved settings)."""
        flat = {k: data[k] for k in VSM_KEYS if k in data}
        nested = data.get("vsm", {})
        if not isinstance(nested, dict):
            return data  # a VsmConfig object or a bad value: the loader decides
        out = {k: v for k, v in data.items() if k not in flat}
        if flat:
            print(f"note: {where or 'task settings'}: flat key(s) {', '.join(flat)} are deprecated; read as "
                  f"{', '.join('vsm.' + k for k in flat)}", file=sys.stderr)
        default = next(f for f in dataclasses.fields(cls) if f.name == "vsm").default_factory()
        out["vsm"] = {**to_dict(default), **nested, **flat}
        return out


def retrieval_vsm(**changes: Any) -> VsmConfig:
    """The VSM settings of retrieval fine-tuning (reference ``train-tvr-8gpu.json``): one query per
    video, hard negatives from optimizer step 2000, the rest `VsmConfig`'s defaults; ``changes``
    on top."""
    return VsmConfig(**{"queries_per_video": 1, "hard_negative_start_step": 2000, **changes})


def with_vsm(cfg: RetrievalConfig, **changes: Any) -> RetrievalConfig:
    """``cfg`` with its VSM settings changed (``with_vsm(cfg, margin=0.2)``)."""
    return dataclasses.replace(cfg, vsm=dataclasses.replace(cfg.vsm, **changes))


VSM_KEYS = tuple(f.name for f in dataclasses.fields(VsmConfig))
"""The `VsmConfig` keys, read from the flat layout by `RetrievalConfig.migrate_settings`."""


@dataclass
class VrConfig(RetrievalConfig):
    """VR settings; defaults = reference ``train-msrvtt_video_sub-4gpu.json`` (ranking loss only)."""

    vsm: VsmConfig = dataclasses.field(default_factory=lambda: retrieval_vsm(
        lw_st_ed=0.0, lw_neg_ctx=10.0, lw_neg_q=10.0, drop_svmr_prob=1.0, hard_pool_size=80))
    tasks: tuple[str, ...] = ("VR",)
    vr_score: str = "cosine"


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


VCMR_KEY_MAP: list[tuple[str, str | None]] = [
    # the reference task models keep the pre-training heads inside the video encoder (unused)
    ("v_encoder.f_encoder.lm_head.", None),
    ("v_encoder.feat_regress.", None),
    ("v_encoder.fom_output.", None),
    ("video_query_linear.", "vsm_head.query_linear."),
    ("video_st_predictor.", "vsm_head.st_conv."),
    ("video_ed_predictor.", "vsm_head.ed_conv."),
]


class HeroForVcmr(nn.Module, TaskModelMixin):
    """HERO + the VSM head (reference ``HeroForVcmr``; same parameters as pre-training's VSM part).

    Attributes:
        hero: the `Hero` backbone (frame representations, query vectors).
        vsm_head: `VsmHead` (query projection and start/end convolutions), named like the
            pre-training head so a pre-trained one carries over.
    """

    REFERENCE_KEY_MAP = VCMR_KEY_MAP + [
        (ref, None if ours is None else "hero." + ours) for ref, ours in BACKBONE_KEY_MAP
    ]
    task_config_class = RetrievalConfig

    def __init__(self, config: HeroConfig, task_config: RetrievalConfig | None = None) -> None:
        super().__init__()
        self.config = config
        self.task_config = task_config or self.task_config_class()
        self.hero = build_backbone(config)
        # PyTorch's default initialisation, as the reference (created after its init pass)
        self.vsm_head = VsmHead(config)


class HeroForVr(HeroForVcmr):
    """HERO for video retrieval (reference ``HeroForVr``: identical parameters, global score only)."""

    task_config_class = VrConfig


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def _where(dataset: str, split: str, i: int) -> str:
    return f"annotations/{dataset}/{split}.jsonl:{i + 1}"


def _check_record(record: Any, where: str) -> None:
    if not isinstance(record, dict):
        raise HeroError(f"{where}: expected a retrieval record object")
    for key in ("qid", "input_ids"):
        if key not in record:
            raise HeroError(f"{where}: missing {key!r}")
    ids = record["input_ids"]
    if not isinstance(ids, list) or not all(isinstance(t, int) for t in ids):
        raise HeroError(f"{where}: 'input_ids' must be a list of token ids")
    ts = record.get("ts")
    if ts is not None and not _spans(ts):
        raise HeroError(f"{where}: 'ts' must be [st, ed] or a list of [st, ed] in seconds, got {ts!r}")


def _spans(ts: Any) -> list[tuple[float, float]]:
    """``ts`` as a list of ``(st, ed)``; [] when malformed."""
    num = (int, float)
    if isinstance(ts, (list, tuple)) and len(ts) == 2 and all(isinstance(t, num) and not isinstance(t, bool)
                                                            for t in ts):
        return [(float(ts[0]), float(ts[1]))]
    if isinstance(ts, (list, tuple)) and ts and all(isinstance(s, (list, tuple)) and len(s) == 2 for s in ts):
        if all(isinstance(t, num) and not isinstance(t, bool) for s in ts for t in s):
            return [(float(s[0]), float(s[1])) for s in ts]
    return []


def training_span(ts: Any) -> tuple[float, float] | None:
    """The moment a query is trained on: its span, or for several annotations (DiDeMo) the one
    given most often (the first of those on a tie)."""
    spans = _spans(ts) if ts is not None else []
    if not spans:
        return None
    counts = Counter(spans)
    return max(spans, key=lambda s: (counts[s], -spans.index(s)))


def train_items(corpus: CorpusLike, dataset: str, split: str, cfg: RetrievalConfig) -> list[dict]:
    """One item per query: ``{"qid", "vid", "input_ids", "ts": [st, ed] | None}``.

    Queries whose video is not in the corpus, or (with ``drop_long_train_queries``) longer than
    ``max_txt_len`` tokens, are dropped and counted (a summary is printed).
    """
    from hero.data.problems import Problems

    problems = Problems(strict=False)
    known = set(corpus.video_ids())
    items = []
    for i, record in enumerate(corpus.annotations(dataset, split)):
        where = _where(dataset, split, i)
        _check_record(record, where)
        vid = record.get("vid")
        if vid not in known:
            problems.skip("missing video", where, f"video {vid!r} of query {record['qid']!r} is not in the corpus")
            continue
        ids = record["input_ids"]
        if len(ids) > cfg.vsm.max_txt_len:
            if cfg.drop_long_train_queries:
                problems.skip("long query", where, f"{len(ids)} tokens > max_txt_len {cfg.vsm.max_txt_len}")
                continue
            ids = ids[:cfg.vsm.max_txt_len]
        span = training_span(record.get("ts"))
        items.append({"qid": record["qid"], "vid": vid, "input_ids": list(ids),
                      "ts": None if span is None else list(span)})
    if problems.skipped:
        print(f"{dataset}/{split} training queries: {problems.summary()}")
    return items


def group_key(item: dict) -> str:
    """Items sharing a key never share a global batch: one video per batch at most once."""
    return item["vid"]


def video_groups(clip: Clip, corpus: CorpusLike, cfg: RetrievalConfig) -> list[Group]:
    """Subtitle groups of a clip for the video representation (text not cut, as the reference's
    ``repr`` path); with ``video_only``, the frames in groups of ``video_only_group_len`` (one
    group when they fit) with text ``[CLS]``, as the reference's video-only datasets."""
    tokens = corpus.tokens
    if cfg.video_only:
        n, step = clip.num_frames, cfg.video_only_group_len
        return [(list(range(s, min(n, s + step))), [tokens.cls_id]) for s in range(0, n, step)]
    groups = []
    for sub_idx, frames in clip.sub2frames:
        text = [tokens.sep_id]
        for j in range(max(0, sub_idx - cfg.sub_ctx_len), sub_idx + 1):
            text += clip.subtitles[j]
        groups.append((frames, text))
    return groups


def query_rows(ids_list: Sequence[Sequence[int]], corpus: CorpusLike, cfg: RetrievalConfig,
               limit: int | None = -1) -> tuple[Tensor, Tensor]:
    """``[CLS] + tokens[:limit]`` of every query, padded: ``ids (Q, T)``, ``mask (Q, T)``.

    ``limit`` −1 (default) is the training cut ``max_txt_len``; None keeps every token.
    """
    tokens = getattr(corpus, "tokens", corpus)  # a corpus, or its `TextTokens` themselves
    limit = cfg.vsm.max_txt_len if limit == -1 else limit
    return pad_token_rows([[tokens.cls_id, *(ids if limit is None else ids[:limit])] for ids in ids_list],
                          tokens.pad_id)


def inference_query_limit(model: HeroForVcmr, cfg: RetrievalConfig) -> int:
    """Query tokens kept after ``[CLS]`` at inference: ``inference_max_txt_len`` (None: all, as the
    official evaluation), within the query position table (the reference would fail beyond it)."""
    table = int(model.config.max_position_embeddings) - 1
    return table if cfg.inference_max_txt_len is None else min(cfg.inference_max_txt_len, table)


def span_step(cfg: RetrievalConfig, step: int) -> bool:
    """Whether optimizer step ``step`` computes the span loss (probability ``1 − drop_svmr_prob``).

    The draw is a function of ``(span_draw_seed, step)`` only, so every rank and every micro-batch
    of a step agree (the engine all-reduces the loss terms, and DDP expects one graph), and a
    resumed run draws the same. The reference draws per forward pass from each rank's Python
    ``random``, which only stays in sync because all ranks share a seed.
    """
    if cfg.vsm.lw_st_ed == 0 or cfg.vsm.drop_svmr_prob >= 1.0:
        return False
    if cfg.vsm.drop_svmr_prob <= 0.0:
        return True
    return float(np.random.default_rng([cfg.span_draw_seed, int(step)]).random()) >= cfg.vsm.drop_svmr_prob


def collate(corpus: CorpusLike, items: Sequence[dict], cfg: RetrievalConfig,
            generator: torch.Generator | None = None, use_span: bool | None = None) -> VsmBatch:
    """A VSM batch of ``items`` (one query per video; query ``i`` belongs to clip ``i``).

    Span targets (inclusive frames) follow `hero.data.alignment.vcmr_span_target`; a query without
    a moment gets ``(−1, −1)`` (ignored). ``use_span`` (default: whether the settings have a span
    loss at all) says whether the batch may compute the span loss; `loss` then draws per step
    (`span_step`). Nothing here is random (``generator`` is accepted for the task contract).
    """
    if not items:
        raise HeroError("cannot collate an empty retrieval batch")
    vids = [it["vid"] for it in items]
    if len(set(vids)) != len(vids):
        twice = sorted(v for v, c in Counter(vids).items() if c > 1)
        raise HeroError(f"a retrieval batch holds a video twice ({twice}); it would be its own negative")
    clips = [corpus.clip(v) for v in vids]
    video = collate_video([c.features for c in clips], [video_groups(c, corpus, cfg) for c in clips])
    ids, mask = query_rows([it["input_ids"] for it in items], corpus, cfg)
    targets = []
    for it, clip in zip(items, clips):
        if it.get("ts") is None or cfg.vsm.lw_st_ed == 0:
            targets.append((-1, -1))
        else:
            from hero.data.alignment import vcmr_span_target

            targets.append(tuple(int(t) for t in vcmr_span_target(it["ts"], clip.num_frames, corpus.frame_interval)))
    if use_span is None:
        use_span = cfg.vsm.lw_st_ed != 0 and cfg.vsm.drop_svmr_prob < 1.0
    return VsmBatch(video, ids, mask, torch.tensor(targets, dtype=torch.long).view(-1, 2),
                    torch.arange(len(items), dtype=torch.long), bool(use_span))


def loss(model: HeroForVcmr, batch: VsmBatch, cfg: RetrievalConfig, step: int = 0) -> dict[str, Tensor]:
    """The VSM loss of a batch at optimizer step ``step`` (1-based; drives the hard-negative phase).

    ``loss`` = ``st_ed_loss`` (when the batch may compute it and `span_step` draws it for this
    step) + ``neg_ctx_loss`` + ``neg_q_loss``; in-batch negatives come from the whole global batch
    when distributed.
    """
    if batch.use_span and not span_step(cfg, step):
        batch = dataclasses.replace(batch, use_span=False)
    objective = VsmObjective(cfg.vsm)
    out = objective(model, batch, step=step)
    return {k: v for k, v in out.items() if not k.startswith("hinge_")}


# ---------------------------------------------------------------------------------------------
# Corpus inference: encoding and the video ranking stage
# ---------------------------------------------------------------------------------------------


@dataclass
class CorpusEncoding:
    """Frame representations of a corpus, encoded once and queried many times.

    Attributes:
        vids: the videos, in row order.
        frames: ``(V, L, D)`` temporal-transformer outputs. Past each video's end: zero
            (``span_padding: zeros``), or (``reference``) the outputs at the padded positions of
            its encoding chunk, then zero past the chunk's length.
        mask: ``(V, L)`` bool, True on real frames.
    """

    vids: list[str]
    frames: Tensor
    mask: Tensor

    def to(self, device: torch.device | str) -> CorpusEncoding:
        return CorpusEncoding(self.vids, self.frames.to(device), self.mask.to(device))


def _rank_slice(n: int, unit: int = 1) -> slice:
    """This rank's contiguous share of ``n`` items (all of them in a single process), made of whole
    runs of ``unit`` items (so chunk boundaries do not depend on the number of ranks)."""
    from hero.distributed import rank, world_size

    per = math.ceil(math.ceil(n / unit) / world_size()) * unit if n else 0
    return slice(min(n, rank() * per), min(n, (rank() + 1) * per))


def _gather_rows(x: Tensor, pad_dims: tuple[int, ...] = ()) -> Tensor:
    """Every rank's rows of ``x`` concatenated in rank order (``x`` itself in a single process)."""
    from hero.distributed import gather_with_grad

    return gather_with_grad(x.contiguous(), pad_dims=pad_dims)[0]


@torch.no_grad()
def encode_corpus(model: HeroForVcmr, corpus: CorpusLike, vids: Sequence[str], batch_size: int = 50,
                  device: torch.device | str = "cpu", cfg: RetrievalConfig | None = None) -> CorpusEncoding:
    """Encode the videos ``vids`` once (reference ``v_encoder(batch, 'repr')``), in chunks of
    ``cfg.video_batch_size`` (else ``batch_size``) videos in the given order.

    With ``span_padding: reference`` the outputs at each chunk's padded positions are kept, as the
    official ``validate_full_vcmr`` keeps them (the span convolution reads them); with ``zeros``
    they are zeroed and the result does not depend on the chunking.

    When ``torch.distributed`` is initialised, rank ``r`` encodes the ``r``-th contiguous share of
    ``vids`` (whole chunks) and the shares are gathered, so every rank ends with the whole corpus
    (the reference re-encodes the whole corpus on every rank).

    Returns:
        `CorpusEncoding` with ``frames (V, L, D)`` on ``device`` (``L`` = the longest video).
    """
    cfg = cfg or model.task_config
    batch_size = int(cfg.video_batch_size or batch_size)
    if batch_size < 1:
        raise HeroError(f"video batch size must be >= 1, got {batch_size}")
    keep_padding = cfg.vsm.span_padding == "reference"
    vids = list(vids)
    mine = vids[_rank_slice(len(vids), batch_size)]
    d = model.config.hidden_size
    frames_parts, lengths = [], []
    for start in range(0, len(mine), batch_size):
        clips = [corpus.clip(v) for v in mine[start:start + batch_size]]
        video = collate_video([c.features for c in clips], [video_groups(c, corpus, cfg) for c in clips]).to(device)
        out = model.hero.encode_video(video)
        if not keep_padding:
            out = out * video.frame_mask[..., None].to(out.dtype)
        frames_parts.append(out)
        lengths += [c.num_frames for c in clips]
    length = max(lengths, default=1)
    # float32 whatever the autocast dtype: every rank must gather the same dtype, and the scores
    # of a query must not depend on which rank encoded the video
    frames = torch.zeros(len(mine), length, d, device=device, dtype=torch.float32)
    row = 0
    for part in frames_parts:
        frames[row:row + part.shape[0], :part.shape[1]] = part.float()
        row += part.shape[0]
    lens = torch.tensor(lengths, dtype=torch.long, device=device)
    frames, lens = _gather_rows(frames, pad_dims=(1,)), _gather_rows(lens)
    if frames.shape[0] != len(vids):
        raise HeroError(f"corpus encoding gathered {frames.shape[0]} videos, expected {len(vids)}")
    mask = torch.arange(frames.shape[1], device=frames.device)[None, :] < lens[:, None]
    if mask.shape[1] and lens.numel():
        keep = int(lens.max())  # ranks may pad to a longer share than the corpus needs
        frames, mask = frames[:, :keep], mask[:, :keep]
    return CorpusEncoding(vids, frames, mask)


@torch.no_grad()
def encode_queries(model: HeroForVcmr, corpus: CorpusLike, ids_list: Sequence[Sequence[int]], cfg: RetrievalConfig,
                   batch_size: int = 80, device: torch.device | str = "cpu") -> Tensor:
    """Query vectors ``(Q, D)`` of token lists (``[CLS] + tokens``, cut by `inference_query_limit`)."""
    out = []
    limit = inference_query_limit(model, cfg)
    for start in range(0, len(ids_list), batch_size):
        ids, mask = query_rows(ids_list[start:start + batch_size], corpus, cfg, limit)
        out.append(model.hero.encode_query(ids.to(device), mask.to(device)))
    if not out:
        return torch.zeros(0, model.config.hidden_size, device=device)
    return torch.cat(out)


def _video_chunk(q: int, length: int, d: int, budget: int) -> int:
    return max(1, budget // max(1, q * length + length * d))


def corpus_global_scores(q: Tensor, frames: Tensor, mask: Tensor, budget: int = 2**25) -> Tensor:
    """VSM global scores of queries against a whole corpus, in video chunks (bounded memory).

    Same values as `hero.objectives.vsm.global_scores`: ``max_l cos(q, F[v, l])`` over real frames.

    Args:
        q: ``(Q, D)``; frames ``(V, L, D)``; mask ``(V, L)``.
        budget: bound on ``Q·Vc·L`` elements per chunk.
    Returns:
        ``(Q, V)`` float32.
    """
    qn = F.normalize(q.float(), dim=-1, eps=NORMALIZE_EPS)
    v, length, d = frames.shape
    out = torch.empty(q.shape[0], v, device=q.device, dtype=torch.float32)
    step = _video_chunk(q.shape[0], length, d, budget)
    for s in range(0, v, step):
        fn = F.normalize(frames[s:s + step].float(), dim=-1, eps=NORMALIZE_EPS)
        cos = torch.einsum("qd,vld->qvl", qn, fn)
        out[:, s:s + step] = cos.masked_fill(~mask[s:s + step][None], -1e4).amax(-1)
    return out


def span_probabilities_on(model: HeroForVcmr, q: Tensor, enc: CorpusEncoding, vrows: Tensor,
                          cfg: RetrievalConfig) -> tuple[Tensor, Tensor]:
    """Start/end probabilities of every query on its candidate videos.

    Args:
        q: ``(Q, D)`` query vectors; vrows: ``(Q, K)`` video rows of the corpus.
    Returns:
        ``P_st``, ``P_ed`` ``(Q, K, L)`` float32 (softmax over the video's real frames; 0 on padding).
    """
    nq, k = vrows.shape
    length, d = enc.frames.shape[1], enc.frames.shape[2]
    per = max(1, cfg.score_chunk_elems // max(1, k * length * d))
    st_all, ed_all = [], []
    for s in range(0, nq, per):
        qs, rows = q[s:s + per], vrows[s:s + per]
        q_rep = qs.repeat_interleave(k, dim=0)
        st, ed = model.vsm_head.span_logits(q_rep, enc.frames, enc.mask, rows.reshape(-1),
                                            zero_padding=cfg.vsm.span_padding == "zeros")
        st_all.append(st.float().softmax(-1).view(-1, k, length))
        ed_all.append(ed.float().softmax(-1).view(-1, k, length))
    if not st_all:
        empty = torch.zeros(0, k, length, device=q.device)
        return empty, empty.clone()
    return torch.cat(st_all), torch.cat(ed_all)


# ---------------------------------------------------------------------------------------------
# Predictions in the official submission format
# ---------------------------------------------------------------------------------------------


def read_video2idx(corpus: CorpusLike, dataset: str, split: str) -> dict[str, int] | None:
    """The official ``video2idx`` of a split, when the corpus ships one.

    ``annotations/<dataset>/video2idx.json`` holds either ``{split: {vid: idx}}`` or the TVR file
    ``tvr_video2dur_idx.json`` as released (``{split: {vid: [duration, idx]}}``).
    """
    root = getattr(corpus, "root", None)
    if root is None:
        return None
    path = Path(root) / "annotations" / dataset / "video2idx.json"
    if not path.is_file():
        return None
    from hero.io import read_json

    data = read_json(path)
    if not isinstance(data, dict) or split not in data or not isinstance(data[split], dict):
        return None
    out = {}
    for vid, value in data[split].items():
        idx = value[1] if isinstance(value, list) and len(value) == 2 else value
        if not isinstance(idx, int) or isinstance(idx, bool):
            raise HeroError(f"{path}: {split}.{vid}: expected an index or [duration, index], got {value!r}")
        out[vid] = idx
    return out


def split_videos(corpus: CorpusLike, dataset: str, split: str,
                 records: Sequence[dict]) -> tuple[list[str], dict[str, int]]:
    """The corpus searched for a split, sorted by name (as the reference), and its ``video2idx``.

    With an official ``video2idx`` (`read_video2idx`) the corpus is every video listed for the
    split; otherwise, the videos the split's queries name, numbered in sorted order.
    """
    known = set(corpus.video_ids())
    official = read_video2idx(corpus, dataset, split)
    if official is not None:
        missing = sorted(v for v in official if v not in known)
        if missing:
            raise HeroError(f"annotations/{dataset}/video2idx.json: {len(missing)} video(s) of split {split!r} are not "
                            f"in the corpus, e.g. {missing[:5]}")
        vids = sorted(official)
        return vids, {v: official[v] for v in vids}
    named = {r.get("vid") for r in records if r.get("vid") is not None}
    missing = sorted(v for v in named if v not in known)
    if missing:
        raise HeroError(f"annotations/{dataset}/{split}.jsonl: {len(missing)} video(s) are not in the corpus, "
                        f"e.g. {missing[:5]}")
    vids = sorted(named)
    if not vids:
        raise HeroError(f"annotations/{dataset}/{split}.jsonl names no video and the corpus has no "
                        f"annotations/{dataset}/video2idx.json: nothing to search")
    return vids, {v: i for i, v in enumerate(vids)}


def _records(corpus: CorpusLike, dataset: str, split: str) -> list[dict]:
    records = corpus.annotations(dataset, split)
    for i, record in enumerate(records):
        _check_record(record, _where(dataset, split, i))
    return records


@torch.no_grad()
def rank_moments(model: HeroForVcmr, tokens: Any, query_ids: Sequence[Sequence[int]], desc_ids: Sequence[Any],
                 enc: CorpusEncoding, cfg: RetrievalConfig, interval: float, *, video_idx: Tensor | None = None,
                 candidates: tuple[Tensor, Tensor] | None = None, svmr_rows: Tensor | None = None,
                 tasks: Sequence[str] | None = None, keep: int | None = None,
                 device: torch.device | str = "cpu") -> dict[str, list[dict]]:
    """The VR / VCMR / SVMR ranking of queries over encoded videos, used by `predict`, `hero search`
    (`hero.search.SearchIndex`) and the moments figure (`hero.viz.moments`). No NMS here.

    Videos are ranked by ``exp(α·S)`` with ``torch.topk``; only the top ``max_vcmr_video`` get span
    scores ``P_st(m)·exp(α·S)·P_ed(n)`` under the ``min_pred_l ≤ n − m < max_pred_l`` mask; the top
    ``max(max_before_nms, keep)`` moments of each query are kept, then cut to ``keep``. Memory stays
    bounded: global scores go through ``enc`` in chunks of ``score_chunk_elems``, span logits are
    computed for the top videos only, queries go ``query_batch_size`` at a time.

    Args:
        tokens: the tokenizer's special ids (`hero.config.TextTokens`, or a corpus: its ``tokens``).
        query_ids: ``Q`` token-id lists (no special tokens); desc_ids: the id of each in the entries.
        enc: the ``V`` encoded videos.
        video_idx: ``(V,)`` the index written for each row of ``enc`` (default: the row).
        candidates: ``(S (Q, K), rows (Q, K))``: each query's candidate videos (rows of ``enc``) and
            their global scores, found elsewhere (a FAISS index); default: ``S`` of every video of
            ``enc``, top ``max_vcmr_video``.
        svmr_rows: ``(Q,)`` the row of each query's own video (needed for SVMR).
        tasks: the lists to make (default ``cfg.tasks``; SVMR only with ``svmr_rows``).
        keep: entries per query and list (default ``max_after_nms``).
    Returns:
        ``{task: [{"desc_id", "predictions": [[video_idx, st, ed, score], ...]}, ...]}``.
    """
    from hero.eval import moments as mo

    tasks = [t for t in (cfg.tasks if tasks is None else tasks) if t != "SVMR" or svmr_rows is not None]
    keep = cfg.max_after_nms if keep is None else int(keep)
    n_moments = cfg.max_before_nms if keep <= cfg.max_before_nms else keep
    dev = enc.frames.device
    mask = mo.length_mask(enc.frames.shape[1], cfg.min_pred_l, cfg.max_pred_l, device=dev)
    video_idx = (torch.arange(len(enc.vids)) if video_idx is None else video_idx).to(dev)
    out: dict[str, list[dict]] = {t: [] for t in tasks}
    for start in range(0, len(query_ids), cfg.query_batch_size):
        part = slice(start, start + cfg.query_batch_size)
        ids = [desc_ids[i] for i in range(len(desc_ids))[part]]
        q = encode_queries(model, tokens, list(query_ids[part]), cfg, len(ids), device)
        if candidates is None:
            scores = corpus_global_scores(q, enc.frames, enc.mask, cfg.score_chunk_elems)  # (Q, V)
            w, rows = mo.top_videos(mo.video_scores(scores, cfg.q2c_alpha), cfg.max_vcmr_video)
            s_top = scores.gather(1, rows)
        else:
            s_top, rows = (c[part].to(dev) for c in candidates)
            w = mo.video_scores(s_top, cfg.q2c_alpha)
        if "VR" in out:
            vr_w = w if cfg.vr_score == "exp" else s_top
            out["VR"] += mo.top_n_entries(mo.vr_entries(ids, video_idx[rows], vr_w), keep)
        if "VCMR" in out:
            st, ed = span_probabilities_on(model, q, enc, rows, cfg)
            best = mo.top_vcmr_moments(st, ed, w, mask, n_moments, cfg.score_chunk_elems)
            entries = mo.moment_entries(ids, video_idx[rows.gather(1, best.video)], best, interval)
            out["VCMR"] += mo.top_n_entries(entries, keep)
        if "SVMR" in out:
            gt = svmr_rows[part].to(dev)
            st, ed = span_probabilities_on(model, q, enc, gt[:, None], cfg)
            best = mo.top_svmr_moments(st[:, 0], ed[:, 0], mask, n_moments, cfg.score_chunk_elems)
            entries = mo.moment_entries(ids, video_idx[gt][:, None].expand_as(best.st), best, interval,
                                        float64_times=True)
            out["SVMR"] += mo.top_n_entries(entries, keep)
    return out


def predict(model: HeroForVcmr, corpus: CorpusLike, dataset: str, split: str, cfg: RetrievalConfig,
            batch_size: int = 32, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Rank the split's corpus for every query of the split: the official submission dict
    ``{"video2idx", "VCMR", "SVMR", "VR"}`` (lists of ``[video_idx, st, ed, score]``, without NMS,
    cut to ``max_after_nms``; `apply_nms` gives the NMS'ed lists).

    ``batch_size`` counts videos per encoder call. Under ``torch.distributed`` the corpus encoding
    is sharded and gathered, queries are split across ranks and their lists gathered, and every
    rank returns the whole submission. SVMR needs every query's video (a test split has none).
    """
    from hero.distributed import all_gather_objects

    records = _records(corpus, dataset, split)
    vids, video2idx = split_videos(corpus, dataset, split, records)
    with_svmr = "SVMR" in cfg.tasks and all(r.get("vid") in video2idx for r in records) and all(
        r.get("ts") is not None for r in records)
    was_training = model.training
    model.eval()
    try:
        enc = encode_corpus(model, corpus, vids, batch_size, device, cfg)
        vidx = torch.tensor([video2idx[v] for v in vids], dtype=torch.long)
        mine = records[_rank_slice(len(records))]
        row_of = {v: i for i, v in enumerate(enc.vids)}
        svmr_rows = torch.tensor([row_of[r["vid"]] for r in mine], dtype=torch.long) if with_svmr else None
        lists = rank_moments(model, corpus, [r["input_ids"] for r in mine], [r["qid"] for r in mine], enc, cfg,
                             float(corpus.frame_interval), video_idx=vidx, svmr_rows=svmr_rows, device=device)
    finally:
        model.train(was_training)
    parts = all_gather_objects(lists)
    merged = {t: [e for part in parts for e in part[t]] for t in lists}
    from hero.eval.moments import submission

    out = submission(video2idx, vcmr=merged.get("VCMR"), svmr=merged.get("SVMR"), vr=merged.get("VR"))
    check_finite_submission(out)
    return out


def check_finite_submission(predictions: dict[str, Any]) -> None:
    """Raise `NonFiniteError` when a VCMR/SVMR/VR prediction row ``[video_idx, st, ed, score]``
    holds NaN or infinity (a broken model: its scores rank nothing)."""
    count = total = 0
    first = None
    for name in ("VCMR", "SVMR", "VR"):
        for entry in predictions.get(name) or ():
            for row in entry["predictions"]:
                total += 1
                if not all(math.isfinite(x) for x in row):
                    count += 1
                    first = entry["desc_id"] if first is None else first
    if count:
        raise NonFiniteError("predicted moment rows (video, start, end, score)", count, total, first)


def apply_nms(predictions: dict[str, Any], cfg: RetrievalConfig) -> dict[str, Any]:
    """The submission with temporal NMS (IoU > ``nms_thd``) on its VCMR and SVMR lists, as the
    reference's ``post_processing_*_nms`` (VR is never NMS'ed). Returns a new dict."""
    from hero.eval import moments as mo

    out = dict(predictions)
    if "VCMR" in out:
        out["VCMR"] = mo.nms_vcmr_entries(out["VCMR"], cfg.nms_thd, cfg.max_before_nms, cfg.max_after_nms)
    if "SVMR" in out:
        out["SVMR"] = mo.nms_svmr_entries(out["SVMR"], cfg.nms_thd, cfg.max_before_nms, cfg.max_after_nms)
    return out


def nms_path(path: str | os.PathLike) -> Path:
    """Where `write_predictions` puts the NMS'ed submission next to ``path``: ``<stem>_nms<suffix>``."""
    path = Path(path)
    return path.with_name(f"{path.stem}_nms{path.suffix or '.json'}")


def write_predictions(predictions: dict[str, Any], path: str | os.PathLike, cfg: RetrievalConfig | None = None) -> None:
    """Write the submission JSON atomically; with NMS on (``nms_thd ≠ −1``) and moment lists
    present, also the NMS'ed submission at `nms_path`."""
    write_text_atomic(path, json.dumps(predictions))
    cfg = cfg or RetrievalConfig()
    if cfg.nms_thd != -1 and ("VCMR" in predictions or "SVMR" in predictions):
        write_text_atomic(nms_path(path), json.dumps(apply_nms(predictions, cfg)))


def ground_truth(corpus: CorpusLike, dataset: str, split: str) -> list[dict]:
    """The split's queries as official TVR ground-truth records
    ``{desc_id, vid_name, ts, duration, type, desc}`` (``ts``/``type`` left out when absent)."""
    out = []
    for r in _records(corpus, dataset, split):
        if r.get("vid") is None:
            raise HeroError(f"annotations/{dataset}/{split}.jsonl: query {r['qid']!r} has no video; a split "
                            f"without ground truth cannot be scored")
        g = {"desc_id": r["qid"], "vid_name": r["vid"], "desc": r.get("desc", ""), "duration": r.get("duration")}
        if r.get("ts") is not None:
            g["ts"] = r["ts"]
        if r.get("type") is not None:
            g["type"] = r["type"]
        out.append(g)
    return out


def _flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    flat = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def evaluate(predictions: dict[str, Any], corpus: CorpusLike, dataset: str, split: str,
             cfg: RetrievalConfig) -> dict[str, float]:
    """Official TVR metrics of a submission: ``{task}/{metric}`` without NMS and, with ``nms_thd ≠
    −1``, ``{task}_nms_{thd}/{metric}`` after NMS (VCMR and SVMR; keys as the reference's logs)."""
    from hero.eval.tvr import eval_retrieval

    gt = ground_truth(corpus, dataset, split)
    metrics = eval_retrieval(predictions, gt, use_desc_type=None)
    out = _flatten(metrics)
    if cfg.nms_thd != -1 and ("VCMR" in predictions or "SVMR" in predictions):
        nms = apply_nms(predictions, cfg)
        nms = {k: v for k, v in nms.items() if k != "VR"}
        for key, value in _flatten(eval_retrieval(nms, gt, use_desc_type=None)).items():
            task, _, rest = key.partition("/")
            out[f"{task}_nms_{cfg.nms_thd}/{rest}"] = value
    return out


# ---------------------------------------------------------------------------------------------
# Task objects
# ---------------------------------------------------------------------------------------------


def write_vr_predictions(predictions: dict[str, Any], path: str | os.PathLike, cfg: VrConfig | None = None) -> None:
    """`write_predictions` with the VR defaults when no settings are given."""
    write_predictions(predictions, path, cfg or VrConfig())


_RETRIEVAL = dict(train_items=train_items, group_key=group_key, collate=collate, loss=loss, predict=predict,
                  evaluate=evaluate, encode_corpus=encode_corpus, eval_kind="retrieval")
VCMR = TaskSpec(
    name="vcmr", datasets=("tvr", "how2r", "didemo"), config_class=RetrievalConfig, model_class=HeroForVcmr,
    write_predictions=write_predictions, **_RETRIEVAL,
    demo=Demo(dataset="tvr", title="moment retrieval (tvr)", steps=600,
              headline=(("VCMR/0.7-r1", "VCMR R@1 (IoU 0.7)"), ("VCMR/0.7-r10", "VCMR R@10 (IoU 0.7)"),
                        ("VR/r1", "VR R@1"))),
)
VR = TaskSpec(name="vr", datasets=("msrvtt",), config_class=VrConfig, model_class=HeroForVr,
              write_predictions=write_vr_predictions, **_RETRIEVAL,
              # the synthetic corpus has no video-only retrieval set: its TVR queries, video level
              demo=Demo(dataset="tvr", title="video retrieval (tvr)", steps=600, headline=(("VR/r1", "VR R@1"),),
                        quickstart=False))
