"""Temporary sibling directories that a killed process does not leave behind for good.

An output directory is built in a temporary sibling, ``.<name>.<tag>-<pid>-<random>``, and
renamed into place when complete; a failure removes it. SIGKILL (or a power cut) cannot be
caught, so the temporary of a killed process stays; the next process that builds the same
output removes it. It removes only what hero made and nobody is still using:

* the name has hero's pattern and names a pid,
* the directory holds hero's marker file (`MARKER`), naming that same pid and this host (on a
  shared file system another machine's pids mean nothing here),
* no process with that pid is alive (a live one, even an unrelated process that got the pid
  again, keeps its directory: leaving a stale directory is harmless, deleting a live one is not).

A leaf module: the standard library only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

MARKER = ".hero-temporary"
"""File inside every temporary directory made here: ``{"pid", "host", "for"}``."""


def make_temp_dir(final: str | os.PathLike, tag: str = "tmp") -> Path:
    """A new, empty temporary sibling of ``final`` (named with this pid, holding `MARKER`).

    Stale temporaries of ``final`` left by dead processes are removed first
    (`remove_stale_temp_dirs`). Call `release_temp_dir` before renaming it into place.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(final, tag)
    pid = os.getpid()
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{tag}-{pid}-", dir=final.parent))
    try:
        (tmp / MARKER).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "for": final.name}) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def release_temp_dir(tmp: str | os.PathLike) -> None:
    """Remove the marker of a finished temporary directory (just before it is renamed into place)."""
    try:
        (Path(tmp) / MARKER).unlink()
    except FileNotFoundError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    except OSError:
        return True  # cannot tell: keep the directory
    return True


def _stale_owner(path: Path, name: str, tag: str) -> int | None:
    """The dead pid that owns ``path`` when it is hero's stale temporary of ``name``, else None."""
    m = re.fullmatch(rf"\.{re.escape(name)}\.{re.escape(tag)}-(\d+)-[A-Za-z0-9_]+", path.name)
    if m is None or path.is_symlink() or not path.is_dir():
        return None
    try:
        marker = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return None  # no marker: not ours (or not ours to judge)
    pid = int(m[1])
    if not isinstance(marker, dict) or marker.get("pid") != pid or marker.get("host") != socket.gethostname():
        return None
    if pid == os.getpid() or _alive(pid):
        return None
    return pid


def remove_stale_temp_dirs(final: str | os.PathLike, tag: str = "tmp") -> list[Path]:
    """Remove the temporaries of ``final`` left by dead hero processes; returns what was removed."""
    final = Path(final)
    removed = []
    try:
        siblings = list(final.parent.iterdir())
    except OSError:
        return removed
    for path in siblings:
        if path.name.startswith(f".{final.name}.{tag}-") and _stale_owner(path, final.name, tag) is not None:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


__all__ = ["MARKER", "make_temp_dir", "release_temp_dir", "remove_stale_temp_dirs"]
