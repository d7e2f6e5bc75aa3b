"""PySlowFast's Caffe2 SlowFast weights (``SLOWFAST_8x8_R50.pkl``, what the reference extractor loaded).

The file is a pickle of ``{"blobs": {name: np.ndarray}, ...}`` written by Caffe2 (Python 2). It is
read with a restricted unpickler (`read_caffe2_blobs`) that rebuilds numpy arrays, numpy scalars
and plain containers only: any other object in the file is refused before it is built, so the
file needs no trust (no ``--allow-pickle``).

Blob names (the naming PySlowFast converts from; `caffe2_name` maps our pytorchvideo-layout keys
onto them one by one):

* slow pathway: ``conv1_w``, ``res_conv1_bn_{s,b,rm,riv}`` (the stem); stage ``S`` = 2..5 (our
  ``blocks.{S-1}``), block ``i``: ``res{S}_{i}_branch1_w`` / ``_branch1_bn_*`` (shortcut) and
  ``res{S}_{i}_branch2{a,b,c}_w`` / ``_branch2{a,b,c}_bn_*``;
* fast pathway: the same names prefixed ``t_`` (``t_conv1_w``, ``t_res_conv1_bn_s``, ``t_res2_0_branch2a_w``);
* fast→slow fusions: ``t_pool1_subsample_w`` / ``t_pool1_subsample_bn_*`` after the stem, and
  ``t_res{S}_{last}_branch2c_bn_subsample_w`` / ``..._subsample_bn_*`` after stages 2..4;
* classifier: ``pred_w``, ``pred_b``;
* batch norm: ``_s`` scale → ``weight``, ``_b`` → ``bias``, ``_rm`` → ``running_mean``,
  ``_riv`` → ``running_var`` (PySlowFast loads ``riv`` as the running variance, so the reference did).

Training state in the file (names containing ``momentum``, ``lr`` or ``model_iter``) is ignored,
as PySlowFast ignored it; any other blob we do not map, a missing blob or a wrong shape refuses
the file, naming the blobs.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hero.errors import HeroError

_BN = {"weight": "s", "bias": "b", "running_mean": "rm", "running_var": "riv"}
_TRAINING_STATE = ("momentum", "lr", "model_iter")


def _latin1_encode(text, encoding="latin1"):
    # Python 3 protocol-2 pickles store bytes as _codecs.encode(str, "latin1"); allow only that
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError("_codecs.encode is allowed only for latin-1 text")
    return text.encode("latin1")


def _allowed() -> dict[tuple[str, str], object]:
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                              ("_codecs", "encode"): _latin1_encode}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    allowed[("collections", "OrderedDict")] = dict
    return allowed


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Builds numpy arrays/scalars and plain containers; refuses every other global."""

    def __init__(self, file) -> None:
        super().__init__(file, encoding="latin1")
        self._allowed = _allowed()

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"the file asks for {module}.{name}, which is not allowed "
                                         "(only numpy arrays and plain containers are read)") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed")


def read_caffe2_blobs(path: str | Path) -> dict[str, np.ndarray]:
    """The ``{"blobs": {name: array}}`` of a Caffe2 pickle, read without building any other object.

    Raises:
        HeroError: not a pickle, a pickle that holds anything else than numpy data and plain
            containers, no ``blobs`` mapping, or a blob that is not a numeric array.
    """
    path = Path(path)
    if not path.is_file():
        raise HeroError(f"{path}: weights file does not exist")
    try:
        with open(path, "rb") as f:
            obj = _NumpyOnlyUnpickler(io.BufferedReader(f)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, UnicodeDecodeError, MemoryError) as err:
        raise HeroError(f"{path}: not a readable Caffe2 weights pickle: {err}") from None
    blobs = obj.get("blobs", obj) if isinstance(obj, dict) else None
    if not isinstance(blobs, dict) or not blobs:
        raise HeroError(f"{path}: not a Caffe2 weights pickle (expected a dict with a 'blobs' mapping)")
    out: dict[str, np.ndarray] = {}
    for name, value in blobs.items():
        if not isinstance(name, str):
            raise HeroError(f"{path}: blob name {name!r} is not a string")
        if any(s in name for s in _TRAINING_STATE):
            continue
        if isinstance(value, np.generic):
            value = np.asarray(value)
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiub":
            kind = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
            raise HeroError(f"{path}: blob {name} is not a numeric array ({kind})")
        out[name] = value
    return out


