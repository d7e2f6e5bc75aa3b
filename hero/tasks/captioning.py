"""Multimodal video captioning, TVC (paper §4.1; reference ``model/tvc.py``, ``data/tvc.py``).

Given a video with subtitles and a moment ``ts``, describe the moment. The HERO encoder runs over the
whole video (subtitle groups with ``sub_ctx_len`` previous subtitles as context); the frames of the
moment, ``F[st:ed]`` (`hero.data.alignment.tvc_clip_range`), are the memory of a 2-layer transformer
decoder. The decoder embeds words with the backbone's word table plus its own position table, and
predicts through an MLM-style head tied to the same word table, over the whole *padded* vocabulary
(the reference does not cut TVC logits to the real vocabulary, unlike MLM).

* Training: inputs ``<s> + tokens``, targets ``tokens + </s>``, both cut to ``max_txt_len``; the loss
  is the reference's label-smoothed KL divergence (`label_smoothed_kl`), averaged over target tokens.
  One training item is one video with all its captions (the reference batches 4 videos).
* Inference: greedy decoding (`greedy_decode`) with a key/value cache and early stop; it yields
  the tokens of the reference's decoding, which re-runs the whole prefix for all 30 steps.
* Metrics: `hero.eval.captioning.caption_metrics` (the official TVC evaluator).

Initialisation follows the reference: the decoder and its position table keep PyTorch's default
initialisation (they are created after the reference's initialisation pass; ``nn.Embedding`` is
N(0, 1)); the MLM-style head gets N(0, 0.02) like the rest of the reference's video encoder.

Shape letters: ``B`` videos, ``L`` frames, ``C`` captions (or clips), ``M`` memory frames per
caption, ``T`` caption tokens, ``S`` generated tokens, ``D`` hidden, ``H`` heads, ``V`` padded vocabulary.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hero.config import HeroConfig
from hero.data.batch import collate_video, pad_token_rows
from hero.data.protocol import CorpusLike
from hero.errors import HeroError, check_settings
from hero.io import write_text_atomic
from hero.model.baselines import build_backbone
from hero.model.checkpoint import CheckpointError
from hero.model.hero import REFERENCE_KEY_MAP as BACKBONE_KEY_MAP
from hero.model.hero import VideoInputs
from hero.model.layers import MASK_VALUE, AddNorm, Intermediate, activation_dtype, init_weights
from hero.objectives.mlm import MlmHead
from hero.tasks.common import TaskModelMixin, context_groups, where
from hero.tasks.spec import Demo, TaskSpec

IGNORE = -1
"""Target id of padding (ignored by the loss), as in the reference."""


@dataclass
class TvcConfig:
    """TVC settings; defaults = reference ``hero_tvc.json`` (``d_config``) and ``train-tvc-8gpu.json``.

    The decoder width is the backbone's ``hidden_size``.
    """

    num_layers: int = 2
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 1024
    """Rows of the decoder's position table."""
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    layer_norm_eps: float = 1e-12
    """eps of the decoder blocks' LayerNorms (the reference leaves ``d_config`` at BERT's 1e-12)."""
    label_smoothing: float = 0.1
    """Reference ``lsr``; 0 gives plain cross-entropy."""
    max_txt_len: int = 60
    """Length cut of decoder inputs (``<s>`` + tokens) and targets (tokens + ``</s>``)."""
    max_gen_step: int = 30
    """Tokens generated per caption at inference."""
    sub_ctx_len: int = 1
    """Each subtitle group's text also holds this many previous subtitles."""
    max_cap_per_vid: int | None = None
    """Training: at most this many captions of a video per batch, drawn at random (None: all)."""
    lr_mul: float = 10.0
    """Reference learning-rate multiplier of the decoder; the engine reads ``optim.lr_mul``, so a
    TVC run config sets that to this value."""

    def __post_init__(self) -> None:
        check_settings(self, "task_config", max_position_embeddings=">=1", hidden_dropout_prob="[0,1)",
                       attention_probs_dropout_prob="[0,1)", layer_norm_eps=">0", label_smoothing="[0,1)",
                       lr_mul=">0")
        problems = []
        for name in ("num_layers", "num_attention_heads", "intermediate_size", "max_txt_len", "max_gen_step"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.sub_ctx_len < 0:
            problems.append(f"sub_ctx_len must be >= 0, got {self.sub_ctx_len}")
        if not 0.0 <= self.label_smoothing < 1.0:
            problems.append(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if max(self.max_txt_len, self.max_gen_step) > self.max_position_embeddings:
            problems.append(f"max_txt_len/max_gen_step exceed max_position_embeddings ({self.max_position_embeddings})")
        if self.max_cap_per_vid is not None and self.max_cap_per_vid < 1:
            problems.append(f"max_cap_per_vid must be >= 1 or None, got {self.max_cap_per_vid}")
        if problems:
            raise HeroError("invalid TvcConfig: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TvcConfig:
        from hero.config import from_dict

        return from_dict(cls, data, where=cls.__name__)


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


class DecoderAttention(nn.Module):
    """Query/key/value projections and multi-head SDPA (reference ``BertSelfAttention`` names).

    Keys and values are projected separately (`project_kv`) so a decoder can cache them.
    """

    def __init__(self, hidden_size: int, num_heads: int, dropout_p: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout_p = dropout_p
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)

    def _heads(self, x: Tensor) -> Tensor:
        n, t, d = x.shape
        return x.view(n, t, self.num_heads, d // self.num_heads).transpose(1, 2)  # (N, H, T, hd)

    def project_kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (N, T, D)`` → keys, values ``(N, H, T, hd)``."""
        return self._heads(self.key(x)), self._heads(self.value(x))

    def forward(self, x: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None,
                causal: bool = False) -> Tensor:
        """Queries from ``x (N, Tq, D)`` attend to ``k, v (N, H, Tk, hd)`` → ``(N, Tq, D)``.

        Args:
            bias: additive mask broadcastable to ``(N, H, Tq, Tk)`` (−10000 on masked keys, as the
                reference: a query whose keys are all masked averages them instead of failing).
            causal: query ``i`` sees keys ``0..i`` (``Tq == Tk``).
        """
        q = self._heads(self.query(x))
        if bias is not None:
            bias = bias.to(q.dtype)
        p = self.dropout_p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=bias, dropout_p=p,
                                             is_causal=causal)
        n, h, t, hd = out.shape
        return out.transpose(1, 2).reshape(n, t, h * hd)


class KvCache:
    """Self-attention keys/values of the positions decoded so far, in a preallocated buffer."""

    def __init__(self, like: Tensor, max_len: int) -> None:
        n, h, _, hd = like.shape
        self.k = like.new_empty(n, h, max_len, hd)
        self.v = like.new_empty(n, h, max_len, hd)
        self.length = 0

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store ``k, v (N, H, t, hd)`` after the cached positions; returns all ``(N, H, length, hd)``."""
        t = k.shape[2]
        self.k[:, :, self.length:self.length + t] = k
        self.v[:, :, self.length:self.length + t] = v
        self.length += t
        return self.k[:, :, :self.length], self.v[:, :, :self.length]


class DecoderLayer(nn.Module):
    """Post-LN decoder block (reference ``BertDecoderLayer``): causal self-attention, add&norm,
    attention to the memory, add&norm, FFN, add&norm."""

    def __init__(self, hidden_size: int, cfg: TvcConfig) -> None:
        super().__init__()
        h, p, eps = cfg.num_attention_heads, cfg.hidden_dropout_prob, cfg.layer_norm_eps
        self.self_attention = DecoderAttention(hidden_size, h, cfg.attention_probs_dropout_prob)
        self.add_norm_1 = AddNorm(hidden_size, hidden_size, p, eps)
        self.dec_enc_attention = DecoderAttention(hidden_size, h, cfg.attention_probs_dropout_prob)
        self.add_norm_2 = AddNorm(hidden_size, hidden_size, p, eps)
        self.intermidiate = Intermediate(hidden_size, cfg.intermediate_size)  # (sic) reference spelling
        self.add_norm_3 = AddNorm(cfg.intermediate_size, hidden_size, p, eps)

    def forward(self, x: Tensor, memory_kv: tuple[Tensor, Tensor], memory_bias: Tensor,
                cache: KvCache | None = None) -> Tensor:
        """``x (C, T, D)`` → ``(C, T, D)``.

        Args:
            memory_kv: this layer's memory keys and values ``(C, H, M, hd)`` (`memory_inputs`).
            memory_bias: ``(C, 1, 1, M)`` additive memory mask.
            cache: None: ``x`` is a whole sequence, attended causally. Otherwise ``x`` holds the one
                next position (``T = 1``), which attends to the cached positions and itself.
        """
        k, v = self.self_attention.project_kv(x)
        if cache is None:
            h = self.self_attention(x, k, v, causal=True)
        else:
            h = self.self_attention(x, *cache.append(k, v))
        h = self.add_norm_1(h, x)
        c = self.add_norm_2(self.dec_enc_attention(h, *memory_kv, bias=memory_bias), h)
        return self.add_norm_3(self.intermidiate(c), c)


class CaptionDecoder(nn.Module):
    """The decoder stack (reference ``BertDecoder``; keys ``layer.{i}.…``)."""

    def __init__(self, hidden_size: int, cfg: TvcConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(DecoderLayer(hidden_size, cfg) for _ in range(cfg.num_layers))

    def forward(self, x: Tensor, memory_kv: list[tuple[Tensor, Tensor]], memory_bias: Tensor,
                caches: list[KvCache] | None = None) -> Tensor:
        for i, layer in enumerate(self.layer):
            x = layer(x, memory_kv[i], memory_bias, None if caches is None else caches[i])
        return x


TVC_KEY_MAP: list[tuple[str, str | None]] = [
    ("v_encoder.f_encoder.lm_head.decoder.", None),  # tied to the word table
    ("v_encoder.f_encoder.lm_head.", "mlm_head."),
    ("v_encoder.feat_regress.", None),  # pre-training heads inside the reference's video encoder
    ("v_encoder.fom_output.", None),
    ("position_embeddings.", "position_embeddings."),
    ("emb_LayerNorm.", "emb_LayerNorm."),
    ("decoder.layer.", "decoder.layer."),
]
"""Reference ``HeroForTvc`` keys that are not backbone keys (``decoder.tri_mask`` and
``loss_func.one_hot`` are buffers ignored by every loader)."""


class HeroForTvc(nn.Module, TaskModelMixin):
    """HERO encoder + caption decoder (reference ``HeroForTvc``).

    Attributes:
        hero: the `Hero` backbone; its word table embeds and predicts caption tokens.
        position_embeddings, emb_LayerNorm: the decoder's input embedding.
        decoder: `CaptionDecoder`.
        mlm_head: the output head (`MlmHead` over the padded vocabulary); named like the
            pre-training MLM head so a pre-trained one carries over, as in the reference.
    """

    REFERENCE_KEY_MAP = TVC_KEY_MAP + [
        (ref, None if ours is None else "hero." + ours) for ref, ours in BACKBONE_KEY_MAP
    ]
    BASE_LR_PREFIXES = ("hero.", "mlm_head.")
    """Parameters the reference trains at the base learning rate: its LM head lives inside its video
    encoder, so only the decoder and its embeddings get ``lr_mul``."""
    task_config_class = TvcConfig

    def __init__(self, config: HeroConfig, task_config: TvcConfig | None = None) -> None:
        super().__init__()
        cfg = task_config or TvcConfig()
        if config.hidden_size % cfg.num_attention_heads:
            raise HeroError(f"hidden_size {config.hidden_size} is not divisible by the decoder's "
                            f"num_attention_heads {cfg.num_attention_heads}")
        self.config = config
        self.task_config = cfg
        self.hero = build_backbone(config)
        d = config.hidden_size
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, d)
        self.emb_LayerNorm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.decoder = CaptionDecoder(d, cfg)
        self.mlm_head = MlmHead(dataclasses.replace(config, vocab_size=config.vocab_size_padded))
        for module in (self.mlm_head.dense, self.mlm_head.LayerNorm):
            init_weights(module, config.initializer_range)

    # -- encoder side ---------------------------------------------------------------------------

    def encode(self, video: VideoInputs, memory_index: Tensor, memory_mask: Tensor) -> Tensor:
        """Decoder memory ``(C, M, D)``: the encoded frames of each caption's moment, zero-padded.

        Args:
            memory_index: ``(C, M)`` row of each memory frame in the flattened ``(B*L)`` frames.
            memory_mask: ``(C, M)`` bool, True on real memory frames.
        """
        frames = self.hero.encode_video(video).flatten(0, 1)  # (B*L, D)
        c, m = memory_index.shape
        memory = frames.index_select(0, memory_index.flatten()).view(c, m, -1)
        return memory * memory_mask[..., None].to(memory.dtype)

    def memory_inputs(self, memory: Tensor, memory_mask: Tensor) -> tuple[list[tuple[Tensor, Tensor]], Tensor]:
        """Each layer's memory keys/values ``(C, H, M, hd)`` and the additive memory mask
        ``(C, 1, 1, M)`` (computed once per batch, also when decoding step by step)."""
        kv = [layer.dec_enc_attention.project_kv(memory) for layer in self.decoder.layer]
        bias = (~memory_mask).to(memory.dtype)[:, None, None, :] * MASK_VALUE
        return kv, bias

    # -- decoder side ---------------------------------------------------------------------------

    def embed(self, ids: Tensor, offset: int = 0) -> Tensor:
        """``LN(word[ids] + position[offset + t])`` for ``ids (C, T)`` → ``(C, T, D)`` (no dropout,
        as the reference)."""
        pos = self.position_embeddings.weight[offset:offset + ids.shape[1]]
        x = self.hero.word_embeddings(ids) + pos
        return self.emb_LayerNorm(x).to(activation_dtype(x))

    def logits(self, h: Tensor) -> Tensor:
        """Scores over the whole padded vocabulary: ``h (..., D)`` → ``(..., V)``."""
        return self.mlm_head(h, self.hero.word_embeddings.weight)

    def hidden(self, batch: TvcBatch) -> Tensor:
        """Teacher-forced decoder outputs ``(C, T, D)`` of a training batch."""
        memory = self.encode(batch.video, batch.memory_index, batch.memory_mask)
        kv, bias = self.memory_inputs(memory, batch.memory_mask)
        return self.decoder(self.embed(batch.input_ids), kv, bias)

    def forward(self, batch: TvcBatch) -> Tensor:
        """Teacher-forced logits ``(C, T, V)`` of a training batch."""
        return self.logits(self.hidden(batch))

    @classmethod
    def reference_task_config(cls, state: dict[str, Any], config: HeroConfig, source: str) -> TvcConfig:
        """The decoder sizes of a reference TVC checkpoint (`reference_tvc_config`)."""
        return reference_tvc_config(state, config, source)


def reference_tvc_config(state: dict[str, Any], config: HeroConfig, source: str = "checkpoint") -> TvcConfig:
    """Decoder sizes of a reference TVC state dict (heads: the backbone's, as in ``hero_tvc.json``)."""
    stem = "decoder.layer."
    layers = {k[len(stem):].split(".")[0] for k in state if k.startswith(stem)}
    if not layers or "position_embeddings.weight" not in state:
        raise CheckpointError(f"{source}: not a reference TVC checkpoint (no decoder.layer.* or position_embeddings)")
    ffn = state.get("decoder.layer.0.intermidiate.dense.weight")
    return TvcConfig(num_layers=len(layers), num_attention_heads=config.num_attention_heads,
                     intermediate_size=int(ffn.shape[0]) if ffn is not None else 4 * config.hidden_size,
                     max_position_embeddings=int(state["position_embeddings.weight"].shape[0]))


# ---------------------------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------------------------


def label_smoothed_kl(logits: Tensor, targets: Tensor, smoothing: float) -> tuple[Tensor, int]:
    """Reference ``LabelSmoothingLoss``, averaged over the target tokens.

    ``q`` puts ``1 − ε`` on the gold token and ``ε/(V − 1)`` on every other of the ``V`` logits; the
    loss of a token is ``KL(q‖p) = Σ_v q_v (log q_v − log p_v)``, with ``p = softmax(logits)``. It is
    computed from ``logsumexp`` without building ``q``: ``Σ_v q_v log p_v = s·Σ_v log p_v +
    (1 − ε − s)·log p_gold`` with ``s = ε/(V − 1)``. ``ε = 0`` gives cross-entropy.

    Args:
        logits: ``(..., V)``.
        targets: ``(...)`` gold ids, `IGNORE` (−1) on padding.
    Returns:
        (mean loss over the non-ignored tokens, their number); the loss is 0 with no token.
    """
    logits = logits.reshape(-1, logits.shape[-1]).float()
    targets = targets.reshape(-1)
    keep = targets != IGNORE
    logits, targets = logits[keep], targets[keep]
    n = int(targets.numel())
    if n == 0:
        return logits.sum() * 0.0, 0
    lse = torch.logsumexp(logits, dim=-1)  # (n,)
    gold = logits.gather(1, targets[:, None]).squeeze(1) - lse  # log p_gold
    if smoothing == 0.0:
        return -gold.mean(), n
    v = logits.shape[-1]
    conf, s = 1.0 - smoothing, smoothing / (v - 1)
    entropy_term = conf * math.log(conf) + smoothing * math.log(s)  # Σ_v q_v log q_v
    sum_log_p = logits.sum(-1) - v * lse
    loss = entropy_term - s * sum_log_p - (conf - s) * gold
    return loss.mean(), n


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------


@dataclass
class TvcBatch:
    """Videos, the moment of every caption, and (for training) the caption tokens.

    Attributes:
        video: the ``B`` videos, every subtitle group with its context.
        memory_index: ``(C, M)`` long, row of each moment frame in the flattened ``(B*L)`` frames
            (0 on padding).
        memory_mask: ``(C, M)`` bool. ``M ≥ 1``; a moment beyond the (truncated) video has no frame.
        input_ids: ``(C, T)`` decoder inputs ``<s> + tokens``, padded with the pad id; None at inference.
        target_ids: ``(C, T)`` targets ``tokens + </s>``, padded with −1; None at inference.
    """

    video: VideoInputs
    memory_index: Tensor
    memory_mask: Tensor
    input_ids: Tensor | None = None
    target_ids: Tensor | None = None

    def to(self, device: torch.device | str) -> TvcBatch:
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return TvcBatch(self.video.to(device), move(self.memory_index), move(self.memory_mask),
                        move(self.input_ids), move(self.target_ids))


def moment_memory(ranges: Sequence[tuple[int, int, int]], frames_per_video: int) -> tuple[Tensor, Tensor]:
    """``memory_index``/``memory_mask`` ``(C, M)`` from ``(video b, st, ed)`` per caption (``ed`` exclusive)."""
    width = max([1] + [ed - st for _, st, ed in ranges])
    index = torch.zeros(len(ranges), width, dtype=torch.long)
    mask = torch.zeros(len(ranges), width, dtype=torch.bool)
    for i, (b, st, ed) in enumerate(ranges):
        n = max(0, ed - st)
        index[i, :n] = torch.arange(b * frames_per_video + st, b * frames_per_video + st + n)
        mask[i, :n] = True
    return index, mask


def _video_batch(corpus: CorpusLike, items: Sequence[dict], cfg: TvcConfig) -> TvcBatch:
    """Encode-side batch of items ``{"vid", "captions": [{"ts", ...}]}`` (captions in item order)."""
    from hero.data.alignment import tvc_clip_range

    clips = [corpus.clip(item["vid"]) for item in items]
    sep = corpus.tokens.sep_id
    video = collate_video([c.features for c in clips], [context_groups(c, sep, cfg.sub_ctx_len) for c in clips])
    length = video.frame_feats.shape[1]
    ranges = []
    for b, (item, clip) in enumerate(zip(items, clips)):
        for cap in item["captions"]:
            st, ed = tvc_clip_range(cap["ts"], clip.num_frames, corpus.frame_interval)
            ranges.append((b, st, ed))
    index, mask = moment_memory(ranges, length)
    return TvcBatch(video, index, mask)


def caption_rows(tokens: Sequence[int], bos: int, eos: int, max_len: int) -> tuple[list[int], list[int]]:
    """Decoder input ``(<s> + tokens)[:max_len]`` and target ``(tokens + </s>)[:max_len]``
    (reference ``CaptionTokLmdb``: a caption longer than ``max_len − 1`` tokens has no ``</s>``)."""
    return ([bos, *tokens][:max_len], [*tokens, eos][:max_len])


def collate(corpus: CorpusLike, items: Sequence[dict], cfg: TvcConfig,
            generator: torch.Generator | None = None) -> TvcBatch:
    """A training batch from `train_items` items (one per video, with all its captions).

    With ``cfg.max_cap_per_vid``, a video with more captions keeps a random subset (from ``generator``).
    """
    if not items:
        raise HeroError("cannot collate an empty TVC batch")
    chosen = []
    for item in items:
        caps = item["captions"]
        if cfg.max_cap_per_vid is not None and len(caps) > cfg.max_cap_per_vid:
            if generator is None:
                raise HeroError("TVC collate needs a generator to sample max_cap_per_vid captions")
            keep = torch.randperm(len(caps), generator=generator)[: cfg.max_cap_per_vid].sort().values
            caps = [caps[i] for i in keep.tolist()]
        chosen.append({**item, "captions": caps})
    batch = _video_batch(corpus, chosen, cfg)
    tokens = corpus.tokens
    rows = [caption_rows(cap["input_ids"], tokens.cls_id, tokens.sep_id, cfg.max_txt_len)
            for item in chosen for cap in item["captions"]]
    batch.input_ids = pad_token_rows([r[0] for r in rows], tokens.pad_id)[0]
    batch.target_ids = pad_token_rows([r[1] for r in rows], IGNORE)[0]
    return batch


def _check_record(record: Any, where: str, need_captions: bool) -> None:
    if not isinstance(record, dict):
        raise HeroError(f"{where}: expected a TVC record object")
    for key in ("clip_id", "vid", "ts"):
        if key not in record:
            raise HeroError(f"{where}: missing {key!r}")
    ts = record["ts"]
    if not (isinstance(ts, (list, tuple)) and len(ts) == 2 and all(isinstance(t, (int, float)) for t in ts)):
        raise HeroError(f"{where}: 'ts' must be [start, end] in seconds, got {ts!r}")
    if need_captions:
        caps = record.get("captions")
        if not isinstance(caps, list):
            raise HeroError(f"{where}: 'captions' must be a list")
        for j, cap in enumerate(caps):
            if not isinstance(cap, dict) or not isinstance(cap.get("input_ids"), list):
                raise HeroError(f"{where}: captions[{j}] needs 'input_ids' (a list of token ids)")


def train_items(corpus: CorpusLike, dataset: str, split: str, cfg: TvcConfig) -> list[dict]:
    """One item per video: ``{"vid", "captions": [{"clip_id", "desc_id", "ts", "input_ids"}]}``,
    videos in order of first appearance (reference ``TvcTrainDataset``: batches of videos)."""
    by_vid: dict[str, list[dict]] = {}
    for i, record in enumerate(corpus.annotations(dataset, split)):
        _check_record(record, where(dataset, split, i), need_captions=True)
        for cap in record["captions"]:
            by_vid.setdefault(record["vid"], []).append(
                {"clip_id": record["clip_id"], "desc_id": cap.get("desc_id"), "ts": list(record["ts"]),
                 "input_ids": list(cap["input_ids"])})
    return [{"vid": vid, "captions": caps} for vid, caps in by_vid.items()]


def loss(model: HeroForTvc, batch: TvcBatch, cfg: TvcConfig, step: int = 0) -> dict[str, Tensor]:
    """Label-smoothed caption loss (``normalizer`` = target tokens, see `hero.train.engine`).

    Logits are computed for the target tokens only (the reference scores padding too, then drops it).
    """
    keep = batch.target_ids != IGNORE  # (C, T)
    logits = model.logits(model.hidden(batch)[keep])  # (n, V)
    value, n = label_smoothed_kl(logits, batch.target_ids[keep], cfg.label_smoothing)
    return {"loss": value, "caption_loss": value, "normalizer": n}


# ---------------------------------------------------------------------------------------------
# Inference
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def greedy_decode(model: HeroForTvc, memory: Tensor, memory_mask: Tensor, bos_id: int, eos_id: int,
                  max_steps: int, use_cache: bool = True, early_stop: bool = True) -> Tensor:
    """Greedy decoding from ``memory (C, M, D)`` and ``memory_mask (C, M)`` → tokens ``(C, S)``.

    With ``use_cache`` every step embeds only the newest token; its self-attention keys/values are
    appended to a per-layer cache and the memory keys/values are projected once. Without it, every
    step re-decodes the whole prefix and scores every position (the reference ``TvcGenerator``;
    kept as the baseline of tests and benchmarks). Both give the same tokens. ``early_stop`` ends
    decoding once every sequence has produced ``</s>`` (``S ≤ max_steps``); tokens after ``</s>``
    are meaningless either way (see `cut_at_eos`).
    """
    c = memory.shape[0]
    kv, bias = model.memory_inputs(memory, memory_mask)
    tokens = torch.full((c, max_steps), eos_id, dtype=torch.long, device=memory.device)
    last = torch.full((c,), bos_id, dtype=torch.long, device=memory.device)
    done = torch.zeros(c, dtype=torch.bool, device=memory.device)
    caches = None
    for step in range(max_steps):
        if use_cache:
            x = model.embed(last[:, None], offset=step)  # (C, 1, D)
            if caches is None:
                caches = [KvCache(kv[0][0], max_steps) for _ in model.decoder.layer]
            out = model.logits(model.decoder(x, kv, bias, caches)[:, -1]).argmax(-1)  # (C,)
        else:
            prefix = torch.cat([torch.full((c, 1), bos_id, device=memory.device), tokens[:, :step]], dim=1)
            out = model.logits(model.decoder(model.embed(prefix), kv, bias)).argmax(-1)[:, -1]
        tokens[:, step] = out
        last = out
        done |= out == eos_id
        if early_stop and bool(done.all()):
            return tokens[:, :step + 1]
    return tokens


def cut_at_eos(ids: Sequence[int], eos_id: int) -> list[int]:
    """The tokens before the first ``</s>`` (reference ``cut_eos``)."""
    out = []
    for i in ids:
        if i == eos_id:
            break
        out.append(int(i))
    return out


def _clip_records(corpus: CorpusLike, dataset: str, split: str) -> list[dict]:
    records = corpus.annotations(dataset, split)
    for i, record in enumerate(records):
        _check_record(record, where(dataset, split, i), need_captions=False)
    return records


def predict(model: HeroForTvc, corpus: CorpusLike, dataset: str, split: str, cfg: TvcConfig, batch_size: int = 8,
            device: torch.device | str = "cpu") -> list[dict]:
    """Caption every clip of a split, in the official TVC format (one dict per clip, in annotation
    order): ``{"vid_name", "clip_id", "ts", "descs": [{"desc": text}]}``.

    ``batch_size`` counts videos (each with all its clips). Decoded ids at or beyond the
    tokenizer's vocabulary (the padded rows of the word table) are dropped from the text.
    """
    records = _clip_records(corpus, dataset, split)
    by_vid: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        by_vid.setdefault(record["vid"], []).append(i)
    tokens, tokenizer = corpus.tokens, corpus.tokenizer
    vocab = int(tokenizer.vocab_size)
    texts: dict[int, str] = {}
    vids = list(by_vid)
    for start in range(0, len(vids), batch_size):
        chunk = vids[start:start + batch_size]
        items = [{"vid": v, "captions": [records[i] for i in by_vid[v]]} for v in chunk]
        batch = _video_batch(corpus, items, cfg).to(device)
        with torch.no_grad():
            memory = model.encode(batch.video, batch.memory_index, batch.memory_mask)
            out = greedy_decode(model, memory, batch.memory_mask, tokens.cls_id, tokens.sep_id, cfg.max_gen_step)
        order = [i for v in chunk for i in by_vid[v]]
        for i, ids in zip(order, out.tolist()):
            texts[i] = tokenizer.decode([t for t in cut_at_eos(ids, tokens.sep_id) if t < vocab])
    return [{"vid_name": r["vid"], "clip_id": r["clip_id"], "ts": r["ts"], "descs": [{"desc": texts[i]}]}
            for i, r in enumerate(records)]


def write_predictions(predictions: list[dict], path: str | os.PathLike, cfg: TvcConfig | None = None) -> None:
    """Write predictions as official TVC JSONL (one clip per line), atomically."""
    write_text_atomic(path, "".join(json.dumps(p) + "\n" for p in predictions))


def references(corpus: CorpusLike, dataset: str, split: str) -> dict[Hashable, list[str]]:
    """``{clip_id: [reference caption, ...]}`` of a split."""
    out = {}
    for i, record in enumerate(_clip_records(corpus, dataset, split)):
        caps = record.get("captions") or []
        if not caps:
            raise HeroError(f"{where(dataset, split, i)}: clip {record['clip_id']!r} has no reference caption "
                            f"(a test split cannot be scored)")
        out[record["clip_id"]] = [c["desc"] for c in caps]
    return out


def evaluate(predictions: list[dict], corpus: CorpusLike, dataset: str, split: str, cfg: TvcConfig) -> dict[str, float]:
    """The official TVC metrics of `predict` output against the split's captions."""
    from hero.eval.captioning import caption_metrics

    hyps = {p["clip_id"]: p["descs"][0]["desc"] for p in predictions}
    return caption_metrics(hyps, references(corpus, dataset, split))


TASK = TaskSpec(
    name="tvc", datasets=("tvc",), config_class=TvcConfig, model_class=HeroForTvc,
    train_items=train_items, collate=collate, loss=loss, predict=predict, evaluate=evaluate,
    write_predictions=write_predictions, eval_kind="caption",
    prediction_suffix=".jsonl",  # official TVC JSONL, the format `hero eval caption` reads
    # the reference TVC decoder has 12 heads and a 3072-wide FFN: sized to the small backbone here
    demo=Demo(dataset="tvc", title="captioning (tvc)", steps=300,
              headline=(("CIDEr", "TVC CIDEr-D"), ("Bleu_4", "TVC BLEU@4")),
              task_config={"num_attention_heads": 4, "intermediate_size": 128}),
)
