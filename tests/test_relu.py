"""relu and guided relu: forward (exact, as torch), the three backward rules
(relu, guided, deconvnet) against their formulas and torch autograd."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastconv
from helpers import DEVICES, assert_equal, grads, leaf, poison, randn, with_layout

SHAPES = [(0,), (1,), (7,), (10007,), (3, 5), (2, 3, 17), (2, 3, 5, 7), (1, 2, 3, 4, 5), (0, 3, 4, 4), ()]


def _x(shape, dtype, device, gen):
    """Random values with some exact zeros (the [x > 0] boundary)."""
    x = randn(shape, dtype, device, gen)
    if x.numel() > 3:
        x.view(-1)[:: 5] = 0.0
    return x


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_relu_forward_backward(shape, dtype, device, gen):
    x = _x(shape, dtype, device, gen)
    gy = randn(shape, dtype, device, gen)
    with poison():
        y = fastconv.relu(x)
    assert y.dtype == dtype and y.device == x.device
    assert_equal(y, F.relu(x.cpu()), "relu forward")
    xl = leaf(x)
    with poison():
        (gx,) = grads(fastconv.relu(xl), [xl], gy)
    xr = leaf(x.cpu())
    (gxr,) = grads(F.relu(xr), [xr], gy.cpu())
    assert_equal(gx, gxr, "relu autograd")
    with poison():
        gx2 = fastconv.relu_backward(gy, x)
    assert_equal(gx2, gy.cpu() * (x.cpu() > 0), "relu_backward")
    # backward from the forward output gives the same mask
    with poison():
        gx3 = fastconv.relu_backward(gy, y)
    assert_equal(gx3, gy.cpu() * (x.cpu() > 0), "relu_backward(grad, output)")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(7,), (10007,), (2, 3, 5, 7), (0, 3)], ids=str)
def test_guided_relu(shape, dtype, device, gen):
    x = _x(shape, dtype, device, gen)
    gy = randn(shape, dtype, device, gen)
    if gy.numel() > 3:
        gy.view(-1)[1::7] = 0.0
    xc, gyc = x.cpu(), gy.cpu()
    expected = {"guided": gyc * (xc > 0) * (gyc > 0), "deconvnet": gyc * (gyc > 0)}
    for mode, exp in expected.items():
        with poison():
            y = fastconv.guided_relu(x, mode=mode)
        assert_equal(y, F.relu(xc), f"guided_relu forward ({mode})")
        xl = leaf(x)
        with poison():
            (gx,) = grads(fastconv.guided_relu(xl, mode=mode), [xl], gy)
        assert_equal(gx, exp, f"guided_relu autograd ({mode})")
        with poison():
            gx2 = fastconv.guided_relu_backward(gy, x, mode=mode)
        assert_equal(gx2, exp, f"guided_relu_backward ({mode})")
    # default mode is guided
    xl = leaf(x)
    (gx,) = grads(fastconv.guided_relu(xl), [xl], gy)
    assert_equal(gx, expected["guided"], "guided_relu default mode")
    assert_equal(fastconv.guided_relu_backward(gy, x), expected["guided"], "guided_relu_backward default mode")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced"])
def test_relu_non_contiguous(layout, device, gen):
    x0 = _x((2, 3, 5, 7), torch.float32, device, gen)
    x = with_layout(x0, layout, gen)
    gy = with_layout(randn((2, 3, 5, 7), torch.float32, device, gen), layout, gen)
    with poison():
        y = fastconv.relu(x)
    assert_equal(y, F.relu(x0.cpu()), "relu forward")
    xl = leaf(x)
    with poison():
        (gx,) = grads(fastconv.guided_relu(xl), [xl], gy)
    assert_equal(gx, gy.cpu() * (x0.cpu() > 0) * (gy.cpu() > 0), "guided backward")
    with poison():
        gx2 = fastconv.relu_backward(gy, x)
    assert_equal(gx2, gy.cpu() * (x0.cpu() > 0), "relu_backward")


@pytest.mark.parametrize("device", DEVICES)
def test_relu_special_values(device):
    x = torch.tensor([float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 1e-45, -1e-45, 3.0, -2.0,
                      torch.finfo(torch.float32).max, -torch.finfo(torch.float32).max], device=device)
    y = fastconv.relu(x)
    assert_equal(y, F.relu(x.cpu()), "relu special values (NaN propagates)")
    assert torch.isnan(y[0])
    gy = torch.arange(1.0, 12.0, device=device)
    xl, xr = leaf(x), leaf(x.cpu())
    (gx,) = grads(fastconv.relu(xl), [xl], gy)
    (gxr,) = grads(F.relu(xr), [xr], gy.cpu())
    assert_equal(gx, gxr, "relu backward at special values, as torch (NaN input passes the gradient)")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "sliced"])
def test_relu_inplace(layout, device, gen):
    x0 = _x((3, 4, 5), torch.float32, device, gen)
    x = with_layout(x0.clone(), layout, gen)
    y = fastconv.relu(x, inplace=True)
    assert_equal(x, F.relu(x0.cpu()), "input modified in place")
    assert_equal(y, F.relu(x0.cpu()), "result")
    assert y.data_ptr() == x.data_ptr(), "inplace=True returns the input tensor, as torch"
    # not in place: input untouched
    x = x0.clone()
    fastconv.relu(x)
    assert_equal(x, x0, "inplace=False leaves the input alone")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_numpy(dtype, nprng):
    x = nprng.standard_normal((3, 4, 5)).astype(dtype)
    gy = nprng.standard_normal((3, 4, 5)).astype(dtype)
    y = fastconv.relu(x)
    assert isinstance(y, np.ndarray) and y.dtype == dtype
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    np.testing.assert_array_equal(fastconv.relu_backward(gy, x), gy * (x > 0))
    g = fastconv.guided_relu_backward(gy, x)
    assert isinstance(g, np.ndarray) and g.dtype == dtype
    np.testing.assert_array_equal(g, gy * (x > 0) * (gy > 0))
    np.testing.assert_array_equal(fastconv.guided_relu_backward(gy, x, mode="deconvnet"), gy * (gy > 0))
    np.testing.assert_array_equal(fastconv.guided_relu(x), np.maximum(x, 0))
    # a transposed (non-C-contiguous) array
    xt = x.transpose(2, 0, 1)
    np.testing.assert_array_equal(fastconv.relu(xt), np.maximum(xt, 0))
