"""2-D ResNet-152 in plain torch, with torchvision's ``resnet152`` state-dict keys and shapes.

The module tree mirrors torchvision's (``conv1``, ``bn1``, ``layer1``..``layer4`` of
``Bottleneck`` blocks with ``conv1/bn1/conv2/bn2/conv3/bn3`` and ``downsample.0/1``, then ``fc``),
so ``load_state_dict`` accepts torchvision's ImageNet file (``resnet152-394f9c45.pth`` or
``resnet152-f82ba261.pth``) unchanged. The stride of a down-sampling block sits on the 3×3 conv
(torchvision's "ResNet v1.5").

For features, `ResNet.features` returns the global average of the last stage, ``(B, 2048)``,
which is what the reference extractor takes (torchvision model without ``avgpool``/``fc`` plus a
mean over H and W, so any input size works); the caller L2-normalises it as the reference does.

Preprocessing (`resnet_inputs`) is written by hand: ``x/255``, ImageNet mean/std (the reference
divides by ``std + 1e-8``). The resize itself happens at decode time (`hero.extract.video`).

``width`` and ``layers`` shrink the network for tests only; the defaults are ResNet-152.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESNET152_LAYERS = (3, 8, 36, 3)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (carrying the stride), 1×1 expand ×4, plus the shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Bottleneck ResNet with torchvision's module names.

    Args:
        layers: blocks per stage; ``(3, 8, 36, 3)`` is ResNet-152.
        width: channels of the stem (64 in torchvision); stage ``i`` has ``width·2^i`` planes.
        num_classes: size of ``fc`` (1000 for ImageNet); kept so the ImageNet file loads strictly.
    """

    def __init__(self, layers: tuple[int, ...] = RESNET152_LAYERS, width: int = 64,
                 num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = width
        for i, depth in enumerate(layers):
            planes = width * 2**i
            blocks = []
            for j in range(depth):
                blocks.append(Bottleneck(channels, planes, stride=2 if (i > 0 and j == 0) else 1))
                channels = planes * Bottleneck.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_stages = len(layers)
        self.feature_dim = channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's initialisation, so a random-init run behaves like an untrained torchvision model
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m.weight.device.type != "meta":
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: Tensor) -> Tensor:
        """Pooled last-stage features.

        Args:
            x: ``(B, 3, H, W)`` normalised images (any H, W ≥ 32).
        Returns:
            ``(B, feature_dim)`` (2048 for ResNet-152), the mean over the final H×W grid.
        """
        return self._trunk(x).mean(dim=(-2, -1))

    def forward(self, x: Tensor) -> Tensor:
        """ImageNet logits ``(B, num_classes)``, as torchvision's ``forward``."""
        return self.fc(torch.flatten(self.avgpool(self._trunk(x)), 1))

    def _trunk(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x


def resnet152(width: int = 64, layers: tuple[int, ...] = RESNET152_LAYERS) -> ResNet:
    """torchvision-compatible ResNet-152 (random initialisation; load weights separately)."""
    return ResNet(layers=layers, width=width)


def resnet_inputs(frames: Tensor) -> Tensor:
    """Frames to network input, as the reference extractor's 2-D preprocessing.

    Args:
        frames: ``(B, H, W, 3)`` uint8 RGB.
    Returns:
        ``(B, 3, H, W)`` float32: ``(x/255 − mean) / (std + 1e-8)`` with the ImageNet statistics.
    """
    x = frames.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / (std + 1e-8)
