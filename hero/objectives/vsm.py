"""Video-Subtitle Matching (paper §3.2, VSM): local span prediction and global clip matching.

Pre-training turns subtitle sentences of a clip into queries: up to ``queries_per_video`` sentences
that own at least one frame are drawn (without replacement, kept in subtitle order, the last one
repeated up to the count), their text is removed from the clip, and each query must

* **locally** find its sentence's frames in its own clip: start/end logits from two 1-D
  convolutions over the query-frame scores (cross-entropy against the first/last frame);
* **globally** score its clip above the other clips of the batch (and its clip score it above the
  other clips' queries): hinge ranking losses over in-batch negatives.

The same head and loss serve the VCMR/VR fine-tuning tasks, which bring their own queries.

Across processes, queries and clip representations are gathered from every rank (gradients flow
back to each slice's owner), so the in-batch negatives of N processes are those of one process
holding the whole global batch; each rank averages the losses of its own queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hero.config import HeroConfig, TextTokens
from hero.data.batch import Clip, Randomness, as_randomness, clip_groups, collate_video, pad_token_rows
from hero.distributed import gather_with_grad
from hero.errors import check_settings
from hero.losses import span_cross_entropy, vsm_ranking_losses
from hero.model.hero import VideoInputs
from hero.model.layers import mask_logits

NORMALIZE_EPS = 1e-5


@dataclass
class VsmConfig:
    """VSM settings (reference ``config/pretrain-tv-16gpu.json``)."""

    queries_per_video: int = 5
    max_txt_len: int = 60
    """Cut of query tokens and of the clip's subtitle tokens."""
    lw_st_ed: float = 0.01
    """λ1: weight of the local start/end loss."""
    lw_neg_ctx: float = 8.0
    """λ2 for (query, negative clip) pairs."""
    lw_neg_q: float = 8.0
    """λ2 for (negative query, clip) pairs."""
    margin: float = 0.1
    ranking_loss: str = "hinge"
    """``hinge`` (reference default) or ``lse``."""
    drop_svmr_prob: float = 0.8
    """Probability that a training step skips the local (span) loss (reference: 0.8)."""
    hard_negative_start_step: int | None = None
    """Global step from which hard-negative weighting starts (reference pre-training: 20000)."""
    hard_pool_size: int = 20
    hard_neg_weight: float = 10.0
    span_padding: str = "reference"
    """``reference``: the span convolution reads the temporal outputs at padded positions (a
    clip's last logits depend on the batch's padding); ``zeros``: it sees zeros past a clip's end,
    so results do not depend on batch composition or on the number of processes."""

    def __post_init__(self) -> None:
        if self.span_padding not in ("reference", "zeros"):
            raise ValueError(f"VsmConfig.span_padding must be 'reference' or 'zeros', got {self.span_padding!r}")
        if self.ranking_loss not in ("hinge", "lse"):
            raise ValueError(f"VsmConfig.ranking_loss must be 'hinge' or 'lse', got {self.ranking_loss!r}")
        check_settings(self, "vsm", queries_per_video=">=1", max_txt_len=">=1", lw_st_ed=">=0", lw_neg_ctx=">=0",
                       lw_neg_q=">=0", margin=">=0", drop_svmr_prob="[0,1]", hard_negative_start_step=">=0",
                       hard_pool_size=">=1", hard_neg_weight=">=0")


def global_scores(q: Tensor, frames: Tensor, frame_mask: Tensor) -> Tensor:
    """VSM global score: max over frames of the query-frame cosine.

    Args:
        q: ``(Q, D)`` query vectors.
        frames: ``(V, L, D)`` frame representations.
        frame_mask: ``(V, L)``; padded frames get −1e4 before the max.
    Returns:
        ``(Q, V)`` scores.
    """
    qn = F.normalize(q.float(), dim=-1, eps=NORMALIZE_EPS)
    fn = F.normalize(frames.float(), dim=-1, eps=NORMALIZE_EPS)
    cos = torch.einsum("qd,vld->qvl", qn, fn)
    return mask_logits(cos, frame_mask[None]).amax(dim=-1)


