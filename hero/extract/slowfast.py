"""SlowFast-R50 8×8 in plain torch, with the state-dict keys and shapes of pytorchvideo's ``slowfast_r50``.

The module tree mirrors ``pytorchvideo.models.slowfast.create_slowfast`` so the public Kinetics-400
checkpoint (``SLOWFAST_8x8_R50.pyth``, whose ``"model_state"`` holds the state dict) loads unchanged:

* ``blocks.0``: ``multipathway_blocks.{0,1}`` stems (``conv``, ``norm``; slow 1×7×7 → 64 channels,
  fast 5×7×7 → 8) and ``multipathway_fusion`` (``conv_fast_to_slow`` 7×1×1 with temporal stride
  α = 4, ``norm``), whose output is concatenated to the slow pathway;
* ``blocks.1``..``blocks.4``: the four residual stages (3, 4, 6, 3 blocks) of both pathways,
  ``res_blocks.{i}`` with ``branch1_conv``/``branch1_norm`` (first block) and ``branch2.conv_a``,
  ``norm_a``, ``conv_b``, ``norm_b``, ``conv_c``, ``norm_c``; the slow pathway's ``conv_a`` is
  temporal (3×1×1) only in stages 4 and 5, the fast pathway's in every stage; a fusion follows
  every stage but the last (``blocks.4.multipathway_fusion`` is an identity);
* ``blocks.5``: pooling and concatenation (no parameters); ``blocks.6.proj``: the 2304 → 400 classifier.

`SlowFast.features` returns the global average of each pathway's last stage, concatenated slow
first: ``(B, 2048 + 256 = 2304)``. That is the reference extractor's output (PySlowFast head with
``last_fc``: average pool over the whole 8×7×7 / 32×7×7 map, no projection).

Inputs (`slowfast_inputs`, `pack_pathways`): 32 frames for the fast pathway, every 4th of them
(``linspace(0, T−1, T/α)``) for the slow one, ``x/255`` normalised with mean 0.45 and std 0.225.

``width`` shrinks the network for tests only (64 = the real model).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

SLOWFAST_MEAN = (0.45, 0.45, 0.45)
SLOWFAST_STD = (0.225, 0.225, 0.225)
R50_DEPTHS = (3, 4, 6, 3)
ALPHA = 4  # frame-rate ratio fast/slow
BETA_INV = 8  # channel ratio slow/fast
FUSION_RATIO = 2  # fused channels = 2 × fast channels
SLOW_TEMPORAL_KERNELS = (1, 1, 3, 3)  # conv_a time kernel per stage, slow pathway
FAST_TEMPORAL_KERNELS = (3, 3, 3, 3)


def _bn(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=1e-5, momentum=0.1)


class Stem(nn.Module):
    """``conv`` (stride 1×2×2) → ``norm`` → ReLU → 1×3×3 max-pool (stride 1×2×2)."""

    def __init__(self, out_channels: int, time_kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, out_channels, (time_kernel, 7, 7), stride=(1, 2, 2),
                              padding=(time_kernel // 2, 3, 3), bias=False)
        self.norm = _bn(out_channels)
        self.activation = nn.ReLU()
        self.pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.activation(self.norm(self.conv(x))))


class Bottleneck(nn.Module):
    """``conv_a`` (t×1×1) → ``conv_b`` (1×3×3, carrying the spatial stride) → ``conv_c`` (1×1×1)."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, time_kernel: int, stride: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv3d(dim_in, dim_inner, (time_kernel, 1, 1), padding=(time_kernel // 2, 0, 0),
                                bias=False)
        self.norm_a = _bn(dim_inner)
        self.act_a = nn.ReLU()
        self.conv_b = nn.Conv3d(dim_inner, dim_inner, (1, 3, 3), stride=(1, stride, stride),
                                padding=(0, 1, 1), bias=False)
        self.norm_b = _bn(dim_inner)
        self.act_b = nn.ReLU()
        self.conv_c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.norm_c = _bn(dim_out)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    """Residual block: ``branch2`` plus the shortcut (``branch1_conv``/``branch1_norm`` when the shape changes)."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, time_kernel: int, stride: int) -> None:
        super().__init__()
        self.branch1_conv: nn.Module | None = None
        self.branch1_norm: nn.Module | None = None
        if dim_in != dim_out or stride != 1:
            self.branch1_conv = nn.Conv3d(dim_in, dim_out, 1, stride=(1, stride, stride), bias=False)
            self.branch1_norm = _bn(dim_out)
        self.branch2 = Bottleneck(dim_in, dim_inner, dim_out, time_kernel, stride)
        self.activation = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        if self.branch1_conv is not None:
            shortcut = self.branch1_norm(self.branch1_conv(x))
        return self.activation(shortcut + self.branch2(x))


class ResStage(nn.Module):
    def __init__(self, depth: int, dim_in: int, dim_inner: int, dim_out: int, time_kernel: int,
                 stride: int) -> None:
        super().__init__()
        self.res_blocks = nn.ModuleList(
            ResBlock(dim_in if i == 0 else dim_out, dim_inner, dim_out, time_kernel, stride if i == 0 else 1)
            for i in range(depth))

    def forward(self, x: Tensor) -> Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class FuseFastToSlow(nn.Module):
    """Fast features → ``conv_fast_to_slow`` (7×1×1, temporal stride α) → ``norm`` → ReLU, concatenated to slow."""

    def __init__(self, fast_channels: int) -> None:
        super().__init__()
        out = fast_channels * FUSION_RATIO
        self.conv_fast_to_slow = nn.Conv3d(fast_channels, out, (7, 1, 1), stride=(ALPHA, 1, 1),
                                           padding=(3, 0, 0), bias=False)
        self.norm = _bn(out)
        self.activation = nn.ReLU()

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        slow, fast = x
        fuse = self.activation(self.norm(self.conv_fast_to_slow(fast)))
        return [torch.cat([slow, fuse], 1), fast]


class MultiPathWayWithFuse(nn.Module):
    """One module per pathway (``multipathway_blocks``), then ``multipathway_fusion``."""

    def __init__(self, blocks: list[nn.Module], fusion: nn.Module) -> None:
        super().__init__()
        self.multipathway_blocks = nn.ModuleList(blocks)
        self.multipathway_fusion = fusion

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        out = [block(xi) for block, xi in zip(self.multipathway_blocks, x)]
        return self.multipathway_fusion(out)


class PoolConcatPathway(nn.Module):
    """Global average of each pathway, concatenated on channels (parameter-free)."""

    def forward(self, x: list[Tensor]) -> Tensor:
        return torch.cat([xi.mean(dim=(2, 3, 4)) for xi in x], 1)


class Head(nn.Module):
    """The Kinetics classifier (``proj``); unused for features but kept so checkpoints load strictly."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.dropout = nn.Dropout(0.5)
        self.proj = nn.Linear(in_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.dropout(x))


