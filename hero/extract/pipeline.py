"""``hero extract``: features of every video in a folder or list, sharded, resumable, reported.

Output (``out_dir``), the reference extractor's layout (notes §3.1):

```
<out>/resnet_features/<vid>.npz      {"features": (n, 2048) float16}, L2-normalised
<out>/slowfast_features/<vid>.npz    {"features": (n, 2304) float16}
<out>/hf_<model>_features/<vid>.npz  (hf: backbones)
<out>/extract.json                   settings: backbones, weights SHA-256, interval, preprocessing
<out>/problems.json                  the videos that failed, by name (hero.data.problems)
```

Every backbone of a video has the same ``n`` (`hero.extract.video.num_features`), so the files
concatenate frame by frame, ResNet first, into the 4352-d HERO input (``hero data build`` reads
this folder; ``store=`` also packs it into our video store, `hero.data.stores.VideoStoreWriter`).

* **Sharding**: under ``torchrun`` each rank takes every ``WORLD_SIZE``-th video of the sorted
  list (a gloo process group is started for the final barrier and the problem report).
* **Resume**: a video whose files all exist is skipped; files are written to a temporary
  sibling and renamed, so a killed run leaves no partial file. ``extract.json`` must match the
  current settings (same backbones, weights hashes, interval, preprocessing), otherwise the run
  stops: features of different settings are never mixed silently.
* **Failures**: an unreadable file is counted and named (`Problems`); ``strict`` stops at the first.
* **Speed**: decoding runs in a background thread, overlapped with the networks; a progress bar
  shows videos/s and features/s.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hero.data.problems import Problems
from hero.errors import HeroError
from hero.extract.backbones import Backbone, build_backbone
from hero.extract.presets import DEFAULT_PRESET, get_preset
from hero.extract.video import VideoError, VideoInfo, decode_samples, list_videos, probe_video, reference_frame_rate
from hero.io import read_json, write_file_atomic, write_json_atomic

META_FORMAT = "hero-extract"
META_VERSION = 1


@dataclass
class ExtractConfig:
    """Settings of one extraction run (the CLI flags of ``hero extract``)."""

    source: str
    out_dir: str
    backbones: Sequence[str] = ("resnet152", "slowfast_r50")
    weights: dict[str, str] = field(default_factory=dict)
    random_init: bool = False
    seed: int = 0
    interval: float = 1.5
    batch_size: int = 16
    device: str | None = None
    strict: bool = False
    size: int = 224
    width: int = 64
    resnet_crop: str = "none"
    store: str | None = None
    limit: int | None = None
    progress: bool = True
    allow_pickle: bool = False
    preset: str = DEFAULT_PRESET


@dataclass
class ExtractResult:
    """What a run did (this rank's counts; ``problems`` merged over ranks on rank 0)."""

    extracted: int = 0
    resumed: int = 0
    failed: int = 0
    features: int = 0
    seconds: float = 0.0
    problems: Problems = field(default_factory=Problems)
    infos: list[VideoInfo] = field(default_factory=list)


def _dist() -> tuple[int, int, bool]:
    """``(rank, world_size, started_here)``: joins the torchrun process group when there is one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    import torch.distributed as dist

    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size(), True


def _device(name: str | None) -> torch.device:
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def settings_of(backbones: Sequence[Backbone], interval: float, preset: str = DEFAULT_PRESET) -> dict[str, Any]:
    """The part of the metadata that must match for features to be mixed."""
    return {"interval": float(interval), "preset": preset, "features": [b.describe() for b in backbones]}


def check_or_write_meta(out: Path, settings: dict[str, Any], write: bool) -> None:
    """Refuse an ``out`` made with other settings; write ``extract.json`` when missing (``write``)."""
    path = out / "extract.json"
    if path.exists():
        old = read_json(path, dict)
        if old.get("format") != META_FORMAT:
            raise HeroError(f"{path}: not a hero extract metadata file")
        old_settings = old.get("settings")
        if isinstance(old_settings, dict) and "preset" not in old_settings:
            old_settings = {**old_settings, "preset": DEFAULT_PRESET}  # written before presets existed
        if old_settings != json.loads(json.dumps(settings)):
            diff = _first_difference(old_settings, json.loads(json.dumps(settings)))
            if isinstance(old_settings, dict) and old_settings.get("preset") != settings.get("preset"):
                diff = _first_difference(old_settings.get("preset"), settings.get("preset"), "settings.preset")
            raise HeroError(f"{out} holds features extracted with other settings ({diff}); "
                            "use another --out directory to keep them apart")
        return
    if write:
        import av

        from hero import __version__

        meta = {"format": META_FORMAT, "format_version": META_VERSION, "settings": settings,
                "layout": "reference per-video npz: <feature dir>/<vid>.npz {'features': (n, d) float16}",
                "frame_rule": "n = max(1, floor(duration / interval + 1/2))",
                "preset_rules": get_preset(settings.get("preset", DEFAULT_PRESET)).to_dict(),
                "created_by": {"hero": __version__, "torch": torch.__version__, "av": av.__version__}}
        write_json_atomic(path, meta, indent=2, mkdir=False)


def _first_difference(a: Any, b: Any, where: str = "settings") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{where}.{k}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{where}[{i}]")
    return f"{where}: was {a!r}, now {b!r}"


def save_npz(path: Path, features: np.ndarray) -> None:
    """``np.savez(path, features=float16)`` (the reference layout), written atomically (a full disk:
    one `hero.io.DiskFullError` naming ``path``, and no partial file)."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a name
            np.savez(f, features=features.astype(np.float16))

    write_file_atomic(path, write)


def output_paths(out: Path, backbones: Sequence[Backbone], vid: str) -> list[Path]:
    return [out / b.output_dir / f"{vid}.npz" for b in backbones]


_DONE = object()


def _decode_worker(videos: Sequence[tuple[str, Path]], backbones: Sequence[Backbone], interval: float,
                   q: queue.Queue, stop: threading.Event) -> None:
    """Producer thread: per video ``("start", vid, path)``, its items, then ``("end", info | error)``."""
    for vid, path in videos:
        if stop.is_set():
            return
        info = VideoInfo(str(path))
        q.put(("start", vid, path))
        try:
            fps, duration = probe_video(path)
            samplers = [b.make_sampler(interval, fps, duration) for b in backbones]
            preset = backbones[0].preset
            count_rate = reference_frame_rate(duration, interval) if preset.short_video_rate else None
            for item in decode_samples(path, samplers, interval, info, count_rate):
                if stop.is_set():
                    return
                q.put(("item", item))
            q.put(("end", info))
        except VideoError as err:
            q.put(("end", err))
        except Exception as err:  # noqa: BLE001 - an unexpected decoder failure is still one video's failure
            q.put(("end", VideoError(f"{path}: {type(err).__name__}: {err}")))
    q.put(_DONE)


def _extract_stream(videos: Sequence[tuple[str, Path]], backbones: Sequence[Backbone], interval: float,
                    batch_size: int) -> Iterator[tuple[str, Path, VideoInfo | VideoError, list[np.ndarray] | None]]:
    """Yield ``(vid, path, info or error, per-backbone features (n, d) or None)`` for each video."""
    q: queue.Queue = queue.Queue(maxsize=4 * batch_size)
    stop = threading.Event()
    worker = threading.Thread(target=_decode_worker, args=(videos, backbones, interval, q, stop), daemon=True)
    worker.start()
    try:
        vid = path = None
        pending: list[list[tuple[int, np.ndarray]]] = []
        done: list[list[tuple[int, np.ndarray]]] = []

        def flush(i: int) -> None:
            if pending[i]:
                feats = backbones[i].embed([a for _, a in pending[i]]).numpy()
                done[i].extend((k, f) for (k, _), f in zip(pending[i], feats))
                pending[i] = []

        while True:
            msg = q.get()
            if msg is _DONE:
                return
            if msg[0] == "start":
                _, vid, path = msg
                pending = [[] for _ in backbones]
                done = [[] for _ in backbones]
            elif msg[0] == "item":
                i, k, array = msg[1]
                pending[i].append((k, array))
                if len(pending[i]) >= batch_size:
                    flush(i)
            else:
                outcome = msg[1]
                if isinstance(outcome, VideoError):
                    yield vid, path, outcome, None
                    continue
                for i in range(len(backbones)):
                    flush(i)
                per_backbone = []
                for i, b in enumerate(backbones):
                    rows = sorted(done[i], key=lambda x: x[0])
                    ks = [k for k, _ in rows]
                    if ks != list(range(outcome.num_features)):
                        raise AssertionError(f"{path}: {b.name} items {ks[:5]}…, expected {outcome.num_features}")
                    per_backbone.append(np.stack([f for _, f in rows]).astype(np.float32))
                yield vid, path, outcome, per_backbone
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.1)


