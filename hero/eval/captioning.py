"""Captioning metrics of the official TVC evaluator (BLEU@1–4, METEOR, ROUGE-L, CIDEr-D).

Equal to the official evaluators (TVCaption ``standalone_eval/evaluate.py`` and HERO's vendored
``eval/tvc.py``, notes §4.3): every caption is stripped and its non-ASCII characters become spaces;
references and hypotheses are tokenised by the Stanford PTB tokenizer (lower-cased, punctuation
dropped) of `pycocoevalcap`; its scorers compute the corpus scores, reported ×100 under the official
names (``Bleu_1`` … ``Bleu_4``, ``METEOR``, ``ROUGE_L``, ``CIDEr``; CIDEr is CIDEr-D, SPICE is off).
Clips are scored in the order of the references (the official order: the reference file's).

**Java.** The PTB tokenizer and METEOR run in Java. Without a ``java`` executable the metrics are
still computed, with a warning: METEOR is left out and captions are tokenised by `simple_tokenize`,
a pure-Python imitation of the PTB rules that agrees with them on ordinary caption text (see the
tests) but not on every corner case, so such scores are close to, not equal to, official ones.

pycocoevalcap's tokenizer writes a temporary file into its own package directory, which must
therefore be writable (it is inside a virtual environment).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hero.errors import HeroError
from hero.eval.formats import annotation_kind
from hero.io import iter_jsonl, write_json_atomic

METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
"""Metric names of the official evaluator, in its order."""

# pycocoevalcap's PTBTokenizer wrapper drops these tokens (its PUNCTUATIONS list, after lower-casing
# only these still match: the bracket tokens come out as "-lrb-" and stay).
_DROPPED = frozenset(["''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";"])
# characters Java or Python treat as line breaks: one would shift every later caption of the
# tokenizer's one-caption-per-line file (the official evaluator keeps them and breaks)
_LINE_BREAKS = re.compile("[\r\n\x0b\x0c\x1c\x1d\x1e]")


def clean_caption(text: str) -> str:
    """The official preprocessing: strip, then every non-ASCII character → a space.

    Line breaks inside a caption also become spaces (see ``_LINE_BREAKS``).
    """
    text = "".join(c if ord(c) < 128 else " " for c in text.strip())
    return _LINE_BREAKS.sub(" ", text)


# ---------------------------------------------------------------------------------------------
# Tokenisation
# ---------------------------------------------------------------------------------------------


# What the Java tokenizer writes to stderr on every run: its token count and java.util.logging
# warnings about control characters (which it drops). Anything else still reaches the user.
_JAVA_CHATTER = re.compile(r"^(PTBTokenizer tokenized |\w{3} \d{1,2}, \d{4} .*edu\.stanford\.nlp\.|"
                           r"WARNING: Untokenizable: )")


@contextlib.contextmanager
def _java_chatter_filtered():
    """Catch what child processes write to file descriptor 2 (pycocoevalcap starts the Java
    tokenizer with its stderr inherited) and pass on only the lines that are not `_JAVA_CHATTER`."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [ln for ln in tmp.read().decode("utf-8", "replace").splitlines()
                    if ln.strip() and not _JAVA_CHATTER.match(ln)]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def ptb_tokenize(captions: Mapping[Hashable, Sequence[str]]) -> dict[Hashable, list[str]]:
    """Stanford PTB tokenisation through pycocoevalcap (one Java run for all captions).

    Returns ``{key: [tokenised caption, ...]}`` with punctuation dropped, as the official evaluator.
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    wanted = {k: [{"caption": c} for c in caps] for k, caps in captions.items()}
    try:
        with _java_chatter_filtered():
            out = PTBTokenizer().tokenize(wanted)
    except OSError as err:  # PermissionError on a read-only site-packages, missing java, ...
        raise HeroError(f"the PTB tokenizer (pycocoevalcap, Java) failed: {err}. It writes a temporary "
                        f"file into the pycocoevalcap package directory, which must be writable") from None
    lost = [k for k, caps in captions.items() if len(out.get(k, ())) != len(caps)]
    if lost:
        raise HeroError(f"the PTB tokenizer returned no output for {len(lost)} clip(s), e.g. {lost[:5]}; "
                        f"is Java working (`java -version`)?")
    return out


_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_ABBREVIATIONS = frozenset(["mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "prof", "mt", "etc"])
_SPLIT_WORDS = {"cannot": ["can", "not"], "gonna": ["gon", "na"], "gotta": ["got", "ta"],
                "wanna": ["wan", "na"], "gimme": ["gim", "me"], "lemme": ["lem", "me"]}
_CLITIC = re.compile(r"^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")
_SYMBOL_SPLIT = re.compile(r"""(\.\.\.|--|[?!]+|[()\[\]{}"$%#;]|,(?!\d)|(?<!\d),|:(?!\d)|(?<!\d):)""")


def _split_word(word: str, last: bool) -> list[str]:
    """PTB-style split of one whitespace-free chunk (no symbol left to separate)."""
    if word in _SPLIT_WORDS:
        return list(_SPLIT_WORDS[word])
    lead, trail = [], []
    while word[:1] in ("'", "`") and len(word) > 1:
        lead.append(word[0])
        word = word[1:]
    if word.endswith(".") and len(word) > 1 and "." not in word[:-1] and (last or word[:-1] not in _ABBREVIATIONS):
        trail.insert(0, ".")
        word = word[:-1]
    while word.endswith(("'", "`")) and len(word) > 1:
        trail.insert(0, word[-1])
        word = word[:-1]
    m = _CLITIC.match(word)
    if m and word not in ("'s", "n't"):
        return [*lead, m.group(1), m.group(2), *trail]
    return [*lead, word, *trail]


def simple_tokenize(text: str) -> str:
    """Pure-Python imitation of the PTB tokenisation used without Java.

    Lower-cases; splits off punctuation, quotes, brackets (written ``-lrb-`` … like PTB), ``$ % #``
    and the clitics ``n't 's 're 've 'll 'd 'm``; splits ``cannot``/``gonna``-style words; keeps
    ``1,000``, ``10:30``, ``u.s.`` and title abbreviations; then drops the punctuation tokens the
    official wrapper drops. Agrees with the Java tokenizer on ordinary caption text.
    """
    text = _SYMBOL_SPLIT.sub(r" \1 ", text.lower())
    chunks = text.split()
    tokens: list[str] = []
    for i, chunk in enumerate(chunks):
        if chunk in _BRACKETS:
            tokens.append(_BRACKETS[chunk])
        elif chunk == '"':
            continue  # PTB turns it into `` or '', both dropped
        else:
            tokens += _split_word(chunk, last=i == len(chunks) - 1)
    return " ".join(t for t in tokens if t not in _DROPPED)


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def check_ids(predictions: Mapping[Hashable, Any], references: Mapping[Hashable, Any]) -> None:
    """Raise a `HeroError` listing clip ids missing from, or unknown to, the predictions."""
    missing = [k for k in references if k not in predictions]
    extra = [k for k in predictions if k not in references]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} reference clip(s) have no prediction: {missing[:10]!r}"
                         + (" ..." if len(missing) > 10 else ""))
        if extra:
            parts.append(f"{len(extra)} predicted clip(s) have no reference: {extra[:10]!r}"
                         + (" ..." if len(extra) > 10 else ""))
        raise HeroError(f"{len(predictions)} predictions for {len(references)} reference clips; " + "; ".join(parts))
    empty = [k for k, refs in references.items() if len(refs) == 0]
    if empty:
        raise HeroError(f"{len(empty)} clip(s) have no reference caption, e.g. {empty[:10]!r}")


