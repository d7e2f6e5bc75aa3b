"""The embedded synthetic "TV show" corpus (``hero data synth``): a seeded generator with planted
structure, so that every part of HERO can make a measurable difference on a laptop.

The generative story (``docs/synthetic.md`` tells it in full):

* A **world** of characters, locations, objects, colours and actions, each with a random unit
  prototype vector in feature space (`World`).
* A **video** is one episode (`Episode`): a location, a cast of 2–3 characters, and a sequence of
  **script** instances (`SCRIPTS`: events in a fixed temporal order, e.g. enter → pick up X → use X
  → put down X → leave), each preceded by a short idle gap. Each event spans 2–4 frames of 1.5 s.
  Frame features mix the prototypes of what is visible (location, characters present, the
  action, its actor, its object and the object's colour, the recipient) plus noise.
* **Subtitles** (`Line`): an event is narrated with probability ``narrate_prob`` ("bob : look ,
  alice picks up the red cup"); gaps and silent events carry dialogue-only chatter with
  probability ``chatter_prob``: a plan ("tomorrow i will go to the park"), a question about an
  absent person, or a request ("where is my cup ?") just before another character picks the
  object up. Colours are said only sometimes, so they are often frame-only facts.
* **Annotations** for every task (tvr, tvqa, violin, tvc) with train/val/test splits by video,
  in the corpus formats of DEVELOPERS.md, phrased with the dialogue's vocabulary.
* A **video-only subset** (``video_only_fraction`` of the videos) has no subtitles at all: the
  corpus gives them pseudo subtitles, and their annotations ask only about what is visible.

`generate(cfg)` is pure (NumPy, seeded, plain Python structures out); `build(cfg, out_dir)` trains
the tokenizer on the corpus text, tokenizes the annotations and writes the corpus with
`hero.data.build.build_corpus`. Every random draw comes from a stream seeded by ``(seed, purpose,
index)``, so the same seed gives byte-identical stores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hero.errors import HeroError

if TYPE_CHECKING:
    import numpy as np
# numpy is imported inside the functions that use it: `hero data synth --help` (and so `hero --help`,
# which builds every sub-command's options from this module) must not load it.

FRAME_INTERVAL = 1.5
"""Seconds per frame, as in the TV datasets."""

MIN_MOMENT_FRAMES = 3
"""Shortest tvr moment: the reference VCMR settings (``min_pred_l`` 2) predict spans of 3+ frames."""

CHARACTERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "henry", "iris", "jack",
              "kate", "leo", "mia", "noah")
LOCATIONS = ("kitchen", "office", "park", "cafe", "hospital", "library", "garden", "station")
COLORS = ("red", "blue", "green", "yellow", "black", "white")
OBJECTS: dict[str, tuple[str, str]] = {
    # object: (third-person, base form) of its "use" verb
    "cup": ("drinks from", "drink from"),
    "book": ("reads", "read"),
    "phone": ("talks on", "talk on"),
    "letter": ("opens", "open"),
    "bottle": ("shakes", "shake"),
    "camera": ("takes a photo with", "take a photo with"),
    "umbrella": ("opens", "open"),
    "guitar": ("plays", "play"),
    "ball": ("bounces", "bounce"),
    "lamp": ("turns on", "turn on"),
}


@dataclass(frozen=True)
class Action:
    """An action: its phrases (``{obj}`` = "the [colour] object", ``{target}``, ``{loc}``) and
    whether its object is visible in the frames."""

    third: str
    base: str
    object_visible: bool = True


ACTIONS: dict[str, Action] = {
    "enter": Action("enters the {loc}", "enter the {loc}", object_visible=False),
    "leave": Action("leaves the {loc}", "leave the {loc}", object_visible=False),
    "pick_up": Action("picks up {obj}", "pick up {obj}"),
    "use": Action("{use3} {obj}", "{use} {obj}"),
    "put_down": Action("puts down {obj}", "put down {obj}"),
    "give": Action("gives {obj} to {target}", "give {obj} to {target}"),
    "look_for": Action("looks for {obj}", "look for {obj}", object_visible=False),
    "find": Action("finds {obj}", "find {obj}"),
    "hide": Action("hides {obj}", "hide {obj}"),
    "throw": Action("throws {obj} to {target}", "throw {obj} to {target}"),
    "catch": Action("catches {obj}", "catch {obj}"),
}

SCRIPTS: dict[str, tuple[tuple[str, str], ...]] = {
    # script: its steps in their fixed order, each (action, who: "A" actor / "B" recipient)
    "take": (("enter", "A"), ("pick_up", "A"), ("use", "A"), ("put_down", "A"), ("leave", "A")),
    "share": (("pick_up", "A"), ("give", "A"), ("use", "B"), ("put_down", "B")),
    "lost": (("look_for", "A"), ("find", "A"), ("pick_up", "A"), ("hide", "A")),
    "play": (("pick_up", "A"), ("throw", "A"), ("catch", "B"), ("put_down", "B")),
}

SMALLTALK = ("i am so tired", "what a nice day", "this is fun", "i am hungry", "good morning",
             "that is funny", "i do not know")

QA_MODALITY = {
    "what_object": "frames", "who_did": "frames", "what_color": "frames", "plan": "dialogue",
    "absent": "dialogue", "fetch": "frames+dialogue", "next": "frames (script order)",
}
"""Which modality answers each TVQA ``q_type`` of the synthetic corpus (see docs/synthetic.md)."""

# feature mixture weights (prototypes are unit vectors)
W_STYLE, W_LOC, W_CHAR, W_ACTION, W_ACTOR, W_OBJECT, W_COLOR, W_TARGET = 0.3, 1.0, 0.5, 1.0, 0.7, 1.0, 0.6, 0.4

_WORLD, _EPISODE, _SPLIT, _TVR, _TVQA, _VIOLIN, _TVC, _OPEN_QA = range(8)

OPEN_QA_TYPES = ("who_did", "what_color", "plan", "absent", "fetch")
"""The TVQA question types whose answer is one word or two, asked open-ended in ``msrvtt_qa``."""
OPEN_QA_ANSWERS = CHARACTERS + COLORS + tuple(f"the {x}" for x in LOCATIONS)
"""Every answer of the synthetic ``msrvtt_qa`` (the answer vocabulary of its task settings)."""


# ---------------------------------------------------------------------------------------------
# Configuration and world
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the synthetic corpus (defaults: ~300 videos, built in seconds)."""

    videos: int = 300
    val_videos: int | None = None
    """Videos of the val split (default: a sixth of the videos); the test split likewise."""
    test_videos: int | None = None
    seed: int = 0
    dim: int = 32
    min_frames: int = 20
    max_frames: int = 32
    noise: float = 0.3
    """Norm of the per-frame Gaussian noise (relative to unit prototypes)."""
    narrate_prob: float = 0.5
    chatter_prob: float = 0.6
    request_prob: float = 0.35
    video_only_fraction: float = 0.1
    queries_per_video: int = 3
    qa_per_video: int = 3
    statements_per_video: int = 6
    """VIOLIN: this many (true, false) statement pairs per video."""
    captions_per_video: int = 2
    vocab_size: int = 1000

    def __post_init__(self) -> None:
        problems = []
        if self.videos < 3:
            problems.append(f"videos must be >= 3 (one per split), got {self.videos}")
        if self.dim < 1:
            problems.append(f"dim must be >= 1, got {self.dim}")
        if not 8 <= self.min_frames <= self.max_frames:
            problems.append(f"need 8 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}")
        for name in ("narrate_prob", "chatter_prob", "request_prob", "video_only_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.noise < 0:
            problems.append(f"noise must be >= 0, got {self.noise}")
        for name in ("queries_per_video", "qa_per_video", "statements_per_video", "captions_per_video"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        val, test = self.split_sizes()[1:]
        if val < 1 or test < 1 or val + test >= self.videos:
            problems.append(f"val ({val}) and test ({test}) videos must be >= 1 and leave training videos "
                            f"(of {self.videos})")
        if problems:
            raise HeroError("synthetic corpus settings: " + "; ".join(problems))

    def split_sizes(self) -> tuple[int, int, int]:
        """(train, val, test) numbers of videos."""
        default = max(1, round(self.videos / 6))
        val = default if self.val_videos is None else self.val_videos
        test = default if self.test_videos is None else self.test_videos
        return self.videos - val - test, val, test


def _rng(cfg: SynthConfig, purpose: int, index: int = 0) -> np.random.Generator:
    import numpy as np

    return np.random.default_rng([cfg.seed, purpose, index])


@dataclass
class World:
    """The prototype vectors of everything that can be visible: ``prototypes[kind][name] (dim,)``."""

    dim: int
    prototypes: dict[str, dict[str, np.ndarray]]

    @classmethod
    def create(cls, cfg: SynthConfig) -> World:
        import numpy as np

        rng = _rng(cfg, _WORLD)
        kinds = {"location": LOCATIONS, "character": CHARACTERS, "action": tuple(ACTIONS),
                 "object": tuple(OBJECTS), "color": COLORS}
        protos: dict[str, dict[str, np.ndarray]] = {}
        for kind, names in kinds.items():
            vecs = rng.standard_normal((len(names), cfg.dim))
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            protos[kind] = {n: v for n, v in zip(names, vecs)}
        return cls(cfg.dim, protos)

    def vector(self, kind: str, name: str) -> np.ndarray:
        return self.prototypes[kind][name]


# ---------------------------------------------------------------------------------------------
# Episodes
# ---------------------------------------------------------------------------------------------


@dataclass
class Event:
    """One scripted event over frames ``[start, end)``."""

    action: str
    actor: str
    start: int
    end: int
    script: str
    instance: int
    step: int
    obj: str | None = None
    color: str | None = None
    target: str | None = None
    narrated: bool = False

    @property
    def object_visible(self) -> bool:
        return self.obj is not None and ACTIONS[self.action].object_visible


@dataclass
class Line:
    """One subtitle line over frames ``[first, last)``; ``fact`` is what it states (or None)."""

    speaker: str
    text: str
    start: float
    end: float
    first: int
    last: int
    kind: str
    """``narration``, ``plan``, ``absent``, ``request`` or ``smalltalk``."""
    fact: dict[str, Any] = field(default_factory=dict)

    @property
    def subtitle_text(self) -> str:
        """The line as the subtitle carries it: speaker prefix included (TVQA style)."""
        return f"{self.speaker} : {self.text}"


@dataclass
class Episode:
    """One synthetic video. ``features (n, dim)`` float32; ``present[f]`` = characters visible."""

    vid: str
    split: str
    location: str
    cast: list[str]
    guests: list[str]
    events: list[Event]
    lines: list[Line]
    features: np.ndarray
    present: list[list[str]]
    video_only: bool

    @property
    def num_frames(self) -> int:
        return int(self.features.shape[0])

    @property
    def duration(self) -> float:
        return round(self.num_frames * FRAME_INTERVAL, 2)


def _obj_phrase(obj: str | None, color: str | None, with_color: bool) -> str:
    if obj is None:
        return ""
    return f"the {color} {obj}" if with_color and color else f"the {obj}"


def phrase(event: Event, location: str, with_color: bool = True, form: str = "third") -> str:
    """The verb phrase of an event, e.g. ``"picks up the red cup"`` (form ``third``/``base``)."""
    template = getattr(ACTIONS[event.action], form)
    use3, use = OBJECTS[event.obj] if event.obj else ("", "")
    return template.format(obj=_obj_phrase(event.obj, event.color, with_color), target=event.target or "",
                           loc=location, use3=use3, use=use)


def describe(event: Event, location: str, with_color: bool = True, with_location: bool = False) -> str:
    """A sentence about an event, e.g. ``"alice picks up the red cup in the kitchen"``."""
    text = f"{event.actor} {phrase(event, location, with_color)}"
    if with_location and event.action not in ("enter", "leave"):
        text += f" in the {location}"
    return text


def _span_times(first: int, last: int, rng: np.random.Generator) -> tuple[float, float]:
    """Subtitle times over frames ``[first, last)``, shrunk by a little jitter (< 1/4 frame each
    side) so that the reference alignment gives exactly these frames."""
    start = round(first * FRAME_INTERVAL + rng.uniform(0, 0.25 * FRAME_INTERVAL), 2)
    end = round(last * FRAME_INTERVAL - rng.uniform(0, 0.25 * FRAME_INTERVAL), 2)
    return start, end


def _choice(rng: np.random.Generator, items: list | tuple) -> Any:
    return items[int(rng.integers(len(items)))]


def make_episode(world: World, cfg: SynthConfig, index: int, vid: str, split: str,
                 video_only: bool) -> Episode:
    """Generate one episode (its own random stream: ``(seed, episode, index)``)."""
    import numpy as np

    rng = _rng(cfg, _EPISODE, index)
    location = _choice(rng, LOCATIONS)
    cast = [str(c) for c in rng.permutation(np.array(CHARACTERS))[: int(rng.integers(2, 4))]]
    outsiders = [c for c in CHARACTERS if c not in cast]
    n = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))

    # --- the timeline: (gap, script instance)* then idle frames ---
    events: list[Event] = []
    gaps: list[tuple[int, int, int]] = []  # (first, last, instance)
    guests: list[str] = []
    free_objects = [str(o) for o in rng.permutation(np.array(list(OBJECTS)))]
    cursor, instance = 0, 0
    while free_objects:
        gap = int(rng.integers(2, 4))
        script = _choice(rng, list(SCRIPTS))
        steps = SCRIPTS[script]
        lengths = rng.integers(2, 5, size=len(steps))
        ends = cursor + gap + np.cumsum(lengths)
        fits = int(np.sum(ends <= n))
        if fits < 2:
            break
        obj, color = free_objects.pop(0), _choice(rng, COLORS)
        if script == "take":
            # the actor is a guest who enters, so they are visible only during the script
            pool = [c for c in outsiders if c not in guests]
            actor = _choice(rng, pool)
            guests.append(actor)
            other = _choice(rng, cast)
        else:
            pair = rng.permutation(np.array(cast))[:2]
            actor, other = str(pair[0]), str(pair[1])
        gaps.append((cursor, cursor + gap, instance))
        start = cursor + gap
        for step, ((action, who), length) in enumerate(zip(steps[:fits], lengths[:fits])):
            target = other if action in ("give", "throw") else None
            events.append(Event(action=action, actor=actor if who == "A" else other, start=start,
                                end=start + int(length), script=script, instance=instance, step=step,
                                obj=None if action in ("enter", "leave") else obj,
                                color=None if action in ("enter", "leave") else color, target=target))
            start += int(length)
        cursor = start
        instance += 1
        if fits < len(steps):
            break
    idle_tail = (cursor, n)

    # --- who is visible: the cast throughout, a guest from "enter" to the end of "leave" ---
    present = [list(cast) for _ in range(n)]
    for guest in guests:
        ev = [e for e in events if e.actor == guest and e.script == "take"]
        first = ev[0].start
        last = ev[-1].end if ev[-1].action == "leave" else n
        for f in range(first, last):
            present[f].append(guest)

    # --- frame features ---
    feats = np.zeros((n, cfg.dim))
    style = rng.standard_normal(cfg.dim)
    feats += W_STYLE * style / np.linalg.norm(style)
    feats += W_LOC * world.vector("location", location)
    for f in range(n):
        for c in present[f]:
            feats[f] += W_CHAR * world.vector("character", c)
    for e in events:
        mix = W_ACTION * world.vector("action", e.action) + W_ACTOR * world.vector("character", e.actor)
        if e.object_visible:
            mix = mix + W_OBJECT * world.vector("object", e.obj) + W_COLOR * world.vector("color", e.color)
        if e.target:
            mix = mix + W_TARGET * world.vector("character", e.target)
        feats[e.start:e.end] += mix
    feats += rng.standard_normal((n, cfg.dim)) * (cfg.noise / math.sqrt(cfg.dim))

    lines: list[Line] = []
    if not video_only:
        lines = _dialogue(rng, cfg, location, cast, guests, events, gaps, idle_tail, present)
    return Episode(vid=vid, split=split, location=location, cast=cast, guests=guests, events=events,
                   lines=lines, features=feats.astype(np.float32), present=present, video_only=video_only)


