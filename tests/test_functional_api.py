"""The public functional API: numpy path (also without torch), padding='same' /
'valid', conv_output_size, unusual layouts (channels_last, transposed, sliced,
numpy Fortran order / negative strides), batch 0, input smaller than the kernel,
and the small public helpers (version, info, threads, poison context)."""
from __future__ import annotations

import contextlib
import io
import itertools
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastconv
from helpers import DEVICES, assert_close, assert_equal, grads, has_poison, leaf, poison, randn, with_layout


# --------------------------------------------------------------------------
# numpy in, numpy out
# --------------------------------------------------------------------------
def _np(shape, dtype, rng):
    return rng.standard_normal(shape).astype(dtype)


NP_DTYPES = [np.float32, np.float64]
TORCH_OF = {np.float32: torch.float32, np.float64: torch.float64}


def _ref(fn, *arrays, **kw):
    return fn(*[torch.from_numpy(np.ascontiguousarray(a)).double() for a in arrays], **kw)


@pytest.mark.parametrize("dtype", NP_DTYPES)
def test_numpy_conv2d(dtype, nprng):
    x, w, b = _np((2, 4, 9, 8), dtype, nprng), _np((6, 2, 3, 2), dtype, nprng), _np((6,), dtype, nprng)
    kw = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    with poison():
        y = fastconv.conv2d(x, w, b, **kw)
    assert isinstance(y, np.ndarray) and y.dtype == dtype
    yr = _ref(F.conv2d, x, w, b, **kw)
    assert_close(y, yr, 2 * 3 * 2, what="numpy conv2d")
    gy = _np(yr.shape, dtype, nprng)
    xr, wr = leaf(torch.from_numpy(x).double()), leaf(torch.from_numpy(w).double())
    gxr, gwr = grads(F.conv2d(xr, wr, **kw), [xr, wr], torch.from_numpy(gy).double())
    with poison():
        gx, gw, gb = fastconv.conv2d_backward(gy, x, w, **kw)
    for a in (gx, gw, gb):
        assert isinstance(a, np.ndarray) and a.dtype == dtype
    n_pq = gy.shape[0] * gy.shape[2] * gy.shape[3]
    assert_close(gx, gxr, 3 * 3 * 2, what="numpy conv2d grad_input")
    assert_close(gw, gwr, n_pq, what="numpy conv2d grad_weight")
    assert_close(gb, torch.from_numpy(gy).double().sum((0, 2, 3)), n_pq, what="numpy conv2d grad_bias")
    for variant in ("fast", "reference"):
        assert_close(fastconv.conv2d(x, w, b, variant=variant, **kw), yr, 12, what=f"numpy conv2d {variant}")


@pytest.mark.parametrize("dtype", NP_DTYPES)
def test_numpy_conv1d_conv1x1(dtype, nprng):
    x, w, b = _np((3, 5, 20), dtype, nprng), _np((4, 5, 5), dtype, nprng), _np((4,), dtype, nprng)
    with poison():
        y = fastconv.conv1d(x, w, b, stride=2, padding=2)
    assert isinstance(y, np.ndarray) and y.dtype == dtype
    yr = _ref(F.conv1d, x, w, b, stride=2, padding=2)
    assert_close(y, yr, 25, what="numpy conv1d")
    gy = _np(yr.shape, dtype, nprng)
    xr, wr = leaf(torch.from_numpy(x).double()), leaf(torch.from_numpy(w).double())
    gxr, gwr = grads(F.conv1d(xr, wr, stride=2, padding=2), [xr, wr], torch.from_numpy(gy).double())
    with poison():
        gx, gw, gb = fastconv.conv1d_backward(gy, x, w, stride=2, padding=2)
    assert_close(gx, gxr, 20, what="numpy conv1d grad_input")
    assert_close(gw, gwr, 30, what="numpy conv1d grad_weight")
    assert_close(gb, torch.from_numpy(gy).double().sum((0, 2)), 30, what="numpy conv1d grad_bias")

    x, b = _np((2, 7, 4, 5), dtype, nprng), _np((3,), dtype, nprng)
    for w in (_np((3, 7, 1, 1), dtype, nprng), _np((3, 7), dtype, nprng)):
        with poison():
            y = fastconv.conv1x1(x, w, b)
        assert isinstance(y, np.ndarray) and y.dtype == dtype
        yr = _ref(F.conv2d, x, w.reshape(3, 7, 1, 1), b)
        assert_close(y, yr, 7, what="numpy conv1x1")
        gy = _np(yr.shape, dtype, nprng)
        with poison():
            gx, gw, gb = fastconv.conv1x1_backward(gy, x, w)
        assert gw.shape == w.shape
        xr, wr = leaf(torch.from_numpy(x).double()), leaf(torch.from_numpy(w).double())
        gxr, gwr = grads(F.conv2d(xr, wr.reshape(3, 7, 1, 1)), [xr, wr], torch.from_numpy(gy).double())
        assert_close(gx, gxr, 3, what="numpy conv1x1 grad_input")
        assert_close(gw, gwr, 40, what="numpy conv1x1 grad_weight")


