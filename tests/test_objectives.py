"""Pre-training objectives: masking/sampling in collate, heads and losses on tiny models."""

from __future__ import annotations

import pytest
import torch
from conftest import make_clips

from hero.data.batch import Clip
from hero.objectives import (
    FomObjective,
    HeroForPretraining,
    MfmConfig,
    MfmObjective,
    MlmConfig,
    MlmObjective,
    VsmConfig,
    VsmObjective,
)
from hero.objectives.vsm import sentence_target


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_mlm_masking_statistics(tiny_tokens):
    mlm = MlmObjective(MlmConfig(mask_prob=0.15), tiny_tokens)
    tokens = list(range(10, 60)) * 400
    out, labels = mlm.mask_tokens(tokens, gen())
    chosen = [i for i, lab in enumerate(labels) if lab != -1]
    assert all(labels[i] == tokens[i] for i in chosen)
    assert abs(len(chosen) / len(tokens) - 0.15) < 0.01
    kinds = [("mask" if out[i] == tiny_tokens.mask_id else "keep" if out[i] == tokens[i] else "random")
             for i in chosen]
    share = {k: kinds.count(k) / len(kinds) for k in ("mask", "random", "keep")}
    assert abs(share["mask"] - 0.8) < 0.03 and abs(share["random"] - 0.1) < 0.03 and abs(share["keep"] - 0.1) < 0.03
    lo, hi = tiny_tokens.random_range
    assert all(lo <= out[i] < hi for i, k in zip(chosen, kinds) if k == "random")
    assert all(out[i] == tokens[i] for i, lab in enumerate(labels) if lab == -1)
    # the same generator state gives the same masks
    assert mlm.mask_tokens(tokens, gen()) == (out, labels)


def test_mlm_forces_one_masked_token(tiny_tokens):
    mlm = MlmObjective(MlmConfig(mask_prob=0.0), tiny_tokens)
    out, labels = mlm.mask_tokens([7, 8, 9], gen())
    assert out == [tiny_tokens.mask_id, 8, 9] and labels == [7, -1, -1]
    assert mlm.mask_tokens([], gen()) == ([], [])


def test_mlm_batch_rows_point_at_masked_tokens(tiny_config, tiny_tokens, tiny_clips):
    mlm = MlmObjective(tokens=tiny_tokens)
    batch = mlm.collate(tiny_clips, gen(1))
    cross = batch.video.cross
    rows = batch.masked_rows - cross.num_frames
    assert (rows >= 0).all()
    assert (cross.txt_pos[rows] > 0).all()  # never the [CLS] position
    assert cross.num_groups == sum(len(c.sub2frames) for c in tiny_clips)
    # every group of every clip is present, text starts with [CLS]
    starts = cross.txt_ids[cross.txt_pos == 0]
    assert (starts == tiny_tokens.cls_id).all()
    assert len(batch.labels) == len(batch.masked_rows) >= cross.num_groups


def test_mlm_handles_empty_subtitles(tiny_config, tiny_tokens):
    model = HeroForPretraining(tiny_config)
    clip = Clip(features=torch.randn(6, tiny_config.vfeat_dim), subtitles=[[], []],
                sub2frames=[(0, [0, 1, 2, 3, 4]), (1, [5])])
    mlm = MlmObjective(tokens=tiny_tokens)
    batch = mlm.collate([clip], gen())
    assert batch.labels.numel() == 0
    loss = mlm(model, batch)["loss"]
    assert loss.item() == 0.0
    loss.backward()


def test_mfm_masking(tiny_config, tiny_tokens):
    clips = make_clips(tiny_config, n=6, seed=2, min_frames=3, max_frames=30)
    mfm = MfmObjective(MfmConfig(mask_prob=0.15), tiny_tokens)
    batch = mfm.collate(clips, gen(3))
    mask = batch.video.mfm_mask
    assert (mask.sum(1) >= 1).all()
    assert not (mask & ~batch.video.frame_mask).any()
    assert batch.video.frame_feats[mask].abs().sum() == 0
    originals = torch.cat([c.features[mask[i, : c.num_frames]] for i, c in enumerate(clips)])
    torch.testing.assert_close(batch.targets, originals)
    big = mfm.mask_frames(20000, gen(4))
    assert abs(big.float().mean().item() - 0.15) < 0.01


