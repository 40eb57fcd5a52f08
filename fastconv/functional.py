"""Tier 2: the public functional API, with torch.nn.functional's signatures.

Every function takes torch tensors (the result is a torch tensor and autograd
flows through fastconv's own backward kernels) or numpy arrays (the result is a
numpy array; torch is not needed). Arguments are validated here, with messages
that name the argument, and again in the C++ binding.

The conv functions take a keyword ``variant="fast" | "reference"``: the
reference variant runs the plain loop kept beside each optimised kernel.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import _ops
from ._shape import conv_output_size

torch = _ops.torch

__all__ = [
    "conv2d", "conv1d", "conv1x1", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "global_avg_pool2d",
    "relu", "guided_relu", "conv2d_backward", "conv1d_backward", "conv1x1_backward", "max_pool2d_backward",
    "avg_pool2d_backward", "relu_backward", "guided_relu_backward", "conv_output_size",
]

# ------------------------------------------------------------- validation ---


_CPU_FLOATS = (torch.float32, torch.float64) if torch is not None else ()


def _kind(x, name):
    if isinstance(x, np.ndarray):
        return "numpy"
    if _ops.is_torch(x):
        return "torch"
    raise TypeError(f"{name}: expected a torch.Tensor or a numpy.ndarray, got {type(x).__name__}")


def _check_float(x, name, kind):
    if kind == "torch" and x.is_cpu and x.dtype in _CPU_FLOATS:  # the common case, without building a device
        return
    if kind == "numpy":
        if x.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name}: expected a float32 or float64 array, got dtype {x.dtype}")
        return
    allowed = (torch.float32, torch.float64)
    if x.is_cuda:
        allowed += (torch.float16, torch.bfloat16)
    if x.dtype not in allowed:
        names = ", ".join(str(d).replace("torch.", "") for d in allowed)
        raise TypeError(f"{name}: expected a floating-point tensor ({names} on {x.device.type}), got {x.dtype}")
    if x.device.type not in ("cpu", "cuda", "meta"):  # meta: shape-only tracing through the fake kernels
        raise ValueError(f"{name}: fastconv runs on cpu and cuda tensors, got a tensor on {x.device}")


def _check_input(x, name="input"):
    kind = _kind(x, name)
    _check_float(x, name, kind)
    return kind


def _check_like(t, name, ref, refname, kind):
    """t (may be None) must be of the same framework, dtype and device as ref."""
    if t is None:
        return
    k = _kind(t, name)
    if k != kind:
        raise TypeError(f"{name}: is a {k} value but {refname} is a {kind} value; pass all as torch tensors or "
                        f"all as numpy arrays")
    _check_float(t, name, k)
    if t.dtype != ref.dtype:
        raise TypeError(f"{name}: dtype {t.dtype} does not match {refname}'s dtype {ref.dtype}")
    if kind == "torch" and t.device != ref.device:
        raise ValueError(f"{name}: is on device {t.device} but {refname} is on {ref.device}")


def _int(v, name, minimum=None):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {v!r}")
    v = int(v)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name}: must be at least {minimum}, got {v}")
    return v


def _tuple(v, n, name, minimum):
    """An int or a sequence of n (or 1) ints -> a tuple of n ints >= minimum."""
    if type(v) is tuple and len(v) == n and all(type(e) is int and e >= minimum for e in v):
        return v  # the common case, already normalised (e.g. a layer's own attributes)
    if type(v) is int and v >= minimum:
        return (v,) * n  # the other common case (numbers.Integral below is an ABC check: slow)
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        out = (int(v),) * n
    elif isinstance(v, (tuple, list)) and len(v) in (1, n) and all(
            isinstance(e, numbers.Integral) and not isinstance(e, bool) for e in v):
        out = tuple(int(e) for e in v) * (n if len(v) == 1 else 1)
    else:
        raise TypeError(f"{name}: expected an int or a sequence of {n} ints, got {v!r}")
    if any(e < minimum for e in out):
        what = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name}: must be {what}, got {v!r}")
    return out


def _variant(v):
    if v not in _ops.VARIANTS:
        raise ValueError(f"variant: expected 'fast' or 'reference', got {v!r}")
    return _ops.VARIANTS[v]


def _contig(x):
    return np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x.contiguous()


def _shape(x):
    return tuple(int(s) for s in x.shape)


def _layout_like(y, x):
    """torch keeps channels_last: a channels_last 4-D input gives a channels_last output.
    The kernels work on NCHW; only such inputs pay for the conversion back."""
    if (x.ndim == 4 and y.ndim == 4 and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last)):
        return y.contiguous(memory_format=torch.channels_last)
    return y


def _pad_right(x, extra, kind):
    """Zero-pad the trailing side of the spatial dims by extra (one per dim)."""
    if not any(extra):
        return x
    if kind == "numpy":
        return np.pad(x, [(0, 0)] * (x.ndim - len(extra)) + [(0, e) for e in extra])
    pads = []
    for e in reversed(extra):
        pads += [0, e]
    return torch.nn.functional.pad(x, pads)


# ------------------------------------------------------------------ conv ---


_EXACT_TYPES = frozenset((int, bool, str, type(None)))


def _exact(v) -> bool:
    """v is None, a bool, an int, a str or a tuple of ints: with its type in the key, it compares equal only to
    values its own check treats alike (True == 1 and (1.0,) == (1,) would pass an argument the check rejects).
    Plain loops, no generators: this runs on every conv and pool call."""
    t = type(v)
    if t in _EXACT_TYPES:
        return True
    if t is not tuple:
        return False
    for e in v:
        if type(e) is not int:
            return False
    return True


# Validated arguments by call signature: a call whose tensors match one seen
# before in type, shape, dtype and device, with the same other arguments,
# skips the checks (about a third of a small layer's Python overhead: LeNet's
# layers take 0.05-0.3 ms). Plain torch tensors and exact values only; numpy
# arrays, lists and subclasses are checked every time.
_VALIDATED: dict = {}
_PLAIN = _ops._TORCH_TENSORS


def _validated(cls, args, tensors, values):
    """cls(*args), or the one built for a call of the same signature."""
    key = [cls]
    for t in tensors:
        if t is None:
            key.append(None)
        elif type(t) in _PLAIN:
            key.append((t.shape, t.dtype, t.device))
        else:
            return cls(*args)
    for v in values:
        if not _exact(v):
            return cls(*args)
        key.append(type(v))
    key = tuple(key) + args[len(tensors):]
    hit = _VALIDATED.get(key)
    if hit is None:
        hit = cls(*args)
        if len(_VALIDATED) >= 4096:
            _VALIDATED.clear()
        _VALIDATED[key] = hit
    return hit


class _Conv:
    """Validated and normalised arguments of one conv call (d spatial dims)."""

    def __init__(self, input, weight, bias, stride, padding, dilation, groups, d, backward=False):
        layout = "(C, L)" if d == 1 else "(C, H, W)"
        self.kind = _check_input(input)
        _check_like(weight, "weight", input, "input", self.kind)
        _check_like(bias, "bias", input, "input", self.kind)
        if input.ndim not in (d + 1, d + 2) or (backward and input.ndim != d + 2):
            batched = "(N, C, L)" if d == 1 else "(N, C, H, W)"
            want = f"a {d + 2}-D {batched}" if backward else f"a {d + 1}-D {layout} or {d + 2}-D {batched}"
            raise ValueError(f"input: expected {want} input, got {input.ndim}-D with shape {_shape(input)}")
        if weight.ndim != d + 2:
            ks = "kL" if d == 1 else "kH, kW"
            raise ValueError(f"weight: expected a {d + 2}-D (out_channels, in_channels/groups, {ks}) weight, got "
                             f"{weight.ndim}-D with shape {_shape(weight)}")
        self.unbatched = input.ndim == d + 1
        self.groups = _int(groups, "groups", 1)
        self.stride = _tuple(stride, d, "stride", 1)
        self.dilation = _tuple(dilation, d, "dilation", 1)
        c, k = input.shape[-d - 1], weight.shape[0]
        kernel = tuple(int(s) for s in weight.shape[2:])
        if c % self.groups:
            raise ValueError(f"groups: input channels {c} are not divisible by groups={self.groups}")
        if k % self.groups:
            raise ValueError(f"groups: out_channels {k} (weight.shape[0]) are not divisible by groups={self.groups}")
        if weight.shape[1] * self.groups != c:
            raise ValueError(f"weight: expected {c // self.groups} input channels per group (input has {c} channels, "
                             f"groups={self.groups}), got weight of shape {_shape(weight)}")
        if bias is not None and _shape(bias) != (k,):
            raise ValueError(f"bias: expected shape ({k},), got {_shape(bias)}")
        self.extra = (0,) * d
        if isinstance(padding, str):
            if padding == "valid":
                self.padding = (0,) * d
            elif padding == "same":
                if any(s != 1 for s in self.stride):
                    raise ValueError("padding: 'same' is not supported for strided convolutions")
                total = [dl * (kk - 1) for dl, kk in zip(self.dilation, kernel)]
                self.padding = tuple(t // 2 for t in total)
                # torch puts the odd element of an uneven total on the trailing side
                self.extra = tuple(t - 2 * (t // 2) for t in total)
                if backward and any(self.extra):
                    raise NotImplementedError("padding: 'same' with an even dilated kernel size (uneven padding) "
                                              "is not supported by the backward functions; pad explicitly")
            else:
                raise ValueError(f"padding: expected an int, a sequence of ints, 'valid' or 'same', got {padding!r}")
        else:
            self.padding = _tuple(padding, d, "padding", 0)
        spatial = tuple(int(s) for s in input.shape[-d:])
        padded = tuple(s + 2 * p + e for s, p, e in zip(spatial, self.padding, self.extra))
        eff = tuple(dl * (kk - 1) + 1 for dl, kk in zip(self.dilation, kernel))
        if any(p < e for p, e in zip(padded, eff)):
            raise ValueError(f"input: padded input size {padded} is smaller than the dilated kernel size {eff}")
        self.out = tuple(conv_output_size(s + e, kk, st, p, dl) for s, e, kk, st, p, dl in
                         zip(spatial, self.extra, kernel, self.stride, self.padding, self.dilation))

    @classmethod
    def of(cls, input, weight, bias, stride, padding, dilation, groups, d, backward=False):
        args = (input, weight, bias, stride, padding, dilation, groups, d, backward)
        return _validated(cls, args, (input, weight, bias), (stride, padding, dilation, groups))

    def batch(self, x):
        x = x[None] if self.unbatched else x
        return _pad_right(x, self.extra, self.kind)

    def unbatch(self, y):
        return y[0] if self.unbatched else y


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, variant="fast"):
    """2-D convolution (cross-correlation, as torch): input (N, C, H, W) or (C, H, W), weight (K, C/groups, R, S)."""
    a = _Conv.of(input, weight, bias, stride, padding, dilation, groups, 2)
    v = _variant(variant)
    x = a.batch(input)
    if a.kind == "numpy":
        y = _ops.run_conv2d(_contig(x), _contig(weight), None if bias is None else _contig(bias), a.stride,
                            a.padding, a.dilation, a.groups, v)
    else:
        y = _layout_like(_ops.eager.conv2d(x, weight, bias, list(a.stride), list(a.padding),
                                                   list(a.dilation), a.groups, v), x)
    return a.unbatch(y)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, variant="fast"):
    """1-D convolution: input (N, C, L) or (C, L), weight (K, C/groups, kL) — the notes' weighted moving average."""
    a = _Conv.of(input, weight, bias, stride, padding, dilation, groups, 1)
    v = _variant(variant)
    x = a.batch(input)
    if a.kind == "numpy":
        y = _ops.run_conv2d(_contig(x)[:, :, None, :], _contig(weight)[:, :, None, :],
                            None if bias is None else _contig(bias), (1,) + a.stride, (0,) + a.padding,
                            (1,) + a.dilation, a.groups, v)[:, :, 0, :]
    else:
        y = _ops.eager.conv1d(x, weight, bias, list(a.stride), list(a.padding), list(a.dilation), a.groups, v)
    return a.unbatch(y)


