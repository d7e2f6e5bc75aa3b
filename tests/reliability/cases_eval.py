"""Evaluation, prediction and search: bad submissions and prediction files, task mix-ups, options
out of range, odd queries (issue 14, defects 3, 9, 13, 14, 19)."""

from __future__ import annotations

import json

from reliability.matrix import Case, Workspace

V2I = {"synth_a": 0, "synth_b": 1}


def _tvr(ws: Workspace, predictions: list | None = None, n: int = 3, **extra) -> list[str]:
    """A small TVR ground truth and a submission whose VCMR list holds ``predictions`` for every query."""
    gt = ws.write("gt.jsonl", "".join(json.dumps({"desc_id": i, "vid_name": "synth_a", "ts": [1.5, 6.0],
                                                  "type": "v"}) + "\n" for i in range(n)))
    preds = predictions if predictions is not None else [[0, 1.5, 6.0, 0.9]]
    sub = {"video2idx": V2I, "VCMR": [{"desc_id": i, "desc": "", "predictions": preds} for i in range(n)], **extra}
    path = ws.write("sub.json", json.dumps(sub))
    return ["eval", "retrieval", "--submission", str(path), "--gt", str(gt)]


def _sub_with(ws: Workspace, change) -> list[str]:
    argv = _tvr(ws)
    path = ws.tmp / "sub.json"
    sub = json.loads(path.read_text())
    change(sub)
    path.write_text(json.dumps(sub))
    return argv


def _nan_scores(ws: Workspace) -> list[str]:
    # json.dumps writes NaN, as Python's json module (and so a careless converter) does
    return _tvr(ws, [[0, 1.5, 6.0, float("nan")], [1, 0.0, 3.0, float("nan")]])


def _qa_gt(ws: Workspace) -> str:
    return str(ws.corpus() / "annotations" / "tvqa" / "val.jsonl")


def _violin_gt(ws: Workspace) -> str:
    return str(ws.corpus() / "annotations" / "violin" / "val.jsonl")


def _violin_preds(ws: Workspace) -> str:
    from hero.io import read_jsonl

    records = read_jsonl(_violin_gt(ws))
    return str(ws.write("violin_val.json", json.dumps({r["qid"]: 1 for r in records})))


def _qa_nan(ws: Workspace) -> list[str]:
    from hero.io import read_jsonl

    records = read_jsonl(_qa_gt(ws))
    preds = {str(r["qid"]): (float("nan") if i % 2 else 0) for i, r in enumerate(records)}
    path = ws.write("qa_val.json", json.dumps(preds))
    return ["eval", "qa", "--pred", str(path), "--gt", _qa_gt(ws)]


def _tvc_run(ws: Workspace) -> list[str]:
    """A tiny TVC model fine-tuned for one step: its in-training predictions, scored by hero eval."""
    from reliability.matrix import _quiet_main

    corpus = ws.corpus()
    config = ws.write("tvc.yaml", (
        f"output_dir: {ws.tmp / 'tvc_run'}\ntask: tvc\ndataset: tvc\ncorpus: {corpus}\nmodel: {{preset: hero-tiny}}\n"
        "task_config: {max_gen_step: 4, num_attention_heads: 4, intermediate_size: 64, max_position_embeddings: 64}\n"
        "eval_batch_size: 4\noptim: {lr: 1.0e-3, warmup_steps: 1}\n"
        "train: {num_train_steps: 1, batch_size: 2, num_workers: 0, save_every: 1, progress: false, device: cpu}\n"))
    _quiet_main(["finetune", "--config", str(config)])
    [pred] = (ws.tmp / "tvc_run" / "predictions").iterdir()
    return ["eval", "caption", "--pred", str(pred), "--gt", str(corpus / "annotations" / "tvc" / "val.jsonl"),
            "--no-meteor"]


def _other_model_index(ws: Workspace) -> list[str]:
    """The index's model directory now holds other weights (a re-trained model saved over it)."""
    from safetensors.torch import load_file, save_file

    model = ws.copy(ws.vcmr_run() / "model", "model")
    weights = load_file(model / "model.safetensors")
    name = sorted(weights)[0]
    weights[name] = weights[name] + 1.0
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    index = ws.copy(ws.index(), "index")
    meta = json.loads((index / "meta.json").read_text())
    meta["model"]["path"] = str(model)
    (index / "meta.json").write_text(json.dumps(meta))
    return ["search", "--index", str(index), "alice"]


def _search(ws: Workspace, *args: str) -> list[str]:
    return ["search", "--index", str(ws.index()), "--device", "cpu", *args]


def _no_file_written(name: str):
    def check(ws: Workspace, outcome) -> None:
        assert not (ws.tmp / name).exists(), f"{name} was written"
    return check


