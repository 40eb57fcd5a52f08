"""ResNet (He et al., 2015): residual blocks with skip connections.

* :class:`BasicBlock`: 3x3 conv -> BN -> ReLU -> 3x3 conv -> BN, plus the input
  (the skip connection), then ReLU. expansion = 1.
* :class:`Bottleneck`: 1x1 reduce (Conv1x1) -> 3x3 (carries the stride) -> 1x1
  expand (Conv1x1, 4x), each followed by BN, plus the input, then ReLU.
* Where the shape changes, the skip connection is a 1x1 projection (+ BN): a
  Conv1x1 at stride 1, a 1x1 Conv2d at stride 2.

``resnet18/34/50`` are the ImageNet networks (7x7/2 stem, 3x3/2 max pool, four
stages of 64-512 channels, global average pooling, FC), parameter-for-parameter
the same as torchvision's. ``resnet_small`` is the CIFAR-style network for 32x32
inputs (3x3 stem, no pooling, three stages of 16, 32, 64 channels of
``(depth - 2) / 6`` basic blocks each; depth 20 gives ResNet-20, 0.27 M
parameters).

Bag of tricks from the notes: BatchNorm after every conv, He initialisation,
no dropout.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from torch import nn

from ._common import he_init, layers


def _conv1x1(L, in_channels: int, out_channels: int, stride: int = 1) -> nn.Module:
    if stride == 1:
        return L.Conv1x1(in_channels, out_channels, bias=False)
    return L.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


def _shortcut(L, in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(OrderedDict([
        ("conv", _conv1x1(L, in_channels, out_channels, stride)),
        ("bn", nn.BatchNorm2d(out_channels)),
    ]))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, backend: str = "fastconv"):
        super().__init__()
        L = layers(backend)
        out = channels * self.expansion
        self.conv1 = L.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = L.ReLU()
        self.conv2 = L.Conv2d(channels, out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.downsample = _shortcut(L, in_channels, out, stride)
        self.relu2 = L.ReLU()

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu2(y + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, backend: str = "fastconv"):
        super().__init__()
        L = layers(backend)
        out = channels * self.expansion
        self.conv1 = L.Conv1x1(in_channels, channels, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = L.ReLU()
        self.conv2 = L.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = L.ReLU()
        self.conv3 = L.Conv1x1(channels, out, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = _shortcut(L, in_channels, out, stride)
        self.relu3 = L.ReLU()

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.relu2(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu3(y + identity)


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers_per_stage: Sequence[int],
                 num_classes: int = 1000, in_channels: int = 3, widths: Sequence[int] = (64, 128, 256, 512),
                 stem: str = "imagenet", backend: str = "fastconv"):
        super().__init__()
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        if len(widths) != len(layers_per_stage):
            raise ValueError("widths and layers_per_stage must have the same length")
        L = layers(backend)
        self.num_classes, self.in_channels, self.backend = num_classes, in_channels, backend
        c = widths[0]
        if stem == "imagenet":
            self.stem = nn.Sequential(OrderedDict([
                ("conv1", L.Conv2d(in_channels, c, 7, stride=2, padding=3, bias=False)),
                ("bn1", nn.BatchNorm2d(c)),
                ("relu", L.ReLU()),
                ("maxpool", L.MaxPool2d(3, stride=2, padding=1)),
            ]))
        else:
            self.stem = nn.Sequential(OrderedDict([
                ("conv1", L.Conv2d(in_channels, c, 3, padding=1, bias=False)),
                ("bn1", nn.BatchNorm2d(c)),
                ("relu", L.ReLU()),
            ]))
        stages = []
        for i, (w, n) in enumerate(zip(widths, layers_per_stage)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(c, w, stride=stride, backend=backend))
                c = w * block.expansion
            stages.append((f"layer{i + 1}", nn.Sequential(*blocks)))
        self.stages = nn.Sequential(OrderedDict(stages))
        self.avgpool = L.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c, num_classes)
        he_init(self)

    def forward(self, x):
        return self.fc(self.flatten(self.avgpool(self.stages(self.stem(x)))))


def resnet18(num_classes: int = 1000, in_channels: int = 3, **kw) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes=num_classes, in_channels=in_channels, **kw)


def resnet34(num_classes: int = 1000, in_channels: int = 3, **kw) -> ResNet:
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes=num_classes, in_channels=in_channels, **kw)


def resnet50(num_classes: int = 1000, in_channels: int = 3, **kw) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes=num_classes, in_channels=in_channels, **kw)


def resnet_small(num_classes: int = 10, in_channels: int = 3, depth: int = 20, **kw) -> ResNet:
    """CIFAR-style ResNet for 32x32 inputs (He et al. section 4.2): depth = 6n + 2."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 (8, 14, 20, 32, 44, 56, 110), got {depth}")
    n = (depth - 2) // 6
    kw.setdefault("widths", (16, 32, 64))
    return ResNet(BasicBlock, (n, n, n), num_classes=num_classes, in_channels=in_channels, stem="cifar", **kw)
