"""Small file helpers shared by the whole package: atomic writers and a checked JSONL reader.

* `write_text_atomic` / `write_json_atomic`: the text goes to a temporary sibling
  (``.<name>.<pid>.tmp``, in the same directory, hence the same file system) which is then renamed
  over the target with `os.replace`. A reader therefore sees the old file or the new one, never a
  part; a failure (serialisation, a full disk, a kill) leaves the old file as it was, and the
  temporary file is removed unless the process itself dies.
* `iter_jsonl` / `read_jsonl`: one JSON object per line (blank lines skipped; ``.gz`` read
  transparently); a bad line (not UTF-8, not JSON, cut short, not an object) is a `HeroError`
  naming ``file:line``.
* `read_text` / `read_json`: a whole UTF-8 text or JSON file, with the same kind of errors.
* `atomic_dir` / `publish_dir`: the one way a directory output (model, checkpoint, store, corpus,
  index, tokenizer) is built in a temporary sibling and renamed into place (umask, optional fsync,
  replacing only an earlier output of the same kind).

A leaf module: it imports only the standard library, `hero.errors` and `hero.tempdirs` (itself a
leaf), so anything may use it.
"""

from __future__ import annotations

import contextlib
import contextvars
import gzip
import json
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hero.errors import HeroError


def write_text_atomic(path: str | os.PathLike, text: str, *, mkdir: bool = True, fsync: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path`` as a `Path`.

    Args:
        mkdir: create missing parent directories (otherwise a missing directory is an error).
        fsync: flush the data to disk before the rename (for files that must survive a power
            loss in a consistent state, like a checkpoint's ``latest`` pointer).
    """
    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with writing(path), open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()  # a full disk shows here, inside `writing`, not at close
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_file_atomic(path: str | os.PathLike, write: Callable[[Path], Any], *, suffix: str = ".tmp",
                      mkdir: bool = True) -> Path:
    """``write(tmp)`` to a temporary sibling of ``path``, then rename it over ``path``.

    For writers that want a file name (``fig.savefig``, ``np.savez``). ``suffix`` ends the temporary's
    name (a writer that picks the format by extension needs the right one, e.g. ``".tmp.png"``). On
    any failure the temporary is removed and ``path`` is left as it was; a full disk is one
    `DiskFullError` naming ``path``.
    """
    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{suffix}")
    try:
        with writing(path):
            write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = None, sort_keys: bool = False,
                      ensure_ascii: bool = True, mkdir: bool = True) -> Path:
    """Write ``json.dumps(obj, ...)`` and a newline to ``path`` atomically (see `write_text_atomic`).

    ``obj`` is serialised before anything is written, so an object that is not JSON-able raises
    (`TypeError`, `ValueError`) with no file touched.
    """
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii)
    return write_text_atomic(path, text + "\n", mkdir=mkdir)


def json_problem(err: json.JSONDecodeError, text: str, unit: str = "line") -> str:
    """What is wrong with ``text`` (one JSONL line or a whole file), for an error message.

    A value cut short (a truncated line, a file that stops mid-record) is said in words: the
    decoder itself reports the position after the end, which reads like a fault at "column 1"
    of the next line.
    """
    if err.pos >= len(text.rstrip()) or err.msg.startswith("Unterminated string"):
        return f"the {unit} ends before the JSON value is complete"
    if err.msg.startswith("Unexpected UTF-8 BOM"):
        return "a byte-order mark inside the text"
    if unit == "line":
        return f"{err.msg} at column {err.colno}"
    return f"{err.msg} at line {err.lineno} column {err.colno}"


def decode_utf8(data: bytes, path: str | os.PathLike, first_line: int = 1) -> str:
    """``data`` decoded as UTF-8 (a leading byte-order mark dropped), or a `HeroError` naming ``path:line``.

    Args:
        first_line: the line number of the first line of ``data`` in ``path`` (for a message).
    """
    try:
        return data.decode("utf-8-sig" if first_line == 1 else "utf-8")
    except UnicodeDecodeError as err:
        line = first_line + data.count(b"\n", 0, err.start)
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise HeroError(f"{path}:{line}: not UTF-8 text ({_encoding_hint(data)}byte {data[err.start]:#04x} "
                        f"at column {column}); convert the file to UTF-8") from None


def _encoding_hint(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16 text: "
    return ""


def read_text(path: str | os.PathLike) -> str:
    """The whole text of a UTF-8 file (``.gz`` read transparently); every failure is a `HeroError` naming it."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except FileNotFoundError:
        raise HeroError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise HeroError(f"{path}: cannot read (a directory, not a file)") from None
    except (OSError, EOFError, zlib.error) as err:
        raise HeroError(f"{path}: cannot read ({getattr(err, 'strerror', None) or err})") from None
    return decode_utf8(data, path)


def read_json(path: str | os.PathLike, expect: type | tuple[type, ...] | None = None) -> Any:
    """The JSON value of a whole file (see `read_text`); a `HeroError` names ``file:line`` of bad JSON.

    Args:
        expect: the type(s) the top-level value must have (e.g. ``dict``), else a `HeroError`.
    """
    text = read_text(path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise HeroError(f"{path}:{err.lineno}: invalid JSON ({json_problem(err, text, 'file')})") from None
    except RecursionError:
        raise HeroError(f"{path}: invalid JSON (nested too deeply)") from None
    if expect is not None and not isinstance(value, expect):
        want = " or ".join(_JSON_NAMES.get(t, t.__name__) for t in (expect if isinstance(expect, tuple) else (expect,)))
        raise HeroError(f"{path}: expected a JSON {want}, got {json_type_name(value)}")
    return value


_JSON_NAMES = {dict: "object", list: "list", str: "string", int: "integer", float: "number"}


def json_type_name(value: Any) -> str:
    """What a decoded JSON value is, for messages: ``null``, ``a boolean``, ``an object``, ``a list``, ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__)


def iter_jsonl(path: str | os.PathLike, *, objects: bool = True) -> Iterator[tuple[int, Any]]:
    """``(line number, record)`` for every non-blank line of a JSONL file, read lazily.

    Raises `HeroError` for a missing or unreadable file (``<file>: ...``) and for a line that is
    not UTF-8, not valid JSON or (with ``objects``, the default) not a JSON object
    (``<file>:<line>: ...``). A byte-order mark before the first line is dropped.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        f = opener(path, "rb")
    except FileNotFoundError:
        raise HeroError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise HeroError(f"{path}: cannot read (a directory, not a JSONL file)") from None
    except OSError as err:
        raise HeroError(f"{path}: cannot read ({err.strerror or err})") from None
    with f:
        try:
            for lineno, raw in enumerate(f, 1):
                line = decode_utf8(raw, path, lineno)
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise HeroError(f"{path}:{lineno}: invalid JSON ({json_problem(err, line)})") from None
                except RecursionError:
                    raise HeroError(f"{path}:{lineno}: invalid JSON (nested too deeply)") from None
                if objects and not isinstance(record, dict):
                    raise HeroError(f"{path}:{lineno}: expected a JSON object, got {json_type_name(record)}")
                yield lineno, record
        except (OSError, EOFError, zlib.error) as err:  # a read error, a corrupt or truncated .gz
            raise HeroError(f"{path}: cannot read ({getattr(err, 'strerror', None) or err})") from None


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record of a JSONL file, in order (see `iter_jsonl` for the format and the errors)."""
    return [record for _, record in iter_jsonl(path)]


# ---------------------------------------------------------------------------------------------
# Outputs: a full disk, the umask, and what a command may replace
# ---------------------------------------------------------------------------------------------

# errno -> the words of the error; any other write error keeps its own message.
_DISK_FULL = {28: "no space left on device", 122: "disk quota exceeded", 27: "file too large"}  # ENOSPC, EDQUOT, EFBIG


RUN_LOG_FILE = "log.jsonl"
"""The training log of a run directory (written by `hero.train.logging`, drawn by `hero.viz.curves`)."""


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a run's ``log.jsonl`` (a run directory or the file itself). Only the last line
    may be cut short (a killed run): it is dropped; any other bad line is an error ``file:line``."""
    path = Path(path)
    if path.is_dir():
        path = path / RUN_LOG_FILE
    if not path.is_file():
        raise HeroError(f"{path}: no training log here")
    out = []
    lines = read_text(path).splitlines()
    for i, line in enumerate(lines, 1):
        if line.strip():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                if i != len(lines):  # only the last line may be cut short
                    raise HeroError(f"{path}:{i}: invalid JSON ({json_problem(err, line)})") from None
                continue
            if not isinstance(rec, dict):
                raise HeroError(f"{path}:{i}: expected a JSON object, got {type(rec).__name__}")
            out.append(rec)
    return out


def disk_full_reason(err: BaseException) -> str | None:
    """Why ``err`` is a full disk (``"no space left on device"``, ...), or None when it is not one.

    Besides an `OSError` with errno ENOSPC, EDQUOT or EFBIG, this recognises the libraries that
    report the C error as text (safetensors' ``SafetensorError``, FAISS' ``RuntimeError``, LMDB's
    ``lmdb.Error``), by the system's wording of those errors, anywhere in the exception chain.
    """
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _DISK_FULL:
            return _DISK_FULL[err.errno]
        text = str(err)
        for code, reason in _DISK_FULL.items():
            if os.strerror(code) in text:
                return reason
        err = err.__cause__ or err.__context__
    return None


class DiskFullError(HeroError):
    """Writing an output failed because the file system is full (or the quota or file-size limit is hit)."""


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Turn a full disk met inside the block into one `DiskFullError` naming ``path`` (the output).

    Every writer of the package runs its writes inside this block and removes its temporary files
    on the way out (it sees the `DiskFullError` like any other exception), so the user gets
    ``no space left writing <path> (...)`` and no half-written output. Other errors pass unchanged.
    Blocks nest: the outermost one names the output (a corpus, not the store inside its temporary).
    """
    outer = _WRITING.get()
    token = _WRITING.set(outer if outer is not None else path)
    try:
        yield
    except HeroError:
        raise
    except Exception as err:
        reason = disk_full_reason(err)
        if reason is None:
            raise
        raise disk_full(outer if outer is not None else path, reason) from None
    finally:
        _WRITING.reset(token)


_WRITING: contextvars.ContextVar[str | os.PathLike | None] = contextvars.ContextVar("hero_io_writing", default=None)


def disk_full(path: str | os.PathLike, reason: str = "no space left on device") -> DiskFullError:
    """The one message of a full disk met while writing ``path`` (or the output of an enclosing `writing`)."""
    path = _WRITING.get() or path
    return DiskFullError(f"no space left writing {path} ({reason}); nothing was written: "
                         "free some space (or choose another output path) and run the command again")


def current_umask() -> int:
    """The process umask (read from ``/proc`` where it can be, so that it is never changed even briefly)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(path: str | os.PathLike, recursive: bool = False) -> None:
    """Give ``path`` (and with ``recursive`` everything under it) the mode a plain ``open``/``mkdir``
    would have given it under the current umask.

    `tempfile.mkdtemp` and safetensors create private (0700/0600) entries; an output renamed from
    such a temporary gets ``0o666 & ~umask`` (files) or ``0o777 & ~umask`` (directories) first.
    Symbolic links are left alone.
    """
    path = Path(path)
    mask = current_umask()
    paths = [path, *path.rglob("*")] if recursive and path.is_dir() else [path]
    for p in paths:
        if p.is_symlink():
            continue
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


OUTPUT_MARKER = ".hero-output"
"""The file a command that owns a whole output directory (``hero quickstart --out``, ``hero ablate
--out``) writes into it on creation: its next run may replace that directory, and no other."""

# Files that say what kind of hero output a directory is: their JSON "format" field.
_KIND_FILES = ("corpus.json", "meta.json", "config.json")


def output_kind(directory: str | os.PathLike) -> str | None:
    """What kind of hero output ``directory`` is, or None when it is not recognisably one.

    ``"hero-output:<command>"`` for a directory carrying `OUTPUT_MARKER`; else the ``format`` of its
    ``corpus.json``/``meta.json``/``config.json`` (``"hero-corpus"``, ``"hero-video-store"``,
    ``"hero"`` for a saved model, ``"hero-index"``, ...); ``"hero-tokenizer"`` for a tokenizer
    directory written by `hero.data.tokenizer.Tokenizer.save`.
    """
    directory = Path(directory)
    marker = _json_object(directory / OUTPUT_MARKER)
    if marker is not None and marker.get("format") == "hero-output" and isinstance(marker.get("command"), str):
        return f"hero-output:{marker['command']}"
    for name in _KIND_FILES:
        meta = _json_object(directory / name)
        if meta is not None and isinstance(meta.get("format"), str) and meta["format"].startswith("hero"):
            return meta["format"]
    if (directory / "hero_tokenizer.json").is_file():
        return "hero-tokenizer"
    return None


def _json_object(path: Path) -> dict[str, Any] | None:
    try:
        if not path.is_file() or path.stat().st_size > 1 << 20:
            return None
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def check_replaceable(target: str | os.PathLike, *, kind: str | None = None, like: str | os.PathLike | None = None,
                      how: str = "move it away or choose another output path") -> None:
    """Raise `HeroError` unless replacing ``target`` can only destroy what hero itself wrote.

    ``target`` may be replaced when it does not exist, is an empty directory, or is a hero output of
    the same kind: ``kind`` (see `output_kind`), or the kind of ``like``, the finished new output
    that is about to take its place. An LMDB store in the reference layout (no kind file) counts as
    the same kind when it holds nothing but ``data.mdb``/``lock.mdb`` and files ``like`` has too.
    Anything else (a file, a directory of user files, another kind of output) is refused.
    """
    target = Path(target)
    if not os.path.lexists(target):
        return
    if not target.is_dir():
        raise HeroError(f"{target}: exists and is not a directory; not replaced ({how})")
    try:
        names = {p.name for p in target.iterdir()}
    except OSError as err:
        raise HeroError(f"{target}: cannot list it ({err.strerror or err}); not replaced") from None
    if not names:
        return
    if like is not None and kind is None:
        kind = output_kind(like)
    found = output_kind(target)
    if found is not None and found == kind:
        return
    if found is None and like is not None and "data.mdb" in names:
        new_names = {p.name for p in Path(like).iterdir()}
        if names <= new_names | {"lock.mdb"}:
            return
    what = f"a {found} output, not {kind}" if found and kind else "not an output of this kind written by hero"
    raise HeroError(f"{target}: not replaced: it is {what} ({how})")


def claim_output_dir(path: str | os.PathLike, command: str, option: str = "--out") -> Path:
    """An empty directory ``path`` that belongs to ``command``, marked with `OUTPUT_MARKER`.

    A missing or empty directory is created and marked. A directory that an earlier run of the
    same command marked is emptied (its marker stays, so an interrupted clean-up can be resumed).
    Any other non-empty directory, or a file, is refused with a `HeroError`: nothing the program
    did not create is ever deleted.
    """
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():
        raise HeroError(f"{path}: exists and is not a directory; choose another {option}")
    if path.is_dir():
        try:
            entries = list(path.iterdir())
        except OSError as err:
            raise HeroError(f"{path}: cannot list it ({err.strerror or err})") from None
        if entries and output_kind(path) != f"hero-output:{command}":
            raise HeroError(f"{path}: not empty and not an earlier output of hero {command} (no {OUTPUT_MARKER} "
                            f"marker); choose another {option}, or empty or remove it yourself")
        import shutil

        for entry in entries:
            if entry.name == OUTPUT_MARKER:
                continue
            try:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            except OSError as err:
                raise HeroError(f"{entry}: cannot remove the earlier output ({err.strerror or err})") from None
    with writing(path):
        path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path / OUTPUT_MARKER, {
            "format": "hero-output", "command": command,
            "note": f"written by `hero {command}`: its next run with {option} {path.name} replaces this directory"},
            indent=2)
    return path


# ---------------------------------------------------------------------------------------------
# Directory outputs: one way into place
# ---------------------------------------------------------------------------------------------


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a directory's entries (names, renames) to disk; a file system that cannot is left alone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish_dir(tmp: str | os.PathLike, final: str | os.PathLike, *, how: str, fsync: bool = False) -> Path:
    """Rename the finished temporary directory ``tmp`` to its sibling ``final``; returns ``final``.

    Every directory output of the package (a saved model, a training checkpoint, a store, a corpus,
    an index, a tokenizer) goes into place through here, so all of them behave alike:

    * the entries get the modes of the umask (`honour_umask`: ``mkdtemp`` and safetensors make
      private ones), and the `hero.tempdirs` marker of ``tmp``, if any, is removed;
    * with ``fsync`` every file under ``tmp`` and ``tmp`` itself are flushed to disk before the
      rename and the parent directory after it (training checkpoints: the ``latest`` pointer must
      never name a directory whose bytes are not on disk yet);
    * an existing ``final`` is replaced only when `check_replaceable` allows it (empty, or an
      earlier hero output of the kind of ``tmp``; otherwise a `HeroError` ending with ``how``). It
      is first moved aside (``.<name>.old-<pid>``), put back if the rename of ``tmp`` fails, and
      removed once ``tmp`` is in place.

    ``tmp`` is the caller's to remove when this raises.
    """
    import shutil

    from hero.tempdirs import release_temp_dir

    tmp, final = Path(tmp), Path(final)
    release_temp_dir(tmp)
    honour_umask(tmp, recursive=True)
    if fsync:
        for f in sorted(p for p in tmp.rglob("*") if p.is_file() and not p.is_symlink()):
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        for d in sorted((p for p in tmp.rglob("*") if p.is_dir() and not p.is_symlink()), reverse=True):
            fsync_dir(d)
        fsync_dir(tmp)
    backup = None
    if os.path.lexists(final):
        check_replaceable(final, like=tmp, how=how)
        backup = final.with_name(f".{final.name}.old-{os.getpid()}")
        if os.path.lexists(backup):  # our own leftover (this pid): an earlier failed removal
            shutil.rmtree(backup)
        final.rename(backup)
    try:
        tmp.rename(final)
    except BaseException:
        if backup is not None:
            backup.rename(final)
        raise
    if fsync:
        fsync_dir(final.parent)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
    return final


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, *, how: str, kind: str | None = None, fsync: bool = False,
               tag: str = "tmp") -> Iterator[Path]:
    """Build a directory output in a temporary sibling and put it in place (`publish_dir`).

    ``with atomic_dir(out, how=..., kind=...) as tmp: write into tmp``. The temporary comes from
    `hero.tempdirs.make_temp_dir` (pid-named with a marker, so one left by a killed process is
    removed by the next run); ``kind`` (see `output_kind`) refuses, before anything is written,
    to replace a ``final`` that is not an earlier output of that kind. On any failure the temporary
    is removed and ``final`` is left as it was; a full disk is one `DiskFullError` naming ``final``.
    """
    import shutil

    from hero.tempdirs import make_temp_dir

    final = Path(final)
    if kind is not None:
        check_replaceable(final, kind=kind, how=how)
    with writing(final):
        tmp = make_temp_dir(final, tag)
        try:
            yield tmp
            publish_dir(tmp, final, how=how, fsync=fsync)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
