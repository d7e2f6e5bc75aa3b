"""Subtitle → frame alignment and timestamp → frame-index targets, exactly as the reference computes them.

`align_subtitles` reproduces the reference ``scripts/prepro_sub.py`` (paper App. A.4) bit for bit,
including its floating-point behaviour under NumPy 1.x and its quirks:

1. Times become float32; frame-unit times are ``float32(t) / float32(frame_length)`` in float32.
2. A subtitle starting at or after ``frame_length * num_frames`` is skipped. The others get the
   candidate frames ``range(floor(start_u), ceil(end_u))`` (not clipped to the video).
3. Only the *last* subtitle of the list, if it lasts more than 16 s (its end clipped at the video
   end), keeps just its first 11 candidates.
4. Each frame ``f < num_frames`` with candidates goes to the candidate with the largest tIoU of
   ``[f, f+1]`` and the subtitle's frame-unit span; candidates are tried in index order, a later
   one wins only when strictly larger, and the running best starts at (sub 0, IoU 0) — so a
   frame whose candidates all have IoU 0 goes to sub 0 (reference quirk).
5. Frames ``< num_frames`` with no candidate are "unmatched".
6. A video with no subtitles (or no frames) gets pseudo groups of 5 consecutive frames.

The precise float32/float64 mixing matters for near ties and near-16 s subtitles: NumPy 1.x turns a
float32 scalar combined with a Python int or float into float64, while NumPy 2 (NEP 50) keeps
float32. Our NumPy is 2.x, so the mixing is done by hand: each operation is computed in Python
floats (float64) and rounded to float32 exactly where NumPy 1.x would produce float32. Computing a
+, -, * or / of two float32 values in float64 and rounding once to float32 gives the correctly
rounded float32 result (53 ≥ 2·24 + 2), so this is exact. ``numpy_rules="2"`` gives the NumPy-2
results instead (for comparison only).

The span-target functions are the reference ``get_st_ed_label`` methods of the VCMR, TVC and
video-QA datasets (Python float arithmetic).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from hero.errors import HeroError

PSEUDO_GROUP_SIZE = 5
"""Frames per pseudo subtitle group of a video without subtitles (reference ``allow_empty_sub``)."""
LONG_LAST_SUB_SECONDS = 16
"""A last subtitle longer than this keeps only `LONG_LAST_SUB_FRAMES` candidate frames."""
LONG_LAST_SUB_FRAMES = 11

NumpyRules = Literal["1.x", "2"]


@dataclass
class Alignment:
    """The reference subtitle-DB alignment of one video.

    Attributes:
        num_frames: frames of the video (derived from the last subtitle when not given).
        unique_sub2frames: ``[(sub_idx, [frame, ...]), ...]`` for every subtitle index in order
            (``[]`` for skipped subtitles and subtitles that won no frame); each frame
            ``< num_frames`` covered by some subtitle appears exactly once, lists ascending.
        sub2frames: ``[(sub_idx, candidates), ...]`` for every subtitle (``[]`` when skipped);
            candidates are not clipped to the video.
        unmatched_frames: frames ``< num_frames`` that no subtitle covers, ascending.
        pseudo: True when the video had no subtitles or no frames: the groups then index
            ``len(unique_sub2frames)`` implied empty subtitles of `PSEUDO_GROUP_SIZE` frames each.
        skipped: indices of subtitles starting at or after the end of the video.
        frame2subs: ``{frame: [candidate sub_idx, ...]}`` for frames ``< num_frames`` with
            candidates (diagnostics).
    """

    num_frames: int
    unique_sub2frames: list[tuple[int, list[int]]]
    sub2frames: list[tuple[int, list[int]]]
    unmatched_frames: list[int]
    pseudo: bool
    skipped: list[int] = field(default_factory=list)
    frame2subs: dict[int, list[int]] = field(default_factory=dict)


def _f32(x: float) -> float:
    return float(np.float32(x))


def _span(sub: object) -> tuple[float, float]:
    if isinstance(sub, (tuple, list)):
        return float(sub[0]), float(sub[1])
    return float(sub.start), float(sub.end)  # type: ignore[attr-defined]


def pseudo_groups(num_frames: int, group: int = PSEUDO_GROUP_SIZE) -> list[tuple[int, list[int]]]:
    """Groups of ``group`` consecutive frames: group k = frames ``[5k, min(5k+5, n))``."""
    return [(k, list(range(st, min(st + group, num_frames))))
            for k, st in enumerate(range(0, num_frames, group))]


def derived_num_frames(last_end: float, frame_length: float) -> int:
    """The reference's frame count of a video not in ``vid2nframe``: ``int(int(end) / frame_length)``."""
    return int(int(last_end) / frame_length)


