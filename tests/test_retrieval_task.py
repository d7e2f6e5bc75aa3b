"""VCMR/VR task: items, batches (one video per batch), the VSM fine-tuning loss, corpus encoding,
the video ranking stage, official-format predictions, checkpoints and the TASK objects."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_clips

from hero.config import TextTokens
from hero.errors import HeroError
from hero.objectives.vsm import global_scores
from hero.tasks import get_task, task_of_model
from hero.tasks.retrieval import (
    VCMR,
    VR,
    HeroForVcmr,
    HeroForVr,
    RetrievalConfig,
    VrConfig,
    collate,
    corpus_global_scores,
    encode_corpus,
    encode_queries,
    group_key,
    loss,
    train_items,
    training_span,
    video_groups,
)


class FakeCorpus:
    """The duck-typed corpus interface the task uses (DEVELOPERS.md, "A prepared dataset directory")."""

    frame_interval = 1.5

    def __init__(self, clips, annotations, vocab_size):
        self._clips = {c.vid: c for c in clips}
        self._annotations = annotations
        self.tokens = TextTokens(mask_id=vocab_size - 1, random_range=(4, vocab_size - 1))

    def clip(self, vid):
        return self._clips[vid]

    def annotations(self, dataset, split):
        return self._annotations[(dataset, split)]

    def video_ids(self):
        return list(self._clips)


def query(qid, vid, ids, ts, type_="v", duration=30.0):
    return {"qid": qid, "vid": vid, "desc": " ".join(f"w{i}" for i in ids), "input_ids": list(ids),
            "ts": ts, "duration": duration, "type": type_}


def make_corpus(tiny_config, n_videos=6, queries_per_video=2, seed=5):
    clips = make_clips(tiny_config, n=n_videos, seed=seed, min_frames=8, max_frames=14)
    rs = np.random.RandomState(seed)
    records = []
    for i, c in enumerate(clips):
        for j in range(queries_per_video):
            st = float(rs.randint(0, c.num_frames - 4)) * 1.5
            ids = rs.randint(4, tiny_config.vocab_size - 1, size=rs.randint(3, 7)).tolist()
            records.append(query(len(records) + 1000, c.vid, ids, [st, st + 4.5], "vt" if j else "v",
                                 c.num_frames * 1.5))
    return FakeCorpus(clips, {("tvr", "train"): records, ("tvr", "val"): records}, tiny_config.vocab_size)


@pytest.fixture
def corpus(tiny_config):
    return make_corpus(tiny_config)


def tiny_model(tiny_config, cls=HeroForVcmr, seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = (VrConfig if cls is HeroForVr else RetrievalConfig)(**overrides)
    return cls(tiny_config, cfg)


# -- items and batches -----------------------------------------------------------------------


def test_train_items_one_per_query_and_long_or_orphan_queries_are_counted(corpus, capsys):
    records = corpus.annotations("tvr", "train")
    items = train_items(corpus, "tvr", "train", RetrievalConfig())
    assert [it["qid"] for it in items] == [r["qid"] for r in records]
    assert all(group_key(it) == r["vid"] for it, r in zip(items, records))
    long = dict(records[0], qid="long", input_ids=[5] * 61)
    orphan = dict(records[1], qid="orphan", vid="no_such_video")
    corpus._annotations[("tvr", "train")] = records + [long, orphan]
    items = train_items(corpus, "tvr", "train", RetrievalConfig())
    assert {it["qid"] for it in items} == {r["qid"] for r in records}
    out = capsys.readouterr().out
    assert "long query" in out and "missing video" in out
    kept = train_items(corpus, "tvr", "train", RetrievalConfig(drop_long_train_queries=False))
    assert [it["input_ids"] for it in kept if it["qid"] == "long"] == [[5] * 60]


def test_bad_records_name_the_line(corpus):
    corpus._annotations[("tvr", "train")] = [query(1, corpus.video_ids()[0], [5], [0.0, 3.0]),
                                             {"qid": 2, "vid": corpus.video_ids()[0], "input_ids": [5], "ts": "x"}]
    with pytest.raises(HeroError, match=r"annotations/tvr/train.jsonl:2: 'ts'"):
        train_items(corpus, "tvr", "train", RetrievalConfig())


def test_training_span_of_several_annotations_is_the_most_common():
    assert training_span([1.0, 2.0]) == (1.0, 2.0)
    assert training_span([[0, 5], [5, 10], [5, 10], [0, 5], [10, 15]]) == (0.0, 5.0)
    assert training_span([[0, 5], [5, 10], [5, 10]]) == (5.0, 10.0)
    assert training_span(None) is None


def test_collate_targets_follow_the_reference_rule(corpus):
    items = train_items(corpus, "tvr", "train", RetrievalConfig())[::2]  # one query per video
    batch = collate(corpus, items, RetrievalConfig(), use_span=True)
    assert batch.q_vidx.tolist() == list(range(len(items)))
    for it, (st, ed) in zip(items, batch.targets.tolist()):
        n = corpus.clip(it["vid"]).num_frames
        # by hand: st = floor(ts0 / 1.5), ed = max(ceil(ts1 / 1.5) - 1, st + 1), both within the clip
        hand_st = min(int(it["ts"][0] // 1.5), n - 1)
        hand_ed = min(max(int(np.ceil(it["ts"][1] / 1.5)) - 1, hand_st + 1), n - 1)
        assert (st, ed) == (hand_st, hand_ed)
    assert batch.query_ids[:, 0].eq(corpus.tokens.cls_id).all()
    lengths = batch.query_mask.sum(1).tolist()
    assert lengths == [len(it["input_ids"]) + 1 for it in items]


def test_collate_refuses_a_video_twice(corpus):
    items = train_items(corpus, "tvr", "train", RetrievalConfig())
    with pytest.raises(HeroError, match="twice"):
        collate(corpus, items[:2], RetrievalConfig(), use_span=False)


def test_span_loss_draw_and_vr_targets(corpus):
    items = train_items(corpus, "tvr", "train", RetrievalConfig())[::2]
    draws = [collate(corpus, items, RetrievalConfig(), torch.Generator().manual_seed(s)).use_span for s in range(200)]
    assert 0.1 < np.mean(draws) < 0.3  # 1 - drop_svmr_prob = 0.2
    vr = collate(corpus, items, VrConfig(), torch.Generator().manual_seed(0))
    assert not vr.use_span and vr.targets.eq(-1).all()


def test_video_only_groups_hold_every_frame_without_subtitles(corpus):
    clip = corpus.clip(corpus.video_ids()[0])
    groups = video_groups(clip, corpus, RetrievalConfig(video_only=True, video_only_group_len=5))
    assert [f for frames, _ in groups for f in frames] == list(range(clip.num_frames))
    assert all(text == [corpus.tokens.cls_id] for _, text in groups)
    assert max(len(frames) for frames, _ in groups) == 5


def test_finetune_packer_never_repeats_a_video_in_a_global_batch(corpus):
    from hero.train.finetune import FinetuneBatches

    items = train_items(corpus, "tvr", "train", RetrievalConfig())
    batches = FinetuneBatches(VCMR, corpus, items, RetrievalConfig(), batch_size=3, seed=1, world_size=2)
    seen = []
    for step in range(20):
        whole = batches.global_batch(step)
        vids = [items[i]["vid"] for i in whole]
        assert len(vids) == 6 and len(set(vids)) == 6
        seen += whole
    assert set(seen) == set(range(len(items)))  # nothing is starved
    with pytest.raises(HeroError, match="distinct videos"):
        FinetuneBatches(VCMR, corpus, items, RetrievalConfig(), batch_size=4, seed=1, world_size=2)


# -- loss --------------------------------------------------------------------------------------


def test_loss_terms_and_hard_negative_phase(tiny_config, corpus):
    model = tiny_model(tiny_config)
    model.eval()
    items = train_items(corpus, "tvr", "train", RetrievalConfig())[::2]
    cfg = RetrievalConfig(hard_negative_start_step=10)
    batch = collate(corpus, items, cfg, use_span=True)
    out = loss(model, batch, cfg, step=1)
    assert set(k for k in out if k.endswith("_loss")) == {"st_ed_loss", "neg_ctx_loss", "neg_q_loss"}
    assert torch.allclose(out["loss"], out["st_ed_loss"] + out["neg_ctx_loss"] + out["neg_q_loss"])
    assert out["normalizer"] == len(items)
    late = loss(model, batch, cfg, step=10)
    assert torch.allclose(late["st_ed_loss"], out["st_ed_loss"])
    assert not torch.allclose(late["neg_ctx_loss"], out["neg_ctx_loss"])  # weights 10 / 0.1 from step 10
    no_span = loss(model, collate(corpus, items, cfg, use_span=False), cfg, step=1)
    assert "st_ed_loss" not in no_span
    vr_cfg = VrConfig()
    vr = loss(tiny_model(tiny_config, HeroForVr), collate(corpus, items, vr_cfg, use_span=False), vr_cfg, step=1)
    assert set(k for k in vr if k.endswith("_loss")) == {"neg_ctx_loss", "neg_q_loss"}


def test_loss_falls_on_a_tiny_overfit_batch(tiny_config, corpus):
    model = tiny_model(tiny_config)
    cfg = RetrievalConfig(drop_svmr_prob=0.0, hard_negative_start_step=None)
    items = train_items(corpus, "tvr", "train", cfg)[::2]
    batch = collate(corpus, items, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    values = []
    for step in range(1, 41):
        out = loss(model, batch, cfg, step)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        values.append(float(out["loss"].detach()))
    assert values[-1] < 0.3 * values[0]
    model.eval()
    with torch.no_grad():
        frames = model.hero.encode_video(batch.video)
        q = model.hero.encode_query(batch.query_ids, batch.query_mask)
        scores = global_scores(q, frames, batch.video.frame_mask)
    assert scores.argmax(1).tolist() == list(range(len(items)))  # every query finds its video
