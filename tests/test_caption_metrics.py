"""Caption metrics: our wrapper against pycocoevalcap called directly, the official preprocessing,
file loading and its errors, and the no-Java fallback."""

from __future__ import annotations

import gzip
import json
import shutil

import pytest

import hero.eval.captioning as metrics
from hero.errors import HeroError
from hero.eval.captioning import (
    caption_metrics,
    clean_caption,
    evaluate_files,
    load_tvc_predictions,
    load_tvc_references,
    simple_tokenize,
)

requires_java = pytest.mark.skipif(shutil.which("java") is None, reason="needs a Java runtime")

# A fixed set with non-ASCII text, an empty hypothesis, one that is only punctuation, padding
# whitespace, and integer and string clip ids (both occur in the wild).
REFERENCES = {
    86618: ["Rachel walks up to Phoebe and Phoebe turns around.", "Rachel approaches Phoebe, who turns around."],
    86619: ["Joey eats a sandwich in the kitchen.", "Joey is eating a big sandwich.", "Joey eats."],
    86620: ["Monica says \u201chello\u201d to the caf\u00e9 owner.", "Monica greets the owner of the café."],
    86621: ["Ross doesn't know what's going on.", "Ross is confused!"],
    "86622": ["  Chandler   hands Monica a cup of coffee.  ", "Chandler gives Monica coffee \u2014 she smiles."],
    86623: ["Sheldon (angry) tells Leonard 'no'.", "Sheldon refuses Leonard's request."],
}
PREDICTIONS = {
    86618: "Rachel walks to Phoebe and Phoebe turns around.",
    86619: "",
    86620: "Monica says hello to the caf\u00e9 owner\u2026",
    86621: "Ross does n't know what is going on",
    "86622": "  Chandler hands   coffee to Monica. ",
    86623: "...",
}


def official(texts):
    """HERO ``eval/tvc.py``: strip, then every non-ASCII character becomes a space."""
    return ["".join(c if ord(c) < 128 else " " for c in t.strip()) for t in texts]


