"""The TVR retrieval metric against the official evaluator's recorded outputs, its semantics on
hand-made cases, and its errors for malformed input.

Fixture folders: ``tests/fixtures/official_data_eval`` plus every directory in ``HERO_DATA_FIXTURES``
(':'-separated, same layout). A folder contributes ``tvr_metric/metrics_{name}.json`` +
``submission_{name}.json.gz`` pairs (scored against the TVR val GT: ``tvr_metric/tvr_val_release.jsonl[.gz]``
in that folder, else ``../../data/tvr/tvr_val_release.jsonl`` as in the shared layout, else our copy),
``per_query_first_hit_{name}.json.gz`` and ``didemo_style/``.
"""

from __future__ import annotations

import copy
import functools
import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest

from hero.errors import HeroError
from hero.eval.tvr import (
    NO_HIT,
    check_submission,
    eval_retrieval,
    evaluate_files,
    first_hit_ranks,
    load_ground_truth,
    parse_ground_truth,
    rounded_percentage,
)

OURS = Path(__file__).parent / "fixtures" / "official_data_eval"


def _fixture_dirs() -> list[Path]:
    dirs = [OURS]
    for extra in filter(None, os.environ.get("HERO_DATA_FIXTURES", "").split(":")):
        d = Path(extra)
        dirs.append(d / "official_data_eval" if (d / "official_data_eval").is_dir() else d)
    return dirs


def _gt_path(metric_dir: Path) -> Path:
    for cand in (metric_dir / "tvr_val_release.jsonl", metric_dir / "tvr_val_release.jsonl.gz",
                 metric_dir.parent.parent.parent / "data" / "tvr" / "tvr_val_release.jsonl"):
        if cand.is_file():
            return cand
    return OURS / "tvr_metric" / "tvr_val_release.jsonl.gz"


CASES = [(d / "tvr_metric", p.name[len("metrics_"):-len(".json")])
         for d in _fixture_dirs() for p in sorted((d / "tvr_metric").glob("metrics_*.json"))]
DIDEMO = [d / "tvr_metric" / "didemo_style" for d in _fixture_dirs()
          if (d / "tvr_metric" / "didemo_style" / "metrics.json").is_file()]


def test_fixture_dirs_exist_and_ours_has_cases():
    for d in _fixture_dirs():
        assert d.is_dir(), f"HERO_DATA_FIXTURES names {d}, which is not a directory"
    assert any(c[0].parent == OURS for c in CASES) and DIDEMO


@functools.lru_cache(maxsize=2)
def _gt(path: Path):
    return load_ground_truth(path)


@functools.lru_cache(maxsize=1)
def _submission(path: Path) -> dict:
    with gzip.open(path, "rt") as f:
        return json.load(f)


def _dump(metrics) -> str:
    return json.dumps(metrics, indent=4)


@pytest.mark.parametrize("metric_dir,name", CASES, ids=[f"{d.parent.name}:{n}" for d, n in CASES])
def test_equals_official_metrics_on_tvr_val(metric_dir, name):
    expected = json.loads((metric_dir / f"metrics_{name}.json").read_text())
    sub = _submission(metric_dir / f"submission_{name}.json.gz")
    gt = _gt(_gt_path(metric_dir))
    ours = eval_retrieval(sub, gt, strict=False)  # the fixtures hold negative times and > 100 predictions
    assert _dump(ours) == _dump(expected)  # keys, key order and values

    hits_path = metric_dir / f"per_query_first_hit_{name}.json.gz"
    if hits_path.is_file():
        with gzip.open(hits_path, "rt") as f:
            hits = json.load(f)
        arrays, _ = check_submission(sub, gt, strict=False)
        for task, (preds, rows) in arrays.items():
            ranks = first_hit_ranks(task, preds, gt, rows, sub["video2idx"], (0.5, 0.7))
            for key, r in ranks.items():
                want = [hits[task][str(gt.desc_ids[i])][key] for i in rows]
                got = [None if x == NO_HIT else int(x) for x in r]
                assert got == want, f"{name} {task} {key}"