class SlowFast(nn.Module):
    """SlowFast-R50 with pytorchvideo's ``blocks.*`` names.

    Args:
        width: slow stem channels (64); fast channels are ``width / 8``.
        depths: blocks per stage (R50: 3, 4, 6, 3).
        num_classes: classifier size (400 for Kinetics-400).
    """

    def __init__(self, width: int = 64, depths: tuple[int, ...] = R50_DEPTHS, num_classes: int = 400) -> None:
        super().__init__()
        slow_stem, fast_stem = width, width // BETA_INV
        if fast_stem < 1:
            raise ValueError(f"SlowFast width must be >= {BETA_INV}, got {width}")
        blocks: list[nn.Module] = [MultiPathWayWithFuse([Stem(slow_stem, 1), Stem(fast_stem, 5)],
                                                        FuseFastToSlow(fast_stem))]
        dim_in, dim_out = width, width * 4
        for idx, depth in enumerate(depths):
            fused = dim_in * FUSION_RATIO // BETA_INV
            stride = 1 if idx == 0 else 2
            slow = ResStage(depth, dim_in + fused, dim_out // 4, dim_out, SLOW_TEMPORAL_KERNELS[idx], stride)
            fast = ResStage(depth, dim_in // BETA_INV, dim_out // 4 // BETA_INV, dim_out // BETA_INV,
                            FAST_TEMPORAL_KERNELS[idx], stride)
            last = idx == len(depths) - 1
            fusion: nn.Module = nn.Identity() if last else FuseFastToSlow(dim_out // BETA_INV)
            blocks.append(MultiPathWayWithFuse([slow, fast], fusion))
            dim_in, dim_out = dim_out, dim_out * 2
        self.feature_dim = dim_in + dim_in // BETA_INV
        blocks.append(PoolConcatPathway())
        blocks.append(Head(self.feature_dim, num_classes))
        self.blocks = nn.ModuleList(blocks)

    def features(self, x: list[Tensor]) -> Tensor:
        """Pooled features.

        Args:
            x: ``[slow (B, 3, T/α, H, W), fast (B, 3, T, H, W)]`` normalised clips (T = 32, H = W = 224
                for the reference setting; T must be a multiple of α).
        Returns:
            ``(B, feature_dim)``: slow-pathway mean (2048) then fast-pathway mean (256).
        """
        for block in self.blocks[:-2]:
            x = block(x)
        return self.blocks[-2](x)

    def forward(self, x: list[Tensor]) -> Tensor:
        """Kinetics logits ``(B, num_classes)`` (averaged over positions, as pytorchvideo does at 224 px)."""
        return self.blocks[-1](self.features(x))


def slowfast_r50(width: int = 64) -> SlowFast:
    """pytorchvideo-compatible SlowFast-R50 8×8 (random initialisation; load weights separately)."""
    return SlowFast(width=width)


def pack_pathways(fast: Tensor, alpha: int = ALPHA) -> list[Tensor]:
    """Split a clip into the two pathways, as PySlowFast's ``pack_pathway_output``.

    Args:
        fast: ``(B, 3, T, H, W)``.
    Returns:
        ``[slow (B, 3, T // alpha, H, W), fast]``; slow frames are ``linspace(0, T−1, T // alpha)``
        truncated to integers.
    """
    t = fast.shape[2]
    index = torch.linspace(0, t - 1, t // alpha).long().to(fast.device)
    return [fast.index_select(2, index), fast]


def slowfast_inputs(clips: Tensor) -> list[Tensor]:
    """Clips to network input, as the reference extractor's 3-D preprocessing.

    Args:
        clips: ``(B, T, H, W, 3)`` uint8 RGB (T = 32 frames).
    Returns:
        `pack_pathways` of ``((x/255 − 0.45) / (0.225 + 1e-8))`` as ``(B, 3, T, H, W)`` float32.
    """
    x = clips.permute(0, 4, 1, 2, 3).float().div_(255.0)
    mean = torch.tensor(SLOWFAST_MEAN, device=x.device).view(1, 3, 1, 1, 1)
    std = torch.tensor(SLOWFAST_STD, device=x.device).view(1, 3, 1, 1, 1)
    return pack_pathways((x - mean) / (std + 1e-8))
