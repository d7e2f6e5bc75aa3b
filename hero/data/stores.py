"""Our LMDB stores: frame features per video, and aligned, tokenized subtitles per video.

Layout (DEVELOPERS.md, "A prepared dataset directory"):

* ``video/``: an LMDB environment (``data.mdb``) plus ``meta.json`` and ``nframes.json``.
  Key = video id (utf-8). Value = ``uint32 little-endian header length`` + msgpack header
  ``{"shape": [n, d], "dtype": "<f2"}`` + the raw little-endian array bytes (C order).
* ``subtitles/``: an LMDB environment plus ``meta.json``. Key = video id; value = the msgpack dict
  ``{"vid", "nframes", "subs", "input_ids", "unique_sub2frames", "unmatched_frames", "pseudo"}``.

Readers open the environment lazily and re-open it when the process id changes, so a store
created in the main process can be handed to forked DataLoader workers (an LMDB handle must
never be used across ``fork``). They open read-only with ``lock=False``: the stores are immutable
once written, so readers need no lock table and several jobs can read one store at once.

Writers write into a temporary sibling directory and rename it into place when the ``with``
block ends without error; on error the temporary directory is removed and any previous store is
left untouched. The LMDB map grows (doubling) whenever a batch of puts does not fit.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lmdb
import msgpack
import numpy as np

from hero.errors import HeroError
from hero.io import disk_full, honour_umask, publish_dir, write_json_atomic, writing

VIDEO_FORMAT = "hero-video-store"
SUBTITLE_FORMAT = "hero-subtitle-store"
FORMAT_VERSION = 1

_HEADER_LEN = struct.Struct("<I")
_INITIAL_MAP_SIZE = 1 << 26  # 64 MiB; doubled whenever a commit does not fit
_BATCH_BYTES = 1 << 26  # commit after this many value bytes (keeps memory bounded)
_DTYPES = {"float16": "<f2", "float32": "<f4"}


# --------------------------------------------------------------------------------------------
# value encoding


def encode_array(array: np.ndarray, dtype: str = "float16") -> bytes:
    """Encode ``(n, d)`` features as header + raw little-endian bytes of ``dtype``."""
    code = _DTYPES.get(dtype)
    if code is None:
        raise HeroError(f"unsupported store dtype {dtype!r}; choose from {sorted(_DTYPES)}")
    data = np.ascontiguousarray(array, dtype=np.dtype(code))
    header = msgpack.packb({"shape": list(data.shape), "dtype": code})
    return _HEADER_LEN.pack(len(header)) + header + data.tobytes()


def decode_array(value: bytes | memoryview, where: str = "") -> np.ndarray:
    """Inverse of `encode_array`; returns a float32 copy ``(n, d)``."""
    try:
        (hlen,) = _HEADER_LEN.unpack_from(value, 0)
        if 4 + hlen > len(value):
            raise ValueError(f"header of {hlen} bytes in a value of {len(value)}")
        header = msgpack.unpackb(bytes(value[4 : 4 + hlen]))
        shape, code = tuple(header["shape"]), header["dtype"]
        if code not in _DTYPES.values():
            raise ValueError(f"dtype {code!r}")
        if len(shape) != 2 or not all(isinstance(x, int) and x >= 0 for x in shape):
            raise ValueError(f"shape {list(shape)}")
        data_bytes = len(value) - 4 - hlen
        if data_bytes != shape[0] * shape[1] * np.dtype(code).itemsize:
            raise ValueError(f"{data_bytes} data bytes for shape {list(shape)} of {code}")
        arr = np.frombuffer(value, dtype=np.dtype(code), offset=4 + hlen)
        return arr.reshape(shape).astype(np.float32)
    except (struct.error, KeyError, TypeError, ValueError, msgpack.UnpackException) as err:
        raise HeroError(f"{where}: corrupt feature record ({err})") from err


# --------------------------------------------------------------------------------------------
# metadata


@dataclass
class VideoStoreMeta:
    """``video/meta.json``.

    Attributes:
        dim: feature size ``d`` (sum of ``features`` dims).
        dtype: storage dtype (``float16`` or ``float32``); reads always return float32.
        frame_interval: seconds per frame (1.5 for TV, 2 for MSR-VTT / HowTo100M).
        features: concatenation order, ``[{"name", "dim"}, ...]``, e.g. resnet152 then slowfast_r50.
        num_videos: number of keys.
        format_version: layout version (`FORMAT_VERSION`).
        source: free-form provenance (input paths, converter).
        checksum: `RecordChecksum` of the records (``"sha256:<hex>"``), written at build time;
            None for stores built before checksums existed.
    """

    dim: int
    dtype: str
    frame_interval: float
    features: list[dict[str, Any]]
    num_videos: int
    format_version: int = FORMAT_VERSION
    source: dict[str, Any] = field(default_factory=dict)
    checksum: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = {"format": VIDEO_FORMAT, **asdict(self)}
        if data["checksum"] is None:
            del data["checksum"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> VideoStoreMeta:
        _check_format(data, VIDEO_FORMAT, where)
        try:
            return cls(dim=int(data["dim"]), dtype=str(data["dtype"]), frame_interval=float(data["frame_interval"]),
                       features=list(data.get("features") or []), num_videos=int(data["num_videos"]),
                       format_version=int(data["format_version"]), source=dict(data.get("source") or {}),
                       checksum=None if data.get("checksum") is None else str(data["checksum"]))
        except (KeyError, TypeError, ValueError) as err:
            raise HeroError(f"{where}: malformed video store metadata ({err!r})") from err


def _check_format(data: Any, expected: str, where: str) -> None:
    if not isinstance(data, dict) or data.get("format") != expected:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise HeroError(f"{where}: not a {expected} (format field is {found!r})")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        hint = "; it was written by a newer hero: upgrade" if newer else ""
        raise HeroError(f"{where}: {expected} format_version {version!r}, this hero reads {FORMAT_VERSION}{hint}")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as err:
        raise HeroError(f"{path}: unreadable JSON ({err})") from err


def write_json(path: Path, data: Any) -> None:
    """Write a store's JSON file (``indent=1``, sorted keys, UTF-8) atomically; the directory must exist."""
    write_json_atomic(path, data, indent=1, sort_keys=True, ensure_ascii=False, mkdir=False)


