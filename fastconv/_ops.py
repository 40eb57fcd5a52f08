"""Tier 1: the only importer of ``fastconv._C``.

Two layers live here:

* ``run_*`` functions: framework-agnostic calls into the kernels. They take
  contiguous torch tensors or numpy arrays, allocate the outputs with the same
  framework (NaN-poisoned under :func:`poison_outputs`), and return them.
* when torch is importable, every op registered with ``torch.library`` under
  ``fastconv::`` (custom_op + register_fake + register_autograd), so autograd,
  ``torch.compile`` and ``torch.library.opcheck`` see real operators.

The public API (tier 2, ``fastconv.functional``) validates and normalises
arguments; the binding validates them again in C++.
"""
from __future__ import annotations

import contextlib
import inspect
import operator
import os
import sys

import numpy as np

torch = None
if os.environ.get("FASTCONV_NO_TORCH", "") != "1":
    try:
        # Imported before _C: torch's bundled libgomp.so.1 is then the one OpenMP
        # runtime in the process, shared by our kernels (same soname).
        import torch
    except ImportError:  # the numpy path works without torch
        torch = None

from . import _C  # noqa: E402
from ._shape import _one, conv_output_size  # noqa: E402  (_one: the formula without the argument checks)

if torch is not None:
    _C.accept_torch_tensors(torch.Tensor)  # torch tensors then go to _C as they are (see _arg)

FAST, REFERENCE = 0, 1
VARIANTS = {"fast": FAST, "reference": REFERENCE}
RELU, GUIDED, DECONVNET = 0, 1, 2
RELU_MODES = {"guided": GUIDED, "deconvnet": DECONVNET}

# --------------------------------------------------------------- threads ---


def get_num_threads() -> int:
    """Threads the CPU kernels use: torch's setting when torch is loaded, else fastconv's own."""
    if torch is not None:
        return torch.get_num_threads()
    return _C.get_num_threads()