def _tiou(f: int, a: float, b: float, numpy2: bool) -> float:
    """tIoU of ``[f, f+1]`` and ``[a, b]`` (float32 frame units) with the reference's promotion.

    The reference uses Python ``min``/``max`` on a Python int and a float32 scalar: the result
    keeps the type of the argument returned (the first one on ties), and only float32 - float32
    (or float32 / float32) stays float32 under NumPy 1.x.
    """
    # (value, is_float32) of min(f+1, b), max(f, a), max(f+1, b), min(f, a)
    hi_in = (b, True) if b < f + 1 else (f + 1, False)
    lo_in = (a, True) if a > f else (f, False)
    hi_out = (b, True) if b > f + 1 else (f + 1, False)
    lo_out = (a, True) if a < f else (f, False)

    def sub(x: tuple[float, bool], y: tuple[float, bool]) -> tuple[float, bool]:
        both = x[1] and y[1]
        value = x[0] - y[0]
        return (_f32(value), True) if both or numpy2 else (value, False)

    inter = sub(hi_in, lo_in)
    if inter[0] <= 0:
        return 0.0
    union = sub(hi_out, lo_out)
    value = inter[0] / union[0]
    return _f32(value) if (inter[1] and union[1]) or numpy2 else value


def align_subtitles(
    spans: Sequence[object],
    num_frames: int | None,
    frame_length: float,
    numpy_rules: NumpyRules = "1.x",
) -> Alignment:
    """Assign subtitles to frames like the reference ``prepro_sub.py`` (see the module docstring).

    Args:
        spans: subtitles in their stored order, each a `Subtitle` or a ``(start, end)`` pair in
            seconds; starts must be non-decreasing (after float32 rounding), as the reference asserts.
        num_frames: frames of the video; None when unknown: the reference then uses
            ``int(int(last_sub.end) / frame_length)``.
        frame_length: seconds per frame (1.5 for TV, 2 for HowTo100M-style features).
        numpy_rules: ``"1.x"`` (the reference, default) or ``"2"`` (NEP-50 promotion; diagnostics).

    Returns:
        An `Alignment`.

    Raises:
        HeroError: when starts decrease or a time is not finite.
    """
    if frame_length <= 0:
        raise HeroError(f"frame_length must be positive, got {frame_length}")
    numpy2 = numpy_rules == "2"
    raw = [_span(s) for s in spans]
    for k, (st, ed) in enumerate(raw):
        if not (math.isfinite(st) and math.isfinite(ed)):
            raise HeroError(f"subtitle {k}: times must be finite, got start={st} end={ed}")
    starts = [_f32(st) for st, _ in raw]
    ends = [_f32(ed) for _, ed in raw]
    for k in range(1, len(starts)):
        if starts[k] < starts[k - 1]:
            raise HeroError(
                f"subtitle {k}: start {raw[k][0]} is before the start {raw[k - 1][0]} of subtitle {k - 1}; "
                "subtitles must be sorted by start time"
            )
    if num_frames is None:
        num_frames = derived_num_frames(raw[-1][1], frame_length) if raw else 0
    if num_frames < 0:
        raise HeroError(f"num_frames must be >= 0, got {num_frames}")
    if not raw or num_frames == 0:
        groups = pseudo_groups(num_frames)
        return Alignment(num_frames, groups, [(k, list(v)) for k, v in groups], [], True)

    fl32 = _f32(frame_length)
    st_u = [_f32(s / fl32) for s in starts]
    ed_u = [_f32(e / fl32) for e in ends]
    video_end = frame_length * num_frames  # Python float, as in the reference
    last = len(raw) - 1

    sub2frames: list[tuple[int, list[int]]] = []
    skipped: list[int] = []
    frame2subs: dict[int, list[int]] = {}
    for k in range(len(raw)):
        # the reference compares the float32 start with the Python float in float64 (NumPy 1.x)
        start_cmp = starts[k] >= (_f32(video_end) if numpy2 else video_end)
        if start_cmp:
            skipped.append(k)
            sub2frames.append((k, []))
            continue
        frames = list(range(math.floor(st_u[k]), math.ceil(ed_u[k])))
        if k == last:
            if ends[k] > video_end:
                duration = video_end - starts[k]
                if numpy2:
                    duration = _f32(duration)
            else:
                duration = _f32(ends[k] - starts[k])
            if duration > LONG_LAST_SUB_SECONDS:
                frames = frames[:LONG_LAST_SUB_FRAMES]
        sub2frames.append((k, frames))
        for f in frames:
            if f < num_frames:
                frame2subs.setdefault(f, []).append(k)

    winners: dict[int, list[int]] = {k: [] for k in range(len(raw))}
    for f in sorted(frame2subs):
        best, best_iou = 0, 0.0
        for k in frame2subs[f]:
            iou = _tiou(f, st_u[k], ed_u[k], numpy2)
            if iou > best_iou:
                best, best_iou = k, iou
        winners[best].append(f)
    unique = [(k, winners[k]) for k in range(len(raw))]
    unmatched = [f for f in range(num_frames) if f not in frame2subs]
    return Alignment(num_frames, unique, sub2frames, unmatched, False, skipped, frame2subs)


