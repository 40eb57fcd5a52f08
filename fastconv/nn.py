"""Tier 3: torch.nn-compatible layers running on fastconv's kernels.

Each layer subclasses its torch.nn counterpart, so constructor signatures,
defaults, parameter names, shapes, initialisation and state_dicts are torch's,
and ``isinstance(layer, torch.nn.Conv2d)`` still holds for tools that look for
torch layers. Only ``forward`` changes. Arguments fastconv does not implement
raise NotImplementedError at construction.
"""
from __future__ import annotations

import torch

from . import functional as F

__all__ = ["Conv2d", "Conv1d", "Conv1x1", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "ReLU", "GuidedReLU",
           "convert"]


def _zeros_padding_only(padding_mode):
    if padding_mode != "zeros":
        raise NotImplementedError(f"padding_mode: fastconv supports 'zeros' only, got {padding_mode!r}")


class Conv2d(torch.nn.Conv2d):
    """torch.nn.Conv2d on fastconv's conv2d kernel. ``variant='reference'`` selects the plain loop."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        _zeros_padding_only(padding_mode)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype)
        self.variant = "fast"

    def forward(self, input):
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
                        variant=self.variant)


class Conv1d(torch.nn.Conv1d):
    """torch.nn.Conv1d on fastconv's kernels (conv2d with H = 1)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        _zeros_padding_only(padding_mode)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype)
        self.variant = "fast"

    def forward(self, input):
        return F.conv1d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
                        variant=self.variant)


class Conv1x1(torch.nn.Conv2d):
    """The 1×1 channel reduction (GoogLeNet's inception module) on fastconv's GEMM kernel.

    Parameters are those of ``torch.nn.Conv2d(in_channels, out_channels, 1)``: weight (K, C, 1, 1), bias (K,),
    so a Conv2d state_dict loads into it.
    """

    def __init__(self, in_channels, out_channels, bias=True, device=None, dtype=None):
        super().__init__(in_channels, out_channels, 1, bias=bias, device=device, dtype=dtype)
        self.variant = "fast"

    def forward(self, input):
        return F.conv1x1(input, self.weight, self.bias, variant=self.variant)

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, bias={self.bias is not None}"


class MaxPool2d(torch.nn.MaxPool2d):
    """torch.nn.MaxPool2d on fastconv's max-pooling kernels."""

    def forward(self, input):
        return F.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                            self.return_indices)


class AvgPool2d(torch.nn.AvgPool2d):
    """torch.nn.AvgPool2d on fastconv's average-pooling kernels."""

    def forward(self, input):
        return F.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)


class AdaptiveAvgPool2d(torch.nn.AdaptiveAvgPool2d):
    """Global average pooling: torch.nn.AdaptiveAvgPool2d with output_size 1 only."""

    def __init__(self, output_size=1):
        if output_size not in (1, (1, 1), [1, 1]):
            raise NotImplementedError(f"output_size: fastconv supports 1 (global average pooling) only, got "
                                      f"{output_size!r}")
        super().__init__(output_size)

    def forward(self, input):
        return F.global_avg_pool2d(input)


class ReLU(torch.nn.ReLU):
    """torch.nn.ReLU on fastconv's relu kernels (forward and backward)."""

    def forward(self, input):
        return F.relu(input, inplace=self.inplace)


class GuidedReLU(ReLU):
    """relu whose backward applies guided backprop's rule (mode 'guided': grad·[x > 0]·[grad > 0])
    or the deconvnet rule (mode 'deconvnet': grad·[grad > 0])."""

    def __init__(self, inplace: bool = False, mode: str = "guided"):
        super().__init__(inplace)
        if mode not in ("guided", "deconvnet"):
            raise ValueError(f"mode: expected 'guided' or 'deconvnet', got {mode!r}")
        self.mode = mode

    def forward(self, input):
        # Never in place: the guided rule needs the forward output intact.
        return F.guided_relu(input, self.mode)

    def extra_repr(self):
        return f"mode={self.mode!r}"


# ---------------------------------------------------------------- convert ---

_OURS = (Conv2d, Conv1d, Conv1x1, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, ReLU)


def _share(new, old):
    """Give new the old module's parameters and buffers (the same objects), its training flag and hooks."""
    new.weight = old.weight
    new.bias = old.bias
    new.train(old.training)
    for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
        getattr(new, name).update(getattr(old, name))
    return new


def _swap(m, guided, mode):
    """fastconv's twin of a torch layer, or None if there is none we can run."""
    if guided and isinstance(m, torch.nn.ReLU) and not isinstance(m, GuidedReLU):
        return GuidedReLU(mode=mode)
    if isinstance(m, _OURS):
        return None
    if type(m) is torch.nn.ReLU:
        return ReLU(m.inplace)
    if type(m) is torch.nn.Conv2d and m.padding_mode == "zeros":
        fk = {"device": m.weight.device, "dtype": m.weight.dtype}
        one = (m.kernel_size == (1, 1) and m.stride == (1, 1) and m.padding in ((0, 0), "valid")
               and m.groups == 1)
        if one:
            return _share(Conv1x1(m.in_channels, m.out_channels, m.bias is not None, **fk), m)
        return _share(Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                             m.groups, m.bias is not None, **fk), m)
    if type(m) is torch.nn.Conv1d and m.padding_mode == "zeros":
        fk = {"device": m.weight.device, "dtype": m.weight.dtype}
        return _share(Conv1d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                             m.groups, m.bias is not None, **fk), m)
    if type(m) is torch.nn.MaxPool2d:
        return MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation, m.return_indices, m.ceil_mode)
    if type(m) is torch.nn.AvgPool2d:
        return AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, m.divisor_override)
    if type(m) is torch.nn.AdaptiveAvgPool2d and m.output_size in (1, (1, 1)):
        return AdaptiveAvgPool2d(1)
    return None


def convert(model: torch.nn.Module, guided: bool = False, mode: str = "guided") -> torch.nn.Module:
    """Swap, in place, every torch.nn Conv2d, Conv1d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1) and ReLU of
    model for fastconv's layer, keeping the very same weight and bias Parameters (an optimiser built before
    the swap keeps working). With guided=True every ReLU (ours included) becomes a GuidedReLU(mode).
    A module object used at several places is replaced by one new object. Layers with settings fastconv does
    not run (e.g. padding_mode='reflect') are left as they are. Returns model.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if mode not in ("guided", "deconvnet"):
        raise ValueError(f"mode: expected 'guided' or 'deconvnet', got {mode!r}")
    memo = {}

    def visit(parent):
        for name, child in list(parent.named_children()):
            if id(child) not in memo:
                memo[id(child)] = _swap(child, guided, mode)
                if memo[id(child)] is None:
                    visit(child)
            new = memo[id(child)]
            if new is not None:
                setattr(parent, name, new)

    top = _swap(model, guided, mode)
    if top is not None:
        raise TypeError("model: convert() swaps the layers inside a model; wrap a single layer in "
                        "torch.nn.Sequential to convert it")
    visit(model)
    return model
