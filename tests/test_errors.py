"""Every bad input raises ValueError / TypeError whose message names the
argument; nothing crashes, nothing is half-written. Each check runs on the
torch path and (where it applies) on the numpy path; a few go straight to the
low-level run_* functions so the C++ binding's own checks are exercised too."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import fastconv
from helpers import HAS_CUDA

ERR = (ValueError, TypeError)


def _t(*shape, dtype=torch.float32):
    return torch.randn(*shape).to(dtype)


def _n(*shape, dtype=np.float32):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


BACKENDS = ["torch", "numpy"]


def mk(backend):
    if backend == "torch":
        return lambda *s, dtype="float32": torch.randn(s).to(getattr(torch, dtype))
    return lambda *s, dtype="float32": np.random.default_rng(1).standard_normal(s).astype(dtype)


def raises(match, exc=ERR):
    return pytest.raises(exc, match=match)


# --------------------------------------------------------------- conv2d ---
@pytest.mark.parametrize("backend", BACKENDS)
def test_conv2d_bad_dtype(backend):
    r = mk(backend)
    x, w = r(1, 3, 8, 8), r(4, 3, 3, 3)
    for dt in ("int64", "int32", "float16") if backend == "torch" else ("int64", "int32", "float16", "bool"):
        with raises(r"\binput\b"):
            fastconv.conv2d(r(1, 3, 8, 8, dtype=dt), w)
        with raises(r"\bweight\b"):
            fastconv.conv2d(x, r(4, 3, 3, 3, dtype=dt))
        with raises(r"\bbias\b"):
            fastconv.conv2d(x, w, r(4, dtype=dt))


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv2d_mixed_dtypes(backend):
    r = mk(backend)
    x, w = r(1, 3, 8, 8), r(4, 3, 3, 3)
    with raises(r"\bweight\b"):
        fastconv.conv2d(x, r(4, 3, 3, 3, dtype="float64"))
    with raises(r"\bbias\b"):
        fastconv.conv2d(x, w, r(4, dtype="float64"))
    with raises(r"\bweight\b"):
        fastconv.conv2d(r(1, 3, 8, 8, dtype="float64"), w)


def test_mixed_numpy_and_torch():
    with raises(r"\bweight\b"):
        fastconv.conv2d(_t(1, 3, 8, 8), _n(4, 3, 3, 3))
    with raises(r"\bweight\b"):
        fastconv.conv2d(_n(1, 3, 8, 8), _t(4, 3, 3, 3))


def test_not_an_array():
    with raises(r"\binput\b", TypeError):
        fastconv.conv2d([[1.0]], _t(4, 3, 3, 3))
    with raises(r"\bweight\b", TypeError):
        fastconv.conv2d(_t(1, 3, 8, 8), "w")
    with raises(r"\binput\b", TypeError):
        fastconv.relu(3.0)
    with raises(r"\binput\b", TypeError):
        fastconv.max_pool2d(None, 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv2d_bad_ndim(backend):
    r = mk(backend)
    w = r(4, 3, 3, 3)
    for shape in [(8,), (3, 8), (1, 1, 3, 8, 8)]:
        with raises(r"\binput\b"):
            fastconv.conv2d(r(*shape), w)
    for shape in [(4, 3, 3), (4, 27), (4, 3, 3, 3, 1)]:
        with raises(r"\bweight\b"):
            fastconv.conv2d(r(1, 3, 8, 8), r(*shape))


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv2d_channel_and_group_mismatch(backend):
    r = mk(backend)
    with raises(r"\b(weight|input)\b"):
        fastconv.conv2d(r(1, 3, 8, 8), r(4, 2, 3, 3))  # C=3 but weight expects 2
    with raises(r"\b(weight|input|groups)\b"):
        fastconv.conv2d(r(1, 4, 8, 8), r(4, 4, 3, 3), groups=2)  # per-group channels should be 2
    with raises(r"\bgroups\b"):
        fastconv.conv2d(r(1, 6, 8, 8), r(4, 2, 3, 3), groups=3)  # out channels 4 not divisible by 3
    with raises(r"\bgroups\b"):
        fastconv.conv2d(r(1, 5, 8, 8), r(4, 2, 3, 3), groups=2)  # in channels 5 not divisible by 2
    for g in (0, -1):
        with raises(r"\bgroups\b"):
            fastconv.conv2d(r(1, 4, 8, 8), r(4, 4, 3, 3), groups=g)
    with raises(r"\bgroups\b"):
        fastconv.conv2d(r(1, 4, 8, 8), r(4, 4, 3, 3), groups=1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv2d_bad_hyperparameters(backend):
    r = mk(backend)
    x, w = r(1, 3, 8, 8), r(4, 3, 3, 3)
    for name, bads in [("stride", [0, -1, (1, 0), (0, 2), (1, 2, 3), 1.5, "2"]),
                       ("dilation", [0, -2, (1, 0), (2, 2, 2)]),
                       ("padding", [-1, (0, -1), (1, 2, 3), "full", "SAME", 1.0])]:
        for bad in bads:
            with raises(rf"\b{name}\b"):
                fastconv.conv2d(x, w, **{name: bad})
    with raises(r"\bpadding\b"):
        fastconv.conv2d(x, w, padding="same", stride=2)  # as torch: no 'same' with stride
    with raises(r"\bvariant\b"):
        fastconv.conv2d(x, w, variant="fastest")


def test_validated_signature_cache_keeps_the_checks():
    # A good call is remembered by its signature; values equal to it but of a rejected type (True == 1,
    # (1.0, 1.0) == (1, 1)) or tensors of another dtype / shape must still be checked.
    x, w = _t(2, 4, 9, 9), _t(6, 2, 3, 3)
    assert fastconv.conv2d(x, w, stride=(1, 1), groups=2).shape == (2, 6, 7, 7)
    with raises("groups"):
        fastconv.conv2d(x, w, stride=(1, 1), groups=True)
    with raises("stride"):
        fastconv.conv2d(x, w, stride=(1.0, 1.0), groups=2)
    with raises("weight"):
        fastconv.conv2d(x, w.double(), stride=(1, 1), groups=2)
    with raises("input"):
        fastconv.conv2d(x[:, :, :2, :2], w, stride=(1, 1), groups=2)
    assert fastconv.max_pool2d(x, 2, ceil_mode=True).shape == (2, 4, 5, 5)
    with raises("ceil_mode"):
        fastconv.max_pool2d(x, 2, ceil_mode=1)
    with raises("kernel_size"):
        fastconv.max_pool2d(x, 2.0, ceil_mode=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv2d_output_size_not_positive(backend):
    r = mk(backend)
    with raises(r"\b(input|weight|kernel_size|output)\b", ValueError):
        fastconv.conv2d(r(1, 3, 2, 8), r(4, 3, 3, 3))
    with raises(r"\b(input|weight|kernel_size|output)\b", ValueError):
        fastconv.conv2d(r(1, 3, 8, 8), r(4, 3, 3, 3), dilation=(1, 5))
    with raises(r"\b(input|weight|kernel_size|output)\b", ValueError):
        fastconv.conv2d(r(1, 3, 0, 8), r(4, 3, 1, 1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv2d_bias_shape(backend):
    r = mk(backend)
    x, w = r(1, 3, 8, 8), r(4, 3, 3, 3)
    for shape in [(3,), (5,), (4, 1), (1, 4), ()]:
        with raises(r"\bbias\b"):
            fastconv.conv2d(x, w, r(*shape))


def test_numpy_int_arrays():
    x = np.arange(64, dtype=np.int64).reshape(1, 1, 8, 8)
    w = np.ones((1, 1, 3, 3), dtype=np.int32)
    with raises(r"\binput\b"):
        fastconv.conv2d(x, w.astype(np.float32))
    with raises(r"\bweight\b"):
        fastconv.conv2d(x.astype(np.float32), w)
    with raises(r"\binput\b"):
        fastconv.conv1d(x[0], w[0].astype(np.float32))
    with raises(r"\binput\b"):
        fastconv.max_pool2d(x, 2)
    with raises(r"\binput\b"):
        fastconv.avg_pool2d(x, 2)
    with raises(r"\binput\b"):
        fastconv.relu(x)
    with raises(r"\binput\b"):
        fastconv.conv1x1(x, w[:, :, :1, :1].astype(np.float32))
    with raises(r"\binput\b"):
        fastconv.global_avg_pool2d(x)


# --------------------------------------------------------------- conv1d / conv1x1 ---
@pytest.mark.parametrize("backend", BACKENDS)
def test_conv1d_bad_input(backend):
    r = mk(backend)
    x, w = r(2, 3, 10), r(4, 3, 3)
    with raises(r"\binput\b"):
        fastconv.conv1d(r(2, 3, 10, 1), w)
    with raises(r"\bweight\b"):
        fastconv.conv1d(x, r(4, 3, 3, 1))
    with raises(r"\b(weight|input)\b"):
        fastconv.conv1d(x, r(4, 2, 3))
    with raises(r"\bstride\b"):
        fastconv.conv1d(x, w, stride=0)
    with raises(r"\bdilation\b"):
        fastconv.conv1d(x, w, dilation=0)
    with raises(r"\bpadding\b"):
        fastconv.conv1d(x, w, padding=-2)
    with raises(r"\bgroups\b"):
        fastconv.conv1d(r(2, 4, 10), r(3, 2, 3), groups=2)
    with raises(r"\bbias\b"):
        fastconv.conv1d(x, w, r(3))
    with raises(r"\b(input|weight|kernel_size|output)\b", ValueError):
        fastconv.conv1d(r(2, 3, 2), w)
    with raises(r"\bweight\b"):
        fastconv.conv1d(x, r(4, 3, 3, dtype="float64"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv1x1_bad_input(backend):
    r = mk(backend)
    x = r(2, 3, 5, 5)
    with raises(r"\bweight\b"):
        fastconv.conv1x1(x, r(4, 3, 3, 3))  # not 1x1
    with raises(r"\bweight\b"):
        fastconv.conv1x1(x, r(4, 2))
    with raises(r"\bweight\b"):
        fastconv.conv1x1(x, r(4, 3, 1))
    with raises(r"\binput\b"):
        fastconv.conv1x1(r(2, 3, 5, 5, 1), r(4, 3))
    with raises(r"\bbias\b"):
        fastconv.conv1x1(x, r(4, 3), r(3))
    with raises(r"\bweight\b"):
        fastconv.conv1x1(x, r(4, 3, dtype="float64"))
    with raises(r"\binput\b"):
        fastconv.conv1x1(r(2, 3, 5, 5, dtype="int32"), r(4, 3))


# --------------------------------------------------------------- backward functions ---
@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_backward_bad_input(backend):
    r = mk(backend)
    x, w = r(2, 3, 8, 8), r(4, 3, 3, 3)
    with raises(r"\bgrad_output\b"):
        fastconv.conv2d_backward(r(2, 4, 7, 7), x, w, padding=1)  # should be (2, 4, 8, 8)
    with raises(r"\bgrad_output\b"):
        fastconv.conv2d_backward(r(2, 4, 8, 8, dtype="float64"), x, w, padding=1)
    with raises(r"\bgrad_output\b"):
        fastconv.conv2d_backward(r(2, 4, 8, 8, dtype="int64"), x, w, padding=1)
    with raises(r"\binput\b"):
        fastconv.conv2d_backward(r(2, 4, 8, 8), r(3, 8, 8), w, padding=1)
    with raises(r"\bstride\b"):
        fastconv.conv2d_backward(r(2, 4, 8, 8), x, w, padding=1, stride=0)
    with raises(r"\boutput_mask\b"):
        fastconv.conv2d_backward(r(2, 4, 8, 8), x, w, padding=1, output_mask=(True, True))
    with raises(r"\bgrad_output\b"):
        fastconv.conv1d_backward(r(2, 4, 5), r(2, 3, 8), r(4, 3, 3))  # should be (2, 4, 6)
    with raises(r"\bgrad_output\b"):
        fastconv.conv1x1_backward(r(2, 5, 8, 8), x, r(4, 3))


@pytest.mark.parametrize("backend", BACKENDS)
def test_pool_backward_bad_input(backend):
    r = mk(backend)
    x = r(2, 3, 8, 8)
    y, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    gy = r(2, 3, 4, 4)
    with raises(r"\bgrad_output\b"):
        fastconv.max_pool2d_backward(r(2, 3, 3, 4), x, idx, 2)
    with raises(r"\bindices\b"):
        fastconv.max_pool2d_backward(gy, x, idx[:, :, :3], 2)
    bad_idx = idx.to(torch.int32) if backend == "torch" else idx.astype(np.int32)
    with raises(r"\bindices\b"):
        fastconv.max_pool2d_backward(gy, x, bad_idx, 2)
    bad_idx = idx.to(torch.float32) if backend == "torch" else idx.astype(np.float32)
    with raises(r"\bindices\b"):
        fastconv.max_pool2d_backward(gy, x, bad_idx, 2)
    with raises(r"\bgrad_output\b"):
        fastconv.avg_pool2d_backward(r(2, 3, 4, 5), x, 2)
    with raises(r"\bgrad_output\b"):
        fastconv.avg_pool2d_backward(r(2, 3, 4, 4, dtype="float64"), x, 2)
    with raises(r"\bgrad_output\b"):
        fastconv.relu_backward(r(2, 3, 8, 7), x)
    with raises(r"\bgrad_output\b"):
        fastconv.guided_relu_backward(r(2, 3, 8, 8, dtype="float64"), x)
    with raises(r"\bmode\b"):
        fastconv.guided_relu_backward(r(2, 3, 8, 8), x, mode="backprop")


def test_max_pool2d_backward_out_of_range_indices():
    """Indices outside the input plane must not be scattered out of bounds:
    either an error naming indices, or they are ignored."""
    x = _t(1, 2, 4, 4)
    gy = _t(1, 2, 2, 2)
    for bad in (16, -1, 1 << 40):
        idx = torch.full((1, 2, 2, 2), bad, dtype=torch.int64)
        try:
            gx = fastconv.max_pool2d_backward(gy, x, idx, 2)
        except ERR as e:
            assert "indices" in str(e)
        else:  # ignored: nothing may land in another plane
            assert torch.equal(gx, torch.zeros_like(x)), f"index {bad} scattered a gradient somewhere"


# --------------------------------------------------------------- pooling ---
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ["max", "avg"])
def test_pool_bad_input(op, backend):
    r = mk(backend)
    fn = fastconv.max_pool2d if op == "max" else fastconv.avg_pool2d
    x = r(2, 3, 8, 8)
    with raises(r"\binput\b"):
        fn(r(8, 8), 2)
    with raises(r"\binput\b"):
        fn(r(1, 2, 3, 8, 8), 2)
    with raises(r"\binput\b"):
        fn(r(2, 3, 8, 8, dtype="int64"), 2)
    for bad in [0, -1, (2, 0), (1, 2, 3)]:
        with raises(r"\bkernel_size\b"):
            fn(x, bad)
    for bad in [0, -2, (1, 0)]:
        with raises(r"\bstride\b"):
            fn(x, 2, stride=bad)
    for kernel, pad in [(2, 2), (3, 2), (1, 1), ((4, 2), (1, 2)), (3, -1)]:  # more than half the kernel, or < 0
        with raises(r"\bpadding\b"):
            fn(x, kernel, padding=pad)
    with raises(r"\b(input|kernel_size|output)\b", ValueError):
        fn(r(1, 1, 2, 8), 3)  # output size <= 0
    with raises(r"\b(input|kernel_size|output)\b", ValueError):
        fn(r(1, 1, 0, 8), 1)
    if op == "max":
        for bad in [0, -1, (1, 0)]:
            with raises(r"\bdilation\b"):
                fn(x, 2, dilation=bad)
        with raises(r"\b(input|kernel_size|output|dilation)\b", ValueError):
            fn(r(1, 1, 5, 8), 3, dilation=3)
    else:
        for bad in [0, -3]:
            with raises(r"\bdivisor_override\b"):
                fn(x, 2, divisor_override=bad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_global_pool_bad_input(backend):
    r = mk(backend)
    with raises(r"\binput\b"):
        fastconv.global_avg_pool2d(r(3, 8))
    with raises(r"\binput\b"):
        fastconv.global_avg_pool2d(r(3, 8, 8, dtype="int32"))
    with pytest.raises((ValueError, NotImplementedError), match=r"output_size"):
        fastconv.adaptive_avg_pool2d(r(1, 3, 8, 8), 2)
    with pytest.raises((ValueError, NotImplementedError), match=r"output_size"):
        fastconv.adaptive_avg_pool2d(r(1, 3, 8, 8), (1, 2))


# --------------------------------------------------------------- relu ---
@pytest.mark.parametrize("backend", BACKENDS)
def test_relu_bad_input(backend):
    r = mk(backend)
    with raises(r"\binput\b"):
        fastconv.relu(r(3, 4, dtype="int32"))
    with raises(r"\binput\b"):
        fastconv.guided_relu(r(3, 4, dtype="int64"))
    with raises(r"\bmode\b"):
        fastconv.guided_relu(r(3, 4), mode="relu")
    with raises(r"\binput\b"):
        fastconv.relu_backward(r(3, 4), r(3, 4, dtype="int64"))


def test_bool_and_complex_tensors():
    with raises(r"\binput\b"):
        fastconv.relu(torch.ones(3, dtype=torch.bool))
    with raises(r"\binput\b"):
        fastconv.relu(torch.ones(3, dtype=torch.complex64))
    with raises(r"\binput\b"):
        fastconv.conv2d(torch.ones(1, 1, 3, 3, dtype=torch.complex64), torch.ones(1, 1, 1, 1, dtype=torch.complex64))


def test_half_precision_rejected_on_cpu():
    for dt in (torch.float16, torch.bfloat16):
        with raises(r"\binput\b"):
            fastconv.conv2d(_t(1, 3, 8, 8, dtype=dt), _t(4, 3, 3, 3, dtype=dt))
        with raises(r"\binput\b"):
            fastconv.max_pool2d(_t(1, 3, 8, 8, dtype=dt), 2)
        with raises(r"\binput\b"):
            fastconv.relu(_t(3, dtype=dt))


def test_meta_device_traces_shapes_like_torch():
    # Meta tensors carry shapes only; torch's own ops accept them, and so do ours (through the fake kernels).
    x, w = torch.empty(2, 3, 11, 9, device="meta"), torch.empty(4, 3, 3, 2, device="meta")
    got = fastconv.conv2d(x, w, stride=2, padding=1)
    want = torch.nn.functional.conv2d(x, w, stride=2, padding=1)
    assert got.device.type == "meta" and got.shape == want.shape
    assert fastconv.max_pool2d(x, 3, 2, 1).shape == torch.nn.functional.max_pool2d(x, 3, 2, 1).shape
    with raises(r"\bweight\b"):
        fastconv.conv2d(x, torch.empty(4, 2, 3, 3, device="meta"))


def test_meta_and_cpu_mixed_rejected():
    with raises(r"\bweight\b"):
        fastconv.conv2d(torch.empty(1, 3, 8, 8, device="meta"), torch.randn(4, 3, 3, 3))


# --------------------------------------------------------------- devices ---
@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
def test_mixed_devices():
    x, w, b = _t(1, 3, 8, 8), _t(4, 3, 3, 3), _t(4)
    with raises(r"\bweight\b"):
        fastconv.conv2d(x, w.cuda())
    with raises(r"\bbias\b"):
        fastconv.conv2d(x.cuda(), w.cuda(), b)
    with raises(r"\bweight\b"):
        fastconv.conv2d(x.cuda(), w)
    with raises(r"\bgrad_output\b"):
        fastconv.conv2d_backward(_t(1, 4, 6, 6).cuda(), x, w)
    y, idx = fastconv.max_pool2d(x, 2, return_indices=True)
    with raises(r"\b(indices|grad_output)\b"):
        fastconv.max_pool2d_backward(_t(1, 3, 4, 4), x, idx.cuda(), 2)
    with raises(r"\bgrad_output\b"):
        fastconv.relu_backward(_t(3).cuda(), _t(3))


# --------------------------------------------------------------- nothing half-written ---
def test_failed_inplace_relu_leaves_input():
    x = torch.arange(-3, 3, dtype=torch.int32)
    keep = x.clone()
    with pytest.raises(ERR):
        fastconv.relu(x, inplace=True)
    assert torch.equal(x, keep)


# --------------------------------------------------------------- the binding's own checks ---
# Direct calls into fastconv._C (bypassing every Python check), with outputs we
# allocate: the binding must refuse bad arguments by name and write nothing.
def _C():
    import fastconv._ops as ops
    return ops._C, ops._arg


def _conv_fwd(x, w, b=None, y=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, variant=0):
    C, arg = _C()
    if y is None:
        y = np.full((1, 4, 6, 6), np.nan, np.float32)
    C.conv2d_forward(arg(x), arg(w), None if b is None else arg(b), arg(y), stride, padding, dilation, groups,
                     variant, False, 1, 0)
    return y


def test_binding_checks_conv():
    x, w = _n(1, 3, 8, 8), _n(4, 3, 3, 3)
    y = np.full((1, 4, 6, 6), np.nan, np.float32)
    _conv_fwd(x, w, y=y)  # the well-formed call works
    assert not np.isnan(y).any()
    with raises(r"\b(weight|input|groups)\b"):
        _conv_fwd(x, _n(4, 2, 3, 3))
    with raises(r"\bstride\b"):
        _conv_fwd(x, w, stride=(0, 1))
    with raises(r"\bdilation\b"):
        _conv_fwd(x, w, dilation=(1, 0))
    with raises(r"\bpadding\b"):
        _conv_fwd(x, w, padding=(-1, 0))
    with raises(r"\bgroups\b"):
        _conv_fwd(x, w, groups=0)
    with raises(r"\bgroups\b"):
        _conv_fwd(_n(1, 4, 8, 8), _n(4, 2, 3, 3), groups=3)
    with raises(r"\bbias\b"):
        _conv_fwd(x, w, b=_n(3))
    with raises(r"\b(input|weight|output)\b"):
        _conv_fwd(_n(1, 3, 2, 2), w)
    with raises(r"\b(weight|input)\b"):
        _conv_fwd(x, _n(4, 3, 3, 3, dtype=np.float64))
    with raises(r"\binput\b"):
        _conv_fwd(x.astype(np.int32), w)
    with raises(r"\binput\b"):
        _conv_fwd(np.asfortranarray(x), w)  # the kernels need contiguous NCHW
    with raises(r"\binput\b"):
        _conv_fwd(x[0], w)
    with raises(r"\bvariant\b"):
        _conv_fwd(x, w, variant=7)
    with raises(r"\boutput\b"):
        _conv_fwd(x, w, y=np.zeros((1, 4, 6, 5), np.float32))  # wrong output shape
    with raises(r"\boutput\b"):
        _conv_fwd(x, w, y=np.zeros((1, 4, 6, 6), np.float64))  # wrong output dtype
    # nothing half-written: a rejected call leaves the output as it was
    y = np.full((1, 4, 6, 6), np.nan, np.float32)
    with pytest.raises(ERR):
        _conv_fwd(x, w, b=_n(3), y=y)
    assert np.isnan(y).all()


def test_binding_checks_conv_backward():
    C, arg = _C()
    x, w, gy = _n(1, 3, 8, 8), _n(4, 3, 3, 3), _n(1, 4, 6, 6)
    gx, gw, gb = np.zeros_like(x), np.zeros_like(w), np.zeros(4, np.float32)

    def call(gy=gy, x=x, w=w, gx=gx, gw=gw, gb=gb, stride=(1, 1)):
        C.conv2d_backward(arg(gy), arg(x), arg(w), None if gx is None else arg(gx), None if gw is None else arg(gw),
                          None if gb is None else arg(gb), stride, (0, 0), (1, 1), 1, 0, False, 1, 0)

    call()
    with raises(r"\bgrad_output\b"):
        call(gy=_n(1, 4, 6, 5))
    with raises(r"\bgrad_input\b"):
        call(gx=np.zeros((1, 3, 8, 7), np.float32))
    with raises(r"\bgrad_weight\b"):
        call(gw=np.zeros((4, 3, 3, 2), np.float32))
    with raises(r"\bgrad_bias\b"):
        call(gb=np.zeros(5, np.float32))
    with raises(r"\bgrad_output\b"):
        call(gy=gy.astype(np.float64))
    with raises(r"\bstride\b"):
        call(stride=(1, -1))


def test_binding_checks_pool_and_relu():
    C, arg = _C()
    x = _n(1, 3, 8, 8)
    y = np.zeros((1, 3, 4, 4), np.float32)
    idx = np.zeros((1, 3, 4, 4), np.int64)

    def mp(k=(2, 2), s=(2, 2), p=(0, 0), d=(1, 1), x=x, y=y, idx=idx):
        C.max_pool2d_forward(arg(x), arg(y), None if idx is None else arg(idx), k, s, p, d, False, 1, 0)

    def ap(k=(2, 2), s=(2, 2), p=(0, 0), div=0, x=x, y=y):
        C.avg_pool2d_forward(arg(x), arg(y), k, s, p, False, True, div, 1, 0)

    mp()
    ap()
    with raises(r"\bkernel_size\b"):
        mp(k=(0, 2))
    with raises(r"\bstride\b"):
        mp(s=(0, 2))
    with raises(r"\bpadding\b"):
        mp(p=(2, 0))
    with raises(r"\bdilation\b"):
        mp(d=(0, 1))
    with raises(r"\bindices\b"):
        mp(idx=np.zeros((1, 3, 4, 4), np.int32))
    with raises(r"\b(output|indices)\b"):
        mp(idx=np.zeros((1, 3, 4, 3), np.int64))
    with raises(r"\b(input|output|kernel_size)\b"):
        mp(x=_n(1, 3, 1, 8), k=(3, 3), s=(1, 1))
    with raises(r"\bpadding\b"):
        ap(p=(2, 0))
    with raises(r"\binput\b"):
        ap(x=x.astype(np.int64))
    with raises(r"\bdivisor_override\b"):
        ap(div=-1)
    with raises(r"\boutput\b"):
        ap(y=np.zeros((1, 3, 4, 5), np.float32))
    z = np.zeros_like(x)
    C.relu_forward(arg(x), arg(z), 1, 0)
    np.testing.assert_array_equal(z, np.maximum(x, 0))
    with raises(r"\bmode\b"):
        C.relu_backward(arg(x), arg(x), arg(z), 9, 1, 0)
    with raises(r"\binput\b"):
        C.relu_forward(arg(x.astype(np.int32)), arg(z), 1, 0)
    with raises(r"\b(output|input)\b"):
        C.relu_forward(arg(x), arg(np.zeros(5, np.float32)), 1, 0)
    with raises(r"\bnum_threads\b"):
        C.relu_forward(arg(x), arg(z), 0, 0)


def test_binding_reads_torch_tensors_and_names_bad_ones():
    """Torch tensors go to _C as they are (the binding reads pointer, shape, strides, dtype and device itself);
    its checks name the argument that is on another device, strided, of another dtype or not a tensor."""
    C, _ = _C()
    x, w = torch.randn(2, 3, 7, 5), torch.randn(4, 3, 3, 2)
    y = torch.full((2, 4, 5, 4), float("nan"))
    C.conv2d_forward(x, w, None, y, (1, 1), (0, 0), (1, 1), 1, 0, False, 1, 0)
    torch.testing.assert_close(y, torch.nn.functional.conv2d(x, w))
    for bad, name in [(torch.empty(4, 3, 3, 2, device="meta"), "weight"),
                      (torch.randn(4, 3, 2, 3).transpose(2, 3), "weight"),
                      (w.double(), "weight"),
                      (w.to(torch.bfloat16), "weight")]:
        y.fill_(float("nan"))
        with raises(rf"\b{name}\b"):
            C.conv2d_forward(x, bad, None, y, (1, 1), (0, 0), (1, 1), 1, 0, False, 1, 0)
        assert torch.isnan(y).all()  # nothing written
    with raises(r"\boutput\b"):
        C.conv2d_forward(x, w, None, y[:, :, :, :3], (1, 1), (0, 0), (1, 1), 1, 0, False, 1, 0)
    with pytest.raises(TypeError):  # neither a tensor nor a descriptor
        C.relu_forward([1.0, -1.0], torch.empty(2), 1, 0)
    # a Parameter (a Tensor subclass) and a 0-d tensor read like any tensor
    g = torch.randn(()).abs()
    out = torch.empty(())
    C.relu_forward(torch.nn.Parameter(g), out, 1, 0)
    assert out.item() == g.item()