def _chatter(rng: np.random.Generator, speaker: str, location: str, visible: set[str]) -> tuple[str, str, dict]:
    """A dialogue-only line: a plan, an absent person, or small talk (no fact)."""
    kind = _choice(rng, ("plan", "absent", "smalltalk"))
    if kind == "plan":
        place = _choice(rng, [x for x in LOCATIONS if x != location])
        return kind, f"tomorrow i will go to the {place}", {"speaker": speaker, "place": place}
    if kind == "absent":
        person = _choice(rng, [c for c in CHARACTERS if c not in visible])
        text = _choice(rng, (f"have you seen {person} ?", f"i am looking for {person}"))
        return kind, text, {"speaker": speaker, "person": person}
    return kind, _choice(rng, SMALLTALK), {}


def _dialogue(rng: np.random.Generator, cfg: SynthConfig, location: str, cast: list[str], guests: list[str],
              events: list[Event], gaps: list[tuple[int, int, int]], idle_tail: tuple[int, int],
              present: list[list[str]]) -> list[Line]:
    """The subtitle lines of an episode, in time order, never overlapping (one per segment)."""
    everyone = set(cast) | set(guests)
    segments: list[tuple[int, int, str, Any]] = [(a, b, "gap", k) for a, b, k in gaps]
    segments += [(e.start, e.end, "event", i) for i, e in enumerate(events)]
    if idle_tail[1] > idle_tail[0]:
        segments.append((idle_tail[0], idle_tail[1], "idle", None))
    segments.sort(key=lambda s: s[0])
    lines = []
    for first, last, what, ref in segments:
        speakers = present[first]
        if what == "event":
            event = events[ref]
            if rng.random() < cfg.narrate_prob:
                event.narrated = True
                with_color = bool(rng.random() < 0.5)
                where = f" in the {location}" if event.action not in ("enter", "leave") and rng.random() < 0.3 else ""
                if event.actor in speakers and rng.random() < 0.5:
                    speaker = event.actor
                    lead = _choice(rng, ("i ", "now i ", "let me "))
                    text = lead + phrase(event, location, with_color, form="base") + where
                else:
                    speaker = _choice(rng, [c for c in speakers if c != event.actor] or speakers)
                    lead = _choice(rng, ("", "look , ", "hey , "))
                    text = lead + describe(event, location, with_color) + where
                start, end = _span_times(first, last, rng)
                lines.append(Line(speaker, text, start, end, first, last, "narration",
                                  {"event": ref, "color": with_color}))
                continue
            if rng.random() >= cfg.chatter_prob * 0.5:
                continue
        elif what == "gap":
            pick = next((e for e in events if e.instance == ref and e.action == "pick_up"), None)
            askers = [c for c in speakers if pick is not None and c != pick.actor]
            if askers and rng.random() < cfg.request_prob:
                speaker = _choice(rng, askers)
                start, end = _span_times(first, last, rng)
                text = _choice(rng, (f"where is my {pick.obj} ?", f"i am looking for my {pick.obj}"))
                lines.append(Line(speaker, text, start, end, first, last, "request",
                                  {"speaker": speaker, "object": pick.obj, "instance": ref}))
                continue
            if rng.random() >= cfg.chatter_prob:
                continue
        elif rng.random() >= cfg.chatter_prob:
            continue
        speaker = _choice(rng, speakers)
        kind, text, fact = _chatter(rng, speaker, location, everyone)
        start, end = _span_times(first, last, rng)
        lines.append(Line(speaker, text, start, end, first, last, kind, fact))
    return lines


