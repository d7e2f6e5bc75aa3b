"""Video QA task (TVQA/How2QA): early fusion, heads, loss, items, predict/evaluate, checkpoints, TASK."""

from __future__ import annotations

import json
import warnings
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
from hero.eval.classification import evaluate_qa_files
from hero.model.layers import MASK_VALUE
from hero.tasks import get_task
from hero.tasks.video_qa import (
    IGNORE,
    TASK,
    HeroForVideoQa,
    QaBatch,
    QaConfig,
    collate,
    encode_with_text,
    predict,
    predict_logits,
    span_target,
    to_item,
    train_items,
    write_predictions,
)
from hero.train.config import OptimConfig, load_config
from hero.train.finetune import FinetuneConfig, task_settings
from hero.train.optim import param_groups

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "finetune"


def question(qid, vid, q, answers, answer_idx, ts=None, q_type=None):
    return {"qid": qid, "vid": vid, "q": "", "answers": [""] * len(answers), "q_ids": list(q),
            "a_ids": [list(a) for a in answers], "answer_idx": answer_idx, "ts": ts, "q_type": q_type}


@pytest.fixture
def corpus(tiny_config):
    clips = make_clips(tiny_config, n=3, seed=5, min_frames=5, max_frames=11)
    # a video-only clip, as the corpus delivers pseudo subtitles: empty text over groups of frames
    n = 7
    feats = torch.randn(n, tiny_config.vfeat_dim, generator=torch.Generator().manual_seed(9)).abs()
    clips.append(Clip(features=feats, subtitles=[[], []], sub2frames=[(0, [0, 1, 2, 3, 4]), (1, [5, 6])],
                      vid="video_only"))
    vids = [c.vid for c in clips]
    train = [
        question(0, vids[0], [10, 11], [[20], [21, 22], [23], [24, 25, 26], [27]], 1, [1.0, 4.0], "what"),
        question(1, vids[1], [12], [[30], [31], [32], [33], [34]], 4, [0.0, 2.9], "who"),
        question(2, vids[2], [13, 14, 15], [[40, 41], [42], [43], [44], [45]], 0, None, "what"),
        question(3, vids[3], [16], [[50], [51], [52], [53], [54]], 2, [3.0, 7.5], "where"),
    ]
    test = [{**r, "answer_idx": None} for r in train]
    how2qa = [question(f"h{i}", vids[i], [60 + i], [[61], [62], [63], [64]], i % 4, [0.0, 3.0]) for i in range(3)]
    return FakeCorpus(clips, {("tvqa", "train"): train, ("tvqa", "val"): train, ("tvqa", "test"): test,
                              ("how2qa", "val"): how2qa}, tiny_config.vocab_size)


def tiny_model(tiny_config, seed=0, **overrides):
    torch.manual_seed(seed)
    return HeroForVideoQa(tiny_config, QaConfig(**overrides)).eval()


def batch_of(corpus, records, cfg=None):
    return collate(corpus, [to_item(r) for r in records], cfg or QaConfig())


# -- batches ---------------------------------------------------------------------------------------