class RecordChecksum:
    """The checksum of a store's records, independent of the order they were written in.

    Each record gives ``sha256(len(key) as u64 little-endian ‖ key ‖ value)``; the store's
    checksum is ``"sha256:" + sha256(the record digests in byte order of their keys)``. Writers
    compute it as they put and record it in ``meta.json``; ``hero data verify`` recomputes it.
    """

    def __init__(self) -> None:
        self._digests: dict[bytes, bytes] = {}

    def add(self, key: bytes, value: bytes) -> None:
        h = hashlib.sha256(struct.pack("<Q", len(key)))
        h.update(key)
        h.update(value)
        self._digests[bytes(key)] = h.digest()

    def hexdigest(self) -> str:
        h = hashlib.sha256()
        for key in sorted(self._digests):
            h.update(self._digests[key])
        return "sha256:" + h.hexdigest()


def store_checksum(path: str | Path) -> str:
    """`RecordChecksum` of every record of the LMDB store at ``path`` (reads them all)."""
    checksum = RecordChecksum()
    for key, value in LazyLmdb(path).items():
        checksum.add(key.encode("utf-8"), value)
    return checksum.hexdigest()


# --------------------------------------------------------------------------------------------
# the LMDB file header
#
# An LMDB file starts with two meta pages (pages 0 and 1; a commit writes the older one, so the
# one with the larger transaction id is current). A reader maps the file and trusts the current
# meta page: when the file is shorter than the pages it names, the first touch of a missing
# page kills the process with SIGBUS. So the file is measured against both meta pages, read with
# `struct`, before LMDB ever maps it. Layout (lmdb 0.9 ``mdb.c``, data version 1, 64-bit):
# page header ``mp_pgno u64, mp_pad u16, mp_flags u16, mp_lower u16, mp_upper u16`` (16 bytes),
# then ``MDB_meta``: ``mm_magic u32, mm_version u32, mm_address u64, mm_mapsize u64``, two
# ``MDB_db`` (free pages, main: ``md_pad u32`` (the page size, in the free-page db),
# ``md_flags u16, md_depth u16``, branch/leaf/overflow page counts, ``md_entries``,
# ``md_root`` as u64), ``mm_last_pg u64, mm_txnid u64``.

_LMDB_MAGIC = 0xBEEFC0DE
_LMDB_DATA_VERSION = 1
_LMDB_P_META = 0x08
_LMDB_NO_PAGE = (1 << 64) - 1  # md_root of an empty tree
_LMDB_INTEGERKEY = 0x08
_LMDB_FREE_FLAGS = 0x4009  # INTEGERKEY | NOSUBDIR | FIXEDMAP
_LMDB_PAGE_HEADER = struct.Struct("<QHHHH")
_LMDB_META = struct.Struct("<IIQQ" + "IHHQQQQQ" * 2 + "QQ")
_LMDB_META_END = _LMDB_PAGE_HEADER.size + _LMDB_META.size  # 152 bytes


