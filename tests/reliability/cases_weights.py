"""Model weights and checkpoints: corrupted, truncated or malicious files, and models gone NaN.

The model cases work on a private copy of the shared fine-tuned tiny VCMR model (``ws.vcmr_run()``)
and corrupt that copy: bits flipped in the tensor data, the file cut short, the header garbled,
the hash dropped from ``config.json`` (a model saved before hashes were recorded). Reference
checkpoint cases write their ``.pt`` file into the workspace. A case that ends in an error also
checks that nothing was written (no predictions, no converted model, no temporary sibling).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from reliability.matrix import Case, Outcome, Workspace

HASH_ERROR = r"model\.safetensors: weights do not match the hash in config\.json: the file is corrupt or was changed"


# -- setup helpers -----------------------------------------------------------------------------


def _model(ws: Workspace, name: str = "model") -> Path:
    """A private copy of the shared fine-tuned VCMR model directory (config.json + model.safetensors)."""
    dst = ws.tmp / name
    shutil.copytree(ws.vcmr_run() / "model", dst)
    return dst


def _data_offset(weights: Path) -> int:
    """Where the tensor bytes start: after the 8-byte header length and the JSON header."""
    with open(weights, "rb") as f:
        return 8 + int.from_bytes(f.read(8), "little")


def _flip_bits(model: Path) -> Path:
    """Flip every bit of 256 bytes in the middle of the tensor data (a bad disk or copy)."""
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    start = _data_offset(weights)
    middle = start + (len(data) - start) // 2
    for i in range(middle, min(middle + 256, len(data))):
        data[i] ^= 0xFF
    weights.write_bytes(bytes(data))
    return model


def _truncate(model: Path) -> Path:
    weights = model / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    return model


def _garble_header(model: Path) -> Path:
    """Overwrite the start of the JSON header with bytes that are not JSON (length field kept)."""
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:24] = b"#!garbage-header"
    weights.write_bytes(bytes(data))
    return model


def _drop_hash(model: Path) -> Path:
    """Make ``model`` look saved by a version that recorded no weights hash."""
    config = model / "config.json"
    meta = json.loads(config.read_text())
    meta.pop("weights_sha256", None)
    config.write_text(json.dumps(meta, indent=2))
    return model


def _nan_model(ws: Workspace) -> Path:
    """The shared VCMR model with every weight set to NaN, saved properly (its hash matches): what a
    diverged fine-tuning run leaves behind."""
    import torch

    from hero.tasks.load import load_task_model

    _, _, model = load_task_model(ws.vcmr_run() / "model")
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    return model.save_pretrained(ws.tmp / "nan_model")


def _predict(ws: Workspace, model: Path) -> list[str]:
    return ["predict", "--model", str(model), "--corpus", str(ws.corpus()), "--dataset", "tvr", "--split", "val",
            "--out", str(ws.tmp / "preds.json"), "--device", "cpu", "--batch-size", "4"]


def _finetune(ws: Workspace, init: str, run: str = "ft") -> list[str]:
    """``hero finetune`` of a tiny VCMR model initialised from ``init`` (``model.init``)."""
    config = ws.write("ft.yaml",
                      f"output_dir: {ws.tmp / run}\ntask: vcmr\ndataset: tvr\ncorpus: {ws.corpus()}\n"
                      f"model: {{preset: hero-tiny, init: '{init}'}}\neval_batch_size: 4\n"
                      "task_config: {vsm: {hard_negative_start_step: 5}, max_vcmr_video: 5, max_after_nms: 20}\n"
                      "optim: {lr: 1.0e-3, warmup_steps: 2}\n"
                      "train: {num_train_steps: 1, batch_size: 4, num_workers: 0, save_every: 1, progress: false, "
                      "device: cpu}\n")
    return ["finetune", "--config", str(config)]


def _resume_truncated(ws: Workspace) -> list[str]:
    """A copy of the shared run whose newest training checkpoint has a truncated model.safetensors,
    resumed with the run's own config (more steps)."""
    run = ws.tmp / "run"
    shutil.copytree(ws.vcmr_run(), run)
    latest = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    _truncate(latest)
    config = (run / "config.yaml").read_text().replace(str(ws.vcmr_run()), str(run))
    (run / "config.yaml").write_text(config)
    (ws.tmp / "resume.yaml").write_text(config.replace("num_train_steps: 2", "num_train_steps: 3"))
    return ["finetune", "--config", str(ws.tmp / "resume.yaml")]


