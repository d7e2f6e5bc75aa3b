"""``hero data``: build, inspect and convert datasets.

Sub-commands (a small table, `SUBCOMMANDS`):

* ``build``: per-video features + subtitle files (+ annotation directories) → a corpus directory.
* ``from-reference``: the reference implementation's video_db / subtitle db / txt_dbs → a corpus.
* ``info``: summary of a corpus directory (after the cheap checks: store files against their
  headers, record counts against the side files).
* ``verify``: read every record of a corpus; check counts, decodability and checksums.
* ``prepare``: raw benchmark annotations → a corpus (`hero.data.prepare`).
* ``synth``: the embedded synthetic corpus (`hero.data.synth`).
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any

from hero.argtypes import positive_float, positive_int
from hero.errors import HeroError
from hero.io import iter_jsonl

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "build": ("per-video features + subtitles (+ annotations) -> corpus directory", "hero.commands.data:build"),
    "from-reference": ("reference HERO video_db / subtitle db / txt_db -> corpus directory",
                       "hero.commands.data:from_reference"),
    "info": ("print a summary of a corpus directory", "hero.commands.data:info"),
    "verify": ("read every record of a corpus: counts, decodability and checksums", "hero.commands.data:verify"),
    "prepare": ("raw benchmark annotations (TVR, TVQA, ...) -> corpus directory", "hero.data.prepare"),
    "synth": ("the embedded synthetic TV-show corpus", "hero.data.synth"),
}


def _target(name: str) -> Any:
    module, _, attr = SUBCOMMANDS[name][1].partition(":")
    mod = importlib.import_module(module)
    return getattr(mod, attr) if attr else mod


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    for name, (help_text, _) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _target(name).add_arguments(p)


def run(args: argparse.Namespace) -> int:
    return int(_target(args.data_command).run(args) or 0)


# ------------------------------------------------------------------------------------------------
# hero data build


class build:  # noqa: N801 - a namespace with the sub-command's two functions
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--features", required=True, type=Path,
                       help="directory of per-video <vid>.npz/.npy files (or resnet_features/ + slowfast_features/)")
        p.add_argument("--feature-sets", nargs="+", metavar="NAME[=SUBDIR]",
                       help="feature-set sub-directories to concatenate, in this order")
        p.add_argument("--subtitles", nargs="+", type=Path, metavar="PATH",
                       help="subtitle files or directories: TVQA-style .jsonl, <vid>.srt, <vid>.vtt "
                            "(none: every video gets pseudo subtitles)")
        p.add_argument("--annotations", nargs="+", type=Path, metavar="DIR",
                       help="directories of <dataset>/<split>.jsonl records in the documented formats; "
                            "missing token ids are filled in with the tokenizer")
        p.add_argument("--out", required=True, type=Path, help="corpus directory to create")
        tok = p.add_mutually_exclusive_group()
        tok.add_argument("--tokenizer", default="roberta-base", metavar="NAME_OR_DIR",
                         help="Hugging Face tokenizer name or directory (default roberta-base)")
        tok.add_argument("--train-tokenizer", type=positive_int, metavar="VOCAB",
                         help="train a byte-level BPE of this size on the subtitles (offline) and ship it")
        p.add_argument("--interval", type=positive_float, default=1.5, help="seconds per feature frame (default 1.5)")
        p.add_argument("--name", help="corpus name (default: the --out directory name)")
        p.add_argument("--max-frames", type=positive_int, default=100, help="frames a clip keeps at read time")
        p.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="feature storage")
        p.add_argument("--strict", action="store_true", help="stop at the first skipped record")
        p.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        import tempfile

        from hero.data.build import build_corpus, read_feature_dir
        from hero.data.problems import Problems
        from hero.data.subtitles import read_subtitles
        from hero.data.tokenizer import Tokenizer, train_tokenizer

        problems = Problems(strict=args.strict)
        if args.out.exists() and not args.overwrite:
            raise HeroError(f"{args.out}: already exists (pass --overwrite to replace it)")
        features = read_feature_dir(args.features, args.feature_sets, problems)
        subtitles = read_subtitles(args.subtitles) if args.subtitles else None
        raw = read_annotation_dirs(args.annotations or [], problems)
        with tempfile.TemporaryDirectory(prefix="hero-build-") as scratch:
            if args.train_tokenizer:
                texts = [s.text for subs in (subtitles or {}).values() for s in subs]
                texts += list(annotation_texts(raw))
                if not texts:
                    raise HeroError("--train-tokenizer: no subtitle or annotation text to train on")
                tokenizer = train_tokenizer(texts, args.train_tokenizer, Path(scratch) / "tokenizer")
                tokenizer.name_or_path = f"byte-level-bpe-{args.train_tokenizer}"
            else:
                tokenizer = Tokenizer.load(args.tokenizer)
            annotations = {ds: {split: [tokenize_record(ds, r, tokenizer) for r in recs]
                                for split, recs in splits.items()} for ds, splits in raw.items()}
            build_corpus(
                args.out, name=args.name or args.out.name, frame_interval=args.interval, videos=features,
                subtitles=subtitles, annotations=annotations, tokenizer=tokenizer, max_frames=args.max_frames,
                problems=problems, overwrite=args.overwrite, dtype=args.dtype,
                save_tokenizer=True if args.train_tokenizer else None, log=print,
                source={"features": str(args.features), "feature_sets": args.feature_sets,
                        "subtitles": [str(s) for s in args.subtitles or []],
                        "annotations": [str(a) for a in args.annotations or []]},
            )
        print(problems.summary())
        return 0


def read_annotation_dirs(dirs: list[Path], problems: Any = None) -> dict[str, dict[str, list[dict]]]:
    """``{dataset: {split: records}}`` from directories of ``<dataset>/<split>.jsonl``.

    Each record is checked against the format of its dataset with the checker of
    ``hero data prepare`` (token ids may be missing: they are filled in later); a malformed one
    is a counted skip in ``problems`` (fatal in strict mode), named by ``file:line``, which the
    record carries as ``_where`` until the corpus is written.
    """
    from hero.data.prepare import DATASETS
    from hero.data.prepare.common import Malformed, check_record
    from hero.data.problems import Problems

    problems = problems if problems is not None else Problems()
    out: dict[str, dict[str, list[dict]]] = {}
    for d in dirs:
        files = sorted(d.glob("*/*.jsonl")) if d.is_dir() else []
        if not files:
            raise HeroError(f"{d}: no <dataset>/<split>.jsonl annotation files")
        for f in files:
            dataset, split = f.parent.name, f.stem
            spec = DATASETS.get(dataset)
            if spec is None:
                raise HeroError(f"{f}: unknown dataset directory {dataset!r}; known: {', '.join(sorted(DATASETS))}")
            if split in out.get(dataset, {}):
                raise HeroError(f"{f}: {dataset}/{split} was already given by another directory")
            records = []
            for lineno, record in iter_jsonl(f):
                where = f"{f}:{lineno}"
                try:
                    check_record(spec.kind, record, split, ids=False)
                except Malformed as err:
                    problems.skip("malformed annotation", where, str(err))
                    continue
                records.append({**record, "_where": where})
            out.setdefault(dataset, {})[split] = records
    return out


def annotation_texts(raw: dict[str, dict[str, list[dict]]]):
    for splits in raw.values():
        for records in splits.values():
            for r in records:
                for key in ("desc", "q", "statement"):
                    if isinstance(r.get(key), str):
                        yield r[key]
                yield from (a for a in r.get("answers", []) if isinstance(a, str))
                yield from (c["desc"] for c in r.get("captions", []) if isinstance(c.get("desc"), str))


def tokenize_record(dataset: str, record: dict, tokenizer: Any) -> dict:
    """Fill in missing token ids of a record (desc/statement → input_ids, q → q_ids, answers → a_ids)."""
    if not isinstance(record, dict):
        return record
    r = dict(record)
    for text, ids in (("desc", "input_ids"), ("statement", "input_ids"), ("q", "q_ids")):
        if isinstance(r.get(text), str) and ids not in r:
            r[ids] = tokenizer.encode(r[text])
    if isinstance(r.get("answers"), list) and "a_ids" not in r:
        r["a_ids"] = [tokenizer.encode(a) for a in r["answers"]]
    if isinstance(r.get("captions"), list):
        r["captions"] = [c if "input_ids" in c else {**c, "input_ids": tokenizer.encode(c.get("desc", ""))}
                         for c in r["captions"]]
    return r


# ------------------------------------------------------------------------------------------------
# hero data from-reference


def _txt_db_spec(text: str) -> tuple[tuple[str, str], Path]:
    key, sep, path = text.partition("=")
    dataset, colon, split = key.partition(":")
    if not sep or not colon or not dataset or not split:
        raise HeroError(f"--txt-db {text!r}: expected DATASET:SPLIT=DIR, e.g. tvr:train=txt_db/tvr_train.db")
    return (dataset, split), Path(path)


class from_reference:  # noqa: N801
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--video-db", required=True, type=Path,
                       help="reference video_db: the LMDB dir (e.g. video_db/tv/resnet_slowfast_1.5) or its parent")
        p.add_argument("--sub-db", type=Path, help="reference subtitle db (e.g. txt_db/tv_subtitles.db); "
                                                   "none: pseudo subtitles for every video")
        p.add_argument("--txt-db", nargs="+", default=[], metavar="DATASET:SPLIT=DIR",
                       help="reference txt_dbs to convert into annotations, e.g. tvr:train=txt_db/tvr_train.db "
                            "(TVC: its clip.db)")
        p.add_argument("--out", required=True, type=Path, help="corpus directory to create")
        p.add_argument("--tokenizer", default="roberta-base", metavar="NAME_OR_DIR",
                       help="the tokenizer of the db's token ids (reference: roberta-base)")
        p.add_argument("--interval", type=positive_float, help="seconds per frame (default: from the video_db name)")
        p.add_argument("--name", help="corpus name (default: the video_db dataset directory name)")
        p.add_argument("--max-frames", type=positive_int, default=100, help="frames a clip keeps at read time")
        p.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="feature storage")
        p.add_argument("--strict", action="store_true", help="stop at the first skipped record")
        p.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from hero.data.build import convert_reference
        from hero.data.problems import Problems

        problems = Problems(strict=args.strict)
        txt_dbs = dict(_txt_db_spec(t) for t in args.txt_db)
        convert_reference(args.out, video_db=args.video_db, sub_db=args.sub_db, txt_dbs=txt_dbs,
                          tokenizer=args.tokenizer, name=args.name, frame_interval=args.interval,
                          max_frames=args.max_frames, problems=problems, overwrite=args.overwrite, dtype=args.dtype,
                          log=print)
        print(problems.summary())
        return 0


# ------------------------------------------------------------------------------------------------
# hero data info


def corpus_summary(root: Path) -> dict[str, Any]:
    """What ``hero data info`` prints, as a JSON-able dict."""
    from hero.data.corpus import Corpus
    from hero.data.stores import read_json
    from hero.data.verify import annotation_problems

    corpus = Corpus(root)  # the cheap checks: headers against file sizes, keys against the side files
    problems, _ = annotation_problems(corpus)
    if problems:
        raise HeroError(problems[0] + (f" (and {len(problems) - 1} more problem(s): hero data verify lists them)"
                                       if len(problems) > 1 else ""))
    nframes = [corpus.video_store.num_frames(v) for v in corpus.video_ids()]
    meta = corpus.video_store.meta
    limit = int(corpus.info.get("max_frames", 100))
    problems_path = root / "problems.json"
    problems = read_json(problems_path) if problems_path.is_file() else None
    return {
        "root": str(root), "name": corpus.name, "frame_interval": corpus.frame_interval,
        "videos": len(nframes), "feature_dim": meta.dim, "features": meta.features, "dtype": meta.dtype,
        "frames": {"min": min(nframes), "mean": round(sum(nframes) / len(nframes), 2), "max": max(nframes),
                   "total": sum(nframes), f"over_{limit}": sum(n > limit for n in nframes)} if nframes else None,
        "video_only": int(corpus.subtitle_store.meta.get("num_pseudo", 0)),
        "tokenizer": corpus.info.get("tokenizer"),
        "annotations": {f"{d}/{s}": len(corpus.annotations(d, s)) for d, s in corpus.datasets()},
        "problems": None if problems is None else {"skipped": problems.get("skipped"),
                                                   "adjusted": problems.get("adjusted")},
        "source": corpus.info.get("source"),
    }


class info:  # noqa: N801
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("corpus", type=Path, help="a corpus directory")
        p.add_argument("--json", action="store_true", help="print JSON")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        s = corpus_summary(args.corpus)
        if args.json:
            print(json.dumps(s, indent=2))
            return 0
        tok = s["tokenizer"] or {}
        lines = [
            f"corpus      {s['name']}  ({s['root']})",
            f"videos      {s['videos']}  ({s['video_only']} without subtitles)",
            f"features    {s['feature_dim']}-d {s['dtype']}: "
            + " + ".join(f"{f['name']} ({f['dim']})" for f in s["features"]),
            f"interval    {s['frame_interval']} s per frame",
        ]
        if s["frames"]:
            f = s["frames"]
            over = next(k for k in f if k.startswith("over_"))
            lines.append(f"frames      min {f['min']}, mean {f['mean']}, max {f['max']}, total {f['total']}; "
                         f"{f[over]} video(s) longer than {over[5:]}")
        lines.append(f"tokenizer   {tok.get('name_or_path')}" + (f" (vocab {tok['vocab_size']})" if
                                                                  tok.get("vocab_size") else "")
                     + (f", shipped in {tok['local_dir']}/" if tok.get("local_dir") else ""))
        lines.append("annotations " + (", ".join(f"{k} {v}" for k, v in s["annotations"].items()) or "none"))
        if s["problems"] is not None:
            p = s["problems"]
            parts = [f"skipped {v} × {k}" for k, v in sorted((p.get("skipped") or {}).items())]
            parts += [f"adjusted {v} × {k}" for k, v in sorted((p.get("adjusted") or {}).items())]
            lines.append("problems    " + ("; ".join(parts) or "none"))
        print("\n".join(lines))
        return 0


# ------------------------------------------------------------------------------------------------
# hero data verify


class verify:  # noqa: N801
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("corpus", type=Path, help="a corpus directory")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from hero.data.verify import verify_corpus

        print(f"verifying {args.corpus}")
        sections = verify_corpus(args.corpus)
        for section in sections:
            print(section.line())
            for message in section.problems:
                print(f"    {message}")
            if section.num_problems > len(section.problems):
                print(f"    ... and {section.num_problems - len(section.problems)} more")
        bad = [s for s in sections if not s.ok]
        if bad:
            total = sum(s.num_problems for s in bad)
            more = f" (and {total - 1} more problem(s), listed above)" if total > 1 else ""
            raise HeroError(f"{bad[0].problems[0]}{more}")
        print(f"{args.corpus}: healthy")
        return 0


__all__ = ["SUBCOMMANDS", "add_arguments", "corpus_summary", "run"]