def set_num_threads(n: int) -> None:
    """Set the CPU kernels' thread count (and torch's, when torch is loaded, so the two agree)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"num_threads: expected an int, got {type(n).__name__}")
    _C.set_num_threads(int(n))
    if torch is not None:
        torch.set_num_threads(int(n))


def fma_peak_gflops(num_threads: int | None = None, f64: bool = False, seconds: float = 0.5) -> float:
    """Measured FMA throughput of this CPU (GFLOP/s, an FMA counted as 2 flops)."""
    return _C.fma_peak_gflops(num_threads or get_num_threads(), f64, seconds)


# ------------------------------------------------- descriptors, outputs ---

_poison = False


@contextlib.contextmanager
def poison_outputs(enabled: bool = True):
    """Fill every output the ops allocate with NaN (float) or -7 (int64) before the
    kernel runs, so a test sees any element a kernel forgot to write."""
    global _poison
    old, _poison = _poison, enabled
    try:
        yield
    finally:
        _poison = old


_TORCH_TENSORS = (torch.Tensor, torch.nn.Parameter) if torch is not None else ()


def is_torch(t) -> bool:
    return torch is not None and isinstance(t, torch.Tensor)


def _arg(t):
    """What the binding takes for a tensor or array: a torch tensor as it is (the binding reads its pointer,
    shape, strides, dtype and device itself, and refuses other devices by the argument's name), a numpy array
    as a _C.TensorArg descriptor (no copy)."""
    if torch is not None and isinstance(t, torch.Tensor):
        return t
    item = t.itemsize
    return _C.TensorArg(t.__array_interface__["data"][0], t.shape, [s // item for s in t.strides],
                        t.dtype.name, 0, 0)


def _opt(t):
    return None if t is None else _arg(t)


def _launch(t):
    """(num_threads, stream) for a call on t's device: torch's current stream on CUDA."""
    if is_torch(t) and t.is_cuda:
        return get_num_threads(), torch.cuda.current_stream(t.device).cuda_stream
    return get_num_threads(), 0


def _allow_tf32(t) -> bool:
    return bool(is_torch(t) and t.is_cuda and torch.backends.cudnn.allow_tf32)


def _empty_like(t):
    """An output of t's shape, dtype and device; t is contiguous (the run_* contract), so torch's empty_like, the
    cheapest torch allocation (0.8 us against 1.5 us through _empty's general path), gives a contiguous one."""
    if not _poison and type(t) in _TORCH_TENSORS:
        return torch.empty_like(t)
    return _empty(t, t.shape)


def _empty(like, shape, dtype=None):
    if not _poison and is_torch(like) and min(shape, default=0) >= 0:
        # new_empty keeps like's device (and dtype): 1.5-1.7 us against 2.0 for torch.empty(..., device=...)
        return like.new_empty(shape) if dtype is None else like.new_empty(shape, dtype=dtype)
    shape = tuple(max(int(s), 0) for s in shape)
    if isinstance(like, np.ndarray):
        dt = like.dtype if dtype is None else np.dtype(dtype)
        if _poison:
            return np.full(shape, -7 if dt.kind == "i" else np.nan, dtype=dt)
        return np.empty(shape, dtype=dt)
    dt = like.dtype if dtype is None else dtype
    if _poison:
        return torch.full(shape, -7 if dt == torch.int64 else float("nan"), dtype=dt, device=like.device)
    return torch.empty(shape, dtype=dt, device=like.device)


def _zero(t):
    if isinstance(t, np.ndarray):
        t.fill(0)
    else:
        t.zero_()
    return t


def _index_dtype(like):
    return np.int64 if isinstance(like, np.ndarray) else torch.int64


# ------------------------------------------------ framework-agnostic run ---
# Inputs must be contiguous; the conv shapes are NCHW (conv1d is lifted to
# H = 1 by its caller). Sizes are computed only for well-formed 4-D shapes:
# anything else reaches the binding, whose checks name the bad argument.


def _conv_out_shape(x, w, stride, padding, dilation):
    if len(x.shape) != 4 or len(w.shape) != 4:
        return (0,)
    n, _, h, wd = x.shape
    k, _, r, s = w.shape
    return (n, k, _one(h, r, stride[0], padding[0], dilation[0], False),
            _one(wd, s, stride[1], padding[1], dilation[1], False))


def run_conv2d(x, w, b, stride, padding, dilation, groups, variant=FAST):
    y = _empty(x, _conv_out_shape(x, w, stride, padding, dilation))
    _C.conv2d_forward(_arg(x), _arg(w), _opt(b), _arg(y), tuple(stride), tuple(padding), tuple(dilation),
                      int(groups), int(variant), _allow_tf32(x), *_launch(x))
    return y


def run_conv2d_backward(gy, x, w, stride, padding, dilation, groups, mask=(True, True, True), variant=FAST):
    gx = _empty_like(x) if mask[0] else None
    gw = _empty_like(w) if mask[1] else None
    gb = _empty(w, w.shape[:1]) if mask[2] else None
    if len(x.shape) == 4 and x.shape[0] == 0:
        # Empty batch: nothing to reduce, the weight and bias gradients are zero.
        gw = None if gw is None else _zero(gw)
        gb = None if gb is None else _zero(gb)
        _C.conv2d_backward(_arg(gy), _arg(x), _arg(w), _opt(gx), None, None, tuple(stride), tuple(padding),
                           tuple(dilation), int(groups), int(variant), _allow_tf32(x), *_launch(x))
        return gx, gw, gb
    _C.conv2d_backward(_arg(gy), _arg(x), _arg(w), _opt(gx), _opt(gw), _opt(gb), tuple(stride), tuple(padding),
                       tuple(dilation), int(groups), int(variant), _allow_tf32(x), *_launch(x))
    return gx, gw, gb


def _as_1x1(w):
    return w.reshape(w.shape[0], w.shape[1], 1, 1) if len(w.shape) == 2 else w


def run_conv1x1(x, w, b, variant=FAST):
    w4 = _as_1x1(w)
    y = _empty(x, _conv_out_shape(x, w4, (1, 1), (0, 0), (1, 1)))
    _C.conv1x1_forward(_arg(x), _arg(w4), _opt(b), _arg(y), int(variant), _allow_tf32(x), *_launch(x))
    return y


def run_conv1x1_backward(gy, x, w, mask=(True, True, True), variant=FAST):
    w4 = _as_1x1(w)
    gx = _empty_like(x) if mask[0] else None
    gw = _empty_like(w) if mask[1] else None
    gb = _empty(w, w.shape[:1]) if mask[2] else None
    gw4 = None if gw is None else _as_1x1(gw)
    if len(x.shape) == 4 and x.shape[0] == 0:
        for t in (gw, gb):
            if t is not None:
                _zero(t)
        _C.conv1x1_backward(_arg(gy), _arg(x), _arg(w4), _opt(gx), None, None, int(variant), _allow_tf32(x),
                            *_launch(x))
        return gx, gw, gb
    _C.conv1x1_backward(_arg(gy), _arg(x), _arg(w4), _opt(gx), _opt(gw4), _opt(gb), int(variant), _allow_tf32(x),
                        *_launch(x))
    return gx, gw, gb


def _pool_out_shape(x, kernel, stride, padding, dilation, ceil_mode):
    if len(x.shape) != 4:
        return (0,)
    n, c, h, w = x.shape
    return (n, c, _one(h, kernel[0], stride[0], padding[0], dilation[0], ceil_mode),
            _one(w, kernel[1], stride[1], padding[1], dilation[1], ceil_mode))


def run_max_pool2d(x, kernel, stride, padding, dilation, ceil_mode, with_indices=True):
    shape = _pool_out_shape(x, kernel, stride, padding, dilation, ceil_mode)
    y = _empty(x, shape)
    idx = _empty(x, shape, _index_dtype(x)) if with_indices else None
    _C.max_pool2d_forward(_arg(x), _arg(y), _opt(idx), tuple(kernel), tuple(stride), tuple(padding), tuple(dilation),
                          bool(ceil_mode), *_launch(x))
    return y, idx


def run_max_pool2d_backward(gy, x, indices, kernel, stride, padding, dilation, ceil_mode):
    gx = _empty_like(x)
    _C.max_pool2d_backward(_arg(gy), _arg(x), _arg(indices), _arg(gx), tuple(kernel), tuple(stride), tuple(padding),
                           tuple(dilation), bool(ceil_mode), *_launch(x))
    return gx


def run_avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    y = _empty(x, _pool_out_shape(x, kernel, stride, padding, (1, 1), ceil_mode))
    _C.avg_pool2d_forward(_arg(x), _arg(y), tuple(kernel), tuple(stride), tuple(padding), bool(ceil_mode),
                          bool(count_include_pad), int(divisor_override), *_launch(x))
    return y


def run_avg_pool2d_backward(gy, x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    gx = _empty_like(x)
    _C.avg_pool2d_backward(_arg(gy), _arg(x), _arg(gx), tuple(kernel), tuple(stride), tuple(padding),
                           bool(ceil_mode), bool(count_include_pad), int(divisor_override), *_launch(x))
    return gx


def run_relu(x, out=None):
    y = _empty_like(x) if out is None else out
    _C.relu_forward(_arg(x), _arg(y), *_launch(x))
    return y


def run_relu_backward(gy, x, mode=RELU):
    gx = _empty_like(x)
    _C.relu_backward(_arg(gy), _arg(x), _arg(gx), int(mode), *_launch(x))
    return gx


# ------------------------------------------------- torch.library registration

if torch is not None:
    from typing import List, Optional, Tuple

    from torch import Tensor

    def _c(t):
        return None if t is None else t.contiguous()

    # Every op is a torch.library custom_op (fake and autograd registered), so
    # torch.compile, opcheck, FakeTensor, vmap fallbacks and the profiler see
    # fastconv::<op>. In plain eager calls the custom_op dispatcher costs about
    # 20-40 us per call, more than a small op itself, so `eager.<op>` (what the
    # functional API and the autograd formulas call) goes straight to the
    # implementation, through a torch.autograd.Function built from the same
    # setup_context and backward, when nothing but plain CPU / CUDA tensors
    # is involved: not compiling, no torch function / dispatch mode, no
    # functorch transform, no profiler. Anything else takes torch.ops.fastconv.
    _IMPL = {}
    _OPS_DEF = {}

    def _custom_op(name):
        def register(fn):
            _IMPL[name] = fn
            _OPS_DEF[name] = torch.library.custom_op(f"fastconv::{name}", fn, mutates_args=())
            return _OPS_DEF[name]
        return register

    _is_compiling = torch.compiler.is_compiling
    _fn_modes = torch._C._len_torch_function_stack
    _dispatch_modes = torch._C._len_torch_dispatch_stack
    _functorch_level = torch._C._functorch.peek_interpreter_stack
    _profiling = torch._C._autograd._profiler_enabled
    _wrapped = torch._C._functorch.is_functorch_wrapped_tensor  # e.g. a dead wrapper escaped from a transform

    def _direct_ok(tensors) -> bool:
        """tensors: the call's tensor arguments (None for an absent optional one); not compiling."""
        if _fn_modes() or _dispatch_modes() or _functorch_level() is not None or _profiling():
            return False
        for t in tensors:
            if t is not None and (type(t) not in _TORCH_TENSORS or not (t.is_cpu or t.is_cuda) or _wrapped(t)):
                return False
        return True

    def _needs_grad(tensors) -> bool:
        if not torch.is_grad_enabled():
            return False
        for t in tensors:
            if t is not None and t.requires_grad:
                return True
        return False

    class _Eager:
        """``eager.<op>(*args)``: the same call and result as ``torch.ops.fastconv.<op>(*args)``."""

    eager = _Eager()

    def _install_eager(name, function=None):
        impl, op = _IMPL[name], getattr(torch.ops.fastconv, name)
        # Only the arguments the schema types as tensors are looked at (a third
        # of the checks' cost on conv2d's eight arguments).
        positions = [i for i, p in enumerate(inspect.signature(impl).parameters.values())
                     if "Tensor" in str(p.annotation)]
        pick = operator.itemgetter(*positions) if len(positions) > 1 else (lambda args: (args[positions[0]],))

        # torch.autograd.Function.apply is a Python wrapper (default arguments
        # for setup_context, functorch's dead-wrapper unwrapping, the functorch
        # dispatch) around the C++ apply; _direct_ok has ruled all of that out,
        # so the C++ apply is called itself (2-3 us a call less).
        apply = super(torch.autograd.Function, function).apply if function is not None else None

        def call(*args):
            if _is_compiling():  # first: dynamo traces this function and cannot trace itemgetter
                return op(*args)
            tensors = pick(args)
            if not _direct_ok(tensors):
                return op(*args)
            if _needs_grad(tensors):
                # without an autograd formula the op itself raises, as torch does
                return apply(*args) if apply is not None else op(*args)
            return impl(*args)

        call.__name__ = name
        setattr(eager, name, call)

    def _register_autograd(name, backward, setup_context):
        _OPS_DEF[name].register_autograd(backward, setup_context=setup_context)

        # forward(ctx, ...) rather than a separate setup_context: a third of
        # the per-call cost in torch 2.13 (about 6 us against 17)
        class Function(torch.autograd.Function):
            @staticmethod
            def forward(ctx, *args):
                output = _IMPL[name](*args)
                setup_context(ctx, args, output)
                return output

            @staticmethod
            def backward(ctx, *grads):
                return backward(ctx, *grads)

        Function.__name__ = Function.__qualname__ = f"fastconv_{name}"
        _install_eager(name, Function)

    def _nothing(t):
        return t.new_empty((0,))

    # conv2d ------------------------------------------------------------------

    @_custom_op("conv2d")
    def _conv2d(input: Tensor, weight: Tensor, bias: Optional[Tensor], stride: List[int], padding: List[int],
                dilation: List[int], groups: int, variant: int) -> Tensor:
        return run_conv2d(input.contiguous(), weight.contiguous(), _c(bias), stride, padding, dilation, groups,
                          variant)

    @_conv2d.register_fake
    def _(input, weight, bias, stride, padding, dilation, groups, variant):
        return input.new_empty(_conv_out_shape(input, weight, stride, padding, dilation))

    @_custom_op("conv2d_backward")
    def _conv2d_backward(grad_output: Tensor, input: Tensor, weight: Tensor, stride: List[int], padding: List[int],
                         dilation: List[int], groups: int, output_mask: List[bool],
                         variant: int) -> Tuple[Tensor, Tensor, Tensor]:
        gx, gw, gb = run_conv2d_backward(grad_output.contiguous(), input.contiguous(), weight.contiguous(), stride,
                                         padding, dilation, groups, output_mask, variant)
        return (gx if gx is not None else _nothing(input), gw if gw is not None else _nothing(weight),
                gb if gb is not None else _nothing(weight))

    @_conv2d_backward.register_fake
    def _(grad_output, input, weight, stride, padding, dilation, groups, output_mask, variant):
        return (input.new_empty(input.shape) if output_mask[0] else _nothing(input),
                weight.new_empty(weight.shape) if output_mask[1] else _nothing(weight),
                weight.new_empty(weight.shape[:1]) if output_mask[2] else _nothing(weight))

    def _conv_setup(ctx, inputs, output):
        input, weight, bias = inputs[:3]
        ctx.save_for_backward(input, weight)
        ctx.config = inputs[3:]
        ctx.has_bias = bias is not None

    def _conv_mask(ctx):
        return [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]

    def _conv_grads(mask, grads, n_config):
        return tuple(g if m else None for m, g in zip(mask, grads)) + (None,) * n_config

    def _conv2d_autograd(ctx, grad):
        input, weight = ctx.saved_tensors
        stride, padding, dilation, groups, variant = ctx.config
        mask = _conv_mask(ctx)
        grads = eager.conv2d_backward(grad, input, weight, stride, padding, dilation, groups, mask,
                                                   variant)
        return _conv_grads(mask, grads, 5)

    _register_autograd("conv2d", _conv2d_autograd, _conv_setup)

    # conv1d: conv2d over (N, C, 1, L) views ------------------------------------

    @_custom_op("conv1d")
    def _conv1d(input: Tensor, weight: Tensor, bias: Optional[Tensor], stride: List[int], padding: List[int],
                dilation: List[int], groups: int, variant: int) -> Tensor:
        y = run_conv2d(input.contiguous().unsqueeze(2), weight.contiguous().unsqueeze(2), _c(bias),
                       [1, stride[0]], [0, padding[0]], [1, dilation[0]], groups, variant)
        return y.squeeze(2)

    @_conv1d.register_fake
    def _(input, weight, bias, stride, padding, dilation, groups, variant):
        n, _, length = input.shape
        return input.new_empty((n, weight.shape[0],
                                conv_output_size(length, weight.shape[2], stride[0], padding[0], dilation[0])))

    @_custom_op("conv1d_backward")
    def _conv1d_backward(grad_output: Tensor, input: Tensor, weight: Tensor, stride: List[int], padding: List[int],
                         dilation: List[int], groups: int, output_mask: List[bool],
                         variant: int) -> Tuple[Tensor, Tensor, Tensor]:
        gx, gw, gb = run_conv2d_backward(grad_output.contiguous().unsqueeze(2), input.contiguous().unsqueeze(2),
                                         weight.contiguous().unsqueeze(2), [1, stride[0]], [0, padding[0]],
                                         [1, dilation[0]], groups, output_mask, variant)
        return (gx.squeeze(2) if gx is not None else _nothing(input),
                gw.squeeze(2) if gw is not None else _nothing(weight),
                gb if gb is not None else _nothing(weight))

    @_conv1d_backward.register_fake
    def _(grad_output, input, weight, stride, padding, dilation, groups, output_mask, variant):
        return (input.new_empty(input.shape) if output_mask[0] else _nothing(input),
                weight.new_empty(weight.shape) if output_mask[1] else _nothing(weight),
                weight.new_empty(weight.shape[:1]) if output_mask[2] else _nothing(weight))

    def _conv1d_autograd(ctx, grad):
        input, weight = ctx.saved_tensors
        stride, padding, dilation, groups, variant = ctx.config
        mask = _conv_mask(ctx)
        grads = eager.conv1d_backward(grad, input, weight, stride, padding, dilation, groups, mask,
                                                   variant)
        return _conv_grads(mask, grads, 5)

    _register_autograd("conv1d", _conv1d_autograd, _conv_setup)

    # conv1x1 -------------------------------------------------------------------

    @_custom_op("conv1x1")
    def _conv1x1(input: Tensor, weight: Tensor, bias: Optional[Tensor], variant: int) -> Tensor:
        return run_conv1x1(input.contiguous(), weight.contiguous(), _c(bias), variant)

    @_conv1x1.register_fake
    def _(input, weight, bias, variant):
        return input.new_empty((input.shape[0], weight.shape[0], input.shape[2], input.shape[3]))

    @_custom_op("conv1x1_backward")
    def _conv1x1_backward(grad_output: Tensor, input: Tensor, weight: Tensor, output_mask: List[bool],
                          variant: int) -> Tuple[Tensor, Tensor, Tensor]:
        gx, gw, gb = run_conv1x1_backward(grad_output.contiguous(), input.contiguous(), weight.contiguous(),
                                          output_mask, variant)
        return (gx if gx is not None else _nothing(input), gw if gw is not None else _nothing(weight),
                gb if gb is not None else _nothing(weight))

    @_conv1x1_backward.register_fake
    def _(grad_output, input, weight, output_mask, variant):
        return (input.new_empty(input.shape) if output_mask[0] else _nothing(input),
                weight.new_empty(weight.shape) if output_mask[1] else _nothing(weight),
                weight.new_empty(weight.shape[:1]) if output_mask[2] else _nothing(weight))

    def _conv1x1_autograd(ctx, grad):
        input, weight = ctx.saved_tensors
        (variant,) = ctx.config
        mask = _conv_mask(ctx)
        grads = eager.conv1x1_backward(grad, input, weight, mask, variant)
        return _conv_grads(mask, grads, 1)

    _register_autograd("conv1x1", _conv1x1_autograd, _conv_setup)

    # max_pool2d ---------------------------------------------------------------

    @_custom_op("max_pool2d")
    def _max_pool2d(input: Tensor, kernel_size: List[int], stride: List[int], padding: List[int],
                    dilation: List[int], ceil_mode: bool) -> Tuple[Tensor, Tensor]:
        return run_max_pool2d(input.contiguous(), kernel_size, stride, padding, dilation, ceil_mode)

    @_max_pool2d.register_fake
    def _(input, kernel_size, stride, padding, dilation, ceil_mode):
        shape = _pool_out_shape(input, kernel_size, stride, padding, dilation, ceil_mode)
        return input.new_empty(shape), input.new_empty(shape, dtype=torch.int64)

    @_custom_op("max_pool2d_backward")
    def _max_pool2d_backward(grad_output: Tensor, input: Tensor, indices: Tensor, kernel_size: List[int],
                             stride: List[int], padding: List[int], dilation: List[int], ceil_mode: bool) -> Tensor:
        return run_max_pool2d_backward(grad_output.contiguous(), input.contiguous(), indices.contiguous(),
                                       kernel_size, stride, padding, dilation, ceil_mode)

    @_max_pool2d_backward.register_fake
    def _(grad_output, input, indices, kernel_size, stride, padding, dilation, ceil_mode):
        return input.new_empty(input.shape)

    def _max_pool_setup(ctx, inputs, output):
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(inputs[0], output[1])
        ctx.config = inputs[1:]

    def _max_pool_autograd(ctx, grad, _grad_indices):
        input, indices = ctx.saved_tensors
        gx = eager.max_pool2d_backward(grad, input, indices, *ctx.config)
        return (gx,) + (None,) * len(ctx.config)

    _register_autograd("max_pool2d", _max_pool_autograd, _max_pool_setup)

    def max_pool2d_values(input, kernel_size, stride, padding, dilation, ceil_mode):
        """max_pool2d's values alone. Where no gradient can be asked of them (a plain eager call on the CPU, no
        input that requires grad) the kernel writes no indices: 4 bytes an output instead of 12, as torch's own
        forward in inference; otherwise the op, its indices dropped. (CUDA keeps the op: the kernel's path without
        indices has not run on a GPU.)"""
        if not _is_compiling() and input.is_cpu and _direct_ok((input,)) and not _needs_grad((input,)):
            return run_max_pool2d(input.contiguous(), kernel_size, stride, padding, dilation, ceil_mode,
                                  with_indices=False)[0]
        return eager.max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode)[0]

    # avg_pool2d ---------------------------------------------------------------

    @_custom_op("avg_pool2d")
    def _avg_pool2d(input: Tensor, kernel_size: List[int], stride: List[int], padding: List[int], ceil_mode: bool,
                    count_include_pad: bool, divisor_override: int) -> Tensor:
        return run_avg_pool2d(input.contiguous(), kernel_size, stride, padding, ceil_mode, count_include_pad,
                              divisor_override)

    @_avg_pool2d.register_fake
    def _(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
        return input.new_empty(_pool_out_shape(input, kernel_size, stride, padding, (1, 1), ceil_mode))

    @_custom_op("avg_pool2d_backward")
    def _avg_pool2d_backward(grad_output: Tensor, input: Tensor, kernel_size: List[int], stride: List[int],
                             padding: List[int], ceil_mode: bool, count_include_pad: bool,
                             divisor_override: int) -> Tensor:
        return run_avg_pool2d_backward(grad_output.contiguous(), input.contiguous(), kernel_size, stride, padding,
                                       ceil_mode, count_include_pad, divisor_override)

    @_avg_pool2d_backward.register_fake
    def _(grad_output, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
        return input.new_empty(input.shape)

    def _avg_pool_setup(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.config = inputs[1:]

    def _avg_pool_autograd(ctx, grad):
        (input,) = ctx.saved_tensors
        gx = eager.avg_pool2d_backward(grad, input, *ctx.config)
        return (gx,) + (None,) * len(ctx.config)

    _register_autograd("avg_pool2d", _avg_pool_autograd, _avg_pool_setup)

    # relu and guided relu --------------------------------------------------------

    @_custom_op("relu")
    def _relu(input: Tensor) -> Tensor:
        return run_relu(input.contiguous())

    @_relu.register_fake
    def _(input):
        return input.new_empty(input.shape)

    @_custom_op("relu_backward")
    def _relu_backward(grad_output: Tensor, input: Tensor) -> Tensor:
        return run_relu_backward(grad_output.contiguous(), input.contiguous(), RELU)

    @_relu_backward.register_fake
    def _(grad_output, input):
        return input.new_empty(input.shape)

    def _relu_setup(ctx, inputs, output):
        # The output carries the same sign mask as the input ([y > 0] == [x > 0]).
        ctx.save_for_backward(output)

    def _relu_autograd(ctx, grad):
        (output,) = ctx.saved_tensors
        return eager.relu_backward(grad, output)

    _register_autograd("relu", _relu_autograd, _relu_setup)

    @_custom_op("guided_relu")
    def _guided_relu(input: Tensor, mode: int) -> Tensor:
        if mode not in (GUIDED, DECONVNET):
            raise ValueError(f"mode: expected {GUIDED} (guided) or {DECONVNET} (deconvnet), got {mode}")
        return run_relu(input.contiguous())

    @_guided_relu.register_fake
    def _(input, mode):
        return input.new_empty(input.shape)

    @_custom_op("guided_relu_backward")
    def _guided_relu_backward(grad_output: Tensor, input: Tensor, mode: int) -> Tensor:
        return run_relu_backward(grad_output.contiguous(), input.contiguous(), mode)

    @_guided_relu_backward.register_fake
    def _(grad_output, input, mode):
        return input.new_empty(input.shape)

    def _guided_setup(ctx, inputs, output):
        ctx.save_for_backward(output)
        ctx.mode = inputs[1]

    def _guided_autograd(ctx, grad):
        (output,) = ctx.saved_tensors
        return eager.guided_relu_backward(grad, output, ctx.mode), None

    _register_autograd("guided_relu", _guided_autograd, _guided_setup)

    OPS = ("conv2d", "conv2d_backward", "conv1d", "conv1d_backward", "conv1x1", "conv1x1_backward", "max_pool2d",
           "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward", "relu", "relu_backward", "guided_relu",
           "guided_relu_backward")
    for _name in OPS:  # the backward ops (no autograd formula)
        if not hasattr(eager, _name):
            _install_eager(_name)
else:
    OPS = ()


def openmp_runtimes() -> list:
    """Paths of the OpenMP runtimes mapped into this process (should be one)."""
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                name = os.path.basename(path)
                if name.startswith(("libgomp", "libiomp", "libomp")) and ".so" in name:
                    libs.add(path)
    except OSError:
        pass
    return sorted(libs)


__all__ = [n for n in dir(sys.modules[__name__]) if n.startswith("run_")]
