"""VCMR/VR task: items, batches (one video per batch), the VSM fine-tuning loss, corpus encoding,
the video ranking stage, official-format predictions, checkpoints and the TASK objects."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import make_clips
from fake_corpus import FakeCorpus

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
    apply_nms,
    collate,
    corpus_global_scores,
    encode_corpus,
    encode_queries,
    evaluate,
    group_key,
    loss,
    nms_path,
    predict,
    retrieval_vsm,
    span_step,
    train_items,
    training_span,
    video_groups,
    with_vsm,
)


def query(qid, vid, ids, ts, type_="v", duration=30.0):
    return {"qid": qid, "vid": vid, "desc": " ".join(f"w{i}" for i in ids), "input_ids": list(ids),
            "ts": ts, "duration": duration, "type": type_}


def make_corpus(tiny_config, n_videos=6, queries_per_video=2, seed=5):
    clips = make_clips(tiny_config, n=n_videos, seed=seed, min_frames=8, max_frames=14)
    rs = np.random.RandomState(seed)
    records = []
    for c in clips:
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


def test_span_loss_is_drawn_per_step_the_same_on_every_rank(corpus):
    cfg = RetrievalConfig()
    draws = [span_step(cfg, step) for step in range(1, 1001)]
    assert 0.15 < np.mean(draws) < 0.25  # 1 - drop_svmr_prob = 0.2
    assert draws == [span_step(RetrievalConfig(), step) for step in range(1, 1001)]  # a function of the step
    assert draws != [span_step(RetrievalConfig(span_draw_seed=1), step) for step in range(1, 1001)]
    assert not any(span_step(VrConfig(), s) for s in range(100))
    assert all(span_step(RetrievalConfig(vsm=retrieval_vsm(drop_svmr_prob=0.0)), s) for s in range(100))
    items = train_items(corpus, "tvr", "train", cfg)[::2]
    assert collate(corpus, items, cfg).use_span
    vr = collate(corpus, items, VrConfig())
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
    cfg = RetrievalConfig(vsm=retrieval_vsm(hard_negative_start_step=10, drop_svmr_prob=0.0))
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
    # with the reference drop probability, the step decides
    drawn = RetrievalConfig()
    steps = [s for s in range(1, 40) if span_step(drawn, s)]
    assert "st_ed_loss" in loss(model, batch, drawn, step=steps[0])
    assert "st_ed_loss" not in loss(model, batch, drawn, step=next(s for s in range(1, 40) if s not in steps))


def test_loss_falls_on_a_tiny_overfit_batch(tiny_config, corpus):
    model = tiny_model(tiny_config)
    cfg = RetrievalConfig(vsm=retrieval_vsm(drop_svmr_prob=0.0, hard_negative_start_step=None))
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


# -- corpus inference --------------------------------------------------------------------------


def test_corpus_encoding_with_zero_padding_does_not_depend_on_the_batching(tiny_config, corpus):
    model = tiny_model(tiny_config).eval()
    vids = sorted(corpus.video_ids())
    cfg = RetrievalConfig(vsm=retrieval_vsm(span_padding="zeros"))
    one = encode_corpus(model, corpus, vids, batch_size=len(vids), cfg=cfg)
    two = encode_corpus(model, corpus, vids, batch_size=2, cfg=cfg)
    assert one.vids == vids and one.frames.shape[:2] == one.mask.shape
    assert one.mask.sum(1).tolist() == [corpus.clip(v).num_frames for v in vids]
    assert torch.allclose(one.frames, two.frames, atol=1e-5)
    assert one.frames[~one.mask].abs().sum() == 0  # zero past each video's end


def test_corpus_encoding_with_reference_padding_keeps_each_chunks_padded_outputs(tiny_config, corpus):
    """The official ``validate_full_vcmr``: chunks of sorted videos, padded-position outputs kept."""
    from hero.data.batch import collate_video
    from hero.tasks.retrieval import video_groups

    model = tiny_model(tiny_config).eval()
    vids = sorted(corpus.video_ids())
    cfg = RetrievalConfig(vsm=retrieval_vsm(span_padding="reference"))
    enc = encode_corpus(model, corpus, vids, batch_size=2, cfg=cfg)
    zeros_cfg = RetrievalConfig(vsm=retrieval_vsm(span_padding="zeros"))
    zeros = encode_corpus(model, corpus, vids, batch_size=2, cfg=zeros_cfg)
    assert torch.equal(enc.mask, zeros.mask)
    assert torch.allclose(enc.frames[enc.mask], zeros.frames[zeros.mask], atol=1e-5)  # real frames agree
    for start in range(0, len(vids), 2):
        clips = [corpus.clip(v) for v in vids[start:start + 2]]
        with torch.no_grad():
            alone = model.hero.encode_video(collate_video([c.features for c in clips],
                                                          [video_groups(c, corpus, cfg) for c in clips]))
        width = alone.shape[1]
        assert torch.allclose(enc.frames[start:start + 2, :width], alone, atol=1e-5)
        assert enc.frames[start:start + 2, width:].abs().sum() == 0  # zero past the chunk
    assert enc.frames[~enc.mask].abs().sum() > 0  # some chunk pads a shorter video
    # the chunking is a setting of its own: video_batch_size wins over the batch size given
    same = encode_corpus(model, corpus, vids, batch_size=len(vids), cfg=RetrievalConfig(video_batch_size=2))
    assert torch.allclose(same.frames, enc.frames, atol=1e-6)


def test_chunked_global_scores_equal_the_vsm_scores(tiny_config, corpus):
    model = tiny_model(tiny_config).eval()
    enc = encode_corpus(model, corpus, sorted(corpus.video_ids()), batch_size=3)
    q = encode_queries(model, corpus, [[5, 6, 7], [8, 9], [10]], RetrievalConfig())
    full = global_scores(q, enc.frames, enc.mask)
    chunked = corpus_global_scores(q, enc.frames, enc.mask, budget=50)  # one video per chunk
    assert torch.allclose(full, chunked, atol=1e-6)


def dense_reference(model, corpus, cfg, dataset="tvr", split="val"):
    """The reference procedure, all (query, video) span logits in memory (`corpus_predictions`)."""
    from hero.eval.moments import InferenceConfig, corpus_predictions

    records = corpus.annotations(dataset, split)
    vids = sorted({r["vid"] for r in records})
    enc = encode_corpus(model, corpus, vids, batch_size=4, cfg=cfg)
    with torch.no_grad():
        q = encode_queries(model, corpus, [r["input_ids"] for r in records], cfg)
        s = global_scores(q, enc.frames, enc.mask)
        st, ed = model.vsm_head.span_logits(q, enc.frames, enc.mask)
    icfg = InferenceConfig(alpha=cfg.q2c_alpha, max_videos=cfg.max_vcmr_video, min_len=cfg.min_pred_l,
                           max_len=cfg.max_pred_l, max_before_nms=cfg.max_before_nms,
                           max_after_nms=cfg.max_after_nms, interval=corpus.frame_interval, nms_threshold=cfg.nms_thd)
    return corpus_predictions([r["qid"] for r in records], s, st, ed, list(range(len(vids))), icfg,
                              gt_rows=[vids.index(r["vid"]) for r in records])


def assert_same_lists(ours, ref, n_exact=10):
    assert [e["desc_id"] for e in ours] == [e["desc_id"] for e in ref]
    for a, b in zip(ours, ref):
        pa, pb = a["predictions"], b["predictions"]
        assert len(pa) == len(pb)
        assert [p[:3] for p in pa[:n_exact]] == [p[:3] for p in pb[:n_exact]]
        assert np.allclose([p[3] for p in pa], [p[3] for p in pb], rtol=1e-4)


def test_predict_equals_the_reference_procedure_on_the_top_videos(tiny_config, corpus):
    model = tiny_model(tiny_config, seed=3).eval()
    # K = 3 of 6 videos: span scores for the top videos only, in small chunks, must give the lists
    # the reference computes from every (query, video) pair
    cfg = RetrievalConfig(max_vcmr_video=3, min_pred_l=1, max_pred_l=5, max_before_nms=20, max_after_nms=12,
                          query_batch_size=5, score_chunk_elems=2000)
    sub = predict(model, corpus, "tvr", "val", cfg, batch_size=4)
    ref = dense_reference(model, corpus, cfg)
    assert set(sub) == {"video2idx", "VCMR", "SVMR", "VR"}
    assert sub["video2idx"] == {v: i for i, v in enumerate(sorted(corpus.video_ids()))}
    assert_same_lists(sub["VR"], ref.vr)
    assert_same_lists(sub["VCMR"], ref.vcmr)
    assert_same_lists(sub["SVMR"], ref.svmr)
    nms = apply_nms(sub, cfg)
    assert_same_lists(nms["VCMR"], ref.vcmr_nms)
    assert_same_lists(nms["SVMR"], ref.svmr_nms)
    assert nms["VR"] == sub["VR"]


def test_predictions_are_valid_submissions(tiny_config, corpus, tmp_path):
    model = tiny_model(tiny_config, seed=1).eval()
    cfg = RetrievalConfig(max_vcmr_video=4, min_pred_l=1, max_pred_l=4, max_before_nms=30, max_after_nms=10)
    sub = predict(model, corpus, "tvr", "val", cfg, batch_size=3)
    records = corpus.annotations("tvr", "val")
    idx2vid = {i: v for v, i in sub["video2idx"].items()}
    for task in ("VCMR", "SVMR", "VR"):
        assert [e["desc_id"] for e in sub[task]] == [r["qid"] for r in records]
        for e, r in zip(sub[task], records):
            preds = e["predictions"]
            assert 0 < len(preds) <= cfg.max_after_nms and e["desc"] == ""
            scores = [p[3] for p in preds]
            assert scores == sorted(scores, reverse=True)
            assert all(p[0] in idx2vid for p in preds)
            if task == "VR":
                assert len({p[0] for p in preds}) == len(preds) == min(cfg.max_vcmr_video, len(idx2vid))
                assert all(p[1] == p[2] == 0 for p in preds)
                continue
            for v, st, ed, _ in preds:
                frames = round((ed - st) / 1.5)  # n - m + 1
                assert cfg.min_pred_l + 1 <= frames <= cfg.max_pred_l
                assert ed <= corpus.clip(idx2vid[v]).num_frames * 1.5 + 1e-6
            if task == "SVMR":
                assert {p[0] for p in preds} == {sub["video2idx"][r["vid"]]}
    path = tmp_path / "out" / "tvr_val.json"
    VCMR.write_predictions(sub, path, cfg)
    assert json.loads(path.read_text()) == json.loads(json.dumps(sub))
    assert json.loads(nms_path(path).read_text()) == json.loads(json.dumps(apply_nms(sub, cfg)))
    assert not list(path.parent.glob(".*tmp*"))


def test_official_video2idx_and_test_splits(tiny_config, corpus, tmp_path):
    model = tiny_model(tiny_config).eval()
    vids = sorted(corpus.video_ids())
    (tmp_path / "annotations" / "tvr").mkdir(parents=True)
    official = {"val": {v: [30.0, 100 + i] for i, v in enumerate(reversed(vids))}}
    (tmp_path / "annotations" / "tvr" / "video2idx.json").write_text(json.dumps(official))
    corpus.root = tmp_path
    test = [{"qid": 7, "vid": None, "desc": "w5", "input_ids": [5, 6], "ts": None}]
    corpus._annotations[("tvr", "test")] = test
    sub = predict(model, corpus, "tvr", "val", RetrievalConfig(max_vcmr_video=2))
    assert sub["video2idx"] == {v: official["val"][v][1] for v in vids}
    assert {p[0] for e in sub["VR"] for p in e["predictions"]} <= set(range(100, 106))
    with pytest.raises(HeroError, match="names no video"):
        predict(model, corpus, "tvr", "test", RetrievalConfig())
    official["test"] = {v: i for i, v in enumerate(vids)}
    (tmp_path / "annotations" / "tvr" / "video2idx.json").write_text(json.dumps(official))
    sub = predict(model, corpus, "tvr", "test", RetrievalConfig(max_vcmr_video=2))
    assert "SVMR" not in sub and len(sub["VCMR"]) == len(sub["VR"]) == 1
    official["test"]["not_in_corpus"] = 99
    (tmp_path / "annotations" / "tvr" / "video2idx.json").write_text(json.dumps(official))
    with pytest.raises(HeroError, match="not in the corpus"):
        predict(model, corpus, "tvr", "test", RetrievalConfig())


def test_vr_task_predicts_video_lists_by_cosine(tiny_config, corpus):
    model = tiny_model(tiny_config, HeroForVr).eval()
    corpus._annotations[("msrvtt", "val")] = [dict(r, ts=None) for r in corpus.annotations("tvr", "val")]
    sub = VR.predict(model, corpus, "msrvtt", "val", model.task_config, 4, "cpu")
    assert set(sub) == {"video2idx", "VR"}
    for e in sub["VR"]:
        assert all(-1.0 <= p[3] <= 1.0 for p in e["predictions"])  # raw cosine (reference MSR-VTT)


# -- checkpoints and the task objects --------------------------------------------------------


def test_task_registry_and_checkpoints_round_trip(tmp_path, tiny_config, corpus):
    from hero.train.finetune import load_task_model

    assert get_task("tvr") is VCMR and get_task("didemo") is VCMR and get_task("msrvtt") is VR
    model = tiny_model(tiny_config, seed=2, max_vcmr_video=7, tasks=("VCMR", "VR")).eval()
    model.save_pretrained(tmp_path / "m")
    task, cfg, loaded = load_task_model(tmp_path / "m")
    assert task is VCMR and task_of_model("HeroForVr") is VR
    assert cfg.max_vcmr_video == 7 and cfg.tasks == ("VCMR", "VR")
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])


def test_vsm_settings_are_nested_and_keep_the_retrieval_defaults():
    from hero.config import from_dict

    vcmr, vr = RetrievalConfig().vsm, VrConfig().vsm
    assert (vcmr.queries_per_video, vcmr.hard_negative_start_step) == (1, 2000)
    assert (vcmr.lw_st_ed, vcmr.lw_neg_ctx, vcmr.lw_neg_q, vcmr.margin) == (0.01, 8.0, 8.0, 0.1)
    assert (vcmr.drop_svmr_prob, vcmr.hard_pool_size, vcmr.max_txt_len, vcmr.span_padding) == (0.8, 20, 60, "reference")
    assert (vr.lw_st_ed, vr.lw_neg_ctx, vr.lw_neg_q, vr.drop_svmr_prob, vr.hard_pool_size) == (0.0, 10.0, 10.0, 1.0, 80)
    assert vr.hard_negative_start_step == 2000 and vr.queries_per_video == 1
    # a partial vsm mapping keeps the class's retrieval defaults, not VsmConfig's pre-training ones
    cfg = from_dict(VrConfig, {"vsm": {"margin": 0.3}}, where="task_config")
    assert cfg.vsm == dataclasses.replace(VrConfig().vsm, margin=0.3)
    with pytest.raises(HeroError, match=r"task_config\.vsm\.queries_per_video must be 1"):
        from_dict(RetrievalConfig, {"vsm": {"queries_per_video": 5}}, where="task_config")


def test_flat_vsm_keys_of_older_settings_still_load(tmp_path, tiny_config, capsys):
    from hero.config import from_dict
    from hero.io import read_json, write_json_atomic
    from hero.tasks.load import load_task_model

    flat = {"margin": 0.3, "hard_negative_start_step": None, "span_padding": "zeros", "max_vcmr_video": 7}
    cfg = from_dict(RetrievalConfig, flat, where="task_config")
    assert "task_config: flat key(s) margin, hard_negative_start_step, span_padding are deprecated; read as " \
        "vsm.margin, vsm.hard_negative_start_step, vsm.span_padding" in capsys.readouterr().err
    assert cfg == RetrievalConfig(max_vcmr_video=7, vsm=retrieval_vsm(margin=0.3, hard_negative_start_step=None,
                                                                      span_padding="zeros"))
    # a model saved before the nesting: every VSM key flat in config.json's task_config
    model = tiny_model(tiny_config, cls=HeroForVr, seed=3)
    model.save_pretrained(tmp_path / "m")
    meta = read_json(tmp_path / "m" / "config.json")
    saved = meta["task_config"]
    meta["task_config"] = {**{k: v for k, v in saved.items() if k != "vsm"}, **saved["vsm"], "lw_neg_q": 4.0}
    del meta["task_config"]["queries_per_video"]  # the old layout had no such key
    write_json_atomic(tmp_path / "m" / "config.json", meta)
    _, loaded, _ = load_task_model(tmp_path / "m")
    assert loaded == with_vsm(model.task_config, lw_neg_q=4.0)
    assert "vsm.lw_neg_q" in capsys.readouterr().err
    # overrides: a flat one wins over the saved nested value; a dotted one changes only its key
    model.save_pretrained(tmp_path / "n")
    _, over, _ = load_task_model(tmp_path / "n", {"margin": 0.5, "vsm.hard_pool_size": 9})
    assert over.vsm == dataclasses.replace(VrConfig().vsm, margin=0.5, hard_pool_size=9)
    assert HeroForVr.from_pretrained(tmp_path / "m").task_config == loaded


def test_reference_vcmr_checkpoint_loads_every_parameter(tmp_path, tiny_config):
    from reference_layout import reference_layout

    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=gen) for k, shape in reference_layout(tiny_config)}
    state["vocab_padded"] = True
    path = tmp_path / "model_step_5000.pt"
    torch.save(state, path)
    model = HeroForVcmr.from_reference(path, num_attention_heads=tiny_config.num_attention_heads,
                                       vocab_size=tiny_config.vocab_size)
    assert model.load_report.missing == []
    assert torch.equal(model.vsm_head.query_linear.weight, state["video_query_linear.weight"])
    assert torch.equal(model.vsm_head.st_conv.weight, state["video_st_predictor.weight"])
    assert torch.equal(model.vsm_head.ed_conv.weight, state["video_ed_predictor.weight"])
    assert torch.equal(model.hero.q_encoder.pool.weight, state["q_feat_attn.modular_vector_mapping.weight"])


# -- metrics -----------------------------------------------------------------------------------


def oracle_submission(corpus, dataset="tvr", split="val"):
    """Each query's own moment first, on its own video."""
    records = corpus.annotations(dataset, split)
    video2idx = {v: i for i, v in enumerate(sorted({r["vid"] for r in records}))}
    moment = [{"desc_id": r["qid"], "desc": "", "predictions": [[video2idx[r["vid"]], *r["ts"], 1.0]]}
              for r in records]
    vr = [{"desc_id": r["qid"], "desc": "", "predictions": [[video2idx[r["vid"]], 0, 0, 1.0]]} for r in records]
    return {"video2idx": video2idx, "VCMR": moment, "SVMR": moment, "VR": vr}