def _ranks_sorted(ws: Workspace, outcome) -> None:
    moments = json.loads(outcome.out)["moments"]
    assert moments and len(moments) <= 10
    scores = [m["score"] for m in moments]
    assert scores == sorted(scores, reverse=True)


CASES = [
    # -- defect 3 (evaluator part): non-finite values ---------------------------------------
    Case("eval-retrieval-nan-scores", "eval", "`hero eval retrieval` on a submission whose scores are all NaN",
         _nan_scores, defect=3, match=r"sub\.json: VCMR: 6 non-finite scores; first at desc_id 0"),
    Case("eval-qa-nan-predictions", "eval", "`hero eval qa` on a prediction file holding NaN answers",
         _qa_nan, defect=3, match=r"non-finite predictions \(NaN or infinity\); first at qid"),
    # -- defect 19: the TVR submission checker ------------------------------------------------
    Case("eval-tvr-string-numbers", "eval", "TVR submission with a time given as a string (\"1.5\")",
         lambda ws: _tvr(ws, [[0, "1.5", 6.0, 0.9]]), defect=19,
         match=r"sub\.json: VCMR: 3 queries with malformed predictions .*first at desc_id 0: prediction 0: "
               r"st is '1\.5' \(a str\)"),
    Case("eval-tvr-boolean", "eval", "TVR submission with a boolean as video index",
         lambda ws: _tvr(ws, [[True, 1.5, 6.0, 0.9]]), defect=19, match=r"video_idx is True \(a bool\)"),
    Case("eval-tvr-negative-time", "eval", "TVR submission with a negative start time",
         lambda ws: _tvr(ws, [[0, -3.0, 6.0, 0.9]]), defect=19,
         match=r"VCMR: 3 predictions with a negative time; first at desc_id 0"),
    Case("eval-tvr-huge-time", "eval", "TVR submission with an end time of 1e12 s",
         lambda ws: _tvr(ws, [[0, 1.5, 1e12, 0.9]]), defect=19,
         match=r"VCMR: 3 predictions with a time over 86400 s; first at desc_id 0"),
    Case("eval-tvr-over-100", "eval", "TVR submission with 150 predictions for a query",
         lambda ws: _tvr(ws, [[0, 1.5, 6.0, 0.9]] * 150), defect=19,
         match=r"VCMR: 3 queries with more than 100 predictions .*first at desc_id 0 \(150\)"),
    Case("eval-tvr-over-100-lenient", "eval", "the same with `--lenient`: scored as the official evaluator does",
         lambda ws: [*_tvr(ws, [[0, 1.5, 6.0, 0.9]] * 150), "--lenient"], defect=19, expect="ok",
         match=r"note: VCMR: 3 queries with more than 100 predictions"),
    Case("eval-tvr-bad-json-names-file-once", "eval", "TVR submission that is not valid JSON",
         lambda ws: [*_tvr(ws)[:3], str(ws.write("bad.json", "{\"video2idx\": ")), *_tvr(ws)[4:]], defect=19,
         match=r"^hero eval retrieval: error: \S*bad\.json[:\s][^/]*$"),
    Case("eval-tvr-missing-task-key", "eval", "TVR submission with `video2idx` but no VCMR/SVMR/VR list",
         lambda ws: _sub_with(ws, lambda s: s.pop("VCMR")), match=r"none of the tasks"),
    Case("eval-tvr-entry-without-predictions", "eval", "TVR submission entry without its `predictions` key",
         lambda ws: _sub_with(ws, lambda s: s["VCMR"][1].pop("predictions")),
         match=r"VCMR: 1 entry without a 'desc_id' .* and a 'predictions' list; first at VCMR\[1\]"),
    Case("eval-retrieval-bad-iou", "eval", "`hero eval retrieval --iou 1.5`",
         lambda ws: [*_tvr(ws), "--iou", "1.5"], defect=9, match=r"argument --iou: .*\(0, 1\]"),
    # -- defect 13: caption predictions written by fine-tuning ------------------------------
    Case("eval-caption-finetune-predictions", "eval",
         "`hero eval caption` on the predictions a TVC fine-tuning run wrote (predictions/tvc_val_step1.jsonl)",
         _tvc_run, defect=13, expect="ok", match=r"CIDEr"),
    # -- defect 14: task / dataset mismatches ---------------------------------------------------
    Case("eval-predict-vcmr-on-tvqa", "eval", "`hero predict` with a VCMR model and `--dataset tvqa`",
         lambda ws: ["predict", "--model", str(ws.vcmr_run()), "--corpus", str(ws.corpus()), "--dataset", "tvqa",
                     "--out", str(ws.tmp / "p.json"), "--device", "cpu"],
         defect=14, match=r"model task vcmr reads datasets tvr, how2r, didemo; got tvqa",
         check=_no_file_written("p.json")),
    Case("eval-qa-on-violin-predictions", "eval", "`hero eval qa` given VIOLIN predictions and the QA annotations",
         lambda ws: ["eval", "qa", "--pred", _violin_preds(ws), "--gt", _qa_gt(ws)], defect=14,
         match=r"this looks like a violin prediction file, not qa"),
    Case("eval-qa-on-violin-annotations", "eval", "`hero eval qa` given VIOLIN predictions and annotations",
         lambda ws: ["eval", "qa", "--pred", _violin_preds(ws), "--gt", _violin_gt(ws)], defect=14,
         match=r"this annotation file is for violin, not qa"),
    Case("eval-retrieval-on-qa-annotations", "eval", "`hero eval retrieval` given the TVQA annotations as ground truth",
         lambda ws: [*_tvr(ws)[:5], _qa_gt(ws)], defect=14, match=r"this annotation file is for qa, not retrieval"),
    Case("eval-caption-on-tvr-annotations", "eval", "`hero eval caption` given the TVR annotations as references",
         lambda ws: ["eval", "caption", "--pred", str(ws.corpus() / "annotations" / "tvr" / "val.jsonl"),
                     "--gt", str(ws.corpus() / "annotations" / "tvr" / "val.jsonl"), "--no-meteor"],
         defect=14, match=r"this looks like a retrieval record, not captioning"),
    Case("eval-finetune-vcmr-on-tvqa", "eval", "`hero finetune` of task vcmr on dataset tvqa",
         lambda ws: ["finetune", "--config", str(ws.write("c.yaml", (
             f"output_dir: {ws.tmp / 'run'}\ntask: vcmr\ndataset: tvqa\ncorpus: {ws.corpus()}\n"
             "model: {preset: hero-tiny}\ntrain: {num_train_steps: 1, batch_size: 2, device: cpu}\n")))],
         defect=14, match=r"vcmr.*tvr.*tvqa", check=_no_file_written("run")),
    # -- defect 9: search and index options, odd queries ----------------------------------------
    Case("eval-search-negative-top", "eval", "`hero search --top -3`",
         lambda ws: _search(ws, "--top", "-3", "alice"),
         defect=9, match=r"argument --top: must be an integer >= 1"),
    Case("eval-search-negative-videos", "eval", "`hero search --videos -5`",
         lambda ws: _search(ws, "--videos", "-5", "alice"),
         defect=9, match=r"argument --videos: must be an integer >= 1"),
    Case("eval-search-zero-frames", "eval", "`hero search --frames 0`",
         lambda ws: _search(ws, "--frames", "0", "alice"),
         defect=9, match=r"argument --frames: must be an integer >= 1"),
    Case("eval-search-top-not-a-number", "eval", "`hero search --top ten`",
         lambda ws: _search(ws, "--top", "ten", "alice"), defect=9, match=r"argument --top: .*'ten'"),
    Case("eval-index-zero-batch", "eval", "`hero index --batch-size 0`",
         lambda ws: ["index", "--model", str(ws.vcmr_run()), "--corpus", str(ws.corpus()), "--out",
                     str(ws.tmp / "idx"), "--batch-size", "0"], defect=9,
         match=r"argument --batch-size: must be an integer >= 1",
         check=_no_file_written("idx")),
    Case("eval-index-negative-nlist", "eval", "`hero index --faiss ivf --nlist -4`",
         lambda ws: ["index", "--model", str(ws.vcmr_run()), "--corpus", str(ws.corpus()), "--out",
                     str(ws.tmp / "idx"), "--faiss", "ivf", "--nlist", "-4"], defect=9,
         match=r"argument --nlist: must be an integer >= 1", check=_no_file_written("idx")),
    Case("eval-search-empty-query", "eval", "`hero search` with an empty query (\"\")",
         lambda ws: _search(ws, ""), defect=9, match=r"the query is empty"),
    Case("eval-search-blank-query", "eval", "`hero search` with a query of spaces only",
         lambda ws: _search(ws, "   "), defect=9, match=r"the query is empty"),
    Case("eval-search-long-query", "eval",
         "`hero search` with a 10,000-character query: searched, cut to the model's query length, with a note",
         lambda ws: _search(ws, "--json", "alice " * 1666 + "alic"), expect="ok",
         match=r"note: the query has [\d,]+ tokens; the model reads the first \d+", check=_ranks_sorted),
    Case("eval-search-index-of-another-model", "eval",
         "`hero search` on an index whose model directory now holds other weights",
         _other_model_index, match=r"changed since the index was built|weights do not match the hash"),
]
