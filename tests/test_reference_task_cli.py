"""Reference QA, VIOLIN and TVC task checkpoints through the command line.

A reference-format task checkpoint is written from a config (the ``v_encoder.*`` layout of
`reference_layout` plus the task's heads, notes §1.7), in the reference run layout
``<run>/ckpt/model_step_N.pt`` + ``<run>/log/model_config.json``. Then ``hero convert`` must detect
its task and write a runnable task model, and ``hero predict`` must run it, converted or as the
``.pt`` itself, with the predictions of the model the checkpoint was written from.
"""

from __future__ import annotations

import json

import pytest
import torch
from reference_layout import reference_layout, reference_task_head_layout
from test_captioning_task import reference_tvc_layout

from hero.cli import main
from hero.data.corpus import Corpus
from hero.errors import HeroError
from hero.tasks import get_task
from hero.train.build import hero_config
from hero.train.config import ModelSpec

TASKS = {"video_qa": "tvqa", "violin": "violin", "tvc": "tvc"}


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    from hero.data.synth import SynthConfig, build

    path = tmp_path_factory.mktemp("synth") / "corpus"
    build(SynthConfig(videos=6, val_videos=2, test_videos=1, queries_per_video=1, qa_per_video=2,
                      statements_per_video=1, captions_per_video=1, min_frames=10, max_frames=14, vocab_size=300),
          path, log=lambda *_: None)
    return path


def to_reference_names(model) -> dict:
    """Our state dict under the reference's names (the model's prefix table inverted)."""
    out = {}
    for key, value in model.state_dict().items():
        for ref, ours in model.REFERENCE_KEY_MAP:
            if ours is not None and key.startswith(ours):
                out[ref + key[len(ours):]] = value.clone()
                break
    return out


def write_reference_run(run, task_name, corpus_dir, seed=0):
    """A random task model and its reference-format run directory; returns the model."""
    corpus = Corpus(corpus_dir)
    config = hero_config(ModelSpec(preset="hero-tiny"), corpus)
    task = get_task(task_name)
    cfg = task.config_class()
    if task_name == "tvc":
        cfg = task.config_class(num_layers=2, num_attention_heads=config.num_attention_heads,
                                intermediate_size=2 * config.hidden_size, max_position_embeddings=64, max_gen_step=5)
    torch.manual_seed(seed)
    model = task.model_class(config, cfg).eval()
    with torch.no_grad():  # no head at a constant a swapped key would not change
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    # the reference task models have no query encoder
    state = {k: v for k, v in to_reference_names(model).items() if not k.startswith("q_feat_attn.")}
    if task_name == "tvc":
        layout = dict(reference_tvc_layout(config, cfg))
    else:
        layout = {k: s for k, s in reference_layout(config) if k.startswith("v_encoder.")}
        layout.update(reference_task_head_layout(config, task_name))
    gen = torch.Generator().manual_seed(seed)
    for key, shape in layout.items():  # what the reference saves besides: unused heads, buffers
        if key not in state:
            state[key] = torch.randn(shape, generator=gen)
    for key in ("v_encoder.pad", "v_encoder.f_encoder.pad"):
        state[key].zero_()
    state["v_encoder.f_encoder.lm_head.decoder.weight"] = state["v_encoder.f_encoder.embeddings.word_embeddings.weight"]
    assert {k: tuple(v.shape) for k, v in state.items()} == layout
    state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}  # apex O2 saves fp16
    state["vocab_padded"] = True
    (run / "ckpt").mkdir(parents=True)
    (run / "log").mkdir()
    torch.save(state, run / "ckpt" / "model_step_1000.pt")
    (run / "log" / "model_config.json").write_text(json.dumps({
        "f_config": {"hidden_size": config.hidden_size, "num_attention_heads": config.num_attention_heads,
                     "vocab_size": config.vocab_size_padded},
        "c_config": {"hidden_size": config.hidden_size, "num_attention_heads": config.num_attention_heads}}))
    # the run's options: the settings the reference trained and evaluated with
    (run / "log" / "hps.json").write_text(json.dumps({"task": TASKS[task_name], "max_gen_step": 5}))
    # the model as it is after the fp16 round trip, to predict with directly
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    return model


