"""``hero eval retrieval|qa|violin|caption``: printed and written metrics, atomic output, exit status 2
with a clear message on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hero.cli import COMMANDS, main

DIDEMO = Path(__file__).parent / "fixtures" / "official_data_eval" / "tvr_metric" / "didemo_style"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_registered_with_its_kinds(capsys):
    """``hero eval`` is in the command table, lists exactly the kinds of `hero.eval.kinds.EVAL_KINDS`
    (the four official ones first, in their order), and wants one."""
    from hero.eval.kinds import EVAL_KINDS
    assert "eval" in COMMANDS
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    section = out.split("positional arguments:")[1].split("options:")[0]
    listed = [line.split()[0] for line in section.splitlines() if line.startswith("    ") and line[4] != " "]
    assert listed == list(EVAL_KINDS) and listed[:4] == ["retrieval", "qa", "violin", "caption"]
    assert "open_qa" in listed
    for kind in listed:
        with pytest.raises(SystemExit) as exit_:
            main(["eval", kind, "--help"])
        assert exit_.value.code == 0 and capsys.readouterr().out.startswith(f"usage: hero eval {kind} ")
    with pytest.raises(SystemExit) as exit_:
        main(["eval"])
    assert exit_.value.code == 2 and "hero eval" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "bleu"])
    assert exit_.value.code == 2 and "invalid choice: 'bleu'" in capsys.readouterr().err


def test_retrieval_prints_and_writes_official_metrics(tmp_path, capsys):
    out = tmp_path / "res" / "metrics.json"
    # the fixture holds a negative start time (-0.5 s), which the official evaluator scores: --lenient
    rc, stdout, stderr = _run(capsys, "eval", "retrieval", "--submission", str(DIDEMO / "submission.json"),
                              "--gt", str(DIDEMO / "gt.jsonl"), "--out", str(out), "--lenient")
    expected = json.loads((DIDEMO / "metrics.json").read_text())
    assert rc == 0
    assert json.loads(stdout) == expected
    assert json.loads(out.read_text()) == expected
    assert sorted(p.name for p in out.parent.iterdir()) == ["metrics.json"]  # no temporary left behind
    assert "wrote" in stderr


def test_retrieval_by_type_switches(tmp_path, capsys):
    gt = tmp_path / "gt.jsonl"
    gt.write_text("\n".join(json.dumps({"desc_id": i, "vid_name": "a", "ts": [0, 10], "type": "v"})
                            for i in range(2)) + "\n")
    sub = tmp_path / "sub.json"
    sub.write_text(json.dumps({"video2idx": {"a": 3}, "VR": [{"desc_id": i, "predictions": [[3, 0, 0, 1.0]]}
                                                              for i in range(2)]}))
    rc, stdout, _ = _run(capsys, "eval", "retrieval", "--submission", str(sub), "--gt", str(gt))
    assert rc == 0 and list(json.loads(stdout)) == ["VR", "VR_by_type"]
    rc, stdout, _ = _run(capsys, "eval", "retrieval", "--submission", str(sub), "--gt", str(gt), "--no-by-type")
    assert rc == 0 and list(json.loads(stdout)) == ["VR"]
    assert json.loads(stdout)["VR"]["r1"] == 100.0


def test_retrieval_malformed_submission_exits_2(tmp_path, capsys):
    sub = json.loads((DIDEMO / "submission.json").read_text())
    sub["VCMR"] = sub["VCMR"][5:]
    sub["VR"][0]["predictions"][0][0] = 123456
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(sub))
    out = tmp_path / "m.json"
    rc, _, stderr = _run(capsys, "eval", "retrieval", "--submission", str(bad), "--gt", str(DIDEMO / "gt.jsonl"),
                         "--out", str(out))
    assert rc == 2
    assert str(bad) in stderr
    assert "VCMR: 5 of 240 ground-truth queries missing from the submission" in stderr
    assert "VR: 1 prediction with a video_idx not in video2idx; first at desc_id" in stderr
    assert stderr.count(str(bad)) == 1 and len(stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_retrieval_bad_ground_truth_names_the_line(tmp_path, capsys):
    gt = tmp_path / "gt.jsonl"
    gt.write_text((DIDEMO / "gt.jsonl").read_text().splitlines()[0] + "\n{\"desc_id\": 1}\n")
    rc, _, stderr = _run(capsys, "eval", "retrieval", "--submission", str(DIDEMO / "submission.json"),
                         "--gt", str(gt))
    assert rc == 2 and f"{gt}:2" in stderr


def test_qa_and_violin(tmp_path, capsys):
    qa_gt = tmp_path / "qa.jsonl"
    qa_gt.write_text("\n".join(json.dumps({"qid": str(i), "vid": "a", "q": "?", "answers": ["x"] * 5,
                                           "answer_idx": i % 5}) for i in range(4)) + "\n")
    qa_pred = tmp_path / "qa.json"
    qa_pred.write_text(json.dumps({"0": 0, "1": 1, "2": 0, "3": 0}))
    out = tmp_path / "qa_metrics.json"
    rc, stdout, _ = _run(capsys, "eval", "qa", "--pred", str(qa_pred), "--gt", str(qa_gt), "--out", str(out))
    assert rc == 0 and json.loads(stdout)["accuracy"] == 50.0 and json.loads(out.read_text())["accuracy"] == 50.0

    v_gt = tmp_path / "violin.jsonl"
    v_gt.write_text("\n".join(json.dumps({"qid": f"s{i}", "vid": "a", "statement": ".", "label": i % 2})
                              for i in range(4)) + "\n")
    v_pred = tmp_path / "violin.json"
    v_pred.write_text(json.dumps({"s0": 0, "s1": 1, "s2": 0, "s3": 0}))
    rc, stdout, _ = _run(capsys, "eval", "violin", "--pred", str(v_pred), "--gt", str(v_gt))
    assert rc == 0 and json.loads(stdout)["accuracy"] == 75.0
    v_pred.write_text(json.dumps({"s0": 0}))
    rc, _, stderr = _run(capsys, "eval", "violin", "--pred", str(v_pred), "--gt", str(v_gt))
    assert rc == 2 and "s1" in stderr


def test_open_qa(tmp_path, capsys):
    """The open-ended QA kind (task ``video_qa_open``): exact match with the answer string, per
    ``q_type`` too; a missing prediction and a non-string answer exit 2 naming the qid."""
    gt = tmp_path / "msrvtt_qa.jsonl"
    gt.write_text("\n".join(json.dumps({"qid": str(i), "vid": "a", "q": "what?", "q_ids": [5], "answer": a,
                                        "q_type": t})
                            for i, (a, t) in enumerate([("dog", "what"), ("man", "who"), ("car", "what"),
                                                        ("two", "how")])) + "\n")
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"0": "dog", "1": "woman", "2": "car", "3": "two"}))
    out = tmp_path / "m.json"
    rc, stdout, stderr = _run(capsys, "eval", "open_qa", "--pred", str(pred), "--gt", str(gt), "--out", str(out))
    metrics = json.loads(stdout)
    assert rc == 0 and "wrote" in stderr and json.loads(out.read_text()) == metrics
    assert metrics["accuracy"] == 75.0 and metrics["num_questions"] == 4.0
    assert metrics["accuracy/what"] == 100.0 and metrics["accuracy/who"] == 0.0
    pred.write_text(json.dumps({"0": "dog", "1": "man", "2": "car"}))
    rc, _, stderr = _run(capsys, "eval", "open_qa", "--pred", str(pred), "--gt", str(gt))
    assert rc == 2 and "'3'" in stderr
    pred.write_text(json.dumps({"0": "dog", "1": "man", "2": "car", "3": 2}))
    rc, _, stderr = _run(capsys, "eval", "open_qa", "--pred", str(pred), "--gt", str(gt))
    assert rc == 2 and "must be a string" in stderr


def test_caption(tmp_path, capsys):
    refs = tmp_path / "refs.jsonl"
    refs.write_text("\n".join(json.dumps({"clip_id": i, "descs": [{"desc": d}]})
                              for i, d in enumerate(["Joey eats a sandwich.", "Ross opens the door."])) + "\n")
    pred = tmp_path / "pred.jsonl"
    pred.write_text("\n".join(json.dumps({"clip_id": i, "descs": [{"desc": d}]})
                              for i, d in enumerate(["Joey eats a sandwich.", "Ross opens the door."])) + "\n")
    rc, stdout, _ = _run(capsys, "eval", "caption", "--pred", str(pred), "--gt", str(refs), "--no-meteor")
    metrics = json.loads(stdout)
    assert rc == 0 and "METEOR" not in metrics
    assert metrics["ROUGE_L"] == pytest.approx(100.0)


def test_unknown_kind_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as err:
        main(["eval", "bleu"])
    assert err.value.code == 2


# ---------------------------------------------------------------------------------------------
# Issue 14: what fine-tuning writes is what `hero eval caption` reads (defect 13); task mix-ups
# are named (defect 14)
# ---------------------------------------------------------------------------------------------


def _no_java(monkeypatch):
    import hero.eval.captioning as metrics

    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)


def test_caption_reads_a_json_array_of_records(tmp_path, capsys, monkeypatch):
    _no_java(monkeypatch)
    refs = tmp_path / "val.jsonl"  # a corpus annotation file
    refs.write_text("\n".join(json.dumps({"clip_id": i, "vid": "a", "ts": [0, 1], "captions": [{"desc": d}]})
                              for i, d in enumerate(["Joey eats a sandwich.", "Ross opens the door."])) + "\n")
    pred = tmp_path / "tvc_val_step2.json"  # what fine-tuning wrote before it used the TVC writer
    pred.write_text(json.dumps([{"vid_name": "a", "clip_id": i, "ts": [0, 1], "descs": [{"desc": d}]}
                                for i, d in enumerate(["Joey eats a sandwich.", "Ross opens a door."])]))
    rc, stdout, stderr = _run(capsys, "eval", "caption", "--pred", str(pred), "--gt", str(refs), "--no-meteor")
    assert rc == 0, stderr
    assert 50 < json.loads(stdout)["Bleu_1"] < 100


def test_caption_with_files_of_another_task(tmp_path, capsys, monkeypatch):
    _no_java(monkeypatch)
    tvr = tmp_path / "tvr.jsonl"
    tvr.write_text(json.dumps({"qid": 1, "vid": "a", "desc": "x", "ts": [0, 1]}) + "\n")
    rc, _, stderr = _run(capsys, "eval", "caption", "--pred", str(tvr), "--gt", str(tvr))
    assert rc == 2 and f"{tvr}:1: this looks like a retrieval record, not captioning" in stderr


@pytest.mark.slow
def test_caption_scores_the_predictions_fine_tuning_writes(tmp_path, capsys, monkeypatch):
    from reliability.matrix import Workspace

    _no_java(monkeypatch)
    ws = Workspace(tmp_path / "ws", tmp_path / "shared")
    corpus = ws.corpus()
    config = tmp_path / "tvc.yaml"
    config.write_text(
        f"output_dir: {tmp_path / 'run'}\ntask: tvc\ndataset: tvc\ncorpus: {corpus}\nmodel: {{preset: hero-tiny}}\n"
        "task_config: {max_gen_step: 4, num_attention_heads: 4, intermediate_size: 64, max_position_embeddings: 64}\n"
        "eval_batch_size: 4\noptim: {lr: 1.0e-3, warmup_steps: 1}\n"
        "train: {num_train_steps: 1, batch_size: 2, num_workers: 0, save_every: 1, progress: false, device: cpu}\n")
    rc, _, stderr = _run(capsys, "finetune", "--config", str(config))
    assert rc == 0, stderr
    [pred] = (tmp_path / "run" / "predictions").iterdir()
    assert pred.name == "tvc_val_step1.jsonl"
    rc, stdout, stderr = _run(capsys, "eval", "caption", "--pred", str(pred),
                              "--gt", str(corpus / "annotations" / "tvc" / "val.jsonl"), "--no-meteor")
    assert rc == 0, stderr
    finetuned = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert json.loads(stdout)["CIDEr"] == pytest.approx(finetuned["CIDEr"])
