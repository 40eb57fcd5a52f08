"""LeNet-5 (LeCun et al., 1998) as in the notes: conv 5x5x6 -> pool 2/2 ->
conv 5x5x16 -> pool 2/2 -> flatten (5x5x16 = 400 for a 32x32 input) -> FC 120
-> FC 84 -> FC num_classes.

Modern choices, as the notes' drawing: ReLU instead of scaled tanh, max pooling
(``pool="avg"`` for the original's average subsampling) and a fully connected
C3 (LeCun's C3 connects each of the 16 maps to only some of the 6 inputs: 1,516
parameters instead of 2,416).
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ._common import layers, pair, trace_hw


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size=32, pool: str = "max",
                 backend: str = "fastconv"):
        super().__init__()
        L = layers(backend)
        if pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
        Pool = L.MaxPool2d if pool == "max" else L.AvgPool2d
        self.num_classes, self.in_channels, self.input_size = num_classes, in_channels, pair(input_size)
        self.backend = backend
        self.features = nn.Sequential(OrderedDict([
            ("conv1", L.Conv2d(in_channels, 6, kernel_size=5)),
            ("relu1", L.ReLU()),
            ("pool1", Pool(kernel_size=2, stride=2)),
            ("conv2", L.Conv2d(6, 16, kernel_size=5)),
            ("relu2", L.ReLU()),
            ("pool2", Pool(kernel_size=2, stride=2)),
        ]))
        h, w = trace_hw(self.features, self.input_size, "LeNet-5")
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(16 * h * w, 120)),
            ("relu3", L.ReLU()),
            ("fc2", nn.Linear(120, 84)),
            ("relu4", L.ReLU()),
            ("fc3", nn.Linear(84, num_classes)),
        ]))

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))


def lenet5(num_classes: int = 10, in_channels: int = 1, input_size=32, **kw) -> LeNet5:
    return LeNet5(num_classes=num_classes, in_channels=in_channels, input_size=input_size, **kw)
