"""Open-ended video QA (MSR-VTT-QA style): settings, items, loss, predict/evaluate, records.

The registry test (tests/test_registry.py) covers the task contract; this file the task's own rules.
"""

from __future__ import annotations

import pytest
import torch
from conftest import make_clips
from fake_corpus import FakeCorpus

from hero.data.prepare.common import Malformed, check_record
from hero.data.prepare.video_only import msrvtt_qa_record
from hero.data.problems import Problems
from hero.errors import HeroError
from hero.tasks import get_task
from hero.tasks.open_qa import (
    TASK,
    HeroForVideoQaOpen,
    OpenQaConfig,
    answer_vocabulary,
    collate,
    evaluate,
    loss,
    predict,
    train_items,
)

ANSWERS = ("alice", "bob", "red")


def question(qid, vid, q, answer, q_type=None):
    return {"qid": qid, "vid": vid, "q": "", "q_ids": list(q), "answer": answer, "q_type": q_type}


@pytest.fixture
def corpus(tiny_config):
    clips = make_clips(tiny_config, n=3, seed=4)
    v = [c.vid for c in clips]
    train = [question("0", v[0], [10, 11], "alice", "who"), question("1", v[1], [12], "red", "color"),
             question("2", v[2], [13, 14], "carol", "who"),  # not in the vocabulary
             question("3", "missing", [15], "bob"), question("4", v[0], list(range(4, 70)), "bob")]
    val = [question("a", v[0], [10], "alice", "who"), question("b", v[1], [12], "red", "color"),
           question("c", v[2], [13], "zoe", "who")]
    return FakeCorpus(clips, {("msrvtt_qa", "train"): train, ("msrvtt_qa", "val"): val},
                      vocab_size=tiny_config.vocab_size)


def test_registered_under_its_name_and_dataset():
    assert get_task("video_qa_open") is TASK and get_task("msrvtt_qa") is TASK


@pytest.mark.parametrize("bad", [dict(answers=("a",)), dict(answers=("a", "a")), dict(answers=("a", "")),
                                 dict(answers=ANSWERS, max_txt_len=0)])
def test_bad_settings_are_named(bad):
    with pytest.raises(HeroError, match="OpenQaConfig"):
        OpenQaConfig(**bad)


def test_items_skip_and_count_what_cannot_train(corpus):
    problems = Problems()
    items = train_items(corpus, "msrvtt_qa", "train", OpenQaConfig(answers=ANSWERS), problems)
    assert [(it["qid"], it["target"]) for it in items] == [("0", 0), ("1", 2)]
    assert problems.skipped == {"missing video": 1, "question too long": 1, "answer not in the vocabulary": 1}


def test_model_scores_every_answer_and_learns(corpus, tiny_config):
    cfg = OpenQaConfig(answers=ANSWERS)
    torch.manual_seed(0)
    model = HeroForVideoQaOpen(tiny_config, cfg)
    items = train_items(corpus, "msrvtt_qa", "train", cfg, Problems())
    batch = collate(corpus, items, cfg)
    assert model(batch).shape == (2, len(ANSWERS))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = None
    for _ in range(20):
        out = loss(model, batch, cfg)
        first = first if first is not None else float(out["loss"].detach())
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert float(out["loss"].detach()) < first / 2
    model.eval()
    corpus._annotations[("msrvtt_qa", "seen")] = corpus.annotations("msrvtt_qa", "train")[:2]
    preds = predict(model, corpus, "msrvtt_qa", "seen", cfg, batch_size=2)
    assert preds["0"] == "alice" and preds["1"] == "red"


def test_evaluate_counts_answers_outside_the_vocabulary_as_wrong(corpus):
    cfg = OpenQaConfig(answers=ANSWERS)
    metrics = evaluate({"a": "alice", "b": "bob", "c": "alice"}, corpus, "msrvtt_qa", "val", cfg)
    assert metrics == {"accuracy": pytest.approx(33.33), "accuracy_color": 0.0, "accuracy_who": 50.0}
    with pytest.raises(HeroError, match="no answer for qid 'c'"):
        evaluate({"a": "alice", "b": "red"}, corpus, "msrvtt_qa", "val", cfg)


def test_answer_vocabulary_is_the_most_frequent_answers():
    records = [{"answer": a} for a in ["b", "a", "b", "c", "a", "b", None]]
    assert answer_vocabulary(records, top_k=2) == ["b", "a"]


def test_raw_msrvtt_qa_records_convert_and_check():
    rec = msrvtt_qa_record({"id": 3, "video_id": 7010, "question": "what is a man doing?", "answer": "cook",
                            "category_id": 0})
    assert rec == {"qid": "3", "vid": "video7010", "q": "what is a man doing?", "answer": "cook", "q_type": "0"}
    check_record("open_qa", rec, "train", ids=False)
    with pytest.raises(Malformed, match="answer"):
        check_record("open_qa", {**rec, "answer": 3}, "train", ids=False)