@pytest.mark.parametrize("dtype", NP_DTYPES)
def test_numpy_pools(dtype, nprng):
    x = nprng.permutation(2 * 3 * 9 * 8).reshape(2, 3, 9, 8).astype(dtype) * 0.5  # distinct values
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    with poison():
        y, idx = fastconv.max_pool2d(x, return_indices=True, **kw)
    yr, ir = F.max_pool2d(torch.from_numpy(x), return_indices=True, **kw)
    assert isinstance(y, np.ndarray) and y.dtype == dtype
    assert isinstance(idx, np.ndarray) and idx.dtype == np.int64
    np.testing.assert_array_equal(y, yr.numpy())
    np.testing.assert_array_equal(idx, ir.numpy())
    gy = _np(y.shape, dtype, nprng)
    xr = leaf(torch.from_numpy(x).double())
    (gxr,) = grads(F.max_pool2d(xr, **kw), [xr], torch.from_numpy(gy).double())
    with poison():
        gx = fastconv.max_pool2d_backward(gy, x, idx, **kw)
    assert isinstance(gx, np.ndarray) and gx.dtype == dtype
    assert_close(gx, gxr, 4, what="numpy max_pool2d_backward")

    kw = dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), count_include_pad=False)
    with poison():
        y = fastconv.avg_pool2d(x, **kw)
    assert isinstance(y, np.ndarray) and y.dtype == dtype
    xr = leaf(torch.from_numpy(x).double())
    yr = F.avg_pool2d(xr, **kw)
    assert_close(y, yr, 6, what="numpy avg_pool2d")
    gy = _np(y.shape, dtype, nprng)
    (gxr,) = grads(yr, [xr], torch.from_numpy(gy).double())
    with poison():
        gx = fastconv.avg_pool2d_backward(gy, x, **kw)
    assert isinstance(gx, np.ndarray) and gx.dtype == dtype
    assert_close(gx, gxr, 4, what="numpy avg_pool2d_backward")

    g = fastconv.global_avg_pool2d(x)
    assert isinstance(g, np.ndarray) and g.dtype == dtype
    assert_close(g.reshape(2, 3), torch.from_numpy(x).double().mean((2, 3)), 72, what="numpy global avg pool")
    a = fastconv.adaptive_avg_pool2d(x, 1)
    assert isinstance(a, np.ndarray)
    assert_close(a.reshape(2, 3), torch.from_numpy(x).double().mean((2, 3)), 72, what="numpy adaptive avg pool")


