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

Spatial transform (`Resize`): resize with libswscale bicubic, the scaler ffmpeg's ``scale`` filter
uses, so the short side becomes ``short_side`` (long side ``int(long·short_side/short)``), then an
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

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".ts",
                    ".3gp", ".ogv", ".wmv")


class VideoError(Exception):
    """A video that cannot be used (unreadable, no video stream, no frames); message says why."""


def num_features(duration: float, interval: float) -> int:
    """Features for a video of ``duration`` seconds: ``max(1, ⌊duration/interval + ½⌋)`` (0 if no duration)."""
    if duration <= 0:
        return 0
    return max(1, math.floor(Fraction(duration) / Fraction(interval) + Fraction(1, 2)))


@dataclass(frozen=True)
class Resize:
    """Spatial transform of a sampled frame.

    Attributes:
        short_side: target length of the shorter side (``None``: keep the native size).
        crop: side of a centre square crop taken after the resize (``None``: no crop).
    """

    short_side: int | None = 224
    crop: int | None = None

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` after the resize (before the crop), with the reference's integer rule."""
        s = self.short_side
        if s is None:
            return width, height
        if height >= width:
            return s, int(height * s / width)
        return int(width * s / height), s

    def to_dict(self) -> dict:
        return {"short_side": self.short_side, "crop": self.crop, "interpolation": "swscale bicubic"}


class Sampler:
    """Which frames make item ``k`` of one backbone, and how they are transformed.

    Subclasses define `thresholds` (non-decreasing across items) and whether an item is one
    frame (``(H, W, 3)``) or a clip (``(T, H, W, 3)``).
    """

    resize: Resize
    clip: bool = False

    def thresholds(self, k: int) -> list[Fraction]:
        raise NotImplementedError

    def describe(self) -> dict:
        raise NotImplementedError


@dataclass
class FrameSampler(Sampler):
    """One frame per interval: the frame at threshold ``(k + ½)·interval`` (the ``fps=1/interval`` filter)."""

    interval: float
    resize: Resize = field(default_factory=Resize)

    def thresholds(self, k: int) -> list[Fraction]:
        return [(k + Fraction(1, 2)) * Fraction(self.interval)]

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

    def __post_init__(self) -> None:
        self.clip_ticks = int(self.interval * self.target_fps)
        fps = math.floor(self.source_fps) if self.source_fps > 0 else self.target_fps
        span = self.num_frames * self.sampling_rate * fps / self.target_fps
        import torch  # the reference computed the offsets with torch.linspace (float32)

        index = torch.linspace(0, span - 1, self.num_frames)
        self.offsets = [int(v) for v in torch.clamp(index, 0, self.clip_ticks - 1).long()]

    def thresholds(self, k: int) -> list[Fraction]:
        base = k * self.clip_ticks
        return [Fraction(2 * (base + off) + 1, 2 * self.target_fps) for off in self.offsets]

    def describe(self) -> dict:
        return {"sampling": f"reference SlowFast: {self.target_fps} fps grid, clips of {self.clip_ticks} ticks, "
                            f"{self.num_frames} ticks at {self.offsets}",
                "resize": self.resize.to_dict()}


@dataclass
class UniformClipSampler(Sampler):
    """``num_frames`` frames per interval, at thresholds ``(k + (i + ½)/T)·interval``."""

    interval: float
    num_frames: int
    resize: Resize = field(default_factory=lambda: Resize(None, None))
    clip: bool = True

    def thresholds(self, k: int) -> list[Fraction]:
        iv = Fraction(self.interval)
        return [(k + Fraction(2 * i + 1, 2 * self.num_frames)) * iv for i in range(self.num_frames)]

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


def probe_fps(path: str | Path) -> float:
    """The average frame rate of the first video stream (0.0 when unknown); raises `VideoError`."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream")
            rate = container.streams.video[0].average_rate
            return float(rate) if rate else 0.0
    except av.FFmpegError as err:
        raise VideoError(f"{path}: cannot open ({err})") from err


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
            rgb = frame.reformat(width=enc_w, height=enc_h, format="rgb24", interpolation="BICUBIC").to_ndarray()
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
    """The item a sampler is filling: its thresholds and the frames chosen so far."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler, self.k, self.images = sampler, 0, []
        self.thr = sampler.thresholds(0)

    @property
    def next_threshold(self) -> Fraction:
        return self.thr[len(self.images)]

    def add(self, image: np.ndarray) -> np.ndarray | None:
        self.images.append(image)
        if len(self.images) < len(self.thr):
            return None
        item = np.stack(self.images) if self.sampler.clip else self.images[0]
        self.k += 1
        self.images, self.thr = [], self.sampler.thresholds(self.k)
        return item


def decode_samples(path: str | Path, samplers: Sequence[Sampler], interval: float,
                   info: VideoInfo | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
    """Decode ``path`` once and yield every sampler's items as soon as they are complete.

    Args:
        samplers: one per backbone.
        interval: seconds per feature (decides the number of items, `num_features`).
        info: filled in while decoding (complete when the generator is exhausted).
    Yields:
        ``(sampler_index, k, array)``: item ``k`` of a sampler, ``(H, W, 3)`` uint8 for a frame
        sampler, ``(T, H, W, 3)`` for a clip sampler; items ``0..n−1`` of every sampler, each exactly once.
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
        converters: list[_Converter] | None = None
        prev = None
        prev_t = Fraction(0)
        t0: Fraction | None = None
        gaps: list[Fraction] = []
        count = 0
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
                source, source_id = (prev, count - 1) if prev is not None else (frame, count)
                for i, p in enumerate(pending):
                    while p.next_threshold <= t:
                        item = p.add(converters[i](source, source_id))
                        if item is not None:
                            yield i, p.k - 1, item
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
        info.num_features = num_features(info.duration, interval)
        disp = (prev.height, prev.width) if (info.rotation // 90) % 2 else (prev.width, prev.height)
        info.width, info.height = disp
        if len(gaps) > 1:
            med = sorted(gaps)[len(gaps) // 2]
            info.variable_frame_rate = bool(med > 0 and any(abs(g - med) > med / 100 for g in gaps))
        # ticks past the last frame take the last frame (the fps filter repeats it; the reference tiles it)
        for i, p in enumerate(pending):
            while p.k < info.num_features:
                item = p.add(converters[i](prev, count - 1))
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
