"""The ablation baselines of paper §4.3 (Table 2), as drop-in replacements of the `Hero` backbone.

Both keep the `Hero` interface (`encode_video`, `encode_query`, `cross_modal`, `fuse`,
`temporal`), so every objective and task head runs on them unchanged; `build_backbone` picks the
class from ``HeroConfig.backbone``. They read the same collated batches as HERO: the per-subtitle
groups carry everything needed, and all regrouping happens with tensor indexing (no Python loop
over clips or subtitles).

* **F-TRM** (footnote 9): one multi-layer Transformer over a single sequence per clip,
  ``[all frames ; the tokens of all subtitle sentences]``. Its depth is ``num_cross_layers`` (set it
  to cross + temporal layers for a like-for-like comparison). It has no frame-level second stage,
  so FOM and VSM's span structure do not apply as in HERO (footnote 11: pre-train it with
  MLM + MNCE); FOM raises. It is composed of the parts it has (HERO's Cross-modal Transformer,
  run once over the flat sequence, and HERO's query encoder), with the same parameter names as
  in `Hero`, so HERO checkpoints load into it (without the parts it lacks).
* **H-TRM** (footnote 8): no cross-modal fusion. Each subtitle sentence is encoded alone by the
  text transformer (the RoBERTa-initialisable ``f_encoder``), max-pooled, and added to the initial
  embedding (``frame_transform``) of the frames it is aligned to; the Temporal Transformer runs
  on that sum.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hero.config import HeroConfig
from hero.errors import HeroError
from hero.model.checkpoint import PretrainedMixin
from hero.model.hero import CrossModalTransformer, Hero, QueryEncoder, VideoInputs
from hero.model.layers import AttentionLayout, init_weights


def _clip_text_positions(video: VideoInputs) -> tuple[Tensor, Tensor, int]:
    """Clip and position of every packed text token in its clip's concatenated subtitle text.

    Returns:
        clip ``(Nt,)``, pos ``(Nt,)`` and ``T``, the longest clip text. Tokens are packed group by
        group and groups clip by clip, so a token's position is its index minus its clip's first.
    """
    cross = video.cross
    if cross.group_clip is None:
        raise HeroError("F-TRM needs CrossModalInputs.group_clip (build batches with hero.data.batch)")
    b = video.frame_feats.shape[0]
    clip = cross.group_clip.index_select(0, cross.txt_group)
    counts = torch.bincount(clip, minlength=b)
    starts = counts.cumsum(0) - counts
    pos = torch.arange(clip.shape[0], device=clip.device) - starts.index_select(0, clip)
    return clip, pos, int(counts.max()) if counts.numel() else 0


class FlatTrm(nn.Module, PretrainedMixin):
    """F-TRM: ``[frames ; all subtitle tokens]`` through one Transformer (``num_cross_layers`` deep).

    The `Hero` interface without a second stage: ``f_encoder`` (a `CrossModalTransformer`, used
    for its embeddings and its layer stack) and ``q_encoder`` (`QueryEncoder`), initialised as in
    `Hero`; no frame projection, Temporal Transformer or clip-level MFM mask vector.
    """

    REFERENCE_KEY_MAP = Hero.REFERENCE_KEY_MAP

    def __init__(self, config: HeroConfig) -> None:
        super().__init__()
        self.config = config
        self.f_encoder = CrossModalTransformer(config)
        self.q_encoder = QueryEncoder(config)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """`Hero.reset_parameters` for the parts F-TRM has (the query encoder keeps PyTorch defaults)."""
        init_weights(self.f_encoder, self.config.initializer_range)
        with torch.no_grad():
            self.f_encoder.img_embeddings.mask_embedding.weight[0].zero_()

    # the same word table and query path as HERO (they only use f_encoder and q_encoder)
    word_embeddings = Hero.word_embeddings
    encode_query = Hero.encode_query

    def _flat(self, video: VideoInputs) -> tuple[Tensor, Tensor, Tensor]:
        """Run the flat sequence; returns outputs ``(B, L+T, D)``, token clip and token position."""
        feats, mask = video.frame_feats, video.frame_mask
        b, length, _ = feats.shape
        if length > self.config.max_frm_seq_len:
            raise HeroError(f"F-TRM sees whole clips: max_frm_seq_len ({self.config.max_frm_seq_len}) "
                            f"must be >= the clip length {length}")
        emb = self.f_encoder.embeddings
        frame_pos = torch.arange(length, device=feats.device).expand(b, length).reshape(-1)
        flags = None if video.mfm_mask is None else video.mfm_mask.reshape(-1)
        frames = self.f_encoder.img_embeddings(feats.reshape(b * length, -1), frame_pos,
                                               emb.type_embedding(), flags)
        clip, pos, t = _clip_text_positions(video)
        text = emb(video.cross.txt_ids, pos.clamp(max=self.config.max_position_embeddings - 1))
        s = length + t
        x = frames.new_zeros(b * s, frames.shape[-1])
        frame_slots = (torch.arange(b, device=feats.device)[:, None] * s
                       + torch.arange(length, device=feats.device)).reshape(-1)
        text_slots = clip * s + length + pos
        x = x.index_copy(0, frame_slots, frames).index_copy(0, text_slots, text.to(frames.dtype))
        seq_mask = torch.zeros(b * s, dtype=torch.bool, device=feats.device)
        seq_mask = seq_mask.index_fill(0, frame_slots[mask.reshape(-1)], True).index_fill(0, text_slots, True)
        out = self.f_encoder.encoder(x, AttentionLayout.padded(seq_mask.view(b, s)))
        return out.view(b, s, -1), clip, pos

    def cross_modal(self, video: VideoInputs) -> Tensor:
        """Packed rows ``(N, D)`` in HERO's order (grouped frames, then text), read off the flat run."""
        out, clip, pos = self._flat(video)
        b, s, d = out.shape
        length = video.frame_feats.shape[1]
        idx = video.cross.frm_index
        frame_rows = (idx // length) * s + idx % length
        return out.reshape(b * s, d).index_select(0, torch.cat([frame_rows, clip * s + length + pos]))

    def fuse(self, video: VideoInputs, return_intermediates: bool = False):
        out = self._flat(video)[0][:, : video.frame_feats.shape[1]]
        return (out, {}) if return_intermediates else out

    def temporal(self, fused: Tensor, frame_mask: Tensor) -> Tensor:
        raise HeroError("F-TRM has no Temporal Transformer: FOM does not apply (paper footnote 11)")

    def encode_video(self, video: VideoInputs, return_intermediates: bool = False):
        """Frame outputs of the flat Transformer ``(B, L, D)``."""
        return self.fuse(video, return_intermediates)


class HierarchicalTrm(Hero):
    """H-TRM: Temporal Transformer over ``frame_transform(frame) + maxpool(encoded subtitle)``."""

    def cross_modal(self, video: VideoInputs) -> Tensor:
        """Packed rows ``(N, D)``: each grouped frame gets its sentence's max-pooled encoding,
        each text token its own encoding (subtitles are encoded alone, without frames)."""
        cross = video.cross
        g = cross.num_groups
        if g == 0:
            return video.frame_feats.new_zeros(0, self.config.hidden_size)
        t = int(cross.txt_pos.max()) + 1
        slots = cross.txt_group * t + cross.txt_pos
        ids = cross.txt_ids.new_full((g * t,), self.config.pad_token_id).index_copy(0, slots, cross.txt_ids)
        mask = torch.zeros(g * t, dtype=torch.bool, device=ids.device).index_fill(0, slots, True)
        text = self.f_encoder.encode_text(ids.view(g, t), mask.view(g, t))  # (G, T, D)
        pooled = text.masked_fill(~mask.view(g, t, 1), float("-inf")).amax(1)  # (G, D)
        tokens = text.reshape(g * t, -1).index_select(0, slots)
        return torch.cat([pooled.index_select(0, cross.frm_group), tokens])


Backbone = Hero | FlatTrm
"""A video encoder with the `Hero` interface: `Hero`, `HierarchicalTrm` (a `Hero`) or `FlatTrm`."""

BACKBONE_CLASSES: dict[str, type[Backbone]] = {"hero": Hero, "f-trm": FlatTrm, "h-trm": HierarchicalTrm}


def build_backbone(config: HeroConfig) -> Backbone:
    """The video encoder ``config.backbone`` names (default: HERO)."""
    return BACKBONE_CLASSES[config.backbone](config)
