"""Follow-ups of issue 14: malformed JSON/YAML files met by the remaining readers (a model's
``config.json``, an index's ``meta.json``/``vids.json``, a run config, a prediction file), error
lines that name the sub-command, range-checked numeric options, temporaries of killed corpus
builds, damaged feature-extractor weights and task settings out of range."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from reliability.matrix import Case, Outcome, Workspace

NOT_UTF8 = b'{"format": "\xff\xfe"}\n'


def _model_with_config(ws: Workspace, content: bytes) -> Path:
    """A private copy of the shared fine-tuned model whose ``config.json`` holds ``content``."""
    model = ws.tmp / "model"
    shutil.copytree(ws.vcmr_run() / "model", model)
    (model / "config.json").write_bytes(content)
    return model


def _index_with(ws: Workspace, name: str, content: bytes) -> Path:
    """A private copy of the shared search index with ``name`` replaced by ``content``."""
    index = ws.copy(ws.index(), "index")
    (index / name).write_bytes(content)
    return index


def _config(ws: Workspace, content: bytes) -> Path:
    return ws.write("run.yaml", content)


def _unchanged(name: str, content: bytes):
    def check(ws: Workspace, outcome: Outcome) -> None:
        assert (ws.tmp / name).read_bytes() == content, f"{name} was changed"
    return check


CASES = [
    # -- defect 6/7/22 kind: whole-file JSON and YAML readers ----------------------------------
    Case("fixups-info-config-json-null", "files", "`hero info` on a model whose config.json holds `null`",
         lambda ws: ["info", str(_model_with_config(ws, b"null\n"))], defect=6,
         match=r"config\.json: expected a JSON object, got null"),
    Case("fixups-info-config-json-list", "files", "`hero info` on a model whose config.json is a JSON list",
         lambda ws: ["info", str(_model_with_config(ws, b"[1, 2]\n"))], defect=6,
         match=r"config\.json: expected a JSON object, got a list"),
    Case("fixups-info-config-json-not-utf8", "files", "`hero info` on a model whose config.json is not UTF-8",
         lambda ws: ["info", str(_model_with_config(ws, NOT_UTF8))], defect=7,
         match=r"config\.json:1: not UTF-8 text"),
    Case("fixups-info-config-json-truncated", "files", "`hero info` on a model whose config.json is cut short",
         lambda ws: ["info", str(_model_with_config(ws, b'{"format": "hero", "config": {'))], defect=22,
         match=r"config\.json:1: invalid JSON \(the file ends before the JSON value is complete\)"),
    Case("fixups-search-meta-json-number", "files", "`hero search` on an index whose meta.json holds a number",
         lambda ws: ["search", "--index", str(_index_with(ws, "meta.json", b"42\n")), "alice"], defect=6,
         match=r"meta\.json: expected a JSON object, got a number"),
    Case("fixups-search-meta-json-not-utf8", "files", "`hero search` on an index whose meta.json is not UTF-8",
         lambda ws: ["search", "--index", str(_index_with(ws, "meta.json", NOT_UTF8)), "alice"], defect=7,
         match=r"meta\.json:1: not UTF-8 text"),
    Case("fixups-search-vids-json-object", "files",
         "`hero search` on an index whose vids.json is an object, not a list of video ids",
         lambda ws: ["search", "--index", str(_index_with(ws, "vids.json", b'{"a": 1}\n')), "alice"], defect=6,
         match=r"vids\.json: expected a JSON list, got an object"),
    Case("fixups-search-vids-json-truncated", "files", "`hero search` on an index whose vids.json is cut short",
         lambda ws: ["search", "--index", str(_index_with(ws, "vids.json", b'["tv_0001", "tv_0')), "alice"],
         defect=22, match=r"vids\.json:1: invalid JSON \(the file ends before"),
    Case("fixups-search-faiss-missing", "files", "`hero search` on an index whose faiss.index is an empty file",
         lambda ws: ["search", "--index", str(_index_with(ws, "faiss.index", b"")), "alice"],
         defect=None, match=r"faiss\.index: cannot read"),
    Case("fixups-finetune-yaml-not-utf8", "files", "`hero finetune` with a YAML config that is not UTF-8",
         lambda ws: ["finetune", "--config", str(_config(ws, b"task: vcmr\ntrain: {lr: \xff}\n"))], defect=7,
         match=r"run\.yaml:2: not UTF-8 text"),
    Case("fixups-finetune-yaml-syntax", "files",
         "`hero finetune` with a YAML syntax error (an unclosed `{`): one line with the line numbers",
         lambda ws: ["finetune", "--config", str(_config(ws, b"task: vcmr\ntrain: {num_train_steps: 2\nmodel: x\n"))],
         defect=22, match=r"run\.yaml:3: invalid YAML \(.*flow mapping that starts at line 2"),
    Case("fixups-finetune-yaml-list", "files", "`hero finetune` with a YAML config that is a list",
         lambda ws: ["finetune", "--config", str(_config(ws, b"- task: vcmr\n"))], defect=6,
         match=r"run\.yaml: the top level must be a mapping of keys to values, got a list"),
    Case("fixups-eval-qa-not-utf8", "files", "`hero eval qa` with a prediction file that is not UTF-8",
         lambda ws: ["eval", "qa", "--pred", str(ws.write("pred.json", NOT_UTF8)),
                     "--gt", str(ws.write("gt.jsonl", '{"qid": 1, "answer_idx": 0}\n'))], defect=7,
         match=r"^hero eval qa: error: \S*pred\.json:1: not UTF-8 text"),
    Case("fixups-eval-retrieval-gz-truncated", "files", "`hero eval retrieval` with a cut-short .json.gz submission",
         lambda ws: ["eval", "retrieval", "--submission", str(_cut_gzip(ws)),
                     "--gt", str(ws.write("gt.jsonl", '{"desc_id": 0, "vid_name": "v", "ts": [0, 1]}\n'))],
         defect=22, match=r"sub\.json\.gz: cannot read"),
    # -- defect 14 kind: the error line names the sub-command ----------------------------------
    Case("fixups-data-verify-prefix", "cli", "`hero data verify` on a missing corpus: the error names the sub-command",
         lambda ws: ["data", "verify", str(ws.tmp / "nothing")], defect=2,
         match=r"^hero data verify: error: \S*nothing: corpus directory not found"),
]


def _cut_gzip(ws: Workspace) -> Path:
    import gzip

    data = gzip.compress(json.dumps({"video2idx": {"v": 0}, "VR": [{"desc_id": 0, "predictions": [[0, 0, 1, 1]]}]
                                     * 200}).encode())
    return ws.write("sub.json.gz", data[: len(data) // 2])

CASES += [
    # -- defect 9 kind: numeric options of every command are range-checked ---------------------
    Case("fixups-predict-batch-size-0", "cli", "`hero predict --batch-size 0`",
         lambda ws: ["predict", "--model", str(ws.tmp / "m"), "--corpus", str(ws.tmp / "c"), "--task", "vcmr",
                     "--out", str(ws.tmp / "p.json"), "--batch-size", "0"], defect=9,
         match=r"argument --batch-size: must be an integer >= 1, got 0"),
    Case("fixups-predict-max-clip-len-negative", "cli", "`hero predict --max-clip-len -3`",
         lambda ws: ["predict", "--model", str(ws.tmp / "m"), "--corpus", str(ws.tmp / "c"), "--task", "vcmr",
                     "--out", str(ws.tmp / "p.json"), "--max-clip-len", "-3"], defect=9,
         match=r"argument --max-clip-len: must be an integer >= 1, got -3"),
    Case("fixups-extract-interval-nan", "cli", "`hero extract --interval nan`",
         lambda ws: ["extract", "--videos", str(ws.tmp), "--out", str(ws.tmp / "f"), "--interval", "nan"], defect=9,
         match=r"argument --interval: expected a finite number"),
    Case("fixups-data-build-max-frames-0", "cli", "`hero data build --max-frames 0`",
         lambda ws: ["data", "build", "--features", str(ws.tmp), "--out", str(ws.tmp / "c"), "--max-frames", "0"],
         defect=9, match=r"^hero data build: error: argument --max-frames: must be an integer >= 1"),
    Case("fixups-quickstart-steps-negative", "cli", "`hero quickstart --pretrain-steps -5`",
         lambda ws: ["quickstart", "--out", str(ws.tmp / "q"), "--pretrain-steps", "-5"], defect=9,
         match=r"argument --pretrain-steps: must be an integer >= 1, got -5",
         check=lambda ws, o: _nothing_created(ws, "q")),
    Case("fixups-plot-smooth-negative", "cli", "`hero plot --smooth -2`",
         lambda ws: ["plot", "--run", str(ws.tmp), "--out", str(ws.tmp / "c.png"), "--smooth", "-2"], defect=9,
         match=r"argument --smooth: must be an integer >= 0"),
    Case("fixups-synth-noise-nan", "cli", "`hero data synth --noise nan`",
         lambda ws: ["data", "synth", "--out", str(ws.tmp / "s"), "--noise", "nan"], defect=9,
         match=r"^hero data synth: error: argument --noise: expected a finite number",
         check=lambda ws, o: _nothing_created(ws, "s")),
    Case("fixups-synth-prob-above-1", "cli", "`hero data synth --narrate-prob 2`",
         lambda ws: ["data", "synth", "--out", str(ws.tmp / "s"), "--narrate-prob", "2"], defect=9,
         match=r"argument --narrate-prob: must be a number in \[0, 1\], got 2",
         check=lambda ws, o: _nothing_created(ws, "s")),
]


def _nothing_created(ws: Workspace, name: str) -> None:
    assert not (ws.tmp / name).exists(), f"{name} was created by a command that refused its options"
