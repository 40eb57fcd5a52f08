"""CUDA kernels against torch (skipped without a CUDA device).

Every op, forward and backward, on CUDA tensors:
  * float32 / float64 against torch in float64 (cudnn TF32 off for the float32 comparisons);
  * float16 / bfloat16 against a float64 reference computed from the same (rounded) inputs;
  * the TF32 tensor-core path (torch.backends.cudnn.allow_tf32 = True) against float64;
  * the reference variant of the convolutions;
  * a tensor on cuda:1 without set_device, a side stream, CUDA-graph capture and replay;
  * torch.library.opcheck for every registered op;
  * bitwise-deterministic weight / bias gradients.
Outputs are NaN-poisoned before each kernel (fastconv._ops.poison_outputs), so an element a kernel forgets
to write shows up as NaN.

Set FASTCONV_REQUIRE_CUDA=1 (scripts/gpu-check.sh does) to fail, rather than skip, when a GPU is present but
fastconv was built without its CUDA kernels.
"""
from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import fastconv  # noqa: E402
from fastconv import _ops  # noqa: E402

HAVE_CUDA = torch.cuda.is_available()
CUDA_BUILT = bool(fastconv.info().get("cuda_compiled", False))

if HAVE_CUDA and not CUDA_BUILT and os.environ.get("FASTCONV_REQUIRE_CUDA", "") == "1":
    raise RuntimeError("a CUDA device is visible but fastconv was built without its CUDA kernels "
                       "(FASTCONV_REQUIRE_CUDA=1)")

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not HAVE_CUDA, reason="needs a CUDA device"),
    pytest.mark.skipif(HAVE_CUDA and not CUDA_BUILT, reason="fastconv was built without CUDA kernels"),
]

DEV = "cuda"
HALF_TOL = {torch.float16: 2e-3, torch.bfloat16: 1e-2}
EXACT_TOL = {torch.float32: 1e-5, torch.float64: 1e-12}
TF32_TOL = 1e-3


@pytest.fixture(autouse=True)
def _poison_and_no_tf32():
    """Poison every output; cudnn TF32 off unless a test turns it on (it selects fastconv's TF32 path too)."""
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        with _ops.poison_outputs():
            yield
    finally:
        torch.backends.cudnn.allow_tf32 = old


def gen(seed=0):
    return torch.Generator(device="cpu").manual_seed(seed)


def randn(shape, dtype, seed, device=DEV, scale=1.0):
    return (torch.randn(shape, generator=gen(seed), dtype=torch.float64) * scale).to(device=device, dtype=dtype)