@dataclass(frozen=True)
class LmdbHeader:
    """The current meta page of an LMDB file (see the comment above).

    Attributes:
        page_size: bytes per page.
        last_pgno: the last page in use; the file holds pages ``0 .. last_pgno``.
        txnid: the transaction that wrote this meta page.
        map_size: the map size the writer used.
        entries: records in the main database.
    """

    page_size: int
    last_pgno: int
    txnid: int
    map_size: int
    entries: int

    @property
    def min_file_size(self) -> int:
        """Bytes the file must have to hold every page in use."""
        return (self.last_pgno + 1) * self.page_size


def _parse_meta_page(buf: bytes, pgno: int) -> tuple[LmdbHeader | None, str]:
    """Meta page ``pgno`` from its first bytes: ``(header, "")`` or ``(None, what is wrong)``."""
    if len(buf) < _LMDB_META_END:
        return None, "cut off"
    mp_pgno, _, flags, _, _ = _LMDB_PAGE_HEADER.unpack_from(buf, 0)
    (magic, version, _address, map_size, page_size, free_flags, _, _, _, _, _, free_root,
     _, main_flags, _, _, _, _, entries, main_root, last_pgno, txnid) = _LMDB_META.unpack_from(
        buf, _LMDB_PAGE_HEADER.size)
    if magic != _LMDB_MAGIC:
        return None, "no LMDB magic number"
    if version != _LMDB_DATA_VERSION:
        return None, f"LMDB data version {version}, this reader knows {_LMDB_DATA_VERSION}"
    if mp_pgno != pgno or not flags & _LMDB_P_META:
        return None, "not marked as a meta page"
    if not (512 <= page_size <= 65536 and page_size & (page_size - 1) == 0):
        return None, f"page size {page_size}"
    if last_pgno < 1 or last_pgno >= (1 << 48):
        return None, f"last page {last_pgno}"
    # the free-page tree has integer keys (plus the persistent environment flags FIXEDMAP and
    # NOSUBDIR); the main tree of every store hero reads has plain byte keys, no flags: another
    # flag there would change how keys compare, and lookups would quietly find nothing
    if not free_flags & _LMDB_INTEGERKEY or free_flags & ~_LMDB_FREE_FLAGS:
        return None, f"free-page tree flags {free_flags:#x}"
    if main_flags:
        return None, f"main tree flags {main_flags:#x} (hero's stores use none)"
    for name, root in (("free-page", free_root), ("main", main_root)):
        if root != _LMDB_NO_PAGE and not 2 <= root <= last_pgno:
            return None, f"{name} tree root at page {root}, outside pages 2..{last_pgno}"
    header = LmdbHeader(page_size=page_size, last_pgno=last_pgno, txnid=txnid, map_size=map_size, entries=entries)
    if map_size < header.min_file_size:
        return None, f"map size {map_size} smaller than the {header.min_file_size} bytes in use"
    return header, ""


