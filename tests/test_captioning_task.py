"""TVC task: loss, batches, the decoder and its KV-cached greedy decoding, checkpoints, the TASK object."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import make_clips
from fake_corpus import FakeCorpus
from reference_layout import reference_layout

from hero.data.batch import Clip, collate_video, pad_token_rows
from hero.errors import HeroError
from hero.model.checkpoint import load_weights
from hero.objectives.model import HeroForPretraining
from hero.tasks import get_task
from hero.tasks.captioning import (
    IGNORE,
    TASK,
    HeroForTvc,
    TvcBatch,
    TvcConfig,
    caption_rows,
    collate,
    context_groups,
    cut_at_eos,
    greedy_decode,
    label_smoothed_kl,
    moment_memory,
    predict,
    train_items,
    write_predictions,
)

TINY_TVC = TvcConfig(num_attention_heads=4, intermediate_size=64, max_position_embeddings=64, max_gen_step=12)


class FakeTokenizer:
    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size

    def decode(self, ids):
        return " ".join(f"w{i}" for i in ids)


def caption(ids, desc_id=0):
    return {"desc_id": desc_id, "desc": " ".join(f"w{i}" for i in ids), "input_ids": list(ids)}


@pytest.fixture
def corpus(tiny_config):
    clips = make_clips(tiny_config, n=3, seed=3, min_frames=6, max_frames=12)
    vids = [c.vid for c in clips]
    train = [
        {"clip_id": 10, "vid": vids[0], "ts": [0.0, 4.6], "duration": 18.0,
         "captions": [caption([5, 6, 7], 100), caption([8, 9], 101)]},
        {"clip_id": 11, "vid": vids[1], "ts": [3.1, 9.0], "duration": 18.0,
         "captions": [caption([11, 12, 13, 14], 102)]},
        {"clip_id": 12, "vid": vids[0], "ts": [6.0, 8.0], "duration": 18.0, "captions": [caption([20], 103)]},
        {"clip_id": 13, "vid": vids[2], "ts": [500.0, 510.0], "duration": 600.0,  # beyond the video
         "captions": [caption([30, 31], 104)]},
    ]
    return FakeCorpus(clips, {("tvc", "train"): train, ("tvc", "val"): train[:3]}, tiny_config.vocab_size,
                      tokenizer=FakeTokenizer(tiny_config.vocab_size))


# The moments of `corpus`'s captions in batch order, derived by hand from the reference rule
# (interval 1.5 s): st = floor(ts0 / 1.5), ed = round(ts1 / 1.5), at least st + 1, clamped to the video.
HAND_RANGES = [(0, 0, 3), (0, 0, 3), (0, 4, 5), (1, 2, 6), (2, "end", "end")]


@pytest.fixture
def aligned():
    """Tests that collate use ``hero.data.alignment.tvc_clip_range``; it must be importable (no skip)."""
    from hero.data.alignment import tvc_clip_range

    return tvc_clip_range


def hand_batch(corpus, cfg):
    """The training batch of all of `corpus`'s train captions, built without `collate`."""
    items = train_items(corpus, "tvc", "train", cfg)
    clips = [corpus.clip(it["vid"]) for it in items]
    video = collate_video([c.features for c in clips], [context_groups(c, corpus.tokens.sep_id, cfg.sub_ctx_len)
                                                        for c in clips])
    ranges = [(b, clips[b].num_frames, clips[b].num_frames) if st == "end" else (b, st, ed)
              for b, st, ed in HAND_RANGES]
    index, mask = moment_memory(ranges, video.frame_feats.shape[1])
    rows = [caption_rows(cap["input_ids"], corpus.tokens.cls_id, corpus.tokens.sep_id, cfg.max_txt_len)
            for it in items for cap in it["captions"]]
    return TvcBatch(video, index, mask, pad_token_rows([r[0] for r in rows], corpus.tokens.pad_id)[0],
                    pad_token_rows([r[1] for r in rows], IGNORE)[0])