@pytest.mark.parametrize("kind", ["fortran", "transposed", "negative_strides", "sliced"])
def test_numpy_unusual_strides(kind, nprng):
    """numpy strides are in bytes and may be negative: the result must equal the
    one for the same values in a C-contiguous array."""
    base = _np((2, 3, 9, 11), np.float32, nprng)
    if kind == "fortran":
        x = np.asfortranarray(base)
    elif kind == "transposed":
        x = np.ascontiguousarray(base.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    elif kind == "negative_strides":
        x = np.ascontiguousarray(base[:, :, ::-1, ::-1])[:, :, ::-1, ::-1]
    else:
        big = _np((4, 7, 18, 23), np.float32, nprng)
        big[::2, 1::2, ::2, 1::2] = base
        x = big[::2, 1::2, ::2, 1::2]
    np.testing.assert_array_equal(x, base)
    w = _np((4, 3, 3, 3), np.float32, nprng)
    wf = np.asfortranarray(w)
    with poison():
        y = fastconv.conv2d(x, wf, padding=1)
    assert_close(y, _ref(F.conv2d, base, w, padding=1), 27, what=f"conv2d numpy {kind}")
    with poison():
        y = fastconv.max_pool2d(x, 2)
    np.testing.assert_array_equal(y, F.max_pool2d(torch.from_numpy(base), 2).numpy())
    y = fastconv.avg_pool2d(x, 3, stride=1)
    assert_close(y, _ref(F.avg_pool2d, base, kernel_size=3, stride=1), 9, what=f"avg_pool2d numpy {kind}")
    np.testing.assert_array_equal(fastconv.relu(x), np.maximum(base, 0))


def test_numpy_path_without_torch(tmp_path):
    """numpy in, numpy out with torch not importable; checked against a plain
    numpy convolution written here."""
    script = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None          # any 'import torch' now raises ImportError
        import numpy as np
        import fastconv
        assert "torch" not in sys.modules or sys.modules["torch"] is None

        def conv2d_ref(x, w, b, s, p):
            N, C, H, W = x.shape
            K, _, R, S = w.shape
            xp = np.zeros((N, C, H + 2 * p, W + 2 * p))
            xp[:, :, p:p + H, p:p + W] = x
            P, Q = (H + 2 * p - R) // s + 1, (W + 2 * p - S) // s + 1
            y = np.zeros((N, K, P, Q))
            for i in range(P):
                for j in range(Q):
                    patch = xp[:, :, i * s:i * s + R, j * s:j * s + S]
                    y[:, :, i, j] = np.einsum("ncrs,kcrs->nk", patch, w) + b
            return y

        rng = np.random.default_rng(0)
        x = rng.standard_normal((2, 3, 8, 7))
        w = rng.standard_normal((4, 3, 3, 3))
        b = rng.standard_normal(4)
        for dt in (np.float32, np.float64):
            y = fastconv.conv2d(x.astype(dt), w.astype(dt), b.astype(dt), stride=2, padding=1)
            assert isinstance(y, np.ndarray) and y.dtype == dt, (type(y), y.dtype)
            ref = conv2d_ref(x.astype(dt).astype(np.float64), w.astype(dt).astype(np.float64), b.astype(dt), 2, 1)
            tol = 1e-5 if dt == np.float32 else 1e-12
            assert np.allclose(y, ref, atol=tol * 10, rtol=tol), np.abs(y - ref).max()
            m = fastconv.max_pool2d(x.astype(dt), 2)
            ref_m = np.stack([[[[x.astype(dt)[n, c, 2*i:2*i+2, 2*j:2*j+2].max() for j in range(3)] for i in range(4)]
                               for c in range(3)] for n in range(2)])
            assert np.array_equal(m, ref_m)
            a = fastconv.avg_pool2d(x.astype(dt), 2)
            ref_a = np.stack([[[[x.astype(dt)[n, c, 2*i:2*i+2, 2*j:2*j+2].astype(np.float64).mean() for j in range(3)]
                                for i in range(4)] for c in range(3)] for n in range(2)])
            assert np.allclose(a, ref_a, atol=1e-6)
            r = fastconv.relu(x.astype(dt))
            assert np.array_equal(r, np.maximum(x.astype(dt), 0))
            gx, gw, gb = fastconv.conv2d_backward(np.ones((2, 4, 4, 4), dt), x.astype(dt), w.astype(dt),
                                                  stride=2, padding=1)
            assert np.allclose(gb, np.full(4, 32.0))
            y1 = fastconv.conv1d(x[:, :, 0, :].astype(dt), w[:, :, 0, :].astype(dt))
            assert y1.shape == (2, 4, 5)
        info = fastconv.info()
        print("OK")
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK" in r.stdout


# --------------------------------------------------------------------------
# padding='same' / 'valid'
# --------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("R,S,dil", [(1, 1, 1), (2, 2, 1), (3, 3, 1), (4, 5, 1), (2, 3, 2), (5, 4, (3, 2)), (11, 6, 1)],
                         ids=str)
