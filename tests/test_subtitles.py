"""Subtitle readers: TVQA-style JSONL, SRT, WebVTT, and their file:line errors."""

from __future__ import annotations

import json

import pytest

from hero.data.subtitles import (
    Subtitle,
    read_srt,
    read_subtitle_file,
    read_subtitles,
    read_vtt,
    speaker_of,
)
from hero.errors import HeroError

TVQA_LINES = [
    {"vid_name": "friends_s01e01_seg02_clip_00", "sub": [
        {"text": " Monica : There's nothing to tell!", "start": 0.862, "end": 2.333},
        {"text": "(Joey:) C'mon, you're going out with the guy!", "start": 2.5, "end": 4.1},
        {"text": "ALL RIGHT &amp; FINE", "start": 4.1, "end": 6.0},
    ]},
    {"vid_name": "s01e02_seg01_clip_03", "sub": []},
]

SRT = """1
00:00:00,862 --> 00:00:02,333
<i>There's nothing</i>
to tell!

3
00:00:05,000 --> 00:00:06,500
{\\an8}Later line

2
00:00:02,500 --> 00:00:04,100
Earlier line
"""

VTT = """WEBVTT - a title

NOTE a comment
that spans lines

intro
00:00.500 --> 00:02.000 align:start
<v Sheldon>Hello, <b>Leonard</b>.

01:00:01.250 --> 01:00:03.000
Second cue
"""


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_tvqa_jsonl(tmp_path):
    path = _write(tmp_path / "subs.jsonl", "\n".join(json.dumps(x) for x in TVQA_LINES) + "\n")
    subs = read_subtitle_file(path)
    assert list(subs) == ["friends_s01e01_seg02_clip_00", "s01e02_seg01_clip_03"]
    first = subs["friends_s01e01_seg02_clip_00"]
    assert [s.start for s in first] == [0.862, 2.5, 4.1]
    assert first[0].text == TVQA_LINES[0]["sub"][0]["text"]  # verbatim, speaker prefix kept
    assert [s.speaker for s in first] == ["Monica", "Joey", None]
    assert subs["s01e02_seg01_clip_03"] == []


@pytest.mark.parametrize("mutate, message", [
    (lambda lines: lines.__setitem__(1, "{not json"), ":2: invalid JSON"),
    (lambda lines: lines.__setitem__(1, json.dumps({"sub": []})), ":2: missing or empty 'vid_name'"),
    (lambda lines: lines.__setitem__(0, json.dumps({"vid_name": "a", "sub": [{"text": "x", "start": 1}]})),
     ":1: video 'a' sub\\[0\\]: a subtitle needs"),
    (lambda lines: lines.__setitem__(0, json.dumps(
        {"vid_name": "a", "sub": [{"text": "x", "start": "one", "end": 2}]})),
     ":1: .*start must be a number"),
    (lambda lines: lines.__setitem__(0, json.dumps({"vid_name": "a", "sub": [
        {"text": "x", "start": 3, "end": 4}, {"text": "y", "start": 1, "end": 2}]})), ":1: .*sorted by start"),
    (lambda lines: lines.__setitem__(1, lines[0]), ":2: video .* appears a second time"),
])
def test_tvqa_jsonl_errors_name_file_and_line(tmp_path, mutate, message):
    lines = [json.dumps(x) for x in TVQA_LINES]
    mutate(lines)
    path = _write(tmp_path / "subs.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(HeroError, match="subs.jsonl" + message):
        read_subtitle_file(path)


def test_srt_sorted_and_cleaned(tmp_path):
    subs = read_subtitle_file(_write(tmp_path / "vid_a.srt", SRT))
    cues = subs["vid_a"]
    assert [c.text for c in cues] == ["There's nothing to tell!", "Earlier line", "Later line"]
    assert cues[0] == Subtitle(0.862, 2.333, "There's nothing to tell!")
    assert cues[2].start == 5.0 and cues[2].end == 6.5
    # CRLF and a BOM are accepted
    crlf = _write(tmp_path / "b.srt", "\ufeff" + SRT.replace("\n", "\r\n"))
    assert read_srt(crlf) == cues


def test_srt_bad_timestamp_names_line(tmp_path):
    path = _write(tmp_path / "bad.srt", SRT.replace("00:00:05,000 --> 00:00:06,500", "00:00:05,000 -> 00:00:06,500"))
    with pytest.raises(HeroError, match=r"bad.srt:7: expected a timing line"):
        read_srt(path)
    path = _write(tmp_path / "bad2.srt", SRT.replace("00:00:02,500", "00:00:xx,500"))
    with pytest.raises(HeroError, match=r"bad2.srt:11: bad timestamp"):
        read_srt(path)


def test_vtt(tmp_path):
    cues = read_subtitle_file(_write(tmp_path / "clip.vtt", VTT))["clip"]
    assert cues[0] == Subtitle(0.5, 2.0, "Hello, Leonard.", "Sheldon")
    assert cues[1].start == 3601.25 and cues[1].text == "Second cue" and cues[1].speaker is None
    with pytest.raises(HeroError, match="nohead.vtt:1: a WebVTT file must start"):
        read_vtt(_write(tmp_path / "nohead.vtt", VTT.replace("WEBVTT - a title", "")))
    with pytest.raises(HeroError, match=r"badtime.vtt:10: bad timestamp"):
        read_vtt(_write(tmp_path / "badtime.vtt", VTT.replace("01:00:01.250", "01:00:99.250")))


def test_read_subtitles_merges_and_rejects_duplicates(tmp_path):
    d = tmp_path / "subs"
    d.mkdir()
    _write(d / "a.srt", SRT)
    _write(d / "b.vtt", VTT)
    merged = read_subtitles(d)
    assert sorted(merged) == ["a", "b"]
    _write(tmp_path / "a.vtt", VTT)
    with pytest.raises(HeroError, match="'a' were already read"):
        read_subtitles([d, tmp_path / "a.vtt"])
    with pytest.raises(HeroError, match="unknown subtitle format"):
        read_subtitle_file(_write(tmp_path / "x.txt", "hi"))


def test_speaker_of():
    assert speaker_of(" Chase : That's all this is?") == "Chase"
    assert speaker_of("no speaker here") is None
    assert speaker_of("10:30 is late") is None


@pytest.mark.parametrize("encoding, message", [
    ("latin-1", r"a\.srt:3: not UTF-8 text \(byte 0xe9 at column 11\)"),
    ("utf-16", r"a\.srt:1: not UTF-8 text \(UTF-16 text: byte 0xff at column 1\)"),
])
def test_non_utf8_subtitle_files_name_file_and_line(tmp_path, encoding, message):
    path = tmp_path / "a.srt"
    path.write_bytes("1\n00:00:00,500 --> 00:00:03,000\nAlice: caf\u00e9\n".encode(encoding))
    with pytest.raises(HeroError, match=message):
        read_srt(path)
    path.write_bytes(b"\xef\xbb\xbf" + "1\n00:00:00,500 --> 00:00:03,000\nAlice: caf\u00e9\n".encode())
    assert [s.text for s in read_srt(path)] == ["Alice: caf\u00e9"]


def test_tvqa_subtitle_jsonl_with_bom_or_null_line(tmp_path):
    path = tmp_path / "subs.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(TVQA_LINES[0]) + "\n").encode())
    assert list(read_subtitle_file(path)) == [TVQA_LINES[0]["vid_name"]]
    path.write_text(json.dumps(TVQA_LINES[0]) + "\nnull\n", encoding="utf-8")
    with pytest.raises(HeroError, match=r"subs\.jsonl:2: expected a JSON object, got null"):
        read_subtitle_file(path)