def caption_metrics(predictions: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]],
                    java: bool | None = None, meteor: bool = True) -> dict[str, float]:
    """Corpus-level caption metrics ×100, as the official TVC evaluator.

    Args:
        predictions: ``{clip_id: caption}`` (one hypothesis per clip; may be empty text).
        references: ``{clip_id: [caption, ...]}``; both must hold exactly the same clip ids.
        java: use the Java PTB tokenizer and METEOR; None = when a ``java`` executable is found.
            Without Java, METEOR is omitted and `simple_tokenize` is used (with a warning).
        meteor: False leaves METEOR out (its Java start-up takes about 10 s).
    Returns:
        ``{"Bleu_1", …, "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"}`` (``METEOR`` only with Java and
        ``meteor``).
    """
    if not isinstance(predictions, Mapping) or any(not isinstance(h, str) for h in predictions.values()):
        raise HeroError("predictions must map clip ids to caption strings")
    check_ids(predictions, references)
    have_java = shutil.which("java") is not None
    if java is None:
        java = have_java
    elif java and not have_java:
        raise HeroError("java=True but no `java` executable is on PATH (needed by the PTB tokenizer and METEOR)")
    if not java:
        warnings.warn("no Java runtime: captions are tokenised by hero's pure-Python PTB imitation and METEOR "
                      "is skipped; BLEU/ROUGE-L/CIDEr are close to, not exactly, the official numbers",
                      RuntimeWarning, stacklevel=2)
    ids = list(references)
    refs = {k: [clean_caption(r) for r in references[k]] for k in ids}
    hyps = {k: [clean_caption(predictions[k])] for k in ids}
    if java:
        tokenized = ptb_tokenize({**{("ref", k): v for k, v in refs.items()},
                                  **{("hyp", k): v for k, v in hyps.items()}})
        gts = {k: tokenized[("ref", k)] for k in ids}
        res = {k: tokenized[("hyp", k)] for k in ids}
    else:
        gts = {k: [simple_tokenize(c) for c in v] for k, v in refs.items()}
        res = {k: [simple_tokenize(c) for c in v] for k, v in hyps.items()}
    return score_tokenized(gts, res, meteor=java and meteor)