class VsmHead(nn.Module):
    """Local VSM head: query projection and start/end 1-D convolutions over query-frame scores.

    Reference names: ``video_query_linear``, ``video_st_predictor``, ``video_ed_predictor``.
    """

    def __init__(self, config: HeroConfig) -> None:
        super().__init__()
        k = config.span_kernel_size
        self.query_linear = nn.Linear(config.hidden_size, config.hidden_size)
        self.st_conv = nn.Conv1d(1, 1, kernel_size=k, padding=k // 2, bias=False)
        self.ed_conv = nn.Conv1d(1, 1, kernel_size=k, padding=k // 2, bias=False)

    def span_logits(self, q: Tensor, frames: Tensor, frame_mask: Tensor,
                    q_vidx: Tensor | None = None, zero_padding: bool = False) -> tuple[Tensor, Tensor]:
        """Start/end logits, padded frames set to exactly −1e4.

        Args:
            q: ``(Q, D)``; frames ``(V, L, D)``; frame_mask ``(V, L)``.
            q_vidx: ``(Q,)`` the clip of each query: logits on that clip only ``(Q, L)``.
                None: every query against every clip ``(Q, V, L)``.
            zero_padding: False (reference): the convolution runs over the padded length and reads
                the temporal outputs at padded positions, so the last two logits of a clip depend
                on how far its batch is padded. True: positions past a clip's end are zero for the
                convolution (as if the clip were alone), which makes the logits independent of the
                batch.
        """
        proj = self.query_linear(q)
        if q_vidx is None:
            sim = torch.einsum("qd,vld->qvl", proj, frames)
            mask = frame_mask[None].expand_as(sim)
        else:
            sim = torch.einsum("qd,qld->ql", proj, frames.index_select(0, q_vidx))
            mask = frame_mask.index_select(0, q_vidx)
        if zero_padding:
            sim = sim * mask.to(sim.dtype)
        flat = sim.reshape(-1, 1, sim.shape[-1])
        st = self.st_conv(flat).view_as(sim)
        ed = self.ed_conv(flat).view_as(sim)
        return mask_logits(st, mask), mask_logits(ed, mask)


@dataclass
class VsmBatch:
    """A VSM batch.

    Attributes:
        video: the clips, with the query sentences' text removed.
        query_ids: ``(Q, T)`` ``[CLS] + tokens``, padded. query_mask: ``(Q, T)``.
        targets: ``(Q, 2)`` inclusive start/end frame of each query.
        q_vidx: ``(Q,)`` clip of each query.
        use_span: whether this step computes the local loss (drawn at collate time).
    """

    video: VideoInputs
    query_ids: Tensor
    query_mask: Tensor
    targets: Tensor
    q_vidx: Tensor
    use_span: bool = True

    def to(self, device) -> VsmBatch:
        return VsmBatch(self.video.to(device), self.query_ids.to(device), self.query_mask.to(device),
                        self.targets.to(device), self.q_vidx.to(device), self.use_span)


def sentence_target(frames: list[int], num_frames: int) -> tuple[int, int]:
    """Local target of a subtitle sentence: first frame, ``min(max(st + 1, last), n − 1)``."""
    st = frames[0]
    return st, min(max(st + 1, frames[-1]), num_frames - 1)


class VsmObjective:
    """VSM: collate (query sampling) and loss."""

    name = "vsm"

    def __init__(self, cfg: VsmConfig | None = None, tokens: TextTokens | None = None) -> None:
        self.cfg = cfg or VsmConfig()
        self.tokens = tokens or TextTokens()

    def sample_queries(self, clip: Clip, generator: torch.Generator) -> list[int]:
        """Subtitle indices used as queries: sampled among subtitles owning a frame, kept in
        ``sub2frames`` order, the last repeated up to ``queries_per_video``."""
        candidates = [s for s, frames in clip.sub2frames if len(frames) > 0]
        if not candidates:
            return []
        k = min(self.cfg.queries_per_video, len(candidates))
        picked = sorted(torch.randperm(len(candidates), generator=generator)[:k].tolist())
        chosen = [candidates[i] for i in picked]
        return chosen + [chosen[-1]] * (self.cfg.queries_per_video - len(chosen))

    def collate(self, clips: list[Clip], generator: torch.Generator | Randomness | None = None,
                query_sub_indices: list[list[int]] | None = None, use_span: bool | None = None) -> VsmBatch:
        """Build a VSM batch; random choices come from the batch's random streams unless given
        explicitly (clip ``b``'s queries from stream ``b``; the span-loss draw from the batch
        stream, so all ranks agree on it).

        A clip whose subtitles own no frame yields no query; it still serves as a negative.
        """
        rng = None
        if query_sub_indices is None or use_span is None:
            if generator is None and query_sub_indices is None:
                raise ValueError("VSM collate needs a generator (or Randomness) or explicit query_sub_indices")
            if generator is not None:
                rng = as_randomness(generator, len(clips), "VSM")
        if query_sub_indices is None:
            query_sub_indices = [self.sample_queries(c, rng.clips[b]) for b, c in enumerate(clips)]
        if use_span is None:
            use_span = (rng is None or self.cfg.drop_svmr_prob <= 0
                        or torch.rand((), generator=rng.batch).item() >= self.cfg.drop_svmr_prob)
        cut = self.cfg.max_txt_len
        groups, queries, targets, q_vidx = [], [], [], []
        for b, (clip, subs) in enumerate(zip(clips, query_sub_indices)):
            frames_of = dict(clip.sub2frames)
            for s in subs:
                if not frames_of.get(s):
                    raise ValueError(f"clip {clip.vid!r}: VSM query subtitle {s} owns no frame")
                queries.append([self.tokens.cls_id, *clip.subtitles[s][:cut]])
                targets.append(sentence_target(frames_of[s], clip.num_frames))
                q_vidx.append(b)
            groups.append(clip_groups(clip, self.tokens.sep_id, cut, {s: [] for s in subs}))
        video = collate_video([c.features for c in clips], groups)
        ids, mask = pad_token_rows(queries, self.tokens.pad_id)
        return VsmBatch(video, ids, mask, torch.tensor(targets, dtype=torch.long).view(-1, 2),
                        torch.tensor(q_vidx, dtype=torch.long), bool(use_span))

    def predict(self, model, batch: VsmBatch) -> dict[str, Tensor]:
        """Frame representations and query vectors (this rank's), global scores of every query
        against every clip of the global batch, and own-clip span logits (this rank's queries).

        Returns:
            ``frames (B, L, D)``, ``q (Q, D)``, ``scores (Q_all, V_all)``, ``q_vidx_all (Q_all,)``,
            ``q_offset`` (row of this rank's first query in ``scores``) and, when the batch computes
            the span loss, ``st_logits``/``ed_logits (Q, L)``.
        """
        frames = model.hero.encode_video(batch.video)
        q = model.hero.encode_query(batch.query_ids, batch.query_mask)
        frames_all, v_offset = gather_with_grad(frames, pad_dims=(1,))
        mask_all, _ = gather_with_grad(batch.video.frame_mask, pad_dims=(1,))
        q_all, q_offset = gather_with_grad(q)
        q_vidx_all, _ = gather_with_grad(batch.q_vidx + v_offset)
        out = {"frames": frames, "q": q, "scores": global_scores(q_all, frames_all, mask_all),
               "q_vidx_all": q_vidx_all, "q_offset": q_offset}
        if batch.use_span:
            out["st_logits"], out["ed_logits"] = model.vsm_head.span_logits(
                q, frames, batch.video.frame_mask, batch.q_vidx, zero_padding=self.cfg.span_padding == "zeros")
        return out

    def losses(self, pred: dict[str, Tensor], batch: VsmBatch, hard_negatives: bool = False,
               reduction: str = "mean") -> dict[str, Tensor]:
        """Weighted VSM losses of this rank's queries. ``reduction='none'`` gives per-query terms
        ``(Q,)``; ``'mean'`` averages them (``normalizer`` = Q)."""
        cfg = self.cfg
        ranking = vsm_ranking_losses(
            pred["scores"], pred["q_vidx_all"], cfg.margin, cfg.ranking_loss,
            cfg.hard_pool_size if hard_negatives else None, cfg.hard_neg_weight)
        mine = slice(pred["q_offset"], pred["q_offset"] + batch.q_vidx.shape[0])
        ranking = {k: v[mine] for k, v in ranking.items()}
        reduce = (lambda x: x.mean()) if reduction == "mean" else (lambda x: x)  # noqa: E731
        out = {
            "neg_ctx_loss": cfg.lw_neg_ctx * reduce(ranking["neg_ctx"]),
            "neg_q_loss": cfg.lw_neg_q * reduce(ranking["neg_q"]),
            "hinge_neg_ctx": ranking["hinge_neg_ctx"],
            "hinge_neg_q": ranking["hinge_neg_q"],
        }
        if "st_logits" in pred:
            ce_st, ce_ed = span_cross_entropy(pred["st_logits"], pred["ed_logits"], batch.targets)
            valid = batch.targets[:, 0] >= 0
            if reduction == "mean":
                n = valid.sum().clamp(min=1)
                ce_st, ce_ed = ce_st.sum() / n, ce_ed.sum() / n
            out["ce_st"], out["ce_ed"] = ce_st, ce_ed
            out["st_ed_loss"] = cfg.lw_st_ed * (ce_st + ce_ed)
        if reduction == "mean":
            out["loss"] = sum(v for k, v in out.items() if k.endswith("_loss"))
            out["normalizer"] = batch.q_vidx.shape[0]
        return out

    def hard_negatives_at(self, step: int | None) -> bool:
        """Whether optimizer step ``step`` (1-based) is in the hard-negative phase."""
        start = self.cfg.hard_negative_start_step
        return start is not None and step is not None and step >= start

    def __call__(self, model, batch: VsmBatch, step: int | None = None,
                 hard_negatives: bool | None = None) -> dict[str, Tensor]:
        if hard_negatives is None:
            hard_negatives = self.hard_negatives_at(step)
        return self.losses(self.predict(model, batch), batch, hard_negatives)