def test_mnce_negatives_padding_option(tiny_config, tiny_tokens):
    model = HeroForPretraining(tiny_config).eval()
    clips = make_clips(tiny_config, n=3, seed=5, min_frames=4, max_frames=15)
    masks = [[i == 0 for i in range(c.num_frames)] for c in clips]
    ref = MfmObjective(MfmConfig(nce_negatives="all_unmasked"), tiny_tokens)
    fixed = MfmObjective(MfmConfig(nce_negatives="valid"), tiny_tokens)
    batch = ref.collate(clips, frame_masks=masks)
    with torch.no_grad():
        n_ref = ref.predict(model, batch)["neg_pred"].shape[0]
        n_fixed = fixed.predict(model, batch)["neg_pred"].shape[0]
    b, length = batch.video.frame_mask.shape
    assert n_ref == b * length - 3
    assert n_fixed == sum(c.num_frames for c in clips) - 3
    with pytest.raises(ValueError, match="nce_negatives"):
        MfmConfig(nce_negatives="padding")


def test_fom_reordering_is_a_consistent_permutation(tiny_tokens):
    fom = FomObjective(tokens=tiny_tokens)
    for seed in range(20):
        order, targets = fom.reorder(30, gen(seed))
        assert sorted(order) == list(range(30))
        for pos, tgt in enumerate(targets):
            if tgt != -1:
                assert order[tgt] == pos
        moved = [i for i, o in enumerate(order) if o != i]
        assert all(targets[order[i]] == i for i in moved)


def test_fom_batch_and_shuffle(tiny_config, tiny_tokens, tiny_clips):
    fom = FomObjective(tokens=tiny_tokens)
    batch = fom.collate(tiny_clips, gen(2))
    b, length = batch.orders.shape
    fused = torch.arange(b * length, dtype=torch.float).view(b, length, 1)
    shuffled = fom.shuffle(fused, batch.orders)
    sel = batch.targets != -1
    # the frame now at a reordered position came from its target index
    bi, pi = torch.nonzero(sel, as_tuple=True)
    assert torch.equal(shuffled[bi, pi, 0], fused[bi, batch.targets[sel], 0])
    with pytest.raises(ValueError, match="not a permutation"):
        fom.collate(tiny_clips[:1], reorders=[([0] * tiny_clips[0].num_frames, [-1] * tiny_clips[0].num_frames)])


def test_fom_without_reordered_frames(tiny_config, tiny_tokens, tiny_clips):
    model = HeroForPretraining(tiny_config)
    fom = FomObjective(tokens=tiny_tokens)
    reorders = [(list(range(c.num_frames)), [-1] * c.num_frames) for c in tiny_clips]
    out = fom(model, fom.collate(tiny_clips, reorders=reorders))
    assert out["loss"].item() == 0.0


def test_vsm_query_sampling(tiny_tokens):
    vsm = VsmObjective(VsmConfig(queries_per_video=5), tiny_tokens)
    clip = Clip(features=torch.randn(10, 4), subtitles=[[5, 6], [7], [8, 9], [10]],
                sub2frames=[(0, [0, 1]), (1, []), (2, [2, 3, 4]), (3, [9])])
    for seed in range(10):
        subs = vsm.sample_queries(clip, gen(seed))
        assert len(subs) == 5 and 1 not in subs
        distinct = sorted(set(subs))
        assert subs[: len(distinct)] == distinct and all(s == distinct[-1] for s in subs[len(distinct):])
    assert sentence_target([9], 10) == (9, 9)
    assert sentence_target([2, 3, 4], 10) == (2, 4)
    assert sentence_target([3], 10) == (3, 4)