def test_evaluate_reports_official_metrics_with_and_without_nms(corpus, tiny_config):
    cfg = RetrievalConfig()
    metrics = evaluate(oracle_submission(corpus), corpus, "tvr", "val", cfg)
    for task in ("VCMR", "SVMR"):
        for thd in ("0.5", "0.7"):
            assert metrics[f"{task}/{thd}-r1"] == 100.0
            assert metrics[f"{task}_nms_0.5/{thd}-r1"] == 100.0
    assert metrics["VR/r1"] == 100.0 and "VR_nms_0.5/r1" not in metrics
    assert metrics["VCMR_by_type/v-0.7-r1"] == 100.0
    # move every ground-truth moment away from the prediction: no moment hit, videos still right
    shifted = [dict(r, ts=[r["ts"][0] + 30.0, r["ts"][1] + 30.0]) for r in corpus.annotations("tvr", "val")]
    sub = oracle_submission(corpus)
    corpus._annotations[("tvr", "val")] = shifted
    moved = evaluate(sub, corpus, "tvr", "val", cfg)
    assert moved["VCMR/0.5-r1"] == 0.0 and moved["VR/r1"] == 100.0
    no_nms = evaluate(sub, corpus, "tvr", "val", RetrievalConfig(nms_thd=-1))
    assert not any("_nms_" in k for k in no_nms)


