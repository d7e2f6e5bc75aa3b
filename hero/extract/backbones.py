"""Feature backbones for ``hero extract``: the network, its sampling and preprocessing, its weights.

A `Backbone` knows how to sample a video (`make_sampler`, see `hero.extract.video`) and turns a
batch of sampled items into features (`embed`). Three kinds:

* ``resnet152``: `hero.extract.resnet` (torchvision keys), one frame per interval, short side 224
  and no crop as the reference extractor (``--resnet-crop center``: torchvision's ImageNet
  evaluation transform instead, short side 256 then a 224 centre crop), L2-normalised 2048-d.
* ``slowfast_r50``: `hero.extract.slowfast` (pytorchvideo keys), the reference clip sampling,
  short side 224 with a 224 centre crop, 2304-d, not normalised (as the reference).
* ``hf:NAME_OR_PATH``: any Hugging Face vision model loadable with ``AutoModel`` plus its image
  processor; one frame per interval (or ``config.num_frames`` frames for a video model); the
  feature is ``pooler_output`` when the model has one, else the mean of ``last_hidden_state``.

Weights come from a file the user names (`load_weights`: a torch pickle with tensors only, or
safetensors; a checkpoint dict holding ``"model_state"``/``"state_dict"`` is unwrapped; for
SlowFast also PySlowFast's Caffe2 ``.pkl``, `hero.extract.caffe2`); keys and
shapes are checked against the network before loading and every difference is named. The file's
SHA-256 goes into the metadata so features of different weights are never mixed silently.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hero.errors import HeroError
from hero.extract.presets import HERO, Preset
from hero.extract.video import (
    FrameSampler,
    ReferenceClipSampler,
    Resize,
    Sampler,
    UniformClipSampler,
    reference_frame_rate,
)

BUILTIN = ("resnet152", "slowfast_r50")
OUTPUT_DIRS = {"resnet152": "resnet_features", "slowfast_r50": "slowfast_features"}
"""Per-video ``.npz`` directories of the built-in backbones (the reference extractor's names)."""


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: str | Path, allow_pickle: bool = False) -> dict[str, Tensor]:
    """Tensors of a weights file (``.safetensors`` or a torch file), unwrapped from a checkpoint dict."""
    path = Path(path)
    if not path.is_file():
        raise HeroError(f"{path}: weights file does not exist")
    if path.suffix == ".safetensors":
        from hero.model.checkpoint import read_safetensors  # a damaged file: a CheckpointError naming it

        obj: Any = read_safetensors(path)
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
        except Exception as err:  # noqa: BLE001 - any unpickling failure is reported the same way
            hint = "" if allow_pickle else (" (it holds more than tensors; if you trust the file, pass "
                                            "--allow-pickle)")
            raise HeroError(f"{path}: cannot read weights: {err}{hint}") from err
    for key in ("model_state", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise HeroError(f"{path}: not a state dict (a mapping of parameter names to tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_weights(model: nn.Module, path: str | Path, name: str, allow_pickle: bool = False) -> str:
    """Load ``path`` into ``model`` after checking every key and shape; returns the file's SHA-256.

    ``num_batches_tracked`` buffers may be absent (older torchvision files lack them); anything
    else missing, unexpected or of another shape is a `HeroError` that lists the keys. A ``.pkl``
    file is PySlowFast's Caffe2 SlowFast checkpoint (`hero.extract.caffe2`, read safely, blob by blob).
    """
    if Path(path).suffix == ".pkl":
        if name != "slowfast_r50":
            raise HeroError(f"{path}: Caffe2 .pkl weights are read for slowfast_r50 only, not {name}")
        from hero.extract.caffe2 import caffe2_state_dict

        state = caffe2_state_dict(path, model)
    else:
        state = read_state_dict(path, allow_pickle)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    for title, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if keys:
            shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
            problems.append(f"{len(keys)} {title}: {shown}")
    if problems:
        raise HeroError(f"{path}: not {name} weights: " + "; ".join(problems))
    model.load_state_dict(state, strict=False)
    return sha256_file(path)


@dataclass
class Backbone:
    """One feature set.

    Attributes:
        name: feature-set name (``resnet152``, ``slowfast_r50``, ``hf_<model>``).
        dim: feature size.
        model: the network (eval mode, on ``device``).
        weights: ``{"file", "sha256"}`` or ``{"random_init": True, "seed"}``.
        output_dir: directory name of its per-video ``.npz`` files.
    """

    name: str
    dim: int
    model: nn.Module
    weights: dict[str, Any]
    output_dir: str
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    preset: Preset = HERO

    def make_sampler(self, interval: float, source_fps: float, duration: float | None = None) -> Sampler:
        """The sampler of one video (``source_fps`` and ``duration`` as ffprobe reports them, `probe_video`)."""
        raise NotImplementedError

    def embed(self, items: list[np.ndarray]) -> Tensor:
        """Features ``(B, dim)`` float32 on the CPU for ``B`` sampled items of one video."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Settings that change the features (go into the metadata)."""
        raise NotImplementedError


@dataclass
class ResNetBackbone(Backbone):
    resize: Resize = field(default_factory=Resize)
    l2_normalize: bool = True

    def make_sampler(self, interval: float, source_fps: float, duration: float | None = None) -> Sampler:
        rate = reference_frame_rate(duration, interval) if self.preset.short_video_rate else None
        return FrameSampler(interval, self.resize, self.preset, rate)

    @torch.inference_mode()
    def embed(self, items: list[np.ndarray]) -> Tensor:
        from hero.extract.resnet import resnet_inputs

        frames = torch.from_numpy(np.stack(items)).to(self.device)
        out = self.model.features(resnet_inputs(frames)).float()
        if self.l2_normalize:
            out = torch.nn.functional.normalize(out, dim=1)
        return out.cpu()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, "weights": self.weights,
                "preprocessing": {**FrameSampler(1.0, self.resize).describe(),
                                  "normalize": "x/255, ImageNet mean/std", "l2_normalize": self.l2_normalize},
                "width": self.model.conv1.out_channels}


@dataclass
class SlowFastBackbone(Backbone):
    size: int = 224

    def make_sampler(self, interval: float, source_fps: float, duration: float | None = None) -> Sampler:
        return ReferenceClipSampler(interval, source_fps, self._resize(), preset=self.preset)

    def _resize(self) -> Resize:
        return Resize(self.size, self.size, self.preset.interpolation)

    @torch.inference_mode()
    def embed(self, items: list[np.ndarray]) -> Tensor:
        from hero.extract.slowfast import slowfast_inputs

        clips = torch.from_numpy(np.stack(items)).to(self.device)
        return self.model.features(slowfast_inputs(clips)).float().cpu()

    def describe(self) -> dict[str, Any]:
        sampler = ReferenceClipSampler(1.5, 30.0, self._resize())
        return {"name": self.name, "dim": self.dim, "weights": self.weights,
                "preprocessing": {"sampling": "reference SlowFast 8x8 clips (30 fps grid, 32 frames, alpha 4)",
                                  "resize": sampler.resize.to_dict(), "normalize": "x/255, mean 0.45, std 0.225"},
                "width": self.model.blocks[0].multipathway_blocks[0].conv.out_channels}


@dataclass
class HFBackbone(Backbone):
    processor: Any = None
    num_frames: int = 0  # > 0: a video model fed num_frames frames per interval

    def make_sampler(self, interval: float, source_fps: float, duration: float | None = None) -> Sampler:
        if self.num_frames:
            return UniformClipSampler(interval, self.num_frames, preset=self.preset)
        return FrameSampler(interval, Resize(None, None), self.preset)

    @torch.inference_mode()
    def embed(self, items: list[np.ndarray]) -> Tensor:
        data = [list(clip) for clip in items] if self.num_frames else list(items)
        inputs = self.processor(data, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items() if isinstance(v, Tensor)}
        out = self.model(**inputs)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            pooled = out.last_hidden_state.mean(dim=1)
        return pooled.reshape(pooled.shape[0], -1).float().cpu()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, "weights": self.weights,
                "preprocessing": {"sampling": (f"{self.num_frames} frames per interval" if self.num_frames
                                               else "frame at (k+1/2)*interval"),
                                  "processor": type(self.processor).__name__}}


