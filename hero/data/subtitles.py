"""Timed subtitles and their readers: TVQA-style JSONL, SRT and WebVTT.

`read_subtitle_file(path)` picks the reader by extension and always returns
``{video id: [Subtitle, ...]}``:

* ``.jsonl`` / ``.json``: the TVQA-style file the reference preprocesses
  (``tvqa_preprocessed_subtitles.jsonl``), one video per line:
  ``{"vid_name": str, "sub": [{"text": str, "start": float, "end": float}, ...]}``. Subtitles keep
  their file order, which must have non-decreasing starts (the reference asserts it; its subtitle
  indices are positions in this list).
* ``.srt`` / ``.vtt``: one file per video, the video id is the file name without its extension
  (``<vid>.srt``). Cues are sorted by start time (stably), because a cue's number carries no
  meaning for the alignment.

`read_subtitles(paths)` merges several files and/or directories of such files.

Text is kept verbatim (apart from SRT/VTT markup), so that tokens match the reference's, which
tokenizes the whole line including a leading speaker name (``" Chase : Yes."``). ``speaker`` is
informational: the ``Name :`` prefix of TVQA lines, or the ``<v Name>`` voice of a WebVTT cue.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hero.errors import HeroError
from hero.io import iter_jsonl, read_text

SUBTITLE_EXTENSIONS = (".jsonl", ".json", ".srt", ".vtt")


@dataclass(frozen=True)
class Subtitle:
    """One timed line of dialogue (or ASR text); times in seconds from the start of the video."""

    start: float
    end: float
    text: str
    speaker: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "text": self.text, "speaker": self.speaker}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Subtitle:
        return cls(float(data["start"]), float(data["end"]), str(data["text"]), data.get("speaker"))


# ``" Chase : Yes."`` / ``"(Sheldon:) Hi"`` — a short name followed by a colon
_SPEAKER = re.compile(r"^\s*\(?\s*([A-Z][\w.'\- ]{0,30}?)\s*:\)?(?=\s|$)")


def speaker_of(text: str) -> str | None:
    """The ``Name :`` prefix of a TVQA subtitle line, or None."""
    match = _SPEAKER.match(text)
    return match.group(1).strip() if match else None


def _time(value: Any, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise HeroError(f"{where}: subtitle {name} must be a number of seconds, got {value!r}")
    try:
        out = float(value)
    except ValueError:
        raise HeroError(f"{where}: subtitle {name} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(out):
        raise HeroError(f"{where}: subtitle {name} is not finite ({value!r})")
    return out


def read_tvqa_subtitles(path: str | Path) -> dict[str, list[Subtitle]]:
    """Read a TVQA-style subtitle JSONL file (one ``{"vid_name", "sub": [...]}`` per line).

    Raises:
        HeroError: naming ``file:line`` for a line that is not JSON, lacks ``vid_name``/``sub``,
            has a subtitle without ``text``/``start``/``end`` or with a non-numeric time, has
            decreasing start times, or repeats a video id.
    """
    path = Path(path)
    out: dict[str, list[Subtitle]] = {}
    for lineno, rec in iter_jsonl(path):
        where = f"{path}:{lineno}"
        vid = rec.get("vid_name")
        if not isinstance(vid, str) or not vid:
            raise HeroError(f"{where}: missing or empty 'vid_name'")
        subs = rec.get("sub")
        if not isinstance(subs, list):
            raise HeroError(f"{where}: video {vid!r}: 'sub' must be a list of subtitles")
        if vid in out:
            raise HeroError(f"{where}: video {vid!r} appears a second time")
        items = []
        for k, sub in enumerate(subs):
            swhere = f"{where}: video {vid!r} sub[{k}]"
            if not isinstance(sub, dict) or not {"text", "start", "end"} <= set(sub):
                raise HeroError(f"{swhere}: a subtitle needs 'text', 'start' and 'end'")
            if not isinstance(sub["text"], str):
                raise HeroError(f"{swhere}: 'text' must be a string")
            start = _time(sub["start"], swhere, "start")
            end = _time(sub["end"], swhere, "end")
            if items and start < items[-1].start:
                raise HeroError(
                    f"{swhere}: start {start} is before the previous subtitle's start "
                    f"{items[-1].start}; subtitles must be sorted by start time"
                )
            items.append(Subtitle(start, end, sub["text"], speaker_of(sub["text"])))
        out[vid] = items
    return out


_SRT_TIME = re.compile(r"^\s*(?:(\d+):)?(\d{1,2}):(\d{1,2})[,.](\d{1,3})\s*$")
_TAG = re.compile(r"<[^>]*>")
_ASS_TAG = re.compile(r"\{\\[^}]*\}")
_VOICE = re.compile(r"<v(?:\.[\w.-]+)?\s+([^>]+)>")


def _clock(text: str, where: str) -> float:
    match = _SRT_TIME.match(text)
    if not match:
        raise HeroError(f"{where}: bad timestamp {text.strip()!r} (expected [HH:]MM:SS,mmm or [HH:]MM:SS.mmm)")
    hours, minutes, seconds, millis = match.groups()
    if int(minutes) > 59 or int(seconds) > 59:
        raise HeroError(f"{where}: bad timestamp {text.strip()!r} (minutes/seconds above 59)")
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(millis.ljust(3, "0")) / 1000


def _timing_line(line: str, where: str) -> tuple[float, float]:
    parts = line.split("-->")
    if len(parts) != 2:
        raise HeroError(f"{where}: expected a timing line 'start --> end', got {line.strip()!r}")
    # WebVTT cue settings follow the end time ("00:01.000 --> 00:02.000 align:start")
    end_text = parts[1].strip().split()
    if not end_text:
        raise HeroError(f"{where}: timing line {line.strip()!r} has no end time")
    return _clock(parts[0], where), _clock(end_text[0], where)


def _clean(text: str) -> str:
    return " ".join(_ASS_TAG.sub("", _TAG.sub("", text)).split())


def _blocks(lines: list[str], first: int) -> Iterable[tuple[int, list[str]]]:
    """Blank-line separated blocks as (1-based line number of the block's first line, lines)."""
    block: list[str] = []
    start = first
    for i in range(first, len(lines)):
        if lines[i].strip():
            if not block:
                start = i
            block.append(lines[i])
        elif block:
            yield start + 1, block
            block = []
    if block:
        yield start + 1, block


def _read_lines(path: Path) -> list[str]:
    text = read_text(path)  # UTF-8, a byte-order mark dropped; anything else named by file:line
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _sorted(cues: list[Subtitle]) -> list[Subtitle]:
    return sorted(cues, key=lambda s: s.start)  # stable: equal starts keep file order


def read_srt(path: str | Path) -> list[Subtitle]:
    """Cues of one SubRip file, sorted by start time; markup (``<i>``, ``{\\an8}``) removed.

    Raises:
        HeroError: ``file:line`` of a cue without a valid ``start --> end`` timing line.
    """
    path = Path(path)
    lines = _read_lines(path)
    cues = []
    for lineno, block in _blocks(lines, 0):
        k = 1 if "-->" not in block[0] and len(block) > 1 else 0  # optional cue number
        if k and not block[0].strip().isdigit():
            raise HeroError(f"{path}:{lineno}: expected a cue number or a timing line, got {block[0].strip()!r}")
        start, end = _timing_line(block[k], f"{path}:{lineno + k}")
        cues.append(Subtitle(start, end, _clean(" ".join(block[k + 1:]))))
    return _sorted(cues)


def read_vtt(path: str | Path) -> list[Subtitle]:
    """Cues of one WebVTT file, sorted by start time; the ``<v Name>`` voice becomes ``speaker``.

    NOTE/STYLE/REGION blocks are skipped. Raises a `HeroError` naming ``file:line`` for a missing
    ``WEBVTT`` header or a cue without a valid timing line.
    """
    path = Path(path)
    lines = _read_lines(path)
    if not lines or not lines[0].startswith("WEBVTT"):
        raise HeroError(f"{path}:1: a WebVTT file must start with 'WEBVTT'")
    cues = []
    for lineno, block in _blocks(lines, 1):
        head = block[0].strip()
        if head.startswith(("NOTE", "STYLE", "REGION")):
            continue
        k = 0 if "-->" in block[0] else 1  # optional cue identifier
        if k >= len(block) or "-->" not in block[k]:
            raise HeroError(f"{path}:{lineno}: expected a timing line 'start --> end' in this cue")
        start, end = _timing_line(block[k], f"{path}:{lineno + k}")
        raw = " ".join(block[k + 1:])
        voice = _VOICE.search(raw)
        cues.append(Subtitle(start, end, _clean(raw), voice.group(1).strip() if voice else None))
    return _sorted(cues)


def read_subtitle_file(path: str | Path) -> dict[str, list[Subtitle]]:
    """Read one subtitle file, chosen by extension, as ``{video id: subtitles}``.

    ``.jsonl``/``.json`` hold many videos (TVQA style); ``.srt``/``.vtt`` hold one video whose id
    is the file name without the extension.
    """
    path = Path(path)
    if not path.is_file():
        raise HeroError(f"{path}: subtitle file not found")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return read_tvqa_subtitles(path)
    if suffix == ".srt":
        return {path.stem: read_srt(path)}
    if suffix == ".vtt":
        return {path.stem: read_vtt(path)}
    raise HeroError(f"{path}: unknown subtitle format {suffix!r}; expected one of {', '.join(SUBTITLE_EXTENSIONS)}")


def read_subtitles(paths: str | Path | Iterable[str | Path]) -> dict[str, list[Subtitle]]:
    """Merge subtitle files and directories (every ``.jsonl/.json/.srt/.vtt`` inside, recursively).

    Raises:
        HeroError: when a video id appears in two files.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUBTITLE_EXTENSIONS)
        else:
            files.append(p)
    out: dict[str, list[Subtitle]] = {}
    origin: dict[str, Path] = {}
    for f in files:
        for vid, subs in read_subtitle_file(f).items():
            if vid in out:
                raise HeroError(f"{f}: subtitles of video {vid!r} were already read from {origin[vid]}")
            out[vid] = subs
            origin[vid] = f
    return out


__all__ = [
    "Subtitle",
    "SUBTITLE_EXTENSIONS",
    "read_srt",
    "read_subtitle_file",
    "read_subtitles",
    "read_tvqa_subtitles",
    "read_vtt",
    "speaker_of",
]