def test_evaluate_scores_model_predictions(tiny_config, corpus):
    model = tiny_model(tiny_config).eval()
    cfg = RetrievalConfig(max_vcmr_video=3)
    metrics = evaluate(predict(model, corpus, "tvr", "val", cfg), corpus, "tvr", "val", cfg)
    assert 0.0 <= metrics["VR/r1"] <= metrics["VR/r5"] <= 100.0
    assert {"VCMR/0.7-r10", "SVMR/0.5-r1", "VCMR_nms_0.5/0.7-r1", "VR/r100"} <= set(metrics)


@pytest.mark.parametrize("name", ["tvr", "how2r", "didemo", "didemo_asr", "msrvtt"])
def test_shipped_configs_load(name):
    from pathlib import Path

    from hero.train.config import load_config
    from hero.train.finetune import FinetuneConfig, task_settings

    config = load_config(FinetuneConfig, Path(__file__).parent.parent / "configs" / "finetune" / f"{name}.yaml")
    task = get_task(config.task)
    assert config.dataset in task.datasets and task is get_task(config.dataset)
    cfg = task_settings(task, config.task_config)
    assert cfg.min_pred_l < cfg.max_pred_l and cfg.max_after_nms <= cfg.max_before_nms


# -- end to end on the synthetic corpus ------------------------------------------------------