@pytest.mark.parametrize("variant", ["fast", "reference"])
def test_conv2d_padding_same(R, S, dil, variant, device, gen):
    """'same' pads asymmetrically for even effective kernels (extra on the
    right/bottom), exactly as torch."""
    x = randn((2, 3, 9, 8), torch.float32, device, gen)
    w = randn((4, 3, R, S), torch.float32, device, gen)
    b = randn((4,), torch.float32, device, gen)
    xr, wr, br = leaf(x.cpu().double()), leaf(w.cpu().double()), leaf(b.cpu().double())
    with warnings.catch_warnings():  # torch warns that it makes a padded copy for even kernels
        warnings.simplefilter("ignore", UserWarning)
        yr = F.conv2d(xr, wr, br, padding="same", dilation=dil)
    assert yr.shape[2:] == x.shape[2:]
    gy = randn(yr.shape, torch.float32, device, gen)
    ref = grads(yr, [xr, wr, br], gy.cpu().double())
    xl, wl, bl = leaf(x), leaf(w), leaf(b)
    with poison():
        y = fastconv.conv2d(xl, wl, bl, padding="same", dilation=dil, variant=variant)
        got = grads(y, [xl, wl, bl], gy)
    assert_close(y, yr, 3 * R * S, dtype=torch.float32, what="conv2d same")
    for name, a, e, red in zip(["gx", "gw", "gb"], got, ref, [4 * R * S, 2 * 72, 2 * 72]):
        assert_close(a, e, red, dtype=torch.float32, what=f"conv2d same {name}")
    dh, dw = (dil, dil) if isinstance(dil, int) else dil
    if dh * (R - 1) + 1 > 9 or dw * (S - 1) + 1 > 8:
        return  # 'valid' would be an empty output (tested in test_errors)
    y = fastconv.conv2d(x, w, b, padding="valid", dilation=dil, variant=variant)
    assert_close(y, F.conv2d(x.cpu().double(), w.cpu().double(), b.cpu().double(), padding="valid", dilation=dil),
                 3 * R * S, dtype=torch.float32, what="conv2d valid")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("R,dil", [(1, 1), (2, 1), (3, 1), (4, 1), (4, 3), (7, 2)])
def test_conv1d_padding_same(R, dil, device, gen):
    x = randn((2, 3, 13), torch.float64, device, gen)
    w = randn((5, 3, R), torch.float64, device, gen)
    xr, wr = leaf(x.cpu()), leaf(w.cpu())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yr = F.conv1d(xr, wr, padding="same", dilation=dil)
    gy = randn(yr.shape, torch.float64, device, gen)
    ref = grads(yr, [xr, wr], gy.cpu())
    xl, wl = leaf(x), leaf(w)
    with poison():
        y = fastconv.conv1d(xl, wl, padding="same", dilation=dil)
        got = grads(y, [xl, wl], gy)
    assert_close(y, yr, 3 * R, dtype=torch.float64, what="conv1d same")
    assert_close(got[0], ref[0], 5 * R, dtype=torch.float64, what="conv1d same gx")
    assert_close(got[1], ref[1], 26, dtype=torch.float64, what="conv1d same gw")
    y = fastconv.conv1d(x, w, padding="valid", dilation=dil)
    assert_close(y, F.conv1d(x.cpu(), w.cpu(), padding="valid", dilation=dil), 3 * R, what="conv1d valid")