# ---------------------------------------------------------------------------------------------
# The corpus: episodes and annotations
# ---------------------------------------------------------------------------------------------


@dataclass
class SynthCorpus:
    """Everything `generate` produces, as plain Python/NumPy structures.

    ``annotations[dataset][split]`` are records in the corpus formats, without token ids.
    """

    config: SynthConfig
    world: World
    episodes: list[Episode]
    annotations: dict[str, dict[str, list[dict]]]

    def episode(self, vid: str) -> Episode:
        return self._by_vid[vid]

    def __post_init__(self) -> None:
        self._by_vid = {e.vid: e for e in self.episodes}

    @property
    def video_only(self) -> list[str]:
        return [e.vid for e in self.episodes if e.video_only]

    def texts(self) -> list[str]:
        """Every text of the corpus (subtitles and annotations), for training the tokenizer."""
        out = [line.subtitle_text for e in self.episodes for line in e.lines]
        # msrvtt_qa asks tvqa's questions open-ended: left out, the tokenizer (hence every other
        # dataset's token ids and the quickstart) is what it was before that dataset existed
        for records in (v for k, v in self.annotations.items() if k != "msrvtt_qa"):
            for split in records.values():
                for r in split:
                    out += [r[k] for k in ("desc", "q", "statement") if k in r]
                    out += r.get("answers", [])
                    out += [c["desc"] for c in r.get("captions", [])]
        return out


