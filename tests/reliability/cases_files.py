"""Output files and directories: nothing hero did not create is deleted, a full disk is one clear
error, and outputs get the modes the umask asks for (issue 14, defects 1, 12 and 18)."""

from __future__ import annotations

import ctypes
import os
import stat
from pathlib import Path

from reliability.matrix import Case

SYNTH = ["--videos", "6", "--val-videos", "2", "--test-videos", "2", "--vocab-size", "300"]


def _user_dir(ws, name: str = "thesis") -> Path:
    d = ws.tmp / name
    (d / "chapters").mkdir(parents=True, exist_ok=True)
    (d / "notes.txt").write_text("years of work\n")
    (d / "chapters" / "1.tex").write_text("\\chapter{One}\n")
    return d


def _untouched(name: str = "thesis"):
    def check(ws, outcome) -> None:
        d = ws.tmp / name
        assert (d / "notes.txt").read_text() == "years of work\n", f"{d}/notes.txt lost"
        assert (d / "chapters" / "1.tex").read_text() == "\\chapter{One}\n", f"{d}/chapters/1.tex lost"
        assert sorted(p.name for p in d.iterdir()) == ["chapters", "notes.txt"], f"{d}: entries added"
        assert [p.name for p in ws.tmp.iterdir() if p.name.startswith(".")] == [], "a temporary was left"
    return check


def _file_untouched(ws, outcome) -> None:
    assert (ws.tmp / "results.txt").read_text() == "mine\n"


# --- a private tiny tmpfs for one isolated run ---------------------------------------------------
# The child process gets its own mount namespace (unshare) and mounts a tmpfs of a few KiB on
# ./full (its working directory is the case's directory): the mount vanishes with the process, so
# nothing is ever left mounted, whatever the outcome. Root only (CI runs as root).

_CLONE_NEWNS, _MS_REC, _MS_PRIVATE = 0x00020000, 0x4000, 0x40000


