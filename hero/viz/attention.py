"""Attention maps of the Cross-modal Transformer (in the spirit of paper Fig. 3).

The backbone's attention runs through ``scaled_dot_product_attention``, which never materialises
the probabilities. `cross_modal_attention` records each layer's input rows with forward hooks
during one ordinary forward pass and recomputes ``softmax(QKᵀ/√d)`` for the rows of a single
subtitle group ``[frames ; tokens]``, so the figure shows exactly what the model computed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from hero.data.protocol import CorpusLike
from hero.model.hero import Hero, VideoInputs
from hero.viz import pyplot, save_figure


def group_rows(video: VideoInputs, group: int) -> tuple[Tensor, int]:
    """Packed rows of subtitle group ``group``, in attention order (its frames, then its text).

    Returns:
        rows ``(T,)`` indices into the packed ``(N, D)`` rows, and the number of frame rows.
    """
    cross = video.cross
    if not 0 <= group < cross.num_groups:
        raise IndexError(f"group {group} outside the batch's {cross.num_groups} subtitle groups")
    frames = (cross.frm_group == group).nonzero().flatten()
    text = (cross.txt_group == group).nonzero().flatten() + cross.num_frames
    return torch.cat([frames, text]), int(frames.numel())


@torch.no_grad()
def cross_modal_attention(hero: Hero, video: VideoInputs, group: int) -> list[Tensor]:
    """Attention probabilities of every Cross-modal layer for one subtitle group.

    Returns:
        one ``(H, T, T)`` tensor per layer (rows: queries, columns: keys; frames first).
    """
    rows, _ = group_rows(video, group)
    inputs: list[Tensor] = []
    hooks = [layer.attention.self.register_forward_hook(lambda m, args, out: inputs.append(args[0].detach()))
             for layer in hero.f_encoder.encoder.layer]
    try:
        hero.cross_modal(video)
    finally:
        for h in hooks:
            h.remove()
    maps = []
    for layer, x in zip(hero.f_encoder.encoder.layer, inputs):
        sa = layer.attention.self
        x = x.index_select(0, rows).float()
        q = torch.nn.functional.linear(x, sa.query.weight.float(), sa.query.bias.float())
        k = torch.nn.functional.linear(x, sa.key.weight.float(), sa.key.bias.float())
        h, t = sa.num_heads, x.shape[0]
        q = q.view(t, h, -1).transpose(0, 1)
        k = k.view(t, h, -1).transpose(0, 1)
        maps.append(torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1))
    return maps


def plot_attention(maps: Sequence[Tensor], labels: Sequence[str], num_frames: int, out: str | Path,
                   title: str = "") -> Path:
    """Draw each layer's head-averaged map side by side; frame/text boundary marked. PNG."""
    plt = pyplot()

    n = len(maps)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n + 1, 4.2), squeeze=False)
    for i, (ax, m) in enumerate(zip(axes[0], maps)):
        im = ax.imshow(m.mean(0).numpy(), cmap="viridis")
        ax.set_title(f"layer {i + 1} (mean of {m.shape[0]} heads)", fontsize=9)
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
        for pos in (num_frames - 0.5,):
            ax.axvline(pos, color="white", lw=0.8)
            ax.axhline(pos, color="white", lw=0.8)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    fig.suptitle(title or "Cross-modal Transformer attention: frames (top-left) and subtitle tokens")
    fig.tight_layout()
    return save_figure(fig, out, dpi=130)


def attention_figure(model, corpus: CorpusLike, out: str | Path, vid: str | None = None,
                     group: int | None = None) -> Path:
    """Attention maps of one subtitle group of video ``vid`` of ``corpus`` (see `plot_attention`).

    ``group`` defaults to the group with the most frames (the most interesting cross-modal block).
    """
    from hero.data.batch import clip_groups, collate_video
    from hero.errors import HeroError

    vids = list(corpus.video_ids())
    vid = vid or vids[0]
    if vid not in set(vids):
        raise HeroError(f"video {vid!r} is not in the corpus {getattr(corpus, 'root', '')}")
    clip = corpus.clip(vid)
    groups = clip_groups(clip, corpus.tokens.sep_id)
    video = collate_video([clip.features], [groups])
    sizes = torch.bincount(video.cross.frm_group, minlength=video.cross.num_groups)
    if video.cross.num_groups == 0:
        raise HeroError(f"video {vid!r} has no subtitle group that owns a frame")
    group = int(sizes.argmax()) if group is None else group
    model = model.eval()
    maps = cross_modal_attention(model.hero, video, group)
    rows, nf = group_rows(video, group)
    frame_ids = video.cross.frm_index[video.cross.frm_group == group].tolist()
    text_ids = video.cross.txt_ids[video.cross.txt_group == group].tolist()
    decode = getattr(corpus.tokenizer, "decode", None)
    sep = corpus.tokens.sep_id
    words = ["[SEP]" if t == sep else (decode([t]).strip() if decode else str(t)) for t in text_ids]
    labels = [f"frame {f}" for f in frame_ids] + [w or "·" for w in words]
    return plot_attention(maps, labels, nf, out, title=f"{vid}, subtitle group {group}: Cross-modal attention")