def tiny_model(tiny_config, seed=0, **overrides):
    torch.manual_seed(seed)
    model = HeroForTvc(tiny_config, TvcConfig(**{**TINY_TVC.__dict__, **overrides}))
    return model.eval()


# -- loss ------------------------------------------------------------------------------------------


def direct_label_smoothed_kl(logits, targets, eps):
    """The reference formula written out: build q, then Σ_vocab KL(q‖p) per token, mean over tokens."""
    v = logits.shape[-1]
    logits, targets = logits.reshape(-1, v), targets.reshape(-1)
    keep = targets != IGNORE
    logp = logits[keep].log_softmax(-1)
    q = torch.full_like(logp, eps / (v - 1))
    q.scatter_(1, targets[keep][:, None], 1 - eps)
    return F.kl_div(logp, q, reduction="none").sum(-1).mean()


def test_label_smoothed_kl_matches_the_direct_formula():
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(3, 5, 11, generator=gen, dtype=torch.float64)
    targets = torch.randint(0, 11, (3, 5), generator=gen)
    targets[0, 3:] = IGNORE
    targets[2, 1:] = IGNORE
    for eps in (0.1, 0.3):
        got, n = label_smoothed_kl(logits, targets, eps)
        assert n == int((targets != IGNORE).sum())
        torch.testing.assert_close(got, direct_label_smoothed_kl(logits.float(), targets, eps))
    got, _ = label_smoothed_kl(logits, targets, 0.0)
    torch.testing.assert_close(got, F.cross_entropy(logits.float().view(-1, 11), targets.view(-1), ignore_index=IGNORE))
    empty, n = label_smoothed_kl(logits, torch.full_like(targets, IGNORE), 0.1)
    assert n == 0 and empty.item() == 0.0


def test_label_smoothed_kl_gradient_matches_the_direct_formula():
    logits = torch.randn(7, 13, generator=torch.Generator().manual_seed(1), requires_grad=True)
    targets = torch.tensor([0, 5, IGNORE, 12, 3, IGNORE, 7])
    label_smoothed_kl(logits, targets, 0.1)[0].backward()
    ours = logits.grad.clone()
    logits.grad = None
    direct_label_smoothed_kl(logits, targets, 0.1).backward()
    torch.testing.assert_close(ours, logits.grad)


def test_loss_is_over_the_padded_vocabulary(tiny_config, corpus):
    """The reference's TVC logits are not cut to the real vocabulary (V = 50272 for hero-base)."""
    model = tiny_model(tiny_config)
    batch = hand_batch(corpus, model.task_config)
    logits = model(batch)
    assert logits.shape[-1] == tiny_config.vocab_size_padded > tiny_config.vocab_size
    out = TASK.loss(model, batch, model.task_config, 0)
    expected = direct_label_smoothed_kl(logits, batch.target_ids, 0.1)
    torch.testing.assert_close(out["loss"], expected)
    assert out["normalizer"] == int((batch.target_ids != IGNORE).sum())
    assert set(out) == {"loss", "caption_loss", "normalizer"}


# -- batches ---------------------------------------------------------------------------------------


def test_caption_rows_follow_the_reference_cut():
    assert caption_rows([5, 6, 7], bos=0, eos=2, max_len=60) == ([0, 5, 6, 7], [5, 6, 7, 2])
    # the reference cuts after adding <s>/</s>: a caption of max_len tokens loses its </s>
    assert caption_rows([5, 6, 7], bos=0, eos=2, max_len=3) == ([0, 5, 6], [5, 6, 7])
    assert caption_rows([], bos=0, eos=2, max_len=3) == ([0], [2])


