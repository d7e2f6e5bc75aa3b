"""hero.io: atomic writers and the checked JSONL reader."""

from __future__ import annotations

import gzip
import json

import pytest

from hero.errors import HeroError
from hero.io import iter_jsonl, read_jsonl, write_json_atomic, write_text_atomic


def test_write_json_atomic_writes_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "out.json"  # parents are created
    assert write_json_atomic(path, {"b": 1, "a": "é"}) == path
    assert path.read_text(encoding="utf-8") == '{"b": 1, "a": "\\u00e9"}\n'
    write_json_atomic(path, {"b": 1, "a": "é"}, indent=1, sort_keys=True, ensure_ascii=False)
    assert path.read_text(encoding="utf-8") == '{\n "a": "é",\n "b": 1\n}\n'
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.json"
    write_json_atomic(path, {"old": True})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"new": object()})  # not JSON-able
    with pytest.raises(ValueError):
        write_json_atomic(path, _circular())  # circular reference
    assert json.loads(path.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_a_failed_rename_leaves_no_temporary(tmp_path):
    target = tmp_path / "taken"
    (target / "inside").mkdir(parents=True)  # a non-empty directory cannot be replaced by a file
    with pytest.raises(OSError):
        write_text_atomic(target, "text")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def _circular() -> list:
    a: list = []
    a.append(a)
    return a


def test_write_text_atomic_options(tmp_path):
    path = tmp_path / "missing" / "latest"
    with pytest.raises(FileNotFoundError):
        write_text_atomic(path, "x\n", mkdir=False)
    assert not path.parent.exists()
    write_text_atomic(path, "step-1\n", fsync=True)
    assert path.read_text() == "step-1\n"
    write_text_atomic(path, "step-2\n")  # replaces
    assert path.read_text() == "step-2\n"
    assert [p.name for p in path.parent.iterdir()] == ["latest"]


def test_read_jsonl_records_and_line_numbers(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"x": 1}\n\n  \n{"x": 2}\n', encoding="utf-8")
    assert read_jsonl(path) == [{"x": 1}, {"x": 2}]
    assert list(iter_jsonl(path)) == [(1, {"x": 1}), (4, {"x": 2})]
    gz = tmp_path / "a.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write('{"x": 3}\n')
    assert read_jsonl(gz) == [{"x": 3}]


@pytest.mark.parametrize(("text", "message"), [
    ('{"x": 1}\n\n{oops\n', r"bad\.jsonl:3: invalid JSON \(Expecting property name .* at column 2\)"),
    ('{"x": 1}\n[1, 2]\n', r"bad\.jsonl:2: expected a JSON object, got a list"),
])
def test_read_jsonl_errors_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(HeroError, match=message) as err:
        read_jsonl(path)
    assert str(err.value).startswith(f"{path}:")


def test_read_jsonl_unreadable_files(tmp_path):
    with pytest.raises(HeroError, match=r"absent\.jsonl: no such file"):
        read_jsonl(tmp_path / "absent.jsonl")
    with pytest.raises(HeroError, match=r"cannot read"):
        read_jsonl(tmp_path)  # a directory
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"x": "é"}\n'.encode("latin-1"))
    with pytest.raises(HeroError, match=r"latin\.jsonl:1: not UTF-8 text \(byte 0xe9 at column 8\)"):
        read_jsonl(latin)


@pytest.mark.parametrize(("line", "message"), [
    ("null", r"bad\.jsonl:2: expected a JSON object, got null"),
    ("42", r"bad\.jsonl:2: expected a JSON object, got a number"),
    ('"text"', r"bad\.jsonl:2: expected a JSON object, got a string"),
    ("true", r"bad\.jsonl:2: expected a JSON object, got a boolean"),
    ('{"qid": 1, "desc": "cut', r"bad\.jsonl:2: invalid JSON \(the line ends before the JSON value is complete\)"),
    ('{"qid": 1, ', r"bad\.jsonl:2: invalid JSON \(the line ends before the JSON value is complete\)"),
    ('{"qid": 1}}', r"bad\.jsonl:2: invalid JSON \(Extra data at column 11\)"),
])
def test_read_jsonl_names_the_line_of_every_bad_value(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"qid": 0}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(HeroError, match=message):
        read_jsonl(path)


def test_read_jsonl_encodings(tmp_path):
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + b'{"x": 1}\n{"x": 2}\n')
    assert read_jsonl(bom) == [{"x": 1}, {"x": 2}]
    utf16 = tmp_path / "u16.jsonl"
    utf16.write_bytes('{"x": 1}\n'.encode("utf-16"))
    with pytest.raises(HeroError, match=r"u16\.jsonl:1: not UTF-8 text \(UTF-16 text: byte 0xff"):
        read_jsonl(utf16)
    late = tmp_path / "late.jsonl"
    late.write_bytes(b'{"x": 1}\n{"x": 2}\n{"x": "\xe9"}\n')
    with pytest.raises(HeroError, match=r"late\.jsonl:3: not UTF-8 text \(byte 0xe9 at column 8\)"):
        read_jsonl(late)


