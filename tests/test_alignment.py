"""Subtitle→frame alignment and span targets against the official-code fixtures.

Fixture folders: ``tests/fixtures/official_data_eval`` plus every directory in ``HERO_DATA_FIXTURES``
(':'-separated, same layout). A directory contributes its ``alignment/alignment_cases.json`` and
``span_targets/span_target_cases.json`` when present; a named directory with neither fails.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

from hero.data.alignment import (
    align_subtitles,
    loader_sub2frames,
    pseudo_groups,
    tvc_clip_range,
    tvqa_span_target,
    vcmr_span_target,
)
from hero.data.subtitles import Subtitle
from hero.errors import HeroError

HERE = Path(__file__).parent / "fixtures" / "official_data_eval"


def _fixture_dirs() -> list[Path]:
    dirs = [HERE]
    for extra in filter(None, os.environ.get("HERO_DATA_FIXTURES", "").split(":")):
        dirs.append(Path(extra))
    return dirs


def _files(sub: str, name: str) -> list[Path]:
    return [d / sub / name for d in _fixture_dirs() if (d / sub / name).is_file()]


def test_every_named_fixture_dir_exists():
    # other fixture kinds (metrics, inference) may share a directory, so only existence is required
    for d in _fixture_dirs():
        assert d.is_dir(), f"HERO_DATA_FIXTURES names {d}, which is not a directory"


ALIGN_FILES = _files("alignment", "alignment_cases.json")
SPAN_FILES = _files("span_targets", "span_target_cases.json")


def _load(path: Path) -> dict:
    with open(path) as fh:
        return json.load(fh)


def _alignment_result(case: dict, frame_length: float, rules: str = "1.x") -> dict:
    """Our alignment of a case, in the fixture's ``db_record`` terms."""
    spans = [(s["start"], s["end"]) for s in case["subs"]]
    # the reference's vid2nframe uses 0 for "unknown"; our API uses None
    num = case["vid2nframe"] or None
    a = align_subtitles(spans, num, frame_length, numpy_rules=rules)
    return {
        "num_of_frames": a.num_frames,
        "unique_sub2frames": [[k, v] for k, v in a.unique_sub2frames],
        "sub2frames": [[k, v] for k, v in a.sub2frames],
        "unmatched_frames": a.unmatched_frames,
        "pseudo_groups": a.pseudo,
        "frame2subs": sorted([f, s] for f, s in a.frame2subs.items()) if not a.pseudo else None,
    }


def _expected(case: dict, rules: str = "1.x") -> dict:
    exp = case["expected"]
    if rules == "2" and "numpy2_expected_diff" in case:
        exp = {**exp, **case["numpy2_expected_diff"]}
    db = exp["db_record"]
    return {
        "num_of_frames": exp["num_of_frames"],
        "unique_sub2frames": db["unique_sub2frames"],
        "sub2frames": db["sub2frames"],
        "unmatched_frames": db["unmatched_frames"],
        "pseudo_groups": db["pseudo_groups"],
        "frame2subs": None if exp["process_single_vid_sub_early_return"] else exp["frame2subs"],
    }


def _mismatches(data: dict, rules: str = "1.x") -> list[str]:
    bad = []
    for case in data["videos"]:
        got, want = _alignment_result(case, data["frame_length"], rules), _expected(case, rules)
        diff = [k for k in want if got[k] != want[k]]
        if diff:
            bad.append(f"{case['vid_name']} ({case['category']}): {diff}")
    return bad


@pytest.mark.parametrize("path", ALIGN_FILES, ids=str)
def test_alignment_matches_reference(path):
    data = _load(path)
    assert data["videos"], f"{path}: no cases"
    bad = _mismatches(data)
    assert not bad, f"{len(bad)} of {len(data['videos'])} cases differ:\n" + "\n".join(bad[:20])


@pytest.mark.parametrize("path", ALIGN_FILES, ids=str)
def test_alignment_numpy2_rules_match_numpy2_outputs(path):
    """The NumPy-2 mode reproduces the recorded NumPy-2 differences: the promotion is understood."""
    data = _load(path)
    assert not _mismatches(data, rules="2")
    sensitive = [c for c in data["videos"] if "numpy2_expected_diff" in c]
    for case in sensitive:  # and those cases really do differ between the two rule sets
        fl = data["frame_length"]
        assert _alignment_result(case, fl, "1.x") != _alignment_result(case, fl, "2")