def test_perturbed_submission_changes_the_metrics():
    metric_dir, name = next((d, n) for d, n in CASES if n == "near_perfect_jitter" and d.parent == OURS)
    sub = dict(_submission(metric_dir / f"submission_{name}.json.gz"))
    gt = _gt(_gt_path(metric_dir))
    expected = json.loads((metric_dir / f"metrics_{name}.json").read_text())
    arrays, _ = check_submission(sub, gt, strict=False)
    preds, rows = arrays["VCMR"]
    ranks = first_hit_ranks("VCMR", preds, gt, rows, sub["video2idx"], (0.7,))["0.7"]
    q = int(np.flatnonzero(ranks == 0)[0])  # a query whose top prediction is correct at IoU 0.7
    sub["VCMR"] = list(sub["VCMR"])  # the cached submission stays intact
    j = next(j for j, e in enumerate(sub["VCMR"]) if str(e["desc_id"]) == str(gt.desc_ids[q]))
    entry = sub["VCMR"][j] = copy.deepcopy(sub["VCMR"][j])
    pred = entry["predictions"][0]
    span = float(gt.ts[q][0][1] - gt.ts[q][0][0])
    entry["predictions"][0] = [pred[0], pred[1] + span, pred[2] + span, pred[3]]  # no overlap any more
    ours = eval_retrieval(sub, gt, strict=False)
    assert ours["VCMR"]["0.7-r1"] == pytest.approx(expected["VCMR"]["0.7-r1"] - 100 / len(gt), abs=0.011)
    assert ours["SVMR"] == expected["SVMR"] and ours["VR"] == expected["VR"]


@pytest.mark.parametrize("d", DIDEMO, ids=[str(d.parent.parent.name) for d in DIDEMO])
def test_didemo_style_equals_official(d, tmp_path):
    expected = json.loads((d / "metrics.json").read_text())
    out = tmp_path / "m.json"
    ours = evaluate_files(d / "submission.json", d / "gt.jsonl", out, strict=False)  # no types -> no by-type blocks
    assert _dump(ours) == _dump(expected)
    assert json.loads(out.read_text()) == expected
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


# ---------------------------------------------------------------------------------------------
# Semantics on hand-made cases
# ---------------------------------------------------------------------------------------------

V2I = {"a": 10, "b": 11, "c": 12}


def _gt_records(n_types=("v", "t", "vt")):
    return [{"desc_id": i, "vid_name": "a", "ts": [10.0, 20.0], "type": n_types[i % len(n_types)]}
            for i in range(3)]


def _sub(vcmr=None, svmr=None, vr=None):
    out = {"video2idx": V2I}
    for name, lists in (("VCMR", vcmr), ("SVMR", svmr), ("VR", vr)):
        if lists is not None:
            out[name] = [{"desc_id": i, "desc": "", "predictions": p} for i, p in enumerate(lists)]
    return out


def test_ranks_tasks_and_percentages():
    gt = _gt_records()
    hit = [10, 10.0, 20.0, 1.0]        # exact GT span
    wrong_vid = [11, 10.0, 20.0, 1.0]  # GT span on another video
    half = [10, 10.0, 30.0, 1.0]       # IoU exactly 0.5
    vcmr = [[hit], [wrong_vid, half], [wrong_vid] * 10 + [hit]]
    m = eval_retrieval(_sub(vcmr=vcmr, svmr=vcmr, vr=[[[11, 0, 0, 1]] * 4 + [[10, 0, 0, 1]]] * 3), gt)
    third = rounded_percentage(1, 3)
    assert third == 33.33
    assert m["VCMR"]["0.5-r1"] == third and m["VCMR"]["0.5-r5"] == 66.67 and m["VCMR"]["0.5-r100"] == 100.0
    assert m["VCMR"]["0.7-r10"] == third and m["VCMR"]["0.7-r100"] == 66.67
    # SVMR drops the wrong-video entries first: query 2 hits at rank 1 there
    assert m["SVMR"]["0.5-r1"] == 100.0 and m["SVMR"]["0.7-r1"] == 66.67
    # VR: duplicated wrong videos take up ranks
    assert m["VR"]["r1"] == 0.0 and m["VR"]["r5"] == 100.0
    assert list(m) == ["VCMR", "SVMR", "VR", "VCMR_by_type", "SVMR_by_type", "VR_by_type"]
    assert m["VCMR_by_type"]["v-0.5-r1"] == 100.0 and m["VCMR_by_type"]["t-0.5-r1"] == 0.0
    assert m["VCMR_by_type"]["desc_type_ratio"] == "v 33.33 t 33.33 vt 33.33"
    assert list(m["VR_by_type"])[:2] == ["v-r1", "v-r5"]


