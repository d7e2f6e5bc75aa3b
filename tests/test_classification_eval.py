"""QA and VIOLIN accuracy: values, per-type breakdown, file round trips and named errors."""

from __future__ import annotations

import json

import pytest

from hero.errors import HeroError
from hero.eval.classification import (
    evaluate_qa_files,
    evaluate_violin_files,
    qa_accuracy,
    read_ground_truth,
    violin_accuracy,
)

QA_GT = [
    {"qid": 1, "vid": "v1", "answers": ["a"] * 5, "answer_idx": 0, "q_type": "what"},
    {"qid": 2, "vid": "v1", "answers": ["a"] * 5, "answer_idx": 4, "q_type": "what"},
    {"qid": 3, "vid": "v2", "answers": ["a"] * 5, "answer_idx": 2, "q_type": "who"},
    {"qid": 4, "vid": "v3", "answers": ["a"] * 5, "answer_idx": 1, "q_type": "why"},
]
VIOLIN_GT = [{"qid": f"c{i}-{label}", "vid": f"c{i}", "label": label} for i in range(3) for label in (1, 0)]


def write_jsonl(path, records, blank_after=None):
    lines = []
    for i, r in enumerate(records):
        lines.append(json.dumps(r))
        if blank_after == i:
            lines.append("")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_qa_accuracy_overall_and_per_type():
    preds = {"1": 0, "2": 3, "3": 2, "4": 1}
    got = qa_accuracy(preds, QA_GT)
    hits = {1: 1, 2: 0, 3: 1, 4: 1}
    assert got["accuracy"] == pytest.approx(100 * sum(hits.values()) / 4)
    assert got["accuracy/what"] == pytest.approx(50.0) and got["num_questions/what"] == 2
    assert got["accuracy/who"] == 100.0 and got["accuracy/why"] == 100.0
    assert got["num_questions"] == 4
    # every single flipped answer changes the score by one question
    for qid in preds:
        wrong = {**preds, qid: (preds[qid] + 1) % 5}
        delta = -25.0 if hits[int(qid)] else (25.0 if (preds[qid] + 1) % 5 == QA_GT[int(qid) - 1]["answer_idx"] else 0)
        assert qa_accuracy(wrong, QA_GT)["accuracy"] == pytest.approx(got["accuracy"] + delta)
    # int keys (in-memory predictions) are the same questions as JSON's string keys
    assert qa_accuracy({int(k): v for k, v in preds.items()}, QA_GT) == got


def test_qa_without_types_and_raw_tvqa_lines():
    raw = [{"qid": 7, "a0": "x", "a1": "y", "a2": "z", "a3": "w", "a4": "u", "answer_idx": 3, "ts": "1.0-2.0"},
           {"qid": 8, "a0": "x", "a1": "y", "a2": "z", "a3": "w", "a4": "u", "answer_idx": 0, "ts": "1.0-2.0"}]
    assert qa_accuracy({"7": 3, "8": 1}, raw) == {"accuracy": 50.0, "num_questions": 2.0}
    with pytest.raises(HeroError, match=r"qid '8': answer index 5 is out of range \[0, 5\)"):
        qa_accuracy({"7": 3, "8": 5}, raw)


@pytest.mark.parametrize("preds, message", [
    ({"1": 0, "2": 4, "3": 2}, r"preds\.json: no prediction for 1 of the 4 qids of .*gt\.jsonl: '4'"),
    ({"1": 0, "2": 4, "3": 2, "4": 1, "99": 0}, r"preds\.json: 1 predicted qids are not in .*: '99'"),
    ({"1": 0, "2": 4, "3": 2, "4": 7}, r"preds\.json: qid '4': answer index 7 is out of range \[0, 5\)"),
    ({"1": 0, "2": 4, "3": 2, "4": -1}, r"qid '4': answer index -1 is out of range"),
    ({"1": 0, "2": "4", "3": 2, "4": 1}, r"preds\.json: qid '2': the answer index must be an integer, got '4'"),
    ({"1": 0, "2": 4.0, "3": 2, "4": 1}, r"qid '2': the answer index must be an integer"),
    ({"1": 0, "2": True, "3": 2, "4": 1}, r"qid '2': the answer index must be an integer"),
    ([0, 4, 2, 1], r"preds\.json: expected a JSON object"),
])
def test_malformed_qa_predictions_are_named(tmp_path, preds, message):
    gt = write_jsonl(tmp_path / "gt.jsonl", QA_GT)
    pred = tmp_path / "preds.json"
    pred.write_text(json.dumps(preds))
    with pytest.raises(HeroError, match=message):
        evaluate_qa_files(pred, gt)