def _conv1x1_check(input, weight, bias, backward=False):
    kind = _check_input(input)
    _check_like(weight, "weight", input, "input", kind)
    _check_like(bias, "bias", input, "input", kind)
    if input.ndim != 4 and (backward or input.ndim != 3):
        raise ValueError(f"input: expected a 4-D (N, C, H, W) input, got {input.ndim}-D with shape {_shape(input)}")
    if not (weight.ndim == 2 or (weight.ndim == 4 and tuple(weight.shape[2:]) == (1, 1))):
        raise ValueError(f"weight: expected shape (out_channels, in_channels, 1, 1) or (out_channels, in_channels), "
                         f"got {_shape(weight)}")
    c = input.shape[-3]
    if weight.shape[1] != c:
        raise ValueError(f"weight: expected {c} input channels (input has {c}), got weight of shape {_shape(weight)}")
    if bias is not None and _shape(bias) != (weight.shape[0],):
        raise ValueError(f"bias: expected shape ({weight.shape[0]},), got {_shape(bias)}")
    return kind


def conv1x1(input, weight, bias=None, *, variant="fast"):
    """The 1×1 channel-reduction convolution (GoogLeNet's inception module): a GEMM over channels.

    input (N, C, H, W), weight (K, C, 1, 1) or (K, C), bias (K,) -> (N, K, H, W).
    """
    kind = _conv1x1_check(input, weight, bias)
    v = _variant(variant)
    unbatched = input.ndim == 3
    x = input[None] if unbatched else input
    if kind == "numpy":
        y = _ops.run_conv1x1(_contig(x), _contig(weight), None if bias is None else _contig(bias), v)
    else:
        y = _layout_like(_ops.eager.conv1x1(x, weight, bias, v), x)
    return y[0] if unbatched else y


