"""Parity with the reference implementation (``official_hero_tiny`` fixture format).

Runs on the public fixture and on every directory named in ``HERO_PARITY_FIXTURES``
(':'-separated, same format). Nothing here depends on the public fixture's shapes or values.
"""

from __future__ import annotations

import copy

import pytest
import torch
from reference_parity import build_model, compare, load_fixture, our_outputs, parity_fixture_dirs

MINIMUM_BAR = [
    ("repr", "temporal"), ("query", "q"), ("vsm", "scores"), ("vsm", "st_logits"), ("vsm", "ed_logits"),
    ("vsm", "loss_st_ed"), ("vsm", "loss_neg_ctx"), ("vsm", "loss_neg_q"),
    ("vsm_pretrain", "loss_st_ed"), ("vsm_pretrain", "loss_neg_ctx"), ("vsm_pretrain", "loss_neg_q"),
    ("mlm", "logits"), ("mlm", "loss"), ("mfm", "pred"), ("mfm", "nce_loss"), ("mfm", "mffr_loss"),
    ("fom", "logits"), ("fom", "loss"),
]


@pytest.fixture(scope="module", params=parity_fixture_dirs(), ids=lambda p: p.name)
def case(request, tmp_path_factory):
    fx = load_fixture(request.param)
    model = build_model(fx, tmp_path_factory.mktemp("ckpt"))
    return fx, model, our_outputs(fx, model)


def test_reference_outputs_reproduced(case):
    fx, _, ours = case
    problems = compare(fx, ours)
    assert not problems, "parity failures:\n" + "\n".join(problems)


def test_checkpoint_loads_completely(case):
    _, model, _ = case
    report = model.load_report
    assert report.missing == []
    ignored = {entry.split(" ")[0] for entry in report.ignored}
    assert "vocab_padded" in ignored
    assert all(k.endswith(("pad", "pooler.dense.weight", "pooler.dense.bias", "lm_head.decoder.weight", "vocab_padded"))
               for k in ignored), ignored


def test_minimum_bar_fields_are_compared(case):
    fx, _, ours = case
    for section, key in MINIMUM_BAR:
        assert key in fx["outputs"][section], f"fixture lacks {section}.{key}"
        assert key in ours[section], f"we do not produce {section}.{key}"


def test_perturbed_state_dict_fails(case, tmp_path):
    fx, _, _ = case
    gen = torch.Generator().manual_seed(0)
    bad = copy.copy(fx)
    bad["state_dict"] = dict(fx["state_dict"])
    for key in ("v_encoder.c_encoder.encoder.layer.0.output.dense.weight", "video_st_predictor.weight",
                "v_encoder.f_encoder.lm_head.dense.weight", "v_encoder.feat_regress.net.3.weight",
                "v_encoder.fom_output.linear_2.weight"):
        t = bad["state_dict"][key]
        bad["state_dict"][key] = t + 1e-2 * torch.randn(t.shape, generator=gen)
    problems = compare(fx, our_outputs(bad, build_model(bad, tmp_path)))
    failed = {p.split(":")[0] for p in problems}
    for field in ("repr.temporal", "vsm.st_logits", "mlm.logits", "mfm.pred", "fom.logits"):
        assert field in failed, f"{field} did not notice the perturbed weights"


@pytest.mark.parametrize("section,key", [("repr", "temporal"), ("mlm", "loss"), ("vsm", "loss_neg_q"),
                                         ("vcmr_infer", "video_rank"), ("mfm", "nce_loss")])
def test_perturbed_fixture_value_fails(case, section, key):
    fx, _, ours = case
    bad = copy.copy(fx)
    bad["outputs"] = {s: dict(b) for s, b in fx["outputs"].items()}
    ref = bad["outputs"][section][key].clone()
    flat = ref.view(-1)
    if ref.dtype == torch.long:
        flat[0] = flat[0] + 1
    else:
        flat[0] = flat[0] + 1e-3 * (1 + flat[0].abs())
    bad["outputs"][section][key] = ref
    problems = compare(bad, ours)
    assert any(p.startswith(f"{section}.{key}:") for p in problems)


def test_extra_fixture_dirs_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HERO_PARITY_FIXTURES", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    dirs = parity_fixture_dirs()
    assert dirs[-2:] == [tmp_path / "a", tmp_path / "b"]
    with pytest.raises(FileNotFoundError, match="fixture.pt"):
        load_fixture(dirs[-1])