SPLITS = ("train", "val", "test")


def generate(cfg: SynthConfig | None = None) -> SynthCorpus:
    """Generate the whole corpus (pure, deterministic in ``cfg``)."""
    cfg = cfg or SynthConfig()
    world = World.create(cfg)
    n_train, n_val, _ = cfg.split_sizes()
    order = _rng(cfg, _SPLIT).permutation(cfg.videos)
    split_of = {int(v): ("train" if r < n_train else "val" if r < n_train + n_val else "test")
                for r, v in enumerate(order)}
    n_vonly = int(round(cfg.video_only_fraction * cfg.videos))
    # video-only videos: an even share of each split (every split keeps some with subtitles)
    vonly: set[int] = set()
    rng = _rng(cfg, _SPLIT, 1)
    for split in SPLITS:
        members = sorted(v for v, s in split_of.items() if s == split)
        share = max(0, min(len(members) - 1, int(round(n_vonly * len(members) / cfg.videos))))
        vonly.update(members[j] for j in rng.permutation(len(members))[:share])
    episodes = [make_episode(world, cfg, i, f"synth_{i:05d}", split_of[i], i in vonly) for i in range(cfg.videos)]
    annotations = {"tvr": {}, "tvqa": {}, "violin": {}, "tvc": {}, "msrvtt_qa": {}}
    counters = Counter()
    for split in SPLITS:
        eps = [e for e in episodes if e.split == split]
        annotations["tvr"][split] = _tvr(cfg, eps, counters)
        annotations["tvqa"][split] = _tvqa(cfg, eps, counters)
        annotations["violin"][split] = _violin(cfg, eps, counters)
        annotations["tvc"][split] = _tvc(cfg, eps, counters)
        annotations["msrvtt_qa"][split] = _open_qa(cfg, eps, counters)
    return SynthCorpus(cfg, world, episodes, annotations)


