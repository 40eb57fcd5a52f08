"""Gradient and perturbation attributions: saliency, guided backprop, deconvnet, occlusion.

Functions return tensors shaped like the input. The classes mirror Captum's call shapes
(``Saliency(model).attribute(inputs, target=...)`` etc.) so code written for Captum runs unchanged; unlike
Captum they never hook the user's model: the guided rules run on a weight-sharing copy whose ReLUs are
``fastconv.nn.GuidedReLU`` (fastconv's guided-relu kernel), so in-place ReLUs, a ReLU module used twice or a
functional ``F.relu`` cannot corrupt the result, and an existing ``inputs.grad`` is left alone.
"""
from __future__ import annotations

import contextlib
import itertools
import math

import torch

from ._common import (capture, guided_functional, guided_model, input_gradient, prepare_input, select_scores,
                      target_indices)

__all__ = ["saliency", "guided_backprop", "deconvnet", "occlusion", "occlusion_map",
           "Saliency", "GuidedBackprop", "Deconvolution", "Occlusion"]


def _gradient(model, inputs, target, mode=None, layer=None):
    x, unbatched = prepare_input(inputs)
    net = model
    if mode is not None and isinstance(model, torch.nn.Module):
        net = guided_model(model, mode)   # the guided rules change only backward: same forward values
    if layer is not None:
        if not isinstance(layer, str):    # find the layer's counterpart in the copy by its name
            names = {id(m): n for n, m in model.named_modules()}
            if id(layer) not in names:
                raise ValueError("layer is not a submodule of model")
            layer = names[id(layer)]

    def fn(leaf):
        with (guided_functional(mode) if mode else contextlib.nullcontext()):
            if layer is None:
                return select_scores(net(leaf), target)
            with capture(net, [layer]) as store:
                net(leaf)
            return _neuron(store[0], target)

    g = input_gradient(fn, x)
    return g[0] if unbatched else g


def _neuron(act, target):
    """One unit per example of a (N, C, H, W) activation: target (c, y, x), or channel c at its strongest
    position (the notes' "retain this neuron and set all others to zero")."""
    if isinstance(target, (tuple, list)) and len(target) == 3:
        c, y, x = target
        return act[:, c, y, x]
    if not isinstance(target, int):
        raise ValueError("with layer=, target must be a channel index or a (channel, y, x) tuple")
    flat = act[:, target].flatten(1)
    return flat.gather(1, flat.detach().argmax(1, keepdim=True))[:, 0]


def saliency(model, inputs, target=None, abs: bool = True, layer=None) -> torch.Tensor:
    """Vanilla gradient |d score_target / d input| (Simonyan et al. 2013); same shape as ``inputs``.

    target: None (predicted class), an int, or one index per example. ``abs=False`` keeps the sign.
    ``layer``: differentiate one unit of that layer instead (see :func:`guided_backprop`).
    """
    g = _gradient(model, inputs, target, layer=layer)
    return g.abs() if abs else g


def guided_backprop(model, inputs, target=None, layer=None) -> torch.Tensor:
    """Guided backpropagation (Springenberg et al. 2014): the gradient with every ReLU's backward replaced by
    the guided rule (gradient passes only where the ReLU input is positive *and* the gradient is positive),
    computed through fastconv's guided-relu kernel. Same shape as ``inputs``.

    With ``layer`` (a module or its name) the gradient is that of one unit of the layer instead of a class
    score: ``target`` is then a channel (its strongest position is used) or a (channel, y, x) tuple.
    """
    return _gradient(model, inputs, target, mode="guided", layer=layer)


def deconvnet(model, inputs, target=None, layer=None) -> torch.Tensor:
    """Deconvnet attribution (Zeiler & Fergus 2014): ReLU backward passes the positive part of the gradient,
    whatever the forward input. Same shape as ``inputs``; ``layer`` as in :func:`guided_backprop`."""
    return _gradient(model, inputs, target, mode="deconvnet", layer=layer)


# ---------------------------------------------------------------------------------------------- occlusion

def _window_offsets(size: int, window: int, stride: int, cover: bool) -> list[int]:
    """Start offsets of a sliding window along one dimension.

    cover=False: the windows that fit (fastconv.conv_output_size(size, window, stride) of them).
    cover=True: Captum's rule, ceil((size - window) / stride) + 1 windows, the last one cut off at the edge.
    """
    if window > size:
        raise ValueError(f"sliding window {window} is larger than the input dimension {size}")
    if cover:
        n = math.ceil((size - window) / stride) + 1
    else:
        from fastconv import conv_output_size
        n = conv_output_size(size, window, stride)
    return [i * stride for i in range(n)]


def _occluded_scores(forward, x, target_idx, window, offsets, baseline, batch_size, to_prob):
    """Scores of the target class for every window position: (n_windows, N), windows in row-major order.

    x: (N, *dims); window: per-dim window size; offsets: per-dim list of start offsets. The occluded copies are
    evaluated ``batch_size`` windows at a time (batch_size * N images per forward pass).
    """
    n = x.shape[0]
    base = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
    base = base.expand_as(x) if base.dim() == 0 or base.shape != x.shape else base
    positions = list(itertools.product(*offsets))
    scores = []
    with torch.no_grad():
        for start in range(0, len(positions), batch_size):
            chunk = positions[start:start + batch_size]
            xs = x.unsqueeze(0).repeat(len(chunk), *([1] * x.dim()))
            for p, pos in enumerate(chunk):
                sl = tuple(slice(o, o + w) for o, w in zip(pos, window))
                xs[(p, slice(None)) + sl] = base[(slice(None),) + sl]
            out = forward(xs.reshape(len(chunk) * n, *x.shape[1:]))
            out = out.reshape(len(chunk) * n, -1)
            if to_prob:
                out = out.softmax(dim=1)
            s = out.gather(1, target_idx.repeat(len(chunk))[:, None])[:, 0]
            scores.append(s.reshape(len(chunk), n))
    return positions, torch.cat(scores, 0)


