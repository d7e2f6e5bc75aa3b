"""Issue 14 follow-ups: the remaining readers of user files, sub-command error prefixes, a closed
pipe, range-checked numeric options, temporaries of killed corpus builds, damaged extractor weights
and range-checked task configs."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest

from hero.errors import HeroError

# Malformed contents every JSON reader must turn into one line naming the file.
BAD_JSON = {
    "null": b"null\n",
    "number": b"42\n",
    "list": b"[1, 2]\n",
    "not-utf8": b'{"format": "\xff\xfe\xfa"}\n',
    "truncated": b'{"format": "hero", "config": {"a": ',
}


def _one_line_naming(err: BaseException, path: Path) -> str:
    msg = str(err)
    assert isinstance(err, HeroError), f"{type(err).__name__}: {msg}"
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    return msg


@pytest.mark.parametrize("kind", sorted(BAD_JSON))
def test_model_config_json_malformed(tmp_path, kind):
    from hero.model.checkpoint import read_config

    path = tmp_path / "config.json"
    path.write_bytes(BAD_JSON[kind])
    with pytest.raises(HeroError) as info:
        read_config(tmp_path)
    _one_line_naming(info.value, path)


@pytest.mark.parametrize("kind", sorted(BAD_JSON))
def test_hf_config_json_malformed(tmp_path, kind):
    from hero.model.checkpoint import read_hf_checkpoint

    path = tmp_path / "config.json"
    path.write_bytes(BAD_JSON[kind])
    with pytest.raises(HeroError) as info:
        read_hf_checkpoint(tmp_path)
    _one_line_naming(info.value, path)


def test_reference_model_config_json_malformed(tmp_path):
    from hero.model.checkpoint import reference_config_for

    (tmp_path / "log").mkdir()
    (tmp_path / "ckpt").mkdir()
    path = tmp_path / "log" / "model_config.json"
    path.write_bytes(b"[1, 2]\n")
    with pytest.raises(HeroError) as info:
        # the config JSON is read before the (here empty) state is looked at
        reference_config_for(tmp_path / "ckpt" / "model_step_1.pt", {}, None, None)
    _one_line_naming(info.value, path)


def _fake_index(directory: Path, meta: bytes | None = None, vids: bytes | None = None) -> None:
    from hero.search.index import FORMAT, FORMAT_VERSION

    directory.mkdir()
    good = {"format": FORMAT, "format_version": FORMAT_VERSION, "num_frames": 3, "num_videos": 1, "dim": 4}
    (directory / "meta.json").write_bytes(meta if meta is not None else json.dumps(good).encode())
    np.save(directory / "frames.npy", np.zeros((3, 4), np.float16))
    np.save(directory / "offsets.npy", np.array([0, 3], np.int64))
    (directory / "vids.json").write_bytes(vids if vids is not None else b'["v1"]\n')


@pytest.mark.parametrize("kind", sorted(BAD_JSON))
def test_index_meta_json_malformed(tmp_path, kind):
    from hero.search.index import SearchIndex

    _fake_index(tmp_path / "idx", meta=BAD_JSON[kind])
    with pytest.raises(HeroError) as info:
        SearchIndex(tmp_path / "idx")
    _one_line_naming(info.value, tmp_path / "idx" / "meta.json")


@pytest.mark.parametrize("content", [b"null\n", b'{"a": 1}\n', b'["v1", 3]\n', b"\xff\xfe[]", b'["v1"'])
def test_index_vids_json_malformed(tmp_path, content):
    from hero.search.index import SearchIndex

    _fake_index(tmp_path / "idx", vids=content)
    with pytest.raises(HeroError) as info:
        SearchIndex(tmp_path / "idx")
    _one_line_naming(info.value, tmp_path / "idx" / "vids.json")


@pytest.mark.parametrize("kind", sorted(BAD_JSON))
def test_trainer_state_json_malformed(tmp_path, kind):
    from hero.train.checkpoint import load_trainer_state

    path = tmp_path / "trainer_state.json"
    path.write_bytes(BAD_JSON[kind])
    with pytest.raises(HeroError) as info:
        load_trainer_state(tmp_path)
    _one_line_naming(info.value, path)


@pytest.mark.parametrize("content, words", [
    (b"train:\n  lr: \xff\xfe\n", "not UTF-8"),
    (b"task: vcmr\ntrain: {a: 1\nmodel: x\n", r"run\.yaml:3: invalid YAML .*line 2"),
    (b"task: vcmr\n  bad: indent\n", r"run\.yaml:2: invalid YAML"),
    (b"- a\n- b\n", "mapping"),
    (b"just a string\n", "mapping"),
])
def test_yaml_config_malformed(tmp_path, content, words):
    import re

    from hero.train.config import read_yaml

    path = tmp_path / "run.yaml"
    path.write_bytes(content)
    with pytest.raises(HeroError) as info:
        read_yaml(path)
    msg = _one_line_naming(info.value, path)
    assert re.search(words, msg), msg


def test_pretraining_video_list_not_utf8(tmp_path):
    from hero.train.pretrain import pretraining_videos

    class Corpus:
        def video_ids(self):
            return ["a", "b"]

    path = tmp_path / "videos.txt"
    path.write_bytes(b"a\n\xff\xfe\n")
    with pytest.raises(HeroError) as info:
        pretraining_videos(Corpus(), str(path))
    _one_line_naming(info.value, path)


@pytest.mark.parametrize("kind", ["not-utf8", "truncated", "null", "list"])
def test_classification_predictions_malformed(tmp_path, kind):
    from hero.eval.classification import read_predictions

    path = tmp_path / "pred.json"
    path.write_bytes(BAD_JSON[kind])
    with pytest.raises(HeroError) as info:
        read_predictions(path)
    msg = _one_line_naming(info.value, path)
    if kind == "truncated":
        assert "ends before" in msg, msg


@pytest.mark.parametrize("kind", sorted(BAD_JSON))
def test_tvr_submission_malformed(tmp_path, kind):
    from hero.eval.tvr import load_submission

    path = tmp_path / "sub.json"
    path.write_bytes(BAD_JSON[kind])
    with pytest.raises(HeroError) as info:
        load_submission(path)
    _one_line_naming(info.value, path)


def test_tvr_submission_truncated_gzip(tmp_path):
    from hero.eval.tvr import load_submission

    path = tmp_path / "sub.json.gz"
    data = gzip.compress(json.dumps({"video2idx": {"v": 1}, "VR": []}).encode() * 50)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(HeroError) as info:
        load_submission(path)
    _one_line_naming(info.value, path)


def test_reference_hps_json_malformed(tmp_path):
    from hero.tasks.reference import read_hps

    (tmp_path / "log").mkdir()
    (tmp_path / "ckpt").mkdir()
    path = tmp_path / "log" / "hps.json"
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(HeroError) as info:
        read_hps(tmp_path / "ckpt" / "model.pt")
    _one_line_naming(info.value, path)


def test_video2idx_json_not_utf8(tmp_path):
    from hero.tasks.retrieval import read_video2idx

    path = tmp_path / "annotations" / "tvr" / "video2idx.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"val": {"\xff": 1}}')

    class Corpus:
        root = tmp_path

    with pytest.raises(HeroError) as info:
        read_video2idx(Corpus(), "tvr", "val")
    _one_line_naming(info.value, path)


# -- sub-command error prefixes and a closed stdout (hero/cli.py) ----------------------------------

DIDEMO = Path(__file__).parent / "fixtures" / "official_data_eval" / "tvr_metric" / "didemo_style"


@pytest.mark.parametrize("argv, prefix", [
    (["data", "verify", "/nonexistent/corpus"], "hero data verify: error: "),
    (["data", "info", "/nonexistent/corpus"], "hero data info: error: "),
    (["eval", "retrieval", "--submission", "/nonexistent/sub.json", "--gt", str(DIDEMO / "gt.jsonl")],
     "hero eval retrieval: error: "),
    (["info", "/nonexistent/model"], "hero info: error: "),
])
def test_errors_name_the_sub_command(capsys, argv, prefix):
    from hero.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(prefix), err


def _run_into_closed_pipe(*argv: str):
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte, as with `| head -0`
    try:
        return subprocess.run([sys.executable, "-m", "hero", *argv], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    finally:
        os.close(write_end)


def test_closed_stdout_pipe_exits_quietly():
    proc = _run_into_closed_pipe("eval", "retrieval", "--submission", str(DIDEMO / "submission.json"),
                                 "--gt", str(DIDEMO / "gt.jsonl"), "--lenient")
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.returncode == 141, (proc.returncode, proc.stderr)  # 128 + SIGPIPE, as a shell reports


# -- numeric options are range-checked by argparse (hero/argtypes.py) ------------------------------

RANGE_CASES = [
    (["predict", "--model", "m", "--corpus", "c", "--task", "vcmr", "--out", "o.json", "--batch-size", "0"],
     "--batch-size", "integer >= 1"),
    (["predict", "--model", "m", "--corpus", "c", "--task", "vcmr", "--out", "o.json", "--max-clip-len", "-3"],
     "--max-clip-len", "integer >= 1"),
    (["extract", "--videos", "v", "--out", "o", "--interval", "0"], "--interval", "number > 0"),
    (["extract", "--videos", "v", "--out", "o", "--interval", "nan"], "--interval", "finite"),
    (["extract", "--videos", "v", "--out", "o", "--batch-size", "-1"], "--batch-size", "integer >= 1"),
    (["data", "build", "--features", "f", "--out", "o", "--max-frames", "0"], "--max-frames", "integer >= 1"),
    (["data", "build", "--features", "f", "--out", "o", "--interval", "-1.5"], "--interval", "number > 0"),
    (["data", "from-reference", "--video-db", "v", "--out", "o", "--max-frames", "-1"], "--max-frames", ">= 1"),
    (["data", "prepare", "tvr", "--raw", "r", "--features", "f", "--out", "o", "--max-frames", "0"],
     "--max-frames", ">= 1"),
    (["quickstart", "--out", "o", "--pretrain-steps", "-5"], "--pretrain-steps", "integer >= 1"),
    (["quickstart", "--out", "o", "--seed", "-1"], "--seed", "integer >= 0"),
    (["ablate", "--out", "o", "--finetune-steps", "0"], "--finetune-steps", "integer >= 1"),
    (["plot", "--run", "r", "--out", "o.png", "--smooth", "-2"], "--smooth", "integer >= 0"),
    (["figure", "attention", "--model", "m", "--corpus", "c", "--out", "o.png", "--group", "-1"], "--group", ">= 0"),
    (["convert", "in.pt", "out", "--num-heads", "0"], "--num-heads", "integer >= 1"),
    (["search", "--index", "i", "alice", "--top", "0"], "--top", "integer >= 1"),
]


@pytest.mark.parametrize("argv, option, words", RANGE_CASES, ids=[" ".join(c[0][:2]) + c[1] for c in RANGE_CASES])
def test_numeric_options_are_range_checked(capsys, argv, option, words):
    from hero.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2
    line = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(line) == 1 and f"argument {option}: " in line[0] and words in line[0], err


# -- task settings are range-checked, named as task_config.<key> ----------------------------------

TASK_SETTINGS = [
    ("hero.tasks.retrieval", "RetrievalConfig", "vsm.margin", -0.1),
    ("hero.tasks.retrieval", "RetrievalConfig", "vsm.hard_pool_size", 0),
    ("hero.tasks.retrieval", "RetrievalConfig", "vsm.hard_neg_weight", float("nan")),
    ("hero.tasks.retrieval", "RetrievalConfig", "vsm.lw_neg_ctx", -1.0),
    ("hero.tasks.retrieval", "RetrievalConfig", "vsm.lw_st_ed", float("inf")),
    ("hero.tasks.retrieval", "RetrievalConfig", "q2c_alpha", 0.0),
    ("hero.tasks.retrieval", "RetrievalConfig", "nms_thd", 1.5),
    ("hero.tasks.retrieval", "RetrievalConfig", "min_pred_l", -1),
    ("hero.tasks.retrieval", "RetrievalConfig", "vsm.hard_negative_start_step", -5),
    ("hero.tasks.retrieval", "RetrievalConfig", "vsm.drop_svmr_prob", float("nan")),
    ("hero.tasks.captioning", "TvcConfig", "hidden_dropout_prob", 1.0),
    ("hero.tasks.captioning", "TvcConfig", "attention_probs_dropout_prob", -0.1),
    ("hero.tasks.captioning", "TvcConfig", "layer_norm_eps", 0.0),
    ("hero.tasks.captioning", "TvcConfig", "lr_mul", -10.0),
    ("hero.tasks.captioning", "TvcConfig", "label_smoothing", float("nan")),
    ("hero.tasks.video_qa", "QaConfig", "lw_st_ed", float("nan")),
]


@pytest.mark.parametrize("module, name, key, value", TASK_SETTINGS, ids=[f"{c[1]}.{c[2]}" for c in TASK_SETTINGS])
def test_task_settings_are_range_checked(module, name, key, value):
    import importlib

    from hero.config import from_dict, merge_settings

    cls = getattr(importlib.import_module(module), name)
    with pytest.raises(HeroError, match=rf"task_config\.{re.escape(key)} must be "):
        if "." in key:  # a nested setting (the retrieval settings' vsm block), as loaded from YAML
            from_dict(cls, merge_settings({}, {key: value}), where="task_config")
        else:
            cls(**{key: value})


def test_task_settings_defaults_and_nms_off_pass():
    from hero.tasks.captioning import TvcConfig
    from hero.tasks.retrieval import RetrievalConfig
    from hero.tasks.video_qa import QaConfig

    RetrievalConfig(nms_thd=-1)  # -1 disables NMS
    from hero.tasks.retrieval import retrieval_vsm

    RetrievalConfig(vsm=retrieval_vsm(hard_negative_start_step=None, margin=0.0))
    TvcConfig(hidden_dropout_prob=0.0)
    QaConfig(lw_st_ed=0.0)


# -- damaged feature-extractor weights are named errors (hero/extract/backbones.py) ---------------


@pytest.mark.parametrize("damage", ["truncated", "garbled-header"])
def test_extractor_safetensors_damaged(tmp_path, damage):
    import torch
    from safetensors.torch import save_file

    from hero.extract.backbones import read_state_dict

    path = tmp_path / "resnet.safetensors"
    save_file({"conv1.weight": torch.zeros(8, 3, 7, 7)}, str(path))
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[8:24] = b"#!garbage-header"
    path.write_bytes(bytes(data))
    with pytest.raises(HeroError) as info:
        read_state_dict(path)
    _one_line_naming(info.value, path)


def test_a_damaged_latest_pointer_is_named(tmp_path):
    from hero.model.checkpoint import latest_checkpoint

    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    (ckpts / "latest").write_bytes(b"\xff\xfe\x00step")
    with pytest.raises(HeroError, match=r"latest:1: not UTF-8"):
        latest_checkpoint(tmp_path)
    for bad in ("", "../../etc", "/abs/step-1"):
        (ckpts / "latest").write_text(bad)
        with pytest.raises(HeroError, match="does not name a checkpoint folder"):
            latest_checkpoint(tmp_path)
