"""The F-TRM and H-TRM ablation backbones (paper §4.3) on hand-made batches."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hero.config import HeroConfig, TextTokens
from hero.data.batch import clip_groups, collate_video
from hero.data.synthetic import random_clips
from hero.model import FlatTrm, Hero, HierarchicalTrm, build_backbone
from hero.objectives import HeroForPretraining, MfmObjective, MlmObjective, VsmObjective


def _config(backbone: str) -> HeroConfig:
    return dataclasses.replace(HeroConfig.from_name("hero-tiny"), backbone=backbone, hidden_dropout_prob=0.0,
                               attention_probs_dropout_prob=0.0)


def _batch(clips, tokens: TextTokens):
    groups = [clip_groups(c, tokens.sep_id) for c in clips]
    return collate_video([c.features for c in clips], groups)


@pytest.fixture
def clips():
    return random_clips(3, 16, min_frames=5, max_frames=9, min_tokens=2, max_tokens=5, token_range=(4, 1000), seed=3)


def test_build_backbone_picks_the_class():
    assert type(build_backbone(_config("hero"))) is Hero
    assert type(build_backbone(_config("f-trm"))) is FlatTrm
    assert type(build_backbone(_config("h-trm"))) is HierarchicalTrm
    with pytest.raises(ValueError, match="backbone must be one of"):
        _config("x-trm")


def test_flat_trm_mixes_only_within_a_clip(clips):
    torch.manual_seed(0)
    model = FlatTrm(_config("f-trm")).eval()
    assert not hasattr(model, "c_encoder")
    tokens = TextTokens(mask_id=1002, random_range=(4, 1000))
    out = model.encode_video(_batch(clips, tokens))
    assert out.shape == (3, max(c.num_frames for c in clips), 32)
    # change one token of clip 0's last subtitle: every frame of clip 0 moves, clips 1-2 do not
    clips[0].subtitles[-1][0] = 4 if clips[0].subtitles[-1][0] != 4 else 5
    out2 = model.encode_video(_batch(clips, tokens))
    n0 = clips[0].num_frames
    assert (out2[0, :n0] - out[0, :n0]).abs().amax(-1).min() > 1e-6
    torch.testing.assert_close(out2[1:], out[1:])
    # packed rows in HERO order: grouped frames then text, read off the same flat run
    video = _batch(clips, tokens)
    rows = model.cross_modal(video)
    assert rows.shape[0] == video.cross.num_frames + video.cross.txt_ids.shape[0]
    length = video.frame_feats.shape[1]
    idx = video.cross.frm_index
    torch.testing.assert_close(rows[: idx.shape[0]], model.encode_video(video).reshape(-1, 32)[idx])
    with pytest.raises(Exception, match="FOM does not apply"):
        model.temporal(out, video.frame_mask)
    assert length == out.shape[1]


def test_flat_trm_is_composed_of_heros_shared_parts(clips):
    """F-TRM holds HERO's Cross-modal Transformer and query encoder under the same names (no second
    stage), so the shared weights of a HERO model load into it and give the same query vectors."""
    torch.manual_seed(0)
    hero = Hero(_config("hero")).eval()
    flat = FlatTrm(_config("f-trm")).eval()
    assert not isinstance(flat, Hero)
    assert {n.split(".")[0] for n, _ in flat.named_parameters()} == {"f_encoder", "q_encoder"}
    shared = {k: v for k, v in hero.state_dict().items() if k.startswith(("f_encoder.", "q_encoder."))}
    assert list(shared) == list(flat.state_dict())
    flat.load_state_dict(shared)
    ids = torch.randint(4, 1000, (2, 6))
    mask = torch.ones_like(ids, dtype=torch.bool)
    torch.testing.assert_close(flat.encode_query(ids, mask), hero.encode_query(ids, mask))
    assert flat.word_embeddings is flat.f_encoder.embeddings.word_embeddings
    assert flat.f_encoder.img_embeddings.mask_embedding.weight[0].abs().sum() == 0  # Hero's initialisation


def test_hierarchical_trm_adds_max_pooled_sentence_encodings(clips):
    torch.manual_seed(0)
    model = HierarchicalTrm(_config("h-trm")).eval()
    tokens = TextTokens(mask_id=1002, random_range=(4, 1000))
    video = _batch(clips, tokens)
    rows = model.cross_modal(video)
    # the first group of clip 0, encoded alone as text, max-pooled, is what its frames receive
    frames0, text0 = clip_groups(clips[0], tokens.sep_id)[0]
    ids = torch.tensor([list(text0)])
    alone = model.f_encoder.encode_text(ids, torch.ones_like(ids, dtype=torch.bool))[0].amax(0)
    torch.testing.assert_close(rows[0], alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rows[len(frames0) - 1], alone, rtol=1e-5, atol=1e-5)
    fused = model.fuse(video)
    assert fused.shape == video.frame_feats.shape[:2] + (32,)


@pytest.mark.parametrize("backbone,objectives", [
    ("f-trm", ("mlm", "mfm-nce", "vsm")),
    ("h-trm", ("mlm", "mfm-nce", "vsm")),
])
def test_baselines_pretrain_with_the_shared_objectives(backbone, objectives):
    torch.manual_seed(0)
    config = dataclasses.replace(_config(backbone), hidden_dropout_prob=0.1)
    model = HeroForPretraining(config)
    assert type(model.hero) is type(build_backbone(config))
    tokens = TextTokens(mask_id=1002, random_range=(4, 1000))
    clips = random_clips(4, 16, min_frames=5, max_frames=9, min_tokens=2, max_tokens=5, token_range=(4, 1000))
    made = {"mlm": MlmObjective(tokens=tokens), "mfm-nce": MfmObjective(tokens=tokens),
            "vsm": VsmObjective(tokens=tokens)}
    for name in objectives:
        objective = made[name]
        batch = objective.collate(clips, torch.Generator().manual_seed(1))
        out = objective(model, batch)
        assert torch.isfinite(out["loss"]), name
        model.zero_grad()
        out["loss"].backward()
        grads = [p.grad for p in model.hero.f_encoder.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), name