def _ts(first: int, last: int) -> list[float]:
    return [round(first * FRAME_INTERVAL, 2), round(last * FRAME_INTERVAL, 2)]


def _color_said(ep: Episode, obj: str) -> bool:
    """Whether any narration of the episode names the colour of ``obj``."""
    return any(line.kind == "narration" and line.fact["color"] and ep.events[line.fact["event"]].obj == obj
               for line in ep.lines)


# -- tvr (VCMR) ---------------------------------------------------------------------------------


def _tvr_candidates(ep: Episode) -> list[tuple[tuple, str, str, int, int]]:
    """(content key, type, query, first, last) of every describable moment of an episode."""
    out = []
    for e in ep.events:
        if e.action == "look_for":
            continue  # nothing of it is visible but the actor searching
        key = ("event", ep.location, e.actor, e.action, e.obj, e.color, e.target)
        out.append((key, "vt" if e.narrated else "v", describe(e, ep.location, True, True), e.start, e.end))
    for line in ep.lines:
        f = line.fact
        if line.kind == "plan":
            out.append((("plan", f["speaker"], f["place"]), "t",
                        f"{f['speaker']} will go to the {f['place']} tomorrow", line.first, line.last))
        elif line.kind == "absent":
            out.append((("absent", f["speaker"], f["person"]), "t", f"{f['speaker']} is looking for {f['person']}",
                        line.first, line.last))
        elif line.kind == "request":
            out.append((("request", f["speaker"], f["object"]), "t",
                        f"{f['speaker']} is looking for the {f['object']}", line.first, line.last))
    return out


def _tvr(cfg: SynthConfig, eps: list[Episode], counters: Counter) -> list[dict]:
    """Queries whose content is unique among all moments of the split, mixed over types v/t/vt."""
    import numpy as np

    cands = {ep.vid: _tvr_candidates(ep) for ep in eps}
    keys = Counter(c[0] for cs in cands.values() for c in cs)
    records = []
    for ep in eps:
        rng = _rng(cfg, _TVR, int(ep.vid.split("_")[-1]))
        unique = [c for c in cands[ep.vid] if keys[c[0]] == 1 and c[4] - c[3] >= MIN_MOMENT_FRAMES]
        by_type: dict[str, list] = {t: [] for t in ("v", "t", "vt")}
        for j in rng.permutation(len(unique)):
            by_type[unique[j][1]].append(unique[j])
        types = [str(t) for t in rng.permutation(np.array(["v", "t", "vt"]))]
        chosen = []
        while len(chosen) < cfg.queries_per_video and any(by_type.values()):
            for t in types:
                if by_type[t] and len(chosen) < cfg.queries_per_video:
                    chosen.append(by_type[t].pop(0))
        for _, qtype, desc, first, last in sorted(chosen, key=lambda c: (c[3], c[1])):
            records.append({"qid": str(counters["tvr"]), "vid": ep.vid, "desc": desc, "ts": _ts(first, last),
                            "duration": ep.duration, "type": qtype})
            counters["tvr"] += 1
    return records


# -- tvqa ---------------------------------------------------------------------------------------


def _options(rng: np.random.Generator, correct: str, hard: list[str], pool: list[str]) -> tuple[list[str], int]:
    """Five distinct answers: the correct one, up to two hard distractors, the rest from ``pool``."""
    hard = [h for h in dict.fromkeys(hard) if h != correct]
    picked = [hard[j] for j in rng.permutation(len(hard))[:2]]
    rest = [p for p in dict.fromkeys(pool) if p != correct and p not in picked]
    picked += [rest[j] for j in rng.permutation(len(rest))[: 4 - len(picked)]]
    if len(picked) < 4:
        raise HeroError(f"synthetic QA: too few distinct answers for {correct!r}")
    idx = int(rng.integers(5))
    return picked[:idx] + [correct] + picked[idx:], idx