def _check_grad_output(grad_output, input, kind, shape):
    _check_like(grad_output, "grad_output", input, "input", kind)
    if _shape(grad_output) != tuple(shape):
        raise ValueError(f"grad_output: expected shape {tuple(shape)}, got {_shape(grad_output)}")


def _mask(output_mask):
    if not (isinstance(output_mask, (tuple, list)) and len(output_mask) == 3):
        raise TypeError(f"output_mask: expected three bools (grad_input, grad_weight, grad_bias), got {output_mask!r}")
    return [bool(m) for m in output_mask]


def _masked(grads, mask):
    return tuple(g if m else None for g, m in zip(grads, mask))


def conv2d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1,
                    output_mask=(True, True, True), *, variant="fast"):
    """Gradients of conv2d: returns (grad_input, grad_weight, grad_bias), None where output_mask is False."""
    a = _Conv.of(input, weight, None, stride, padding, dilation, groups, 2, backward=True)
    _check_grad_output(grad_output, input, a.kind, (input.shape[0], weight.shape[0]) + a.out)
    mask, v = _mask(output_mask), _variant(variant)
    if a.kind == "numpy":
        grads = _ops.run_conv2d_backward(_contig(grad_output), _contig(input), _contig(weight), a.stride, a.padding,
                                         a.dilation, a.groups, mask, v)
    else:
        grads = _ops.eager.conv2d_backward(grad_output, input, weight, list(a.stride), list(a.padding),
                                                   list(a.dilation), a.groups, mask, v)
    return _masked(grads, mask)


