"""The HERO backbone (paper §3.1), all of it in this file.

A clip is a sequence of frames (``d``-dim features, one per 1.5 s) and subtitle sentences aligned to
them. HERO encodes it in two levels:

1. **Cross-modal Transformer** (`CrossModalTransformer`, reference ``f_encoder``): for every subtitle
   sentence, the sequence ``[frames aligned to it ; [SEP] + its tokens]`` goes through a
   RoBERTa-style encoder. All sentences of all clips of a batch are packed and encoded in one call.
2. The frame outputs are scattered back onto the clip timeline (frames that belong to no sentence
   stay 0) and added to a separate projection of the raw features (``frame_transform``, the
   paper's residual "V_emb").
3. **Temporal Transformer** (`TemporalTransformer`, reference ``c_encoder``) contextualises all
   frames of the clip.

Text queries go through the same cross-modal transformer (text only) and a one-block query encoder
with attention pooling (`QueryEncoder`).

Module and parameter names follow the reference implementation (``linjieli222/HERO``) wherever the
structure is the same, so checkpoints map with a short prefix table (`REFERENCE_KEY_MAP`).

Numerical details that matter for parity with the reference:
token-type row 1 for text and frames; 0-based text positions; frame positions local to their
subtitle group; LayerNorm eps 1e-12 inside transformer blocks and 1e-5 elsewhere; exact GELU.

Shape letters: ``B`` clips, ``L`` frames per clip (padded), ``d`` raw frame features, ``D`` hidden,
``G`` subtitle groups, ``Nf``/``Nt`` packed grouped frames/tokens, ``N = Nf + Nt``, ``Q`` queries.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hero.config import HeroConfig
from hero.model.checkpoint import PretrainedMixin
from hero.model.layers import (
    Attention,
    AttentionLayout,
    ProjectionLayer,
    TransformerEncoder,
    activation_dtype,
    dropout,
    init_weights,
    mask_logits,
)

# ---------------------------------------------------------------------------------------------
# Inputs (built once per batch at collate time; see hero.data.batch)
# ---------------------------------------------------------------------------------------------


@dataclass
class CrossModalInputs:
    """Packed subtitle groups ``[frames ; text]`` for the Cross-modal Transformer.

    Packed rows are all ``Nf`` grouped frames (group by group, in group order) followed by all
    ``Nt`` text tokens (group by group). ``layout`` turns them into padded groups for attention.

    Attributes:
        txt_ids: ``(Nt,)`` token ids.
        txt_pos: ``(Nt,)`` position of each token inside its group's text (0-based).
        txt_group: ``(Nt,)`` group of each token.
        frm_index: ``(Nf,)`` row of each grouped frame in the flattened clip frames ``(B*L)``.
        frm_pos: ``(Nf,)`` position of each frame inside its group (0-based, local).
        frm_group: ``(Nf,)`` group of each frame.
        layout: attention layout of the ``N = Nf + Nt`` packed rows.
        num_groups: ``G``.
        group_clip: ``(G,)`` clip of each group (used by the flat F-TRM baseline); None when the
            batch was built without it.
    """

    txt_ids: Tensor
    txt_pos: Tensor
    txt_group: Tensor
    frm_index: Tensor
    frm_pos: Tensor
    frm_group: Tensor
    layout: AttentionLayout
    num_groups: int
    group_clip: Tensor | None = None

    @property
    def num_frames(self) -> int:
        return self.frm_index.shape[0]

    def to(self, device: torch.device | str) -> CrossModalInputs:
        return _move(self, device)


@dataclass
class VideoInputs:
    """A batch of clips for the video encoder.

    Attributes:
        frame_feats: ``(B, L, d)`` raw frame features, zero-padded.
        frame_mask: ``(B, L)`` bool, True on real frames.
        cross: the packed subtitle groups of all clips.
        mfm_mask: ``(B, L)`` bool, frames masked by MFM (their features are already zeroed by the
            collate); None outside MFM batches. When given, the learned mask embeddings are added
            to the raw features on both levels, as the reference does.
    """

    frame_feats: Tensor
    frame_mask: Tensor
    cross: CrossModalInputs
    mfm_mask: Tensor | None = None

    def to(self, device: torch.device | str) -> VideoInputs:
        return _move(self, device)


def _move(obj, device):
    values = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, Tensor):
            v = v.to(device, non_blocking=True)
        elif hasattr(v, "to"):  # nested batch objects (CrossModalInputs, AttentionLayout)
            v = v.to(device)
        values[f.name] = v
    return type(obj)(**values)


# ---------------------------------------------------------------------------------------------
# Embeddings
# ---------------------------------------------------------------------------------------------


class TextEmbeddings(nn.Module):
    """``LN(word[ids] + position[pos] + type[row])`` → dropout (reference ``SubEmbeddings``)."""

    def __init__(self, config: HeroConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size_padded, d, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, d)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, d)
        self.LayerNorm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.token_type_id = config.token_type_id
        self.dropout_p = config.hidden_dropout_prob

    def type_embedding(self) -> Tensor:
        """``(D,)`` the one token-type row HERO uses for text and frames."""
        return self.token_type_embeddings.weight[self.token_type_id]

    def forward(self, ids: Tensor, pos: Tensor) -> Tensor:
        """``ids``, ``pos`` of any shape ``(*)`` → ``(*, D)``."""
        x = self.word_embeddings(ids) + self.position_embeddings(pos) + self.type_embedding()
        return dropout(self.LayerNorm(x).to(activation_dtype(x)), self.dropout_p, self.training)


class FrameEmbeddings(nn.Module):
    """Frame tokens of the Cross-modal Transformer (reference ``ImageEmbeddings``).

    ``LN(img_linear(img_LN(feat [+ mask_embedding[m]])) + position[local pos] + type)`` → dropout.
    """

    def __init__(self, config: HeroConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.img_LayerNorm = nn.LayerNorm(config.vfeat_dim, eps=config.layer_norm_eps)
        self.img_linear = nn.Linear(config.vfeat_dim, d)
        self.position_embeddings = nn.Embedding(config.max_frm_seq_len, d)
        # Row 1 is the learned MFM mask vector. Row 0 (padding_idx: never trained) is added to
        # every unmasked frame of an MFM batch, as in the reference.
        self.mask_embedding = nn.Embedding(2, config.vfeat_dim, padding_idx=0)
        self.LayerNorm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.dropout_p = config.hidden_dropout_prob

    def forward(self, feats: Tensor, pos: Tensor, type_embedding: Tensor,
                mfm_flags: Tensor | None = None) -> Tensor:
        """``feats (Nf, d)``, ``pos (Nf,)``, ``type_embedding (D,)``, ``mfm_flags (Nf,) bool`` → ``(Nf, D)``."""
        if mfm_flags is not None:
            feats = feats + self.mask_embedding(mfm_flags.long())
        x = self.img_linear(self.img_LayerNorm(feats)) + self.position_embeddings(pos) + type_embedding
        return dropout(self.LayerNorm(x).to(activation_dtype(x)), self.dropout_p, self.training)


# ---------------------------------------------------------------------------------------------
# The two transformers and the query encoder
# ---------------------------------------------------------------------------------------------


class CrossModalTransformer(nn.Module):
    """Cross-modal Transformer (reference ``f_encoder``): RoBERTa-style, over packed groups."""

    def __init__(self, config: HeroConfig) -> None:
        super().__init__()
        self.embeddings = TextEmbeddings(config)
        self.img_embeddings = FrameEmbeddings(config)
        self.encoder = TransformerEncoder(
            config.num_cross_layers, config.hidden_size, config.num_attention_heads,
            config.intermediate_size, config.hidden_dropout_prob,
            config.attention_probs_dropout_prob, config.layer_norm_eps_block,
        )

    def embed(self, frame_feats: Tensor, cross: CrossModalInputs,
              mfm_mask: Tensor | None = None) -> Tensor:
        """Packed input embeddings ``(N, D)``: grouped frames, then text.

        Args:
            frame_feats: ``(B*L, d)`` flattened clip frames.
            mfm_mask: ``(B*L,)`` bool MFM mask, or None.
        """
        feats = frame_feats.index_select(0, cross.frm_index)  # (Nf, d)
        flags = None if mfm_mask is None else mfm_mask.index_select(0, cross.frm_index)
        frames = self.img_embeddings(feats, cross.frm_pos, self.embeddings.type_embedding(), flags)
        text = self.embeddings(cross.txt_ids, cross.txt_pos)  # (Nt, D)
        return torch.cat([frames, text])

    def forward(self, frame_feats: Tensor, cross: CrossModalInputs,
                mfm_mask: Tensor | None = None) -> Tensor:
        """Packed outputs ``(N, D)``: grouped frames, then text (see `embed`)."""
        return self.encoder(self.embed(frame_feats, cross, mfm_mask), cross.layout)

    def encode_text(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Text-only pass (queries): ``ids (Q, T)``, ``mask (Q, T)`` → ``(Q, T, D)``.

        Positions are ``0..T-1`` as in the reference.
        """
        q, t = ids.shape
        pos = torch.arange(t, device=ids.device).expand(q, t)
        x = self.embeddings(ids, pos).reshape(q * t, -1)
        return self.encoder(x, AttentionLayout.padded(mask)).view(q, t, -1)


