"""Reference inputs the official code accepts: TVQA ``"NaN-NaN"`` moments, desc_id types, special
tokens of a corpus whose tokenizer is only named, the official ``video2idx``, and prediction files
with a key given twice."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from conftest import make_clips
from fake_corpus import FakeCorpus

from hero.cli import main
from hero.data.reference_db import reference_annotation
from hero.errors import HeroError
from hero.tasks.video_qa import IGNORE, QaConfig, collate, span_target, to_item

FIXTURE = Path(__file__).parent / "fixtures" / "official_vcmr_e2e"


def tvqa_record(ts):
    return {"qid": 7, "q": "why?", **{f"a{i}": f"a{i}" for i in range(5)}, "answer_idx": 2, "vid_name": "v",
            "ts": ts, "input_ids": [[5], [6], [7], [8], [9], [10]]}


# -- TVQA "NaN-NaN" -------------------------------------------------------------------------------


def test_nan_moment_of_a_reference_tvqa_record_is_no_target():
    assert reference_annotation("tvqa", "7", tvqa_record("NaN-NaN"))["ts"] is None
    assert reference_annotation("tvqa", "7", tvqa_record("1.5-3.0"))["ts"] == [1.5, 3.0]


def test_qa_collate_gives_no_target_for_a_nan_moment(tiny_config):
    """A corpus converted before the fix holds ``[NaN, NaN]``: the collate must not raise."""
    clips = make_clips(tiny_config, n=2, seed=1, min_frames=5, max_frames=8)
    records = [{"qid": str(i), "vid": c.vid, "q": "", "answers": [""] * 5, "q_ids": [10], "a_ids": [[20]] * 5,
                "answer_idx": 1, "ts": ts, "q_type": None}
               for i, (c, ts) in enumerate(zip(clips, ([math.nan, math.nan], [0.0, 3.0])))]
    corpus = FakeCorpus(clips, {("tvqa", "train"): records}, tiny_config.vocab_size)
    assert span_target([math.nan, math.nan], 10, 1.5) == (IGNORE, IGNORE)
    assert span_target([0.0, math.inf], 10, 1.5) == (IGNORE, IGNORE)
    batch = collate(corpus, [to_item(r) for r in records], QaConfig())
    assert batch.span_targets.tolist()[0] == [IGNORE, IGNORE]
    assert batch.span_targets.tolist()[1] == list(span_target([0.0, 3.0], clips[1].num_frames, 1.5))


# -- hero data from-reference ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The fixture's reference stores converted with the tokenizer given by name only (offline)."""
    work = tmp_path_factory.mktemp("from_reference")
    shutil.copytree(FIXTURE / "video_db", work / "video_db")
    shutil.copytree(FIXTURE / "txt_db", work / "txt_db")
    out = work / "corpus"
    code = main(["data", "from-reference", "--video-db", str(work / "video_db" / "tv"),
                 "--sub-db", str(work / "txt_db" / "tv_subtitles.db"),
                 "--txt-db", f"tvr:val={work / 'txt_db' / 'tvr_val.db'}",
                 "--tokenizer", "no-such-tokenizer-name", "--out", str(out)])
    assert code == 0
    return work, out


def test_tvr_desc_ids_keep_the_type_of_the_official_ground_truth(converted):
    work, out = converted
    gt = [json.loads(line) for line in (work / "txt_db" / "tvr_val.db" / "query_data.jsonl").read_text().splitlines()]
    records = [json.loads(line) for line in (out / "annotations" / "tvr" / "val.jsonl").read_text().splitlines()]
    assert sorted(r["qid"] for r in records) == sorted(g["desc_id"] for g in gt)
    assert {type(r["qid"]) for r in records} == {type(g["desc_id"]) for g in gt}


def test_special_tokens_of_a_named_tokenizer_come_from_the_db_meta(converted):
    from hero.data.corpus import Corpus

    work, out = converted
    meta = json.loads((work / "txt_db" / "tv_subtitles.db" / "meta.json").read_text())
    info = json.loads((out / "corpus.json").read_text())["tokenizer"]
    assert info["name_or_path"] == "no-such-tokenizer-name" and info["local_dir"] is None
    tokens = Corpus(out).tokens  # the tokenizer itself cannot be loaded
    assert (tokens.cls_id, tokens.pad_id, tokens.sep_id, tokens.unk_id, tokens.mask_id) == (
        meta["CLS"], meta["PAD"], meta["SEP"], meta["UNK"], meta["MASK"])
    assert list(tokens.random_range) == meta["v_range"]


def test_vid2dur_idx_becomes_the_official_video2idx(converted):
    from hero.data.corpus import Corpus
    from hero.tasks.retrieval import read_video2idx, split_videos

    work, out = converted
    released = json.loads((work / "txt_db" / "tv_subtitles.db" / "vid2dur_idx.json").read_text())
    corpus = Corpus(out)
    official = {vid: idx for vid, (_, idx) in released["val"].items()}
    assert read_video2idx(corpus, "tvr", "val") == official
    vids, video2idx = split_videos(corpus, "tvr", "val", corpus.annotations("tvr", "val"))
    assert vids == sorted(official) and video2idx == official


# -- prediction files ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["qa", "violin"])
def test_a_prediction_key_given_twice_is_an_error(tmp_path, kind, capsys):
    gt = tmp_path / "gt.jsonl"
    if kind == "qa":
        gt.write_text(json.dumps({"qid": "1", "vid": "v", "answer_idx": 0}) + "\n"
                      + json.dumps({"qid": "2", "vid": "v", "answer_idx": 1}) + "\n")
        text = '{"1": 0, "2": 1, "1": 3}'
    else:
        gt.write_text(json.dumps({"qid": "1-1", "vid": "v", "label": 1}) + "\n")
        text = '{"1-1": 0, "1-1": 1}'
    pred = tmp_path / "pred.json"
    pred.write_text(text)
    assert main(["eval", kind, "--pred", str(pred), "--gt", str(gt)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(pred) in err[0] and "appears twice" in err[0]
    from hero.eval.classification import read_predictions

    with pytest.raises(HeroError, match="key '1(-1)?' appears twice"):
        read_predictions(pred)
