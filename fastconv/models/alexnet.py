"""AlexNet (Krizhevsky et al., 2012) and ZFNet (Zeiler & Fergus, 2013).

AlexNet, single-tower (no grouped convs; the notes count
(5x5x96)x256 for conv2, i.e. ungrouped), 227x227 input, LRN omitted:
conv 11x11/4 96 -> pool 3/2 -> conv 5x5 256 -> pool 3/2 -> conv 3x3 384 ->
conv 3x3 384 -> conv 3x3 256 -> pool 3/2 -> FC 4096 -> FC 4096 -> FC classes,
dropout 0.5 before the first two FC layers.

``variant="paper"`` (default, ``alexnet``) pads conv2 by 2 and conv3-5 by 1 as
the paper does: 55 -> 27 -> 27 -> 13 -> 13 -> 13 -> 13 -> 6, FC1 input 6x6x256.
``variant="notes"`` (``alexnet_notes``) is the lecture notes' unpadded version
(P = 0 everywhere): 55 -> 27 -> 23 -> 11 -> 9 -> 7 -> 5 -> 2, FC1 input 2x2x256.
The conv weight counts are the same in both.

ZFNet: AlexNet with conv1 7x7/2 (instead of 11x11/4) and conv2 stride 2; the
notes (and the paper's best model, its Table 3) widen conv3/4/5 from
384/384/256 to 512/1024/512 (``widths``). 224x224 input:
110 -> 55 -> 26 -> 13 -> 13 -> 13 -> 13 -> 6.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ._common import layers, pair, trace_hw


def _classifier(in_features: int, num_classes: int, dropout: float, L) -> nn.Sequential:
    return nn.Sequential(OrderedDict([
        ("drop6", nn.Dropout(dropout)),
        ("fc6", nn.Linear(in_features, 4096)),
        ("relu6", L.ReLU()),
        ("drop7", nn.Dropout(dropout)),
        ("fc7", nn.Linear(4096, 4096)),
        ("relu7", L.ReLU()),
        ("fc8", nn.Linear(4096, num_classes)),
    ]))


class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 1000, in_channels: int = 3, input_size=227, variant: str = "paper",
                 dropout: float = 0.5, backend: str = "fastconv"):
        super().__init__()
        if variant not in ("paper", "notes"):
            raise ValueError(f"variant must be 'paper' or 'notes', got {variant!r}")
        L = layers(backend)
        p2, p3 = (2, 1) if variant == "paper" else (0, 0)
        self.num_classes, self.in_channels, self.input_size = num_classes, in_channels, pair(input_size)
        self.variant, self.backend = variant, backend
        self.features = nn.Sequential(OrderedDict([
            ("conv1", L.Conv2d(in_channels, 96, kernel_size=11, stride=4)),
            ("relu1", L.ReLU()),
            ("pool1", L.MaxPool2d(kernel_size=3, stride=2)),
            ("conv2", L.Conv2d(96, 256, kernel_size=5, padding=p2)),
            ("relu2", L.ReLU()),
            ("pool2", L.MaxPool2d(kernel_size=3, stride=2)),
            ("conv3", L.Conv2d(256, 384, kernel_size=3, padding=p3)),
            ("relu3", L.ReLU()),
            ("conv4", L.Conv2d(384, 384, kernel_size=3, padding=p3)),
            ("relu4", L.ReLU()),
            ("conv5", L.Conv2d(384, 256, kernel_size=3, padding=p3)),
            ("relu5", L.ReLU()),
            ("pool5", L.MaxPool2d(kernel_size=3, stride=2)),
        ]))
        h, w = trace_hw(self.features, self.input_size, f"AlexNet ({variant})")
        self.flatten = nn.Flatten()
        self.classifier = _classifier(256 * h * w, num_classes, dropout, L)

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))


class ZFNet(nn.Module):
    def __init__(self, num_classes: int = 1000, in_channels: int = 3, input_size=224,
                 widths: tuple[int, int, int] = (512, 1024, 512), dropout: float = 0.5,
                 backend: str = "fastconv"):
        super().__init__()
        L = layers(backend)
        c3, c4, c5 = widths
        self.num_classes, self.in_channels, self.input_size = num_classes, in_channels, pair(input_size)
        self.widths, self.backend = tuple(widths), backend
        self.features = nn.Sequential(OrderedDict([
            ("conv1", L.Conv2d(in_channels, 96, kernel_size=7, stride=2, padding=1)),
            ("relu1", L.ReLU()),
            ("pool1", L.MaxPool2d(kernel_size=3, stride=2, padding=1)),
            ("conv2", L.Conv2d(96, 256, kernel_size=5, stride=2)),
            ("relu2", L.ReLU()),
            ("pool2", L.MaxPool2d(kernel_size=3, stride=2, padding=1)),
            ("conv3", L.Conv2d(256, c3, kernel_size=3, padding=1)),
            ("relu3", L.ReLU()),
            ("conv4", L.Conv2d(c3, c4, kernel_size=3, padding=1)),
            ("relu4", L.ReLU()),
            ("conv5", L.Conv2d(c4, c5, kernel_size=3, padding=1)),
            ("relu5", L.ReLU()),
            ("pool5", L.MaxPool2d(kernel_size=3, stride=2)),
        ]))
        h, w = trace_hw(self.features, self.input_size, "ZFNet")
        self.flatten = nn.Flatten()
        self.classifier = _classifier(c5 * h * w, num_classes, dropout, L)

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))


def alexnet(num_classes: int = 1000, in_channels: int = 3, input_size=227, **kw) -> AlexNet:
    return AlexNet(num_classes=num_classes, in_channels=in_channels, input_size=input_size, **kw)


def alexnet_notes(num_classes: int = 1000, in_channels: int = 3, input_size=227, **kw) -> AlexNet:
    kw.setdefault("variant", "notes")
    return AlexNet(num_classes=num_classes, in_channels=in_channels, input_size=input_size, **kw)


def zfnet(num_classes: int = 1000, in_channels: int = 3, input_size=224, **kw) -> ZFNet:
    return ZFNet(num_classes=num_classes, in_channels=in_channels, input_size=input_size, **kw)
