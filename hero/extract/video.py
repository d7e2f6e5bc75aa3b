"""Decode a video once, sequentially, and pick the frames each backbone needs (PyAV).

The reference extractor (notes §3.1) ran ``ffmpeg -vf fps=R,scale=…`` per backbone. The ``fps``
filter keeps, for output tick ``j`` (time ``j/R``), the **last input frame whose timestamp rounds
to a tick ≤ j**, i.e. the last frame with ``t < (j + ½)/R`` (ties go to the later tick, as
``av_rescale`` rounds half away from zero). We reproduce that rule exactly, from the frame
timestamps, in one decoding pass without seeking: every sample is defined by a *threshold*
``τ``, and the frame chosen for it is the last frame with ``t < τ`` (the first frame when none
is). Timestamps, not frame counts, drive everything, so variable-frame-rate files are sampled
correctly.

* One feature per ``interval`` seconds; a video of duration ``D`` (first frame to the end of the
  last one) gets ``n = max(1, ⌊D/interval + ½⌋)`` features (`num_features`): the number of ticks
  the reference ResNet pass (``fps=1/interval``) produced; the reference SlowFast pass produced
  ``⌈D/interval⌉`` and HERO's converter kept ``min`` of the two.
* `FrameSampler`: item ``k`` is the frame at threshold ``(k + ½)·interval`` (the reference 2-D
  extractor).
* `ReferenceClipSampler`: the reference SlowFast sampling. The video is resampled to 30 fps
  (grid tick ``j`` at threshold ``(j + ½)/30``) and cut into clips of ``int(30·interval)`` ticks;
  clip ``k`` takes 32 ticks at ``linspace(0, 64·⌊fps⌋/30 − 1, 32)`` clamped to the clip and
  truncated (``⌊fps⌋`` = the file's average frame rate, floored, as the reference read it from
  ffprobe). Ticks past the end repeat the last frame (the reference "tile" padding).
* `UniformClipSampler`: ``T`` frames spread evenly over each interval (for Hugging Face video models).

Every sampler is a grid of rate ``R`` (ResNet ``1/interval``, SlowFast 30 fps) and a list of ticks
per item; tick ``j``'s threshold is ``(j + ½)/R``. A `Preset` (the table `PRESETS`, one place) says
which frame a tick takes and how the tail is padded:

* ``hero`` (the default): the ``fps`` filter of current FFmpeg, the last frame of each window
  (`select_frames` with ``rule="last"``); ticks past the end repeat the last frame; bicubic
  scaling; one rate per backbone.
* ``hero-reference``: what the reference Docker image computed. Its FFmpeg 3.4 ``fps`` filter
  kept the **first** frame of each window ``[(j − ½)/R, (j + ½)/R)`` (an empty window repeats the
  previous tick); its SlowFast padding repeats the whole last second (`tile_tick`); its
  ``scale`` filter inside ``-filter_complex`` used libswscale's default, bilinear; and its ResNet
  pass ran at ``2/int(D)`` fps for a video of probed duration ``1 ≤ D < interval + 0.1``
  (`reference_frame_rate`).

Spatial transform (`Resize`): resize with libswscale (bicubic, or the preset's scaler) so the
short side becomes ``short_side`` (long side ``int(long·short_side/short)``), then an
optional centre crop. Rotation metadata (display matrix) is applied first, as the ffmpeg command
line does by default; unlike the reference, which computed the output size from the unrotated
width and height (distorting rotated videos), the size is computed on the rotated picture.

Failures (no video stream, nothing decodable, a decoding error) raise `VideoError`, which the
pipeline counts and reports by file name.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from hero.extract.presets import HERO, Preset

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".ts",
                    ".3gp", ".ogv", ".wmv")


class VideoError(Exception):
    """A video that cannot be used (unreadable, no video stream, no frames); message says why."""


def num_features(duration: float, interval: float, rate: float | Fraction | None = None) -> int:
    """Features for a video of ``duration`` seconds: ``max(1, ⌊duration/interval + ½⌋)`` (0 if no duration).

    ``rate``: the frame rate of the 2-D pass when it is not ``1/interval`` (`reference_frame_rate`);
    the count is then the reference's ``min(⌊duration·rate + ½⌋, ⌈duration/interval⌉)`` (its
    2-D and 3-D passes, of which HERO's converter kept the shorter), at least 1.
    """
    if duration <= 0:
        return 0
    d, iv = Fraction(duration), Fraction(interval)
    if rate is None:
        return max(1, math.floor(d / iv + Fraction(1, 2)))
    return max(1, min(math.floor(d * Fraction(rate) + Fraction(1, 2)), math.ceil(d / iv)))


def reference_frame_rate(duration: float | None, interval: float) -> Fraction | None:
    """The reference 2-D pass's frame rate for a video of probed ``duration``, when not ``1/interval``.

    The reference (``resnets/video_loader.py``) used ``fps = 2 / int(D)`` when ``0 < D < 1/fps + 0.1``
    for the stream duration ``D`` that ffprobe reports; for ``D < 1`` the division by ``int(D) = 0``
    raised inside a ``try`` and left the default. Returns ``None`` (the default ``1/interval``)
    unless that rule applies; ``duration`` ``None`` (unknown to ffprobe) leaves the default too.
    """
    if duration is None or not 0 < duration < interval + 0.1 or int(duration) < 1:
        return None
    return Fraction(2, int(duration))


def tile_tick(j: int, num_ticks: int, block: int = 30) -> int:
    """The grid tick whose frame the reference SlowFast padding puts at tick ``j``.

    The reference pads the ``num_ticks`` decoded 30 fps frames with the last frame up to a whole
    second (``block`` ticks), then appends copies of that whole last second up to whole clips.
    Ticks inside the video map to themselves.
    """
    if j < num_ticks:
        return j
    padded = -(-num_ticks // block) * block
    if j >= padded:
        j = padded - block + (j - padded) % block
    return min(j, num_ticks - 1)


def select_frames(times: Sequence[Fraction | float], end: Fraction | float, rate: Fraction | float,
                  ticks: Sequence[int], rule: str = "last", tail_block: int | None = None) -> list[int]:
    """Index of the frame each grid tick takes (the rule `decode_samples` streams), from timestamps.

    Args:
        times: presentation times of the decoded frames, relative to the first, non-decreasing.
        end: end of the last frame (the duration).
        rate: grid rate ``R``; tick ``j`` is the window ``[(j − ½)/R, (j + ½)/R)``.
        ticks: the ticks wanted.
        rule: ``last``: the last frame with ``t < (j + ½)/R`` (the first frame when none is);
            ``first``: the first frame of the window that frame lies in (an empty window repeats
            the previous tick, as FFmpeg ≤ 3.4 did).
        tail_block: ``None``: ticks past the end take the last tick's frame; else `tile_tick`
            with the video's ``⌊end·R + ½⌋`` ticks.
    Returns:
        One frame index per tick.
    """
    r = Fraction(rate)
    ts = [Fraction(t) for t in times]
    num_ticks = max(1, math.floor(Fraction(end) * r + Fraction(1, 2)))

    def window(t: Fraction) -> int:
        return math.floor(t * r + Fraction(1, 2))

    out = []
    for j in ticks:
        if tail_block is not None:
            j = tile_tick(j, num_ticks, tail_block)
        threshold = (j + Fraction(1, 2)) / r
        last = max([i for i, t in enumerate(ts) if t < threshold], default=0)
        if rule == "first":
            last = min(i for i, t in enumerate(ts) if window(t) == window(ts[last]))
        out.append(last)
    return out


@dataclass(frozen=True)
class Resize:
    """Spatial transform of a sampled frame.

    Attributes:
        short_side: target length of the shorter side (``None``: keep the native size).
        crop: side of a centre square crop taken after the resize (``None``: no crop).
        interpolation: libswscale scaler, ``bicubic`` (ffmpeg's ``-vf scale``) or ``bilinear``.
    """

    short_side: int | None = 224
    crop: int | None = None
    interpolation: str = "bicubic"

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` after the resize (before the crop), with the reference's integer rule."""
        s = self.short_side
        if s is None:
            return width, height
        if height >= width:
            return s, int(height * s / width)
        return int(width * s / height), s

    def to_dict(self) -> dict:
        return {"short_side": self.short_side, "crop": self.crop, "interpolation": f"swscale {self.interpolation}"}


class Sampler:
    """Which frames make item ``k`` of one backbone, and how they are transformed.

    Subclasses define `rate` (the grid) and `ticks` (non-decreasing across items) and whether an
    item is one frame (``(H, W, 3)``) or a clip (``(T, H, W, 3)``); ``preset`` gives the frame rule
    and the tail padding.
    """

    resize: Resize
    clip: bool = False
    preset: Preset = HERO

    @property
    def rate(self) -> Fraction:
        raise NotImplementedError

    def ticks(self, k: int) -> list[int]:
        raise NotImplementedError

    @property
    def tail_block(self) -> int | None:
        return None

    def thresholds(self, k: int) -> list[Fraction]:
        """``(j + ½)/R`` for the ticks ``j`` of item ``k``: the frame taken is the last one before it."""
        return [(j + Fraction(1, 2)) / self.rate for j in self.ticks(k)]

    def describe(self) -> dict:
        raise NotImplementedError


@dataclass
class FrameSampler(Sampler):
    """One frame per interval: tick ``k`` of the ``fps=1/interval`` filter (``frame_rate`` overrides the rate)."""

    interval: float
    resize: Resize = field(default_factory=Resize)
    preset: Preset = HERO
    frame_rate: Fraction | None = None

    @property
    def rate(self) -> Fraction:
        return Fraction(self.frame_rate) if self.frame_rate else 1 / Fraction(self.interval)

    def ticks(self, k: int) -> list[int]:
        return [k]

    def describe(self) -> dict:
        return {"sampling": "frame at (k+1/2)*interval (ffmpeg fps filter rule)", "resize": self.resize.to_dict()}


@dataclass
class ReferenceClipSampler(Sampler):
    """The reference SlowFast clip sampling (see the module docstring).

    Attributes:
        source_fps: the file's average frame rate (floored before use, as the reference did).
    """

    interval: float
    source_fps: float = 30.0
    resize: Resize = field(default_factory=lambda: Resize(224, 224))
    target_fps: int = 30
    num_frames: int = 32
    sampling_rate: int = 2
    clip: bool = True
    preset: Preset = HERO

    def __post_init__(self) -> None:
        self.clip_ticks = int(self.interval * self.target_fps)
        fps = math.floor(self.source_fps) if self.source_fps > 0 else self.target_fps
        span = self.num_frames * self.sampling_rate * fps / self.target_fps
        import torch  # the reference computed the offsets with torch.linspace (float32)

        index = torch.linspace(0, span - 1, self.num_frames)
        self.offsets = [int(v) for v in torch.clamp(index, 0, self.clip_ticks - 1).long()]

    @property
    def rate(self) -> Fraction:
        return Fraction(self.target_fps)

    @property
    def tail_block(self) -> int | None:
        return self.preset.tail_block

    def ticks(self, k: int) -> list[int]:
        return [k * self.clip_ticks + off for off in self.offsets]

    def describe(self) -> dict:
        return {"sampling": f"reference SlowFast: {self.target_fps} fps grid, clips of {self.clip_ticks} ticks, "
                            f"{self.num_frames} ticks at {self.offsets}",
                "resize": self.resize.to_dict()}


@dataclass
class UniformClipSampler(Sampler):
    """``num_frames`` frames per interval: ticks ``kT … kT + T − 1`` of a ``T/interval`` grid."""

    interval: float
    num_frames: int
    resize: Resize = field(default_factory=lambda: Resize(None, None))
    clip: bool = True
    preset: Preset = HERO

    @property
    def rate(self) -> Fraction:
        return self.num_frames / Fraction(self.interval)

    def ticks(self, k: int) -> list[int]:
        return [k * self.num_frames + i for i in range(self.num_frames)]

    def describe(self) -> dict:
        return {"sampling": f"{self.num_frames} evenly spaced frames per interval", "resize": self.resize.to_dict()}


@dataclass
class VideoInfo:
    """What decoding found out about a file.

    Attributes:
        duration: seconds from the first frame to the end of the last one.
        num_decoded: frames decoded.
        average_fps: the stream's average frame rate (0 if unknown).
        width, height: display size (after rotation).
        rotation: display rotation applied, degrees counter-clockwise.
        num_features: `num_features` of ``duration``.
        variable_frame_rate: frame gaps differ by more than 1 % of their median.
    """

    path: str
    duration: float = 0.0
    num_decoded: int = 0
    average_fps: float = 0.0
    width: int = 0
    height: int = 0
    rotation: int = 0
    codec: str = ""
    num_features: int = 0
    variable_frame_rate: bool = False


def probe_video(path: str | Path) -> tuple[float, float | None]:
    """``(average fps or 0.0, stream duration in s or None)`` of the first video stream, as ffprobe reports them.

    The duration is ``None`` where the reference's ffprobe call found no ``duration`` or
    ``nb_frames`` for the stream (e.g. Matroska), which disabled its duration-based rules.
    Raises `VideoError`.
    """
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate
            duration = None
            if stream.duration is not None and stream.time_base is not None and stream.frames:
                duration = float(stream.duration * stream.time_base)
            return (float(rate) if rate else 0.0), duration
    except av.FFmpegError as err:
        raise VideoError(f"{path}: cannot open ({err})") from err


def probe_fps(path: str | Path) -> float:
    """The average frame rate of the first video stream (0.0 when unknown); raises `VideoError`."""
    return probe_video(path)[0]


class _Converter:
    """Turns a decoded frame into an RGB array for one `Resize`, caching the last result."""

    def __init__(self, resize: Resize, rotation: int) -> None:
        self.resize, self.rotation = resize, rotation
        self._key: int | None = None
        self._value: np.ndarray | None = None

    def __call__(self, frame, frame_id: int) -> np.ndarray:
        if frame_id == self._key:
            return self._value  # the same source frame often fills several consecutive ticks
        quarter = (self.rotation // 90) % 4
        w, h = frame.width, frame.height
        disp_w, disp_h = (h, w) if quarter % 2 else (w, h)
        out_w, out_h = self.resize.output_size(disp_w, disp_h)
        enc_w, enc_h = (out_h, out_w) if quarter % 2 else (out_w, out_h)
        if (enc_w, enc_h) == (w, h) and frame.format.name == "rgb24":
            rgb = frame.to_ndarray()
        else:
            rgb = frame.reformat(width=enc_w, height=enc_h, format="rgb24",
                                 interpolation=self.resize.interpolation.upper()).to_ndarray()
        if quarter:
            rgb = np.rot90(rgb, k=quarter)
        crop = self.resize.crop
        if crop is not None:
            hh, ww = rgb.shape[:2]
            y, x = max(int((hh - crop) / 2.0), 0), max(int((ww - crop) / 2.0), 0)
            rgb = rgb[y:y + crop, x:x + crop]
        self._key, self._value = frame_id, np.ascontiguousarray(rgb)
        return self._value


class _Pending:
    """The item a sampler is filling: its ticks and the frames chosen so far."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler, self.k, self.images = sampler, 0, []
        self.rate = sampler.rate
        self.ticks = sampler.ticks(0)

    @property
    def next_tick(self) -> int:
        return self.ticks[len(self.images)]

    @property
    def next_threshold(self) -> Fraction:
        return (self.next_tick + Fraction(1, 2)) / self.rate

    def add(self, image: np.ndarray) -> np.ndarray | None:
        self.images.append(image)
        if len(self.images) < len(self.ticks):
            return None
        item = np.stack(self.images) if self.sampler.clip else self.images[0]
        self.k += 1
        self.images, self.ticks = [], self.sampler.ticks(self.k)
        return item


class _Windows:
    """For the ``first`` rule: the first frame of the ``fps`` window (rate ``R``) the latest frame lies in."""

    def __init__(self, rate: Fraction) -> None:
        self.rate, self.index, self.first = rate, None, None

    def update(self, frame, frame_id: int, t: Fraction) -> None:
        index = math.floor(t * self.rate + Fraction(1, 2))
        if index != self.index:
            self.index, self.first = index, (frame, frame_id)


class _TickHistory:
    """For tail tiling: the images of the last ``block`` grid ticks, every tick recorded in order."""

    def __init__(self, block: int, rate: Fraction) -> None:
        from collections import deque

        self.rate, self.next = rate, 0
        self.images: deque = deque(maxlen=block)  # (tick, image)
        self.final: np.ndarray | None = None
        self.final_from = 0

    def record_until(self, t: Fraction, image_of) -> None:
        """Record the ticks whose threshold is ``≤ t`` with ``image_of()`` (the frame they take)."""
        while (self.next + Fraction(1, 2)) / self.rate <= t:
            self.images.append((self.next, image_of()))
            self.next += 1

    def finish(self, num_ticks: int, image: np.ndarray) -> None:
        """At the end: the remaining ticks ``< num_ticks`` all take ``image`` (the filter's last output)."""
        self.final, self.final_from = image, self.next
        while self.next < num_ticks:
            self.images.append((self.next, image))
            self.next += 1

    def get(self, tick: int) -> np.ndarray:
        if tick >= self.final_from:
            return self.final
        return dict(self.images)[tick]


def decode_samples(path: str | Path, samplers: Sequence[Sampler], interval: float,
                   info: VideoInfo | None = None,
                   count_rate: Fraction | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
    """Decode ``path`` once and yield every sampler's items as soon as they are complete.

    Args:
        samplers: one per backbone (each with its preset's frame rule and tail padding).
        interval: seconds per feature (decides the number of items, `num_features`).
        info: filled in while decoding (complete when the generator is exhausted).
        count_rate: the 2-D pass's rate when it is not ``1/interval`` (`reference_frame_rate`),
            for the number of items.
    Yields:
        ``(sampler_index, k, array)``: item ``k`` of a sampler, ``(H, W, 3)`` uint8 for a frame
        sampler, ``(T, H, W, 3)`` for a clip sampler; items ``0..n−1`` of every sampler, each exactly once.
        The frames are those `select_frames` picks from the decoded timestamps.
    Raises:
        VideoError: no video stream, no decodable frame, or a decoding error.
    """
    import av

    info = info if info is not None else VideoInfo(str(path))
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as err:
        raise VideoError(f"{path}: cannot open ({err})") from err
    with container:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream (audio-only or empty container)")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate
        info.average_fps = float(rate) if rate else 0.0
        info.codec = stream.codec_context.name
        pending = [_Pending(s) for s in samplers]
        windows = [_Windows(s.rate) if s.preset.frame_rule == "first" else None for s in samplers]
        histories = [_TickHistory(s.tail_block, s.rate) if s.tail_block else None for s in samplers]
        converters: list[_Converter] | None = None
        prev = None
        prev_t = Fraction(0)
        t0: Fraction | None = None
        gaps: list[Fraction] = []
        count = 0

        def image_of(i: int, last, last_id: int) -> np.ndarray:
            # the frame a tick takes, given the last frame before its threshold
            frame, frame_id = windows[i].first if windows[i] is not None else (last, last_id)
            return converters[i](frame, frame_id)

        try:
            for frame in container.decode(stream):
                if frame.pts is not None and frame.time_base is not None:
                    t = Fraction(frame.pts) * Fraction(frame.time_base)
                else:  # no timestamps: assume the nominal rate
                    t = Fraction(count) / Fraction(rate if rate else 25)
                if t0 is None:
                    t0 = t
                    info.rotation = int(round(getattr(frame, "rotation", 0) or 0)) % 360
                    converters = [_Converter(s.resize, info.rotation) for s in samplers]
                t = max(t - t0, prev_t)  # relative, and never backwards
                if count:
                    gaps.append(t - prev_t)
                if prev is not None:
                    for i, p in enumerate(pending):
                        if histories[i] is not None:
                            histories[i].record_until(t, lambda: image_of(i, prev, count - 1))  # noqa: B023
                        while p.next_threshold <= t:
                            item = p.add(image_of(i, prev, count - 1))
                            if item is not None:
                                yield i, p.k - 1, item
                for w in windows:
                    if w is not None:
                        w.update(frame, count, t)
                prev, prev_t = frame, t
                count += 1
        except av.FFmpegError as err:
            raise VideoError(f"{path}: decoding failed after {count} frames ({err})") from err
        if prev is None:
            raise VideoError(f"{path}: no decodable video frames (zero-length or corrupt)")
        last_len = _last_frame_duration(prev, gaps, rate)
        duration = prev_t + last_len
        info.duration = float(duration)
        info.num_decoded = count
        info.num_features = num_features(info.duration, interval, count_rate)
        disp = (prev.height, prev.width) if (info.rotation // 90) % 2 else (prev.width, prev.height)
        info.width, info.height = disp
        if len(gaps) > 1:
            med = sorted(gaps)[len(gaps) // 2]
            info.variable_frame_rate = bool(med > 0 and any(abs(g - med) > med / 100 for g in gaps))
        # ticks past the last frame: the fps filter repeats its last output; with a tail block the
        # reference then tiles the whole last second of the grid (tile_tick)
        for i, p in enumerate(pending):
            history = histories[i]
            if history is not None:
                num_ticks = max(1, math.floor(duration * p.rate + Fraction(1, 2)))
                history.finish(num_ticks, image_of(i, prev, count - 1))
            while p.k < info.num_features:
                if history is not None:
                    image = history.get(tile_tick(p.next_tick, num_ticks, samplers[i].tail_block))
                else:
                    image = image_of(i, prev, count - 1)
                item = p.add(image)
                if item is not None:
                    yield i, p.k - 1, item


def _last_frame_duration(frame, gaps: list[Fraction], rate) -> Fraction:
    duration = getattr(frame, "duration", None)
    if duration and frame.time_base is not None:
        return Fraction(duration) * Fraction(frame.time_base)
    if gaps:
        return sorted(gaps)[len(gaps) // 2]
    if rate:
        return 1 / Fraction(rate)
    return Fraction(0)


def list_videos(source: str | Path) -> list[tuple[str, Path]]:
    """The videos to extract, as ``(video id, path)`` sorted by id.

    Args:
        source: a directory (searched recursively for `VIDEO_EXTENSIONS`) or a text file with
            one video path per line (relative paths are relative to the file; blank lines and
            ``#`` comments are skipped). The id is the file name without its extension, as
            ``hero data build`` names features and ``<vid>.srt`` subtitles, so ids must be unique.
    Raises:
        HeroError: a missing source or listed file, or two videos with the same id.
    """
    from hero.errors import HeroError

    source = Path(source)
    found: list[tuple[str, Path, str]] = []
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            if path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
                found.append((path.stem, path, str(path)))
    elif source.is_file():
        from hero.io import read_text

        for lineno, line in enumerate(read_text(source).splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            path = Path(line)
            if not path.is_absolute():
                path = source.parent / path
            if not path.is_file():
                raise HeroError(f"{source}:{lineno}: video file {line!r} does not exist")
            found.append((path.stem, path, f"{source}:{lineno}"))
    else:
        raise HeroError(f"{source}: no such video directory or list file")
    seen: dict[str, str] = {}
    for vid, _, where in found:
        if vid in seen:
            raise HeroError(f"video id {vid!r} is used twice: {seen[vid]} and {where} (rename one of them)")
        seen[vid] = where
    return sorted(((vid, path) for vid, path, _ in found), key=lambda x: x[0])