def _tvqa_candidates(ep: Episode, rng: np.random.Generator) -> list[dict]:
    loc = ep.location
    everyone = list(dict.fromkeys(ep.cast + ep.guests))
    obj_names = [_obj_phrase(e.obj, e.color, True) for e in ep.events if e.object_visible]
    all_objs = [f"the {c} {o}" for o in OBJECTS for c in COLORS]
    out = []
    pairs = Counter((e.actor, e.action) for e in ep.events)
    for e in ep.events:
        if e.object_visible and e.action in ("pick_up", "put_down", "hide", "find", "catch") \
                and pairs[(e.actor, e.action)] == 1:
            q = f"what does {e.actor} {ACTIONS[e.action].base.format(obj='').strip()} ?"
            out.append(dict(q_type="what_object", q=q, correct=_obj_phrase(e.obj, e.color, True),
                            hard=obj_names + [f"the {c} {e.obj}" for c in COLORS], pool=all_objs,
                            span=(e.start, e.end)))
        if e.object_visible and e.action != "use":
            q = f"who {phrase(e, loc, True)} ?"
            out.append(dict(q_type="who_did", q=q, correct=e.actor, hard=everyone, pool=list(CHARACTERS),
                            span=(e.start, e.end)))
    seen_objs = []
    for e in ep.events:
        if e.object_visible and e.obj not in seen_objs and not _color_said(ep, e.obj):
            seen_objs.append(e.obj)
            out.append(dict(q_type="what_color", q=f"what color is the {e.obj} ?", correct=e.color, hard=[],
                            pool=list(COLORS), span=(e.start, e.end)))
    for line in ep.lines:
        f = line.fact
        if line.kind == "plan":
            out.append(dict(q_type="plan", q=f"where will {f['speaker']} go tomorrow ?", correct=f"the {f['place']}",
                            hard=[f"the {loc}"], pool=[f"the {x}" for x in LOCATIONS], span=(line.first, line.last)))
        elif line.kind == "absent":
            out.append(dict(q_type="absent", q=f"who is {f['speaker']} looking for ?", correct=f["person"],
                            hard=everyone, pool=list(CHARACTERS), span=(line.first, line.last)))
        elif line.kind == "request":
            pick = next(e for e in ep.events if e.instance == f["instance"] and e.action == "pick_up")
            if not pick.narrated:
                out.append(dict(q_type="fetch", q=f"who picks up what {f['speaker']} is looking for ?",
                                correct=pick.actor, hard=everyone, pool=list(CHARACTERS),
                                span=(line.first, pick.end)))
    for a, b in zip(ep.events, ep.events[1:]):
        if a.instance == b.instance and a.action != "look_for" and b.action != "look_for":
            others = [c for c in everyone if c != b.actor]
            alts = [Event(act, b.actor, b.start, b.end, b.script, b.instance, b.step, b.obj, b.color,
                          b.target or _choice(rng, others)) for act in ACTIONS
                    if act not in ("enter", "leave", b.action) and b.obj is not None]
            alts += [x for x in ep.events if x is not b and x.action != "look_for"]
            out.append(dict(q_type="next", q=f"what happens after {describe(a, loc)} ?", correct=describe(b, loc),
                            hard=[describe(x, loc) for x in alts[:4]], pool=[describe(x, loc) for x in alts],
                            span=(a.start, b.end)))
    return out


def _tvqa(cfg: SynthConfig, eps: list[Episode], counters: Counter) -> list[dict]:
    records = []
    for ep in eps:
        rng = _rng(cfg, _TVQA, int(ep.vid.split("_")[-1]))
        cands = _tvqa_candidates(ep, rng)
        # one question per q_type first (in random order), then any
        order = [cands[j] for j in rng.permutation(len(cands))]
        firsts, seen = [], set()
        for c in order:
            if c["q_type"] not in seen:
                seen.add(c["q_type"])
                firsts.append(c)
        chosen = (firsts + [c for c in order if c not in firsts])[: cfg.qa_per_video]
        for c in sorted(chosen, key=lambda c: c["span"]):
            answers, idx = _options(rng, c["correct"], c["hard"], c["pool"])
            records.append({"qid": str(counters["tvqa"]), "vid": ep.vid, "q": c["q"], "answers": answers,
                            "answer_idx": idx, "ts": _ts(*c["span"]), "q_type": c["q_type"]})
            counters["tvqa"] += 1
    return records


def _open_qa(cfg: SynthConfig, eps: list[Episode], counters: Counter) -> list[dict]:
    """Open-ended questions (MSR-VTT-QA style): tvqa's short-answer question types, from a stream of
    their own (the tvqa records are unchanged), ``qa_per_video`` per video."""
    records = []
    for ep in eps:
        rng = _rng(cfg, _OPEN_QA, int(ep.vid.split("_")[-1]))
        cands = [c for c in _tvqa_candidates(ep, rng)
                 if c["q_type"] in OPEN_QA_TYPES and c["correct"] in OPEN_QA_ANSWERS]
        for j in sorted(rng.permutation(len(cands))[: cfg.qa_per_video]):
            c = cands[int(j)]
            records.append({"qid": f"oq{counters['msrvtt_qa']}", "vid": ep.vid, "q": c["q"], "answer": c["correct"],
                            "q_type": c["q_type"]})
            counters["msrvtt_qa"] += 1
    return records


# -- violin -------------------------------------------------------------------------------------


