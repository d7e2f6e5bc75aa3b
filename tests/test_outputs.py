"""What a command may replace, a full disk, and the umask (issue 14, defects 1, 12 and 18).

Real full disks come from a tiny tmpfs mounted for the test (root only; CI runs as root); where
mounting is not permitted the same writers are driven into ENOSPC by fault injection instead.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from hero.errors import HeroError
from hero.io import (
    OUTPUT_MARKER,
    DiskFullError,
    check_replaceable,
    claim_output_dir,
    disk_full_reason,
    write_json_atomic,
    write_text_atomic,
)

# --------------------------------------------------------------------------------------------
# defect 1: only what hero created is ever removed


def _user_dir(root: Path) -> Path:
    d = root / "thesis"
    (d / "chapters").mkdir(parents=True)
    (d / "notes.txt").write_text("years of work")
    (d / "chapters" / "1.tex").write_text("\\chapter{One}")
    return d


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_claim_refuses_a_directory_of_user_files(tmp_path):
    d = _user_dir(tmp_path)
    before = _snapshot(d)
    with pytest.raises(HeroError, match=r"thesis: not empty and not an earlier output of hero quickstart.*--out"):
        claim_output_dir(d, "quickstart")
    assert _snapshot(d) == before


def test_claim_creates_marks_and_later_replaces_its_own_output(tmp_path):
    out = claim_output_dir(tmp_path / "runs" / "qs", "quickstart")
    marker = json.loads((out / OUTPUT_MARKER).read_text())
    assert marker["format"] == "hero-output" and marker["command"] == "quickstart"
    (out / "pretrain").mkdir()
    (out / "pretrain" / "model.safetensors").write_bytes(b"x")
    (out / "results.json").write_text("{}")
    os.symlink(tmp_path / "runs", out / "link")  # a link is removed, never followed
    assert claim_output_dir(out, "quickstart") == out
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER]
    assert (tmp_path / "runs" / "qs").is_dir()


def test_claim_accepts_an_empty_directory_and_refuses_another_commands_output(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    claim_output_dir(empty, "ablate")
    (empty / "results.json").write_text("{}")
    with pytest.raises(HeroError, match="not an earlier output of hero quickstart"):
        claim_output_dir(empty, "quickstart")
    assert (empty / "results.json").is_file()


def test_claim_refuses_a_file(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("mine")
    with pytest.raises(HeroError, match="is not a directory"):
        claim_output_dir(f, "quickstart")
    assert f.read_text() == "mine"


@pytest.mark.parametrize("module", ["quickstart", "ablate"])
def test_quickstart_and_ablate_refuse_a_user_directory(tmp_path, module):
    import importlib

    run = importlib.import_module(f"hero.{module}").run
    d = _user_dir(tmp_path)
    before = _snapshot(d)
    with pytest.raises(HeroError, match="not an earlier output"):
        run(d) if module == "quickstart" else run(d, seeds=[0])
    assert _snapshot(d) == before


def test_check_replaceable_kinds(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "corpus.json").write_text(json.dumps({"format": "hero-corpus"}))
    check_replaceable(corpus, kind="hero-corpus")
    check_replaceable(tmp_path / "missing", kind="hero-corpus")
    with pytest.raises(HeroError, match="a hero-corpus output, not hero-index"):
        check_replaceable(corpus, kind="hero-index")
    d = _user_dir(tmp_path)
    with pytest.raises(HeroError, match="thesis: not replaced"):
        check_replaceable(d, kind="hero-corpus")
    # a reference-layout LMDB (no kind file): replaceable by a store with the same files only
    ref, new = tmp_path / "ref", tmp_path / "new"
    ref.mkdir(), new.mkdir()
    for name in ("data.mdb", "lock.mdb"):
        (ref / name).write_bytes(b"")
    (new / "data.mdb").write_bytes(b"")
    check_replaceable(ref, like=new)
    (ref / "mine.txt").write_text("x")
    with pytest.raises(HeroError):
        check_replaceable(ref, like=new)


def _tiny_model():
    from hero.config import hero_tiny
    from hero.model import Hero

    torch.manual_seed(0)
    return Hero(hero_tiny())


def test_save_pretrained_refuses_a_user_directory_and_replaces_a_model(tmp_path):
    model = _tiny_model()
    d = _user_dir(tmp_path)
    before = _snapshot(d)
    with pytest.raises(HeroError, match="not replaced"):
        model.save_pretrained(d)
    assert _snapshot(d) == before
    assert [p.name for p in tmp_path.iterdir()] == ["thesis"]  # no temporary left
    out = model.save_pretrained(tmp_path / "model")
    model.save_pretrained(out)  # an earlier model is replaced
    assert (out / "model.safetensors").is_file()


def test_tokenizer_save_refuses_a_user_directory(tmp_path):
    from hero.data.tokenizer import train_tokenizer

    tok = train_tokenizer(["alice meets bob", "bob runs"] * 20, 300, tmp_path / "tok")
    d = _user_dir(tmp_path)
    before = _snapshot(d)
    with pytest.raises(HeroError, match="not replaced"):
        tok.save(d)
    assert _snapshot(d) == before
    tok.save(tmp_path / "tok")  # its own earlier output is replaced


def test_store_overwrite_refuses_a_user_directory(tmp_path):
    from hero.data.stores import VideoStoreWriter

    d = _user_dir(tmp_path)
    before = _snapshot(d)
    with pytest.raises(HeroError, match="not replaced"):
        with VideoStoreWriter(d, frame_interval=1.5, features=[("f", 4)], overwrite=True) as w:
            w.add("v", np.ones((3, 4), np.float32))
    assert _snapshot(d) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]
    store = tmp_path / "video"
    for _ in range(2):  # the second write replaces the first
        with VideoStoreWriter(store, frame_interval=1.5, features=[("f", 4)], overwrite=True) as w:
            w.add("v", np.ones((3, 4), np.float32))
    assert (store / "meta.json").is_file()


def test_training_checkpoint_prune_keeps_foreign_entries(tmp_path):
    from hero.train.checkpoint import prune

    root = tmp_path / "checkpoints"
    for step in (1, 2, 3):
        (root / f"step-{step:08d}").mkdir(parents=True)
        (root / f"step-{step:08d}" / "trainer_state.json").write_text("{}")
    (root / "step-best").mkdir()  # a user's copy, not one of ours
    (root / "step-best" / "model.safetensors").write_bytes(b"x")
    (root / ".step-00000009.tmp-123").mkdir()  # a dead run's temporary
    prune(root, keep_last=1)
    assert sorted(p.name for p in root.iterdir()) == ["step-00000003", "step-best"]


# --------------------------------------------------------------------------------------------
# defect 12: a full disk is one clear error, and nothing is half-written


def test_disk_full_reason_recognises_the_libraries_wordings():
    assert disk_full_reason(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) == "no space left on device"
    assert disk_full_reason(OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))) == "disk quota exceeded"
    safetensors_like = RuntimeError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                                    'message: "No space left on device" })')
    assert disk_full_reason(safetensors_like) == "no space left on device"
    assert disk_full_reason(OSError(errno.EACCES, "Permission denied")) is None
    assert disk_full_reason(ValueError("bad value")) is None


@pytest.fixture
def tiny_fs():
    """A directory on a full-able file system: ``make(size)`` mounts a tmpfs of ``size`` bytes.

    Skips where mounting is not permitted (not root, or no tmpfs); always unmounts.
    """
    mounts: list[str] = []

    def make(size: int) -> Path:
        d = tempfile.mkdtemp(prefix="hero-tinyfs-")
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", d],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            os.rmdir(d)
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode})")
        mounts.append(d)
        return Path(d)

    yield make
    for d in mounts:
        if subprocess.run(["umount", d], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", d], check=False)  # still busy: detach it, then fail below
            pytest.fail(f"{d}: still in use after the test (an open file or mapping was not closed)")
        os.rmdir(d)


def _fill(root: Path, leave: int = 0) -> None:
    """Fill the file system of ``root`` up to ``leave`` free bytes."""
    with open(root / "ballast", "wb") as f:
        free = shutil.disk_usage(root).free - leave
        try:
            f.write(b"\0" * max(free, 0))
            f.flush()
        except OSError:
            pass


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_text_writer_on_a_full_tmpfs_keeps_the_old_file(tiny_fs):
    root = tiny_fs(256 * 1024)
    target = write_text_atomic(root / "preds.json", "old\n")
    _fill(root)
    with pytest.raises(DiskFullError, match=r"no space left writing .*preds\.json \(no space left on device\)"):
        write_json_atomic(target, {"x": "y" * 100_000})
    assert target.read_text() == "old\n"
    assert _listing(root) == ["ballast", "preds.json"]


def test_nested_writers_name_the_outermost_output(tmp_path):
    from hero.io import writing

    with pytest.raises(DiskFullError, match=r"no space left writing .*corpus \(disk quota exceeded\)"):
        with writing(tmp_path / "corpus"), writing(tmp_path / ".corpus.tmp1" / "video"):
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))


def test_text_writer_fault_injected_enospc_keeps_the_old_file(tmp_path, monkeypatch):
    target = write_text_atomic(tmp_path / "preds.json", "old\n")
    import builtins

    real_open = builtins.open

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fake_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        return Full(f) if "w" in mode and str(path).endswith(".tmp") else f

    monkeypatch.setattr(builtins, "open", fake_open)
    with pytest.raises(DiskFullError, match="no space left writing"):
        write_text_atomic(target, "new\n")
    monkeypatch.undo()
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.json"]


def test_model_save_on_a_full_tmpfs(tiny_fs):
    root = tiny_fs(128 * 1024)
    model = _tiny_model()
    n_bytes = sum(p.numel() * 4 for p in model.state_dict().values())
    assert n_bytes > 128 * 1024, "the model must not fit the file system"
    with pytest.raises(DiskFullError, match=r"no space left writing .*model"):
        model.save_pretrained(root / "model")
    assert _listing(root) == []


def test_model_save_fault_injected(tmp_path, monkeypatch):
    import safetensors.torch

    def full(*a, **k):
        raise safetensors.SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                                          'message: "No space left on device" })')

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    model = _tiny_model()
    with pytest.raises(DiskFullError, match=r"no space left writing .*model"):
        model.save_pretrained(tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_training_checkpoint_on_a_full_tmpfs_keeps_the_previous_one(tiny_fs):
    from hero.train.checkpoint import latest_checkpoint, save_checkpoint

    model = _tiny_model()
    opt = torch.optim.AdamW(model.parameters())
    rng = [{"cpu": torch.get_rng_state()}]
    n_bytes = sum(p.numel() * 4 for p in model.state_dict().values())
    root = tiny_fs(int(n_bytes * 1.6))  # room for the first model's weights, not for a second one
    (root / "run").mkdir()
    first = save_checkpoint(root / "run", 1, model, opt, None, rng, keep_last=2)
    with pytest.raises(DiskFullError, match=r"no space left writing .*step-00000002"):
        save_checkpoint(root / "run", 2, model, opt, None, rng, keep_last=2)
    assert latest_checkpoint(root / "run") == first
    assert sorted(p.name for p in (root / "run" / "checkpoints").iterdir()) == ["latest", "step-00000001"]


def test_store_writer_on_a_full_tmpfs(tiny_fs):
    from hero.data.stores import VideoStoreWriter

    root = tiny_fs(512 * 1024)
    with pytest.raises(DiskFullError, match=r"no space left writing .*video"):
        with VideoStoreWriter(root / "video", frame_interval=1.5, features=[("f", 256)]) as w:
            for i in range(40):
                w.add(f"v{i}", np.ones((100, 256), np.float32))
    assert _listing(root) == []


def test_index_writer_on_a_full_tmpfs(tiny_fs):
    from hero.search.index import IndexWriter

    root = tiny_fs(1024 * 1024)
    rng = np.random.default_rng(0)
    with pytest.raises(DiskFullError, match=r"no space left writing .*index"):
        with IndexWriter(root / "index", dim=64, dtype="float32") as w:
            for i in range(30):
                w.add(f"v{i}", rng.standard_normal((100, 64)).astype(np.float32))
            w.finish(frame_interval=1.5, log=lambda *a: None)
    assert _listing(root) == []


# --------------------------------------------------------------------------------------------
# defect 18: outputs honour the umask


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_outputs_honour_the_umask(tmp_path, mask):
    from hero.data.stores import VideoStoreWriter
    from hero.data.tokenizer import train_tokenizer
    from hero.search.index import IndexWriter

    old = os.umask(mask)
    try:
        _tiny_model().save_pretrained(tmp_path / "model")
        tok = train_tokenizer(["alice meets bob", "bob runs"] * 20, 300, tmp_path / "tok")
        tok.save(tmp_path / "tok2")
        with VideoStoreWriter(tmp_path / "video", frame_interval=1.5, features=[("f", 4)]) as w:
            w.add("v", np.ones((3, 4), np.float32))
        with IndexWriter(tmp_path / "index", dim=4, dtype="float32") as w:
            w.add("v", np.ones((3, 4), np.float32))
            w.finish(frame_interval=1.5, log=lambda *a: None)
        write_text_atomic(tmp_path / "preds.json", "{}\n")
    finally:
        os.umask(old)
    checked = 0
    for p in [tmp_path / "preds.json", *(q for d in ("model", "tok", "tok2", "video", "index")
                                          for q in [tmp_path / d, *(tmp_path / d).rglob("*")])]:
        want = (0o777 if p.is_dir() else 0o666) & ~mask
        assert _mode(p) == want, f"{p}: mode {_mode(p):o}, expected {want:o} under umask {mask:03o}"
        checked += 1
    assert checked > 10