def direct_scores(with_meteor: bool):
    """The official evaluator's computation, with pycocoevalcap called directly."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": c} for c in official(v)] for k, v in REFERENCES.items()})
    res = tok.tokenize({k: [{"caption": c} for c in official([PREDICTIONS[k]])] for k in REFERENCES})
    assert res[86619] == [""] and res[86623] == [""]  # the empty hypotheses really are empty
    out = {}
    for n, v in enumerate(Bleu(4).compute_score(gts, res, verbose=0)[0], 1):
        out[f"Bleu_{n}"] = v * 100
    if with_meteor:
        out["METEOR"] = Meteor().compute_score(gts, res)[0] * 100
    out["ROUGE_L"] = Rouge().compute_score(gts, res)[0] * 100
    out["CIDEr"] = Cider().compute_score(gts, res)[0] * 100
    return out


@pytest.mark.java
@requires_java
def test_equals_pycocoevalcap_exactly():
    ours = caption_metrics(PREDICTIONS, REFERENCES, meteor=False)
    assert ours == direct_scores(with_meteor=False)
    assert list(ours) == ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"]
    assert 0 < ours["CIDEr"] and 0 < ours["Bleu_4"] < ours["Bleu_1"] < 100


@pytest.mark.slow  # METEOR's Java start-up takes about 10 s, twice here
@pytest.mark.java
@requires_java
def test_equals_pycocoevalcap_exactly_with_meteor():
    ours = caption_metrics(PREDICTIONS, REFERENCES)
    expected = direct_scores(with_meteor=True)
    assert ours == expected
    assert list(ours) == list(metrics.METRICS)


def test_perturbed_prediction_changes_the_scores(monkeypatch):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    with pytest.warns(RuntimeWarning):
        base = caption_metrics(PREDICTIONS, REFERENCES)
        other = caption_metrics({**PREDICTIONS, 86618: "Phoebe sits."}, REFERENCES)
    assert other["CIDEr"] < base["CIDEr"] and other["Bleu_1"] < base["Bleu_1"]


def test_mismatched_ids_are_listed():
    preds = {k: v for k, v in PREDICTIONS.items() if k != 86620}
    preds[999] = "extra"
    preds["86618"] = "a string id that is not the integer id"
    with pytest.raises(HeroError) as err:
        caption_metrics(preds, REFERENCES)
    message = str(err.value)
    assert "1 reference clip(s) have no prediction: [86620]" in message
    assert "2 predicted clip(s) have no reference: [999, '86618']" in message
    with pytest.raises(HeroError, match="no reference caption"):
        caption_metrics({1: "a"}, {1: []})
    with pytest.raises(HeroError, match="caption strings"):
        caption_metrics({1: ["a list"]}, {1: ["a"]})


def test_clean_caption_is_the_official_preprocessing():
    assert clean_caption("  Caf\u00e9 \u201cnoir\u201d \n") == "Caf   noir "  # stripped before the replacement
    assert clean_caption("a\rb\nc") == "a b c"  # a line break would shift the tokenizer's lines
    assert clean_caption("") == ""


def test_without_java_meteor_is_skipped_and_tokenisation_is_pure_python(monkeypatch):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    with pytest.warns(RuntimeWarning, match="METEOR is skipped"):
        ours = caption_metrics(PREDICTIONS, REFERENCES)
    assert list(ours) == ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"]
    gts = {k: [simple_tokenize(c) for c in official(v)] for k, v in REFERENCES.items()}
    res = {k: [simple_tokenize(c) for c in official([PREDICTIONS[k]])] for k in REFERENCES}
    bleu = Bleu(4).compute_score(gts, res, verbose=0)[0]
    assert [ours[f"Bleu_{n}"] for n in range(1, 5)] == [b * 100 for b in bleu]
    assert ours["ROUGE_L"] == Rouge().compute_score(gts, res)[0] * 100
    assert ours["CIDEr"] == Cider().compute_score(gts, res)[0] * 100
    with pytest.raises(HeroError, match="no `java` executable"):
        caption_metrics(PREDICTIONS, REFERENCES, java=True)


CAPTION_TEXT = [
    "Ross (standing) says \"hi\" to Rachel.", "He doesn't know what's going on; she can't!",
    "Joey's sandwich - it's 3.5 inches... wow?", "They're at Monica's apartment, aren't they",
    "A man's hat: red/blue & green $5 100% #1", "I'm gonna do it, you won't",
    "Sheldon [laughing] {x} tells Leonard 'no'", "e-mail U.S. Mr. Smith 10:30 1,000", "He said `yes' and ``no''",
    "Chandler walks in and hands Monica a cup of coffee.",
    "House tells the patient: \"You're dying\".", "The man -- who is angry -- yells at Castle!",
    "Dr. Cuddy walks away from Dr. House.", "Phoebe sings 'Smelly Cat' on the couch?!", "WHAT ARE YOU DOING?",
    "Ted said we'd go, and we'll go, they've said", "Foreman explains  the test  results.", "",
    "He's goin' home", "the boys' room", "It's Ross's turn.", "What?? Really...", "They walk in. Then they sit.",
    "a 50-50 chance at 5 p.m.",
]


@pytest.mark.java
@requires_java
def test_python_tokenisation_agrees_with_ptb_on_caption_text():
    tokenized = metrics.ptb_tokenize({i: [clean_caption(t)] for i, t in enumerate(CAPTION_TEXT)})
    ptb = [tokenized[i][0] for i in range(len(CAPTION_TEXT))]
    assert [simple_tokenize(clean_caption(t)) for t in CAPTION_TEXT] == ptb


def test_simple_tokenize_rules():
    assert simple_tokenize("Ross doesn't see Rachel's (red) hat.") == "ross does n't see rachel 's -lrb- red -rrb- hat"
    assert simple_tokenize("It costs $1,000 at 10:30, ok?") == "it costs $ 1,000 at 10:30 ok"
    assert simple_tokenize("Mr. Smith left U.S. soil...") == "mr. smith left u.s. soil"


# -- files ---------------------------------------------------------------------------------------


def write_jsonl(path, records, raw_lines=()):
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "".join(raw_lines))
    return path


def test_loaders_read_the_official_format(tmp_path):
    preds = write_jsonl(tmp_path / "pred.jsonl", [
        {"vid_name": "friends_s01e01_seg01_clip_00", "clip_id": 1, "ts": [0, 2],
         "descs": [{"desc": "a"}, {"desc": "b"}]},
        {"clip_id": "2", "descs": [{"desc": ""}]},
    ], raw_lines=["\n"])
    assert load_tvc_predictions(preds) == {1: "a", "2": ""}  # only the first desc counts
    refs = [{"clip_id": 1, "descs": [{"desc": "x", "type": "v", "desc_id": 7}, {"desc": "y"}]},
            {"clip_id": "2", "captions": [{"desc": "z", "desc_id": 8, "input_ids": [5]}]}]  # a corpus annotation line
    gz = tmp_path / "ref.jsonl.gz"
    with gzip.open(gz, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in refs)
    assert load_tvc_references(gz) == {1: ["x", "y"], "2": ["z"]}


@pytest.mark.parametrize("line, message", [
    ("{not json", r"pred\.jsonl:2: invalid JSON"),
    ("[1, 2]", r"pred\.jsonl:2: expected a JSON object"),
    ('{"descs": [{"desc": "a"}]}', r"pred\.jsonl:2: missing 'clip_id'"),
    ('{"clip_id": 5}', r"pred\.jsonl:2: missing 'descs'"),
    ('{"clip_id": 5, "descs": []}', r"pred\.jsonl:2: 'descs' must be a non-empty list"),
    ('{"clip_id": 5, "descs": [{"text": "a"}]}', r"pred\.jsonl:2: descs\[0\] must be an object with a string 'desc'"),
    ('{"clip_id": 1, "descs": [{"desc": "again"}]}', r"pred\.jsonl:2: clip_id 1 predicted twice"),
    ('{"clip_id": [1], "descs": [{"desc": "a"}]}', r"pred\.jsonl:2: 'clip_id' must be an integer or a string"),
])
def test_malformed_prediction_lines_are_named(tmp_path, line, message):
    path = write_jsonl(tmp_path / "pred.jsonl", [{"clip_id": 1, "descs": [{"desc": "a"}]}], raw_lines=[line + "\n"])
    with pytest.raises(HeroError, match=message):
        load_tvc_predictions(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(HeroError, match="nope.jsonl: no such file"):
        load_tvc_references(tmp_path / "nope.jsonl")


def test_evaluate_files_writes_the_metrics(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    pred = write_jsonl(tmp_path / "pred.jsonl",
                       [{"clip_id": k, "descs": [{"desc": v}]} for k, v in PREDICTIONS.items()])
    ref = write_jsonl(tmp_path / "ref.jsonl",
                      [{"clip_id": k, "descs": [{"desc": d} for d in v]} for k, v in REFERENCES.items()])
    out = tmp_path / "out" / "metrics.json"
    with pytest.warns(RuntimeWarning):
        scores = evaluate_files(pred, ref, out)
        assert scores == caption_metrics(PREDICTIONS, REFERENCES)
    assert json.loads(out.read_text()) == scores
    assert [p.name for p in out.parent.iterdir()] == ["metrics.json"]


def test_a_failing_meteor_is_reported_not_hung(monkeypatch):
    """pycocoevalcap's Meteor keeps its lock when the Java process dies, and its __del__ takes the lock."""
    import threading

    import pycocoevalcap.meteor.meteor as meteor_module

    deleted = []

    class DyingMeteor:
        def __init__(self):
            self.lock = threading.Lock()

        def compute_score(self, gts, res):
            self.lock.acquire()
            return float(b"".strip()), []  # what an empty line from a dead process gives

        def __del__(self):
            with self.lock:
                deleted.append(True)

    monkeypatch.setattr(meteor_module, "Meteor", DyingMeteor)
    with pytest.raises(HeroError, match="METEOR .* failed"):
        metrics.score_tokenized({1: ["a b"]}, {1: ["a"]}, meteor=True)
    assert deleted == [True]