def conv1d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1,
                    output_mask=(True, True, True), *, variant="fast"):
    """Gradients of conv1d: returns (grad_input, grad_weight, grad_bias), None where output_mask is False."""
    a = _Conv.of(input, weight, None, stride, padding, dilation, groups, 1, backward=True)
    _check_grad_output(grad_output, input, a.kind, (input.shape[0], weight.shape[0]) + a.out)
    mask, v = _mask(output_mask), _variant(variant)
    if a.kind == "numpy":
        gx, gw, gb = _ops.run_conv2d_backward(_contig(grad_output)[:, :, None], _contig(input)[:, :, None],
                                              _contig(weight)[:, :, None], (1,) + a.stride, (0,) + a.padding,
                                              (1,) + a.dilation, a.groups, mask, v)
        grads = (None if gx is None else gx[:, :, 0], None if gw is None else gw[:, :, 0], gb)
    else:
        grads = _ops.eager.conv1d_backward(grad_output, input, weight, list(a.stride), list(a.padding),
                                                   list(a.dilation), a.groups, mask, v)
    return _masked(grads, mask)


def conv1x1_backward(grad_output, input, weight, output_mask=(True, True, True), *, variant="fast"):
    """Gradients of conv1x1: returns (grad_input, grad_weight, grad_bias), None where output_mask is False."""
    kind = _conv1x1_check(input, weight, None, backward=True)
    n, _, h, w = input.shape
    _check_grad_output(grad_output, input, kind, (n, weight.shape[0], h, w))
    mask, v = _mask(output_mask), _variant(variant)
    if kind == "numpy":
        grads = _ops.run_conv1x1_backward(_contig(grad_output), _contig(input), _contig(weight), mask, v)
    else:
        grads = _ops.eager.conv1x1_backward(grad_output, input, weight, mask, v)
    return _masked(grads, mask)