def check_lmdb_file(data_file: str | Path) -> LmdbHeader:
    """Check an LMDB data file (``data.mdb``) against its meta pages before anything maps it.

    Returns the current meta page. Raises `HeroError` naming the file when it is missing, empty,
    not LMDB at all, shorter than the pages its header says are in use (truncated: mapping it
    would end in SIGBUS), or when a meta page is damaged (LMDB needs both).
    """
    data_file = Path(data_file)
    try:
        st = os.stat(data_file)
    except FileNotFoundError:
        raise HeroError(f"{data_file}: missing (the LMDB data file of the store)") from None
    except OSError as err:
        raise HeroError(f"{data_file}: cannot read ({err.strerror or err})") from err
    if not stat.S_ISREG(st.st_mode):
        raise HeroError(f"{data_file}: not a regular file, so not an LMDB store")
    size = st.st_size
    if size == 0:
        raise HeroError(f"{data_file}: empty (0 bytes), not an LMDB store: rebuild it")
    try:
        with open(data_file, "rb") as f:
            first = f.read(_LMDB_META_END)
            meta0, why0 = _parse_meta_page(first, 0)
            page_size = meta0.page_size if meta0 else 4096
            if meta0 is None and len(first) >= 44:
                claimed = struct.unpack_from("<I", first, 40)[0]
                if 512 <= claimed <= 65536 and claimed & (claimed - 1) == 0:
                    page_size = claimed  # page 0 is damaged elsewhere: its page size still finds page 1
            f.seek(page_size)
            second = f.read(_LMDB_META_END)
    except OSError as err:
        raise HeroError(f"{data_file}: cannot read ({err.strerror or err})") from err
    meta1, why1 = _parse_meta_page(second, 1)
    magic = struct.pack("<I", _LMDB_MAGIC)
    has_magic = first[16:20] == magic or second[16:20] == magic
    if not has_magic:
        if size < _LMDB_META_END:
            raise HeroError(f"{data_file}: not an LMDB file ({size} bytes, shorter than an LMDB header)")
        raise HeroError(f"{data_file}: not an LMDB file (no LMDB magic number in its header)")
    valid = [m for m in (meta0, meta1) if m is not None]
    # LMDB takes the meta page with the larger transaction id, page 0 on a tie
    current = max(valid, key=lambda m: m.txnid) if valid else None
    need = max(current.min_file_size, 2 * current.page_size) if current else max(2 * page_size, _LMDB_META_END)
    if size < need:
        raise HeroError(f"{data_file}: truncated: {size} bytes, the LMDB header says at least {need}")
    if meta0 is None or meta1 is None:
        damaged = "; ".join(f"meta page {i}: {why}" for i, (m, why) in enumerate(((meta0, why0), (meta1, why1)))
                            if m is None)
        raise HeroError(f"{data_file}: corrupt LMDB header ({damaged}): rebuild the store")
    if meta0.page_size != meta1.page_size:
        raise HeroError(f"{data_file}: corrupt LMDB header (the meta pages disagree on the page size: "
                        f"{meta0.page_size} and {meta1.page_size}): rebuild the store")
    return current


# --------------------------------------------------------------------------------------------
# readers


_OPEN: dict[tuple[int, int], tuple[int, lmdb.Environment]] = {}
"""Read-only environments of this process by data-file identity, with the pid that opened them.

py-lmdb refuses to open one environment twice in a process, so every reader of a store shares
one handle. A handle inherited through ``fork`` is closed in the child and opened afresh."""


def open_readonly(path: str | Path) -> lmdb.Environment:
    """The shared read-only, lock-free handle of the LMDB environment at ``path`` (this process).

    The data file is checked against its header first (`check_lmdb_file`): a truncated or
    damaged store is a `HeroError` naming the file, never a SIGBUS on first read.
    """
    path = Path(path)
    data_file = path / "data.mdb"
    try:
        st = os.stat(data_file)
    except OSError as err:
        raise HeroError(f"{path}: cannot open LMDB store ({err})") from err
    key = (st.st_dev, st.st_ino)
    pid = os.getpid()
    cached = _OPEN.get(key)
    if cached is not None:
        if cached[0] == pid:
            return cached[1]
        cached[1].close()  # inherited through fork: its mapping is ours to drop, not the parent's
        del _OPEN[key]
    check_lmdb_file(data_file)
    try:
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False,
                        max_readers=4096, subdir=True)
    except lmdb.Error as err:
        raise HeroError(f"{path}: cannot open LMDB store ({err})") from err
    # LMDB's own reading of the header, in case it picked another meta page than we did
    need = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    size = os.stat(data_file).st_size
    if size < need:
        env.close()
        raise HeroError(f"{data_file}: truncated: {size} bytes, the LMDB header says at least {need}")
    _OPEN[key] = (pid, env)
    return env


