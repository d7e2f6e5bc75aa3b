"""Building a prepared dataset directory (`hero.data.corpus.Corpus`) from features, subtitles and annotations.

`build_corpus` streams the videos once: each video's features are read and checked, its
subtitles are checked, tokenized and aligned to its frames (`hero.data.alignment.align_subtitles`,
the reference procedure, over all frames), and both go into the stores. Annotations are then
checked against the videos that made it in and written as JSONL. Everything is written into a
temporary sibling of ``out_dir`` that is renamed into place only when complete.

Bad input is never dropped silently (`hero.data.problems.Problems`):

=============================  ============================================================
kind                           treatment
=============================  ============================================================
unreadable features            skip the video
zero-frame video               skip the video
dimension mismatch             skip the video (the first video fixes the dimension)
non-finite features            skip the video (NaN/inf, or beyond the float16 range)
duplicate video                skip the second one
frame counts differ            note: feature sets cut to the shortest (reference rule)
video longer than frame limit  note: stored whole, clips are cut to the limit at read time
empty subtitle                 skip the subtitle
subtitle out of range          skip the subtitle (negative start, end <= start, or starting
                               after the video ends)
unsorted subtitles             note: sorted by start time (the alignment needs the order)
no subtitles                   note: pseudo subtitles (empty text, groups of 5 frames)
subtitles of unknown video     skip those subtitles
missing video                  skip the annotation record naming it
malformed annotation           skip the record (`hero.data.prepare.common.check_record`:
                               types, ``ts`` order and range, ids, answers, labels, captions)
moment outside the video       skip the record (its moment starts after the last frame)
duplicate annotation           skip the record (its id repeats one of the same split)
=============================  ============================================================

Feature readers: `read_feature_dir` understands per-video ``.npz``/``.npy`` files (one feature
set), one sub-directory per named feature set (concatenated in the given order), and the
reference extractor layout (``resnet_features/`` then ``slowfast_features/`` → 4352-d).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hero.data.problems import Problems
from hero.data.stores import (
    FORMAT_VERSION,
    SubtitleStoreWriter,
    VideoStoreWriter,
    replace_dir,
    temp_sibling,
    write_json,
)
from hero.errors import HeroError
from hero.io import check_replaceable, writing

CORPUS_FORMAT = "hero-corpus"
DEFAULT_MAX_FRAMES = 100
"""The reference ``max_clip_len``: frames a clip keeps at read time."""
FEATURE_SUFFIXES = (".npz", ".npy")
REFERENCE_SETS = (("resnet_features", "resnet152"), ("slowfast_features", "slowfast_r50"))
"""The reference extractor's directories, in concatenation order, and our names for them."""
KNOWN_DIMS = {"resnet152": 2048, "slowfast_r50": 2304}


# --------------------------------------------------------------------------------------------
# feature files


