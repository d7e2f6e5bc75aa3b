"""The sampling presets of ``hero extract --preset`` (the one table of them; light to import for the CLI).

A preset fixes the rules that decide which decoded frame each feature sees and how it is scaled
(`hero.extract.video` applies them):

* ``hero`` (default): the current FFmpeg ``fps`` filter (the last frame of each window), bicubic
  scaling, the last frame repeated past the end of the video.
* ``hero-reference``: the HERO_Video_Feature_Extractor Docker image that made the released
  features: the ``fps`` filter of its FFmpeg 3.4 (the first frame of each window), bilinear
  scaling (its ``scale`` filter inside ``-filter_complex`` had libswscale's default), the
  SlowFast tail filled with copies of the last second, and 2 fps for 2-D features of videos
  of 1 to ``interval + 0.1`` s.
"""

from __future__ import annotations

from dataclasses import dataclass

from hero.errors import HeroError


@dataclass(frozen=True)
class Preset:
    """Sampling rules of ``hero extract --preset``; see the module docstring and `PRESETS`.

    Attributes:
        frame_rule: ``last`` (current FFmpeg ``fps`` filter: the last frame of each window) or
            ``first`` (FFmpeg ≤ 3.4: the first frame of each window).
        interpolation: libswscale scaler (PyAV name, lower case): ``bicubic`` or ``bilinear``.
        tail_block: SlowFast ticks past the end: ``None`` repeats the last frame; ``30`` repeats
            the whole last second of the 30 fps grid (`tile_tick`).
        short_video_rate: the reference's 2-D rate for short videos (`reference_frame_rate`).
    """

    name: str
    frame_rule: str
    interpolation: str
    tail_block: int | None
    short_video_rate: bool
    summary: str

    def to_dict(self) -> dict:
        return {"name": self.name, "frame_rule": self.frame_rule, "interpolation": self.interpolation,
                "tail_block": self.tail_block, "short_video_rate": self.short_video_rate}


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("hero", "last", "bicubic", None, False,
           "current FFmpeg fps filter (last frame of each window), bicubic, last frame repeated at the end"),
    Preset("hero-reference", "first", "bilinear", 30, True,
           "the HERO_Video_Feature_Extractor Docker image: first frame of each window (FFmpeg 3.4), "
           "bilinear, SlowFast tail repeats the last second, 2 fps for videos of 1 to interval+0.1 s"),
)}
DEFAULT_PRESET = "hero"


def get_preset(name: str) -> Preset:
    """The preset called ``name``; raises `HeroError` naming the choices."""
    if name not in PRESETS:
        raise HeroError(f"--preset {name!r} is unknown; choose from {', '.join(PRESETS)}")
    return PRESETS[name]


HERO = PRESETS[DEFAULT_PRESET]