def build_backbone(spec: str, *, weights: str | None, random_init: bool, seed: int, device: torch.device,
                   size: int = 224, width: int = 64, resnet_crop: str = "none",
                   allow_pickle: bool = False, preset: Preset = HERO) -> Backbone:
    """Build the backbone named ``spec`` (``resnet152``, ``slowfast_r50`` or ``hf:NAME_OR_PATH``).

    Args:
        weights: weights file (built-ins); for ``hf:`` the model directory itself holds them.
        random_init: allow running without weights (testing); the features are meaningless.
        size: input resolution (short side / crop; 224 is the reference; smaller only for tests).
        width: stem channels of the built-ins (64 is the real network; smaller only for tests).
        resnet_crop: ``none`` (reference: whole frame, short side ``size``) or ``center``
            (torchvision: short side ``size·256/224``, centre crop ``size``).
        preset: the sampling rules (`hero.extract.presets`).
    """
    if spec.startswith("hf:"):
        backbone = _build_hf(spec[3:], device)
        backbone.preset = preset
        return backbone
    if spec not in BUILTIN:
        raise HeroError(f"unknown backbone {spec!r}; choose from {', '.join(BUILTIN)} or hf:NAME_OR_PATH")
    if weights is None and not random_init:
        raise HeroError(f"backbone {spec}: no weights file given (--weights {spec}=PATH); "
                        "pass --random-init to run with random weights for testing")
    torch.manual_seed(seed)
    if spec == "resnet152":
        from hero.extract.resnet import resnet152

        model: nn.Module = resnet152(width=width)
    else:
        from hero.extract.slowfast import slowfast_r50

        model = slowfast_r50(width=width)
    info: dict[str, Any] = {"random_init": True, "seed": seed}
    if weights is not None:
        info = {"file": str(Path(weights).resolve()), "sha256": load_weights(model, weights, spec, allow_pickle)}
    model = model.eval().to(device)
    if spec == "resnet152":
        if resnet_crop not in ("none", "center"):
            raise HeroError(f"--resnet-crop must be 'none' or 'center', got {resnet_crop!r}")
        resize = (Resize(size, None, preset.interpolation) if resnet_crop == "none"
                  else Resize(round(size * 256 / 224), size, preset.interpolation))
        return ResNetBackbone(spec, model.feature_dim, model, info, OUTPUT_DIRS[spec], device, preset=preset,
                              resize=resize)
    return SlowFastBackbone(spec, model.feature_dim, model, info, OUTPUT_DIRS[spec], device, preset=preset,
                            size=size)