def test_context_groups_reference_rule():
    clip = Clip(features=torch.zeros(4, 2), subtitles=[[10], [11, 12], [13], [14]],
                sub2frames=[(0, [0]), (1, [1]), (3, [2, 3])], vid="v")
    assert context_groups(clip, sep_id=2, sub_ctx_len=0) == [([0], [2, 10]), ([1], [2, 11, 12]), ([2, 3], [2, 14])]
    assert context_groups(clip, sep_id=2, sub_ctx_len=1) == [([0], [2, 10]), ([1], [2, 10, 11, 12]),
                                                             ([2, 3], [2, 13, 14])]
    assert context_groups(clip, sep_id=2, sub_ctx_len=2)[2] == ([2, 3], [2, 11, 12, 13, 14])


def test_train_items_group_captions_by_video(corpus):
    items = train_items(corpus, "tvc", "train", TINY_TVC)
    assert [it["vid"] for it in items] == list(corpus.video_ids())
    assert [len(it["captions"]) for it in items] == [3, 1, 1]
    assert items[0]["captions"][2] == {"clip_id": 12, "desc_id": 103, "ts": [6.0, 8.0], "input_ids": [20]}
    json.dumps(items)  # JSON-able


def test_collate_builds_inputs_targets_and_moments(tiny_config, corpus, aligned):
    cfg = TINY_TVC
    items = train_items(corpus, "tvc", "train", cfg)
    batch = collate(corpus, items, cfg, torch.Generator().manual_seed(0))
    tokens = corpus.tokens
    assert batch.input_ids.tolist()[1] == [tokens.cls_id, 8, 9, tokens.pad_id, tokens.pad_id]
    assert batch.target_ids.tolist()[1] == [8, 9, tokens.sep_id, IGNORE, IGNORE]
    expected = hand_batch(corpus, cfg)
    for name in ("memory_index", "memory_mask", "input_ids", "target_ids"):
        assert torch.equal(getattr(batch, name), getattr(expected, name)), name
    assert batch.memory_mask.sum(1).tolist() == [3, 3, 1, 4, 0]  # the last moment lies beyond its video

    # the memory is the encoded video, sliced per caption
    model = tiny_model(tiny_config)
    with torch.no_grad():
        memory = model.encode(batch.video, batch.memory_index, batch.memory_mask)
        frames = model.hero.encode_video(batch.video)
    for row, (b, st, ed) in enumerate(HAND_RANGES[:4]):
        torch.testing.assert_close(memory[row, : ed - st], frames[b, st:ed])
        assert memory[row, ed - st:].abs().sum() == 0
    assert memory[4].abs().sum() == 0


def test_max_cap_per_vid_samples_from_the_generator(corpus, aligned):
    cfg = TvcConfig(**{**TINY_TVC.__dict__, "max_cap_per_vid": 2})
    items = train_items(corpus, "tvc", "train", cfg)
    a = collate(corpus, items, cfg, torch.Generator().manual_seed(1))
    b = collate(corpus, items, cfg, torch.Generator().manual_seed(1))
    assert a.input_ids.shape[0] == 2 + 1 + 1 and torch.equal(a.input_ids, b.input_ids)
    with pytest.raises(HeroError, match="generator"):
        collate(corpus, items, cfg, None)


def test_a_moment_without_frames_attends_to_nothing_of_the_batch(tiny_config, corpus):
    """Reference semantics: all memory masked → uniform attention over zero rows, whatever else is batched."""
    model = tiny_model(tiny_config)
    together = hand_batch(corpus, model.task_config)
    c = together.memory_index.shape[0]
    alone = TvcBatch(together.video, together.memory_index[c - 1:, :1], together.memory_mask[c - 1:, :1],
                     together.input_ids[c - 1:], together.target_ids[c - 1:])
    with torch.no_grad():
        a, b = model(alone)[-1], model(together)[-1]
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a, b)


def test_malformed_records_are_named(corpus):
    corpus._annotations[("tvc", "bad")] = [corpus._annotations[("tvc", "train")][0], {"clip_id": 1, "vid": "x"}]
    with pytest.raises(HeroError, match=r"tvc/bad\.jsonl:2: missing 'ts'"):
        train_items(corpus, "tvc", "bad", TINY_TVC)
    corpus._annotations[("tvc", "bad")] = [{"clip_id": 1, "vid": "x", "ts": [0, 1], "captions": [{"desc": "a"}]}]
    with pytest.raises(HeroError, match=r"bad\.jsonl:1: captions\[0\] needs 'input_ids'"):
        train_items(corpus, "tvc", "bad", TINY_TVC)