def score_tokenized(gts: dict[Hashable, list[str]], res: dict[Hashable, list[str]],
                    meteor: bool = True) -> dict[str, float]:
    """pycocoevalcap's scorers on tokenised captions (keys in the same order), ×100."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    out: dict[str, float] = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for n, value in enumerate(bleu, 1):
        out[f"Bleu_{n}"] = float(value) * 100
    if meteor:
        out["METEOR"] = _meteor(gts, res) * 100
    out["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0]) * 100
    out["CIDEr"] = float(Cider().compute_score(gts, res)[0]) * 100
    return out


def _meteor(gts: dict, res: dict) -> float:
    from pycocoevalcap.meteor.meteor import Meteor

    try:
        scorer = Meteor()
    except OSError as err:
        raise HeroError(f"METEOR (Java, pycocoevalcap) could not start: {err}") from None
    try:
        return float(scorer.compute_score(gts, res)[0])
    except ValueError as err:  # the Java process died: its output is empty
        raise HeroError(f"METEOR (Java, pycocoevalcap) failed: {err}; it needs about 2 GB of memory") from None
    finally:
        if scorer.lock.locked():  # a failed compute_score keeps it, and the scorer's __del__ would wait forever
            scorer.lock.release()
        del scorer  # its __del__ stops the Java process


# ---------------------------------------------------------------------------------------------
# Files in the official TVC format
# ---------------------------------------------------------------------------------------------


def _records(path: str | Path):
    """``(where, record)`` of a JSONL file, ``where`` being ``file:line`` for error messages."""
    for lineno, record in iter_jsonl(path):
        yield f"{path}:{lineno}", record


def _descs(record: dict, where: str, keys: tuple[str, ...]) -> list[str]:
    for key in keys:
        if key in record:
            descs = record[key]
            break
    else:
        raise HeroError(f"{where}: missing {' or '.join(repr(k) for k in keys)}")
    if not isinstance(descs, list) or not descs:
        raise HeroError(f"{where}: {key!r} must be a non-empty list of {{\"desc\": text}} objects")
    texts = []
    for i, d in enumerate(descs):
        if not isinstance(d, dict) or not isinstance(d.get("desc"), str):
            raise HeroError(f"{where}: {key}[{i}] must be an object with a string 'desc'")
        texts.append(d["desc"])
    return texts


def _clip_id(record: dict, where: str) -> Hashable:
    if "clip_id" not in record:
        raise HeroError(f"{where}: missing 'clip_id'")
    clip_id = record["clip_id"]
    if not isinstance(clip_id, (int, str)):
        raise HeroError(f"{where}: 'clip_id' must be an integer or a string, found {clip_id!r}")
    return clip_id


def _prediction_records(path: str | Path):
    """``(where, record)`` of a prediction file: JSONL, or one JSON array of records (what fine-tuning
    wrote into ``predictions/*.json`` before it used the JSONL writer)."""
    from hero.io import read_json, read_text

    text = read_text(path)
    if not text.lstrip().startswith("["):
        yield from _records(path)
        return
    for i, record in enumerate(read_json(path, expect=list)):
        where = f"{path}: record {i + 1}"
        if not isinstance(record, dict):
            raise HeroError(f"{where}: expected a JSON object, got a {type(record).__name__}")
        yield where, record


def _check_is_caption(record: dict, where: str, what: str) -> None:
    """Name a file of another task (a TVR query, a QA question) instead of its missing 'clip_id'."""
    kind = annotation_kind(record)
    if "clip_id" not in record and kind not in (None, "caption"):
        raise HeroError(f"{where}: this looks like a {kind} {what}, not captioning (score it with "
                        f"`hero eval {kind}`)")


def load_tvc_predictions(path: str | Path) -> dict[Hashable, str]:
    """Official TVC prediction JSONL (``{"clip_id", "descs": [{"desc"}, ...]}``; ``.gz`` accepted),
    or the same records as one JSON array.

    Only the first desc of a clip is used, as by the official evaluator. A clip predicted twice is
    an error (the official evaluator would silently keep the last).
    """
    out: dict[Hashable, str] = {}
    for where, record in _prediction_records(path):
        _check_is_caption(record, where, "record")
        clip_id = _clip_id(record, where)
        if clip_id in out:
            raise HeroError(f"{where}: clip_id {clip_id!r} predicted twice")
        out[clip_id] = _descs(record, where, ("descs",))[0]
    return out


def load_tvc_references(path: str | Path) -> dict[Hashable, list[str]]:
    """Official TVC reference JSONL (``{"clip_id", "descs": [{"desc", ...}, ...]}``), or a corpus
    annotation file (``"captions"`` instead of ``"descs"``); ``.gz`` accepted."""
    out: dict[Hashable, list[str]] = {}
    for where, record in _records(path):
        _check_is_caption(record, where, "annotation file")
        clip_id = _clip_id(record, where)
        if clip_id in out:
            raise HeroError(f"{where}: clip_id {clip_id!r} appears twice")
        out[clip_id] = _descs(record, where, ("descs", "captions"))
    return out


def evaluate_files(pred_path: str | Path, gt_path: str | Path, out_path: str | Path | None = None,
                   java: bool | None = None, meteor: bool = True) -> dict[str, float]:
    """Score a TVC prediction file against a reference file; optionally write the metrics JSON
    (atomically, ``indent=4`` like the official script)."""
    metrics = caption_metrics(load_tvc_predictions(pred_path), load_tvc_references(gt_path), java=java,
                              meteor=meteor)
    if out_path is not None:
        write_json_atomic(out_path, metrics, indent=4)
    return metrics