def _tiny_tmpfs(size: str):
    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(_CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
        if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
            raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
        if libc.mount(b"tmpfs", b"full", b"tmpfs", 0, f"size={size}".encode()) != 0:
            raise OSError(ctypes.get_errno(), "mount tmpfs on ./full")
    return preexec


def _needs_mount(ws) -> None:
    if os.geteuid() != 0:
        import pytest

        pytest.skip("mounting a tiny tmpfs needs root (the fault-injected variants are in tests/test_outputs.py)")
    (ws.tmp / "full").mkdir(exist_ok=True)


def _full_synth(ws) -> list[str]:
    _needs_mount(ws)
    return ["data", "synth", "--out", "full/corpus", *SYNTH]


def _full_predict(ws) -> list[str]:
    _needs_mount(ws)
    return ["predict", "--model", ws.vcmr_run(), "--corpus", ws.corpus(), "--dataset", "tvr", "--split", "val",
            "--out", "full/preds.json", "--device", "cpu"]


def _full_index(ws) -> list[str]:
    _needs_mount(ws)
    return ["index", "--model", ws.vcmr_run(), "--corpus", ws.corpus(), "--dataset", "tvr", "--split", "val",
            "--out", "full/index", "--device", "cpu", "--dtype", "float32"]


# --- umask ---------------------------------------------------------------------------------------

def _umask(mask: int):
    return lambda: os.umask(mask)


def _modes_follow(mask: int):
    def check(ws, outcome) -> None:
        root = ws.tmp / "corpus"
        entries = [root, *root.rglob("*")]
        assert len(entries) > 10
        for p in entries:
            want = (0o777 if p.is_dir() else 0o666) & ~mask
            got = stat.S_IMODE(p.stat().st_mode)
            assert got == want, f"{p}: mode {got:o}, want {want:o} under umask {mask:03o}"
    return check


CASES = [
    Case("files-quickstart-user-dir", "files",
         "`hero quickstart --out DIR` where DIR holds the user's own files (it used to delete them all)",
         lambda ws: ["quickstart", "--out", _user_dir(ws)], defect=1,
         match=r"thesis: not empty and not an earlier output of hero quickstart.*choose another --out",
         check=_untouched()),
    Case("files-ablate-user-dir", "files",
         "`hero ablate --out DIR` where DIR holds the user's own files (it used to delete them all)",
         lambda ws: ["ablate", "--out", _user_dir(ws)], defect=1,
         match=r"thesis: not empty and not an earlier output of hero ablate", check=_untouched()),
    Case("files-quickstart-out-is-file", "files", "`hero quickstart --out FILE` naming an existing file",
         lambda ws: ["quickstart", "--out", ws.write("results.txt", "mine\n")], defect=1,
         match=r"results\.txt: exists and is not a directory", check=_file_untouched),
    Case("files-quickstart-other-command-output", "files",
         "`hero quickstart --out DIR` where DIR is the output of `hero ablate` (marked as such)",
         lambda ws: ["quickstart", "--out", _ablate_output(ws)], defect=1,
         match=r"not an earlier output of hero quickstart",
         check=lambda ws, o: _assert_file(ws.tmp / "abl" / "results.json", "{}\n")),
    Case("files-synth-overwrite-user-dir", "files",
         "`hero data synth --out DIR --overwrite` where DIR is not a corpus (it used to be deleted)",
         lambda ws: ["data", "synth", "--out", _user_dir(ws), "--overwrite", *SYNTH], defect=1,
         match=r"thesis: not replaced: it is not an output of this kind written by hero", check=_untouched()),
    Case("files-index-overwrite-corpus", "files",
         "`hero index --out DIR --overwrite` where DIR is a corpus, not an index (it used to be deleted)",
         lambda ws: ["index", "--model", ws.vcmr_run(), "--corpus", ws.corpus(), "--out", _fake_corpus(ws),
                     "--overwrite", "--device", "cpu"], defect=1,
         match=r"mycorpus: not replaced: it is a hero-corpus output, not hero-search-index",
         check=lambda ws, o: _assert_file(ws.tmp / "mycorpus" / "corpus.json", '{"format": "hero-corpus"}\n')),
    Case("files-synth-overwrite-corpus", "files",
         "`hero data synth --out DIR --overwrite` where DIR is an earlier corpus: replaced",
         lambda ws: ["data", "synth", "--out", _fake_corpus(ws), "--overwrite", *SYNTH], expect="ok",
         match="synthetic corpus in",
         check=lambda ws, o: _assert_real_corpus(ws.tmp / "mycorpus"), isolated=True),
    Case("files-disk-full-synth", "files", "disk full while `hero data synth` writes a corpus (a 64 KiB tmpfs)",
         _full_synth, defect=12, isolated=True, preexec=_tiny_tmpfs("64k"),
         match=r"no space left writing full/corpus \(no space left on device\)"),
    Case("files-disk-full-predict", "files",
         "disk full while `hero predict` writes its prediction file (a 4 KiB tmpfs)",
         _full_predict, defect=12, isolated=True, preexec=_tiny_tmpfs("4k"),
         match=r"no space left writing full/preds\.json"),
    Case("files-disk-full-index", "files",
         "disk full while `hero index` writes the frame matrix and the FAISS index (a 16 KiB tmpfs)",
         _full_index, defect=12, isolated=True, preexec=_tiny_tmpfs("16k"),
         match=r"no space left writing full/index"),
    Case("files-umask-022", "files", "outputs under umask 022 (`hero data synth`): files 0644, folders 0755",
         lambda ws: ["data", "synth", "--out", "corpus", *SYNTH], defect=18, expect="ok", isolated=True,
         preexec=_umask(0o022), check=_modes_follow(0o022)),
    Case("files-umask-077", "files", "outputs under umask 077 (`hero data synth`): files 0600, folders 0700",
         lambda ws: ["data", "synth", "--out", "corpus", *SYNTH], defect=18, expect="ok", isolated=True,
         preexec=_umask(0o077), check=_modes_follow(0o077)),
]


def _ablate_output(ws) -> Path:
    from hero.io import claim_output_dir

    d = claim_output_dir(ws.tmp / "abl", "ablate")
    (d / "results.json").write_text("{}\n")
    return d


def _fake_corpus(ws) -> Path:
    d = ws.tmp / "mycorpus"
    d.mkdir()
    (d / "corpus.json").write_text('{"format": "hero-corpus"}\n')
    return d


def _assert_file(path: Path, text: str) -> None:
    assert path.read_text() == text, f"{path} changed or lost"


def _assert_real_corpus(path: Path) -> None:
    assert (path / "video" / "data.mdb").is_file() and (path / "tokenizer").is_dir(), f"{path}: not rebuilt"