def _base_scores(forward, x, target, to_prob):
    with torch.no_grad():
        out = forward(x)
    out = out.reshape(x.shape[0], -1)
    t = target_indices(out, target)
    if to_prob:
        out = out.softmax(dim=1)
    return t, out.gather(1, t[:, None])[:, 0]


def occlusion_map(model, inputs, target=None, window=8, stride=4, baseline=0.5, batch_size=64,
                  probability: bool = True) -> torch.Tensor:
    """Occlusion heatmap (Zeiler & Fergus 2014): slide a ``window`` x ``window`` patch of ``baseline`` (grey by
    default) over the image, all channels at once, and record the drop of the target class probability
    (``probability=False``: of its score). Returns (N, gh, gw), or (gh, gw) for one (C, H, W) image, with
    gh = fastconv.conv_output_size(H, window, stride) (windows that fit) and likewise gw; a large value means the
    region mattered. The occluded images are evaluated ``batch_size`` windows per forward pass.
    """
    x, unbatched = prepare_input(inputs)
    wh, ww = (window, window) if isinstance(window, int) else tuple(window)
    sh, sw = (stride, stride) if isinstance(stride, int) else tuple(stride)
    c, h, w = x.shape[1:]
    offsets = [[0], _window_offsets(h, wh, sh, False), _window_offsets(w, ww, sw, False)]
    t, base = _base_scores(model, x, target, probability)
    _, occ = _occluded_scores(model, x, t, (c, wh, ww), offsets, baseline, batch_size, probability)
    drop = (base[None, :] - occ).T.reshape(x.shape[0], len(offsets[1]), len(offsets[2]))
    return drop[0] if unbatched else drop


def occlusion(model, inputs, target=None, sliding_window_shapes=None, strides=None, baselines=0.0,
              batch_size: int = 64, probability: bool = False) -> torch.Tensor:
    """Per-feature occlusion attribution, Captum's definition: every window position (windows over all
    non-batch dimensions, the last one cut off at the edge so that everything is covered) assigns its output
    drop to the features it covers, and each feature gets the mean over the windows that covered it.
    Same shape as ``inputs``. ``sliding_window_shapes`` defaults to (C, 4, 4) for images; ``strides`` to 1.
    """
    x, unbatched = prepare_input(inputs)
    dims = x.shape[1:]
    if sliding_window_shapes is None:
        sliding_window_shapes = (dims[0],) + (4,) * (len(dims) - 1) if len(dims) > 1 else (1,)
    window = tuple(sliding_window_shapes)
    if len(window) != len(dims):
        raise ValueError(f"sliding_window_shapes: expected {len(dims)} sizes (one per non-batch dim), "
                         f"got {window}")
    if strides is None:
        strides = 1
    stride = (strides,) * len(dims) if isinstance(strides, int) else tuple(strides)
    if len(stride) != len(dims):
        raise ValueError(f"strides: expected an int or {len(dims)} sizes, got {strides}")
    for d, (n, wd, sd) in enumerate(zip(dims, window, stride)):
        if wd < n and sd > wd:
            raise ValueError(f"strides: stride {sd} exceeds the window {wd} in dim {d + 1}; pixels would be "
                             "skipped")
    offsets = [_window_offsets(n, wd, sd, True) for n, wd, sd in zip(dims, window, stride)]
    t, base = _base_scores(model, x, target, probability)
    positions, occ = _occluded_scores(model, x, t, window, offsets, baselines, batch_size, probability)
    diff = base[None, :] - occ                                  # (n_windows, N)
    total = torch.zeros_like(x)
    count = torch.zeros(dims, dtype=x.dtype, device=x.device)
    for p, pos in enumerate(positions):
        sl = tuple(slice(o, o + wd) for o, wd in zip(pos, window))
        total[(slice(None),) + sl] += diff[p].reshape((-1,) + (1,) * len(dims))
        count[sl] += 1
    attr = total / count
    return attr[0] if unbatched else attr


# ------------------------------------------------------------------------------ Captum-shaped classes

class _Attribution:
    """Captum-shaped wrapper. ``target=None`` means each example's predicted class (Captum needs an explicit
    target for a multi-class output)."""

    def __init__(self, forward_func):
        self.forward_func = forward_func


class Saliency(_Attribution):
    """``Saliency(model).attribute(inputs, target=None, abs=True)`` -> tensor shaped like ``inputs``."""

    def attribute(self, inputs, target=None, abs: bool = True):
        return saliency(self.forward_func, inputs, target, abs=abs)


class GuidedBackprop(_Attribution):
    """``GuidedBackprop(model).attribute(inputs, target=None)``; the model must be an nn.Module."""

    def attribute(self, inputs, target=None):
        return guided_backprop(self.forward_func, inputs, target)


class Deconvolution(_Attribution):
    """``Deconvolution(model).attribute(inputs, target=None)``; the model must be an nn.Module."""

    def attribute(self, inputs, target=None):
        return deconvnet(self.forward_func, inputs, target)


class Occlusion(_Attribution):
    """``Occlusion(model).attribute(inputs, sliding_window_shapes, strides=None, baselines=None, target=None,
    perturbations_per_eval=64)`` -> tensor shaped like ``inputs`` (Captum's averaging over windows)."""

    def attribute(self, inputs, sliding_window_shapes, strides=None, baselines=None, target=None,
                  perturbations_per_eval: int = 64):
        return occlusion(self.forward_func, inputs, target, sliding_window_shapes, strides,
                         0.0 if baselines is None else baselines, batch_size=perturbations_per_eval)
