"""Turning clips into model inputs: padding, packing and every gather/scatter index.

All index arithmetic happens here, once per batch, with NumPy; the model's forward pass only
indexes with the tensors built here. The Python loops below run over subtitle groups at collate
time (in DataLoader workers), never in a forward pass.

Shape letters as in `hero.model.hero`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from hero.model.hero import CrossModalInputs, VideoInputs
from hero.model.layers import AttentionLayout

MAX_TEXT_POSITION = 511
"""Text positions are clamped here (reference ``f_sub_pos_ids``)."""

Group = tuple[Sequence[int], Sequence[int]]
"""A subtitle group: (frame indices of the clip, exact text ids fed to the model)."""


@dataclass
class Randomness:
    """The random streams of one batch: one per clip and one for batch-level draws.

    A clip's masking comes from its own stream, so it does not depend on which rank or which
    position of the batch the clip lands in: N processes with B clips each draw the same masks as
    one process with N·B clips. Streams are derived from integer seeds (`from_seeds`), which the
    training engine computes from the run seed, the step and the clip's global position.

    Attributes:
        batch: for draws that concern the whole batch (e.g. whether VSM computes its span loss).
        clips: one generator per clip, in batch order.
    """

    batch: torch.Generator
    clips: list[torch.Generator]

    @classmethod
    def from_seeds(cls, batch_seed: int, clip_seeds: Sequence[int]) -> Randomness:
        make = lambda s: torch.Generator().manual_seed(int(s) % (2**63))  # noqa: E731
        return cls(batch=make(batch_seed), clips=[make(s) for s in clip_seeds])

    @classmethod
    def from_generator(cls, generator: torch.Generator, num_clips: int) -> Randomness:
        """Derive the streams of ``num_clips`` clips by drawing their seeds from ``generator``."""
        seeds = torch.randint(0, 2**62, (num_clips + 1,), generator=generator).tolist()
        return cls.from_seeds(seeds[0], seeds[1:])


def as_randomness(rng: torch.Generator | Randomness | None, num_clips: int, what: str) -> Randomness:
    """Accept a `Randomness` or a plain generator (streams derived from it); None is an error."""
    if rng is None:
        raise ValueError(f"{what} collate needs a generator (or Randomness) or explicit choices")
    if isinstance(rng, Randomness):
        if len(rng.clips) != num_clips:
            raise ValueError(f"{what} collate: {len(rng.clips)} clip streams for {num_clips} clips")
        return rng
    return Randomness.from_generator(rng, num_clips)


@dataclass
class Clip:
    """One clip as the data layer delivers it.

    Attributes:
        features: ``(n, d)`` raw frame features (any float dtype; cast to float32 at collate).
        subtitles: token ids of every subtitle sentence, without special tokens.
        sub2frames: the subtitle groups in order: ``(subtitle index, frame indices)``. A subtitle
            may own no frame; frames owned by no subtitle do not appear (reference
            ``unique_sub2frames`` after the loader's ``max_clip_len`` cut).
        vid: clip id.
    """

    features: Tensor
    subtitles: list[list[int]]
    sub2frames: list[tuple[int, list[int]]]
    vid: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.features.shape[0])


def clip_groups(clip: Clip, prefix_id: int, max_txt_len: int | None = None,
                text_override: dict[int, list[int]] | None = None) -> list[Group]:
    """The groups of a clip with text ``[prefix] + tokens[:max_txt_len]``.

    Args:
        prefix_id: SEP for the video representation, CLS for MLM (reference conventions).
        max_txt_len: cut of each subtitle's tokens (None: no cut, as on the reference repr path).
        text_override: ``{sub_idx: tokens}`` replacing a subtitle's tokens (e.g. MLM-masked text, or
            ``[]`` for VSM query sentences whose text is removed from the video).
    """
    groups = []
    for sub_idx, frames in clip.sub2frames:
        if not 0 <= sub_idx < len(clip.subtitles):
            raise ValueError(
                f"clip {clip.vid!r}: sub2frames names subtitle {sub_idx}, but the clip has "
                f"{len(clip.subtitles)} subtitles"
            )
        tokens = clip.subtitles[sub_idx]
        if text_override is not None and sub_idx in text_override:
            tokens = text_override[sub_idx]
        if max_txt_len is not None:
            tokens = tokens[:max_txt_len]
        groups.append((frames, [prefix_id, *tokens]))
    return groups


def pad_frames(features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Zero-pad clips: list of ``(n_i, d)`` → features ``(B, L, d)`` float32, mask ``(B, L)`` bool."""
    if not features:
        raise ValueError("cannot collate an empty batch of clips")
    lengths = [int(f.shape[0]) for f in features]
    if min(lengths) < 1:
        raise ValueError(f"every clip needs at least one frame; frame counts: {lengths}")
    dims = {int(f.shape[1]) for f in features}
    if len(dims) != 1:
        raise ValueError(f"clips of one batch must share the feature size; got sizes {sorted(dims)}")
    b, length, d = len(features), max(lengths), dims.pop()
    out = torch.zeros(b, length, d, dtype=torch.float32)
    for i, f in enumerate(features):
        out[i, : lengths[i]] = torch.as_tensor(f).to(torch.float32)
    mask = torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]
    return out, mask