def _violin(cfg: SynthConfig, eps: list[Episode], counters: Counter) -> list[dict]:
    """Per video, ``statements_per_video`` (true, false) statement pairs.

    The false twin edits one thing of the true statement, like VIOLIN's: an event's actor or object
    (swapped for one the video never shows), who is on stage (an absent character), the order of
    two events, or a fact from the dialogue (the plan's place, the absent person). Swapping in
    something absent rather than a colour or an action of the same video keeps the check within
    reach of a CPU-sized model: the frames show whether a character or an object appears, while
    binding a colour or an action to the right event needs a deeper Temporal Transformer than
    ``hero-small``'s one layer (docs/downstream.md).
    """
    records = []
    for ep in eps:
        rng = _rng(cfg, _VIOLIN, int(ep.vid.split("_")[-1]))
        loc = ep.location
        visible = [e for e in ep.events if e.action != "look_for"]
        truths = {describe(e, loc) for e in ep.events}
        truths |= {f"{describe(a, loc)} , and then {describe(b, loc)}" for a in visible for b in visible
                   if a.start < b.start}
        shown = set(ep.cast) | set(ep.guests) | {e.target for e in ep.events if e.target}
        absent_people = [c for c in CHARACTERS if c not in shown]
        absent_objects = [o for o in OBJECTS if o not in {e.obj for e in ep.events}]
        facts = [line for line in ep.lines if line.kind in ("plan", "absent")]
        pairs: list[tuple[str, str, str]] = []
        for _ in range(8 * max(1, cfg.statements_per_video)):
            if len(pairs) >= cfg.statements_per_video or not visible:
                break
            kind = _choice(rng, ("event", "event", "scene", "order", "fact"))
            if kind == "fact" and facts:
                line = _choice(rng, facts)
                f = line.fact
                if line.kind == "plan":
                    other = _choice(rng, [x for x in LOCATIONS if x not in (f["place"], loc)])
                    true, false = (f"{f['speaker']} will go to the {p} tomorrow" for p in (f["place"], other))
                else:
                    other = _choice(rng, [c for c in CHARACTERS if c != f["person"]])
                    true, false = (f"{f['speaker']} is looking for {p}" for p in (f["person"], other))
            elif kind == "order" and len(visible) >= 2:
                a, b = sorted((visible[j] for j in rng.permutation(len(visible))[:2]), key=lambda e: e.start)
                true = f"{describe(a, loc)} , and then {describe(b, loc)}"
                false = f"{describe(b, loc)} , and then {describe(a, loc)}"
            elif kind == "scene" and absent_people:
                true, false = (f"{c} is in the {loc}" for c in (_choice(rng, ep.cast), _choice(rng, absent_people)))
            else:
                kind, e = "event", _choice(rng, visible)
                true, false = describe(e, loc), _perturb(rng, e, ep, absent_people, absent_objects)
            if false is None or false in truths or any(true == p[0] for p in pairs):
                continue
            pairs.append((true, false, kind))
        # HERO's VIOLIN ids: a true/false pair shares its stem, "<n>-1" (true) and "<n>-0" (false),
        # so fine-tuning can train on statement pairs as the reference does
        for true, false, kind in pairs:
            for statement, label in ((true, 1), (false, 0)):
                records.append({"qid": f"{counters['violin']}-{label}", "vid": ep.vid, "statement": statement,
                                "label": label, "kind": kind})
            counters["violin"] += 1
    return records


def _perturb(rng: np.random.Generator, e: Event, ep: Episode, absent_people: list[str],
             absent_objects: list[str]) -> str | None:
    """The description of ``e`` with its actor or its object swapped for one absent from the video."""
    new = dataclasses.replace(e)
    if e.obj and absent_objects and (rng.random() < 0.5 or not absent_people):
        new.obj = _choice(rng, absent_objects)
    elif absent_people:
        new.actor = _choice(rng, absent_people)
    else:
        return None
    return describe(new, ep.location)


# -- tvc ----------------------------------------------------------------------------------------


def _tvc(cfg: SynthConfig, eps: list[Episode], counters: Counter) -> list[dict]:
    records = []
    for ep in eps:
        rng = _rng(cfg, _TVC, int(ep.vid.split("_")[-1]))
        visible = [e for e in ep.events if e.action != "look_for"]
        chosen = sorted((visible[j] for j in rng.permutation(len(visible))[: cfg.captions_per_video]),
                        key=lambda e: e.start)
        for e in chosen:
            caps = []
            for desc in dict.fromkeys((describe(e, ep.location, True), describe(e, ep.location, False, True))):
                caps.append({"desc_id": counters["tvc_desc"], "desc": desc})
                counters["tvc_desc"] += 1
            records.append({"clip_id": str(counters["tvc"]), "vid": ep.vid, "ts": _ts(e.start, e.end),
                            "duration": ep.duration, "captions": caps})
            counters["tvc"] += 1
    return records


# ---------------------------------------------------------------------------------------------
# Writing the corpus
# ---------------------------------------------------------------------------------------------


Annotations = dict[str, dict[str, list[dict]]]


def tokenize_annotations(annotations: Annotations, tokenizer: Any) -> Annotations:
    """Copies of the records with their token ids (``input_ids``, ``q_ids``/``a_ids``), as the
    dataset converters write them (query text rules: no HTML unescaping)."""
    def enc(text: str) -> list[int]:
        return tokenizer.encode(text, unescape=False)

    out: dict[str, dict[str, list[dict]]] = {}
    for dataset, splits in annotations.items():
        out[dataset] = {}
        for split, records in splits.items():
            done = []
            for r in records:
                r = json.loads(json.dumps(r))  # deep copy of plain JSON data
                if "desc" in r:
                    r["input_ids"] = enc(r["desc"])
                if "statement" in r:
                    r["input_ids"] = enc(r["statement"])
                if "q" in r:
                    r["q_ids"] = enc(r["q"])
                if "answers" in r:
                    r["a_ids"] = [enc(a) for a in r["answers"]]
                for cap in r.get("captions", []):
                    cap["input_ids"] = enc(cap["desc"])
                done.append(r)
            out[dataset][split] = done
    return out