class TemporalTransformer(nn.Module):
    """Temporal Transformer (reference ``c_encoder``) over all frames of a clip."""

    def __init__(self, config: HeroConfig) -> None:
        super().__init__()
        self.embeddings = PositionEmbeddings(config)
        self.encoder = TransformerEncoder(
            config.num_temporal_layers, config.hidden_size, config.num_attention_heads,
            config.intermediate_size, config.hidden_dropout_prob,
            config.attention_probs_dropout_prob, config.layer_norm_eps_block,
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x (B, L, D)`` fused frames, ``mask (B, L)`` → ``(B, L, D)``.

        Padded positions are computed too (they attend to the real frames); the VSM span
        convolution and the MNCE negatives of the reference read them.
        """
        b, length, d = x.shape
        h = self.embeddings(x).reshape(b * length, d)
        return self.encoder(h, AttentionLayout.padded(mask)).view(b, length, d)


class PositionEmbeddings(nn.Module):
    """``dropout(LN(x + position[0..L-1]))`` (reference ``FrameEmbeddings``/``QueryFeatEmbeddings``)."""

    def __init__(self, config: HeroConfig) -> None:
        super().__init__()
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout_p = config.hidden_dropout_prob

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, L, D)`` → ``(B, L, D)``."""
        pos = self.position_embeddings.weight[: x.shape[1]]
        return dropout(self.LayerNorm(x + pos).to(activation_dtype(x)), self.dropout_p, self.training)


class QueryEncoder(nn.Module):
    """Query encoder (reference ``QueryFeatEncoder``): projection, one attention block, pooling."""

    def __init__(self, config: HeroConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.input_proj = ProjectionLayer(d, d, config.hidden_dropout_prob, config.layer_norm_eps)
        self.pos_embed = PositionEmbeddings(config)
        self.self_attention = Attention(
            d, config.num_attention_heads, config.hidden_dropout_prob,
            config.attention_probs_dropout_prob, config.layer_norm_eps_block,
        )
        self.pool = nn.Linear(d, 1, bias=False)

    def forward(self, txt_out: Tensor, mask: Tensor, return_intermediates: bool = False):
        """``txt_out (Q, T, D)``, ``mask (Q, T)`` → query vectors ``(Q, D)``.

        With ``return_intermediates`` also returns a dict of the stages (for debugging/parity).
        """
        q, t, d = txt_out.shape
        proj = self.input_proj(txt_out)
        pos = self.pos_embed(proj)
        attn = self.self_attention(pos.reshape(q * t, d), AttentionLayout.padded(mask)).view(q, t, d)
        weights = F.softmax(mask_logits(self.pool(attn).squeeze(-1), mask), dim=-1)  # (Q, T)
        out = torch.einsum("qt,qtd->qd", weights.to(attn.dtype), attn)
        if return_intermediates:
            return out, {"input_proj": proj, "pos_embed": pos, "self_attn": attn, "pool_weights": weights}
        return out


# ---------------------------------------------------------------------------------------------
# The backbone
# ---------------------------------------------------------------------------------------------


REFERENCE_KEY_MAP: list[tuple[str, str | None]] = [
    # (reference prefix, our prefix); None = known but not modelled (ignored on load).
    ("v_encoder.f_encoder.pooler.", None),
    ("v_encoder.c_encoder.pooler.", None),
    ("v_encoder.f_encoder.pad", None),
    ("v_encoder.pad", None),
    ("v_encoder.f_encoder.embeddings.", "f_encoder.embeddings."),
    ("v_encoder.f_encoder.img_embeddings.", "f_encoder.img_embeddings."),
    ("v_encoder.f_encoder.encoder.", "f_encoder.encoder."),
    ("v_encoder.frame_transform.net.1.", "frame_transform.linear."),
    ("v_encoder.frame_transform.LayerNorm.", "frame_transform.LayerNorm."),
    ("v_encoder.c_encoder.embeddings.", "c_encoder.embeddings."),
    ("v_encoder.c_encoder.encoder.", "c_encoder.encoder."),
    ("v_encoder.mask_embedding.", "clip_mask_embedding."),
    ("q_feat_attn.query_input_proj.net.1.", "q_encoder.input_proj.linear."),
    ("q_feat_attn.query_input_proj.LayerNorm.", "q_encoder.input_proj.LayerNorm."),
    ("q_feat_attn.query_pos_embed.", "q_encoder.pos_embed."),
    ("q_feat_attn.query_self_attention.", "q_encoder.self_attention."),
    ("q_feat_attn.modular_vector_mapping.", "q_encoder.pool."),
]
"""How reference ``HeroModel`` state-dict keys map onto `Hero` (prefix table, first match wins)."""


class Hero(nn.Module, PretrainedMixin):
    """HERO backbone: `encode_video` for clips, `encode_query` for text queries.

    The two are separate so a corpus is encoded once and queried many times. No method loops in
    Python over clips, subtitles or frames: `VideoInputs` carries precomputed gather/scatter
    indices.
    """

    REFERENCE_KEY_MAP = REFERENCE_KEY_MAP

    def __init__(self, config: HeroConfig) -> None:
        super().__init__()
        self.config = config
        self.f_encoder = CrossModalTransformer(config)
        self.frame_transform = ProjectionLayer(
            config.vfeat_dim, config.hidden_size, config.hidden_dropout_prob, config.layer_norm_eps
        )
        self.c_encoder = TemporalTransformer(config)
        # MFM mask vector added to clip-level features (row 0 is zero and never trained).
        self.clip_mask_embedding = nn.Embedding(2, config.vfeat_dim, padding_idx=0)
        self.q_encoder = QueryEncoder(config)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reference initialisation.

        The video encoder gets N(0, initializer_range); the query encoder keeps PyTorch defaults
        (the reference creates it after its initialisation pass). Unlike the reference, row 0 of
        the frame-level MFM mask embedding starts at zero: in the reference it is a frozen random
        vector added to unmasked frames in MFM batches only, an offset the model never sees at
        test time.
        """
        for module in (self.f_encoder, self.frame_transform, self.c_encoder, self.clip_mask_embedding):
            init_weights(module, self.config.initializer_range)
        with torch.no_grad():
            self.clip_mask_embedding.weight[0].zero_()
            self.f_encoder.img_embeddings.mask_embedding.weight[0].zero_()

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.f_encoder.embeddings.word_embeddings

    # -- video path --------------------------------------------------------------------------

    def cross_modal(self, video: VideoInputs) -> Tensor:
        """Cross-modal Transformer outputs ``(N, D)``, packed: grouped frames, then text."""
        mfm = None if video.mfm_mask is None else video.mfm_mask.flatten()
        return self.f_encoder(video.frame_feats.flatten(0, 1), video.cross, mfm)

    def collect(self, cross_out: Tensor, video: VideoInputs) -> Tensor:
        """Scatter grouped-frame outputs onto the clip timeline: ``(B, L, D)``.

        Frames that belong to no subtitle group stay 0 (reference ``collect_frame_outputs``).
        """
        b, length, _ = video.frame_feats.shape
        nf = video.cross.num_frames
        frames = cross_out.split([nf, cross_out.shape[0] - nf])[0]  # (Nf, D); split: cheap backward
        out = frames.new_zeros(b * length, frames.shape[-1])
        return out.index_add(0, video.cross.frm_index, frames).view(b, length, -1)

    def frame_residual(self, video: VideoInputs) -> Tensor:
        """``frame_transform`` of the raw clip features (+ MFM mask vector): ``(B, L, D)``."""
        feats = video.frame_feats
        if video.mfm_mask is not None:
            feats = feats + self.clip_mask_embedding(video.mfm_mask.long())
        return self.frame_transform(feats)

    def fuse(self, video: VideoInputs, return_intermediates: bool = False):
        """Frame inputs of the Temporal Transformer: ``frame_transform + collected`` ``(B, L, D)``."""
        cross_out = self.cross_modal(video)
        collected = self.collect(cross_out, video)
        residual = self.frame_residual(video)
        fused = residual + collected
        if return_intermediates:
            return fused, {"cross_out": cross_out, "collected": collected, "frame_transform": residual}
        return fused

    def temporal(self, fused: Tensor, frame_mask: Tensor) -> Tensor:
        """Temporal Transformer: ``fused (B, L, D)``, ``frame_mask (B, L)`` → ``(B, L, D)``."""
        return self.c_encoder(fused, frame_mask)

    def encode_video(self, video: VideoInputs, return_intermediates: bool = False):
        """Contextualised frame representations ``(B, L, D)`` used by every head."""
        fused, inter = self.fuse(video, return_intermediates=True)
        out = self.temporal(fused, video.frame_mask)
        if return_intermediates:
            return out, {**inter, "fused": fused}
        return out

    # -- query path --------------------------------------------------------------------------

    def encode_query(self, ids: Tensor, mask: Tensor, return_intermediates: bool = False):
        """Query vectors ``(Q, D)`` from ``[CLS] + tokens`` ``ids (Q, T)`` and ``mask (Q, T)``."""
        txt_out = self.f_encoder.encode_text(ids, mask)
        if not return_intermediates:
            return self.q_encoder(txt_out, mask)
        out, inter = self.q_encoder(txt_out, mask, return_intermediates=True)
        return out, {"txt_out": txt_out, **inter}
