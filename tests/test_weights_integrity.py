"""Weights integrity (issue 14, defects 3, 4 and 22): the hash in config.json, named errors for
damaged safetensors and .pt files, and predictions refused when a model's scores are NaN."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

from hero.errors import NonFiniteError
from hero.model.checkpoint import (
    CheckpointError,
    describe_weights,
    file_sha256,
    read_reference_checkpoint,
)
from hero.model.hero import Hero
from hero.tasks.video_qa import check_finite_logits


def _flip(path, offset_from_end=64):
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x40
    path.write_bytes(bytes(data))


def test_saved_model_records_the_hash_of_its_weights(tmp_path, tiny_config):
    saved = Hero(tiny_config).save_pretrained(tmp_path / "m")
    meta = json.loads((saved / "config.json").read_text())
    assert meta["weights_sha256"] == file_sha256(saved / "model.safetensors")
    assert "matches config.json" in describe_weights(saved)


def test_one_flipped_bit_is_caught_at_load(tmp_path, tiny_config):
    saved = Hero(tiny_config).save_pretrained(tmp_path / "m")
    _flip(saved / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: weights do not match the hash in config\.json"):
        Hero.from_pretrained(saved)
    with pytest.raises(CheckpointError, match="do not match the hash"):
        describe_weights(saved)


def test_a_model_without_hash_still_loads(tmp_path, tiny_config):
    model = Hero(tiny_config)
    saved = model.save_pretrained(tmp_path / "m")
    meta = json.loads((saved / "config.json").read_text())
    del meta["weights_sha256"]
    (saved / "config.json").write_text(json.dumps(meta))
    loaded = Hero.from_pretrained(saved)
    assert torch.equal(loaded.frame_transform.linear.weight, model.frame_transform.linear.weight)
    assert "no hash in config.json" in describe_weights(saved)


@pytest.mark.parametrize("damage, words", [
    (lambda b: b[: len(b) // 2], "truncated"),
    (lambda b: b[:4], "truncated or empty"),
    (lambda b: b[:8] + b"not json at all!" + b[24:], "corrupt header"),
])
def test_damaged_safetensors_is_a_named_error(tmp_path, tiny_config, damage, words):
    saved = Hero(tiny_config).save_pretrained(tmp_path / "m")
    meta = json.loads((saved / "config.json").read_text())
    del meta["weights_sha256"]  # an older model: the reader itself must name the problem
    (saved / "config.json").write_text(json.dumps(meta))
    weights = saved / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(CheckpointError, match=rf"model\.safetensors: not a readable safetensors file: {words}"):
        Hero.from_pretrained(saved)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_unsafe_advice(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "x": _Payload(marker)}, path)
    with pytest.raises(CheckpointError) as info:
        read_reference_checkpoint(path)
    message = str(info.value)
    assert "refused for safety" in message and "other than tensors" in message
    assert "weights_only" not in message and "\n" not in message
    assert not marker.exists()
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Payload(marker), protocol=4))
    with pytest.raises(CheckpointError, match="refused, nothing in it was run"):
        read_reference_checkpoint(raw)
    assert not marker.exists()


@pytest.mark.parametrize("content, words", [
    (b"hello, my notes\n" * 10, r"not a torch checkpoint \(a \.pt file is a zip archive or a pickle"),
    (b"", "the file is empty"),
])
def test_not_a_checkpoint_says_what_is_wrong(tmp_path, content, words):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=words) as info:
        read_reference_checkpoint(path)
    assert "(101)" not in str(info.value)


def test_truncated_pt_is_named_corrupt(tmp_path):
    path = tmp_path / "ref.pt"
    torch.save({"w": torch.randn(64, 64)}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"ref\.pt: corrupt or truncated torch checkpoint"):
        read_reference_checkpoint(path)


def test_non_finite_logits_are_counted_with_the_first_qid():
    check_finite_logits({"a": [0.1, 0.2], "b": 0.3}, "scores")
    with pytest.raises(NonFiniteError, match=r"2 of 3 scores are NaN or infinite \(first at query 'b'\)") as info:
        check_finite_logits({"a": [0.1, 0.2], "b": [float("nan"), 0.0], "c": float("inf")}, "scores")
    assert (info.value.count, info.value.total, info.value.first) == (2, 3, "b")