def caffe2_name(key: str, stage_depths: dict[int, int]) -> str | None:
    """The Caffe2 blob of our (pytorchvideo-layout) SlowFast state-dict ``key``; ``None`` for counters.

    Args:
        stage_depths: ``{block index: residual blocks}`` for ``blocks.1``..``blocks.4`` (the fusion
            after a stage is named after its last block).
    Raises:
        KeyError: a key of no SlowFast-R50 layout.
    """
    if key.endswith("num_batches_tracked"):
        return None
    m = re.fullmatch(r"blocks\.6\.proj\.(weight|bias)", key)
    if m:
        return "pred_" + m.group(1)[0]
    m = re.fullmatch(r"blocks\.0\.multipathway_blocks\.([01])\.(conv|norm)\.(\w+)", key)
    if m:
        fast = "t_" if m.group(1) == "1" else ""
        return f"{fast}conv1_w" if m.group(2) == "conv" else f"{fast}res_conv1_bn_{_BN[m.group(3)]}"
    m = re.fullmatch(r"blocks\.(\d)\.multipathway_fusion\.(conv_fast_to_slow|norm)\.(\w+)", key)
    if m:
        s = int(m.group(1))
        base = "t_pool1_subsample" if s == 0 else f"t_res{s + 1}_{stage_depths[s] - 1}_branch2c_bn_subsample"
        return f"{base}_w" if m.group(2) == "conv_fast_to_slow" else f"{base}_bn_{_BN[m.group(3)]}"
    m = re.fullmatch(r"blocks\.(\d)\.multipathway_blocks\.([01])\.res_blocks\.(\d+)\.(.+)\.(\w+)", key)
    if m:
        s, fast, i, part, leaf = int(m.group(1)), "t_" if m.group(2) == "1" else "", m.group(3), m.group(4), m.group(5)
        prefix = f"{fast}res{s + 1}_{i}_"
        if part == "branch1_conv":
            return prefix + "branch1_w"
        if part == "branch1_norm":
            return prefix + f"branch1_bn_{_BN[leaf]}"
        m2 = re.fullmatch(r"branch2\.(conv|norm)_([abc])", part)
        if m2:
            branch = f"branch2{m2.group(2)}"
            return prefix + (f"{branch}_w" if m2.group(1) == "conv" else f"{branch}_bn_{_BN[leaf]}")
    raise KeyError(f"{key}: not a SlowFast-R50 state-dict key")


def _stage_depths(model: torch.nn.Module) -> dict[int, int]:
    return {s: len(model.blocks[s].multipathway_blocks[0].res_blocks) for s in range(1, len(model.blocks) - 2)}


def name_map(model: torch.nn.Module) -> dict[str, str]:
    """``{our state-dict key: Caffe2 blob name}`` for every tensor of ``model`` (counters left out)."""
    depths = _stage_depths(model)
    out = {}
    for key in model.state_dict():
        name = caffe2_name(key, depths)
        if name is not None:
            out[key] = name
    return out


def caffe2_state_dict(path: str | Path, model: torch.nn.Module) -> dict[str, Tensor]:
    """Read a Caffe2 SlowFast pickle as a state dict of ``model``, checking every blob and shape.

    A blob with fewer dimensions than our tensor is accepted when it differs only by trailing
    size-1 dimensions (as PySlowFast reshaped them). Raises `HeroError` naming the missing,
    unexpected and wrongly shaped blobs (with our key).
    """
    blobs = read_caffe2_blobs(path)
    mapping = name_map(model)
    expected = model.state_dict()
    state: dict[str, Tensor] = {}
    missing, wrong = [], []
    for key, name in mapping.items():
        if name not in blobs:
            missing.append(f"{name} ({key})")
            continue
        blob, want = blobs[name], tuple(expected[key].shape)
        if blob.shape != want and blob.shape + (1,) * (len(want) - blob.ndim) == want:
            blob = blob.reshape(want)
        if blob.shape != want:
            wrong.append(f"{name} {tuple(blob.shape)} (expected {want} for {key})")
            continue
        state[key] = torch.from_numpy(np.ascontiguousarray(blob)).to(expected[key].dtype)
    unexpected = sorted(set(blobs) - set(mapping.values()))
    problems = []
    for title, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if names:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            problems.append(f"{len(names)} {title}: {shown}")
    if problems:
        raise HeroError(f"{path}: not Caffe2 SlowFast-R50 weights: " + "; ".join(problems))
    return state


def to_caffe2_blobs(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """The inverse mapping: ``model``'s tensors under their Caffe2 blob names (float32 numpy)."""
    state = model.state_dict()
    return {name: state[key].detach().cpu().numpy().astype(np.float32) for key, name in name_map(model).items()}
