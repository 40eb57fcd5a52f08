"""GoogLeNet (Szegedy et al., 2014) and its Inception module.

Inception module (the notes' picture): four branches on the same input,
concatenated along the depth:

    1x1 conv                                  -> ch1x1
    1x1 conv (reduce to ch3x3red) -> 3x3 conv -> ch3x3
    1x1 conv (reduce to ch5x5red) -> 5x5 conv -> ch5x5
    3x3/1 max pool -> 1x1 conv (pool_proj)    -> pool_proj

The 1x1 convolutions are fastconv.nn.Conv1x1 (pure channel reductions: they
aggregate along the depth, cutting the cost of the 3x3/5x5 that follow from
O(F*F*D) to O(F*F*D1) per output element).

Differences from the 2014 paper: BatchNorm after every conv (``batch_norm``,
the notes' bag of tricks; the paper used LRN in the stem, omitted here) and no
auxiliary classifiers. The 5x5 branch really is 5x5 (torchvision uses 3x3).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ._common import layers

# name: (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj), the paper's Table 1
INCEPTION_CFG = OrderedDict([
    ("inception3a", (64, 96, 128, 16, 32, 32)),
    ("inception3b", (128, 128, 192, 32, 96, 64)),
    ("pool3", None),
    ("inception4a", (192, 96, 208, 16, 48, 64)),
    ("inception4b", (160, 112, 224, 24, 64, 64)),
    ("inception4c", (128, 128, 256, 24, 64, 64)),
    ("inception4d", (112, 144, 288, 32, 64, 64)),
    ("inception4e", (256, 160, 320, 32, 128, 128)),
    ("pool4", None),
    ("inception5a", (256, 160, 320, 32, 128, 128)),
    ("inception5b", (384, 192, 384, 48, 128, 128)),
])


def conv_block(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
               batch_norm: bool = True, backend: str = "fastconv") -> nn.Sequential:
    """conv (a Conv1x1 when it is 1x1 with stride 1) -> [BatchNorm] -> ReLU."""
    L = layers(backend)
    if kernel_size == 1 and stride == 1 and padding == 0:
        conv = L.Conv1x1(in_channels, out_channels, bias=not batch_norm)
    else:
        conv = L.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                        bias=not batch_norm)
    mods = [("conv", conv)]
    if batch_norm:
        mods.append(("bn", nn.BatchNorm2d(out_channels)))
    mods.append(("relu", L.ReLU()))
    return nn.Sequential(OrderedDict(mods))


class Inception(nn.Module):
    """The reusable Inception block; ``out_channels`` = ch1x1 + ch3x3 + ch5x5 + pool_proj."""

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int, batch_norm: bool = True, backend: str = "fastconv"):
        super().__init__()
        L = layers(backend)
        kw = dict(batch_norm=batch_norm, backend=backend)
        self.in_channels = in_channels
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj
        self.branch1 = conv_block(in_channels, ch1x1, 1, **kw)
        self.branch2 = nn.Sequential(OrderedDict([
            ("reduce", conv_block(in_channels, ch3x3red, 1, **kw)),
            ("conv3x3", conv_block(ch3x3red, ch3x3, 3, padding=1, **kw)),
        ]))
        self.branch3 = nn.Sequential(OrderedDict([
            ("reduce", conv_block(in_channels, ch5x5red, 1, **kw)),
            ("conv5x5", conv_block(ch5x5red, ch5x5, 5, padding=2, **kw)),
        ]))
        self.branch4 = nn.Sequential(OrderedDict([
            ("pool", L.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True)),
            ("proj", conv_block(in_channels, pool_proj, 1, **kw)),
        ]))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


class GoogLeNet(nn.Module):
    def __init__(self, num_classes: int = 1000, in_channels: int = 3, batch_norm: bool = True,
                 dropout: float = 0.4, backend: str = "fastconv"):
        super().__init__()
        L = layers(backend)
        kw = dict(batch_norm=batch_norm, backend=backend)
        self.num_classes, self.in_channels, self.backend = num_classes, in_channels, backend
        self.stem = nn.Sequential(OrderedDict([
            ("conv1", conv_block(in_channels, 64, 7, stride=2, padding=3, **kw)),
            ("pool1", L.MaxPool2d(3, stride=2, ceil_mode=True)),
            ("conv2", conv_block(64, 64, 1, **kw)),
            ("conv3", conv_block(64, 192, 3, padding=1, **kw)),
            ("pool2", L.MaxPool2d(3, stride=2, ceil_mode=True)),
        ]))
        blocks: list[tuple[str, nn.Module]] = []
        c = 192
        for name, cfg in INCEPTION_CFG.items():
            if cfg is None:
                blocks.append((name, L.MaxPool2d(3, stride=2, ceil_mode=True)))
            else:
                block = Inception(c, *cfg, **kw)
                blocks.append((name, block))
                c = block.out_channels
        self.blocks = nn.Sequential(OrderedDict(blocks))
        self.avgpool = L.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.avgpool(self.blocks(self.stem(x)))
        return self.fc(self.dropout(self.flatten(x)))


def googlenet(num_classes: int = 1000, in_channels: int = 3, **kw) -> GoogLeNet:
    return GoogLeNet(num_classes=num_classes, in_channels=in_channels, **kw)