def test_only_first_100_predictions_count():
    gt = _gt_records()
    late = [[11, 0.0, 1.0, 1.0]] * 100 + [[10, 10.0, 20.0, 1.0]]
    m = eval_retrieval(_sub(vcmr=[late] * 3, vr=[late] * 3), gt, strict=False)
    assert m["VCMR"]["0.5-r100"] == 0.0 and m["VR"]["r100"] == 0.0
    early = late[1:]
    assert eval_retrieval(_sub(vcmr=[early] * 3), gt)["VCMR"]["0.5-r100"] == 100.0


def test_iou_threshold_compared_in_float32():
    # true IoU 0.7 - 1e-9 rounds to 0.7 in float32 and counts, as in the official evaluator
    gt = [{"desc_id": 0, "vid_name": "a", "ts": [0.0, 1.0], "type": "v"}]
    sub = _sub(vcmr=[[[10, 0.0, 0.7 - 1e-9, 1.0]]])
    assert eval_retrieval(sub, gt)["VCMR"]["0.7-r1"] == 100.0
    sub = _sub(vcmr=[[[10, 0.0, 0.69, 1.0]]])
    assert eval_retrieval(sub, gt)["VCMR"]["0.7-r1"] == 0.0


def test_didemo_rule_needs_two_spans():
    spans = [[0.0, 5.0], [5.0, 10.0], [20.0, 25.0], [20.0, 25.0]]
    gt = [{"desc_id": 0, "vid_name": "a", "ts": spans, "type": None}]
    one = _sub(vcmr=[[[10, 0.0, 5.0, 1.0]]])       # matches only the first span
    dup = _sub(vcmr=[[[10, 20.0, 25.0, 1.0]]])     # matches a span given twice
    wide = _sub(vcmr=[[[10, 0.0, 10.0, 1.0]]])     # IoU 0.5 with two spans
    assert eval_retrieval(one, gt, use_desc_type=False)["VCMR"]["0.5-r1"] == 0.0
    assert eval_retrieval(dup, gt, use_desc_type=False)["VCMR"]["0.7-r1"] == 100.0
    assert eval_retrieval(wide, gt, use_desc_type=False)["VCMR"]["0.5-r1"] == 100.0
    assert eval_retrieval(wide, gt, use_desc_type=False)["VCMR"]["0.7-r1"] == 0.0


def test_absent_type_gives_nan_and_auto_detection():
    gt = [{"desc_id": 0, "vid_name": "a", "ts": [0.0, 1.0], "type": "v"}]
    m = eval_retrieval(_sub(vr=[[[10, 0, 0, 1]]]), gt)
    assert m["VR_by_type"]["v-r1"] == 100.0 and np.isnan(m["VR_by_type"]["t-r1"])
    untyped = [{"desc_id": 0, "vid_name": "a", "ts": None}]  # VR-only GT (MSR-VTT)
    assert list(eval_retrieval(_sub(vr=[[[10, 0, 0, 1]]]), untyped, use_desc_type=None)) == ["VR"]
    with pytest.raises(HeroError, match="no 'type'"):
        eval_retrieval(_sub(vr=[[[10, 0, 0, 1]]]), untyped)


