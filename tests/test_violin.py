"""VIOLIN task: statement fusion, pairs, BCE loss, predict/evaluate, checkpoints, TASK."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import make_clips
from fake_corpus import FakeCorpus
from reference_layout import reference_layout

from hero.data.batch import Clip
from hero.data.problems import Problems
from hero.errors import HeroError
from hero.eval.classification import evaluate_violin_files
from hero.tasks import get_task
from hero.tasks.violin import (
    TASK,
    HeroForViolin,
    ViolinBatch,
    ViolinConfig,
    collate,
    pair_key,
    predict,
    train_items,
    write_predictions,
)
from hero.train.config import load_config
from hero.train.finetune import FinetuneConfig, task_settings

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "finetune"


def statement(qid, vid, ids, label):
    return {"qid": qid, "vid": vid, "statement": "", "input_ids": list(ids), "label": label}


@pytest.fixture
def corpus(tiny_config):
    clips = make_clips(tiny_config, n=3, seed=7, min_frames=5, max_frames=10)
    feats = torch.randn(6, tiny_config.vfeat_dim, generator=torch.Generator().manual_seed(2)).abs()
    # video-only: one empty subtitle over all frames (the paper's single-channel setting)
    clips.append(Clip(features=feats, subtitles=[[]], sub2frames=[(0, list(range(6)))], vid="video_only"))
    vids = [c.vid for c in clips]
    train = []
    for i, vid in enumerate(vids):
        # the true statement (label 1) and its minimally edited false twin (label 0)
        train.append(statement(f"{vid}-s{i}-1", vid, [10 + i, 20, 30 + i], 1))
        train.append(statement(f"{vid}-s{i}-0", vid, [10 + i, 21, 30 + i], 0))
    train.append(statement("lonely", vids[0], [40, 41], 1))  # no partner: an item of its own
    return FakeCorpus(clips, {("violin", "train"): train, ("violin", "val"): train,
                              ("violin", "test"): [{**r, "label": None} for r in train]}, tiny_config.vocab_size)


def tiny_model(tiny_config, seed=0, **overrides):
    torch.manual_seed(seed)
    return HeroForViolin(tiny_config, ViolinConfig(**overrides)).eval()


def test_train_items_are_statement_pairs(corpus):
    items = train_items(corpus, "violin", "train", ViolinConfig())
    assert [len(it["statements"]) for it in items] == [2, 2, 2, 2, 1]
    for it in items[:4]:
        assert sorted(s["label"] for s in it["statements"]) == [0, 1]
        assert len({pair_key({"qid": s["qid"], "vid": it["vid"]}) for s in it["statements"]}) == 1
    assert items[4]["statements"][0]["qid"] == "lonely"
    singles = train_items(corpus, "violin", "train", ViolinConfig(pair_statements=False))
    assert [len(it["statements"]) for it in singles] == [1] * 9
    json.dumps(items)
    assert pair_key({"qid": "a-1", "vid": "v"}) == pair_key({"qid": "a-0", "vid": "v"}) != pair_key(
        {"qid": "a-0", "vid": "w"})


def test_collate_fuses_the_statement_everywhere(corpus):
    cfg = ViolinConfig()
    items = train_items(corpus, "violin", "train", cfg)[:2]
    batch = collate(corpus, items, cfg, torch.Generator())
    sep = corpus.tokens.sep_id
    assert batch.txt_ids.shape[0] == 4 and batch.labels.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert batch.txt_ids[1].tolist() == [sep, 10, 21, 30]
    clip = corpus.clip(items[0]["vid"])
    cross = batch.video.cross
    length = batch.video.frame_feats.shape[1]
    first = [g for g in range(cross.num_groups) if int(cross.frm_index[cross.frm_group == g][0]) // length == 1]
    expected = []
    for sub_idx, frames in clip.sub2frames:  # sub_ctx_len 2: two previous subtitles as context
        if frames:
            ctx = [t for j in range(max(0, sub_idx - 2), sub_idx + 1) for t in clip.subtitles[j]]
            expected.append([sep, *ctx, sep, 10, 21, 30])
    assert [cross.txt_ids[cross.txt_group == g].tolist() for g in first] == expected


def test_logits_loss_and_independence_of_batch_neighbours(tiny_config, corpus):
    model = tiny_model(tiny_config, seed=1)
    cfg = model.task_config
    items = train_items(corpus, "violin", "train", cfg)
    batch = collate(corpus, items, cfg)
    with torch.no_grad():
        logits = model(batch)
        out = TASK.loss(model, batch, cfg, 0)
        assert logits.shape == (9,) and torch.isfinite(logits).all()
        torch.testing.assert_close(out["loss"], F.binary_cross_entropy(torch.sigmoid(logits), batch.labels))
        assert out["normalizer"] == 9 and out["violin_loss"] is out["loss"]
        alone = model(collate(corpus, items[3:4], cfg))  # the video-only clip, alone
        torch.testing.assert_close(alone, logits[6:8], rtol=1e-5, atol=1e-5)
    assert logits[0] != logits[1]  # one token of the statement differs


def test_a_tiny_model_learns_which_statements_hold(tiny_config, corpus, tmp_path):
    torch.manual_seed(0)
    cfg = ViolinConfig()
    model = HeroForViolin(tiny_config, cfg)
    batch = collate(corpus, train_items(corpus, "violin", "train", cfg), cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(40):
        opt.zero_grad()
        out = TASK.loss(model, batch, cfg, 0)
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.5 * losses[0]
    preds = predict(model, corpus, "violin", "val", cfg, batch_size=4)
    assert preds == {str(r["qid"]): r["label"] for r in corpus.annotations("violin", "val")}
    metrics = TASK.evaluate(preds, corpus, "violin", "val", cfg)
    assert metrics == {"accuracy": 100.0, "num_statements": 9.0}
    # round trip through the files `hero predict` / `hero eval violin` use
    pred_path, gt_path = tmp_path / "violin_val.json", tmp_path / "val.jsonl"
    write_predictions(preds, pred_path)
    gt_path.write_text("".join(json.dumps(r) + "\n" for r in corpus.annotations("violin", "val")))
    assert evaluate_violin_files(pred_path, gt_path) == metrics
    flipped = {**preds, "lonely": 1 - preds["lonely"]}
    assert TASK.evaluate(flipped, corpus, "violin", "val", cfg)["accuracy"] == pytest.approx(800 / 9)


def test_predict_is_batch_size_invariant_and_handles_unlabelled_splits(tiny_config, corpus):
    model = tiny_model(tiny_config, seed=2)
    cfg = model.task_config
    preds = predict(model, corpus, "violin", "test", cfg, batch_size=4)
    assert predict(model, corpus, "violin", "test", cfg, batch_size=1) == preds
    assert list(preds) == [str(r["qid"]) for r in corpus.annotations("violin", "test")]
    assert set(preds.values()) <= {0, 1}
    with pytest.raises(HeroError, match="'label' must be 0 or 1"):
        TASK.evaluate(preds, corpus, "violin", "test", cfg)
    with pytest.raises(HeroError, match=r"test\.jsonl:1: 'label' is null"):
        train_items(corpus, "violin", "test", cfg)
    records = corpus.annotations("violin", "test")
    corpus._annotations[("violin", "twice")] = [*records[:3], records[0]]
    with pytest.raises(HeroError, match=r"twice\.jsonl:4: qid '.*-s0-1' already appears at line 1"):
        predict(model, corpus, "violin", "twice", cfg)


def test_long_statements_and_missing_videos_are_counted_skips(corpus):
    records = list(corpus.annotations("violin", "train"))
    records += [statement("x-1", "nowhere", [5], 1), statement("y-1", records[0]["vid"], [5] * 9, 1)]
    corpus._annotations[("violin", "mixed")] = records
    problems = Problems()
    items = train_items(corpus, "violin", "mixed", ViolinConfig(max_txt_len=8), problems)
    assert sum(len(it["statements"]) for it in items) == 9
    assert problems.skipped == {"missing video": 1, "statement too long": 1}
    with pytest.warns(RuntimeWarning, match="skipped 2 statements"):
        train_items(corpus, "violin", "mixed", ViolinConfig(max_txt_len=8))
    corpus._annotations[("violin", "bad")] = [statement("z", records[0]["vid"], [5], 2)]
    with pytest.raises(HeroError, match=r"violin/bad\.jsonl:1: 'label' must be 0, 1 or null"):
        train_items(corpus, "violin", "bad", ViolinConfig())


def test_reference_checkpoint_loads(tmp_path, tiny_config, corpus):
    model = tiny_model(tiny_config, seed=4)
    state = {}
    for key, value in model.state_dict().items():
        for ref, ours in model.REFERENCE_KEY_MAP:
            if ours is not None and key.startswith(ours):
                state[ref + key[len(ours):]] = value.clone()
                break
    state = {k: v for k, v in state.items() if not k.startswith("q_feat_attn.")}
    gen = torch.Generator().manual_seed(0)
    for key, shape in reference_layout(tiny_config):
        if key.startswith("v_encoder.") and key not in state:
            state[key] = torch.randn(shape, generator=gen)
    assert {"violin_pool.weight", "violin_pred_head.linear_2.weight"} <= set(state)
    path = tmp_path / "model_step_6000.pt"
    torch.save(state, path)
    loaded = HeroForViolin.from_reference(path, num_attention_heads=tiny_config.num_attention_heads,
                                          vocab_size=tiny_config.vocab_size).eval()
    assert loaded.load_report.missing == sorted(k for k in model.state_dict() if k.startswith("hero.q_encoder."))
    batch = collate(corpus, train_items(corpus, "violin", "train", ViolinConfig()), ViolinConfig())
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch), model(batch))


def test_our_checkpoints_round_trip_with_their_task_config(tmp_path, tiny_config, corpus):
    model = tiny_model(tiny_config, seed=5, sub_ctx_len=0)
    loaded = HeroForViolin.from_pretrained(model.save_pretrained(tmp_path / "violin")).eval()
    assert loaded.task_config == model.task_config
    batch = collate(corpus, train_items(corpus, "violin", "train", model.task_config), model.task_config)
    assert isinstance(batch.to("cpu"), ViolinBatch)
    with torch.no_grad():
        assert torch.equal(model(batch), loaded(batch))


def test_task_contract_and_shipped_config():
    assert get_task("violin") is TASK and TASK.datasets == ("violin",)
    assert TASK.config_class is ViolinConfig and TASK.model_class is HeroForViolin
    assert (ViolinConfig().sub_ctx_len, ViolinConfig().max_txt_len) == (2, 120)
    with pytest.raises(HeroError, match="ViolinConfig: unknown key"):
        ViolinConfig.from_dict({"pairs": True})
    config = load_config(FinetuneConfig, CONFIGS / "violin.yaml")
    assert (config.task, config.dataset) == ("violin", "violin")
    assert task_settings(TASK, config.task_config) == ViolinConfig()
    assert (config.optim.lr, config.optim.lr_mul, config.optim.warmup_steps, config.train.num_train_steps) == \
        (3e-5, 8.0, 600, 6000)
