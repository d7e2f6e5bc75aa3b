"""`hero search` and `hero predict` rank moments with one routine (`hero.tasks.retrieval.rank_moments`),
so for the same model, corpus and query they return the same top moments.

Both run under ``span_padding: zeros``: the search index stores real frames only, so it cannot
reproduce the ``reference`` mode (the official padded encodings of each chunk of sorted videos),
which stays `hero predict`'s default for tasks. The index is float32 and searched with ``--exact``,
so video scores are the ones predict computes; the times, videos and ranks must agree, the
scores to float tolerance.
"""

from __future__ import annotations

import json

import pytest

from hero.cli import main
from tests.reliability.matrix import Workspace


@pytest.mark.slow
def test_search_and_predict_return_the_same_top_moments(tmp_path, capsys):
    ws = Workspace(tmp_path / "ws", tmp_path / "shared")
    corpus, run = ws.corpus(), ws.vcmr_run()
    settings = ["vsm.span_padding=zeros", "nms_thd=-1"]
    out = tmp_path / "pred.json"
    assert main(["predict", "--model", str(run), "--corpus", str(corpus), "--dataset", "tvr", "--split", "val",
                 "--out", str(out), "--device", "cpu", *settings]) == 0
    preds = json.loads(out.read_text())
    idx2vid = {i: v for v, i in preds["video2idx"].items()}
    records = {r["qid"]: r for r in map(json.loads, (corpus / "annotations/tvr/val.jsonl").read_text().splitlines())}

    index = tmp_path / "index"
    assert main(["index", "--model", str(run), "--corpus", str(corpus), "--out", str(index), "--dataset", "tvr",
                 "--split", "val", "--dtype", "float32", "--device", "cpu"]) == 0
    # the index records the model's settings; search reads them from the model, so give it the same ones
    from hero.search import SearchIndex

    search = SearchIndex(index, task_overrides={"vsm": {"span_padding": "zeros"}, "nms_thd": -1})
    checked = 0
    for entry in preds["VCMR"][:3]:
        record = records[entry["desc_id"]]
        top = 5
        want = entry["predictions"][:top]
        capsys.readouterr()
        assert main(["search", "--index", str(index), "--top", str(top), "--exact", "--no-nms", "--json",
                     "--device", "cpu", record["desc"]]) == 0
        got_cli = json.loads(capsys.readouterr().out)["moments"]
        got_api = search.search([record["input_ids"]], top=top, exact=True, nms=False)[0]
        assert len(got_cli) == len(want) == len(got_api)
        for w, g, a in zip(want, got_cli, got_api):
            assert (idx2vid[w[0]], w[1], w[2]) == (g["vid"], g["start"], g["end"]) == (a.vid, a.start, a.end)
            assert g["score"] == pytest.approx(w[3], rel=1e-4) and a.score == pytest.approx(w[3], rel=1e-4)
        checked += 1
    assert checked == 3