def test_padding_same_numpy(nprng):
    x, w = _np((1, 2, 6, 7), np.float64, nprng), _np((3, 2, 4, 2), np.float64, nprng)
    y = fastconv.conv2d(x, w, padding="same")
    assert y.shape == (1, 3, 6, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yr = _ref(F.conv2d, x, w, padding="same")
    assert_close(y, yr, 16, what="numpy same")


# --------------------------------------------------------------------------
# conv_output_size
# --------------------------------------------------------------------------
def test_conv_output_size_matches_torch_conv():
    for n, k, s, p, d in itertools.product([1, 2, 5, 7, 12], [1, 2, 3, 5], [1, 2, 3], [0, 1, 3], [1, 2]):
        if d * (k - 1) + 1 > n + 2 * p:
            continue
        expected = F.conv1d(torch.zeros(1, 1, n), torch.zeros(1, 1, k), stride=s, padding=p, dilation=d).shape[-1]
        assert fastconv.conv_output_size(n, k, s, p, d) == expected, (n, k, s, p, d)
        assert fastconv.conv_output_size(n, k, stride=s, padding=p, dilation=d) == expected
        assert fastconv.conv_output_size(n, kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=False) == expected


def test_conv_output_size_ceil_mode_matches_torch_pool():
    for n, k, s, p, d in itertools.product([1, 2, 4, 5, 7, 10, 13], [1, 2, 3, 4, 5], [1, 2, 3, 4], [0, 1, 2], [1, 2]):
        if p > k // 2 or d * (k - 1) + 1 > n + 2 * p:
            continue
        for ceil in (False, True):
            expected = F.max_pool2d(torch.zeros(1, 1, n, 1), (k, 1), (s, 1), (p, 0), (d, 1), ceil_mode=ceil).shape[2]
            got = fastconv.conv_output_size(n, k, s, p, d, ceil_mode=ceil)
            assert got == expected, dict(n=n, k=k, s=s, p=p, d=d, ceil_mode=ceil, got=got, torch=expected)


def test_conv_output_size_notes_examples():
    # (in - F + 2P)/S + 1, the classic examples: 32x32 input, 5x5 filter, stride 1, pad 2 -> 32; 7x7, F=3, S=2 -> 3
    assert fastconv.conv_output_size(32, 5, 1, 2) == 32
    assert fastconv.conv_output_size(7, 3, 2, 0) == 3
    assert fastconv.conv_output_size(227, 11, 4, 0) == 55  # AlexNet conv1
    assert fastconv.conv_output_size(224, 7, 2, 3) == 112  # ResNet stem
    assert fastconv.conv_output_size(112, 3, 2, 1) == 56


# --------------------------------------------------------------------------
# layouts, batch 0, tiny inputs (torch semantics)
# --------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced"])
def test_all_ops_non_contiguous_inputs(layout, device, gen):
    """Every op on a non-contiguous input (and non-contiguous grad_output)
    gives torch's values; the input is not modified."""
    x0 = randn((2, 4, 10, 9), torch.float32, device, gen)
    x = with_layout(x0, layout, gen)
    keep = x.clone()
    w = with_layout(randn((6, 4, 3, 3), torch.float32, device, gen), layout, gen)
    xd, wd = x0.cpu().double(), w.cpu().double()
    assert_close(fastconv.conv2d(x, w, stride=2, padding=1), F.conv2d(xd, wd, stride=2, padding=1), 36,
                 dtype=torch.float32, what="conv2d")
    assert_close(fastconv.conv1x1(x, w[:, :, :1, :1]), F.conv2d(xd, wd[:, :, :1, :1]), 4, what="conv1x1")
    assert_close(fastconv.conv1d(x[:, :, 0], w[:, :, 0]), F.conv1d(xd[:, :, 0], wd[:, :, 0]), 12, what="conv1d")
    assert_equal(fastconv.max_pool2d(x, 3, 2, 1), F.max_pool2d(x0.cpu(), 3, 2, 1), "max_pool2d")
    assert_close(fastconv.avg_pool2d(x, 2), F.avg_pool2d(xd, 2), 4, what="avg_pool2d")
    assert_equal(fastconv.relu(x), F.relu(x0.cpu()), "relu")
    assert_equal(x, keep, "input untouched")
    gy = with_layout(randn((2, 6, 5, 5), torch.float32, device, gen), "transposed", gen)
    xr, wr = leaf(xd), leaf(wd)
    ref = grads(F.conv2d(xr, wr, stride=2, padding=1), [xr, wr], gy.cpu().double())
    gx, gw, _ = fastconv.conv2d_backward(gy, x, w, stride=2, padding=1)
    assert_close(gx, ref[0], 54, dtype=torch.float32, what="conv2d_backward gx, non-contiguous grad_output")
    assert_close(gw, ref[1], 50, dtype=torch.float32, what="conv2d_backward gw, non-contiguous grad_output")


@pytest.mark.parametrize("device", DEVICES)
def test_expanded_input(device, gen):
    """A stride-0 (expanded) input: the same values as its materialised copy."""
    row = randn((1, 3, 6, 7), torch.float32, device, gen)
    x = row.expand(4, 3, 6, 7)
    w = randn((2, 3, 3, 3), torch.float32, device, gen)
    assert_close(fastconv.conv2d(x, w, padding=1), F.conv2d(x.cpu().double(), w.cpu().double(), padding=1), 27,
                 what="conv2d expanded input")
    b = randn((1,), torch.float32, device, gen).expand(2)
    assert_close(fastconv.conv2d(x, w, b), F.conv2d(x.cpu().double(), w.cpu().double(), b.cpu().double()), 27,
                 what="conv2d expanded bias")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batch_zero(dtype, device, gen):
    """N = 0: empty outputs of torch's shape; weight and bias gradients are
    zeros (written, not left as NaN)."""
    x = randn((0, 3, 8, 7), dtype, device, gen)
    w = randn((4, 3, 3, 3), dtype, device, gen)
    b = randn((4,), dtype, device, gen)
    xl, wl, bl = leaf(x), leaf(w), leaf(b)
    with poison():
        y = fastconv.conv2d(xl, wl, bl, padding=1)
        assert y.shape == (0, 4, 8, 7) and y.dtype == dtype
        gx, gw, gb = grads(y, [xl, wl, bl], torch.zeros(0, 4, 8, 7, dtype=dtype, device=device))
    assert gx.shape == x.shape
    assert_equal(gw, torch.zeros(4, 3, 3, 3, dtype=dtype), "grad_weight for N=0")
    assert_equal(gb, torch.zeros(4, dtype=dtype), "grad_bias for N=0")
    with poison():
        gx2, gw2, gb2 = fastconv.conv2d_backward(torch.zeros(0, 4, 8, 7, dtype=dtype, device=device), x, w, padding=1)
    assert_equal(gw2, torch.zeros(4, 3, 3, 3, dtype=dtype), "conv2d_backward grad_weight for N=0")
    assert_equal(gb2, torch.zeros(4, dtype=dtype), "conv2d_backward grad_bias for N=0")
    with poison():
        assert fastconv.conv1d(x[:, :, 0], w[:, :, 0]).shape == (0, 4, 5)
        assert fastconv.conv1x1(x, w[:, :, 0, 0]).shape == (0, 4, 8, 7)
        _, gw, gb = fastconv.conv1x1_backward(torch.zeros(0, 4, 8, 7, dtype=dtype, device=device), x, w[:, :, :1, :1])
    assert_equal(gw, torch.zeros(4, 3, 1, 1, dtype=dtype), "conv1x1 grad_weight for N=0")
    assert_equal(gb, torch.zeros(4, dtype=dtype), "conv1x1 grad_bias for N=0")
    with poison():
        y, i = fastconv.max_pool2d(x, 2, return_indices=True)
    assert y.shape == (0, 3, 4, 3) and i.shape == (0, 3, 4, 3)
    assert fastconv.avg_pool2d(x, 2).shape == (0, 3, 4, 3)
    assert fastconv.global_avg_pool2d(x).shape in {(0, 3, 1, 1), (0, 3)}
    assert fastconv.relu(x).shape == x.shape
    # channels 0 is not batch 0 but must not crash either
    assert fastconv.relu(randn((2, 0, 3), dtype, device, gen)).shape == (2, 0, 3)


@pytest.mark.parametrize("device", DEVICES)
def test_input_smaller_than_kernel(device, gen):
    """As torch: an error when the (padded) input is smaller than the (dilated)
    kernel; fine when the padding makes it fit."""
    x = randn((1, 2, 3, 4), torch.float32, device, gen)
    w = randn((3, 2, 5, 5), torch.float32, device, gen)
    with pytest.raises(RuntimeError):
        F.conv2d(x.cpu(), w.cpu())  # torch refuses too
    with pytest.raises(ValueError, match=r"input|weight|kernel|output"):
        fastconv.conv2d(x, w)
    with pytest.raises(ValueError, match=r"input|weight|kernel|output"):
        fastconv.conv2d(x, w[:, :, :3, :3], dilation=2)
    with pytest.raises(ValueError, match=r"input|weight|kernel|output"):
        fastconv.conv1d(x[:, :, 0], w[:, :, 0])
    with pytest.raises(ValueError, match=r"input|kernel|output"):
        fastconv.max_pool2d(x, 5)
    with pytest.raises(ValueError, match=r"input|kernel|output"):
        fastconv.avg_pool2d(x, (4, 5))
    y = fastconv.conv2d(x, w, padding=1)
    assert_close(y, F.conv2d(x.cpu().double(), w.cpu().double(), padding=1), 50, what="padded to fit")
    assert y.shape == (1, 3, 1, 2)


# --------------------------------------------------------------------------
# variants agree with each other on a bigger problem (both against torch)
# --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("stride", [1, 2])
def test_variants_bigger_problem(stride, dtype, gen):
    """Reduction lengths spanning several cache blocks (C*R*S = 360 > 256), many
    output-channel panels and pixel blocks: forward and backward, both variants."""
    x = randn((3, 40, 23, 21), dtype, "cpu", gen)
    w = randn((44, 40, 3, 3), dtype, "cpu", gen)
    b = randn((44,), dtype, "cpu", gen)
    xr, wr, br = leaf(x.double()), leaf(w.double()), leaf(b.double())
    yr = F.conv2d(xr, wr, br, padding=1, stride=stride)
    gy = randn(yr.shape, dtype, "cpu", gen)
    ref = grads(yr, [xr, wr, br], gy.double())
    npq = yr.shape[0] * yr.shape[2] * yr.shape[3]
    for v in ("fast", "reference"):
        with poison():
            y = fastconv.conv2d(x, w, b, padding=1, stride=stride, variant=v)
            got = fastconv.conv2d_backward(gy, x, w, padding=1, stride=stride, variant=v)
        assert_close(y, yr, 40 * 9, dtype=dtype, what=f"{v} forward")
        for name, a, e, red in zip(["gx", "gw", "gb"], got, ref, [44 * 9, npq, npq]):
            assert_close(a, e, red, dtype=dtype, what=f"{v} {name}")


# --------------------------------------------------------------------------
# small public helpers
# --------------------------------------------------------------------------
def test_poison_context_exists():
    """The lead's NaN-poisoning hook that the kernel tests rely on."""
    assert has_poison(), "fastconv._ops.poison_outputs() is missing: unwritten outputs go undetected"
    import fastconv._ops as ops
    with ops.poison_outputs():
        with ops.poison_outputs():  # re-entrant
            pass
        y = fastconv.relu(torch.ones(5))
    assert_equal(y, torch.ones(5), "relu under poison")


def test_poison_catches_unwritten_outputs(monkeypatch):
    """Self-test of the harness: with a kernel that writes nothing, a poisoned
    output is all NaN (float) / -7 (int64 indices), so the comparisons fail."""
    import fastconv._ops as ops
    if not has_poison():
        pytest.fail("fastconv._ops.poison_outputs() is missing")
    monkeypatch.setattr(ops._C, "relu_forward", lambda *a, **k: None)
    monkeypatch.setattr(ops._C, "max_pool2d_forward", lambda *a, **k: None)
    monkeypatch.setattr(ops._C, "conv2d_backward", lambda *a, **k: None)
    with ops.poison_outputs():
        assert torch.isnan(fastconv.relu(torch.ones(5))).all()
        assert np.isnan(fastconv.relu(np.ones(5, np.float32))).all()
        y, idx = fastconv.max_pool2d(torch.ones(1, 1, 4, 4), 2, return_indices=True)
        assert torch.isnan(y).all() and (idx == -7).all()
        gx, gw, gb = fastconv.conv2d_backward(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3))
        assert torch.isnan(gx).all() and torch.isnan(gw).all() and torch.isnan(gb).all()
    with pytest.raises(AssertionError, match="NaN"):
        with ops.poison_outputs():
            assert_close(fastconv.relu(torch.ones(5)), torch.ones(5, dtype=torch.float64), 1)


