"""`Corpus`: a prepared dataset directory as training and evaluation read it.

A corpus serves clips (`hero.data.batch.Clip`: frame features cut to ``max_clip_len`` and the
subtitle groups the reference loader would build) and annotation records. Stores open lazily and
are fork-safe, so a corpus built in the main process can be used by DataLoader workers.

``Corpus(root)`` reads our layout (`hero.data.build`); ``Corpus.from_reference(video_db, sub_db)``
reads the reference implementation's stores directly (`hero.data.reference_db`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from hero.config import TextTokens
from hero.data.batch import Clip
from hero.data.stores import FORMAT_VERSION, SubtitleStore, VideoFeatureStore, read_json
from hero.errors import HeroError
from hero.io import read_jsonl

CORPUS_FORMAT = "hero-corpus"


def read_corpus_json(root: Path) -> dict[str, Any]:
    path = root / "corpus.json"
    if not root.is_dir():
        raise HeroError(f"{root}: corpus directory not found (build one with `hero data build`, "
                        f"`hero data prepare` or `hero data synth`)")
    if not path.is_file():
        raise HeroError(f"{path}: missing; {root} is not a prepared dataset directory")
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != CORPUS_FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise HeroError(f"{path}: not a hero corpus (format field {found!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise HeroError(f"{path}: corpus format_version {data.get('format_version')!r}, this hero reads "
                        f"{FORMAT_VERSION}")
    return data


def _check_video_counts(corpus: Corpus) -> None:
    """The stores (already checked against their own side files) against each other and ``corpus.json``."""
    videos = corpus.video_store.keys()
    n = corpus.info.get("num_videos")
    if n is not None and n != len(videos):
        raise HeroError(f"{corpus.root / 'corpus.json'}: num_videos {n}, the video store holds {len(videos)} "
                        "(the corpus is damaged or incomplete: rebuild it)")
    subs = set(corpus.subtitle_store.keys())
    lacking = [v for v in videos if v not in subs]
    if lacking or len(subs) != len(videos):
        example = f", e.g. none for {lacking[0]!r}" if lacking else ""
        raise HeroError(f"{corpus.subtitle_store.path}: subtitle records for {len(subs)} videos, the video store "
                        f"holds {len(videos)}{example} (the corpus is damaged or incomplete: rebuild it)")


class Corpus:
    """A prepared dataset directory (DEVELOPERS.md, "A prepared dataset directory").

    Attributes:
        root: the directory.
        max_clip_len: frames a clip keeps (reference ``max_clip_len``; longer videos are cut).
        video_store: `VideoFeatureStore` (``.meta.dim`` is the frame-feature size).
        subtitle_store: `SubtitleStore`.
        frame_interval: seconds per frame.
        name: corpus name.
    """

    def __init__(self, root: str | Path, max_clip_len: int = 100) -> None:
        self.root = Path(root)
        self.info = read_corpus_json(self.root)
        self.name = str(self.info.get("name", self.root.name))
        self.max_clip_len = int(max_clip_len)
        if self.max_clip_len < 1:
            raise HeroError(f"max_clip_len must be >= 1, got {max_clip_len}")
        self.video_store: Any = VideoFeatureStore(self.root / "video")
        self.subtitle_store: Any = SubtitleStore(self.root / "subtitles")
        _check_video_counts(self)
        self.frame_interval = float(self.info.get("frame_interval", self.video_store.meta.frame_interval))
        self._tokenizer: Any = None
        self._tokenizer_spec: dict[str, Any] = dict(self.info.get("tokenizer") or {})
        self._annotations: dict[tuple[str, str], list[dict]] = {}
        self._annotation_files: dict[tuple[str, str], Path] | None = None

    # ---- construction from the reference stores -------------------------------------------

    @classmethod
    def from_reference(cls, video_db: str | Path, sub_db: str | Path, *, tokenizer: Any = "roberta-base",
                       max_clip_len: int = 100, annotations: Mapping[tuple[str, str], str | Path] | None = None,
                       frame_interval: float | None = None) -> Corpus:
        """A corpus reading the reference ``video_db`` and subtitle db directly (no conversion).

        Args:
            video_db: LMDB directory or dataset directory of the reference video_db.
            sub_db: the reference subtitle db directory.
            tokenizer: the tokenizer the db's ``input_ids`` come from (reference: ``roberta-base``),
                a name/directory or a `Tokenizer`.
            annotations: ``{(dataset, split): txt_db directory}`` read with
                `hero.data.reference_db.read_reference_annotations`.
        """
        from hero.data.reference_db import ReferenceSubtitleDb, ReferenceVideoDb

        self = cls.__new__(cls)
        self.video_store = ReferenceVideoDb(video_db, frame_interval=frame_interval)
        self.frame_interval = self.video_store.frame_interval
        self.subtitle_store = _ReferenceSubtitles(ReferenceSubtitleDb(sub_db), self.video_store, self.frame_interval)
        self.root = Path(video_db)
        self.name = self.root.name
        self.info = {"format": CORPUS_FORMAT, "name": self.name, "frame_interval": self.frame_interval,
                     "source": {"reference_video_db": str(video_db), "reference_sub_db": str(sub_db)}}
        self.max_clip_len = int(max_clip_len)
        if isinstance(tokenizer, (str, Path)):
            self._tokenizer, self._tokenizer_spec = None, {"name_or_path": str(tokenizer), "local_dir": None}
        else:
            self._tokenizer, self._tokenizer_spec = tokenizer, {}
        self._annotations = {}
        self._annotation_files = {(d, s): Path(p) for (d, s), p in (annotations or {}).items()}
        return self

    # ---- text -------------------------------------------------------------------------------

    @property
    def tokenizer(self) -> Any:
        """`hero.data.tokenizer.Tokenizer`, loaded on first use (from ``tokenizer/`` when shipped)."""
        if self._tokenizer is None:
            from hero.data.tokenizer import Tokenizer

            spec = self._tokenizer_spec
            if spec.get("local_dir"):
                target = str(self.root / spec["local_dir"])
            elif spec.get("name_or_path"):
                target = str(spec["name_or_path"])
            else:
                raise HeroError(f"{self.root}/corpus.json names no tokenizer")
            self._tokenizer = Tokenizer.load(target)
        return self._tokenizer

    @property
    def tokens(self) -> TextTokens:
        """Special token ids (from ``corpus.json`` when recorded, else from the tokenizer)."""
        recorded = self._tokenizer_spec.get("tokens")
        if recorded and self._tokenizer is None:
            return TextTokens.from_dict(recorded)
        return self.tokenizer.tokens

    @property
    def vocab_size(self) -> int:
        recorded = self._tokenizer_spec.get("vocab_size")
        if recorded and self._tokenizer is None:
            return int(recorded)
        return int(self.tokenizer.vocab_size)

    # ---- videos -----------------------------------------------------------------------------

    def video_ids(self) -> list[str]:
        return list(self.video_store.keys())

    def __len__(self) -> int:
        return len(self.video_store)

    def __contains__(self, vid: object) -> bool:
        return vid in self.video_store

    def num_frames(self, vid: str) -> int:
        """Frames the clip of ``vid`` has (after the ``max_clip_len`` cut)."""
        return min(self.video_store.num_frames(vid), self.max_clip_len)

    def clip(self, vid: str) -> Clip:
        """The clip of ``vid``: features ``(n, d)`` float32 with ``n <= max_clip_len`` and its groups.

        The groups are the reference loader's (`hero.data.alignment.loader_sub2frames`) over the
        alignment stored at build time. ``extra`` holds ``unmatched_frames`` (frames of no
        subtitle, within the clip) and ``pseudo``.
        """
        from hero.data.alignment import loader_sub2frames

        try:
            feats = self.video_store.get(vid)
        except KeyError:
            raise HeroError(f"{self.root}: no video {vid!r} in the corpus") from None
        record = self.subtitle_store.get(vid)
        n = min(int(feats.shape[0]), int(record["nframes"]), self.max_clip_len)
        groups, vonly, _ = loader_sub2frames(record["unique_sub2frames"], record["unmatched_frames"],
                                             int(record["nframes"]), n)
        return Clip(features=torch.from_numpy(feats[:n]), subtitles=record["input_ids"],
                    sub2frames=[(int(s), list(fr)) for s, fr in groups], vid=vid,
                    extra={"unmatched_frames": vonly, "pseudo": bool(record.get("pseudo", False))})

    def subtitles(self, vid: str) -> list[Any]:
        """The raw subtitles of ``vid`` (`hero.data.subtitles.Subtitle`); ``[]`` for pseudo ones."""
        from hero.data.subtitles import Subtitle

        record = self.subtitle_store.get(vid)
        if record.get("pseudo"):
            return []
        return [Subtitle(float(s["start"]), float(s["end"]), str(s["text"]), s.get("speaker"))
                for s in record["subs"]]

    # ---- annotations ------------------------------------------------------------------------

    def _files(self) -> dict[tuple[str, str], Path]:
        if self._annotation_files is None:
            files = {}
            base = self.root / "annotations"
            if base.is_dir():
                for path in sorted(base.glob("*/*.jsonl")):
                    files[(path.parent.name, path.stem)] = path
            self._annotation_files = files
        return self._annotation_files

    def datasets(self) -> list[tuple[str, str]]:
        """``[(dataset, split), ...]`` of the annotations the corpus holds."""
        return sorted(self._files())

    def annotations(self, dataset: str, split: str) -> list[dict]:
        """Records of ``annotations/<dataset>/<split>.jsonl`` (cached; do not modify them)."""
        key = (dataset, split)
        if key not in self._annotations:
            path = self._files().get(key)
            if path is None:
                have = ", ".join(f"{d}/{s}" for d, s in self.datasets()) or "none"
                raise HeroError(f"{self.root}: no annotations {dataset}/{split} (the corpus has: {have})")
            if (path / "data.mdb").is_file():
                from hero.data.reference_db import ReferenceTxtDb, read_reference_annotations

                self._annotations[key] = read_reference_annotations(ReferenceTxtDb(path), dataset)
            else:
                self._annotations[key] = read_jsonl(path)
        return self._annotations[key]

    def __repr__(self) -> str:
        return f"Corpus({str(self.root)!r}, {len(self)} videos, max_clip_len={self.max_clip_len})"


class _ReferenceSubtitles:
    """The reference subtitle db seen through our subtitle-store interface."""

    def __init__(self, db: Any, videos: Any, frame_interval: float) -> None:
        self.db, self.videos, self.frame_interval = db, videos, frame_interval

    def get(self, vid: str) -> dict[str, Any]:
        from hero.data.alignment import pseudo_groups
        from hero.data.reference_db import reference_to_hero_subtitles

        n = self.videos.num_frames(vid)
        if vid not in self.db:
            # The reference loader requires a record; a video-only dataset has pseudo groups.
            groups = pseudo_groups(n)
            return {"vid": vid, "nframes": n, "subs": [{} for _ in groups], "input_ids": [[] for _ in groups],
                    "unique_sub2frames": [[k, fr] for k, fr in groups], "unmatched_frames": [], "pseudo": True}
        return reference_to_hero_subtitles(self.db.get(vid), vid, n, self.frame_interval, f"{self.db.path}:{vid}")

    def keys(self) -> list[str]:
        return self.db.keys()

    def __contains__(self, vid: object) -> bool:
        return vid in self.db


__all__ = ["Corpus", "CORPUS_FORMAT", "read_corpus_json"]