# --------------------------------------------------------------- pooling ---


class _Pool:
    @classmethod
    def of(cls, input, kernel_size, stride, padding, dilation, ceil_mode, backward=False):
        args = (input, kernel_size, stride, padding, dilation, ceil_mode, backward)
        return _validated(cls, args, (input,), args[1:6])

    def __init__(self, input, kernel_size, stride, padding, dilation, ceil_mode, backward=False):
        self.kind = _check_input(input)
        if input.ndim not in (3, 4) or (backward and input.ndim != 4):
            want = "a 4-D (N, C, H, W)" if backward else "a 3-D (C, H, W) or 4-D (N, C, H, W)"
            raise ValueError(f"input: expected {want} input, got {input.ndim}-D with shape {_shape(input)}")
        self.unbatched = input.ndim == 3
        self.kernel = _tuple(kernel_size, 2, "kernel_size", 1)
        self.stride = self.kernel if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0) \
            else _tuple(stride, 2, "stride", 1)
        self.padding = _tuple(padding, 2, "padding", 0)
        self.dilation = _tuple(dilation, 2, "dilation", 1)
        if not isinstance(ceil_mode, (bool, np.bool_)):
            raise TypeError(f"ceil_mode: expected a bool, got {ceil_mode!r}")
        self.ceil_mode = bool(ceil_mode)
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel)):
            raise ValueError(f"padding: should be at most half of kernel_size, got padding {self.padding} for "
                             f"kernel_size {self.kernel}")
        spatial = tuple(int(s) for s in input.shape[-2:])
        self.out = conv_output_size(spatial, self.kernel, self.stride, self.padding, self.dilation, self.ceil_mode)
        if min(self.out) < 1:
            raise ValueError(f"input: spatial size {spatial} gives an empty output {self.out} for kernel_size "
                             f"{self.kernel}, stride {self.stride}, padding {self.padding}, dilation {self.dilation}")

    def batch(self, x):
        return x[None] if self.unbatched else x

    def unbatch(self, y):
        return y[0] if self.unbatched else y


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max pooling (padding acts as -inf); the first maximum in a window wins ties and NaN propagates, as torch.

    With return_indices, also returns int64 indices h * W + w into each input plane (torch's convention).
    """
    a = _Pool.of(input, kernel_size, stride, padding, dilation, ceil_mode)
    x = a.batch(input)
    if a.kind == "numpy":
        y, idx = _ops.run_max_pool2d(_contig(x), a.kernel, a.stride, a.padding, a.dilation, a.ceil_mode,
                                     with_indices=bool(return_indices))
    elif return_indices:
        y, idx = _ops.eager.max_pool2d(x, list(a.kernel), list(a.stride), list(a.padding),
                                               list(a.dilation), a.ceil_mode)
        y, idx = _layout_like(y, x), _layout_like(idx, x)
    else:
        y = _layout_like(_ops.max_pool2d_values(x, list(a.kernel), list(a.stride), list(a.padding),
                                                list(a.dilation), a.ceil_mode), x)
    if return_indices:
        return a.unbatch(y), a.unbatch(idx)
    return a.unbatch(y)


def max_pool2d_backward(grad_output, input, indices, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False):
    """Gradient of max_pool2d: grad_output scattered to the saved argmax positions."""
    a = _Pool.of(input, kernel_size, stride, padding, dilation, ceil_mode, backward=True)
    shape = tuple(input.shape[:2]) + a.out
    _check_grad_output(grad_output, input, a.kind, shape)
    if _kind(indices, "indices") != a.kind:
        raise TypeError(f"indices: must be a {a.kind} value like input")
    if str(indices.dtype) not in ("int64", "torch.int64"):
        raise TypeError(f"indices: expected int64, got {indices.dtype}")
    if _shape(indices) != shape:
        raise ValueError(f"indices: expected shape {shape}, got {_shape(indices)}")
    if a.kind == "numpy":
        return _ops.run_max_pool2d_backward(_contig(grad_output), _contig(input), _contig(indices), a.kernel,
                                            a.stride, a.padding, a.dilation, a.ceil_mode)
    return _ops.eager.max_pool2d_backward(grad_output, input, indices, list(a.kernel), list(a.stride),
                                                  list(a.padding), list(a.dilation), a.ceil_mode)


def _divisor(divisor_override):
    if divisor_override is None:
        return 0
    d = _int(divisor_override, "divisor_override")
    if d <= 0:
        raise ValueError(f"divisor_override: must be a positive int or None, got {divisor_override!r}")
    return d


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Average pooling with torch's divisor rules (count_include_pad, divisor_override, ceil_mode)."""
    a = _Pool.of(input, kernel_size, stride, padding, 1, ceil_mode)
    div = _divisor(divisor_override)
    x = a.batch(input)
    if a.kind == "numpy":
        y = _ops.run_avg_pool2d(_contig(x), a.kernel, a.stride, a.padding, a.ceil_mode, bool(count_include_pad), div)
    else:
        y = _layout_like(_ops.eager.avg_pool2d(x, list(a.kernel), list(a.stride), list(a.padding),
                                                       a.ceil_mode, bool(count_include_pad), div), x)
    return a.unbatch(y)


def avg_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    """Gradient of avg_pool2d."""
    a = _Pool.of(input, kernel_size, stride, padding, 1, ceil_mode, backward=True)
    div = _divisor(divisor_override)
    _check_grad_output(grad_output, input, a.kind, tuple(input.shape[:2]) + a.out)
    if a.kind == "numpy":
        return _ops.run_avg_pool2d_backward(_contig(grad_output), _contig(input), a.kernel, a.stride, a.padding,
                                            a.ceil_mode, bool(count_include_pad), div)
    return _ops.eager.avg_pool2d_backward(grad_output, input, list(a.kernel), list(a.stride),
                                                  list(a.padding), a.ceil_mode, bool(count_include_pad), div)


def global_avg_pool2d(input):
    """Global average pooling: the mean of each (H, W) plane, shape (N, C, 1, 1)."""
    _check_input(input)
    if input.ndim not in (3, 4):
        raise ValueError(f"input: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got {input.ndim}-D")
    return avg_pool2d(input, tuple(int(s) for s in input.shape[-2:]))


def adaptive_avg_pool2d(input, output_size):
    """Only output_size 1 (global average pooling) is supported."""
    if output_size not in (1, (1, 1), [1, 1], (1,), [1]):
        raise NotImplementedError(f"output_size: fastconv supports adaptive average pooling to 1x1 only, got "
                                  f"{output_size!r}")
    return global_avg_pool2d(input)


# ------------------------------------------------------------------ relu ---


def relu(input, inplace=False):
    """y = max(x, 0). With inplace=True the result is written into input (which is returned)."""
    kind = _check_input(input)
    if kind == "numpy":
        if inplace and input.flags.c_contiguous and input.flags.writeable:
            return _ops.run_relu(input, out=input)
        y = _ops.run_relu(_contig(input))
        if inplace:
            input[...] = y
            return input
        return y
    y = _ops.eager.relu(input)
    return input.copy_(y) if inplace else _layout_like(y, input)


def _relu_mode(mode):
    if mode not in _ops.RELU_MODES:
        raise ValueError(f"mode: expected 'guided' or 'deconvnet', got {mode!r}")
    return _ops.RELU_MODES[mode]


def guided_relu(input, mode="guided"):
    """relu whose backward is guided backprop's rule, grad·[x > 0]·[grad > 0] (mode 'guided'),
    or the deconvnet rule, grad·[grad > 0] (mode 'deconvnet')."""
    kind = _check_input(input)
    m = _relu_mode(mode)
    if kind == "numpy":
        return _ops.run_relu(_contig(input))
    return _layout_like(_ops.eager.guided_relu(input, m), input)


def _relu_backward_check(grad_output, input):
    kind = _check_input(input)
    _check_grad_output(grad_output, input, kind, _shape(input))
    return kind


def relu_backward(grad_output, input):
    """grad_output · [input > 0]."""
    kind = _relu_backward_check(grad_output, input)
    if kind == "numpy":
        return _ops.run_relu_backward(_contig(grad_output), _contig(input), _ops.RELU)
    return _ops.eager.relu_backward(grad_output, input)


def guided_relu_backward(grad_output, input, mode="guided"):
    """Guided backprop: grad·[x > 0]·[grad > 0]; deconvnet: grad·[grad > 0]."""
    kind = _relu_backward_check(grad_output, input)
    m = _relu_mode(mode)
    if kind == "numpy":
        return _ops.run_relu_backward(_contig(grad_output), _contig(input), m)
    return _ops.eager.guided_relu_backward(grad_output, input, m)