def test_unreadable_files_are_named(tmp_path):
    gt = write_jsonl(tmp_path / "gt.jsonl", QA_GT)
    pred = tmp_path / "preds.json"
    pred.write_text('{"1": 0,')
    with pytest.raises(HeroError, match=r"preds\.json:1: invalid JSON \(the file ends before"):
        evaluate_qa_files(pred, gt)
    with pytest.raises(HeroError, match=r"missing\.json: no such file"):
        evaluate_qa_files(tmp_path / "missing.json", gt)
    pred.write_text(json.dumps({"1": 0}))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(QA_GT[0]) + "\n{oops\n")
    with pytest.raises(HeroError, match=r"bad\.jsonl:2: invalid JSON"):
        evaluate_qa_files(pred, bad)
    bad.write_text(json.dumps(QA_GT[0]) + "\n[1, 2]\n")
    with pytest.raises(HeroError, match=r"bad\.jsonl:2: expected a JSON object"):
        evaluate_qa_files(pred, bad)


def test_ground_truth_errors_name_the_line(tmp_path):
    pred = tmp_path / "preds.json"
    pred.write_text(json.dumps({"1": 0, "2": 4, "3": 2, "4": 1}))
    # a blank line after the first record: errors still name the file's own line numbers
    gt = write_jsonl(tmp_path / "gt.jsonl", [QA_GT[0], QA_GT[1], {**QA_GT[2], "answer_idx": None}, QA_GT[3]],
                     blank_after=0)
    records, lines = read_ground_truth(gt)
    assert lines == [1, 3, 4, 5] and records[1] == QA_GT[1]
    with pytest.raises(HeroError, match=r"gt\.jsonl:4: qid '3' has no integer 'answer_idx'.*cannot be scored"):
        evaluate_qa_files(pred, gt)
    write_jsonl(gt, [QA_GT[0], QA_GT[1], QA_GT[2], {**QA_GT[3], "qid": 1}])
    with pytest.raises(HeroError, match=r"gt\.jsonl:4: qid '1' already appears at .*gt\.jsonl:1"):
        evaluate_qa_files(pred, gt)
    write_jsonl(gt, [QA_GT[0], {**QA_GT[1], "answer_idx": 9}, QA_GT[2], QA_GT[3]])
    with pytest.raises(HeroError, match=r"gt\.jsonl:2: qid '2': answer_idx 9 is out of range"):
        evaluate_qa_files(pred, gt)
    write_jsonl(gt, [{"vid": "v"}])
    with pytest.raises(HeroError, match=r"gt\.jsonl:1: record has no 'qid'"):
        evaluate_qa_files(pred, gt)


def test_qa_file_round_trip_writes_the_metrics_atomically(tmp_path):
    gt = write_jsonl(tmp_path / "gt.jsonl", QA_GT)
    pred = tmp_path / "preds.json"
    preds = {"1": 0, "2": 4, "3": 1, "4": 1}
    pred.write_text(json.dumps(preds))
    out = tmp_path / "metrics" / "qa.json"
    metrics = evaluate_qa_files(pred, gt, out=out)
    assert metrics == qa_accuracy(preds, QA_GT) and metrics["accuracy"] == 75.0
    assert json.loads(out.read_text()) == metrics
    assert [p.name for p in out.parent.iterdir()] == ["qa.json"]