@pytest.mark.slow
def test_finetune_predict_index_search_end_to_end(tmp_path, capsys):
    """`hero finetune` (tiny VCMR on the synthetic corpus) → `hero predict` → `hero index` → `hero search`."""
    from hero.cli import main
    from hero.data.synth import SynthConfig, build

    corpus = build(SynthConfig(videos=24, val_videos=6, test_videos=3, queries_per_video=2, min_frames=10,
                               max_frames=14, vocab_size=400), tmp_path / "corpus", log=lambda *_: None)
    run = tmp_path / "run"
    config = tmp_path / "tvr_tiny.yaml"
    config.write_text(f"""
output_dir: {run}
task: vcmr
dataset: tvr
corpus: {corpus}
model: {{preset: hero-tiny}}
task_config: {{vsm: {{hard_negative_start_step: 5}}, max_vcmr_video: 5, max_after_nms: 20}}
eval_batch_size: 4
optim: {{lr: 1.0e-3, warmup_steps: 2}}
train: {{num_train_steps: 6, batch_size: 4, num_workers: 0, save_every: 6, progress: false, device: cpu}}
""")
    assert main(["finetune", "--config", str(config)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"VCMR/0.7-r1", "VR/r1", "SVMR/0.5-r5", "VCMR_nms_0.5/0.7-r1"} <= set(metrics)
    assert (run / "predictions").is_dir()
    out = tmp_path / "pred" / "tvr_val.json"
    assert main(["predict", "--model", str(run), "--corpus", str(corpus), "--dataset", "tvr", "--split", "val",
                 "--out", str(out), "--device", "cpu"]) == 0
    sub = json.loads(out.read_text())
    assert set(sub) == {"video2idx", "VCMR", "SVMR", "VR"} and nms_path(out).is_file()
    assert main(["index", "--model", str(run), "--corpus", str(corpus), "--out", str(tmp_path / "idx"),
                 "--dataset", "tvr", "--split", "val", "--device", "cpu"]) == 0
    assert sorted(json.loads((tmp_path / "idx" / "vids.json").read_text())) == sorted(sub["video2idx"])
    capsys.readouterr()
    desc = json.loads(open(corpus / "annotations" / "tvr" / "val.jsonl").readline())["desc"]
    assert main(["search", "--index", str(tmp_path / "idx"), desc, "--top", "3", "--device", "cpu"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()[:1].isdigit()]
    assert len(lines) == 3 and all(ln.split()[1] in sub["video2idx"] for ln in lines)


def _distributed_predict(rank, world, init_file, out_file):
    import torch.distributed as dist

    from hero.config import hero_tiny

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        config = hero_tiny()
        corpus = make_corpus(config, n_videos=7, queries_per_video=2)  # 7 videos, 14 queries: uneven shares
        model = tiny_model(config, seed=4).eval()
        cfg = RetrievalConfig(max_vcmr_video=3, min_pred_l=1, max_pred_l=5, max_after_nms=10)
        enc = encode_corpus(model, corpus, sorted(corpus.video_ids()), 2, "cpu", cfg)
        sub = predict(model, corpus, "tvr", "val", cfg, batch_size=2)
        torch.save({"frames": enc.frames, "mask": enc.mask, "sub": sub}, f"{out_file}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_sharded_inference_equals_one_process(tmp_path, tiny_config):
    import torch.multiprocessing as mp

    mp.spawn(_distributed_predict, args=(2, str(tmp_path / "pg"), str(tmp_path / "out")), nprocs=2)
    corpus = make_corpus(tiny_config, n_videos=7, queries_per_video=2)
    model = tiny_model(tiny_config, seed=4).eval()
    cfg = RetrievalConfig(max_vcmr_video=3, min_pred_l=1, max_pred_l=5, max_after_nms=10)
    enc = encode_corpus(model, corpus, sorted(corpus.video_ids()), 2, "cpu", cfg)
    sub = predict(model, corpus, "tvr", "val", cfg, batch_size=2)
    for rank in range(2):
        got = torch.load(tmp_path / f"out.{rank}")
        assert torch.allclose(got["frames"], enc.frames, atol=1e-5) and torch.equal(got["mask"], enc.mask)
        assert got["sub"]["video2idx"] == sub["video2idx"]
        for task in ("VCMR", "SVMR", "VR"):
            assert_same_lists(got["sub"][task], sub[task])
