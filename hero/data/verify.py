"""``hero data verify``: read every record of a corpus and check it against what the corpus says
about itself.

The checks at open (`hero.data.stores`: the LMDB header against the file size, the keys against
``meta.json`` / ``nframes.json``) are cheap and run on every use; this module does the full pass:

* every video record decodes to ``(nframes.json[vid], meta.json dim)`` finite features, every
  subtitle record decodes and is consistent (`hero.data.stores.validate_subtitle_record`), with
  the frame count of its video;
* the checksum of each store's records (`hero.data.stores.RecordChecksum`) equals the one its
  ``meta.json`` recorded at build time (stores built before checksums existed have none: their
  counts and records are still checked);
* ``corpus.json``'s video and annotation counts match the stores and the annotation files, and
  every annotation names a video of the corpus.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hero.errors import HeroError

if TYPE_CHECKING:
    from hero.data.corpus import Corpus

MAX_PROBLEMS = 20
"""Problems kept per section (the count goes on)."""


@dataclass
class Section:
    """What the pass found in one part of the corpus (a store, or the annotations)."""

    name: str
    path: Path
    records: int = 0
    checksum: str = ""
    """``"ok"``, ``"none"`` (built before checksums existed), ``"mismatch"``, or ``""`` (not checked)."""
    problems: list[str] = field(default_factory=list)
    num_problems: int = 0
    skipped: str = ""
    """Why the part was not checked (empty when it was)."""

    def problem(self, message: str) -> None:
        self.num_problems += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(message)

    @property
    def ok(self) -> bool:
        return self.num_problems == 0

    def line(self) -> str:
        if self.skipped:
            return f"{self.name:<12}--   not checked: {self.skipped}"
        what = {"ok": ", checksum ok", "none": ", no checksum (built before checksums existed): counts and records "
                "checked", "mismatch": ", CHECKSUM MISMATCH"}.get(self.checksum, "")
        status = "OK " if self.ok else "BAD"
        extra = "" if self.ok else f"; {self.num_problems} problem(s)"
        return f"{self.name:<12}{status}  {self.records} records{what}{extra}"


def _store_pass(section: Section, open_store: Callable[[], Any], check: Callable[[Any, str, bytes], None],
                log: Callable[[str], None], progress_every: int) -> Any:
    """Open a store (the cheap checks), then read, check and hash every record."""
    from hero.data.stores import LazyLmdb, RecordChecksum

    try:
        store = open_store()
    except HeroError as err:
        section.problem(str(err))
        return None
    checksum = RecordChecksum()
    try:
        for key, value in LazyLmdb(store.path).items():
            section.records += 1
            checksum.add(key.encode("utf-8"), value)
            try:
                check(store, key, value)
            except HeroError as err:
                section.problem(str(err))
            if progress_every and section.records % progress_every == 0:
                log(f"  {section.name}: {section.records} records read")
    except HeroError as err:
        section.problem(str(err))
        return store
    recorded = store.meta.checksum if hasattr(store.meta, "checksum") else store.meta.get("checksum")
    if recorded is None:
        section.checksum = "none"
    elif recorded == checksum.hexdigest():
        section.checksum = "ok"
    else:
        section.checksum = "mismatch"
        section.problem(f"{store.path}: checksum mismatch: the records hash to {checksum.hexdigest()}, meta.json "
                        f"recorded {recorded} at build time (a record changed or was damaged since)")
    return store


def annotation_problems(corpus: Corpus, videos: Any = None) -> tuple[list[str], int]:
    """Read every annotation file of ``corpus``; ``(problems, records)``.

    Problems: a file that does not read, a count that differs from ``corpus.json``'s, a file
    ``corpus.json`` lists that is missing, and (given the video store ``videos``) records that
    name a video the corpus does not hold.
    """
    recorded = corpus.info.get("annotations") or {}
    counts = {(d, s): n for d, splits in (recorded.items() if isinstance(recorded, dict) else ())
              for s, n in (splits.items() if isinstance(splits, dict) else ())}
    problems: list[str] = []
    total = 0
    have = corpus.datasets()
    for dataset, split in sorted(set(counts) - set(have)):
        path = corpus.root / "annotations" / dataset / f"{split}.jsonl"
        problems.append(f"{path}: missing; corpus.json says it holds {counts[(dataset, split)]} records")
    for dataset, split in have:
        path = corpus.root / "annotations" / dataset / f"{split}.jsonl"
        try:
            records = corpus.annotations(dataset, split)
        except HeroError as err:
            problems.append(str(err))
            continue
        total += len(records)
        want = counts.get((dataset, split))
        if want is not None and len(records) != want:
            problems.append(f"{path}: {len(records)} records, corpus.json says {want}")
        if videos is not None:
            unknown = [r["vid"] for r in records if isinstance(r, dict) and isinstance(r.get("vid"), str)
                       and r["vid"] not in videos]
            if unknown:
                problems.append(f"{path}: {len(unknown)} record(s) name videos the corpus does not hold, "
                                f"e.g. {unknown[0]!r}")
    return problems, total


def verify_corpus(root: str | Path, log: Callable[[str], None] = print, progress_every: int = 5000) -> list[Section]:
    """Check every record of the corpus at ``root``; returns one `Section` per part.

    Raises `HeroError` only when ``root`` is not a corpus at all (no readable ``corpus.json``).
    """
    from hero.data.corpus import read_corpus_json
    from hero.data.stores import (
        SubtitleStore,
        VideoFeatureStore,
        decode_array,
        decode_subtitle_record,
        validate_subtitle_record,
    )

    root = Path(root)
    info = read_corpus_json(root)
    video = Section("video", root / "video")
    subtitles = Section("subtitles", root / "subtitles")
    annotations = Section("annotations", root / "annotations")

    def check_video(store: Any, vid: str, value: bytes) -> None:
        where = f"{store.path}:{vid}"
        arr = decode_array(value, where)
        if vid not in store:
            raise HeroError(f"{where}: a record nframes.json does not list")
        want = (store.num_frames(vid), store.meta.dim)
        if arr.shape != want:
            raise HeroError(f"{where}: corrupt feature record (shape {list(arr.shape)}; nframes.json and meta.json "
                            f"say {list(want)})")
        if not np.isfinite(arr).all():
            raise HeroError(f"{where}: corrupt feature record (non-finite values)")

    videos = _store_pass(video, lambda: VideoFeatureStore(root / "video"), check_video, log, progress_every)
    if videos is not None:
        n = info.get("num_videos")
        if n is not None and n != len(videos):
            video.problem(f"{root / 'corpus.json'}: num_videos {n}, the video store holds {len(videos)}")
    pseudo = 0

    def check_subtitles(store: Any, vid: str, value: bytes) -> None:
        nonlocal pseudo
        where = f"{store.path}:{vid}"
        record = decode_subtitle_record(value, where)
        try:
            validate_subtitle_record(record, where)
        except (TypeError, ValueError) as err:
            raise HeroError(err if isinstance(err, HeroError) else f"{where}: corrupt subtitle record ({err})") from err
        pseudo += bool(record.get("pseudo"))
        if videos is not None:
            if vid not in videos:
                raise HeroError(f"{where}: subtitles of a video the video store does not hold")
            if int(record["nframes"]) != videos.num_frames(vid):
                raise HeroError(f"{where}: {record['nframes']} frames, the video store holds "
                                f"{videos.num_frames(vid)}")

    subs = _store_pass(subtitles, lambda: SubtitleStore(root / "subtitles"), check_subtitles, log, progress_every)
    if subs is not None:
        if "num_pseudo" in subs.meta and subs.meta["num_pseudo"] != pseudo and subtitles.ok:
            subtitles.problem(f"{subs.path}/meta.json: num_pseudo {subs.meta['num_pseudo']}, the store holds "
                              f"{pseudo} videos with pseudo subtitles")
        if videos is not None:
            sub_keys = set(subs.keys())
            lacking = [v for v in videos.keys() if v not in sub_keys]
            if lacking:
                subtitles.problem(f"{subs.path}: no subtitle record for {len(lacking)} video(s) of the video store, "
                                  f"e.g. {lacking[0]!r}")

    # annotations: counts against corpus.json, every record names a video of the corpus
    if videos is not None and subs is not None:
        from hero.data.corpus import Corpus

        try:
            corpus = Corpus(root)
        except HeroError as err:
            annotations.problem(str(err))
        else:
            problems, annotations.records = annotation_problems(corpus, videos)
            for message in problems:
                annotations.problem(message)
    else:
        annotations.skipped = "the stores above are damaged"
    return [video, subtitles, annotations]


__all__ = ["MAX_PROBLEMS", "Section", "annotation_problems", "verify_corpus"]