def test_partial_submission_with_match_number_false():
    gt = _gt_records()
    sub = _sub(vcmr=[[[10, 10.0, 20.0, 1]]])
    m = eval_retrieval(sub, gt, match_number=False)
    assert m["VCMR"]["0.5-r1"] == 100.0
    with pytest.raises(HeroError, match="VCMR: 2 of 3 ground-truth queries missing from the submission; "
                                        "first at desc_id 1"):
        eval_retrieval(sub, gt)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def test_malformed_submission_lists_every_problem():
    gt = _gt_records() + [{"desc_id": 3, "vid_name": "zzz", "ts": [0, 1], "type": "v"}]
    sub = _sub(vcmr=[[[99, 1.0, 2.0, 0.5]], [], [["x", 1, 2, 3]]], vr=[[[10, 0, 0, 1]], [[10, 0, float("nan"), 1]],
                                                                    [[10.5, 0, 0, 1]], [[10, 0, 0, 1]]])
    sub["VR"].append({"desc_id": 0, "predictions": [[10, 0, 0, 1]]})
    with pytest.raises(HeroError) as err:
        eval_retrieval(sub, gt)
    msg = str(err.value)
    assert "\n" not in msg
    for part in ("1 ground-truth video missing from video2idx (e.g. 'zzz')",
                 "VCMR: 1 of 4 ground-truth queries missing from the submission; first at desc_id 3",
                 "VCMR: 1 query with an empty prediction list; first at desc_id 1",
                 "VCMR: 1 query with malformed predictions",
                 "VR: 1 desc_id given twice; first at desc_id 0",
                 "VR: 1 prediction with a non-finite video_idx, st or ed; first at desc_id 1",
                 "VR: 1 prediction whose video_idx is not an integer; first at desc_id 2"):
        assert part in msg, msg
    sub = _sub(vcmr=[[[99, 1.0, 2.0, 0.5]], [[10, 1, 2, 3]], [[10, 1, 2, 3]]])
    with pytest.raises(HeroError, match=r"VCMR: 1 prediction with a video_idx not in video2idx; "
                                        r"first at desc_id 0: \[99.0, 1.0, 2.0, 0.5\]"):
        eval_retrieval(sub, _gt_records())


def test_submission_shape_errors():
    gt = _gt_records()
    with pytest.raises(HeroError, match="video2idx"):
        eval_retrieval({"VR": []}, gt)
    with pytest.raises(HeroError, match="none of the tasks"):
        eval_retrieval({"video2idx": V2I}, gt)


def test_inverted_spans_are_scored_with_a_warning():
    gt = _gt_records()
    notes: list[str] = []
    m = eval_retrieval(_sub(vcmr=[[[10, 20.0, 10.0, 1]]] * 3), gt, warnings=notes)
    assert m["VCMR"]["0.5-r100"] == 0.0
    assert notes and "3 predictions with st > ed" in notes[0]


def test_ground_truth_errors_name_file_and_line(tmp_path):
    good = json.dumps({"desc_id": 1, "vid_name": "a", "ts": [0, 1], "type": "v"})
    cases = {
        "{not json": "invalid JSON",
        json.dumps({"vid_name": "a", "ts": [0, 1]}): "missing or invalid 'desc_id'",
        json.dumps({"desc_id": 2, "vid_name": "a", "ts": [0, "x"]}): "'ts' must be",
        json.dumps({"desc_id": 2, "vid_name": "a", "ts": [[0, 1], [1, 2]]}): "list of 2 spans",
        json.dumps({"desc_id": 2, "vid_name": "a", "ts": [0, 1], "type": "q"}): "'type' must be one of",
        good: "already used at",
    }
    for line, message in cases.items():
        path = tmp_path / "gt.jsonl"
        path.write_text(good + "\n\n" + line + "\n")
        with pytest.raises(HeroError, match=message) as err:
            load_ground_truth(path)
        assert f"{path}:3" in str(err.value)
    with pytest.raises(HeroError, match="no such file"):
        load_ground_truth(tmp_path / "absent.jsonl")


def test_corpus_annotation_records_are_accepted():
    gt = parse_ground_truth([{"qid": "q1", "vid": "a", "ts": [10, 20], "type": "v", "input_ids": [5]}])
    sub = {"video2idx": V2I, "VCMR": [{"desc_id": "q1", "predictions": [[10, 10, 20, 1]]}]}
    assert eval_retrieval(sub, gt)["VCMR"]["0.7-r1"] == 100.0