def _malicious_pickle(ws: Workspace) -> Path:
    """A .pt file whose unpickling would run ``open(MARKER, 'w')`` (it must never be run)."""
    import pickle

    marker = ws.tmp / "PWNED"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = ws.tmp / "hero-tv-ht100.pt"
    path.write_bytes(pickle.dumps({"v_encoder.pad": Payload()}, protocol=2))
    return path


# -- checks ------------------------------------------------------------------------------------


def _nothing_written(*names: str):
    def check(ws: Workspace, outcome: Outcome) -> None:
        for name in names:
            assert not (ws.tmp / name).exists(), f"{name} was written"
        stray = [p.name for p in ws.tmp.iterdir() if ".tmp" in p.name]
        assert not stray, f"temporary files left behind: {stray}"
    return check


def _no_marker_no_unsafe_advice(*names: str):
    def check(ws: Workspace, outcome: Outcome) -> None:
        assert not (ws.tmp / "PWNED").exists(), "the pickle's code ran"
        assert "weights_only=False" not in outcome.err and "weights_only` set to `False" not in outcome.err
        _nothing_written(*names)(ws, outcome)
    return check


def _no_pickle_jargon(ws: Workspace, outcome: Outcome) -> None:
    assert "(101)" not in outcome.err and "KeyError" not in outcome.err
    _nothing_written("out")(ws, outcome)


def _finetune_untouched(ws: Workspace, outcome: Outcome) -> None:
    ft = ws.tmp / "ft"
    assert not (ft / "checkpoints").exists() and not (ft / "model").exists(), "the run started anyway"


def _resume_untouched(ws: Workspace, outcome: Outcome) -> None:
    ckpts = ws.tmp / "run" / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == "step-00000002", "the run moved on from a corrupt checkpoint"


# -- cases -------------------------------------------------------------------------------------