def load_feature_file(path: str | Path) -> np.ndarray:
    """Features ``(n, d)`` of one ``.npy`` or ``.npz`` file (key ``features``, or its only array)."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as npz:
            if "features" in npz.files:
                return npz["features"]
            if len(npz.files) == 1:
                return npz[npz.files[0]]
            raise HeroError(f"{path}: no 'features' array (arrays: {npz.files})")
    except HeroError:
        raise
    except (OSError, ValueError, KeyError, EOFError) as err:
        raise HeroError(f"{path}: unreadable feature file ({err})") from err


def _index_files(root: Path) -> dict[str, Path]:
    """``{vid: file}`` of the feature files under ``root`` (recursive; vid = file name stem)."""
    out: dict[str, Path] = {}
    for f in sorted(root.rglob("*")):
        if f.is_file() and f.suffix in FEATURE_SUFFIXES:
            if f.stem in out:
                raise HeroError(f"{f}: video id {f.stem!r} also has features in {out[f.stem]}")
            out[f.stem] = f
    return out


@dataclass
class FeatureDir:
    """Per-video features under a directory, possibly split into named feature sets.

    Iterating yields ``(vid, array (n, d))`` with the sets concatenated in order and cut to the
    shortest set (the reference pairs ResNet and SlowFast files this way). A video missing from
    one set, or with an unreadable file, is reported through ``problems`` and left out.

    Attributes:
        sets: ``[(feature name, {vid: file})]`` in concatenation order.
    """

    root: Path
    sets: list[tuple[str, dict[str, Path]]]
    problems: Problems = field(default_factory=Problems)
    _dims: list[int] | None = None

    @property
    def vids(self) -> list[str]:
        return sorted(set().union(*(files for _, files in self.sets)))

    @property
    def features(self) -> list[dict[str, Any]]:
        """``[{"name", "dim"}]`` from the first video that has every set."""
        if self._dims is None:
            common = sorted(set.intersection(*(set(files) for _, files in self.sets)))
            if not common:
                raise HeroError(f"{self.root}: no video has features in every set "
                                f"({', '.join(name for name, _ in self.sets)})")
            self._dims = []
            for _, files in self.sets:
                arr = load_feature_file(files[common[0]])
                if arr.ndim != 2:
                    raise HeroError(f"{files[common[0]]}: features of shape {arr.shape}, expected (frames, dim)")
                self._dims.append(int(arr.shape[1]))
        return [{"name": name, "dim": d} for (name, _), d in zip(self.sets, self._dims)]

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for vid in self.vids:
            parts, where = [], []
            for name, files in self.sets:
                if vid not in files:
                    self.problems.skip("missing video", f"{self.root}:{vid}", f"no {name} features for video {vid!r}")
                    parts = None
                    break
                try:
                    arr = load_feature_file(files[vid])
                except HeroError as err:
                    self.problems.skip("unreadable features", str(files[vid]), str(err))
                    parts = None
                    break
                if arr.ndim != 2:
                    self.problems.skip("bad feature shape", str(files[vid]),
                                       f"features of shape {arr.shape}, expected (frames, dim)")
                    parts = None
                    break
                parts.append(arr)
                where.append(files[vid])
            if parts is None:
                continue
            lengths = [p.shape[0] for p in parts]
            n = min(lengths)
            if len(set(lengths)) > 1:
                self.problems.note("frame counts differ", f"{self.root}:{vid}",
                                   f"frame counts {dict(zip((s for s, _ in self.sets), lengths))}; "
                                   f"all cut to the shortest ({n}), as the reference does")
            yield vid, (np.concatenate([p[:n] for p in parts], axis=1) if len(parts) > 1 else parts[0])


def read_feature_dir(root: str | Path, feature_sets: Sequence[str] | None = None,
                     problems: Problems | None = None) -> FeatureDir:
    """Find the per-video feature files under ``root``.

    Args:
        feature_sets: sub-directories of ``root``, one per feature set, concatenated in this order
            (``name=subdir`` names a set differently from its directory). None: the reference
            layout (``resnet_features/`` + ``slowfast_features/``) when present, else every
            ``.npz``/``.npy`` under ``root`` as one set named ``features``.
    """
    root = Path(root)
    if not root.is_dir():
        raise HeroError(f"{root}: feature directory not found")
    problems = problems if problems is not None else Problems()
    if feature_sets:
        sets = []
        for spec in feature_sets:
            name, _, sub = spec.partition("=")
            sub = sub or name
            if not (root / sub).is_dir():
                raise HeroError(f"{root / sub}: feature set directory not found")
            sets.append((name, _index_files(root / sub)))
    elif all((root / d).is_dir() for d, _ in REFERENCE_SETS):
        sets = [(name, _index_files(root / d)) for d, name in REFERENCE_SETS]
    else:
        sets = [("features", _index_files(root))]
    for name, files in sets:
        if not files:
            raise HeroError(f"{root}: no .npz/.npy feature files for feature set {name!r}")
    return FeatureDir(root, sets, problems)


# --------------------------------------------------------------------------------------------
# the builder


def _feature_specs(feature_names: Any, dim: int) -> list[dict[str, Any]]:
    if feature_names is None:
        return [{"name": "features", "dim": dim}]
    specs = []
    for f in feature_names:
        if isinstance(f, dict):
            specs.append({"name": str(f["name"]), "dim": int(f["dim"])})
        elif isinstance(f, str):
            specs.append({"name": f, "dim": KNOWN_DIMS.get(f, -1)})
        else:
            specs.append({"name": str(f[0]), "dim": int(f[1])})
    unknown = [s for s in specs if s["dim"] < 0]
    if len(unknown) == 1:
        unknown[0]["dim"] = dim - sum(s["dim"] for s in specs if s["dim"] >= 0)
    if any(s["dim"] < 1 for s in specs) or sum(s["dim"] for s in specs) != dim:
        raise HeroError(f"feature_names {list(feature_names)} do not add up to the feature dimension {dim}; "
                        f"give (name, dim) pairs")
    return specs


def _subtitle_record(vid: str, subs: Sequence[Any] | None, n: int, frame_interval: float, tokenizer: Any,
                     problems: Problems, where: str) -> dict[str, Any]:
    """Check, tokenize and align the subtitles of one video (n frames) into a store record."""
    from hero.data.alignment import align_subtitles

    kept = []
    end_of_video = n * frame_interval
    for k, s in enumerate(subs or []):
        at = f"{where} subtitle {k}"
        text = str(getattr(s, "text", "") or "")
        start, end = float(s.start), float(s.end)
        if not text.strip():
            problems.skip("empty subtitle", at, "empty text")
        elif not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
            problems.skip("subtitle out of range", at, f"invalid time span [{start}, {end}] s")
        elif start >= end_of_video:
            problems.skip("subtitle out of range", at,
                          f"starts at {start} s, after the video ends ({n} frames × {frame_interval} s)")
        else:
            kept.append(s)
    if subs and kept and any(b.start < a.start for a, b in zip(kept, kept[1:])):
        problems.note("unsorted subtitles", where, "subtitles sorted by start time")
        kept = sorted(kept, key=lambda s: float(s.start))
    if not kept:
        if subs is None or len(subs) == 0:
            problems.note("no subtitles", where, "pseudo subtitles (empty text, groups of 5 frames)")
        else:
            problems.note("no subtitles", where, "no usable subtitle left; pseudo subtitles instead")
    alignment = align_subtitles([(float(s.start), float(s.end)) for s in kept], n, frame_interval)
    if alignment.pseudo:
        groups = alignment.unique_sub2frames
        records = [{"start": min(fr) * frame_interval, "end": (max(fr) + 1) * frame_interval, "text": "",
                    "speaker": None} for _, fr in groups]
        input_ids: list[list[int]] = [[] for _ in groups]
    else:
        records = [{"start": float(s.start), "end": float(s.end), "text": str(s.text),
                    "speaker": getattr(s, "speaker", None)} for s in kept]
        texts = [str(s.text) for s in kept]
        batch = getattr(tokenizer, "encode_batch", None)
        encoded = batch(texts) if batch is not None else [tokenizer.encode(t) for t in texts]
        input_ids = [list(map(int, ids)) for ids in encoded]
    return {
        "vid": vid, "nframes": n, "subs": records, "input_ids": input_ids,
        "unique_sub2frames": [[int(k), list(map(int, fr))] for k, fr in alignment.unique_sub2frames],
        "sub2frames": [[int(k), list(map(int, fr))] for k, fr in alignment.sub2frames],
        "unmatched_frames": list(map(int, alignment.unmatched_frames)), "pseudo": bool(alignment.pseudo),
    }


def _tokenizer_info(tokenizer: Any) -> tuple[dict[str, Any], Path | None]:
    """``corpus.json`` entry of the tokenizer, and its local directory if it has one."""
    name = getattr(tokenizer, "name_or_path", None)
    local = Path(name) if name is not None and Path(str(name)).is_dir() else None
    tokens = getattr(tokenizer, "tokens", None)
    info: dict[str, Any] = {"name_or_path": None if name is None else str(name), "local_dir": None,
                            "vocab_size": int(tokenizer.vocab_size)}
    if tokens is not None:
        info["tokens"] = {"cls_id": tokens.cls_id, "pad_id": tokens.pad_id, "sep_id": tokens.sep_id,
                          "unk_id": tokens.unk_id, "mask_id": tokens.mask_id,
                          "random_range": list(tokens.random_range)}
    return info, local


def _check_annotations(dataset: str, split: str, records: Sequence[Any], nframes: Mapping[str, int],
                       frame_interval: float, problems: Problems) -> list[dict]:
    """The records of one split that may be written; every other one is a counted skip.

    Each record is checked against its format (`hero.data.prepare.common.check_record`, the
    checker `hero data prepare` uses), must name a video that made it into the corpus, must not
    start after that video's last frame, and must not repeat an earlier record's id. A record may
    carry ``_where`` (its ``file:line``), which is used in messages and not written.
    """
    from hero.data.prepare import DATASETS
    from hero.data.prepare.common import KIND_KEY, Malformed, check_record, moments

    spec = DATASETS.get(dataset)
    if spec is None:
        raise HeroError(f"annotations/{dataset}: unknown dataset {dataset!r}; known: {', '.join(sorted(DATASETS))}")
    key = KIND_KEY[spec.kind]
    seen: dict[str, str] = {}
    good = []
    for i, r in enumerate(records):
        where = r.get("_where") if isinstance(r, dict) and r.get("_where") else _annotation_where(dataset, split, i, r)
        if isinstance(r, dict) and "_where" in r:
            r = {k: v for k, v in r.items() if k != "_where"}
        try:
            check_record(spec.kind, r, split, ids=True)
        except Malformed as err:
            problems.skip("malformed annotation", where, str(err))
            continue
        vid = r.get("vid")
        if vid is not None:
            if vid not in nframes:
                problems.skip("missing video", where, f"names video {vid!r}, which has no (usable) features")
                continue
            seconds = nframes[vid] * frame_interval
            late = [m for m in moments(r) if m[0] >= seconds]
            if late and len(late) == len(moments(r)):
                problems.skip("moment outside the video", where,
                              f"ts {r['ts']} starts at {late[0][0]:g} s, after the end of video {vid!r} "
                              f"({nframes[vid]} frames × {frame_interval:g} s = {seconds:g} s)")
                continue
            if late:
                problems.note("moment outside the video", where,
                              f"{len(late)} of the spans in ts start after the end of video {vid!r} ({seconds:g} s)")
        k = str(r[key])
        if k in seen:
            problems.skip("duplicate annotation", where, f"{key} {r[key]!r} already given at {seen[k]}")
            continue
        seen[k] = where
        good.append(r)
    return good


def _annotation_where(dataset: str, split: str, i: int, record: Any) -> str:
    key = next((record[k] for k in ("qid", "clip_id", "desc_id") if isinstance(record, dict) and k in record), None)
    return f"annotations/{dataset}/{split}.jsonl record {i + 1}" + ("" if key is None else f" ({key})")


def _hero_version() -> str:
    # the package's own version, not the installed distribution's metadata: the distribution is
    # named hero-vl, and an unrelated `hero` distribution may be installed beside it
    from hero import __version__

    return __version__


def build_corpus(
    out_dir: str | Path,
    *,
    name: str,
    frame_interval: float,
    videos: Iterable[tuple[str, np.ndarray | str | Path]],
    subtitles: Mapping[str, Sequence[Any]] | None,
    annotations: Mapping[str, Mapping[str, Sequence[dict]]] | None,
    tokenizer: Any,
    feature_names: Sequence[Any] | None = None,
    max_frames: int | None = None,
    problems: Problems,
    source: dict[str, Any] | None = None,
    overwrite: bool = False,
    dtype: str = "float16",
    save_tokenizer: bool | None = None,
    log: Any = None,
) -> Path:
    """Build a corpus directory (layout: DEVELOPERS.md, "A prepared dataset directory").

    Args:
        out_dir: the corpus directory to create (replaced only with ``overwrite``).
        name: corpus name (e.g. ``tv``).
        frame_interval: seconds per feature frame (1.5 TV, 2 MSR-VTT / HowTo100M).
        videos: ``(vid, features (n, d))`` or ``(vid, path to .npz/.npy)`` pairs, or a `FeatureDir`.
        subtitles: ``{vid: [Subtitle, ...]}``; None = no video has subtitles (pseudo subtitles,
            the reference's treatment of video-only data). A video missing from the mapping also
            gets pseudo subtitles (counted).
        annotations: ``{dataset: {split: [record, ...]}}`` in the documented record formats.
        tokenizer: a `hero.data.tokenizer.Tokenizer` (or a name/directory to load one).
        feature_names: names (or ``(name, dim)``) of the concatenated feature sets; from a
            `FeatureDir` by default, else one set ``features``.
        max_frames: frame limit of the loader (default 100, the reference ``max_clip_len``); longer
            videos are stored whole and counted, and are cut at read time.
        problems: collects skipped / adjusted records (strict mode raises at the first skip).
        source: provenance recorded in ``corpus.json`` and the store metadata.
        dtype: feature storage dtype (``float16`` like the reference features, or ``float32``).
        save_tokenizer: copy the tokenizer into ``tokenizer/``; default: when it is a local one.

    Returns:
        ``out_dir``.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise HeroError(f"{out_dir}: already exists (pass overwrite=True / --overwrite to replace it)")
    if not frame_interval > 0:
        raise HeroError(f"frame_interval must be > 0 seconds, got {frame_interval}")
    if isinstance(tokenizer, (str, Path)):
        from hero.data.tokenizer import Tokenizer

        tokenizer = Tokenizer.load(str(tokenizer))
    limit = DEFAULT_MAX_FRAMES if max_frames is None else int(max_frames)
    log = log or (lambda *_: None)
    source = dict(source or {})
    if feature_names is None and isinstance(videos, FeatureDir):
        feature_names = videos.features
    tok_info, tok_dir = _tokenizer_info(tokenizer)
    embed = save_tokenizer if save_tokenizer is not None else tok_dir is not None

    subtitles = dict(subtitles) if subtitles is not None else None

    def make_record(vid: str, n: int, where: str) -> dict[str, Any]:
        subs = None if subtitles is None else subtitles.pop(vid, [])
        return _subtitle_record(vid, subs, n, frame_interval, tokenizer, problems, where)

    def leftovers() -> None:
        for vid in sorted(subtitles or {}):
            problems.skip("subtitles of unknown video", f"subtitles of {vid!r}",
                          "no (usable) features for this video; its subtitles are dropped")

    return _write_corpus(out_dir, name=name, frame_interval=frame_interval, videos=videos, make_record=make_record,
                         leftovers=leftovers, annotations=annotations, tok_info=tok_info,
                         tokenizer_to_save=tokenizer if embed else None, feature_names=feature_names, limit=limit,
                         problems=problems, source=source, overwrite=overwrite, dtype=dtype, log=log)


def _write_corpus(out_dir: Path, *, overwrite: bool, **kwargs: Any) -> Path:
    """`_write_corpus_into`, refusing early to replace anything but a corpus, and with a full disk
    reported as one error naming ``out_dir`` (the temporary directory is removed either way)."""
    if overwrite:
        check_replaceable(out_dir, kind=CORPUS_FORMAT, how="--overwrite replaces only an earlier corpus; "
                          "move it away or choose another --out")
    with writing(out_dir):
        return _write_corpus_into(out_dir, overwrite=overwrite, **kwargs)


def _write_corpus_into(out_dir: Path, *, name: str, frame_interval: float, videos: Iterable[tuple[str, Any]],
                  make_record: Any, leftovers: Any, annotations: Mapping[str, Mapping[str, Sequence[dict]]] | None,
                  tok_info: dict[str, Any], tokenizer_to_save: Any, feature_names: Any, limit: int,
                  problems: Problems, source: dict[str, Any], overwrite: bool, dtype: str, log: Any,
                  extra_files: Mapping[str, Any] | None = None) -> Path:
    """Stream the videos into the stores (checking each), write annotations and metadata, rename into place.

    ``extra_files``: ``{relative path: JSON-able}`` written into the corpus too (e.g. the official
    ``video2idx`` of a retrieval dataset).
    """
    if out_dir.exists() and not overwrite:
        raise HeroError(f"{out_dir}: already exists (pass overwrite=True / --overwrite to replace it)")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(out_dir)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        kept: dict[str, int] = {}  # video id -> frames
        video_writer: VideoStoreWriter | None = None
        dim: int | None = None
        with SubtitleStoreWriter(tmp / "subtitles", frame_interval=frame_interval, tokenizer=tok_info,
                                 source=source) as sub_writer:
            try:
                for vid, item in videos:
                    vid = str(vid)
                    where = f"video {vid!r}"
                    if vid in kept:
                        problems.skip("duplicate video", where, "features given twice; the first copy is kept")
                        continue
                    if isinstance(item, (str, Path)):
                        where = f"{item}"
                        try:
                            arr = load_feature_file(item)
                        except HeroError as err:
                            problems.skip("unreadable features", where, str(err))
                            continue
                    else:
                        arr = np.asarray(item)
                    if arr.ndim != 2:
                        problems.skip("bad feature shape", where,
                                      f"features of shape {arr.shape}, expected (frames, dim)")
                        continue
                    n, d = arr.shape
                    if n == 0:
                        problems.skip("zero-frame video", where, "the video has no frame")
                        continue
                    if dim is None:
                        dim = d
                        video_writer = VideoStoreWriter(
                            tmp / "video", frame_interval=frame_interval, features=_feature_specs(feature_names, d),
                            dtype=dtype, source=source).__enter__()
                    if d != dim:
                        problems.skip("dimension mismatch", where, f"feature dimension {d}, expected {dim} "
                                      "(set by the first video)")
                        continue
                    with np.errstate(over="ignore", invalid="ignore"):
                        finite = bool(np.isfinite(arr).all()) and bool(np.isfinite(arr.astype(dtype)).all())
                    if not finite:
                        problems.skip("non-finite features", where,
                                      f"NaN/inf features (or values beyond the {dtype} range)")
                        continue
                    if n > limit:
                        problems.note("video longer than frame limit", where,
                                      f"{n} frames; clips keep the first {limit} at read time (reference loader)")
                    assert video_writer is not None
                    video_writer.add(vid, arr)
                    sub_writer.add(vid, make_record(vid, n, where))
                    kept[vid] = n
                if not kept:  # also when the first video fixed the dimension and was then skipped
                    raise HeroError("no usable video: every video was skipped ("
                                    + ", ".join(f"{c} × {k}" for k, c in sorted(problems.skipped.items())) + ")"
                                    if problems.num_skipped else "no video given")
            except BaseException:
                if video_writer is not None:
                    video_writer.__exit__(HeroError, None, None)
                raise
            video_writer.__exit__(None, None, None)
        leftovers()

        counts: dict[str, dict[str, int]] = {}
        for dataset, splits in (annotations or {}).items():
            for split, records in splits.items():
                good = _check_annotations(dataset, split, records, kept, frame_interval, problems)
                path = tmp / "annotations" / dataset / f"{split}.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in good))
                counts.setdefault(dataset, {})[split] = len(good)

        for rel, content in (extra_files or {}).items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            write_json(tmp / rel, content)
        if tokenizer_to_save is not None:
            tokenizer_to_save.save(tmp / "tokenizer")
            tok_info["local_dir"] = "tokenizer"
        write_json(tmp / "corpus.json", {
            "format": CORPUS_FORMAT, "format_version": FORMAT_VERSION, "name": name,
            "frame_interval": float(frame_interval), "tokenizer": tok_info, "max_frames": limit,
            "num_videos": len(kept), "annotations": counts,
            "created_by": {"hero_version": _hero_version(), "builder": "hero.data.build.build_corpus"},
            "source": source,
        })
        problems.write(tmp / "problems.json")
        replace_dir(tmp, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"built {out_dir}: {len(kept)} videos, dim {dim}, annotations "
        + (", ".join(f"{d}/{s} {c}" for d, sp in counts.items() for s, c in sp.items()) or "none"))
    return out_dir


def convert_reference(
    out_dir: str | Path,
    *,
    video_db: str | Path,
    sub_db: str | Path | None,
    txt_dbs: Mapping[tuple[str, str], str | Path] | None = None,
    tokenizer: Any = "roberta-base",
    name: str | None = None,
    frame_interval: float | None = None,
    max_frames: int | None = None,
    problems: Problems,
    overwrite: bool = False,
    dtype: str = "float16",
    log: Any = None,
) -> Path:
    """Convert the reference stores (video_db, subtitle db, txt_dbs) into our corpus directory.

    The subtitle tokens and the subtitle-frame alignment are taken from the subtitle db as they
    are (no re-tokenization), so clips equal what the reference loader builds. Videos without a
    subtitle record get pseudo subtitles (the reference's video-only treatment).

    Args:
        txt_dbs: ``{(dataset, split): txt_db directory}`` (e.g. ``("tvr", "train")``; for TVC the
            ``clip.db``), converted with `hero.data.reference_db.reference_annotation`.
        tokenizer: the tokenizer the ids come from (the reference uses ``roberta-base``): a name,
            a directory (embedded into the corpus) or a `Tokenizer`. When it cannot be loaded
            (offline), only its name is recorded.
    """
    from hero.data.alignment import align_subtitles
    from hero.data.reference_db import (
        ReferenceSubtitleDb,
        ReferenceTxtDb,
        ReferenceVideoDb,
        read_reference_annotations,
        reference_special_tokens,
        reference_to_hero_subtitles,
    )

    log = log or (lambda *_: None)
    video = ReferenceVideoDb(video_db, frame_interval=frame_interval)
    interval = video.frame_interval
    subs = ReferenceSubtitleDb(sub_db) if sub_db is not None else None
    if isinstance(tokenizer, (str, Path)):
        from hero.data.tokenizer import Tokenizer

        try:
            tokenizer = Tokenizer.load(str(tokenizer))
        except HeroError as err:
            log(f"warning: {err}; recording the tokenizer name only")
            tokenizer = str(tokenizer)
    if isinstance(tokenizer, str):
        tok_info, tok_obj = {"name_or_path": tokenizer, "local_dir": None}, None
        # the dbs' meta.json name the special ids: enough to run a model offline without the tokenizer
        metas = ([subs.meta] if subs is not None else []) + [ReferenceTxtDb(p).meta for p in (txt_dbs or {}).values()]
        special = next((t for t in map(reference_special_tokens, metas) if t is not None), None)
        if special is not None:
            tok_info["tokens"] = special
    else:
        tok_info, tok_dir = _tokenizer_info(tokenizer)
        tok_obj = tokenizer if tok_dir is not None else None
    kept: set[str] = set()

    def videos() -> Iterator[tuple[str, Any]]:
        for vid in video.keys():
            try:
                yield vid, video.get(vid)
            except HeroError as err:
                problems.skip("unreadable features", f"{video.path}:{vid}", str(err))

    def make_record(vid: str, n: int, where: str) -> dict[str, Any]:
        kept.add(vid)
        if subs is None or vid not in subs:
            if subs is not None:
                problems.note("no subtitles", where, "no subtitle record: pseudo subtitles")
            a = align_subtitles([], n, interval)
            groups = [[k, fr] for k, fr in a.unique_sub2frames]
            return {"vid": vid, "nframes": n, "subs": [{"start": min(fr) * interval, "end": (max(fr) + 1) * interval,
                                                        "text": "", "speaker": None} for _, fr in groups],
                    "input_ids": [[] for _ in groups], "unique_sub2frames": groups, "sub2frames": groups,
                    "unmatched_frames": [], "pseudo": True}
        rec = reference_to_hero_subtitles(subs.get(vid), vid, n, interval, f"{subs.path}:{vid}")
        beyond = sum(f >= n for _, fr in rec["unique_sub2frames"] for f in fr)
        if beyond:
            # aligned with another frame count than id2nframe gives: keep the frames that exist
            problems.note("alignment beyond the video", where,
                          f"{beyond} aligned frame(s) at or after frame {n} dropped")
            rec["unique_sub2frames"] = [[k, [f for f in fr if f < n]] for k, fr in rec["unique_sub2frames"]]
            rec["unmatched_frames"] = [f for f in rec["unmatched_frames"] if f < n]
        return rec

    def leftovers() -> None:
        if subs is not None:
            for vid in subs.keys():
                if vid not in kept:
                    problems.skip("subtitles of unknown video", f"{subs.path}:{vid}",
                                  "no (usable) features for this video; its subtitles are dropped")

    annotations: dict[str, dict[str, list[dict]]] = {}
    extra_files: dict[str, Any] = {}
    for (dataset, split), path in (txt_dbs or {}).items():
        txt_db = ReferenceTxtDb(path)
        annotations.setdefault(dataset, {})[split] = read_reference_annotations(txt_db, dataset, problems)
        # the official video2idx of TVR submissions (released beside the subtitle or query db)
        vid2dur_idx = txt_db.side("vid2dur_idx") or (subs.side("vid2dur_idx") if subs is not None else None)
        if dataset in ("tvr", "how2r", "didemo") and isinstance(vid2dur_idx, dict):
            extra_files[f"annotations/{dataset}/video2idx.json"] = vid2dur_idx
    source = {"reference_video_db": str(video.path), "reference_sub_db": None if subs is None else str(subs.path),
              "reference_txt_dbs": {f"{d}/{s}": str(p) for (d, s), p in (txt_dbs or {}).items()}}
    return _write_corpus(Path(out_dir), name=name or video.path.parent.name, frame_interval=interval,
                         videos=videos(), make_record=make_record, leftovers=leftovers, annotations=annotations,
                         tok_info=tok_info, tokenizer_to_save=tok_obj, feature_names=video.meta.features,
                         limit=DEFAULT_MAX_FRAMES if max_frames is None else int(max_frames), problems=problems,
                         source=source, overwrite=overwrite, dtype=dtype, log=log, extra_files=extra_files)


__all__ = [
    "CORPUS_FORMAT",
    "DEFAULT_MAX_FRAMES",
    "FeatureDir",
    "build_corpus",
    "convert_reference",
    "load_feature_file",
    "read_feature_dir",
]