def assert_close_scaled(actual, expected, tol, what=""):
    """|a - e| <= tol * (max|e| + |e|) elementwise, computed in float64; NaNs must match."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a = actual.detach().double().cpu()
    e = expected.detach().double().cpu()
    assert torch.equal(torch.isnan(a), torch.isnan(e)), f"{what}: NaN pattern differs"
    a = torch.nan_to_num(a, nan=0.0)
    e = torch.nan_to_num(e, nan=0.0)
    if e.numel() == 0:
        return
    scale = max(e.abs().max().item(), 1e-30)
    err = (a - e).abs()
    bound = tol * scale + tol * e.abs()
    worst = (err / scale).max().item()
    assert bool((err <= bound).all()), f"{what}: max error {worst:.3g} x max|ref| (tolerance {tol:g})"


# ------------------------------------------------------------------------------------------------ conv2d
# (N, C, H, W, K, R, S, stride, padding, dilation, groups, bias): odd sizes, tiles cut at every edge;
# comments say which kernels the fast variant runs.
CONV_CASES = [
    (2, 3, 11, 13, 5, 3, 3, 1, 1, 1, 1, True),                # K/g < 16: direct forward / backward-data
    (2, 7, 13, 9, 19, 3, 2, (2, 1), (1, 0), (1, 2), 1, True),  # GEMM forward, direct backward-data
    (3, 20, 10, 11, 33, 3, 3, 1, 1, 1, 1, False),             # all GEMM, 12 reduction tiles, no bias
    (2, 34, 9, 7, 36, 3, 3, 2, 2, 2, 2, True),                # groups = 2, stride, padding, dilation
    (2, 16, 12, 12, 32, 3, 3, 1, 1, 1, 16, True),             # depthwise with multiplier 2
    (2, 40, 7, 9, 70, 1, 1, 1, 0, 1, 1, True),                # 1x1: vector weight loads, 2 N tiles
    (1, 17, 20, 23, 24, 5, 5, 3, 2, 1, 1, True),              # 5x5 stride 3
    (4, 16, 8, 8, 130, 3, 3, 1, 1, 1, 1, True),               # P*Q = 64: vector gy loads in backward-weight
]
CONV_IDS = [f"case{i}" for i in range(len(CONV_CASES))]


def conv_inputs(case, dtype, seed=0, device=DEV):
    n, c, h, w, k, r, s, stride, padding, dilation, groups, bias = case
    x = randn((n, c, h, w), dtype, seed, device)
    wt = randn((k, c // groups, r, s), dtype, seed + 1, device, scale=0.5)
    b = randn((k,), dtype, seed + 2, device) if bias else None
    return x, wt, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


def run_conv(fn, x, w, b, gy_seed, gy_dtype=None, **kw):
    """Forward and all gradients of fn(x, w, b, **kw) with a fixed random grad_output, drawn in gy_dtype
    (default: the output's dtype) so that a float64 reference sees the same rounded values."""
    x = x.detach().clone().requires_grad_(True)
    w = w.detach().clone().requires_grad_(True)
    b = None if b is None else b.detach().clone().requires_grad_(True)
    y = fn(x, w, b, **kw)
    gy = randn(tuple(y.shape), gy_dtype or y.dtype, gy_seed, y.device).to(y.dtype)
    inputs = [x, w] + ([b] if b is not None else [])
    grads = torch.autograd.grad(y, inputs, gy)
    return (y.detach(),) + tuple(g.detach() for g in grads)


def torch_conv64(x, w, b, **kw):
    """float64 torch result for inputs of any dtype (the rounded values are the inputs)."""
    return run_conv(F.conv2d, x.double(), w.double(), None if b is None else b.double(), 99, gy_dtype=x.dtype,
                    **kw)


NAMES = ("y", "grad_input", "grad_weight", "grad_bias")


@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("variant", ["fast", "reference"])
def test_conv2d_exact_dtypes(case, dtype, variant):
    x, w, b, kw = conv_inputs(case, dtype)
    got = run_conv(lambda *a, **k: fastconv.conv2d(*a, **k, variant=variant), x, w, b, 99, **kw)
    ref = torch_conv64(x, w, b, **kw)
    for name, g, r in zip(NAMES, got, ref):
        assert g.dtype == dtype and g.device == x.device
        assert_close_scaled(g, r, EXACT_TOL[dtype], f"{name} {variant}")


@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_conv2d_half_dtypes(case, dtype):
    x, w, b, kw = conv_inputs(case, dtype)
    got = run_conv(fastconv.conv2d, x, w, b, 99, **kw)
    ref = torch_conv64(x, w, b, **kw)
    for name, g, r in zip(NAMES, got, ref):
        assert g.dtype == dtype
        assert_close_scaled(g, r, HALF_TOL[dtype], name)


@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv2d_tf32(case):
    torch.backends.cudnn.allow_tf32 = True
    x, w, b, kw = conv_inputs(case, torch.float32)
    got = run_conv(fastconv.conv2d, x, w, b, 99, **kw)
    ref = torch_conv64(x, w, b, **kw)
    for name, g, r in zip(NAMES, got, ref):
        assert_close_scaled(g, r, TF32_TOL, f"{name} tf32")


def test_conv2d_large_reduction_and_many_tiles():
    # Kr = 64 * 9 = 576 (36 reduction tiles), M = 2 * 30 * 30 (15 M tiles), K = 96 (2 N tiles)
    case = (2, 64, 30, 30, 96, 3, 3, 1, 1, 1, 1, True)
    for dtype, tol in ((torch.float32, EXACT_TOL[torch.float32]), (torch.float16, HALF_TOL[torch.float16])):
        x, w, b, kw = conv_inputs(case, dtype, seed=5)
        got = run_conv(fastconv.conv2d, x, w, b, 99, **kw)
        ref = torch_conv64(x, w, b, **kw)
        for name, g, r in zip(NAMES, got, ref):
            assert_close_scaled(g, r, tol, f"{name} {dtype}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_conv1d(dtype):
    x = randn((2, 18, 50), dtype, 1)
    w = randn((20, 18, 5), dtype, 2, scale=0.5)
    b = randn((20,), dtype, 3)
    kw = dict(stride=2, padding=3, dilation=2)
    got = run_conv(fastconv.conv1d, x, w, b, 7, **kw)
    ref = run_conv(F.conv1d, x.double(), w.double(), b.double(), 7, gy_dtype=dtype, **kw)
    tol = HALF_TOL.get(dtype, EXACT_TOL.get(dtype))
    for name, g, r in zip(NAMES, got, ref):
        assert_close_scaled(g, r, tol, name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("variant", ["fast", "reference"])
@pytest.mark.parametrize("shape", [(2, 40, 7, 9, 70), (3, 5, 4, 5, 3), (1, 64, 16, 16, 64)])
def test_conv1x1(dtype, variant, shape):
    n, c, h, wd, k = shape
    x = randn((n, c, h, wd), dtype, 1)
    w = randn((k, c, 1, 1), dtype, 2, scale=0.5)
    b = randn((k,), dtype, 3)
    got = run_conv(lambda *a: fastconv.conv1x1(*a, variant=variant), x, w, b, 7)
    ref = run_conv(F.conv2d, x.double(), w.double(), b.double(), 7, gy_dtype=dtype)
    tol = HALF_TOL.get(dtype, EXACT_TOL.get(dtype))
    for name, g, r in zip(NAMES, got, ref):
        assert_close_scaled(g, r, tol, name)


def test_conv2d_backward_function_and_mask():
    x, w, b, kw = conv_inputs(CONV_CASES[3], torch.float64)
    y, gx, gw, gb = torch_conv64(x, w, b, **kw)
    gy = randn(tuple(y.shape), torch.float64, 99)
    out = fastconv.conv2d_backward(gy, x, w, output_mask=(True, True, True), **kw)
    for name, g, r in zip(NAMES[1:], out, (gx, gw, gb)):
        assert_close_scaled(g, r, EXACT_TOL[torch.float64], name)
    out = fastconv.conv2d_backward(gy, x, w, output_mask=(False, True, False), **kw)
    assert out[0] is None and out[2] is None
    assert_close_scaled(out[1], gw, EXACT_TOL[torch.float64], "grad_weight only")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("tf32", [False, True])
def test_conv2d_backward_deterministic(dtype, tf32):
    torch.backends.cudnn.allow_tf32 = tf32
    case = (8, 32, 20, 20, 64, 3, 3, 1, 1, 1, 1, True)
    x, w, b, kw = conv_inputs(case, dtype, seed=11)
    first = run_conv(fastconv.conv2d, x, w, b, 5, **kw)
    for _ in range(3):
        again = run_conv(fastconv.conv2d, x, w, b, 5, **kw)
        for name, a0, a1 in zip(NAMES, first, again):
            assert torch.equal(a0, a1), f"{name} differs between runs"


def test_conv2d_empty_batch():
    x, w, b, kw = conv_inputs((0, 6, 5, 5, 20, 3, 3, 1, 1, 1, 1, True), torch.float32)
    y, gx, gw, gb = run_conv(fastconv.conv2d, x, w, b, 1, **kw)
    assert y.shape == (0, 20, 5, 5) and gx.shape == x.shape
    assert torch.count_nonzero(gw) == 0 and torch.count_nonzero(gb) == 0


# ------------------------------------------------------------------------------------------------ pooling
# (kernel, stride, padding, dilation, ceil_mode)
MAX_CASES = [
    (3, 2, 1, 1, False),
    ((2, 3), (2, 1), (1, 0), (1, 2), True),
    (2, 2, 0, 1, False),
    (3, 1, 1, 1, False),
    (3, 2, 0, 1, True),
    (3, 3, 1, 2, True),
]


def pool_input(dtype, seed=0, shape=(2, 3, 11, 14)):
    return randn(shape, dtype, seed)


# (11, 14): rows not a multiple of 4, one element per thread; (12, 16): 4 per thread, vector stores
POOL_SHAPES = [(2, 3, 11, 14), (2, 3, 12, 16)]


@pytest.mark.parametrize("shape", POOL_SHAPES, ids=["odd", "vec"])
@pytest.mark.parametrize("cfg", MAX_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_max_pool2d(cfg, dtype, shape):
    k, s, p, d, ceil = cfg
    x = pool_input(dtype, shape=shape)
    xr = x.detach().clone().requires_grad_(True)
    xt = x.detach().clone().requires_grad_(True)
    y, idx = fastconv.max_pool2d(xr, k, s, p, d, ceil, return_indices=True)
    yt, it = F.max_pool2d(xt, k, s, p, d, ceil, return_indices=True)
    assert torch.equal(y, yt) and torch.equal(idx, it)
    gy = randn(tuple(y.shape), dtype, 3)
    (gx,) = torch.autograd.grad(y, xr, gy)
    (gxt,) = torch.autograd.grad(yt, xt, gy)
    assert_close_scaled(gx, gxt, HALF_TOL.get(dtype, EXACT_TOL.get(dtype)), "grad_input")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_max_pool2d_ties_and_nan(dtype):
    # small integers: many ties (first maximum wins); a few NaNs and -inf (NaN propagates, as torch)
    x = torch.randint(-2, 3, (2, 3, 9, 16), generator=gen(4)).to(DEV, dtype)
    x[0, 0, 1, 1] = float("nan")
    x[1, 2, 4, 4:6] = float("nan")
    x[1, 1, :3, :3] = float("-inf")
    for cfg in MAX_CASES:
        k, s, p, d, ceil = cfg
        y, idx = fastconv.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
        yt, it = F.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
        assert torch.equal(torch.isnan(y), torch.isnan(yt)), cfg
        assert torch.equal(torch.nan_to_num(y), torch.nan_to_num(yt)), cfg
        assert torch.equal(idx, it), cfg


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_max_pool2d_backward_function(dtype):
    x = pool_input(dtype, 6)
    y, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    gy = randn(tuple(y.shape), dtype, 7)
    gx = fastconv.max_pool2d_backward(gy, x, idx, 3, 2, 1)
    gxt = torch.ops.aten.max_pool2d_with_indices_backward(gy, x, [3, 3], [2, 2], [1, 1], [1, 1], False, idx)
    assert_close_scaled(gx, gxt, EXACT_TOL[dtype], "grad_input")


# (kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
AVG_CASES = [
    (3, 2, 1, False, True, None),
    (3, 2, 1, True, False, None),
    (2, 2, 0, False, True, None),
    ((3, 2), (2, 3), (1, 1), True, True, 5),
    (4, 3, 2, True, False, None),
    (3, 1, 1, False, False, None),
    (5, 2, 2, True, True, None),
]


@pytest.mark.parametrize("shape", POOL_SHAPES, ids=["odd", "vec"])
@pytest.mark.parametrize("cfg", AVG_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_avg_pool2d(cfg, dtype, shape):
    k, s, p, ceil, cip, div = cfg
    x = pool_input(dtype, 8, shape=shape)
    xr = x.detach().clone().requires_grad_(True)
    xt = x.detach().clone().requires_grad_(True)
    y = fastconv.avg_pool2d(xr, k, s, p, ceil, cip, div)
    yt = F.avg_pool2d(xt, k, s, p, ceil, cip, div)
    tol = HALF_TOL.get(dtype, EXACT_TOL.get(dtype))
    assert_close_scaled(y, yt, tol, "y")
    gy = randn(tuple(y.shape), dtype, 9)
    (gx,) = torch.autograd.grad(y, xr, gy)
    (gxt,) = torch.autograd.grad(yt, xt, gy)
    assert_close_scaled(gx, gxt, tol, "grad_input")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_global_avg_pool2d(dtype):
    x = pool_input(dtype, 10, shape=(3, 5, 7, 9))
    assert_close_scaled(fastconv.global_avg_pool2d(x), F.adaptive_avg_pool2d(x, 1),
                        HALF_TOL.get(dtype, EXACT_TOL.get(dtype)), "y")


# ------------------------------------------------------------------------------------------------ relu
def relu_inputs(dtype, n, seed):
    x = randn((n,), dtype, seed)
    x[::7] = 0.0
    if n > 20:
        x[3] = float("nan")
        x[5] = float("inf")
        x[6] = float("-inf")
        x[8] = -0.0
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n", [1, 7, 64, 1001, 4099])
@pytest.mark.parametrize("offset", [0, 1])  # offset 1: pointers not 16-byte aligned, the scalar path
def test_relu(dtype, n, offset):
    base = relu_inputs(dtype, n + offset, n)
    x = base[offset:]
    assert x.is_contiguous()
    xr = x.detach().clone().requires_grad_(True) if offset == 0 else x.detach().requires_grad_(True)
    y = fastconv.relu(xr)
    yt = torch.relu(x)
    assert torch.equal(torch.isnan(y), torch.isnan(yt))
    assert torch.equal(torch.nan_to_num(y), torch.nan_to_num(yt))
    gy = randn((n,), dtype, n + 1)
    gy[::5] = -gy[::5].abs()
    (gx,) = torch.autograd.grad(y, xr, gy)
    xt = x.detach().clone().requires_grad_(True)
    (gxt,) = torch.autograd.grad(torch.relu(xt), xt, gy)
    assert torch.equal(torch.nan_to_num(gx), torch.nan_to_num(gxt))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize("mode", ["guided", "deconvnet"])
def test_guided_relu(dtype, mode):
    n = 1003
    x = relu_inputs(dtype, n, 3)
    x[3] = 1.0  # no NaN here: the mask formula below is the plain one
    gy = randn((n,), dtype, 4)
    xr = x.detach().clone().requires_grad_(True)
    y = fastconv.guided_relu(xr, mode=mode)
    assert torch.equal(y, torch.relu(x))
    (gx,) = torch.autograd.grad(y, xr, gy)
    zero = torch.zeros_like(gy)
    if mode == "guided":
        expect = torch.where((x > 0) & (gy > 0), gy, zero)
    else:
        expect = torch.where(gy > 0, gy, zero)
    assert torch.equal(gx, expect)
    gx2 = fastconv.guided_relu_backward(gy, x, mode=mode)
    assert torch.equal(gx2, expect)


def test_relu_inplace():
    x = relu_inputs(torch.float32, 1000, 1)
    expect = torch.relu(x)
    out = fastconv.relu(x, inplace=True)
    assert torch.equal(torch.nan_to_num(x), torch.nan_to_num(expect))
    assert out.data_ptr() == x.data_ptr()


# ------------------------------------------------------------------------- devices, streams, graphs
@pytest.mark.skipif(not HAVE_CUDA or torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
def test_second_device_without_set_device():
    before = torch.cuda.current_device()
    dev = torch.device("cuda", 1 if before == 0 else 0)
    x, w, b, kw = conv_inputs(CONV_CASES[3], torch.float32, device=dev)
    got = run_conv(fastconv.conv2d, x, w, b, 99, **kw)
    ref = torch_conv64(x, w, b, **kw)
    for name, g, r in zip(NAMES, got, ref):
        assert g.device == dev
        assert_close_scaled(g, r, EXACT_TOL[torch.float32], name)
    xp = randn((2, 3, 11, 14), torch.float32, 1, dev)
    y, idx = fastconv.max_pool2d(xp, 3, 2, 1, return_indices=True)
    yt, it = F.max_pool2d(xp, 3, 2, 1, return_indices=True)
    assert torch.equal(y, yt) and torch.equal(idx, it)
    assert torch.equal(fastconv.avg_pool2d(xp, 3, 2, 1), F.avg_pool2d(xp, 3, 2, 1))
    assert torch.equal(fastconv.relu(xp), torch.relu(xp))
    torch.cuda.synchronize(dev)
    assert torch.cuda.current_device() == before


def test_side_stream():
    s = torch.cuda.Stream()
    x, w, b, kw = conv_inputs(CONV_CASES[2], torch.float32)
    ref = torch_conv64(x, w, b, **kw)
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        # a long kernel first on the side stream, so work launched on the wrong stream would race it
        big = torch.randn(4096, 4096, device=DEV)
        big = big @ big
        xs = x * 1.0
        got = run_conv(fastconv.conv2d, xs, w, b, 99, **kw)
        xp = fastconv.max_pool2d(fastconv.relu(xs), 2)
        xa = fastconv.avg_pool2d(xs, 3, 2, 1)
    s.synchronize()
    for name, g, r in zip(NAMES, got, ref):
        assert_close_scaled(g, r, EXACT_TOL[torch.float32], name)
    assert torch.equal(xp, F.max_pool2d(torch.relu(x), 2))
    assert_close_scaled(xa, F.avg_pool2d(x, 3, 2, 1), EXACT_TOL[torch.float32], "avg")
    del big


@pytest.mark.parametrize("tf32", [False, True])
def test_cuda_graph_capture_conv_forward_backward(tf32):
    torch.backends.cudnn.allow_tf32 = tf32
    case = CONV_CASES[3]
    x, w, b, kw = conv_inputs(case, torch.float32, seed=20)
    sx = x.clone().requires_grad_(True)
    sw_ = w.clone().requires_grad_(True)
    sb = b.clone().requires_grad_(True)

    def step():
        y = fastconv.conv2d(sx, sw_, sb, **kw)
        y = fastconv.relu(y)
        y = fastconv.max_pool2d(y, 2, ceil_mode=True)
        gy = torch.ones_like(y)
        grads = torch.autograd.grad(y, (sx, sw_, sb), gy)
        return (y,) + grads

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm up on a side stream, as torch's documentation asks
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with _ops.poison_outputs(False), torch.cuda.graph(g):
        static_out = step()
    for seed in (30, 31):
        nx, nw, nb, _ = conv_inputs(case, torch.float32, seed=seed)
        with torch.no_grad():
            sx.copy_(nx)
            sw_.copy_(nw)
            sb.copy_(nb)
        g.replay()
        torch.cuda.synchronize()
        eager = step()
        tol = TF32_TOL if tf32 else EXACT_TOL[torch.float32]
        for name, a, e in zip(("y", "grad_input", "grad_weight", "grad_bias"), static_out, eager):
            assert_close_scaled(a, e, tol, f"graph replay {name}")


# ------------------------------------------------------------------------------------------------ opcheck
def _req(t):
    return t.detach().clone().requires_grad_(True)


def opcheck_cases():
    d = torch.float64
    x = randn((2, 6, 9, 8), d, 1)
    w = randn((20, 3, 3, 3), d, 2)
    b = randn((20,), d, 3)
    x1 = randn((2, 6, 17), d, 4)
    w1 = randn((20, 6, 3), d, 5)
    w11 = randn((20, 6, 1, 1), d, 6)
    gy = randn((2, 20, 5, 8), d, 7)       # conv2d below: stride (2, 1), padding 1, groups 2
    gy1 = randn((2, 20, 9), d, 8)         # conv1d: stride 2, padding 1
    gy11 = randn((2, 20, 9, 8), d, 9)
    xp = randn((2, 3, 11, 14), d, 10)
    yp, ip = F.max_pool2d(xp, 3, 2, 1, return_indices=True)
    gyp = randn(tuple(yp.shape), d, 11)
    gya = randn(tuple(F.avg_pool2d(xp, 3, 2, 1, True, False).shape), d, 12)
    xr = randn((100,), d, 13)
    gr = randn((100,), d, 14)
    ops = torch.ops.fastconv
    cases = [
        ("conv2d", ops.conv2d.default, (_req(x), _req(w), _req(b), [2, 1], [1, 1], [1, 1], 2, 0)),
        ("conv2d_backward", ops.conv2d_backward.default,
         (gy, x, w, [2, 1], [1, 1], [1, 1], 2, [True, True, True], 0)),
        ("conv1d", ops.conv1d.default, (_req(x1), _req(w1), _req(b), [2], [1], [1], 1, 0)),
        ("conv1d_backward", ops.conv1d_backward.default, (gy1, x1, w1, [2], [1], [1], 1, [True, True, True], 0)),
        ("conv1x1", ops.conv1x1.default, (_req(randn((2, 6, 9, 8), d, 15)), _req(w11), _req(b), 0)),
        ("conv1x1_backward", ops.conv1x1_backward.default, (gy11, randn((2, 6, 9, 8), d, 15), w11,
                                                            [True, True, True], 0)),
        ("max_pool2d", ops.max_pool2d.default, (_req(xp), [3, 3], [2, 2], [1, 1], [1, 1], False)),
        ("max_pool2d_backward", ops.max_pool2d_backward.default,
         (gyp, xp, ip, [3, 3], [2, 2], [1, 1], [1, 1], False)),
        ("avg_pool2d", ops.avg_pool2d.default, (_req(xp), [3, 3], [2, 2], [1, 1], True, False, 0)),
        ("avg_pool2d_backward", ops.avg_pool2d_backward.default,
         (gya, xp, [3, 3], [2, 2], [1, 1], True, False, 0)),
        ("relu", ops.relu.default, (_req(xr),)),
        ("relu_backward", ops.relu_backward.default, (gr, xr)),
        ("guided_relu", ops.guided_relu.default, (_req(xr), 1)),
        ("guided_relu_backward", ops.guided_relu_backward.default, (gr, xr, 2)),
    ]
    return {name: (op, args) for name, op, args in cases}


OPCHECK_NAMES = ["conv2d", "conv2d_backward", "conv1d", "conv1d_backward", "conv1x1", "conv1x1_backward",
                 "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward", "relu", "relu_backward",
                 "guided_relu", "guided_relu_backward"]


@pytest.mark.parametrize("name", OPCHECK_NAMES)
def test_opcheck_cuda(name):
    op, args = opcheck_cases()[name]
    torch.library.opcheck(op, args)