# ---------------------------------------------------------------------------------------------
# Strict submission checks (issue 14, defects 3 and 19)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad,message", [
    ([10, "10.0", 20.0, 1.0], r"VCMR: 1 quer\w+ with malformed predictions.*desc_id 1.*st is '10.0' \(a str\)"),
    ([10, 10.0, 20.0, True], r"score is True \(a bool\)"),
    ([10, 10.0, None, 1.0], r"ed is None"),
    ([10, 10.0, 20.0], r"has 3 values, not 4"),
    ([10, 10.0, 20.0, float("nan")], r"VCMR: 1 non-finite score; first at desc_id 1"),
    ([10, float("inf"), 20.0, 1.0], r"VCMR: 1 prediction with a non-finite video_idx, st or ed; first at desc_id 1"),
    ([10, -5.0, 20.0, 1.0], r"VCMR: 1 prediction with a negative time; first at desc_id 1"),
    ([10, 10.0, 1e9, 1.0], r"VCMR: 1 prediction with a time over 86400 s; first at desc_id 1"),
])
def test_strict_prediction_values(bad, message):
    good = [10, 10.0, 20.0, 1.0]
    with pytest.raises(HeroError, match=message) as err:
        eval_retrieval(_sub(vcmr=[[good], [good, bad], [good]]), _gt_records())
    assert "\n" not in str(err.value)


def test_non_finite_scores_are_counted_with_the_first_desc_id():
    nan = [10, 10.0, 20.0, float("nan")]
    sub = _sub(vcmr=[[[10, 10.0, 20.0, 1.0]], [nan] * 3, [nan]], vr=[[[10, 0, 0, float("-inf")]]] * 3)
    with pytest.raises(HeroError) as err:
        eval_retrieval(sub, _gt_records())
    msg = str(err.value)
    assert "VCMR: 4 non-finite scores; first at desc_id 1" in msg
    assert "VR: 3 non-finite scores; first at desc_id 0" in msg


def test_more_than_100_predictions_is_an_error_unless_lenient():
    gt = _gt_records()
    many = [[10, 10.0, 20.0, 1.0]] * 101
    with pytest.raises(HeroError, match=r"VCMR: 3 queries with more than 100 predictions .*; "
                                        r"first at desc_id 0 \(101\)"):
        eval_retrieval(_sub(vcmr=[many] * 3), gt)
    notes: list[str] = []
    assert eval_retrieval(_sub(vcmr=[many] * 3), gt, strict=False, warnings=notes)["VCMR"]["0.5-r1"] == 100.0
    assert any("more than 100" in n for n in notes)


def test_negative_times_are_scored_when_lenient():
    notes: list[str] = []
    m = eval_retrieval(_sub(vcmr=[[[10, -10.0, 20.0, 1.0]]] * 3), _gt_records(), strict=False, warnings=notes)
    assert m["VCMR"]["0.5-r1"] == 0.0 and any("negative" in n for n in notes)


def test_submission_errors_name_the_file_once(tmp_path):
    gt = tmp_path / "gt.jsonl"
    gt.write_text("\n".join(json.dumps(r) for r in _gt_records()) + "\n")
    sub = tmp_path / "sub.json"
    sub.write_text("{not json")
    with pytest.raises(HeroError) as err:
        evaluate_files(sub, gt)
    assert str(err.value).count(str(sub)) == 1
    sub.write_text(json.dumps(_sub(vcmr=[[[10, 10.0, 20.0, float("nan")]]] * 3)))
    with pytest.raises(HeroError) as err:
        evaluate_files(sub, gt)
    assert str(err.value).startswith(f"{sub}: VCMR: 3 non-finite scores; first at desc_id 0")
    assert str(err.value).count(str(sub)) == 1


def test_submission_desc_id_must_be_a_string_or_an_integer():
    sub = _sub(vcmr=[[[10, 10.0, 20.0, 1.0]]] * 3)
    sub["VCMR"][1]["desc_id"] = True
    with pytest.raises(HeroError, match=r"VCMR: 1 entry without .*first at VCMR\[1\]"):
        eval_retrieval(sub, _gt_records())


def test_files_of_another_task_are_named(tmp_path):
    gt = tmp_path / "gt.jsonl"
    gt.write_text("\n".join(json.dumps(r) for r in _gt_records()) + "\n")
    sub = tmp_path / "sub.json"
    sub.write_text(json.dumps({"1-0": 0, "1-1": 1}))
    with pytest.raises(HeroError, match=r"sub.json: this looks like a violin prediction file, not a retrieval"):
        evaluate_files(sub, gt)
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"qid": 1, "vid": "a", "q": "?", "answers": ["x"] * 5, "answer_idx": 0,
                              "ts": [0, 1]}) + "\n")
    with pytest.raises(HeroError, match=r"qa.jsonl: this annotation file is for qa, not retrieval"):
        load_ground_truth(qa)
