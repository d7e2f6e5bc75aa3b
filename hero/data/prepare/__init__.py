"""``hero data prepare <dataset>``: raw benchmark annotations + features + subtitles → a corpus.

Usage::

    hero data prepare tvr --features FEAT_DIR --subtitles tvqa_preprocessed_subtitles.jsonl \\
        --annotations tvr_train_release.jsonl tvr_val_release.jsonl tvr_test_public_release.jsonl \\
                      tvqa:tvqa_train.jsonl tvc:val=tvc_val_release.jsonl \\
        --out corpora/tv [--tokenizer roberta-base | --train-tokenizer 8000] [--strict]

``--annotations`` takes ``[dataset:][split=]path``: the dataset defaults to the positional one, the
split to the word in the file name (``train``, ``val``, ``test_public``, ...). Datasets that share
videos and frame interval (TVR, TVQA, TVC, VIOLIN on the TV shows; How2R and How2QA) can go into
one corpus. The record formats written are those of DEVELOPERS.md ("Annotations"); the raw
formats read are described in `hero.data.prepare.tv` and `hero.data.prepare.video_only`.

Video-only datasets (DiDeMo, MSR-VTT) get pseudo subtitles unless ``--subtitles`` gives ASR text.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hero.argtypes import positive_float, positive_int
from hero.errors import HeroError


@dataclass(frozen=True)
class DatasetSpec:
    """How one benchmark is read and stored."""

    name: str
    family: str
    """Default corpus name; datasets of one family share videos."""
    frame_interval: float
    kind: str
    """Record format: a key of `hero.data.prepare.common.RECORD_FORMATS` (retrieval, qa, open_qa, ...)."""
    record: str
    """``module:function`` turning one raw record into a normalised one."""
    video_only: bool = False


DATASETS: dict[str, DatasetSpec] = {
    "tvr": DatasetSpec("tvr", "tv", 1.5, "retrieval", "tv:retrieval_record"),
    "tvqa": DatasetSpec("tvqa", "tv", 1.5, "qa", "tv:qa_record"),
    "tvc": DatasetSpec("tvc", "tv", 1.5, "captioning", "tv:caption_record"),
    "violin": DatasetSpec("violin", "tv", 1.5, "violin", "tv:violin_record"),
    "how2r": DatasetSpec("how2r", "howto", 2.0, "retrieval", "tv:retrieval_record"),
    "how2qa": DatasetSpec("how2qa", "howto", 2.0, "qa", "howto:how2qa_record"),
    "didemo": DatasetSpec("didemo", "didemo", 1.5, "retrieval", "video_only:didemo_record", video_only=True),
    "msrvtt": DatasetSpec("msrvtt", "msrvtt", 2.0, "retrieval", "video_only:msrvtt_record", video_only=True),
    "msrvtt_qa": DatasetSpec("msrvtt_qa", "msrvtt", 2.0, "open_qa", "video_only:msrvtt_qa_record", video_only=True),
}

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=sorted(DATASETS), help="the benchmark whose raw files are given")
    parser.add_argument("--annotations", nargs="+", required=True, metavar="[DATASET:][SPLIT=]PATH",
                        help="raw annotation files; split from the file name unless given")
    parser.add_argument("--features", required=True, type=Path,
                        help="per-video .npz/.npy features (or resnet_features/ + slowfast_features/)")
    parser.add_argument("--feature-sets", nargs="+", metavar="NAME[=SUBDIR]",
                        help="feature-set sub-directories to concatenate, in order")
    parser.add_argument("--subtitles", nargs="+", type=Path, metavar="PATH",
                        help="subtitle files or directories (TVQA-style .jsonl, <vid>.srt, <vid>.vtt); "
                             "for video-only datasets: ASR text")
    parser.add_argument("--out", required=True, type=Path, help="corpus directory to create")
    tok = parser.add_mutually_exclusive_group()
    tok.add_argument("--tokenizer", default="roberta-base",
                     help="Hugging Face tokenizer name or directory (default roberta-base)")
    tok.add_argument("--train-tokenizer", type=positive_int, metavar="VOCAB",
                     help="train a byte-level BPE of this size on the subtitles and annotations (offline)")
    parser.add_argument("--name", help="corpus name (default: the dataset family, e.g. tv)")
    parser.add_argument("--frame-interval", type=positive_float, help="seconds per feature frame (default per dataset)")
    parser.add_argument("--max-frames", type=positive_int, default=100, help="frames a clip keeps at read time")
    parser.add_argument("--strict", action="store_true", help="stop at the first skipped record")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")


def _record_fn(spec: DatasetSpec) -> Callable[[Any], dict]:
    import importlib

    module, _, func = spec.record.partition(":")
    return getattr(importlib.import_module(f"hero.data.prepare.{module}"), func)


def _items(spec: DatasetSpec, path: Path, split: str | None) -> Iterator[tuple[str, str, Any]]:
    """``(where, split, raw record)`` of one annotation file."""
    from hero.data.prepare import common, video_only

    if not path.is_file():
        raise HeroError(f"{path}: annotation file not found")
    if spec.name == "msrvtt" and path.suffix.lower() == ".csv":
        split = split or common.split_from_name(path)
        for where, rec in video_only.iter_msrvtt_csv(path):
            yield where, split, rec
        return
    if spec.name == "msrvtt" and path.suffix.lower() == ".json":
        for where, file_split, rec in video_only.iter_msrvtt_data_json(path):
            if split is None or file_split == split or file_split == "?":
                yield where, file_split if split is None else split, rec
        return
    split = split or common.split_from_name(path)
    for where, rec in common.iter_records(path):
        yield where, split, rec


def read_annotations(spec: DatasetSpec, path: Path, split: str | None, problems: Any,
                     known_vids: set[str] | None = None) -> dict[str, list[dict]]:
    """Normalised (not yet tokenised) records of one raw file, by split.

    Each record keeps its ``_where`` (``file:line``) until `hero.data.build` writes it.
    """
    from hero.data.prepare import common

    convert = _record_fn(spec)
    by_split: dict[str, list[tuple[str, Any]]] = {}
    for where, s, rec in _items(spec, path, None if split is None else common.normalize_split(split)):
        by_split.setdefault(s, []).append((where, rec))
    out = {}
    for s, items in by_split.items():
        records = common.convert_records(iter(items), convert, problems)
        records = [r for r in records if _valid(spec, r, s, problems)]
        records = common.check_unique(records, common.RECORD_FORMATS[spec.kind].key, problems)
        common.resolve_vids(records, known_vids, problems)
        for r in records:
            raw = r.pop("_ts_raw", None)
            if raw is not None and r.get("ts") is None:
                problems.note("unparsable ts", r["_where"], f"ts {raw!r} gives no span target (reference: [-1, -1])")
        out[s] = records
    return out


def _valid(spec: DatasetSpec, record: dict, split: str, problems: Any) -> bool:
    """The converted record against its format (the checks `hero data build` applies too); a counted skip if not."""
    from hero.data.prepare import common

    try:
        common.check_record(spec.kind, record, split, ids=False)
    except common.Malformed as err:
        problems.skip("malformed annotation", record["_where"], str(err))
        return False
    return True


def finish_records(spec: DatasetSpec, records: list[dict], tokenizer: Any) -> list[dict]:
    """Add the token ids. ``_where`` stays: `hero.data.build` names it in its checks and drops it."""
    from hero.data.prepare import common

    fmt = common.RECORD_FORMATS[spec.kind]
    items = [t for r in records for t in r[fmt.text_within]] if fmt.text_within else records
    common.tokenize_fields(items, tokenizer, list(fmt.text_fields))
    return records


def annotation_texts(records: list[dict]) -> Iterator[str]:
    for r in records:
        for key in ("desc", "q", "statement"):
            if isinstance(r.get(key), str):
                yield r[key]
        yield from r.get("answers", [])
        yield from (c["desc"] for c in r.get("captions", []))


def prepare(args: argparse.Namespace, log: Callable[[str], None] = print) -> Path:
    """Run the whole conversion (the body of ``hero data prepare``); returns the corpus directory."""
    from hero.data.build import build_corpus, read_feature_dir
    from hero.data.prepare.common import parse_annotation_spec
    from hero.data.problems import Problems
    from hero.data.subtitles import read_subtitles
    from hero.data.tokenizer import Tokenizer, train_tokenizer

    spec = DATASETS[args.dataset]
    problems = Problems(strict=args.strict)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise HeroError(f"{out}: already exists (pass --overwrite to replace it)")
    interval = args.frame_interval or spec.frame_interval
    features = read_feature_dir(args.features, args.feature_sets, problems)
    known = set(features.vids)

    raw: dict[str, dict[str, list[dict]]] = {}
    for text in args.annotations:
        a = parse_annotation_spec(text, spec.name)
        other = DATASETS.get(a.dataset)
        if other is None:
            raise HeroError(f"--annotations {text}: unknown dataset {a.dataset!r}; "
                            f"known: {', '.join(sorted(DATASETS))}")
        if other.frame_interval != spec.frame_interval or other.family != spec.family:
            raise HeroError(f"--annotations {text}: {other.name} videos ({other.family}, {other.frame_interval} s "
                            f"frames) cannot share a corpus with {spec.name} ({spec.family}, {spec.frame_interval} s)")
        for split, records in read_annotations(other, a.path, a.split, problems, known).items():
            if split in raw.get(other.name, {}):
                raise HeroError(f"{a.path}: {other.name} split {split!r} was already given by another file")
            raw.setdefault(other.name, {})[split] = records
            log(f"{a.path}: {other.name}/{split}: {len(records)} records")

    subtitles = read_subtitles(args.subtitles) if args.subtitles else None
    if subtitles is None and not spec.video_only:
        log(f"warning: no --subtitles for {spec.name}: every video gets pseudo subtitles (empty text)")

    with tempfile.TemporaryDirectory(prefix="hero-prepare-") as scratch:
        if args.train_tokenizer:
            texts = [s.text for subs in (subtitles or {}).values() for s in subs]
            texts += [t for splits in raw.values() for recs in splits.values() for t in annotation_texts(recs)]
            tokenizer = train_tokenizer(texts, args.train_tokenizer, Path(scratch) / "tokenizer")
            # the scratch copy disappears; the corpus embeds the tokenizer under tokenizer/
            tokenizer.name_or_path = f"byte-level-bpe-{args.train_tokenizer}"
        else:
            tokenizer = Tokenizer.load(args.tokenizer)
        annotations = {ds: {split: finish_records(DATASETS[ds], recs, tokenizer) for split, recs in splits.items()}
                       for ds, splits in raw.items()}
        build_corpus(
            out, name=args.name or spec.family, frame_interval=interval, videos=features, subtitles=subtitles,
            annotations=annotations, tokenizer=tokenizer, max_frames=args.max_frames, problems=problems,
            source={"dataset": spec.name, "annotations": [str(a) for a in args.annotations],
                    "features": str(args.features),
                    "subtitles": [str(s) for s in args.subtitles] if args.subtitles else None},
            overwrite=args.overwrite, save_tokenizer=True if args.train_tokenizer else None, log=log,
        )
    log(problems.summary())
    return out


def run(args: argparse.Namespace) -> int:
    prepare(args)
    return 0


__all__ = ["DATASETS", "DatasetSpec", "add_arguments", "finish_records", "prepare", "read_annotations", "run"]