CASES = [
    Case("weights-bitflip-predict", "weights",
         "`hero predict` with a model whose model.safetensors has flipped bits in its tensor data "
         "(it used to give a submission of NaN scores)",
         lambda ws: _predict(ws, _flip_bits(_model(ws))), defect=3, match=HASH_ERROR,
         check=_nothing_written("preds.json", "preds_nms.json")),
    Case("weights-bitflip-info", "weights", "`hero info` on a model with flipped bits in its weights",
         lambda ws: ["info", str(_flip_bits(_model(ws)))], defect=3, match=HASH_ERROR),
    Case("weights-bitflip-finetune-init", "weights",
         "`hero finetune` with `model.init` naming a model with flipped bits in its weights",
         lambda ws: _finetune(ws, str(_flip_bits(_model(ws)))), defect=3, match=HASH_ERROR,
         check=_finetune_untouched),
    Case("weights-nan-model-predict", "weights",
         "`hero predict` with a model whose weights are all NaN (a diverged run, saved with a valid hash)",
         lambda ws: _predict(ws, _nan_model(ws)), defect=3,
         match=r"nan_model: the model gives [\d,]+ of [\d,]+ predicted moment rows .* are NaN or infinite "
               r"\(first at query .+\); refusing to write .*preds\.json",
         check=_nothing_written("preds.json", "preds_nms.json")),
    Case("weights-info-ok", "weights", "`hero info` on a healthy model: the weights hash is checked and reported",
         lambda ws: ["info", str(_model(ws))], expect="ok",
         match=r"weights: model\.safetensors, \d+ tensors, .* sha256 [0-9a-f]{16}\.\.\. matches config\.json"),
    Case("weights-no-hash-info", "weights",
         "`hero info` on a model saved before weights hashes were recorded (it loads, unchecked)",
         lambda ws: ["info", str(_drop_hash(_model(ws)))], expect="ok", match=r"no hash in config\.json"),
    Case("weights-no-hash-predict", "weights",
         "`hero predict` with a model saved before weights hashes were recorded (it still loads)",
         lambda ws: _predict(ws, _drop_hash(_model(ws))), expect="ok", match=r"wrote .*preds\.json"),
    Case("weights-truncated-predict", "weights",
         "`hero predict` with a model.safetensors cut in half (and no hash to compare: an older model)",
         lambda ws: _predict(ws, _drop_hash(_truncate(_model(ws)))), defect=4,
         match=r"model\.safetensors: not a readable safetensors file: truncated",
         check=_nothing_written("preds.json")),
    Case("weights-truncated-hashed-predict", "weights",
         "`hero predict` with a model.safetensors cut in half (its hash in config.json no longer matches)",
         lambda ws: _predict(ws, _truncate(_model(ws))), defect=4, match=HASH_ERROR,
         check=_nothing_written("preds.json")),
    Case("weights-truncated-info", "weights", "`hero info` on a model whose model.safetensors is cut in half",
         lambda ws: ["info", str(_drop_hash(_truncate(_model(ws))))], defect=4,
         match=r"model\.safetensors: not a readable safetensors file: truncated"),
    Case("weights-bad-header-info", "weights",
         "`hero info` on a model.safetensors whose JSON header is garbage",
         lambda ws: ["info", str(_drop_hash(_garble_header(_model(ws))))], defect=4,
         match=r"model\.safetensors: not a readable safetensors file: corrupt header"),
    Case("weights-bad-header-finetune-init", "weights",
         "`hero finetune` with `model.init` naming a model whose weights header is garbage",
         lambda ws: _finetune(ws, str(_drop_hash(_garble_header(_model(ws))))), defect=4,
         match=r"model\.safetensors: not a readable safetensors file: corrupt header", check=_finetune_untouched),
    Case("weights-truncated-resume", "weights",
         "`hero finetune` resuming a run whose latest training checkpoint has a truncated model.safetensors",
         _resume_truncated, defect=4, match=r"step-00000002/model\.safetensors: weights do not match the hash",
         check=_resume_untouched),
    Case("weights-malicious-pickle-convert", "weights",
         "`hero convert` of a reference .pt whose pickle would run code (it is refused, never run)",
         lambda ws: ["convert", str(_malicious_pickle(ws)), str(ws.tmp / "out")], defect=22,
         match=r"hero-tv-ht100\.pt: refused for safety: the file holds Python objects other than tensors",
         check=_no_marker_no_unsafe_advice("out")),
    Case("weights-malicious-pickle-init", "weights",
         "`hero finetune` with `model.init=reference:` naming a .pt whose pickle would run code",
         lambda ws: _finetune(ws, f"reference:{_malicious_pickle(ws)}"), defect=None,
         match=r"hero-tv-ht100\.pt: refused for safety", check=_no_marker_no_unsafe_advice("ft/checkpoints")),
    Case("weights-convert-not-a-checkpoint", "weights",
         "`hero convert` of a file that is not a torch checkpoint (a text file)",
         lambda ws: ["convert", str(ws.write("notes.pt", "hello, these are my notes\n" * 20)), str(ws.tmp / "out")],
         defect=22, match=r"notes\.pt: not a torch checkpoint \(a \.pt file is a zip archive or a pickle",
         check=_no_pickle_jargon),
    Case("weights-convert-truncated", "weights",
         "`hero convert` of a reference .pt cut short (an interrupted download)",
         lambda ws: ["convert", str(_truncated_pt(ws)), str(ws.tmp / "out")], defect=22,
         match=r"ref\.pt: corrupt or truncated torch checkpoint", check=_nothing_written("out")),
]


def _truncated_pt(ws: Workspace) -> Path:
    import torch

    path = ws.tmp / "ref.pt"
    torch.save({"v_encoder.pad": torch.zeros(4), "w": torch.randn(64, 64)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path
