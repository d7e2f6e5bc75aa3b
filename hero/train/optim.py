"""AdamW parameter groups and the learning-rate schedule (reference ``optim/misc.py``, ``optim/sched.py``).

Four groups, as the reference builds them: (head, decay), (head, no decay), (backbone, decay),
(backbone, no decay). "No decay" = biases and LayerNorm parameters. The backbone is everything
under ``hero.`` (the `Hero` module of a task model); the heads get ``lr · lr_mul``. A model whose
reference keeps some heads inside the encoder (and so at the base rate) names their prefixes in
a class attribute ``BASE_LR_PREFIXES`` (TVC: ``("hero.", "mlm_head.")``, the reference's LM head
sits in its video encoder); those parameters count as backbone here.

Unlike the reference (whose pre-training and retrieval scripts overwrite every group's learning
rate, so ``lr_mul`` silently does nothing there), ``lr_mul`` applies wherever it is set; the
shipped pre-training and retrieval configs keep it at 1, which is what the reference effectively
trained with.

torch's AdamW applies the decoupled weight decay before the Adam update; the reference's
in-repo AdamW applies it after. The difference is second order in the learning rate.
"""

from __future__ import annotations

import torch
from torch import nn

from hero.train.config import OptimConfig

BACKBONE_PREFIX = "hero."


def no_decay(name: str) -> bool:
    return name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name


def base_lr_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Parameter-name prefixes that train at the base rate: the model's ``BASE_LR_PREFIXES``, else ``hero.``."""
    prefixes = getattr(model, "BASE_LR_PREFIXES", (BACKBONE_PREFIX,))
    if isinstance(prefixes, str) or not all(isinstance(p, str) for p in prefixes):
        raise TypeError(f"{type(model).__name__}.BASE_LR_PREFIXES must be a tuple of str, got {prefixes!r}")
    return tuple(prefixes)


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """The reference's four AdamW groups; each carries ``lr_scale`` (1 or ``lr_mul``)."""
    base = base_lr_prefixes(model)
    groups: dict[tuple[bool, bool], list] = {(h, d): [] for h in (True, False) for d in (True, False)}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        head = not name.startswith(base)
        groups[(head, not no_decay(name))].append(p)
    out = []
    for (head, decay), params in groups.items():
        if params:
            out.append({"params": params, "weight_decay": cfg.weight_decay if decay else 0.0,
                        "lr_scale": cfg.lr_mul if head else 1.0})
    return out


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg)
    fused = all(p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=fused or None)


def lr_factor(step: int, warmup: int, total: int, schedule: str = "linear") -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (1-based, as the reference).

    Linear warm-up to 1 over ``warmup`` steps, then linear decay to 0 at ``total`` (``linear``)
    or constant (``constant``). Never exactly 0: the reference floors the rate at 1e-8.
    """
    if warmup > 0 and step < warmup:
        f = step / warmup
    elif schedule == "constant":
        f = 1.0
    else:
        f = max(0.0, (total - step) / max(1, total - warmup))
    return f


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> float:
    lr = max(base_lr * factor, 1e-8)
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
    return lr