def expected_predictions(model, task_name, corpus_dir, tmp_path):
    task = get_task(task_name)
    corpus = Corpus(corpus_dir)
    with torch.no_grad():
        preds = task.predict(model, corpus, TASKS[task_name], "val", model.task_config, 4, "cpu")
    path = tmp_path / f"direct_{task_name}{getattr(task, 'prediction_suffix', '.json')}"
    writer = getattr(task, "write_predictions", None)
    if writer is not None:
        writer(preds, path)
    else:
        path.write_text(json.dumps(preds))
    return path.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_reference_task_checkpoint_converts_and_predicts(task_name, corpus_dir, tmp_path, capsys):
    run = tmp_path / "run"
    model = write_reference_run(run, task_name, corpus_dir)
    ckpt = run / "ckpt" / "model_step_1000.pt"
    expected = expected_predictions(model, task_name, corpus_dir, tmp_path)
    suffix = ".jsonl" if task_name == "tvc" else ".json"

    assert main(["convert", str(ckpt), str(tmp_path / "converted")]) == 0
    out = capsys.readouterr().out
    assert f"task: {task_name} (its {task_name} head keys)" in out
    meta = json.loads((tmp_path / "converted" / "config.json").read_text())
    assert meta["architecture"] == type(model).__name__ and "task_config" in meta

    common = ["--corpus", str(corpus_dir), "--dataset", TASKS[task_name], "--split", "val", "--batch-size", "4",
              "--device", "cpu"]
    converted = tmp_path / f"converted_preds{suffix}"
    assert main(["predict", "--model", str(tmp_path / "converted"), "--out", str(converted), *common]) == 0
    direct = tmp_path / f"pt_preds{suffix}"
    alias = {"video_qa": "qa"}.get(task_name, task_name)
    assert main(["predict", "--model", str(ckpt), "--task", alias, "--out", str(direct), *common]) == 0
    assert converted.read_text() == expected
    assert direct.read_text() == expected


def test_a_checkpoint_without_the_task_head_is_refused(corpus_dir, tmp_path):
    from hero.tasks.load import load_reference_task_model

    run = tmp_path / "run"
    write_reference_run(run, "violin", corpus_dir)
    with pytest.raises(HeroError, match="not a video_qa checkpoint: no qa_pool"):
        load_reference_task_model(run / "ckpt" / "model_step_1000.pt", "qa")


def test_predict_task_must_match_a_model_directory(corpus_dir, tmp_path, capsys):
    run = tmp_path / "run"
    write_reference_run(run, "violin", corpus_dir)
    assert main(["convert", str(run / "ckpt" / "model_step_1000.pt"), str(tmp_path / "m")]) == 0
    capsys.readouterr()
    assert main(["predict", "--model", str(tmp_path / "m"), "--task", "tvc", "--corpus", str(corpus_dir),
                 "--dataset", "violin", "--out", str(tmp_path / "p.json"), "--device", "cpu"]) == 2
    assert "--task tvc: " in capsys.readouterr().err and not (tmp_path / "p.json").exists()


def test_convert_without_a_told_task_keeps_the_pretraining_model(tmp_path, tiny_config, capsys):
    from reference_layout import reference_checkpoint

    (tmp_path / "ckpt").mkdir()
    torch.save(reference_checkpoint(tiny_config), tmp_path / "ckpt" / "hero.pt")
    assert main(["convert", str(tmp_path / "ckpt" / "hero.pt"), str(tmp_path / "m"),
                 "--num-heads", str(tiny_config.num_attention_heads)]) == 0
    assert "task: pretrain (neither its keys nor a log/hps.json" in capsys.readouterr().out
    assert json.loads((tmp_path / "m" / "config.json").read_text())["architecture"] == "HeroForPretraining"
    # the same keys with a run's hps.json naming TVR: the retrieval model
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "hps.json").write_text(json.dumps({"task": "tvr", "max_vcmr_video": 7}))
    assert main(["convert", str(tmp_path / "ckpt" / "hero.pt"), str(tmp_path / "v"),
                 "--num-heads", str(tiny_config.num_attention_heads)]) == 0
    meta = json.loads((tmp_path / "v" / "config.json").read_text())
    assert meta["architecture"] == "HeroForVcmr" and meta["task_config"]["max_vcmr_video"] == 7
    assert meta["task_config"]["video_batch_size"] == 50 and meta["task_config"]["vsm"]["span_padding"] == "reference"
