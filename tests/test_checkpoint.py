"""Checkpoints: reference format (fp16, extras, old names), our safetensors format, RoBERTa init."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_clips
from reference_layout import reference_checkpoint, reference_layout

from hero.cli import main as cli_main
from hero.config import HeroConfig, hero_base
from hero.model.checkpoint import (
    CheckpointError,
    infer_reference_config,
    init_from_roberta,
    map_reference_key,
    roberta_key_map,
)
from hero.model.hero import Hero
from hero.objectives import FomObjective, HeroForPretraining, MfmObjective, MlmObjective, VsmObjective

EXPECTED_IGNORED = {"v_encoder.pad", "v_encoder.f_encoder.pad", "v_encoder.f_encoder.pooler.dense.weight",
                    "v_encoder.f_encoder.pooler.dense.bias", "v_encoder.c_encoder.pooler.dense.weight",
                    "v_encoder.c_encoder.pooler.dense.bias", "v_encoder.f_encoder.lm_head.decoder.weight"}


def all_outputs(model, clips, tokens):
    """Outputs of every pre-training head on a fixed batch (eval mode)."""
    model.eval()
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    out = {}
    with torch.no_grad():
        vsm = VsmObjective(tokens=tokens)
        pred = vsm.predict(model, vsm.collate(clips, gen(), use_span=True))
        out.update({f"vsm.{k}": v for k, v in pred.items() if isinstance(v, torch.Tensor)})
        mlm = MlmObjective(tokens=tokens)
        out["mlm.logits"] = mlm.predict(model, mlm.collate(clips, gen()))
        mfm = MfmObjective(tokens=tokens)
        out.update({f"mfm.{k}": v for k, v in mfm.predict(model, mfm.collate(clips, gen())).items()})
        fom = FomObjective(tokens=tokens)
        out["fom.frames"] = fom.shuffled_frames(model, fom.collate(clips, gen()))
    return out


def test_base_reference_layout_maps_completely():
    """Every key of the released ``hero-tv-ht100.pt`` layout maps; only the 7 known extras are ignored."""
    config = hero_base()
    layout = reference_layout(config)
    assert len(layout) == 211  # notes §1.7: 211 entries incl. 2 buffers and the tied decoder alias
    model = HeroForPretraining(config)
    own = model.state_dict()
    mapped, ignored = {}, set()
    for key, shape in layout:
        ours, _ = map_reference_key(key, HeroForPretraining.REFERENCE_KEY_MAP)
        if ours is None:
            ignored.add(key)
            continue
        assert ours in own, f"{key} maps to unknown {ours}"
        assert tuple(own[ours].shape) == shape, f"{key}: {shape} vs {tuple(own[ours].shape)}"
        assert ours not in mapped
        mapped[ours] = key
    assert ignored == EXPECTED_IGNORED
    assert set(mapped) == set(own)
    pooler = 2 * (768 * 768 + 768)
    assert sum(p.numel() for p in model.parameters()) + pooler == 121_037_262  # notes §1.7


def test_reference_fp16_checkpoint_round_trips(tmp_path, tiny_config, tiny_tokens):
    state = reference_checkpoint(tiny_config, seed=1)
    # the oldest layout names LayerNorm parameters gamma/beta
    for key in [k for k in state if k.endswith("LayerNorm.weight")][:3]:
        state[key[: -len("weight")] + "gamma"] = state.pop(key)
    path = tmp_path / "model_step_100.pt"
    torch.save(state, path)

    model = HeroForPretraining.from_reference(path, config=tiny_config)
    report = model.load_report
    assert report.missing == []
    assert {e.split(" ")[0] for e in report.ignored} == EXPECTED_IGNORED | {"vocab_padded"}
    notes = " ".join(report.notes)
    assert "torch.float16->torch.float32" in notes and "gamma/beta" in notes
    own = model.state_dict()
    assert torch.equal(own["hero.f_encoder.embeddings.word_embeddings.weight"],
                       state["v_encoder.f_encoder.embeddings.word_embeddings.weight"].float())
    assert torch.equal(own["vsm_head.st_conv.weight"], state["video_st_predictor.weight"].float())

    saved = model.save_pretrained(tmp_path / "ours")
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "model.safetensors"]
    reloaded = HeroForPretraining.from_pretrained(saved)
    assert reloaded.load_report.missing == []
    clips = make_clips(tiny_config, n=3, seed=5)
    a, b = all_outputs(model, clips, tiny_tokens), all_outputs(reloaded, clips, tiny_tokens)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_restore_checkpoint_wrapper_and_config_inference(tmp_path, tiny_config):
    state = reference_checkpoint(tiny_config)
    path = tmp_path / "restore.pt"
    torch.save({"global_step": 7, "model_state_dict": state, "optim_state_dict": {}}, path)
    model = HeroForPretraining.from_reference(path, num_attention_heads=tiny_config.num_attention_heads,
                                              vocab_size=tiny_config.vocab_size)
    assert model.config == tiny_config
    assert model.load_report.missing == []


def test_inferred_config_defaults():
    state = {k: torch.empty(s, device="meta") for k, s in reference_layout(hero_base())}
    config = infer_reference_config(state)
    assert config == hero_base()


def test_config_from_reference_model_json(tmp_path, tiny_config):
    state = reference_checkpoint(tiny_config)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "log").mkdir()
    path = tmp_path / "ckpt" / "model_step_5.pt"
    torch.save(state, path)
    block = {"hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64, "num_hidden_layers": 2,
             "vocab_size": tiny_config.vocab_size}
    (tmp_path / "log" / "model_config.json").write_text(json.dumps({"f_config": block, "c_config": block}))
    model = HeroForPretraining.from_reference(path)
    assert model.config.num_attention_heads == 4
    assert model.config.vocab_size == tiny_config.vocab_size


def test_shape_mismatch_names_the_key(tmp_path, tiny_config):
    state = reference_checkpoint(tiny_config)
    state["v_encoder.fom_output.linear_2.weight"] = torch.zeros(7, 2 * tiny_config.hidden_size)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"fom_head\.linear_2\.weight.*\(7, 64\).*\(32, 64\)"):
        HeroForPretraining.from_reference(path, config=tiny_config)


def test_unpadded_vocabulary_and_single_type_row(tmp_path, tiny_config):
    state = reference_checkpoint(tiny_config)
    v = tiny_config.vocab_size
    word = state["v_encoder.f_encoder.embeddings.word_embeddings.weight"][:v].clone()
    state["v_encoder.f_encoder.embeddings.word_embeddings.weight"] = word
    state["v_encoder.f_encoder.lm_head.bias"] = state["v_encoder.f_encoder.lm_head.bias"][:v].clone()
    state["v_encoder.f_encoder.embeddings.token_type_embeddings.weight"] = torch.randn(1, tiny_config.hidden_size)
    del state["v_encoder.f_encoder.lm_head.decoder.weight"]
    path = tmp_path / "unpadded.pt"
    torch.save(state, path)
    model = HeroForPretraining.from_reference(path, config=tiny_config)
    notes = " ".join(model.load_report.notes)
    assert "padded vocabulary" in notes and "duplicated the single token-type row" in notes
    table = model.hero.word_embeddings.weight
    assert torch.equal(table[:v], word.float()) and not table[v:].any()
    types = model.hero.f_encoder.embeddings.token_type_embeddings.weight
    assert torch.equal(types[0], types[1])


def test_missing_task_heads_are_reported_not_fatal(tmp_path, tiny_config):
    state = reference_checkpoint(tiny_config)
    for key in [k for k in state if k.startswith("video_")]:
        del state[key]
    path = tmp_path / "no_vsm.pt"
    torch.save(state, path)
    model = HeroForPretraining.from_reference(path, config=tiny_config)
    assert set(model.load_report.missing) == {"vsm_head.query_linear.weight", "vsm_head.query_linear.bias",
                                              "vsm_head.st_conv.weight", "vsm_head.ed_conv.weight"}
    with pytest.raises(CheckpointError, match="missing keys"):
        HeroForPretraining.from_reference(path, config=tiny_config, strict=True)


def test_backbone_alone_loads_from_full_checkpoint(tmp_path, tiny_config):
    path = tmp_path / "full.pt"
    torch.save(reference_checkpoint(tiny_config), path)
    hero = Hero.from_reference(path, config=tiny_config)
    assert hero.load_report.missing == []
    assert any("lm_head.dense" in k for k in hero.load_report.ignored)


def test_unreadable_checkpoint_is_named(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        HeroForPretraining.from_reference(path, num_attention_heads=4)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        HeroForPretraining.from_reference(tmp_path / "absent.pt")


def test_our_format_architecture_check_and_partial_load(tmp_path, tiny_config):
    backbone = Hero(tiny_config)
    saved = backbone.save_pretrained(tmp_path / "backbone")
    with pytest.raises(CheckpointError, match="holds a Hero, not a HeroForPretraining"):
        HeroForPretraining.from_pretrained(saved)
    model = HeroForPretraining.from_pretrained(saved, strict=False)
    assert model.load_report.missing and all(not k.startswith("hero.") for k in model.load_report.missing)
    assert torch.equal(model.hero.frame_transform.linear.weight, backbone.frame_transform.linear.weight)


def test_our_format_rejects_bad_config(tmp_path, tiny_config):
    saved = Hero(tiny_config).save_pretrained(tmp_path / "m")
    meta = json.loads((saved / "config.json").read_text())
    meta["config"]["hiden_size"] = 3
    (saved / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="hiden_size"):
        Hero.from_pretrained(saved)
    with pytest.raises(CheckpointError, match="not a HERO checkpoint"):
        Hero.from_pretrained(tmp_path)


def test_save_is_atomic(tmp_path, tiny_config, monkeypatch):
    import safetensors.torch

    first = Hero(tiny_config)
    target = first.save_pretrained(tmp_path / "ckpt")
    before = (target / "model.safetensors").read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", fail)
    with pytest.raises(OSError, match="disk full"):
        Hero(tiny_config).save_pretrained(tmp_path / "ckpt")
    assert (target / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


# ---------------------------------------------------------------------------------------------
# RoBERTa initialisation
# ---------------------------------------------------------------------------------------------


def test_roberta_layer_selection():
    table = roberta_key_map(12, 6, "hero.", None)
    kept = [src for src, dst in table if dst and ".encoder.layer." in dst]
    assert kept == [f"roberta.encoder.layer.{i}." for i in (1, 3, 5, 7, 9, 11)]


@pytest.fixture
def tiny_roberta(tmp_path, tiny_config):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.RobertaConfig(
        vocab_size=tiny_config.vocab_size, hidden_size=tiny_config.hidden_size, num_hidden_layers=4,
        num_attention_heads=tiny_config.num_attention_heads, intermediate_size=tiny_config.intermediate_size,
        max_position_embeddings=tiny_config.max_position_embeddings, type_vocab_size=1)
    torch.manual_seed(0)
    model = transformers.RobertaForMaskedLM(cfg)
    model.save_pretrained(tmp_path / "roberta")
    return tmp_path / "roberta", {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("load_lm_head", [False, True])
def test_init_from_roberta(tiny_roberta, tiny_config, load_lm_head):
    path, src = tiny_roberta
    model = HeroForPretraining(tiny_config)
    before = model.mlm_head.dense.weight.clone()
    report = init_from_roberta(model, path, load_lm_head=load_lm_head)
    enc = model.hero.f_encoder
    for dst, s in ((0, 1), (1, 3)):  # 4 RoBERTa layers -> 2 HERO layers: keep 1 and 3
        assert torch.equal(enc.encoder.layer[dst].attention.self.query.weight,
                           src[f"roberta.encoder.layer.{s}.attention.self.query.weight"])
        assert torch.equal(enc.encoder.layer[dst].output.LayerNorm.bias,
                           src[f"roberta.encoder.layer.{s}.output.LayerNorm.bias"])
    word = enc.embeddings.word_embeddings.weight
    v = tiny_config.vocab_size
    assert torch.equal(word[:v], src["roberta.embeddings.word_embeddings.weight"]) and not word[v:].any()
    types = enc.embeddings.token_type_embeddings.weight
    row = src["roberta.embeddings.token_type_embeddings.weight"][0]
    assert torch.equal(types[0], row) and torch.equal(types[1], row)
    ignored = " ".join(report.ignored)
    assert "roberta.encoder.layer.0." in ignored and "roberta.encoder.layer.2." in ignored
    if load_lm_head:
        assert torch.equal(model.mlm_head.dense.weight, src["lm_head.dense.weight"])
        assert torch.equal(model.mlm_head.LayerNorm.weight, src["lm_head.layer_norm.weight"])
    else:  # the reference never loads RoBERTa's MLM head
        assert torch.equal(model.mlm_head.dense.weight, before)
        assert "lm_head.dense.weight" in ignored
    # the temporal transformer stays random, the MLM decoder is the (tied) word table
    assert any(k.startswith("hero.c_encoder.") for k in report.missing)


def test_init_from_roberta_width_mismatch(tiny_roberta):
    path, _ = tiny_roberta
    with pytest.raises(CheckpointError, match="hidden_size"):
        init_from_roberta(HeroForPretraining(HeroConfig.from_name("hero-tiny", hidden_size=64)), path)


def test_init_from_missing_roberta_offline(tmp_path):
    with pytest.raises(CheckpointError, match="not a local directory"):
        init_from_roberta(HeroForPretraining(HeroConfig.from_name("hero-tiny")), "no-such-org/no-such-model")


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def test_cli_convert_and_info(tmp_path, tiny_config, capsys):
    path = tmp_path / "ref.pt"
    torch.save(reference_checkpoint(tiny_config), path)
    rc = cli_main(["convert", str(path), str(tmp_path / "out"), "--num-heads", "4",
                   "--vocab-size", str(tiny_config.vocab_size)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "0 missing" in out and "ignored: vocab_padded" in out
    assert cli_main(["info", str(tmp_path / "out")]) == 0
    assert '"architecture": "HeroForPretraining"' in capsys.readouterr().out
    assert cli_main(["convert", str(tmp_path / "absent.pt"), str(tmp_path / "x")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err


def test_cli_init_roberta(tiny_roberta, tmp_path, capsys):
    path, _ = tiny_roberta
    assert cli_main(["init-roberta", str(path), str(tmp_path / "init"), "--preset", "hero-tiny"]) == 0
    model = HeroForPretraining.from_pretrained(tmp_path / "init")
    assert model.config.hidden_size == 32