def loader_sub2frames(
    unique_sub2frames: Sequence[tuple[int, Sequence[int]]],
    unmatched_frames: Sequence[int],
    num_frames: int,
    max_clip_len: int,
) -> tuple[list[tuple[int, list[int]]], list[int], int]:
    """The reference loader's view of a stored alignment (``SubTokLmdb.compute_sub2frames``).

    Walks ``unique_sub2frames`` in order keeping frames ``< max_clip_len``. A subtitle is kept when
    it still has frames or never had any; the walk stops after the first subtitle that lost a frame
    (so a subtitle whose frames are all out of range is dropped and ends the walk).

    Returns:
        ``(sub2frames, vonly_frames, nframes)``: the groups the cross-modal encoder gets, the
        unmatched frames ``< max_clip_len``, and ``min(num_frames, max_clip_len)``.
    """
    out: list[tuple[int, list[int]]] = []
    for idx, frames in unique_sub2frames:
        kept = [f for f in frames if f < max_clip_len]
        if kept or not frames:
            out.append((int(idx), kept))
        if len(kept) < len(frames):
            break
    vonly = [f for f in unmatched_frames if f < max_clip_len]
    return out, vonly, min(num_frames, max_clip_len)


def vcmr_span_target(ts: Sequence[float], nframes: int, interval: float) -> tuple[int, int]:
    """Start/end frame targets of a moment (reference ``VcmrDataset.get_st_ed_label``).

    Args:
        ts: ``[st, ed]`` in seconds.
        nframes: frames the model sees (feature rows, already cut to ``max_clip_len``).
        interval: seconds per frame.

    Returns:
        ``(st, ed)``, both inclusive, within ``[0, nframes-1]``; ``ed >= st + 1`` when there is room.
    """
    max_idx = nframes - 1
    st = min(math.floor(ts[0] / interval), max_idx)
    ed = min(max(math.ceil(ts[1] / interval) - 1, st + 1), max_idx)
    return st, ed


def tvc_clip_range(ts: Sequence[float], nframes: int, interval: float) -> tuple[int, int]:
    """Frames of a captioned moment (reference ``TvcTrainDataset.get_st_ed_label``).

    Returns:
        ``(st, ed)`` with ``ed`` exclusive: the clip is frames ``st .. ed-1``. ``ed`` uses Python's
        round-half-to-even; a moment starting at or after the last frame gives ``st = ed = nframes``.
    """
    st = min(math.floor(ts[0] / interval), nframes)
    ed = min(max(round(ts[1] / interval), st + 1), nframes)
    return st, ed


def tvqa_span_target(ts_string: str, nframes: int, interval: float) -> tuple[int, int]:
    """Span targets of a TVQA ``"st-ed"`` string (reference ``VideoQaDataset.get_st_ed_label``).

    The first two ``-``-separated parts are read as floats (a third is ignored), then the
    `vcmr_span_target` rule applies. Anything that fails (missing part, empty string, ``"-3.2"``,
    ``"abc"``, ``"NaN-NaN"``) gives ``(-1, -1)``, the "no target" value the reference uses.
    """
    try:
        parts = ts_string.split("-")
        return vcmr_span_target((float(parts[0]), float(parts[1])), nframes, interval)
    except (ValueError, IndexError, OverflowError, AttributeError, TypeError):
        return -1, -1


__all__ = [
    "Alignment",
    "LONG_LAST_SUB_FRAMES",
    "LONG_LAST_SUB_SECONDS",
    "PSEUDO_GROUP_SIZE",
    "align_subtitles",
    "derived_num_frames",
    "loader_sub2frames",
    "pseudo_groups",
    "tvc_clip_range",
    "tvqa_span_target",
    "vcmr_span_target",
]
