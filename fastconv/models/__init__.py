"""The networks of the lecture notes, built from fastconv layers.

Every conv, pool and relu is a :mod:`fastconv.nn` layer (1x1 channel
reductions are ``fastconv.nn.Conv1x1``); BatchNorm, Linear, Dropout and Flatten
come from torch. Each constructor takes ``num_classes`` and ``in_channels``,
and ``input_size`` (int or (H, W)) where the classifier's size depends on it,
plus ``backend="torch"`` to build the identical torch.nn network.

>>> import fastconv.models as M
>>> M.list_models()                                    # doctest: +ELLIPSIS
['alexnet', 'alexnet_notes', 'googlenet', 'lenet5', ...]
>>> net = M.get("lenet5", num_classes=10)               # doctest: +SKIP
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from torch import nn

from ._common import BACKENDS, layers, load_twin_state
from .alexnet import AlexNet, ZFNet, alexnet, alexnet_notes, zfnet
from .googlenet import GoogLeNet, Inception, conv_block, googlenet
from .lenet import LeNet5, lenet5
from .resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50, resnet_small
from .vgg import VGG, vgg16, vgg16_bn


@dataclass(frozen=True)
class ModelInfo:
    name: str
    build: Callable[..., nn.Module]
    input_size: tuple[int, int, int]  # the default / canonical (C, H, W)
    description: str


_MODELS: dict[str, ModelInfo] = {}
_ALIASES = {"lenet": "lenet5", "lenet-5": "lenet5", "vgg": "vgg16", "vgg-16": "vgg16", "resnet20": "resnet_small",
            "resnet-small": "resnet_small", "inception": "googlenet", "zf": "zfnet"}


def _register(name, build, input_size, description):
    _MODELS[name] = ModelInfo(name, build, input_size, description)


_register("lenet5", lenet5, (1, 32, 32), "LeNet-5: 2 conv + 3 FC, 61.7 K parameters")
_register("alexnet", alexnet, (3, 227, 227), "AlexNet as in the paper (padded conv2-5), single tower")
_register("alexnet_notes", alexnet_notes, (3, 227, 227), "AlexNet as drawn in the notes (no padding, FC1 in 2x2x256)")
_register("zfnet", zfnet, (3, 224, 224), "ZFNet: 7x7/2 conv1, conv3-5 widened to 512/1024/512")
_register("vgg16", vgg16, (3, 224, 224), "VGG-16 (configuration D)")
_register("vgg16_bn", vgg16_bn, (3, 224, 224), "VGG-16 with BatchNorm after every conv")
_register("googlenet", googlenet, (3, 224, 224), "GoogLeNet / Inception v1 (with BatchNorm, no aux heads)")
_register("resnet18", resnet18, (3, 224, 224), "ResNet-18 (basic blocks)")
_register("resnet34", resnet34, (3, 224, 224), "ResNet-34 (basic blocks)")
_register("resnet50", resnet50, (3, 224, 224), "ResNet-50 (bottleneck blocks)")
_register("resnet_small", resnet_small, (3, 32, 32), "ResNet-20 for 32x32 inputs (CIFAR-style)")


def list_models() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_MODELS)


def canonical_name(name: str) -> str:
    key = name.strip().lower().replace(" ", "")
    key = _ALIASES.get(key, key)
    if key not in _MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(list_models())}")
    return key


def info(name: str) -> ModelInfo:
    return _MODELS[canonical_name(name)]


def get(name: str, **kwargs) -> nn.Module:
    """Build a registered model by name: ``get("resnet_small", num_classes=10)``.

    ``input_size`` is accepted by every model; the ones that end in global
    average pooling (GoogLeNet, ResNet) work for any large enough input and
    ignore it.
    """
    entry = info(name)
    params = inspect.signature(entry.build).parameters
    takes_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if "input_size" in kwargs and "input_size" not in params:
        kwargs.pop("input_size")
    if not takes_kw:
        unknown = set(kwargs) - set(params)
        if unknown:
            raise TypeError(f"{entry.name}() got unexpected arguments {sorted(unknown)}")
    return entry.build(**kwargs)


__all__ = [
    "AlexNet", "BACKENDS", "BasicBlock", "Bottleneck", "GoogLeNet", "Inception", "LeNet5", "ModelInfo", "ResNet",
    "VGG", "ZFNet", "alexnet", "alexnet_notes", "canonical_name", "conv_block", "get", "googlenet", "info",
    "layers", "lenet5", "list_models", "load_twin_state", "resnet18", "resnet34", "resnet50", "resnet_small",
    "vgg16", "vgg16_bn", "zfnet",
]