def test_read_json_and_read_text(tmp_path):
    from hero.io import read_json, read_text

    good = tmp_path / "a.json"
    good.write_text('{"a": [1, 2]}', encoding="utf-8")
    assert read_json(good, dict) == {"a": [1, 2]}
    with pytest.raises(HeroError, match=r"a\.json: expected a JSON list, got an object"):
        read_json(good, list)
    cut = tmp_path / "cut.json"
    cut.write_text('{\n  "a": [1,\n', encoding="utf-8")
    with pytest.raises(HeroError, match=r"cut\.json:\d+: invalid JSON \(the file ends before the JSON value"):
        read_json(cut)
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "a": 1,\n  oops\n}', encoding="utf-8")
    with pytest.raises(HeroError, match=r"bad\.json:3: invalid JSON \(Expecting property name .* at line 3 column 3\)"):
        read_json(bad)
    latin = tmp_path / "l.txt"
    latin.write_bytes("line one\nd\xe9j\xe0 vu\n".encode("latin-1"))
    with pytest.raises(HeroError, match=r"l\.txt:2: not UTF-8 text \(byte 0xe9 at column 2\)"):
        read_text(latin)
    with pytest.raises(HeroError, match=r"nothing\.json: no such file"):
        read_json(tmp_path / "nothing.json")


# -- directory outputs: atomic_dir / publish_dir ---------------------------------------------------


def _index_like(path, n):
    """A finished hero output of kind ``hero-index`` with one data file."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "meta.json").write_text(json.dumps({"format": "hero-index"}))
    (path / "data.bin").write_bytes(bytes([n]) * 10)


def test_atomic_dir_puts_a_finished_directory_in_place_with_the_umask_modes(tmp_path):
    import os

    from hero.io import atomic_dir, current_umask

    out = tmp_path / "runs" / "index"
    with atomic_dir(out, how="choose another path", kind="hero-index") as tmp:
        assert tmp.parent == out.parent and tmp.name.startswith(".index.tmp-") and not out.exists()
        _index_like(tmp, 1)
    assert (out / "data.bin").read_bytes() == b"\x01" * 10
    assert sorted(p.name for p in out.parent.iterdir()) == ["index"]  # no temporary, no marker, no backup
    assert sorted(p.name for p in out.iterdir()) == ["data.bin", "meta.json"]
    mask = current_umask()
    assert os.stat(out / "data.bin").st_mode & 0o777 == 0o666 & ~mask
    assert os.stat(out).st_mode & 0o777 == 0o777 & ~mask
    # an earlier output of the same kind is replaced, nothing left beside it
    with atomic_dir(out, how="choose another path", kind="hero-index") as tmp:
        _index_like(tmp, 2)
    assert (out / "data.bin").read_bytes() == b"\x02" * 10
    assert sorted(p.name for p in out.parent.iterdir()) == ["index"]


def test_atomic_dir_failure_leaves_the_old_output_and_no_temporary(tmp_path):
    from hero.io import atomic_dir

    out = tmp_path / "index"
    _index_like(out, 1)
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_dir(out, how="choose another path", kind="hero-index") as tmp:
            _index_like(tmp, 2)
            raise RuntimeError("boom")
    assert (out / "data.bin").read_bytes() == b"\x01" * 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]


def test_atomic_dir_refuses_to_replace_what_hero_did_not_write(tmp_path):
    from hero.io import atomic_dir

    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    ran = []
    with pytest.raises(HeroError, match=r"mine: not replaced.*choose another path"):
        with atomic_dir(out, how="choose another path", kind="hero-index") as tmp:
            ran.append(tmp)  # refused before anything is written
    assert ran == [] and (out / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    # without a kind, the finished temporary decides (another kind of output: refused at the rename)
    with pytest.raises(HeroError, match="not replaced"):
        with atomic_dir(out, how="choose another path") as tmp:
            _index_like(tmp, 3)
    assert (out / "notes.txt").read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_publish_dir_fsyncs_files_and_directories_when_asked(tmp_path, monkeypatch):
    import os

    from hero import io

    synced_files, synced_dirs = [], []
    real_fsync = os.fsync

    def fsync(fd):
        synced_files.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(io, "fsync_dir", lambda p: synced_dirs.append(str(p)))
    tmp = tmp_path / ".ck.tmp-1"
    _index_like(tmp, 1)
    (tmp / "sub").mkdir()
    (tmp / "sub" / "x").write_text("x")
    io.publish_dir(tmp, tmp_path / "ck", how="h", fsync=True)
    assert sorted(os.path.basename(p) for p in synced_files) == ["data.bin", "meta.json", "x"]
    assert synced_dirs == [str(tmp / "sub"), str(tmp), str(tmp_path)]
    synced_files.clear()
    synced_dirs.clear()
    tmp2 = tmp_path / ".other.tmp-1"
    _index_like(tmp2, 1)
    io.publish_dir(tmp2, tmp_path / "other", how="h")  # fsync=False: nothing flushed
    assert synced_files == [] and synced_dirs == []


def test_publish_dir_puts_the_old_output_back_when_the_rename_fails(tmp_path, monkeypatch):
    from pathlib import Path

    from hero.io import publish_dir

    out = tmp_path / "index"
    _index_like(out, 1)
    tmp = tmp_path / ".index.tmp-9"
    _index_like(tmp, 2)
    real_rename = Path.rename

    def rename(self, target):
        if self == tmp:
            raise OSError(5, "Input/output error")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(OSError):
        publish_dir(tmp, out, how="h")
    assert (out / "data.bin").read_bytes() == b"\x01" * 10
    assert sorted(p.name for p in tmp_path.iterdir()) == [".index.tmp-9", "index"]  # tmp: the caller's