def test_version_and_info():
    assert isinstance(fastconv.__version__, str) and fastconv.__version__[0].isdigit()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        info = fastconv.info()
    text = (str(info) + buf.getvalue()).lower()
    assert fastconv.__version__ in text
    assert any(isa in text for isa in ("generic", "avx2", "avx512", "avx-512")), text


def test_threads_roundtrip():
    n0 = fastconv.get_num_threads()
    assert isinstance(n0, int) and n0 >= 1
    try:
        for n in (1, 2, 3):
            fastconv.set_num_threads(n)
            assert fastconv.get_num_threads() == n
    finally:
        fastconv.set_num_threads(n0)
    with pytest.raises(ValueError, match="n|thread"):
        fastconv.set_num_threads(0)


def test_thread_count_follows_torch():
    """With torch loaded the kernels use torch.get_num_threads()."""
    n0 = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert fastconv.get_num_threads() == 1
        torch.set_num_threads(2)
        assert fastconv.get_num_threads() == 2
    finally:
        torch.set_num_threads(n0)


@pytest.mark.parametrize("device", DEVICES)
def test_unbatched_inputs(device, gen):
    """(C, H, W) / (C, L) inputs behave as torch's unbatched calls."""
    x = randn((3, 9, 8), torch.float64, device, gen)
    w = randn((4, 3, 3, 2), torch.float64, device, gen)
    b = randn((4,), torch.float64, device, gen)
    xc, wc, bc = x.cpu(), w.cpu(), b.cpu()
    assert_close(fastconv.conv2d(x, w, b, stride=2, padding=1), F.conv2d(xc, wc, bc, stride=2, padding=1), 18,
                 dtype=torch.float64, what="unbatched conv2d")
    assert_close(fastconv.conv1d(x[:, 0], w[:, :, 0], b), F.conv1d(xc[:, 0], wc[:, :, 0], bc), 9,
                 dtype=torch.float64, what="unbatched conv1d")
    assert_close(fastconv.conv1x1(x, w[:, :, :1, :1], b), F.conv2d(xc, wc[:, :, :1, :1], bc), 3,
                 dtype=torch.float64, what="unbatched conv1x1")
    y, i = fastconv.max_pool2d(x, 2, return_indices=True)
    yr, ir = F.max_pool2d(xc, 2, return_indices=True)
    assert_equal(y, yr, "unbatched max_pool2d")
    assert_equal(i, ir, "unbatched max_pool2d indices")
    assert_close(fastconv.avg_pool2d(x, 3, 2, 1), F.avg_pool2d(xc, 3, 2, 1), 9, what="unbatched avg_pool2d")
    xl = leaf(x)
    (gx,) = grads(fastconv.conv2d(xl, w, padding=1), [xl], randn((4, 9, 9), torch.float64, device, gen))
    assert gx.shape == x.shape


def test_numpy_dtype_preserved_and_inputs_untouched(nprng):
    for dt in NP_DTYPES:
        x, w = _np((2, 3, 6, 6), dt, nprng), _np((2, 3, 3, 3), dt, nprng)
        xk, wk = x.copy(), w.copy()
        ys = [fastconv.conv2d(x, w), fastconv.conv1x1(x, w[:, :, 0, 0]), fastconv.max_pool2d(x, 2),
              fastconv.avg_pool2d(x, 2), fastconv.relu(x), fastconv.guided_relu(x), fastconv.global_avg_pool2d(x)]
        for y in ys:
            assert isinstance(y, np.ndarray) and y.dtype == dt
        np.testing.assert_array_equal(x, xk)
        np.testing.assert_array_equal(w, wk)
