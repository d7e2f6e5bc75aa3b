"""The few collective operations the objectives need, as no-ops in a single process.

Objectives compute their loss over the *global* batch (every rank's clips), so that N processes
with B clips each give the same loss and gradients as one process with N·B clips:

* in-batch negatives (VSM clips and queries, MNCE negatives) are gathered from every rank with
  `gather_with_grad`, whose backward sums the gradients every rank computes for a slice and hands
  them to the slice's owner (what ``torch.distributed.nn.functional.all_gather`` does; that API is
  deprecated in recent torch, so the same autograd rule is written here on plain collectives);
* means are over the global number of items (see ``normalizer`` in `hero.train.engine`).

Also the two helpers inference needs outside training: `all_gather_objects` (every rank's
predictions) and `pick_device` (``auto``/``cpu``/``cuda``).

Only ``torch.distributed`` is used; nothing here starts or configures a process group (that is
`hero.train.distributed.setup`).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from hero.errors import HeroError


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` (CUDA when available), ``cpu`` or ``cuda`` (GPU ``local_rank`` modulo the count, made current)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise HeroError("train.device=cuda, but no CUDA device is available")
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name == "cpu":
        return torch.device("cpu")
    raise HeroError(f"train.device must be auto, cpu or cuda, got {name!r}")


def all_gather_objects(obj):
    """Every rank's ``obj`` in rank order (a list of one in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _pad_to(x: Tensor, sizes: tuple[int, ...]) -> Tensor:
    pad = []
    for have, want in zip(reversed(x.shape), reversed(sizes)):
        pad += [0, want - have]
    return torch.nn.functional.pad(x, pad) if any(pad) else x


def gather_with_grad(x: Tensor, pad_dims: tuple[int, ...] = ()) -> tuple[Tensor, int]:
    """Concatenate ``x`` of every rank along dim 0; gradients flow back to each slice's owner.

    Args:
        x: ``(n_r, *rest)`` on this rank; ``n_r`` may differ between ranks, and so may the sizes of
            the dims listed in ``pad_dims`` (they are zero-padded to the largest, e.g. the frame
            axis of clips); all other dims must agree.
    Returns:
        ``(Σ n_r, *rest')`` and the offset of this rank's rows in it. In a single process,
        ``(x, 0)`` unchanged.
    """
    if not is_distributed():
        return x, 0
    shape = torch.tensor(x.shape, device=x.device)
    shapes = [torch.zeros_like(shape) for _ in range(dist.get_world_size())]
    dist.all_gather(shapes, shape)
    shapes = [tuple(int(v) for v in s) for s in shapes]
    target = list(x.shape)
    target[0] = max(s[0] for s in shapes)
    for d in pad_dims:
        target[d] = max(s[d] for s in shapes)
    parts = _AllGather.apply(_pad_to(x, tuple(target)).contiguous())
    # dims in pad_dims stay padded to the largest size (zeros); dim 0 is cut back to each rank's rows
    pieces = [part[: s[0]] for part, s in zip(parts, shapes)]
    offset = sum(s[0] for s in shapes[: dist.get_rank()])
    return torch.cat(pieces), offset


class _AllGather(torch.autograd.Function):
    """All-gather with gradients: forward concatenates every rank's tensor (equal shapes); backward
    sums the incoming gradient over ranks and returns this rank's slice (a reduce-scatter)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> tuple[Tensor, ...]:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        return tuple(parts)

    @staticmethod
    def backward(ctx, *grads: Tensor) -> Tensor:
        total = torch.stack(grads).contiguous()
        dist.all_reduce(total)
        return total[dist.get_rank()]