def test_vsm_batch_removes_query_text(tiny_tokens):
    vsm = VsmObjective(VsmConfig(queries_per_video=2), tiny_tokens)
    clip = Clip(features=torch.randn(6, 4), subtitles=[[5, 6], [7, 8, 9], [10]],
                sub2frames=[(0, [0, 1]), (1, [2, 3]), (2, [4, 5])])
    batch = vsm.collate([clip], query_sub_indices=[[0, 2]], use_span=True)
    assert batch.query_ids.tolist() == [[tiny_tokens.cls_id, 5, 6], [tiny_tokens.cls_id, 10, tiny_tokens.pad_id]]
    assert batch.targets.tolist() == [[0, 1], [4, 5]]
    texts = batch.video.cross.txt_ids.tolist()
    assert texts == [tiny_tokens.sep_id, tiny_tokens.sep_id, 7, 8, 9, tiny_tokens.sep_id]


def test_vsm_clip_without_aligned_subtitle_is_only_a_negative(tiny_config, tiny_tokens, tiny_clips):
    model = HeroForPretraining(tiny_config)
    lonely = Clip(features=torch.randn(5, tiny_config.vfeat_dim), subtitles=[[5]], sub2frames=[(0, [])])
    vsm = VsmObjective(tokens=tiny_tokens)
    batch = vsm.collate(tiny_clips[:2] + [lonely], gen(1), use_span=True)
    assert (batch.q_vidx != 2).all() and batch.q_vidx.numel() == 10
    out = vsm(model, batch)
    assert torch.isfinite(out["loss"])


def test_vsm_span_branch_frequency(tiny_tokens, tiny_clips):
    vsm = VsmObjective(VsmConfig(drop_svmr_prob=0.8), tiny_tokens)
    g = gen(9)
    draws = [vsm.collate(tiny_clips[:1], g).use_span for _ in range(400)]
    assert 0.14 < sum(draws) / len(draws) < 0.26


@pytest.mark.parametrize("name", ["mlm", "mfm-nce", "mffr", "fom", "vsm"])
def test_each_objective_trains_its_heads(name, tiny_config, tiny_tokens, tiny_clips):
    model = HeroForPretraining(tiny_config)
    objective = {
        "mlm": MlmObjective(tokens=tiny_tokens),
        "mfm-nce": MfmObjective(MfmConfig(loss="nce"), tiny_tokens),
        "mffr": MfmObjective(MfmConfig(loss="mffr"), tiny_tokens),
        "fom": FomObjective(tokens=tiny_tokens),
        "vsm": VsmObjective(tokens=tiny_tokens),
    }[name]
    batch = objective.collate(tiny_clips, gen(7), **({"use_span": True} if name == "vsm" else {}))
    out = objective(model, batch)
    assert torch.isfinite(out["loss"]) and out["loss"].item() > 0
    out["loss"].backward()
    own_head = {"mlm": "mlm_head", "mfm-nce": "mfm_head", "mffr": "mfm_head", "fom": "fom_head",
                "vsm": "vsm_head"}[name]
    for head in ("mlm_head", "mfm_head", "fom_head", "vsm_head"):
        grads = [p.grad for p in getattr(model, head).parameters()]
        if head == own_head:
            assert all(g is not None and torch.isfinite(g).all() for g in grads)
        else:
            assert all(g is None for g in grads), f"{name} touched {head}"
    assert model.hero.f_encoder.encoder.layer[0].attention.self.query.weight.grad is not None
    if name != "mlm":  # MLM does not use the temporal transformer
        assert model.hero.c_encoder.encoder.layer[0].output.dense.weight.grad is not None


def test_collate_needs_randomness_or_explicit_choices(tiny_tokens, tiny_clips):
    for objective in (MlmObjective(tokens=tiny_tokens), MfmObjective(tokens=tiny_tokens),
                      FomObjective(tokens=tiny_tokens), VsmObjective(tokens=tiny_tokens)):
        with pytest.raises(ValueError, match="generator"):
            objective.collate(tiny_clips)