def test_violin_accuracy_and_errors(tmp_path):
    preds = {r["qid"]: r["label"] for r in VIOLIN_GT}
    assert violin_accuracy(preds, VIOLIN_GT) == {"accuracy": 100.0, "num_statements": 6.0}
    # per statement kind, where the records carry one (the synthetic corpus's do)
    kinds = [{**r, "kind": "scene" if r["vid"] == "c0" else "event"} for r in VIOLIN_GT]
    flipped = {**preds, "c1-1": 0}
    assert violin_accuracy(flipped, kinds) == pytest.approx({
        "accuracy": 500 / 6, "num_statements": 6.0, "accuracy/event": 75.0, "num_statements/event": 4.0,
        "accuracy/scene": 100.0, "num_statements/scene": 2.0})
    preds["c1-0"] = 1
    assert violin_accuracy(preds, VIOLIN_GT)["accuracy"] == pytest.approx(500 / 6)
    gt = write_jsonl(tmp_path / "violin.jsonl", VIOLIN_GT)
    pred = tmp_path / "violin_pred.json"
    pred.write_text(json.dumps(preds))
    out = tmp_path / "m.json"
    assert evaluate_violin_files(pred, gt, out) == violin_accuracy(preds, VIOLIN_GT)
    assert json.loads(out.read_text())["num_statements"] == 6
    for bad, message in [({**preds, "c0-1": 2}, r"qid 'c0-1': the prediction must be 0 or 1, got 2"),
                         ({**preds, "c0-1": 0.5}, r"the prediction must be 0 or 1"),
                         ({k: v for k, v in preds.items() if k != "c2-0"}, r"no prediction for 1 of the 6 qids"),
                         ({**preds, "c9-1": 1}, r"not in .*violin\.jsonl: 'c9-1'")]:
        pred.write_text(json.dumps(bad))
        with pytest.raises(HeroError, match=message):
            evaluate_violin_files(pred, gt)
    # HERO's converted VIOLIN lines name the statement desc_id
    raw = [{"desc_id": r["qid"], "desc": "", "vid_name": r["vid"], "label": r["label"]} for r in VIOLIN_GT]
    assert violin_accuracy(preds, raw)["accuracy"] == pytest.approx(500 / 6)
    with pytest.raises(HeroError, match=r"gt:3: qid 'c1-1': 'label' must be 0 or 1 \(got None\)"):
        violin_accuracy(preds, [*VIOLIN_GT[:2], {**VIOLIN_GT[2], "label": None}, *VIOLIN_GT[3:]], gt_source="gt")


# ---------------------------------------------------------------------------------------------
# Non-finite predictions and task mismatches (issue 14, defects 3 and 14)
# ---------------------------------------------------------------------------------------------


def test_non_finite_predictions_are_counted_with_the_first_qid():
    preds = {"1": 0, "2": float("nan"), "3": float("inf"), "4": float("nan")}
    with pytest.raises(HeroError, match=r"^p.json: 3 non-finite predictions \(NaN or infinity\); first at qid '2'$"):
        qa_accuracy(preds, QA_GT, pred_source="p.json")
    vpreds = {r["qid"]: 1 for r in VIOLIN_GT} | {"c1-0": float("-inf")}
    with pytest.raises(HeroError, match=r"^p.json: 1 non-finite prediction \(NaN or infinity\); first at qid 'c1-0'$"):
        violin_accuracy(vpreds, VIOLIN_GT, pred_source="p.json")


def test_ground_truth_of_another_task_is_named():
    with pytest.raises(HeroError, match=r"g.jsonl: this annotation file is for violin, not qa"):
        qa_accuracy({r["qid"]: 1 for r in VIOLIN_GT}, VIOLIN_GT, gt_source="g.jsonl")
    with pytest.raises(HeroError, match=r"g.jsonl: this annotation file is for qa, not violin"):
        violin_accuracy({"1": 0, "2": 1, "3": 0, "4": 1}, QA_GT, gt_source="g.jsonl")
    tvr = [{"qid": 7, "vid": "v1", "desc": "x", "ts": [0, 1], "type": "v"}]
    with pytest.raises(HeroError, match=r"this annotation file is for retrieval, not qa"):
        qa_accuracy({"7": 0}, tvr)


def test_prediction_file_of_another_task_is_named():
    violin_preds = {f"{i}-{label}": label for i in range(600) for label in (0, 1)}
    with pytest.raises(HeroError, match=r"p.json: this looks like a violin prediction file, not qa: none of its "
                                        r"1,200 qids is in g.jsonl"):
        qa_accuracy(violin_preds, QA_GT, pred_source="p.json", gt_source="g.jsonl")
    qa_preds = {str(100 + i): i % 5 for i in range(10)}
    with pytest.raises(HeroError, match=r"p.json: this looks like a qa prediction file, not violin"):
        violin_accuracy(qa_preds, VIOLIN_GT, pred_source="p.json", gt_source="g.jsonl")
    with pytest.raises(HeroError, match=r"p.json: this looks like a retrieval submission, not qa"):
        qa_accuracy({"video2idx": {"a": 1}, "VCMR": []}, QA_GT, pred_source="p.json")
    with pytest.raises(HeroError, match=r"none of its 2 qids is in g.jsonl \(another split or dataset\?\)"):
        qa_accuracy({"11": 0, "12": 3}, QA_GT, pred_source="p.json", gt_source="g.jsonl")