class LazyLmdb:
    """A read-only LMDB environment opened on first use in each process (fork-safe)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._env: lmdb.Environment | None = None
        self._pid = -1

    def env(self) -> lmdb.Environment:
        if self._env is None or self._pid != os.getpid():
            self._env = open_readonly(self.path)
            self._pid = os.getpid()
        return self._env

    def get(self, key: str) -> bytes | None:
        env = self.env()
        try:
            with env.begin(buffers=False) as txn:
                return txn.get(key.encode("utf-8"))
        except lmdb.Error as err:
            raise HeroError(f"{self.path}:{key}: corrupt LMDB store ({err})") from err

    def keys(self) -> list[str]:
        env = self.env()
        try:
            with env.begin() as txn:
                return [k.decode("utf-8") for k in txn.cursor().iternext(keys=True, values=False)]
        except lmdb.Error as err:
            raise HeroError(f"{self.path}: corrupt LMDB store ({err})") from err
        except UnicodeDecodeError as err:
            raise HeroError(f"{self.path}: corrupt LMDB store (a key is not UTF-8: {err})") from err

    def items(self) -> Iterator[tuple[str, bytes]]:
        """Every ``(key, value)`` in key order (one read transaction)."""
        env = self.env()
        key = None
        try:
            with env.begin(buffers=False) as txn:
                for k, v in txn.cursor():
                    key = k.decode("utf-8")
                    yield key, v
        except lmdb.Error as err:
            after = f" after key {key!r}" if key is not None else ""
            raise HeroError(f"{self.path}: corrupt LMDB store{after} ({err})") from err
        except UnicodeDecodeError as err:
            raise HeroError(f"{self.path}: corrupt LMDB store (a key after {key!r} is not UTF-8)") from err

    def entries(self) -> int:
        """Records in the store, as its header counts them."""
        return int(self.env().stat()["entries"])

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])


def _check_keys(path: Path, db: LazyLmdb, *claims: tuple[str, int | Any]) -> list[str]:
    """The keys of the LMDB at ``path`` (a walk over its tree, no values read), checked against the
    record count of its header and against what side files say: a count, or the keys themselves.

    A damaged header can point at the wrong tree, whose lookups then find nothing; the walk
    catches that at open instead of as a missing video in the middle of a run.
    """
    keys = db.keys()
    entries = db.entries()
    if entries != len(keys):
        raise HeroError(f"{path}: corrupt LMDB store (its header counts {entries} records, its tree holds "
                        f"{len(keys)}): rebuild it")
    wrong = [f"{what} {len(n) if isinstance(n, (dict, list, set)) else n}" for what, n in claims
             if (len(n) if isinstance(n, (dict, list, set)) else n) != len(keys)]
    if wrong:
        raise HeroError(f"{path}: the LMDB holds {len(keys)} videos, {' and '.join(wrong)} "
                        "(the store is damaged or incomplete: rebuild it)")
    have = set(keys)
    for what, listed in claims:
        if isinstance(listed, (dict, list, set)):
            missing = [k for k in listed if k not in have]
            if missing:
                raise HeroError(f"{path}: video {missing[0]!r} ({what.split()[0]}) is not in the LMDB "
                                f"({len(missing)} missing; the store is damaged: rebuild it)")
    return keys


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise HeroError(f"{path}: no {what} here (directory missing)")
    if not (path / "data.mdb").is_file():
        raise HeroError(f"{path}: no {what} here (data.mdb missing)")


class VideoFeatureStore:
    """Frame features per video (read-only, lazy, fork-safe).

    ``get(vid)`` returns a float32 ``(n, d)`` array (a copy; stored as ``meta.dtype``).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        _require_dir(self.path, "video feature store")
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            hint = (" (it looks like a reference video_db: convert it with `hero data from-reference`)"
                    if (self.path.parent / "id2nframe.json").is_file() else "")
            raise HeroError(f"{self.path}: meta.json missing, not a hero video store{hint}")
        self.meta = VideoStoreMeta.from_json(read_json(meta_path), str(meta_path))
        nframes_path = self.path / "nframes.json"
        if not nframes_path.is_file():
            raise HeroError(f"{nframes_path}: missing (the frame count of every video)")
        nframes = read_json(nframes_path)
        if not isinstance(nframes, dict):
            raise HeroError(f"{nframes_path}: expected an object {{vid: frames}}")
        try:
            self._nframes: dict[str, int] = {str(k): int(v) for k, v in nframes.items()}
        except (TypeError, ValueError) as err:
            raise HeroError(f"{nframes_path}: frame counts must be integers ({err})") from err
        self._db = LazyLmdb(self.path)
        # the cheap checks: the header against the file size (at open), the keys against the side files
        _check_keys(self.path, self._db, ("meta.json says", self.meta.num_videos),
                    ("nframes.json lists", self._nframes))

    def get(self, vid: str) -> np.ndarray:
        """Features of ``vid``: float32 ``(n, d)``."""
        value = self._db.get(vid)
        if value is None:
            raise KeyError(f"{self.path}: no video {vid!r}")
        where = f"{self.path}:{vid}"
        arr = decode_array(value, where)
        want = (self._nframes.get(vid), self.meta.dim)
        if arr.shape != want:
            raise HeroError(f"{where}: corrupt feature record (shape {list(arr.shape)}; nframes.json and "
                            f"meta.json say {list(want)})")
        return arr

    def num_frames(self, vid: str) -> int:
        try:
            return self._nframes[vid]
        except KeyError:
            raise KeyError(f"{self.path}: no video {vid!r}") from None

    def keys(self) -> list[str]:
        return list(self._nframes)

    def __contains__(self, vid: object) -> bool:
        return vid in self._nframes

    def __len__(self) -> int:
        return len(self._nframes)

    def __iter__(self) -> Iterator[str]:
        return iter(self._nframes)

    def __repr__(self) -> str:
        return f"VideoFeatureStore({str(self.path)!r}, {len(self)} videos, dim {self.meta.dim})"


