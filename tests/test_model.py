"""Backbone unit tests on hand-made tensors and tiny clips."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import make_clips

from hero.config import hero_base
from hero.data.batch import Clip, bucket_lengths, clip_groups, collate_video, pack_groups, pad_token_rows
from hero.model.hero import Hero
from hero.model.layers import AttentionLayout, dropout, dropout_add, mask_logits
from hero.objectives import HeroForPretraining


def naive_attention(qkv_groups, num_heads):
    """Per-group softmax attention, written out (the reference formula)."""
    outs = []
    for qkv in qkv_groups:  # (T, 3D)
        t, three_d = qkv.shape
        d = three_d // 3
        q, k, v = qkv.view(t, 3, num_heads, d // num_heads).permute(1, 2, 0, 3)  # (H, T, hd)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // num_heads)
        outs.append((scores.softmax(-1) @ v).transpose(0, 1).reshape(t, d))
    return outs


@pytest.mark.parametrize("max_buckets", [1, 2, 4])
def test_packed_attention_equals_per_group_attention(max_buckets):
    gen = torch.Generator().manual_seed(0)
    lengths = [(3, 4), (0, 7), (5, 1), (2, 2), (9, 6)]  # (frames, text) per group
    groups = [[(list(range(nf)), list(range(4, 4 + nt)))] for nf, nt in lengths]
    cross = pack_groups(groups, [max(nf, 1) for nf, _ in lengths], 16, drop_frameless=False, max_buckets=max_buckets)
    n = cross.num_frames + cross.txt_ids.shape[0]
    qkv = torch.randn(n, 3 * 8, generator=gen, dtype=torch.float64)
    out = cross.layout.attend(qkv, num_heads=2, dropout_p=0.0)
    # rows of group g, in [frames ; text] order
    rows = []
    for g in range(len(lengths)):
        f = torch.nonzero(cross.frm_group == g).flatten()
        t = cross.num_frames + torch.nonzero(cross.txt_group == g).flatten()
        rows.append(torch.cat([f, t]))
    expected = naive_attention([qkv[r] for r in rows], 2)
    for r, e in zip(rows, expected):
        torch.testing.assert_close(out[r], e, atol=1e-12, rtol=1e-12)


def test_padded_layout_is_plain_attention():
    gen = torch.Generator().manual_seed(1)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    qkv = torch.randn(8, 12, generator=gen, dtype=torch.float64)
    out = AttentionLayout.padded(mask).attend(qkv, num_heads=2, dropout_p=0.0).view(2, 4, 4)
    ref = naive_attention([qkv[:3], qkv[4:]], 2)
    torch.testing.assert_close(out[0, :3], ref[0])
    torch.testing.assert_close(out[1], ref[1])


def test_bucket_lengths_partition():
    rng = np.random.RandomState(0)
    lengths = rng.randint(3, 40, size=200)
    buckets = bucket_lengths(lengths, 4)
    assert 1 <= len(buckets) <= 4
    assert sorted(np.concatenate(buckets).tolist()) == list(range(200))
    cost = lambda bs: sum(len(b) * lengths[b].max() * (lengths[b].max() + 64) for b in bs)  # noqa: E731
    assert cost(buckets) <= cost([np.arange(200)])
    assert bucket_lengths(np.array([5, 5, 5]), 4)[0].tolist() == [0, 1, 2]


@torch.no_grad()
def test_bucketing_does_not_change_outputs(tiny_config, tiny_clips, tiny_tokens):
    model = Hero(tiny_config).eval()
    groups = [clip_groups(c, tiny_tokens.sep_id) for c in tiny_clips]
    feats = [c.features for c in tiny_clips]
    a = model.encode_video(collate_video(feats, groups, max_buckets=1))
    b = model.encode_video(collate_video(feats, groups, max_buckets=4))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_real_frames_do_not_depend_on_batch_padding(tiny_config, tiny_tokens):
    model = Hero(tiny_config).eval()
    short, long = make_clips(tiny_config, n=2, seed=3, min_frames=5, max_frames=20)
    if short.num_frames > long.num_frames:
        short, long = long, short
    enc = lambda clips: model.encode_video(collate_video(  # noqa: E731
        [c.features for c in clips], [clip_groups(c, tiny_tokens.sep_id) for c in clips]))
    alone = enc([short])[0]
    batched = enc([short, long])[0, : short.num_frames]
    torch.testing.assert_close(alone, batched, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_query_does_not_depend_on_padding(tiny_config):
    model = Hero(tiny_config).eval()
    ids, mask = pad_token_rows([[0, 5, 6, 7], [0, 8, 9, 10, 11, 12, 13, 14]], pad_id=1)
    alone_ids, alone_mask = pad_token_rows([[0, 5, 6, 7]], pad_id=1)
    torch.testing.assert_close(model.encode_query(ids, mask)[0], model.encode_query(alone_ids, alone_mask)[0],
                               atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_frameless_groups_skipped_without_changing_outputs(tiny_config, tiny_tokens):
    model = Hero(tiny_config).eval()
    clip = make_clips(tiny_config, n=1, seed=4)[0]
    clip.subtitles.append([11, 12, 13])
    clip.sub2frames.insert(1, (len(clip.subtitles) - 1, []))  # a subtitle that owns no frame
    groups = [clip_groups(clip, tiny_tokens.sep_id)]
    dropped = collate_video([clip.features], groups)
    kept = collate_video([clip.features], groups, drop_frameless=False)
    assert dropped.cross.num_groups == kept.cross.num_groups - 1
    torch.testing.assert_close(model.encode_video(dropped), model.encode_video(kept), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_frames_without_subtitle_collect_zero(tiny_config, tiny_tokens):
    model = Hero(tiny_config).eval()
    feats = torch.randn(6, tiny_config.vfeat_dim)
    clip = Clip(features=feats, subtitles=[[5, 6], [7]], sub2frames=[(0, [0, 1]), (1, [4])])
    video = collate_video([feats], [clip_groups(clip, tiny_tokens.sep_id)])
    collected = model.collect(model.cross_modal(video), video)[0]
    assert collected[[2, 3, 5]].abs().sum() == 0
    assert collected[[0, 1, 4]].abs().sum(-1).min() > 0


@torch.no_grad()
def test_clips_without_any_group(tiny_config):
    model = Hero(tiny_config).eval()
    clip = Clip(features=torch.randn(4, tiny_config.vfeat_dim), subtitles=[], sub2frames=[])
    video = collate_video([clip.features], [clip_groups(clip, 2)])
    out = model.encode_video(video)
    assert out.shape == (1, 4, tiny_config.hidden_size) and torch.isfinite(out).all()


def test_collate_errors(tiny_config):
    d = tiny_config.vfeat_dim
    good = Clip(features=torch.randn(3, d), subtitles=[[5]], sub2frames=[(0, [0, 1])])
    with pytest.raises(ValueError, match="outside the clip's 3 frames"):
        collate_video([good.features], [[([0, 3], [2, 5])]])
    with pytest.raises(ValueError, match="at least one frame"):
        collate_video([torch.randn(0, d)], [[]])
    with pytest.raises(ValueError, match="share the feature size"):
        collate_video([torch.randn(2, d), torch.randn(2, d + 1)], [[], []])
    with pytest.raises(ValueError, match="empty batch"):
        collate_video([], [])
    with pytest.raises(ValueError, match="subtitle 4"):
        clip_groups(Clip(features=torch.randn(3, d), subtitles=[[5]], sub2frames=[(4, [0])], vid="v"), 2)


def test_mask_logits_exact():
    x = torch.tensor([[1.5, -2.0, 3.0]])
    out = mask_logits(x, torch.tensor([[1, 0, 1]]))
    assert out.tolist() == [[1.5, -10000.0, 3.0]]


def test_dropout_statistics_and_determinism():
    x = torch.ones(400_000)
    assert dropout(x, 0.1, training=False) is x
    torch.manual_seed(0)
    a = dropout(x, 0.1, training=True)
    torch.manual_seed(0)
    b = dropout(x, 0.1, training=True)
    assert torch.equal(a, b)
    dropped = (a == 0).float().mean().item()
    assert abs(dropped - 0.1) < 4 * math.sqrt(0.1 * 0.9 / x.numel())
    assert abs(a.mean().item() - 1.0) < 5e-3
    kept = a[a != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 65536 / (65536 - 6554)))


def test_dropout_gradient_and_add():
    x = torch.randn(1000, requires_grad=True)
    res = torch.randn(1000)
    torch.manual_seed(5)
    y = dropout(x, 0.3, training=True)
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach() / x.detach())
    torch.manual_seed(5)
    z = dropout_add(x.detach(), res, 0.3, training=True)
    torch.testing.assert_close(z, res + y.detach())
    assert torch.equal(dropout_add(x.detach(), res, 0.3, training=False), res + x.detach())


def test_layer_norm_eps_split(tiny_config):
    model = Hero(tiny_config)
    block = model.f_encoder.encoder.layer[0]
    assert block.attention.output.LayerNorm.eps == 1e-12 and block.output.LayerNorm.eps == 1e-12
    assert model.q_encoder.self_attention.output.LayerNorm.eps == 1e-12
    for ln in (model.f_encoder.embeddings.LayerNorm, model.f_encoder.img_embeddings.img_LayerNorm,
               model.frame_transform.LayerNorm, model.c_encoder.embeddings.LayerNorm):
        assert ln.eps == 1e-5


def test_initialisation(tiny_config):
    model = HeroForPretraining(hero_base())
    hero = model.hero
    assert not hero.clip_mask_embedding.weight[0].any()
    assert not hero.f_encoder.img_embeddings.mask_embedding.weight[0].any()
    assert abs(hero.word_embeddings.weight.std().item() - 0.02) < 1e-3
    assert not model.mlm_head.bias.any()
    # the query encoder keeps PyTorch defaults (reference: created after the initialisation pass)
    assert abs(hero.q_encoder.pos_embed.position_embeddings.weight.std().item() - 1.0) < 0.05


def test_bf16_autocast_close_to_fp32(tiny_config, tiny_clips, tiny_tokens):
    model = Hero(tiny_config).eval()
    video = collate_video([c.features for c in tiny_clips], [clip_groups(c, tiny_tokens.sep_id) for c in tiny_clips])
    with torch.no_grad():
        ref = model.encode_video(video)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model.encode_video(video)
    assert low.dtype == torch.bfloat16
    rel = (low.float() - ref).norm() / ref.norm()
    assert rel < 3e-2


def test_base_preset_shapes():
    model = Hero(hero_base())
    assert len(model.f_encoder.encoder.layer) == 6 and len(model.c_encoder.encoder.layer) == 3
    assert model.word_embeddings.weight.shape == (50272, 768)
    assert model.f_encoder.img_embeddings.img_linear.weight.shape == (768, 4352)
    assert model.f_encoder.img_embeddings.position_embeddings.weight.shape == (100, 768)