def run_extract(cfg: ExtractConfig) -> ExtractResult:
    """Extract features of ``cfg.source`` into ``cfg.out_dir`` (see the module docstring)."""
    if not cfg.interval > 0:
        raise HeroError(f"--interval must be > 0 seconds, got {cfg.interval}")
    if not cfg.backbones:
        raise HeroError("no backbone given (--backbones resnet152,slowfast_r50)")
    unknown_weights = set(cfg.weights) - set(cfg.backbones)
    if unknown_weights:
        raise HeroError(f"--weights names {sorted(unknown_weights)}, which are not among --backbones "
                        f"{list(cfg.backbones)}")
    preset = get_preset(cfg.preset)
    videos = list_videos(cfg.source)
    if cfg.limit is not None:
        videos = videos[: cfg.limit]
    rank, world, started = _dist()
    device = _device(cfg.device)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    backbones = [build_backbone(spec, weights=cfg.weights.get(spec), random_init=cfg.random_init, seed=cfg.seed,
                                device=device, size=cfg.size, width=cfg.width, resnet_crop=cfg.resnet_crop,
                                allow_pickle=cfg.allow_pickle, preset=preset) for spec in cfg.backbones]
    names = [b.name for b in backbones]
    if len(set(names)) != len(names):
        raise HeroError(f"a backbone is named twice: {names}")
    settings = settings_of(backbones, cfg.interval, preset.name)
    check_or_write_meta(out, settings, write=rank == 0)

    result = ExtractResult(problems=Problems(strict=cfg.strict))
    mine = videos[rank::world]
    todo = []
    for vid, path in mine:
        if all(p.exists() for p in output_paths(out, backbones, vid)):
            result.resumed += 1
        else:
            todo.append((vid, path))
    from tqdm import tqdm

    bar = tqdm(total=len(mine), initial=result.resumed, unit="video", dynamic_ncols=True,
               disable=not cfg.progress or rank != 0 or not sys.stderr.isatty(), desc=f"extract [{','.join(names)}]")
    start = time.perf_counter()
    try:
        for vid, path, outcome, feats in _extract_stream(todo, backbones, cfg.interval, cfg.batch_size):
            if isinstance(outcome, VideoError):
                result.failed += 1
                result.problems.skip("unreadable video", str(path), str(outcome).removeprefix(f"{path}: "))
            else:
                for b, f, p in zip(backbones, feats, output_paths(out, backbones, vid)):
                    if not np.isfinite(f).all():
                        raise HeroError(f"{path}: {b.name} produced non-finite features (check the weights)")
                    save_npz(p, f)
                result.extracted += 1
                result.features += outcome.num_features
                result.infos.append(outcome)
            bar.update(1)
            elapsed = max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(videos_s=f"{(result.extracted + result.failed) / elapsed:.2f}",
                            feats_s=f"{result.features / elapsed:.1f}", failed=result.failed)
    finally:
        bar.close()
    result.seconds = time.perf_counter() - start
    merged = _merge_problems(result.problems, world, cfg.strict)
    if rank == 0:
        merged.write(out / "problems.json")
        result.problems = merged
        if cfg.store:
            pack_store(out, backbones, [vid for vid, _ in videos], cfg.store, cfg.interval, settings)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        if started:
            dist.destroy_process_group()
    return result