SUBTITLE_RECORD_KEYS = ("vid", "nframes", "subs", "input_ids", "unique_sub2frames", "unmatched_frames", "pseudo")


def decode_subtitle_record(value: bytes, where: str) -> dict[str, Any]:
    """A subtitle-store value → its record dict (`SUBTITLE_RECORD_KEYS`); `HeroError` naming ``where``."""
    try:
        record = msgpack.unpackb(value, raw=False, strict_map_key=False)
    except (TypeError, ValueError, msgpack.UnpackException) as err:
        raise HeroError(f"{where}: corrupt subtitle record ({err})") from err
    if not isinstance(record, dict):
        raise HeroError(f"{where}: corrupt subtitle record (a {type(record).__name__}, not a record)")
    missing = [k for k in SUBTITLE_RECORD_KEYS if k not in record]
    if missing:
        raise HeroError(f"{where}: corrupt subtitle record (lacks {missing})")
    return record


class SubtitleStore:
    """Aligned, tokenized subtitles per video (read-only, lazy, fork-safe).

    ``get(vid)`` returns the record dict (`SUBTITLE_RECORD_KEYS`); ``unique_sub2frames`` is a
    list of ``[sub_idx, [frame, ...]]`` covering every subtitle, as the reference stores it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        _require_dir(self.path, "subtitle store")
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            raise HeroError(f"{self.path}: meta.json missing, not a hero subtitle store")
        self.meta: dict[str, Any] = read_json(meta_path)
        _check_format(self.meta, SUBTITLE_FORMAT, str(meta_path))
        self._db = LazyLmdb(self.path)
        claims = [("meta.json says", self.meta["num_videos"])] if "num_videos" in self.meta else []
        self._keys: list[str] | None = _check_keys(self.path, self._db, *claims)

    def get(self, vid: str) -> dict[str, Any]:
        value = self._db.get(vid)
        if value is None:
            raise KeyError(f"{self.path}: no subtitles for video {vid!r}")
        return decode_subtitle_record(value, f"{self.path}:{vid}")

    def keys(self) -> list[str]:
        if self._keys is None:
            self._keys = self._db.keys()
        return list(self._keys)

    def __contains__(self, vid: object) -> bool:
        return isinstance(vid, str) and self._db.get(vid) is not None

    def __len__(self) -> int:
        return int(self.meta.get("num_videos", len(self.keys())))

    def __repr__(self) -> str:
        return f"SubtitleStore({str(self.path)!r}, {len(self)} videos)"


# --------------------------------------------------------------------------------------------
# writers


def temp_sibling(path: Path, tag: str = "tmp") -> Path:
    return path.with_name(f".{path.name}.{tag}{os.getpid()}")


def replace_dir(tmp: Path, final: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` directory to ``final`` (replacing it when ``overwrite``).

    Only an empty directory or an earlier hero output of the same kind as ``tmp`` is replaced
    (`hero.io.check_replaceable`): ``--overwrite`` never deletes a directory of other files.
    """
    if final.exists() and not overwrite:
        raise HeroError(f"{final}: already exists (pass overwrite=True / --overwrite to replace it)")
    publish_dir(tmp, final, how="--overwrite replaces only an earlier output of the same kind; "
                "move it away or choose another output path")


