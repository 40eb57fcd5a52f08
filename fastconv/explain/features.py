"""What single units respond to: first-layer filters as images, receptive fields, top-activating patches."""
from __future__ import annotations

from typing import NamedTuple

import torch

from ._common import capture, model_device, prepare_input, resolve_layer

__all__ = ["first_conv", "filters", "ReceptiveField", "receptive_field", "TopPatches", "top_patches"]


def first_conv(model: torch.nn.Module) -> torch.nn.Module:
    """The first module (in registration order) holding a 4-D ``weight``: the first convolution."""
    for m in model.modules():
        w = getattr(m, "weight", None)
        if isinstance(w, torch.Tensor) and w.dim() == 4:
            return m
    raise ValueError("model has no convolution layer (no module with a 4-D weight)")


def filters(model_or_weight, layer=None) -> torch.Tensor:
    """Filters as images: each filter w scaled to unit norm, w / ||w||.

    Under ||x|| = 1 the input that maximises a neuron's pre-activation w.x is x = w / ||w|| (Cauchy-Schwarz), so
    for the first layer these images *are* the inputs each neuron likes best. Returns (K, C, kh, kw).
    ``model_or_weight``: a weight tensor, or a model (its first convolution, or ``layer`` when given).
    """
    if isinstance(model_or_weight, torch.Tensor):
        w = model_or_weight
    else:
        mod = first_conv(model_or_weight) if layer is None else resolve_layer(model_or_weight, layer)
        w = mod.weight
    w = w.detach().float()
    norm = w.flatten(1).norm(dim=1).clamp_min(1e-12)
    return w / norm.view(-1, 1, 1, 1)


class ReceptiveField(NamedTuple):
    """Input region seen by the unit at output position (i, j) of a layer, per axis (rows, cols):
    rows  start[0] + i*jump[0] ... start[0] + i*jump[0] + size[0] - 1 (may reach outside the image: padding)."""
    size: tuple
    jump: tuple
    start: tuple
    out_size: tuple


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _geometry(m):
    """(kernel, stride, padding, dilation, ceil_mode) of a conv / pool module, or None for shape-preserving ones."""
    if not hasattr(m, "kernel_size"):
        return None
    k = _pair(m.kernel_size)
    s = _pair(m.stride if m.stride is not None else m.kernel_size)
    d = _pair(getattr(m, "dilation", 1))
    p = getattr(m, "padding", 0)
    if p == "valid":
        p = (0, 0)
    elif p == "same":
        p = tuple((di * (ki - 1)) // 2 for ki, di in zip(k, d))
    p = _pair(p)
    return k, s, p, d, bool(getattr(m, "ceil_mode", False))


def receptive_field(model: torch.nn.Module, layer, input_shape) -> ReceptiveField:
    """Receptive field of ``layer``'s units, from the geometry of the conv / pool layers that run before it.

    A probe forward pass on zeros of ``input_shape`` (C, H, W) records the order in which modules with a
    ``kernel_size`` run; walking them, each step applies fastconv.conv_output_size and
        size += d*(k-1)*jump,   start -= p*jump,   jump *= s.
    The computed output size is checked against the layer's real output, so a model whose layers do not form
    a chain (or that resizes in some other way) raises instead of returning a wrong field.
    """
    from fastconv import conv_output_size

    target = resolve_layer(model, layer)
    order: list[tuple[torch.nn.Module, tuple, tuple]] = []
    handles = []
    seen_target = [False]

    def hook(m, inp, out):
        if not seen_target[0]:
            order.append((m, tuple(inp[0].shape[2:]), tuple(out.shape[2:]) if out.dim() == 4 else None))
        if m is target:
            seen_target[0] = True

    for m in model.modules():
        if m is target or (_geometry(m) is not None and not list(m.children())):
            handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(torch.zeros((1,) + tuple(input_shape), device=model_device(model)))
    finally:
        for h in handles:
            h.remove()
    if not seen_target[0]:
        raise ValueError("layer did not run in the model's forward pass")
    size, jump, start = [1, 1], [1, 1], [0, 0]
    cur = list(input_shape[1:])
    out_size = tuple(cur)
    for m, in_hw, out_hw in order:
        geo = _geometry(m)
        if geo is not None:
            if list(in_hw) != cur:
                raise ValueError(f"{type(m).__name__} sees a {in_hw} input where the chain of conv/pool layers "
                                 f"predicts {tuple(cur)}: the model is not a simple chain")
            k, s, p, d, ceil = geo
            for a in range(2):
                cur[a] = conv_output_size(cur[a], k[a], s[a], p[a], d[a], ceil)
                size[a] += d[a] * (k[a] - 1) * jump[a]
                start[a] -= p[a] * jump[a]
                jump[a] *= s[a]
            if out_hw is not None and list(out_hw) != cur:
                raise ValueError(f"{type(m).__name__}: output {out_hw} differs from conv_output_size's {tuple(cur)}")
        if m is target:
            out_size = out_hw if out_hw is not None else tuple(cur)
            if out_hw is not None and list(out_hw) != cur:
                raise ValueError(f"layer output {out_hw} differs from the conv/pool chain's {tuple(cur)}")
            break
    return ReceptiveField(tuple(size), tuple(jump), tuple(start), tuple(out_size))


class TopPatches(NamedTuple):
    patches: torch.Tensor     # (n_channels, k, C, rh, rw), zero where the field reaches outside the image
    scores: torch.Tensor      # (n_channels, k) activations, best first
    locations: torch.Tensor   # (n_channels, k, 3): image index, top row, left column (may be negative)
    channels: list
    field: ReceptiveField


def top_patches(model: torch.nn.Module, layer, images, channels=None, k: int = 9,
                batch_size: int = 256) -> TopPatches:
    """For each chosen channel (neuron type) of ``layer``, the ``k`` image patches of a data set that excite it
    most (Girshick et al. 2014): every spatial position of every image is a candidate; the patch is the unit's
    receptive field (:func:`receptive_field`), cut from the image with zeros outside it.
    """
    x, _ = prepare_input(images)
    n, c, h, w = x.shape
    field = receptive_field(model, layer, (c, h, w))
    acts = []
    with torch.no_grad(), capture(model, [layer]) as store:
        for i in range(0, n, batch_size):
            model(x[i:i + batch_size])
            acts.append(store[0].detach())
    a = torch.cat(acts)                                      # (N, K, oh, ow)
    if a.dim() != 4:
        raise ValueError("layer output is not a feature map (N, C, H, W)")
    channels = list(range(a.shape[1])) if channels is None else list(channels)
    oh, ow = a.shape[2:]
    (rh, rw), (jh, jw), (s0, s1) = field.size, field.jump, field.start
    pad_h, pad_w = max(0, -s0) + rh, max(0, -s1) + rw
    xp = torch.nn.functional.pad(x, (pad_w, pad_w, pad_h, pad_h))
    patches, scores, locs = [], [], []
    for ch in channels:
        flat = a[:, ch].reshape(-1)
        kk = min(k, flat.numel())
        val, idx = flat.topk(kk)
        img = idx // (oh * ow)
        yy = (idx % (oh * ow)) // ow
        xx = idx % ow
        top = s0 + yy * jh
        left = s1 + xx * jw
        ps = [xp[i, :, t + pad_h:t + pad_h + rh, l + pad_w:l + pad_w + rw]
              for i, t, l in zip(img.tolist(), top.tolist(), left.tolist())]
        patches.append(torch.stack(ps))
        scores.append(val)
        locs.append(torch.stack([img, top, left], dim=1))
    return TopPatches(torch.stack(patches), torch.stack(scores), torch.stack(locs), channels, field)
