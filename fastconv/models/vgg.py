"""VGG-16 (Simonyan & Zisserman, 2014, configuration D): 3x3 convs throughout,
padding 1, stride 1, in five stages of 64, 128, 256, 512, 512 channels (2, 2,
3, 3, 3 convs) each closed by a 2x2/2 max pool; then FC 4096, FC 4096, FC
classes with dropout 0.5. For a 224x224 input the last pool gives 7x7x512, so
the first FC layer holds 7*7*512*4096 = 102,760,448 weights.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ._common import layers, pair, trace_hw

CFG_D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG(nn.Module):
    def __init__(self, cfg=CFG_D, num_classes: int = 1000, in_channels: int = 3, input_size=224,
                 batch_norm: bool = False, dropout: float = 0.5, backend: str = "fastconv"):
        super().__init__()
        L = layers(backend)
        self.num_classes, self.in_channels, self.input_size = num_classes, in_channels, pair(input_size)
        self.batch_norm, self.backend = batch_norm, backend
        mods: list[tuple[str, nn.Module]] = []
        c, stage, idx = in_channels, 1, 1
        for v in cfg:
            if v == "M":
                mods.append((f"pool{stage}", L.MaxPool2d(kernel_size=2, stride=2)))
                stage, idx = stage + 1, 1
                continue
            mods.append((f"conv{stage}_{idx}", L.Conv2d(c, v, kernel_size=3, padding=1, bias=not batch_norm)))
            if batch_norm:
                mods.append((f"bn{stage}_{idx}", nn.BatchNorm2d(v)))
            mods.append((f"relu{stage}_{idx}", L.ReLU()))
            c, idx = v, idx + 1
        self.features = nn.Sequential(OrderedDict(mods))
        h, w = trace_hw(self.features, self.input_size, "VGG")
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(OrderedDict([
            ("fc6", nn.Linear(c * h * w, 4096)),
            ("relu6", L.ReLU()),
            ("drop6", nn.Dropout(dropout)),
            ("fc7", nn.Linear(4096, 4096)),
            ("relu7", L.ReLU()),
            ("drop7", nn.Dropout(dropout)),
            ("fc8", nn.Linear(4096, num_classes)),
        ]))

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))


def vgg16(num_classes: int = 1000, in_channels: int = 3, input_size=224, **kw) -> VGG:
    return VGG(CFG_D, num_classes=num_classes, in_channels=in_channels, input_size=input_size, **kw)


def vgg16_bn(num_classes: int = 1000, in_channels: int = 3, input_size=224, **kw) -> VGG:
    kw.setdefault("batch_norm", True)
    return VGG(CFG_D, num_classes=num_classes, in_channels=in_channels, input_size=input_size, **kw)
