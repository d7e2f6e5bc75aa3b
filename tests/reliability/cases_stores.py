"""Damaged LMDB stores of a corpus, met by ``hero data info``, ``hero data verify``, ``hero
pretrain`` and ``hero index``; and a ``hero index`` killed with SIGKILL.

Each case damages a private copy of the shared synthetic corpus: the video or subtitle
``data.mdb`` cut short (mapping it used to end in SIGBUS, so these run in a subprocess), a meta
page with flipped bytes, a file that is not LMDB at all, a missing ``data.mdb``, a changed
feature value (only ``hero data verify``'s checksums see it), a missing annotation line. Every
error names the file and what is wrong; the corpus copy is left exactly as it was, and no run
directory, index or temporary directory is left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from reliability.matrix import Case, Outcome, Workspace

PAGE = 4096

# -- damage --------------------------------------------------------------------------------------


def _truncate(data: Path) -> None:
    blob = data.read_bytes()
    data.write_bytes(blob[:len(blob) // 2 // PAGE * PAGE])


def _flip_magic(data: Path) -> None:
    """Flip bits in the magic number of meta page 1 (the current one after a build)."""
    blob = bytearray(data.read_bytes())
    for i in range(PAGE + 16, PAGE + 20):
        blob[i] ^= 0x5A
    data.write_bytes(bytes(blob))


def _flip_root(data: Path) -> None:
    """Flip the low bit of the main tree's root page number in meta page 1: LMDB opens the file and
    looks up keys in the wrong page, so videos would silently be 'missing'."""
    blob = bytearray(data.read_bytes())
    blob[PAGE + 128] ^= 0x01
    data.write_bytes(bytes(blob))


def _not_lmdb(data: Path) -> None:
    data.write_text("video_id,features\nv0,0.1 0.2 0.3\n" * 200)


def _missing(data: Path) -> None:
    data.unlink()


def _flip_feature_value(data: Path) -> None:
    """Change one stored float16 of one video (its record still decodes)."""
    import lmdb

    env = lmdb.open(str(data.parent), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            value = next(iter(txn.cursor()))[1]
    finally:
        env.close()
    blob = bytearray(data.read_bytes())
    pos = bytes(blob).find(value[-64:])
    assert pos > 0, "the record's bytes are not where expected"
    blob[pos + 10] ^= 0x01
    data.write_bytes(bytes(blob))


def _drop_checksums(corpus: Path) -> None:
    for store in ("video", "subtitles"):
        meta_path = corpus / store / "meta.json"
        meta = json.loads(meta_path.read_text())
        meta.pop("checksum", None)
        meta_path.write_text(json.dumps(meta, indent=1))


def _drop_annotation_line(corpus: Path) -> None:
    path = corpus / "annotations" / "tvr" / "train.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))


DAMAGE: dict[str, tuple[str, str, Callable[[Path], None], str, bool]] = {
    # key: (store, words for the matrix, damage, expected error, isolated)
    "truncated-video": ("video", "the video store's data.mdb was cut to half its size", _truncate,
                        r"video/data\.mdb: truncated: \d+ bytes, the LMDB header says at least \d+", True),
    "truncated-subtitles": ("subtitles", "the subtitle store's data.mdb was cut to half its size", _truncate,
                            r"subtitles/data\.mdb: truncated: \d+ bytes, the LMDB header says at least \d+", True),
    "flipped-meta": ("video", "bytes of the video store's current LMDB meta page (its magic number) were flipped",
                     _flip_magic, r"video/data\.mdb: corrupt LMDB header \(meta page 1: no LMDB magic number\)", True),
    "not-lmdb": ("subtitles", "the subtitle store's data.mdb is a CSV file, not LMDB", _not_lmdb,
                 r"subtitles/data\.mdb: not an LMDB file", False),
    "missing-data-mdb": ("video", "the video store's data.mdb is missing", _missing,
                         r"video: no video feature store here \(data\.mdb missing\)", False),
}


# -- snapshots: a failed command changes nothing -------------------------------------------------


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _damaged(ws: Workspace, damage: Callable[[Path], None], store: str | None) -> Path:
    """A private corpus copy with ``damage`` applied (to ``store``'s data.mdb, or to the corpus),
    and a snapshot of it next to it (``before.json``) for the check."""
    corpus = ws.copy(ws.corpus())
    damage(corpus / store / "data.mdb" if store else corpus)
    (ws.tmp / "before.json").write_text(json.dumps(_snapshot(corpus)))
    return corpus


def _unchanged(ws: Workspace, outcome: Outcome) -> None:
    before = json.loads((ws.tmp / "before.json").read_text())
    assert _snapshot(ws.tmp / "corpus") == before, "the command changed the corpus"


def _no_run(ws: Workspace, outcome: Outcome) -> None:
    _unchanged(ws, outcome)
    assert not (ws.tmp / "run").exists(), "a failed pre-training left a run directory"


def _no_index(ws: Workspace, outcome: Outcome) -> None:
    _unchanged(ws, outcome)
    left = sorted(p.name for p in ws.tmp.iterdir() if p.name.startswith((".idx", "idx")))
    assert not left, f"a failed hero index left {left}"


# -- commands --------------------------------------------------------------------------------------


def _info(corpus: Path, ws: Workspace) -> list[str]:
    return ["data", "info", str(corpus)]


def _verify(corpus: Path, ws: Workspace) -> list[str]:
    return ["data", "verify", str(corpus)]


def _pretrain(corpus: Path, ws: Workspace) -> list[str]:
    config = ws.write("pretrain.yaml",
                      f"output_dir: {ws.tmp / 'run'}\ndata: {{corpora: [{corpus}], videos: all}}\n"
                      "model: {preset: hero-tiny}\nmix: {mlm: 1, vsm: 1}\noptim: {lr: 1.0e-3, warmup_steps: 1}\n"
                      "train: {num_train_steps: 2, batch_size: 2, num_workers: 0, save_every: 2, progress: false, "
                      "device: cpu}\n")
    return ["pretrain", "--config", str(config)]


def _index(corpus: Path, ws: Workspace) -> list[str]:
    return ["index", "--model", str(ws.vcmr_run()), "--corpus", str(corpus), "--out", str(ws.tmp / "idx"),
            "--device", "cpu"]


COMMANDS = {
    "info": ("hero data info", _info, _unchanged),
    "verify": ("hero data verify", _verify, _unchanged),
    "pretrain": ("hero pretrain (a tiny config)", _pretrain, _no_run),
    "index": ("hero index", _index, _no_index),
}


def _argv(key: str, command: str) -> Callable[[Workspace], list[str]]:
    store, _, damage, _, _ = DAMAGE[key]

    def argv(ws: Workspace) -> list[str]:
        return COMMANDS[command][1](_damaged(ws, damage, store), ws)

    return argv


CASES = [
    Case(f"stores-{command}-{key}", "stores", f"`{COMMANDS[command][0]}` on a corpus where {words}",
         _argv(key, command), defect=2, match=match, check=COMMANDS[command][2], isolated=isolated)
    for command in COMMANDS
    for key, (_, words, _, match, isolated) in DAMAGE.items()
]


# -- verify: the full pass -------------------------------------------------------------------------


def _verify_damaged(damage: Callable[[Path], None], store: str | None) -> Callable[[Workspace], list[str]]:
    return lambda ws: ["data", "verify", str(_damaged(ws, damage, store))]


def _says(*needles: str) -> Callable[[Workspace, Outcome], None]:
    def check(ws: Workspace, outcome: Outcome) -> None:
        _unchanged(ws, outcome)
        for needle in needles:
            assert needle in outcome.out, f"verify's report lacks {needle!r}:\n{outcome.out}"

    return check


CASES += [
    Case("stores-verify-healthy", "stores", "`hero data verify` on a healthy corpus (every record read, "
         "checksums compared)", _verify_damaged(lambda corpus: None, None), defect=None, expect="ok",
         match=r"healthy", check=_says("video       OK", "subtitles   OK", "annotations OK", "checksum ok")),
    Case("stores-verify-before-checksums", "stores", "`hero data verify` on a corpus built before stores carried "
         "checksums", _verify_damaged(_drop_checksums, None), defect=2, expect="ok",
         match=r"no checksum \(built before checksums existed\)", check=_says("healthy")),
    Case("stores-verify-changed-value", "stores", "`hero data verify` on a corpus where one stored feature value "
         "changed (the record still decodes)", _verify_damaged(_flip_feature_value, "video"), defect=2,
         match=r"video: checksum mismatch: the records hash to sha256:[0-9a-f]+, meta\.json recorded",
         check=_says("video       BAD", "CHECKSUM MISMATCH")),
    Case("stores-verify-flipped-root", "stores", "`hero data verify` on a corpus whose video store's meta page "
         "points at the wrong tree root (LMDB itself opens it)", _verify_damaged(_flip_root, "video"), defect=2,
         match=r"video: (corrupt LMDB store|the LMDB holds)", check=_unchanged, isolated=True),
    Case("stores-verify-missing-annotation", "stores", "`hero data verify` on a corpus with a line cut from an "
         "annotation file", _verify_damaged(_drop_annotation_line, None), defect=2,
         match=r"annotations/tvr/train\.jsonl: \d+ records, corpus\.json says \d+", check=_unchanged),
    Case("stores-info-missing-annotation", "stores", "`hero data info` on a corpus with a line cut from an "
         "annotation file", lambda ws: ["data", "info", str(_damaged(ws, _drop_annotation_line, None))], defect=2,
         match=r"annotations/tvr/train\.jsonl: \d+ records, corpus\.json says \d+", check=_unchanged),
]


# -- a SIGKILLed hero index ----------------------------------------------------------------------

_KILL_MID_INDEX = """
import os, signal, sys
import numpy as np
from hero.search import IndexWriter
writer = IndexWriter(sys.argv[1], 8)
writer.add("v0", np.ones((3, 8), dtype=np.float32))
writer._raw.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


def _index_after_sigkill(ws: Workspace) -> list[str]:
    out = ws.tmp / "idx"
    proc = subprocess.run([sys.executable, "-c", _KILL_MID_INDEX, str(out)], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert proc.returncode == -9, f"the index build was not killed: {proc.returncode} {proc.stderr}"
    stale = [p.name for p in ws.tmp.iterdir() if p.name.startswith(".idx.tmp")]
    assert len(stale) == 1, f"the killed build should have left its temporary: {stale}"
    return ["index", "--model", str(ws.vcmr_run()), "--corpus", str(ws.corpus()), "--out", str(out),
            "--dataset", "tvr", "--split", "val", "--device", "cpu"]


def _index_clean(ws: Workspace, outcome: Outcome) -> None:
    assert (ws.tmp / "idx" / "meta.json").is_file(), "the rerun did not write the index"
    left = [p.name for p in ws.tmp.iterdir() if p.name.startswith(".idx")]
    assert not left, f"temporaries left behind: {left}"


CASES.append(Case("stores-index-after-sigkill", "stores", "`hero index` rerun after a previous `hero index` was "
                  "killed with SIGKILL mid-write (its temporary directory is removed)", _index_after_sigkill,
                  defect=2, expect="ok", check=_index_clean))