def test_collate_appends_question_and_answer_to_every_group_and_the_temporal_input(corpus):
    records = corpus.annotations("tvqa", "train")[:2]
    batch = batch_of(corpus, records, QaConfig(sub_ctx_len=1))
    sep, pad = corpus.tokens.sep_id, corpus.tokens.pad_id
    assert batch.num_answers == 5 and batch.video.frame_feats.shape[0] == 10
    # copy q*A + a carries [SEP] q [SEP] a
    row = batch.txt_ids[1].tolist()
    assert row[:6] == [sep, 10, 11, sep, 21, 22] and set(row[6:]) <= {pad}
    assert batch.txt_mask.sum(1).tolist() == [5, 6, 5, 7, 5] + [4] * 5
    # every copy holds the same clip
    clip = corpus.clip(records[0]["vid"])
    for a in range(5):
        torch.testing.assert_close(batch.video.frame_feats[a, : clip.num_frames], clip.features.float())
    # the packed text of copy 1: for every group with frames, [SEP] + context subtitles + [SEP] q [SEP] a
    cross = batch.video.cross
    groups = [g for g in range(cross.num_groups)
              if int(cross.frm_index[cross.frm_group == g][0]) // batch.video.frame_feats.shape[1] == 1]
    expected = []
    for sub_idx, frames in clip.sub2frames:
        if frames:
            ctx = [t for j in range(max(0, sub_idx - 1), sub_idx + 1) for t in clip.subtitles[j]]
            expected.append([sep, *ctx, sep, 10, 11, sep, 21, 22])
    assert [cross.txt_ids[cross.txt_group == g].tolist() for g in groups] == expected
    assert batch.targets.tolist() == [1, 4]


def test_span_targets_follow_the_reference_rule(corpus):
    # vcmr/tvqa rule, interval 1.5: st = min(floor(t0/1.5), n-1), ed = min(max(ceil(t1/1.5)-1, st+1), n-1)
    assert span_target([1.0, 4.0], 10, 1.5) == (0, 2)
    assert span_target([3.0, 7.5], 7, 1.5) == (2, 4)
    assert span_target([0.0, 0.1], 10, 1.5) == (0, 1)
    assert span_target([30.0, 40.0], 10, 1.5) == (9, 9)
    assert span_target("1.0-4.0", 10, 1.5) == (0, 2)  # raw TVQA string
    assert span_target("abc", 10, 1.5) == (IGNORE, IGNORE)
    assert span_target(None, 10, 1.5) == (IGNORE, IGNORE)
    batch = batch_of(corpus, corpus.annotations("tvqa", "train"))
    n = [corpus.clip(r["vid"]).num_frames for r in corpus.annotations("tvqa", "train")]
    expected = [span_target([1.0, 4.0], n[0], 1.5), span_target([0.0, 2.9], n[1], 1.5), (-1, -1),
                span_target([3.0, 7.5], n[3], 1.5)]
    assert batch.span_targets.tolist() == [list(e) for e in expected]


def test_questions_of_a_batch_need_the_same_number_of_answers(corpus):
    records = [corpus.annotations("tvqa", "train")[0], corpus.annotations("how2qa", "val")[0]]
    with pytest.raises(HeroError, match="same number of answers"):
        batch_of(corpus, records)


# -- model -----------------------------------------------------------------------------------------


def test_output_shapes_and_masked_span_logits(tiny_config, corpus):
    model = tiny_model(tiny_config)
    batch = batch_of(corpus, corpus.annotations("tvqa", "train"))
    with torch.no_grad():
        out = model(batch)
    q, length = 4, batch.video.frame_feats.shape[1]
    assert out.answer_logits.shape == (q, 5)
    assert out.st_logits.shape == out.ed_logits.shape == (q, length)
    frame_mask = batch.video.frame_mask.view(q, 5, length)[:, 0]
    assert torch.all(out.st_logits[~frame_mask] == MASK_VALUE) and torch.all(out.ed_logits[~frame_mask] == MASK_VALUE)
    assert torch.isfinite(out.answer_logits).all() and (out.st_logits[frame_mask] > MASK_VALUE / 2).all()


def test_batching_and_answer_order_do_not_change_scores(tiny_config, corpus):
    """Each candidate gets its own pass: scores do not depend on batch neighbours, padding or the
    position of the answer among the candidates."""
    model = tiny_model(tiny_config, seed=1)
    records = corpus.annotations("tvqa", "train")
    with torch.no_grad():
        together = model(batch_of(corpus, records)).answer_logits
        for i, r in enumerate(records):
            alone = model(batch_of(corpus, [r])).answer_logits
            torch.testing.assert_close(alone[0], together[i], rtol=1e-5, atol=1e-5)
        perm = [3, 0, 4, 2, 1]
        shuffled = {**records[0], "a_ids": [records[0]["a_ids"][p] for p in perm]}
        torch.testing.assert_close(model(batch_of(corpus, [shuffled])).answer_logits[0], together[0][perm],
                                   rtol=1e-5, atol=1e-5)
    assert len({round(v, 4) for v in together[0].tolist()}) == 5  # the answers are told apart


def test_the_temporal_transformer_reads_the_qa_tokens(tiny_config):
    """A clip with no subtitle group sees the answers only through the temporal input."""
    torch.manual_seed(0)
    model = HeroForVideoQa(tiny_config).eval()
    clip = Clip(features=torch.rand(6, tiny_config.vfeat_dim), subtitles=[], sub2frames=[], vid="bare")
    corpus = FakeCorpus([clip], {("tvqa", "x"): [question(0, "bare", [7], [[8], [9], [10]], 0)]},
                        tiny_config.vocab_size)
    batch = batch_of(corpus, corpus.annotations("tvqa", "x"))
    assert batch.video.cross.num_groups == 0
    with torch.no_grad():
        frames = encode_with_text(model.hero, batch.video, batch.txt_ids, batch.txt_mask)
        logits = model(batch).answer_logits
    assert frames.shape == (3, 6, tiny_config.hidden_size)
    assert not torch.allclose(frames[0], frames[1]) and torch.isfinite(logits).all()
    assert len(set(logits[0].tolist())) == 3


# -- loss ------------------------------------------------------------------------------------------


def test_loss_is_answer_ce_plus_weighted_span_ce(tiny_config, corpus):
    model = tiny_model(tiny_config, seed=2)
    batch = batch_of(corpus, corpus.annotations("tvqa", "train"))
    with torch.no_grad():
        out = model(batch)
        got = TASK.loss(model, batch, model.task_config, 0)
    qa = F.cross_entropy(out.answer_logits, batch.targets)
    keep = [0, 1, 3]  # question 2 has no moment
    st = F.cross_entropy(out.st_logits[keep], batch.span_targets[keep, 0])
    ed = F.cross_entropy(out.ed_logits[keep], batch.span_targets[keep, 1])
    torch.testing.assert_close(got["qa_loss"], qa)
    torch.testing.assert_close(got["span_loss"], 0.4 * (st + ed) / 2)
    torch.testing.assert_close(got["loss"], qa + 0.4 * (st + ed) / 2)
    assert got["normalizer"] == 4
    # the paper's weight
    with torch.no_grad():
        paper = TASK.loss(model, batch, QaConfig(lw_st_ed=0.5), 0)
    torch.testing.assert_close(paper["span_loss"], 0.5 * (st + ed) / 2)
    # off, and no moment at all
    assert "span_loss" not in TASK.loss(model, batch, QaConfig(lw_st_ed=0.0), 0)
    batch.span_targets[:] = IGNORE
    with torch.no_grad():
        none = TASK.loss(model, batch, model.task_config, 0)
    assert none["span_loss"].item() == 0.0 and torch.isfinite(none["loss"])


def test_a_tiny_model_learns_the_answers(tiny_config, corpus):
    """Loss falls and the training questions get answered, video-only clip included."""
    torch.manual_seed(0)
    cfg = QaConfig()
    model = HeroForVideoQa(tiny_config, cfg)
    items = train_items(corpus, "tvqa", "train", cfg)
    batch = collate(corpus, items, cfg, torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    losses = []
    for _ in range(25):
        opt.zero_grad()
        out = TASK.loss(model, batch, cfg, 0)
        out["loss"].backward()
        opt.step()
        losses.append(out["qa_loss"].item())
    assert losses[-1] < 0.5 * losses[0]
    preds = predict(model, corpus, "tvqa", "val", cfg, batch_size=3)
    assert TASK.evaluate(preds, corpus, "tvqa", "val", cfg)["accuracy"] == 100.0


# -- items -----------------------------------------------------------------------------------------


def test_train_items_skip_long_and_videoless_questions_and_count_them(corpus):
    records = list(corpus.annotations("tvqa", "train"))
    records.append(question(9, "no_such_video", [1], [[2]] * 5, 0))
    records.append(question(10, records[0]["vid"], [3] * 8, [[4] * 3] * 5, 0))
    corpus._annotations[("tvqa", "mixed")] = records
    problems = Problems()
    items = train_items(corpus, "tvqa", "mixed", QaConfig(max_txt_len=10), problems)
    assert [it["qid"] for it in items] == [0, 1, 2, 3]
    assert problems.skipped == {"missing video": 1, "question too long": 1}
    assert "mixed.jsonl:6" in problems.summary()
    json.dumps(items)  # JSON-able
    with pytest.warns(RuntimeWarning, match="skipped 2 questions"):
        train_items(corpus, "tvqa", "mixed", QaConfig(max_txt_len=10))
    with pytest.raises(HeroError, match="strict"):
        train_items(corpus, "tvqa", "mixed", QaConfig(), Problems(strict=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(train_items(corpus, "tvqa", "train", QaConfig())) == 4


@pytest.mark.parametrize("change, message", [
    ({"answer_idx": 5}, r"tvqa/bad\.jsonl:1: 'answer_idx' must be an integer in \[0, 5\)"),
    ({"answer_idx": None}, r"bad\.jsonl:1: 'answer_idx' is null"),
    ({"a_ids": [[1]]}, r"bad\.jsonl:1: 'a_ids' must be a list of at least 2"),
    ({"q_ids": "abc"}, r"bad\.jsonl:1: 'q_ids' must be a list"),
    ({"ts": [1.0]}, r"bad\.jsonl:1: 'ts' must be"),
])
def test_malformed_records_are_named(corpus, change, message):
    corpus._annotations[("tvqa", "bad")] = [{**corpus.annotations("tvqa", "train")[0], **change}]
    with pytest.raises(HeroError, match=message):
        train_items(corpus, "tvqa", "bad", QaConfig())
    record = dict(corpus.annotations("tvqa", "train")[0])
    del record["vid"]
    corpus._annotations[("tvqa", "bad")] = [record]
    with pytest.raises(HeroError, match=r"bad\.jsonl:1: missing 'vid'"):
        train_items(corpus, "tvqa", "bad", QaConfig())


# -- inference -------------------------------------------------------------------------------------


def test_predict_and_evaluate_round_trip_through_files(tiny_config, corpus, tmp_path):
    model = tiny_model(tiny_config, seed=3)
    cfg = model.task_config
    preds = predict(model, corpus, "tvqa", "val", cfg, batch_size=3)
    logits = predict_logits(model, corpus, "tvqa", "val", cfg, batch_size=1)
    assert list(preds) == ["0", "1", "2", "3"]
    assert preds == {q: max(range(5), key=row.__getitem__) for q, row in logits.items()}
    assert predict(model, corpus, "tvqa", "val", cfg, batch_size=1) == preds  # batching does not matter
    metrics = TASK.evaluate(preds, corpus, "tvqa", "val", cfg)
    records = corpus.annotations("tvqa", "val")
    hits = [preds[str(r["qid"])] == r["answer_idx"] for r in records]
    assert metrics["accuracy"] == pytest.approx(100 * sum(hits) / 4)
    assert metrics["accuracy/what"] == pytest.approx(100 * (hits[0] + hits[2]) / 2)
    assert metrics["num_questions/who"] == 1
    pred_path, gt_path = tmp_path / "out" / "tvqa_val.json", tmp_path / "val.jsonl"
    write_predictions(preds, pred_path)
    assert [p.name for p in pred_path.parent.iterdir()] == [pred_path.name]
    gt_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert evaluate_qa_files(pred_path, gt_path) == metrics
    # test split: predictions without answers; scoring it is an error
    assert set(predict(model, corpus, "tvqa", "test", cfg)) == set(preds)
    with pytest.raises(HeroError, match="no integer 'answer_idx'"):
        TASK.evaluate(preds, corpus, "tvqa", "test", cfg)


def test_how2qa_with_four_answers(tiny_config, corpus):
    model = tiny_model(tiny_config)
    preds = predict(model, corpus, "how2qa", "val", model.task_config)
    assert set(preds) == {"h0", "h1", "h2"} and all(0 <= p < 4 for p in preds.values())
    assert "accuracy" in TASK.evaluate(preds, corpus, "how2qa", "val", model.task_config)
    assert get_task("how2qa") is TASK


def test_predict_names_a_missing_video_and_a_repeated_qid(tiny_config, corpus):
    corpus._annotations[("tvqa", "lost")] = [question(0, "gone", [1], [[2]] * 5, None)]
    with pytest.raises(HeroError, match=r"lost\.jsonl:1: video 'gone' is not in the corpus"):
        predict(tiny_model(tiny_config), corpus, "tvqa", "lost", QaConfig())
    records = corpus.annotations("tvqa", "val")
    corpus._annotations[("tvqa", "twice")] = [*records, {**records[1], "qid": "0"}]
    with pytest.raises(HeroError, match=r"twice\.jsonl:5: qid '0' already appears at line 1"):
        predict(tiny_model(tiny_config), corpus, "tvqa", "twice", QaConfig())


# -- checkpoints and optimisation ------------------------------------------------------------------


def to_reference_names(model):
    out = {}
    for key, value in model.state_dict().items():
        for ref, ours in model.REFERENCE_KEY_MAP:
            if ours is not None and key.startswith(ours):
                out[ref + key[len(ours):]] = value.clone()
                break
        else:
            raise AssertionError(f"{key} has no reference name")
    return out


def reference_qa_layout(config):
    """Keys and shapes of a reference ``HeroForVideoQA`` state dict (notes §1.7)."""
    d = config.hidden_size
    keys = [(k, s) for k, s in reference_layout(config) if k.startswith("v_encoder.")]
    keys += [("qa_pool.weight", (1, d)), ("st_ed_pool.weight", (1, d))]
    for head, out in (("qa_pred_head", 1), ("st_ed_pred_head", 2)):
        keys += [(f"{head}.linear_1.weight", (2 * d, d)), (f"{head}.linear_1.bias", (2 * d,)),
                 (f"{head}.LayerNorm.weight", (2 * d,)), (f"{head}.LayerNorm.bias", (2 * d,)),
                 (f"{head}.linear_2.weight", (out, 2 * d)), (f"{head}.linear_2.bias", (out,))]
    return keys


def test_reference_checkpoint_loads(tmp_path, tiny_config, corpus):
    model = tiny_model(tiny_config, seed=4)
    state = {k: v for k, v in to_reference_names(model).items() if not k.startswith("q_feat_attn.")}
    layout = dict(reference_qa_layout(tiny_config))
    gen = torch.Generator().manual_seed(0)
    for key, shape in layout.items():
        if key not in state:  # buffers and the reference's unused pre-training heads
            state[key] = torch.randn(shape, generator=gen)
    assert {k: tuple(v.shape) for k, v in state.items()} == layout
    state["v_encoder.f_encoder.lm_head.decoder.weight"] = state["v_encoder.f_encoder.embeddings.word_embeddings.weight"]
    state = {k: v.half() for k, v in state.items()}  # apex O2 checkpoints are fp16
    state["vocab_padded"] = True
    path = tmp_path / "tvqa_default.pt"
    torch.save(state, path)
    loaded = HeroForVideoQa.from_reference(path, num_attention_heads=tiny_config.num_attention_heads,
                                           vocab_size=tiny_config.vocab_size).eval()
    assert loaded.load_report.missing == sorted(k for k in model.state_dict() if k.startswith("hero.q_encoder."))
    assert {"qa_pool.weight", "st_ed_pred_head.linear_2.bias"} <= set(loaded.load_report.loaded)
    with torch.no_grad():
        for name, value in loaded.state_dict().items():
            if not name.startswith("hero.q_encoder."):
                torch.testing.assert_close(value, model.state_dict()[name].half().float(), msg=name)
        # a perturbed head weight is caught
        state["qa_pred_head.linear_2.bias"] = state["qa_pred_head.linear_2.bias"] + 1
        torch.save(state, path)
        other = HeroForVideoQa.from_reference(path, num_attention_heads=tiny_config.num_attention_heads,
                                              vocab_size=tiny_config.vocab_size)
        assert not torch.equal(other.qa_pred_head.linear_2.bias, loaded.qa_pred_head.linear_2.bias)


def test_our_checkpoints_round_trip_with_their_task_config(tmp_path, tiny_config, corpus):
    model = tiny_model(tiny_config, seed=5, lw_st_ed=0.5, sub_ctx_len=1)
    loaded = HeroForVideoQa.from_pretrained(model.save_pretrained(tmp_path / "qa")).eval()
    assert loaded.task_config == model.task_config
    batch = batch_of(corpus, corpus.annotations("tvqa", "train"))
    with torch.no_grad():
        assert torch.equal(model(batch).answer_logits, loaded(batch).answer_logits)


def test_heads_get_the_learning_rate_multiplier(tiny_config):
    model = HeroForVideoQa(tiny_config)
    groups = param_groups(model, OptimConfig(lr_mul=10.0))
    names = {id(p): n for n, p in model.named_parameters()}
    for g in groups:
        heads = {names[id(p)].split(".")[0] for p in g["params"]}
        assert g["lr_scale"] == (10.0 if heads != {"hero"} else 1.0)
        assert heads == {"hero"} or heads <= {"qa_pool", "qa_pred_head", "st_ed_pool", "st_ed_pred_head"}
    # heads keep PyTorch's default init (Kaiming-uniform), not N(0, 0.02)
    assert model.qa_pred_head.linear_1.weight.abs().max() <= 1 / tiny_config.hidden_size ** 0.5


def test_batch_moves_to_a_device(corpus):
    batch = batch_of(corpus, corpus.annotations("tvqa", "train")[:1]).to("cpu")
    assert isinstance(batch, QaBatch) and batch.num_answers == 5 and batch.targets.tolist() == [1]


# -- task object and configs -----------------------------------------------------------------------


def test_task_contract_and_reference_defaults():
    assert get_task("video_qa") is TASK and get_task("tvqa") is TASK
    assert TASK.name == "video_qa" and TASK.datasets == ("tvqa", "how2qa")
    assert TASK.config_class is QaConfig and TASK.model_class is HeroForVideoQa
    cfg = QaConfig()
    assert (cfg.lw_st_ed, cfg.sub_ctx_len, cfg.max_txt_len) == (0.4, 0, 120)
    with pytest.raises(HeroError, match="QaConfig: unknown key"):
        QaConfig.from_dict({"lw_span": 1})
    with pytest.raises(HeroError, match="lw_st_ed"):
        QaConfig(lw_st_ed=-1)


@pytest.mark.parametrize("name, dataset", [("tvqa", "tvqa"), ("how2qa", "how2qa")])
def test_shipped_configs_carry_the_reference_settings(name, dataset):
    config = load_config(FinetuneConfig, CONFIGS / f"{name}.yaml")
    assert (config.task, config.dataset) == ("video_qa", dataset)
    cfg = task_settings(TASK, config.task_config)
    assert cfg.lw_st_ed == 0.4 and cfg.max_txt_len == 120
    assert (config.optim.lr, config.optim.lr_mul, config.optim.warmup_steps) == (5e-5, 10.0, 1000)
    assert (config.train.num_train_steps, config.train.batch_size, config.train.grad_accum_steps) == (10000, 4, 2)
