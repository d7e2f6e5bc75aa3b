"""Small file helpers shared by the whole package: atomic writers and a checked JSONL reader.

* `write_text_atomic` / `write_json_atomic`: the text goes to a temporary sibling
  (``.<name>.<pid>.tmp``, in the same directory, hence the same file system) which is then renamed
  over the target with `os.replace`. A reader therefore sees the old file or the new one, never a
  part; a failure (serialisation, a full disk, a kill) leaves the old file as it was, and the
  temporary file is removed unless the process itself dies.
* `iter_jsonl` / `read_jsonl`: one JSON object per line (blank lines skipped; ``.gz`` read
  transparently); a bad line is a `HeroError` naming ``file:line``.

A leaf module: it imports only the standard library and `hero.errors`, so anything may use it.
"""

from __future__ import annotations

import gzip
import json
import os
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


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` for every non-blank line of a JSONL file, read lazily.

    Raises `HeroError` for a missing or unreadable file (``<file>: ...``) and for a line that is
    not valid JSON or not a JSON object (``<file>:<line>: ...``).
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        f = opener(path, "rt", encoding="utf-8")
    except FileNotFoundError:
        raise HeroError(f"{path}: no such file") from None
    except OSError as err:
        raise HeroError(f"{path}: cannot read ({err.strerror or err})") from None
    with f:
        try:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise HeroError(f"{path}:{lineno}: invalid JSON ({err.msg} at column {err.colno})") from None
                if not isinstance(record, dict):
                    raise HeroError(f"{path}:{lineno}: expected a JSON object, got a {type(record).__name__}")
                yield lineno, record
        except UnicodeDecodeError as err:
            raise HeroError(f"{path}: not UTF-8 text ({err.reason})") from None
        except (OSError, EOFError) as err:  # a read error, a corrupt or truncated .gz
            raise HeroError(f"{path}: cannot read ({getattr(err, 'strerror', None) or err})") from None


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record of a JSONL file, in order (see `iter_jsonl` for the format and the errors)."""
    return [record for _, record in iter_jsonl(path)]