def build(cfg: SynthConfig, out_dir: str | Path, *, overwrite: bool = False, log: Any = print) -> Path:
    """Generate the corpus of ``cfg`` and write it to ``out_dir`` (atomically), with its own
    byte-level BPE tokenizer trained on the corpus text.

    Returns:
        ``out_dir``, openable with `hero.data.corpus.Corpus`.
    """
    import shutil
    import tempfile

    from hero.data.build import build_corpus
    from hero.data.problems import Problems
    from hero.data.subtitles import Subtitle
    from hero.data.tokenizer import train_tokenizer

    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise HeroError(f"{out_dir}: already exists (pass --overwrite to replace it)")
    if overwrite:  # before the generation: --overwrite replaces only an earlier corpus
        from hero.io import check_replaceable

        check_replaceable(out_dir, kind="hero-corpus", how="--overwrite replaces only an earlier corpus; "
                          "move it away or choose another --out")
    corpus = generate(cfg)
    from hero.io import writing

    with writing(out_dir):  # a full disk names the corpus, not the temporary tokenizer
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.synth.", dir=out_dir.parent))
        try:
            tokenizer = train_tokenizer(corpus.texts(), cfg.vocab_size, work / "tokenizer")
            # the corpus ships its copy (tokenizer/); the training directory is temporary
            tokenizer.name_or_path = f"hero-synthetic-bpe-{tokenizer.vocab_size}"
            subtitles = {e.vid: [Subtitle(line.start, line.end, line.subtitle_text, line.speaker) for line in e.lines]
                         for e in corpus.episodes}
            source = {"generator": "hero.data.synth", "config": dataclasses.asdict(cfg),
                      "video_only": corpus.video_only}
            # strict: a skipped record here would be a bug of the generator, not bad input
            problems = Problems(strict=True)
            build_corpus(out_dir, name="synthetic", frame_interval=FRAME_INTERVAL,
                         videos=((e.vid, e.features) for e in corpus.episodes), subtitles=subtitles,
                         annotations=tokenize_annotations(corpus.annotations, tokenizer), tokenizer=tokenizer,
                         feature_names=[("synthetic", cfg.dim)], max_frames=max(100, cfg.max_frames),
                         problems=problems, source=source, overwrite=overwrite, save_tokenizer=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    log(summary(corpus, tokenizer.vocab_size, out_dir))
    return out_dir


def summary(corpus: SynthCorpus, vocab_size: int, out_dir: str | Path) -> str:
    """A few lines describing a generated corpus."""
    cfg = corpus.config
    frames = [e.num_frames for e in corpus.episodes]
    splits = Counter(e.split for e in corpus.episodes)
    lines = [
        f"synthetic corpus in {out_dir}",
        f"  videos: {len(corpus.episodes)} (" + ", ".join(f"{s} {splits[s]}" for s in SPLITS)
        + f"; {len(corpus.video_only)} video-only), {min(frames)}-{max(frames)} frames of "
        f"{FRAME_INTERVAL} s, features {cfg.dim}-d, seed {cfg.seed}",
        f"  subtitles: {sum(len(e.lines) for e in corpus.episodes)} lines; tokenizer: byte-level BPE, "
        f"{vocab_size} ids",
    ]
    for dataset, splits_ in corpus.annotations.items():
        lines.append(f"  {dataset}: " + ", ".join(f"{s} {len(r)}" for s, r in splits_.items()))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# CLI: hero data synth
# ---------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hero.argtypes import nonnegative_float, nonnegative_int, positive_int, probability

    d = SynthConfig()
    parser.add_argument("--out", type=Path, required=True, help="corpus directory to create")
    parser.add_argument("--videos", type=positive_int, default=d.videos, help="number of videos (episodes)")
    parser.add_argument("--val-videos", type=positive_int, default=None,
                        help="videos of the val split (default videos/6)")
    parser.add_argument("--test-videos", type=positive_int, default=None,
                        help="videos of the test split (default videos/6)")
    parser.add_argument("--seed", type=nonnegative_int, default=d.seed)
    parser.add_argument("--dim", type=positive_int, default=d.dim, help="frame feature dimension")
    parser.add_argument("--min-frames", type=positive_int, default=d.min_frames)
    parser.add_argument("--max-frames", type=positive_int, default=d.max_frames)
    parser.add_argument("--noise", type=nonnegative_float, default=d.noise, help="norm of the per-frame feature noise")
    parser.add_argument("--narrate-prob", type=probability, default=d.narrate_prob,
                        help="probability that dialogue narrates an event")
    parser.add_argument("--chatter-prob", type=probability, default=d.chatter_prob,
                        help="probability of a dialogue-only line in a silent stretch")
    parser.add_argument("--request-prob", type=probability, default=d.request_prob,
                        help="probability that someone asks for the object before a script")
    parser.add_argument("--video-only-fraction", type=probability, default=d.video_only_fraction,
                        help="share of videos without subtitles")
    parser.add_argument("--queries-per-video", type=positive_int, default=d.queries_per_video, help="tvr queries")
    parser.add_argument("--qa-per-video", type=positive_int, default=d.qa_per_video, help="tvqa questions")
    parser.add_argument("--statements-per-video", type=positive_int, default=d.statements_per_video,
                        help="violin: (true, false) statement pairs")
    parser.add_argument("--captions-per-video", type=positive_int, default=d.captions_per_video, help="tvc clips")
    parser.add_argument("--vocab-size", type=positive_int, default=d.vocab_size, help="tokenizer vocabulary (max)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing corpus")


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    names = {f.name for f in dataclasses.fields(SynthConfig)}
    return SynthConfig(**{k: v for k, v in vars(args).items() if k in names})


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    build(config_from_args(args), args.out, overwrite=args.overwrite)
    print(f"  built in {time.perf_counter() - started:.1f} s; open with hero.data.corpus.Corpus({str(args.out)!r})")
    return 0


__all__ = [
    "ACTIONS", "COLORS", "CHARACTERS", "LOCATIONS", "MIN_MOMENT_FRAMES", "OBJECTS", "QA_MODALITY", "SCRIPTS", "SPLITS",
    "Episode", "Event", "Line", "SynthConfig", "SynthCorpus", "World",
    "add_arguments", "build", "describe", "generate", "make_episode", "run", "summary", "tokenize_annotations",
]
