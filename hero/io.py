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

A leaf module: it imports only the standard library and `hero.errors`, so anything may use it.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Iterator
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
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
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
        raise HeroError(f"{path}: expected a JSON {want}, got {_json_type(value)}")
    return value


_JSON_NAMES = {dict: "object", list: "list", str: "string", int: "integer", float: "number"}


def _json_type(value: Any) -> str:
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
                    raise HeroError(f"{path}:{lineno}: expected a JSON object, got {_json_type(record)}")
                yield lineno, record
        except (OSError, EOFError, zlib.error) as err:  # a read error, a corrupt or truncated .gz
            raise HeroError(f"{path}: cannot read ({getattr(err, 'strerror', None) or err})") from None


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record of a JSONL file, in order (see `iter_jsonl` for the format and the errors)."""
    return [record for _, record in iter_jsonl(path)]