def _merge_problems(problems: Problems, world: int, strict: bool) -> Problems:
    if world <= 1:
        return problems
    import torch.distributed as dist

    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, problems.to_dict())
    merged = Problems(strict=strict)
    for d in gathered:
        for kind, n in d["skipped"].items():
            merged.skipped[kind] += n
        for kind, n in d["adjusted"].items():
            merged.noted[kind] += n
        for kind, examples in d["examples"].items():
            for ex in examples:
                merged._example(kind, ex)
    return merged


def pack_store(out: Path, backbones: Sequence[Backbone], vids: Sequence[str], store: str | Path,
               interval: float, settings: dict[str, Any]) -> int:
    """Concatenate the per-video files (backbone order) into a `VideoStoreWriter` store; returns #videos.

    Videos without all their files (failed ones) are left out; they are already in ``problems.json``.
    """
    from hero.data.stores import VideoStoreWriter

    count = 0
    with VideoStoreWriter(store, frame_interval=interval, features=[(b.name, b.dim) for b in backbones],
                          source={"extractor": "hero extract", "features_dir": str(out.resolve()),
                                  "settings": settings}) as writer:
        for vid in vids:
            paths = output_paths(out, backbones, vid)
            if not all(p.exists() for p in paths):
                continue
            parts = [np.load(p)["features"] for p in paths]
            n = min(len(a) for a in parts)
            writer.add(vid, np.concatenate([a[:n] for a in parts], axis=1))
            count += 1
    return count
