"""Training runs meet bad settings and non-terminal logs (issue 14, defects 8, 10, 15, 20, 22).

The CLI-shaped cases live in ``tests/reliability/cases_train.py``; these are the pieces below them.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass

import pytest

from hero.errors import HeroError, SettingError, check_settings
from hero.train.config import OptimConfig, TrainConfig, from_dict, load_config
from hero.train.logging import ProgressLines, metrics_table, progress_interval
from hero.train.pretrain import PretrainConfig


@dataclass
class _Knobs:
    n: int = 1
    p: float = 0.5
    every: int = 0
    opt: int | None = None

    def __post_init__(self) -> None:
        check_settings(self, "knobs", n=">=1", p="[0,1]", every=">=0 (0: never)", opt=">0")


def test_check_settings_names_key_and_range():
    with pytest.raises(SettingError, match=r"^knobs\.n must be >= 1, got 0$"):
        _Knobs(n=0)
    with pytest.raises(SettingError, match=r"knobs\.p must be in \[0, 1\], got nan"):
        _Knobs(p=float("nan"))
    with pytest.raises(SettingError, match=r"knobs\.every must be >= 0 \(0: never\), got -1"):
        _Knobs(every=-1)
    _Knobs(opt=None)
    with pytest.raises(HeroError, match=r"cfg\.yaml\.p must be in \[0, 1\], got 1\.5"):
        from_dict(_Knobs, {"p": 1.5}, where="cfg.yaml")


@pytest.mark.parametrize("key, value, message", [
    ("log_every", 0, r"log_every must be >= 1, got 0"),
    ("eval_every", -1, r"eval_every must be >= 0 \(0: only at the end\), got -1"),
    ("progress_every", -0.5, r"progress_every must be >= 0"),
    ("threads", -1, r"threads must be >= 0"),
    ("device", "gpu", r"device must be auto, cpu or cuda"),
])
def test_train_settings_are_range_checked(tmp_path, key, value, message):
    path = tmp_path / "run.yaml"
    path.write_text(f"train: {{{key}: {value}}}\n")
    with pytest.raises(HeroError, match=rf"run\.yaml\.train\.{message}"):
        load_config(PretrainConfig, path)


@pytest.mark.parametrize("override, message", [
    ("optim.lr=-1", r"optim\.lr must be > 0, got -1"),
    ("optim.eps=0", r"optim\.eps must be > 0"),
    ("optim.weight_decay=-0.1", r"optim\.weight_decay must be >= 0"),
    ("optim.grad_norm=-1", r"optim\.grad_norm must be >= 0 \(0: no clipping\)"),
    ("optim.lr_mul=0", r"optim\.lr_mul must be > 0"),
    ("fom.reorder_prob=2", r"fom\.reorder_prob must be in \[0, 1\]"),
    ("mfm_nce.mask_prob=-0.1", r"mfm_nce\.mask_prob must be in \[0, 1\]"),
    ("vsm.drop_svmr_prob=1.1", r"vsm\.drop_svmr_prob must be in \[0, 1\]"),
    ("vsm.queries_per_video=0", r"vsm\.queries_per_video must be >= 1"),
    ("data.max_clip_len=0", r"data\.max_clip_len must be >= 1"),
])
def test_optim_and_objective_settings_are_range_checked(override, message):
    with pytest.raises(HeroError, match=rf"^override '{re.escape(override)}': {message}"):
        load_config(PretrainConfig, None, [override])


def test_override_errors_name_the_override_not_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train: {num_train_steps: 5}\n")
    with pytest.raises(HeroError, match=r"^override 'train\.bad_key=1': unknown key 'train\.bad_key'; known keys of "
                                        r"train: .*log_every"):
        load_config(PretrainConfig, path, ["train.bad_key=1"])
    with pytest.raises(HeroError, match=r"^override 'mix\.mlm=lots': mix\.mlm: expected a number"):
        load_config(PretrainConfig, path, ["mix.mlm=lots"])
    # a bad value in the file, fixed by an override, is fine; the file's own errors name the file
    path.write_text("train: {log_every: 0}\n")
    assert load_config(PretrainConfig, path, ["train.log_every=3"]).train.log_every == 3
    with pytest.raises(HeroError, match=r"run\.yaml\.train\.log_every must be >= 1"):
        load_config(PretrainConfig, path, ["optim.lr=1e-4"])


def test_a_train_config_built_in_code_names_its_section():
    with pytest.raises(HeroError, match=r"^train\.log_every must be >= 1, got 0$"):
        TrainConfig(log_every=0)


def test_progress_lines_every_interval_with_rates_and_eta():
    now = [0.0]
    lines = ProgressLines("run", total=100, start=20, every=10.0, clock=lambda: now[0])
    lines.record({"step": 21, "objective": "mlm", "loss": 2.5})
    now[0] = 4.0
    assert lines.advance(1, items=8) is None  # not 10 s yet
    now[0] = 10.0
    text = lines.advance(4, items=32)
    assert text == "run step 25/100 (25%): loss 2.5000 (mlm, step 21), 4.0 items/s, 0.50 steps/s, ETA 2m30s"
    now[0] = 15.0
    assert lines.advance(5, items=40) is None


def test_progress_interval_env_overrides_and_is_checked(monkeypatch):
    monkeypatch.delenv("HERO_PROGRESS_EVERY", raising=False)
    assert progress_interval(30) == 30.0
    monkeypatch.setenv("HERO_PROGRESS_EVERY", "5")
    assert progress_interval(30) == 5.0
    for bad in ("often", "-1", "nan"):
        monkeypatch.setenv("HERO_PROGRESS_EVERY", bad)
        with pytest.raises(HeroError, match="HERO_PROGRESS_EVERY must be a number of seconds >= 0"):
            progress_interval(30)


def test_metrics_table_is_compact():
    metrics = {f"{g}/{iou}-r{k}": float(k) for g in ("VCMR", "SVMR") for iou in ("0.5", "0.7") for k in (1, 5, 10, 100)}
    metrics.update({f"VR/r{k}": 1.0 for k in (1, 5, 10, 100)})
    metrics.update({f"VCMR_by_type/{t}-0.7-r{k}": 0.0 for t in "vtc" for k in (1, 5, 10, 100)})
    metrics.update({f"VCMR_nms_0.5/0.7-r{k}": 0.0 for k in (1, 5, 10, 100)})
    lines = metrics_table(metrics).splitlines()
    assert [ln.split(":")[0].strip() for ln in lines[:3]] == ["VCMR", "SVMR", "VR"]
    assert lines[0].startswith("  VCMR: 0.5-r1 1  0.5-r5 5")
    assert lines[-1] == "  (+16 more metrics in log.jsonl)" and len(lines) == 4
    assert metrics_table({"Bleu_4": 0.12345, "CIDEr": 0.5}) == "  Bleu_4 0.1235  CIDEr 0.5"


def test_config_of_a_run_that_never_saved_a_checkpoint_is_replaced(tmp_path):
    from hero.train.pretrain import write_or_check_config

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: {preset: hero-huge}\n")
    said = []
    write_or_check_config(run, PretrainConfig(), log=said.append)
    assert "replacing the config" in said[0] and "hero-base" in (run / "config.yaml").read_text()
    # a run with a checkpoint keeps its config
    (run / "checkpoints" / "step-00000001").mkdir(parents=True)
    (run / "checkpoints" / "step-00000001" / "trainer_state.json").write_text("{}")
    (run / "checkpoints" / "latest").write_text("step-00000001\n")
    with pytest.raises(HeroError, match="holds a run with a different config"):
        write_or_check_config(run, PretrainConfig(optim=OptimConfig(lr=1.0)))


def test_java_chatter_is_filtered_and_other_stderr_kept(capfd):
    from hero.eval.captioning import _java_chatter_filtered

    with _java_chatter_filtered():
        os.write(2, b"PTBTokenizer tokenized 93 tokens at 221.74 tokens per second.\n")
        os.write(2, b"Dec 02, 2026 1:55:23 PM edu.stanford.nlp.process.PTBLexer next\n")
        os.write(2, b"WARNING: Untokenizable: \x07 (U+7, decimal: 7)\n")
        os.write(2, b"Error: could not find the jar\n")
    err = capfd.readouterr().err
    assert "PTBTokenizer" not in err and "Untokenizable" not in err and "PTBLexer" not in err
    assert "Error: could not find the jar" in err


@pytest.mark.skipif(shutil.which("java") is None, reason="needs Java (the PTB tokenizer)")
def test_ptb_tokenizer_says_nothing(capfd):
    from hero.eval.captioning import ptb_tokenize

    assert ptb_tokenize({1: ["A man walks\x07 in."]}) == {1: ["a man walks in"]}
    assert capfd.readouterr().err == ""


def test_quickstart_stages_show_progress(tmp_path, monkeypatch, capsys):
    """The quickstart's runs have no bar (their console goes to console.log) but show progress lines."""
    from hero.data.synth import SynthConfig, build
    from hero.experiments import Budget, pretrain

    corpus = build(SynthConfig(videos=8, val_videos=2, test_videos=1, min_frames=8, max_frames=10, vocab_size=300),
                   tmp_path / "data", log=lambda *_: None)
    monkeypatch.setenv("HERO_PROGRESS_EVERY", "0.0001")
    pretrain(tmp_path / "pretrain", corpus, Budget(preset="hero-tiny", pretrain_steps=2, pretrain_batch=2),
             mix={"mlm": 1.0})
    err = capsys.readouterr().err
    assert "pretrain step 2/2 (100%): loss" in err and "ETA" in err and "\r" not in err