class LmdbWriter:
    """An LMDB written in a temporary sibling dir, renamed into place by `finish`.

    Puts are batched in one transaction per ~64 MiB; when a batch does not fit the map, the map
    is doubled and the batch is written again.
    """

    def __init__(self, path: str | Path, overwrite: bool = False, map_size: int = _INITIAL_MAP_SIZE,
                 commit_every: int | None = None) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        if self.path.exists() and not overwrite:
            raise HeroError(f"{self.path}: already exists (pass overwrite=True / --overwrite to replace it)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temp_sibling(self.path)
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir()
        self.map_size = map_size
        # meminit: zero fresh pages, so that the same input gives byte-identical files
        self.env = lmdb.open(str(self.tmp), map_size=map_size, subdir=True, lock=True, meminit=True)
        self.commit_every = commit_every
        self._pending: list[tuple[bytes, bytes]] = []
        self._pending_bytes = 0
        self._seen: set[bytes] = set()
        self.checksum = RecordChecksum()

    def put(self, key: str, value: bytes) -> None:
        k = key.encode("utf-8")
        if not k:
            raise HeroError(f"{self.path}: empty key")
        if len(k) > self.env.max_key_size():
            raise HeroError(f"{self.path}: key {key!r} longer than LMDB's {self.env.max_key_size()} bytes")
        if k in self._seen:
            raise HeroError(f"{self.path}: key {key!r} written twice")
        self._seen.add(k)
        self.checksum.add(k, value)
        self._pending.append((k, value))
        self._pending_bytes += len(value)
        if self._pending_bytes >= _BATCH_BYTES or (self.commit_every and len(self._pending) >= self.commit_every):
            self.flush()

    def flush(self) -> None:
        while self._pending:
            try:
                with writing(self.path), self.env.begin(write=True) as txn:
                    for k, v in self._pending:
                        txn.put(k, v)
                self._pending, self._pending_bytes = [], 0
            except lmdb.MapFullError:
                self.map_size *= 2
                self.env.set_mapsize(self.map_size)
            except lmdb.Error as err:
                # LMDB reports a write that ran out of space as a short write (EIO): say what it was
                if shutil.disk_usage(self.tmp).free < self._pending_bytes + (1 << 20):
                    raise disk_full(self.path) from err
                raise

    def finish(self, side_files: dict[str, Any]) -> None:
        """Commit, write the JSON side files, close and rename into place."""
        self.flush()
        with writing(self.path):
            self.env.sync(True)
        self.env.close()
        lock = self.tmp / "lock.mdb"
        if lock.exists():
            lock.unlink()  # readers open with lock=False; a stale lock file is just noise
        for name, data in side_files.items():
            write_json(self.tmp / name, data)
        honour_umask(self.tmp, recursive=True)  # py-lmdb creates data.mdb with mode 0o755 (& ~umask)
        replace_dir(self.tmp, self.path, self.overwrite)

    def abort(self) -> None:
        try:
            self.env.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def num_keys(self) -> int:
        return len(self._seen)


def _feature_specs(features: Any) -> list[dict[str, Any]]:
    specs = []
    for f in features:
        if isinstance(f, dict):
            name, dim = f["name"], f["dim"]
        else:
            name, dim = f
        if int(dim) < 1:
            raise HeroError(f"feature set {name!r}: dimension must be >= 1, got {dim}")
        specs.append({"name": str(name), "dim": int(dim)})
    if not specs:
        raise HeroError("a video store needs at least one feature set (name, dim)")
    return specs


class VideoStoreWriter:
    """Write a `VideoFeatureStore`.

    Example::

        with VideoStoreWriter(out / "video", frame_interval=1.5,
                              features=[("resnet152", 2048), ("slowfast_r50", 2304)]) as w:
            w.add("vid1", feats)  # (n, 4352)

    Args:
        features: the concatenated feature sets in order, ``(name, dim)`` or ``{"name", "dim"}``.
        dtype: storage dtype, ``float16`` (default, like the reference features) or ``float32``.
        source: provenance recorded in ``meta.json``.
    """

    def __init__(self, path: str | Path, *, frame_interval: float, features: Any, dtype: str = "float16",
                 source: dict[str, Any] | None = None, overwrite: bool = False) -> None:
        if dtype not in _DTYPES:
            raise HeroError(f"unsupported store dtype {dtype!r}; choose from {sorted(_DTYPES)}")
        if not frame_interval > 0:
            raise HeroError(f"frame_interval must be > 0 seconds, got {frame_interval}")
        self.path = Path(path)
        self.features = _feature_specs(features)
        self.dim = sum(f["dim"] for f in self.features)
        self.dtype, self.frame_interval, self.source = dtype, float(frame_interval), dict(source or {})
        self.overwrite = overwrite
        self.nframes: dict[str, int] = {}
        self._writer: LmdbWriter | None = None

    def __enter__(self) -> VideoStoreWriter:
        self._writer = LmdbWriter(self.path, self.overwrite)
        return self

    def add(self, vid: str, features: np.ndarray) -> None:
        """Store ``features`` ``(n, d)`` of ``vid``; raises `HeroError` on a bad array."""
        assert self._writer is not None, "use VideoStoreWriter as a context manager"
        where = f"{self.path}:{vid}"
        arr = np.asarray(features)
        if arr.ndim != 2:
            raise HeroError(f"{where}: features must be 2-D (frames, dim), got shape {arr.shape}")
        if arr.shape[1] != self.dim:
            raise HeroError(f"{where}: feature dimension {arr.shape[1]}, the store holds {self.dim}")
        if arr.shape[0] < 1:
            raise HeroError(f"{where}: zero frames")
        with np.errstate(over="ignore"):
            stored = np.ascontiguousarray(arr, dtype=np.dtype(_DTYPES[self.dtype]))
        if not np.isfinite(stored).all():
            raise HeroError(f"{where}: non-finite features (NaN/inf, or values beyond {self.dtype} range)")
        self._writer.put(vid, encode_array(stored, self.dtype))
        self.nframes[vid] = int(arr.shape[0])

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._writer is not None
        if exc_type is not None:
            self._writer.abort()
            return
        meta = VideoStoreMeta(dim=self.dim, dtype=self.dtype, frame_interval=self.frame_interval,
                              features=self.features, num_videos=len(self.nframes), source=self.source,
                              checksum=self._writer.checksum.hexdigest())
        try:
            self._writer.finish({"meta.json": meta.to_json(), "nframes.json": self.nframes})
        except BaseException:
            self._writer.abort()  # closes the LMDB too: its open file pins the temporary's space
            raise


def validate_subtitle_record(record: dict[str, Any], where: str) -> None:
    """Check the fields a subtitle-store record must have (see `SUBTITLE_RECORD_KEYS`)."""
    missing = [k for k in SUBTITLE_RECORD_KEYS if k not in record]
    if missing:
        raise HeroError(f"{where}: subtitle record lacks {missing}")
    n = int(record["nframes"])
    if len(record["input_ids"]) != len(record["subs"]):
        raise HeroError(f"{where}: {len(record['input_ids'])} token lists for {len(record['subs'])} subtitles")
    for entry in record["unique_sub2frames"]:
        sub_idx, frames = entry
        if not 0 <= int(sub_idx) < len(record["subs"]):
            raise HeroError(f"{where}: unique_sub2frames names subtitle {sub_idx} of {len(record['subs'])}")
        if any(not 0 <= int(f) < n for f in frames):
            raise HeroError(f"{where}: subtitle {sub_idx} owns frames outside [0, {n})")


class SubtitleStoreWriter:
    """Write a `SubtitleStore` (records as produced by `hero.data.build`)."""

    def __init__(self, path: str | Path, *, frame_interval: float, tokenizer: dict[str, Any] | None = None,
                 source: dict[str, Any] | None = None, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.frame_interval = float(frame_interval)
        self.tokenizer, self.source, self.overwrite = tokenizer, dict(source or {}), overwrite
        self.num_pseudo = 0
        self._writer: LmdbWriter | None = None

    def __enter__(self) -> SubtitleStoreWriter:
        self._writer = LmdbWriter(self.path, self.overwrite)
        return self

    def add(self, vid: str, record: dict[str, Any]) -> None:
        assert self._writer is not None, "use SubtitleStoreWriter as a context manager"
        validate_subtitle_record(record, f"{self.path}:{vid}")
        self.num_pseudo += bool(record["pseudo"])
        self._writer.put(vid, msgpack.packb(record, use_bin_type=True))

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._writer is not None
        if exc_type is not None:
            self._writer.abort()
            return
        meta = {"format": SUBTITLE_FORMAT, "format_version": FORMAT_VERSION, "frame_interval": self.frame_interval,
                "num_videos": self._writer.num_keys, "num_pseudo": self.num_pseudo, "tokenizer": self.tokenizer,
                "source": self.source, "checksum": self._writer.checksum.hexdigest()}
        try:
            self._writer.finish({"meta.json": meta})
        except BaseException:
            self._writer.abort()  # closes the LMDB too: its open file pins the temporary's space
            raise


__all__ = [
    "FORMAT_VERSION",
    "LazyLmdb",
    "LmdbHeader",
    "RecordChecksum",
    "check_lmdb_file",
    "decode_subtitle_record",
    "store_checksum",
    "open_readonly",
    "LmdbWriter",
    "SubtitleStore",
    "SubtitleStoreWriter",
    "VideoFeatureStore",
    "VideoStoreMeta",
    "VideoStoreWriter",
    "decode_array",
    "encode_array",
    "replace_dir",
    "temp_sibling",
    "validate_subtitle_record",
    "write_json",
]
