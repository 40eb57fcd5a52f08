"""Shared pieces of the model zoo: the layer namespace a model is built from and
spatial-size tracing through a stack of conv/pool layers.

Every model takes ``backend="fastconv"`` (the default: every conv, pool and relu
is a :mod:`fastconv.nn` layer) or ``backend="torch"`` (the same architecture,
same module names and parameter shapes, built from :mod:`torch.nn`; this is the
"torch twin" that ``fastconv train`` times against and that the tests compare
with). BatchNorm, Linear, Dropout and Flatten always come from torch.
"""
from __future__ import annotations

import types
from typing import Iterable

import torch
from torch import nn

BACKENDS = ("fastconv", "torch")


class TorchConv1x1(nn.Conv2d):
    """torch.nn.Conv2d(in, out, 1): the torch twin of fastconv.nn.Conv1x1 (same
    constructor, weight (K, C, 1, 1), torch's own conv kernel)."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, device=None, dtype=None):
        super().__init__(in_channels, out_channels, 1, bias=bias, device=device, dtype=dtype)


_TORCH_LAYERS = types.SimpleNamespace(
    Conv2d=nn.Conv2d,
    Conv1d=nn.Conv1d,
    Conv1x1=TorchConv1x1,
    MaxPool2d=nn.MaxPool2d,
    AvgPool2d=nn.AvgPool2d,
    AdaptiveAvgPool2d=nn.AdaptiveAvgPool2d,
    ReLU=nn.ReLU,
)


def layers(backend: str = "fastconv"):
    """The namespace (Conv2d, Conv1x1, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d,
    ReLU) a model is built from."""
    if backend == "fastconv":
        import fastconv.nn as fnn
        return fnn
    if backend == "torch":
        return _TORCH_LAYERS
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"expected an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def is_conv(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) or type(m).__name__ in ("Conv2d", "Conv1x1", "TorchConv1x1")


def is_pool(m: nn.Module) -> bool:
    return isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) or type(m).__name__ in ("MaxPool2d", "AvgPool2d")


def layer_output_hw(m: nn.Module, hw: tuple[int, int]) -> tuple[int, int]:
    """Output (H, W) of one conv or pool layer for input (H, W), by
    fastconv.conv_output_size (the one definition of the formula). Layers that
    keep the spatial size (ReLU, BatchNorm, Dropout, ...) return ``hw``."""
    from fastconv import conv_output_size

    if is_conv(m):
        k = pair(getattr(m, "kernel_size", 1))
        s = pair(getattr(m, "stride", 1))
        pad = getattr(m, "padding", 0)
        d = pair(getattr(m, "dilation", 1))
        if isinstance(pad, str):
            if pad == "same":
                return hw
            pad = 0  # 'valid'
        p = pair(pad)
        return tuple(conv_output_size(hw[i], k[i], s[i], p[i], d[i]) for i in range(2))  # type: ignore[return-value]
    if is_pool(m):
        k = pair(m.kernel_size)
        s = pair(m.stride if m.stride is not None else m.kernel_size)
        p = pair(m.padding)
        d = pair(getattr(m, "dilation", 1))
        ceil = bool(getattr(m, "ceil_mode", False))
        out = tuple(conv_output_size(hw[i], k[i], s[i], p[i], d[i], ceil) for i in range(2))
        return out  # type: ignore[return-value]
    return hw


def trace_hw(modules: Iterable[nn.Module], hw, what: str = "model") -> tuple[int, int]:
    """Spatial size after a flat stack of layers; raises a clear ValueError when
    the input is too small for the stack."""
    hw = pair(hw)
    start = hw
    for m in modules:
        new = layer_output_hw(m, hw)
        if new[0] < 1 or new[1] < 1:
            raise ValueError(
                f"input {start[0]}x{start[1]} is too small for {what}: {type(m).__name__} "
                f"turns {hw[0]}x{hw[1]} into {new[0]}x{new[1]}")
        hw = new
    return hw


def he_init(model: nn.Module) -> None:
    """He et al. initialisation of every conv (the notes' bag of tricks), BN to
    identity, as torchvision does for ResNet."""
    for m in model.modules():
        if is_conv(m):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@torch.no_grad()
def load_twin_state(dst: nn.Module, src: nn.Module) -> None:
    """Copy ``src``'s state_dict into ``dst`` (e.g. a fastconv model into its torch
    twin), reshaping 1x1 conv weights stored as (K, C) vs (K, C, 1, 1)."""
    sd = src.state_dict()
    target = dst.state_dict()
    out = {}
    for k, v in sd.items():
        if k in target and target[k].shape != v.shape and target[k].numel() == v.numel():
            v = v.reshape(target[k].shape)
        out[k] = v
    dst.load_state_dict(out)