def _build_hf(name_or_path: str, device: torch.device) -> Backbone:
    try:
        from transformers import AutoConfig, AutoImageProcessor, AutoModel
    except ImportError as err:  # pragma: no cover - transformers is a dependency
        raise HeroError("hf: backbones need the transformers package") from err
    try:
        config = AutoConfig.from_pretrained(name_or_path)
        processor = AutoImageProcessor.from_pretrained(name_or_path)
        model = AutoModel.from_pretrained(name_or_path).eval().to(device)
    except (OSError, ValueError) as err:
        raise HeroError(f"hf:{name_or_path}: cannot load the model or its image processor ({err})") from err
    num_frames = int(getattr(config, "num_frames", 0) or 0)
    short = Path(name_or_path.rstrip("/")).name or name_or_path
    name = "hf_" + "".join(c if c.isalnum() or c in "-_." else "_" for c in short)
    weights_files = sorted(Path(name_or_path).glob("*.safetensors")) + sorted(Path(name_or_path).glob("*.bin"))
    if weights_files:
        info: dict[str, Any] = {"file": str(Path(name_or_path).resolve()),
                                "sha256": hashlib.sha256("".join(sha256_file(f) for f in weights_files)
                                                         .encode()).hexdigest()}
    else:
        info = {"hub_id": name_or_path, "revision": getattr(config, "_commit_hash", None)}
    backbone = HFBackbone(name, 0, model, info, f"{name}_features", device, processor=processor,
                          num_frames=num_frames)
    # the output size depends on the model class (pooler or not): measure it on a blank input
    probe = np.zeros((num_frames, 64, 64, 3) if num_frames else (64, 64, 3), np.uint8)
    try:
        backbone.dim = int(backbone.embed([probe]).shape[1])
    except Exception as err:  # noqa: BLE001 - report any model that cannot take images
        raise HeroError(f"hf:{name_or_path}: the model does not take frames from its image processor ({err})") from err
    return backbone