def pad_token_rows(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Pad token lists: ``ids (R, T)`` long with ``pad_id``, ``mask (R, T)`` long (1 = token)."""
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(list(r), dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def bucket_lengths(lengths: np.ndarray, max_buckets: int) -> list[np.ndarray]:
    """Split sequences into at most ``max_buckets`` buckets of similar length.

    Minimises ``sum_b G_b·T_b·(T_b + 64)`` (attention work plus per-slot copies) over splits of
    the length-sorted sequences by dynamic programming over distinct lengths.

    Returns:
        a list of index arrays (into ``lengths``), shortest bucket first; within a bucket the
        original order is kept.
    """
    order = np.argsort(lengths, kind="stable")
    values, counts = np.unique(lengths[order], return_counts=True)
    u = len(values)
    k = max(1, min(max_buckets, u))
    cum = np.concatenate([[0], np.cumsum(counts)])
    cost = lambda i, j: (cum[j] - cum[i]) * values[j - 1] * (values[j - 1] + 64.0)  # noqa: E731
    best = np.full((k + 1, u + 1), np.inf)
    arg = np.zeros((k + 1, u + 1), dtype=np.int64)
    best[0, 0] = 0.0
    for b in range(1, k + 1):
        for j in range(1, u + 1):
            for i in range(b - 1, j):
                c = best[b - 1, i] + cost(i, j)
                if c < best[b, j]:
                    best[b, j], arg[b, j] = c, i
    nb = int(np.argmin(best[1:, u])) + 1
    bounds, j = [], u
    for b in range(nb, 0, -1):
        i = arg[b, j]
        bounds.append((cum[i], cum[j]))
        j = i
    return [np.sort(order[s:e]) for s, e in reversed(bounds)]


def pack_groups(groups: Sequence[Sequence[Group]], clip_lengths: Sequence[int], max_len: int,
                drop_frameless: bool = True, max_buckets: int = 4) -> CrossModalInputs:
    """Pack the subtitle groups of a batch of clips for the Cross-modal Transformer.

    Args:
        groups: per clip, its groups ``(frames, text ids)``.
        clip_lengths: frames of each clip; group frames must lie in ``[0, n)``.
        max_len: ``L``, the padded clip length (frame ``f`` of clip ``b`` is row ``b*L + f``).
        drop_frameless: skip groups that own no frame. On the video-representation path their
            outputs are discarded anyway (reference: encoded, then never collected).
        max_buckets: attention buckets of similar group length (see `bucket_lengths`).
    """
    frm_index, frm_pos, frm_group, txt_ids, txt_pos, txt_group = [], [], [], [], [], []
    n_frames, n_text, group_clip = [], [], []
    g = 0
    for b, (clip, n) in enumerate(zip(groups, clip_lengths)):
        for frames, text in clip:
            if drop_frameless and len(frames) == 0:
                continue
            if len(text) == 0:
                raise ValueError(f"clip {b}: a subtitle group has no text token (not even [SEP]/[CLS])")
            frames = np.asarray(frames, dtype=np.int64)
            if frames.size and (frames.min() < 0 or frames.max() >= n):
                raise ValueError(
                    f"clip {b}: a subtitle group names frames {frames.tolist()} outside the clip's "
                    f"{n} frames"
                )
            frm_index.append(b * max_len + frames)
            frm_pos.append(np.arange(len(frames)))
            frm_group.append(np.full(len(frames), g))
            txt_ids.append(np.asarray(text, dtype=np.int64))
            txt_pos.append(np.minimum(np.arange(len(text)), MAX_TEXT_POSITION))
            txt_group.append(np.full(len(text), g))
            n_frames.append(len(frames))
            n_text.append(len(text))
            group_clip.append(b)
            g += 1
    cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)  # noqa: E731
    frm_index, frm_pos, frm_group = cat(frm_index), cat(frm_pos), cat(frm_group)
    txt_ids, txt_pos, txt_group = cat(txt_ids), cat(txt_pos), cat(txt_group)
    n_frames, n_text = np.asarray(n_frames, dtype=np.int64), np.asarray(n_text, dtype=np.int64)
    layout = _packed_layout(n_frames, n_text, frm_group, frm_pos, txt_group, txt_pos, max_buckets)
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))  # noqa: E731
    return CrossModalInputs(
        txt_ids=as_t(txt_ids), txt_pos=as_t(txt_pos), txt_group=as_t(txt_group),
        frm_index=as_t(frm_index), frm_pos=as_t(frm_pos), frm_group=as_t(frm_group),
        layout=layout, num_groups=g, group_clip=as_t(np.asarray(group_clip, dtype=np.int64)),
    )


def _packed_layout(n_frames, n_text, frm_group, frm_pos, txt_group, txt_pos, max_buckets):
    """Attention layout of packed rows ``[frames ; text]``: group ``g`` sees its frames then text."""
    lengths = n_frames + n_text
    if len(lengths) == 0:
        return AttentionLayout(masks=(), gather=torch.zeros(0, dtype=torch.long),
                               scatter=torch.zeros(0, dtype=torch.long))
    group_base = np.zeros(len(lengths), dtype=np.int64)
    masks, offset = [], 0
    for members in bucket_lengths(lengths, max_buckets):
        t = int(lengths[members].max())
        group_base[members] = offset + np.arange(len(members)) * t
        masks.append(torch.from_numpy(np.arange(t)[None, :] < lengths[members][:, None]))
        offset += len(members) * t
    scatter = np.concatenate([
        group_base[frm_group] + frm_pos,
        group_base[txt_group] + n_frames[txt_group] + txt_pos,
    ])
    gather = np.zeros(offset, dtype=np.int64)
    gather[scatter] = np.arange(len(scatter))
    return AttentionLayout(masks=tuple(masks), gather=torch.from_numpy(gather),
                           scatter=torch.from_numpy(scatter))


def collate_video(features: Sequence[Tensor], groups: Sequence[Sequence[Group]],
                  drop_frameless: bool = True, max_buckets: int = 4) -> VideoInputs:
    """Build `VideoInputs` from clip features ``(n_i, d)`` and their groups."""
    frame_feats, frame_mask = pad_frames(features)
    cross = pack_groups(groups, [int(f.shape[0]) for f in features], frame_feats.shape[1],
                        drop_frameless=drop_frameless, max_buckets=max_buckets)
    return VideoInputs(frame_feats=frame_feats, frame_mask=frame_mask, cross=cross)