@pytest.mark.parametrize("path", ALIGN_FILES, ids=str)
def test_loader_sub2frames_matches_reference(path):
    data = _load(path)
    checked = 0
    for case in data["videos"]:
        exp = case["expected"]
        db = exp["db_record"]
        for max_len, want in exp["loader"].items():
            s2f, vonly, n = loader_sub2frames(db["unique_sub2frames"], db["unmatched_frames"],
                                              exp["num_of_frames"], int(max_len))
            assert [[k, v] for k, v in s2f] == want["sub2frames"], (case["vid_name"], max_len)
            assert vonly == want["vonly_frames"], (case["vid_name"], max_len)
            assert n == want["nframes"], (case["vid_name"], max_len)
            checked += 1
    assert checked


def test_alignment_perturbation_is_caught():
    data = _load(HERE / "alignment" / "alignment_cases.json")
    # move a subtitle's start by one frame in a case where it owns frames
    case = next(c for c in data["videos"] if c["category"] == "realistic")
    bent = copy.deepcopy(case)
    bent["subs"][1]["start"] -= 1.5
    assert _alignment_result(bent, 1.5) != _expected(case)
    # and a perturbed recorded value is detected
    bent = copy.deepcopy(case)
    frames = bent["expected"]["db_record"]["unique_sub2frames"][0][1]
    frames.append(frames[-1] + 1000)
    assert _alignment_result(case, 1.5) != _expected(bent)
    # the NumPy-2 rules would not reproduce the NumPy-1 reference on its sensitive cases
    sensitive = [c for c in data["videos"] if "numpy2_expected_diff" in c]
    assert sensitive and all(_alignment_result(c, 1.5, "2") != _expected(c) for c in sensitive)


def test_alignment_api_details():
    subs = [Subtitle(0.0, 3.0, "a"), Subtitle(3.0, 4.5, "b"), Subtitle(100.0, 101.0, "late")]
    a = align_subtitles(subs, 4, 1.5)
    assert a.unique_sub2frames == [(0, [0, 1]), (1, [2]), (2, [])]
    assert a.unmatched_frames == [3]
    assert a.skipped == [2] and not a.pseudo
    # no subtitles → pseudo groups of 5 frames
    empty = align_subtitles([], 12, 1.5)
    assert empty.pseudo and empty.unique_sub2frames == pseudo_groups(12) == [
        (0, [0, 1, 2, 3, 4]), (1, [5, 6, 7, 8, 9]), (2, [10, 11])]
    assert align_subtitles([], 0, 1.5).unique_sub2frames == []
    # unknown frame count: int(int(last end) / frame_length)
    assert align_subtitles([(0.0, 7.9)], None, 1.5).num_frames == 4
    with pytest.raises(HeroError, match="sorted by start"):
        align_subtitles([(5.0, 6.0), (1.0, 2.0)], 10, 1.5)
    with pytest.raises(HeroError, match="finite"):
        align_subtitles([(float("nan"), 2.0)], 10, 1.5)


_RULES = {"vcmr": vcmr_span_target, "tvc": tvc_clip_range, "tvqa": tvqa_span_target}


def _span_mismatches(cases: list[dict]) -> list[str]:
    bad = []
    for c in cases:
        got = list(_RULES[c["rule"]](c["ts"], c["nframes"], c["frame_interval"]))
        if got != c["expected"]:
            bad.append(f"{c['rule']} {c['kind']} ts={c['ts']} n={c['nframes']}: {got} != {c['expected']}")
    return bad


@pytest.mark.parametrize("path", SPAN_FILES, ids=str)
def test_span_targets_match_reference(path):
    cases = _load(path)["cases"]
    assert {c["rule"] for c in cases} <= set(_RULES)
    for c in cases:  # the fixture's max_idx convention is the one our signatures encode
        assert c["max_idx"] == (c["nframes"] if c["rule"] == "tvc" else c["nframes"] - 1)
    bad = _span_mismatches(cases)
    assert not bad, "\n".join(bad[:20])


def test_span_target_perturbation_is_caught():
    cases = _load(HERE / "span_targets" / "span_target_cases.json")["cases"]
    for rule in _RULES:
        c = copy.deepcopy(next(c for c in cases if c["rule"] == rule and c["expected"][1] > 0))
        c["expected"][1] -= 1
        assert _span_mismatches([c]), rule


def test_span_target_conventions():
    assert vcmr_span_target([3.0, 3.0], 10, 1.5) == (2, 3)  # zero-length moment gets one more frame
    assert vcmr_span_target([0.0, 1.0], 1, 1.5) == (0, 0)
    assert tvc_clip_range([0, 3.75], 10, 1.5) == (0, 2)  # round half to even
    assert tvc_clip_range([0, 5.25], 10, 1.5) == (0, 4)
    assert tvc_clip_range([30.0, 40.0], 10, 1.5) == (10, 10)
    assert tvqa_span_target("3.0-6.0", 10, 1.5) == (2, 3)
    for bad in ("", "abc", "-3.2", "NaN-NaN", "5"):
        assert tvqa_span_target(bad, 10, 1.5) == (-1, -1)