# -- decoding --------------------------------------------------------------------------------------


def random_memory(config, c=6, m=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    memory = torch.randn(c, m, config.hidden_size, generator=gen)
    lengths = torch.tensor([5, 1, 3, 0, 4, 2])[:c]
    mask = torch.arange(m)[None, :] < lengths[:, None]
    return memory * mask[..., None], mask


def test_cached_greedy_decoding_equals_naive_redecoding(tiny_config):
    model = tiny_model(tiny_config, seed=3)
    memory, mask = random_memory(tiny_config)
    naive = greedy_decode(model, memory, mask, 0, 2, max_steps=12, use_cache=False, early_stop=False)
    cached = greedy_decode(model, memory, mask, 0, 2, max_steps=12, use_cache=True, early_stop=False)
    assert naive.shape == (6, 12)
    assert torch.equal(naive, cached)
    # a token the model does produce, used as </s>: early stop may shorten S but not the captions
    eos = int(naive[0, 2])
    full = greedy_decode(model, memory, mask, 0, eos, 12, use_cache=False, early_stop=False)
    short = greedy_decode(model, memory, mask, 0, eos, 12)
    assert [cut_at_eos(r, eos) for r in full.tolist()] == [cut_at_eos(r, eos) for r in short.tolist()]


def test_decoding_stops_once_every_caption_has_ended(tiny_config):
    model = tiny_model(tiny_config)
    with torch.no_grad():
        model.mlm_head.bias[2] = 1e4  # </s> always wins
    memory, mask = random_memory(tiny_config)
    assert greedy_decode(model, memory, mask, 0, 2, max_steps=12).tolist() == [[2]] * 6
    assert cut_at_eos([5, 6, 2, 7], 2) == [5, 6] and cut_at_eos([5], 2) == [5]


def test_predict_writes_the_official_format(tiny_config, corpus, tmp_path, aligned):
    model = tiny_model(tiny_config)
    preds = predict(model, corpus, "tvc", "train", model.task_config, batch_size=2)
    records = corpus.annotations("tvc", "train")
    assert [p["clip_id"] for p in preds] == [r["clip_id"] for r in records]
    for p, r in zip(preds, records):
        assert set(p) == {"vid_name", "clip_id", "ts", "descs"}
        assert p["vid_name"] == r["vid"] and p["ts"] == r["ts"]
        assert len(p["descs"]) == 1 and isinstance(p["descs"][0]["desc"], str)
        words = p["descs"][0]["desc"].split()
        assert len(words) <= model.task_config.max_gen_step
        assert all(int(w[1:]) < tiny_config.vocab_size for w in words)  # padded-vocabulary ids dropped
    # batching does not change the captions
    assert predict(model, corpus, "tvc", "train", model.task_config, batch_size=1) == preds
    with torch.no_grad():
        model.mlm_head.bias[tiny_config.vocab_size + 1] = 1e4  # a padded row of the word table always wins
    assert {p["descs"][0]["desc"] for p in predict(model, corpus, "tvc", "train", model.task_config)} == {""}
    path = tmp_path / "out" / "tvc_train.jsonl"
    write_predictions(preds, path)
    assert [json.loads(line) for line in path.read_text().splitlines()] == preds
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_evaluate_without_java_scores_against_the_split(tiny_config, corpus, monkeypatch):
    import hero.eval.captioning as metrics

    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    records = corpus.annotations("tvc", "val")
    perfect = [{"clip_id": r["clip_id"], "descs": [{"desc": r["captions"][0]["desc"]}]} for r in records]
    with pytest.warns(RuntimeWarning, match="no Java"):
        scores = TASK.evaluate(perfect, corpus, "tvc", "val", TINY_TVC)
    assert "METEOR" not in scores and scores["ROUGE_L"] == pytest.approx(100) and scores["Bleu_1"] > 99
    with pytest.raises(HeroError, match="have no prediction"):
        TASK.evaluate(perfect[:1], corpus, "tvc", "val", TINY_TVC)


@pytest.mark.slow  # ~15 s of CPU
def test_a_tiny_model_memorises_captions(tiny_config, corpus, aligned):
    """The pieces fit: a few dozen Adam steps on two videos, then greedy decoding repeats the captions."""
    cfg = TINY_TVC
    annotations = corpus.annotations("tvc", "train")
    corpus._annotations[("tvc", "fit")] = [annotations[1], {**annotations[2], "captions": [caption([40, 41, 42])]}]
    torch.manual_seed(0)
    model = HeroForTvc(tiny_config, cfg)
    items = train_items(corpus, "tvc", "fit", cfg)
    batch = collate(corpus, items, cfg, torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(40):
        opt.zero_grad()
        out = TASK.loss(model, batch, cfg, 0)
        out["loss"].backward()
        opt.step()
    model.eval()
    preds = predict(model, corpus, "tvc", "fit", cfg, batch_size=2)
    assert [p["descs"][0]["desc"] for p in preds] == ["w11 w12 w13 w14", "w40 w41 w42"]


# -- checkpoints -----------------------------------------------------------------------------------


def reference_tvc_layout(config, cfg):
    """Keys and shapes of a reference ``HeroForTvc`` state dict (notes §1.7), written from the configs."""
    d, ffn = config.hidden_size, cfg.intermediate_size
    keys = [(k, s) for k, s in reference_layout(config) if k.startswith("v_encoder.")]
    keys += [("position_embeddings.weight", (cfg.max_position_embeddings, d)),
             ("emb_LayerNorm.weight", (d,)), ("emb_LayerNorm.bias", (d,)),
             ("decoder.tri_mask", (1024, 1024))]
    for i in range(cfg.num_layers):
        p = f"decoder.layer.{i}."
        for att in ("self_attention", "dec_enc_attention"):
            for name in ("query", "key", "value"):
                keys += [(f"{p}{att}.{name}.weight", (d, d)), (f"{p}{att}.{name}.bias", (d,))]
        for norm, width in (("add_norm_1", d), ("add_norm_2", d), ("add_norm_3", ffn)):
            keys += [(f"{p}{norm}.dense.weight", (d, width)), (f"{p}{norm}.dense.bias", (d,)),
                     (f"{p}{norm}.LayerNorm.weight", (d,)), (f"{p}{norm}.LayerNorm.bias", (d,))]
        keys += [(f"{p}intermidiate.dense.weight", (ffn, d)), (f"{p}intermidiate.dense.bias", (ffn,))]
    keys.append(("loss_func.one_hot", (1, config.vocab_size_padded)))
    return keys


def to_reference_names(model):
    """Our state dict under reference names, by inverting the model's prefix table."""
    out = {}
    for key, value in model.state_dict().items():
        for ref, ours in model.REFERENCE_KEY_MAP:
            if ours is not None and key.startswith(ours):
                out[ref + key[len(ours):]] = value.clone()
                break
        else:
            raise AssertionError(f"{key} has no reference name")
    return out


def test_reference_tvc_checkpoint_round_trips(tmp_path, tiny_config, corpus):
    model = tiny_model(tiny_config, seed=4)
    # the reference HeroForTvc has no query encoder (q_feat_attn belongs to the retrieval models)
    state = {k: v for k, v in to_reference_names(model).items() if not k.startswith("q_feat_attn.")}
    layout = dict(reference_tvc_layout(tiny_config, model.task_config))
    # what the reference also saves: buffers, unused heads, the tied decoder alias
    gen = torch.Generator().manual_seed(0)
    for key, shape in layout.items():
        if key not in state:
            state[key] = torch.randn(shape, generator=gen)
    state["v_encoder.f_encoder.lm_head.decoder.weight"] = state["v_encoder.f_encoder.embeddings.word_embeddings.weight"]
    state["vocab_padded"] = True
    assert {k: tuple(v.shape) for k, v in state.items() if k != "vocab_padded"} == layout
    path = tmp_path / "model_step_7000.pt"
    torch.save(state, path)

    loaded = HeroForTvc.from_reference(path, num_attention_heads=tiny_config.num_attention_heads,
                                       vocab_size=tiny_config.vocab_size).eval()
    assert loaded.load_report.missing == sorted(k for k in model.state_dict() if k.startswith("hero.q_encoder."))
    assert loaded.task_config.num_layers == 2 and loaded.task_config.intermediate_size == 64
    ignored = {e.split(" ")[0] for e in loaded.load_report.ignored}
    assert {"decoder.tri_mask", "loss_func.one_hot", "v_encoder.f_encoder.lm_head.decoder.weight",
            "vocab_padded"} <= ignored
    assert not any(k.startswith(("decoder.layer", "position_", "emb_")) for k in ignored)
    batch = hand_batch(corpus, TINY_TVC)
    with torch.no_grad():
        assert torch.equal(model(batch), loaded(batch))


def test_our_checkpoints_round_trip_with_their_task_config(tmp_path, tiny_config, corpus):
    model = tiny_model(tiny_config, seed=5, max_gen_step=7)
    saved = model.save_pretrained(tmp_path / "tvc")
    loaded = HeroForTvc.from_pretrained(saved).eval()
    assert loaded.task_config == model.task_config
    batch = hand_batch(corpus, TINY_TVC)
    with torch.no_grad():
        assert torch.equal(model(batch), loaded(batch))


def test_pretrained_hero_loads_with_its_mlm_head(tmp_path, tiny_config):
    torch.manual_seed(1)
    pretrained = HeroForPretraining(tiny_config)
    saved = pretrained.save_pretrained(tmp_path / "pretrained")
    model = tiny_model(tiny_config)
    report = load_weights(model, saved, strict=False)
    own = model.state_dict()
    for key, value in pretrained.state_dict().items():
        if key.startswith(("hero.", "mlm_head.")):
            assert torch.equal(own[key], value), key
    assert all(k.startswith(("decoder.", "position_embeddings.", "emb_LayerNorm.")) for k in report.missing)


def test_decoder_keeps_pytorch_default_initialisation(tiny_config):
    model = tiny_model(tiny_config)
    pos = model.position_embeddings.weight
    assert 0.8 < pos.std().item() < 1.2  # nn.Embedding: N(0, 1), not N(0, 0.02)
    bound = 1 / math.sqrt(tiny_config.hidden_size)  # nn.Linear: Kaiming-uniform
    w = model.decoder.layer[0].self_attention.query.weight
    assert w.abs().max() <= bound and w.std() > 0.5 * bound / math.sqrt(3)
    assert model.mlm_head.dense.weight.std().item() == pytest.approx(0.02, rel=0.3)


# -- the task object -------------------------------------------------------------------------------


def test_task_contract():
    assert get_task("tvc") is TASK and TASK.name == "tvc" and TASK.datasets == ("tvc",)
    assert TASK.config_class is TvcConfig and TASK.model_class is HeroForTvc
    cfg = TvcConfig()
    assert (cfg.num_layers, cfg.num_attention_heads, cfg.intermediate_size, cfg.max_position_embeddings) == \
        (2, 12, 3072, 1024)
    assert (cfg.label_smoothing, cfg.max_txt_len, cfg.max_gen_step, cfg.sub_ctx_len, cfg.lr_mul) == \
        (0.1, 60, 30, 1, 10.0)
    with pytest.raises(HeroError, match="TvcConfig: unknown key"):
        TvcConfig.from_dict({"beam": 3})
    with pytest.raises(HeroError, match="label_smoothing"):
        TvcConfig(label_smoothing=1.0)
