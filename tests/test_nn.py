"""fastconv.nn layers against torch.nn: same parameters, same outputs and
gradients, torch's init, convert(), training, and torch.compile(fullgraph=True)."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as tnn

import fastconv
import fastconv.nn as fnn
from helpers import DEVICES, assert_close, assert_equal


def _run(m, x, gy):
    x = x.detach().requires_grad_()
    y = m(x)
    y.backward(gy)
    return y, x.grad, {n: p.grad for n, p in m.named_parameters()}


def _compare_modules(ours, theirs, x, red_fwd, red_gx, red_gw, what):
    """Same state_dict -> same output, input gradient and parameter gradients."""
    ours.load_state_dict(theirs.state_dict())
    yt = theirs(x)
    gy = torch.randn(yt.shape, dtype=x.dtype, device=x.device)
    t64 = copy.deepcopy(theirs).double()
    y_ref, gx_ref, gp_ref = _run(t64, x.double(), gy.double())
    y, gx, gp = _run(ours, x, gy)
    assert type(y) is torch.Tensor
    assert_close(y, y_ref, red_fwd, dtype=x.dtype, what=f"{what} forward")
    assert_close(gx, gx_ref, red_gx, dtype=x.dtype, what=f"{what} grad_input")
    assert set(gp) == set(gp_ref)
    for n in gp:
        assert_close(gp[n], gp_ref[n], red_gw, dtype=x.dtype, what=f"{what} grad {n}")


# --------------------------------------------------------------------------
# layers vs torch.nn
# --------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("args,kw", [
    ((3, 8, 3), dict(padding=1)),
    ((4, 6, (3, 2)), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2, bias=False)),
    ((6, 6, 5), dict(stride=2, padding=2, groups=6)),
    ((3, 5, 4), dict(padding="same")),
    ((3, 5, 3), dict(padding="valid", stride=3)),
], ids=["basic", "grouped", "depthwise", "same", "valid"])
def test_conv2d_layer(args, kw, device):
    ours = fnn.Conv2d(*args, **kw, device=device)
    theirs = tnn.Conv2d(*args, **kw, device=device)
    assert isinstance(ours, tnn.Module)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, p.shape) for n, p in theirs.named_parameters()]
    x = torch.randn(2, args[0], 9, 10, device=device)
    R, S = ours.kernel_size
    n_pq = 2 * 9 * 10
    _compare_modules(ours, theirs, x, args[0] * R * S, args[1] * R * S, n_pq, "Conv2d")
    assert repr(ours).startswith("Conv2d(")


@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("args,kw", [((3, 8, 3), dict(padding=1)), ((4, 6, 5), dict(stride=2, dilation=2, groups=2)),
                                     ((2, 4, 4), dict(padding="same", bias=False))], ids=["basic", "grouped", "same"])
def test_conv1d_layer(args, kw, device):
    ours = fnn.Conv1d(*args, **kw, device=device)
    theirs = tnn.Conv1d(*args, **kw, device=device)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, p.shape) for n, p in theirs.named_parameters()]
    x = torch.randn(3, args[0], 21, device=device)
    _compare_modules(ours, theirs, x, args[0] * args[2], args[1] * args[2], 63, "Conv1d")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv1x1_layer(bias, device):
    ours = fnn.Conv1x1(16, 8, bias=bias, device=device)
    theirs = tnn.Conv2d(16, 8, 1, bias=bias, device=device)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, p.shape) for n, p in theirs.named_parameters()]
    x = torch.randn(2, 16, 7, 6, device=device)
    _compare_modules(ours, theirs, x, 16, 8, 84, "Conv1x1")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("ours,theirs", [
    (lambda: fnn.MaxPool2d(2), lambda: tnn.MaxPool2d(2)),
    (lambda: fnn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), lambda: tnn.MaxPool2d(3, 2, 1, ceil_mode=True)),
    (lambda: fnn.MaxPool2d((2, 3), stride=1, dilation=2), lambda: tnn.MaxPool2d((2, 3), stride=1, dilation=2)),
    (lambda: fnn.AvgPool2d(2), lambda: tnn.AvgPool2d(2)),
    (lambda: fnn.AvgPool2d(3, 2, 1, count_include_pad=False, ceil_mode=True),
     lambda: tnn.AvgPool2d(3, 2, 1, count_include_pad=False, ceil_mode=True)),
    (lambda: fnn.AvgPool2d(2, divisor_override=3), lambda: tnn.AvgPool2d(2, divisor_override=3)),
    (lambda: fnn.AdaptiveAvgPool2d(1), lambda: tnn.AdaptiveAvgPool2d(1)),
    (lambda: fnn.AdaptiveAvgPool2d((1, 1)), lambda: tnn.AdaptiveAvgPool2d((1, 1))),
    (lambda: fnn.ReLU(), lambda: tnn.ReLU()),
], ids=["max2", "max-ceil", "max-dil", "avg2", "avg-ceil", "avg-div", "gap", "gap11", "relu"])
def test_parameterless_layers(ours, theirs, device):
    o, t = ours(), theirs()
    assert list(o.parameters()) == [] and o.state_dict().keys() == t.state_dict().keys()
    x = torch.randperm(2 * 3 * 9 * 8).reshape(2, 3, 9, 8).float().to(device) / 7  # no ties
    yt = t(x.double())
    gy = torch.randn(yt.shape, dtype=torch.float64, device=device)
    y, gx, _ = _run(o, x, gy.float())
    y_ref, gx_ref, _ = _run(t, x.double(), gy)
    assert_close(y, y_ref, 72, dtype=torch.float32, what=f"{type(o).__name__} forward")
    assert_close(gx, gx_ref, 9, dtype=torch.float32, what=f"{type(o).__name__} backward")
    assert repr(o).split("(")[0] == repr(t).split("(")[0]


def test_max_pool_return_indices_layer():
    x = torch.randperm(2 * 3 * 8 * 8).reshape(2, 3, 8, 8).float()
    y, idx = fnn.MaxPool2d(2, return_indices=True)(x)
    yr, ir = tnn.MaxPool2d(2, return_indices=True)(x)
    assert_equal(y, yr)
    assert_equal(idx, ir)


def test_relu_layers_are_torch_relus():
    assert issubclass(fnn.ReLU, tnn.ReLU)
    assert issubclass(fnn.GuidedReLU, fnn.ReLU)
    g = fnn.GuidedReLU()
    assert isinstance(g, tnn.ReLU)
    x = torch.randn(4, 5)
    x[0, 0] = 0.0
    gy = torch.randn(4, 5)
    xl = x.clone().requires_grad_()
    y = g(xl)
    y.backward(gy)
    assert_equal(y, torch.relu(x))
    assert_equal(xl.grad, gy * (x > 0) * (gy > 0), "GuidedReLU backward")
    xl = x.clone().requires_grad_()
    fnn.GuidedReLU(mode="deconvnet")(xl).backward(gy)
    assert_equal(xl.grad, gy * (gy > 0), "GuidedReLU(mode='deconvnet') backward")


def test_relu_inplace_layer():
    x = torch.randn(3, 4)
    keep = x.clone()
    y = fnn.ReLU(inplace=True)(x)
    assert_equal(x, torch.relu(keep))
    assert y.data_ptr() == x.data_ptr()
    # in a network: inplace relu after a conv trains like torch's
    torch.manual_seed(0)
    theirs = tnn.Sequential(tnn.Conv2d(2, 3, 3), tnn.ReLU(inplace=True), tnn.Conv2d(3, 2, 1))
    ours = tnn.Sequential(fnn.Conv2d(2, 3, 3), fnn.ReLU(inplace=True), fnn.Conv1x1(3, 2))
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 2, 6, 6)
    gy = torch.randn(2, 2, 4, 4)
    _, gx_t, gp_t = _run(theirs, x, gy)
    _, gx_o, gp_o = _run(ours, x, gy)
    assert_close(gx_o, gx_t, 50, what="inplace relu network grad_input")
    for n in gp_t:
        assert_close(gp_o[n], gp_t[n], 50, what=f"inplace relu network grad {n}")


def test_layer_dtypes_and_state_dict_roundtrip():
    ours = fnn.Conv2d(3, 4, 3, dtype=torch.float64)
    assert ours.weight.dtype == torch.float64
    theirs = tnn.Conv2d(3, 4, 3, dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    assert_close(ours(x), theirs(x), 27, dtype=torch.float64)


# --------------------------------------------------------------------------
# init and constructor behaviour
# --------------------------------------------------------------------------
@pytest.mark.parametrize("make,fan_in", [
    (lambda: fnn.Conv2d(64, 128, 3), 64 * 9),
    (lambda: fnn.Conv2d(32, 64, (5, 3), groups=4), 8 * 15),
    (lambda: fnn.Conv1d(48, 96, 7), 48 * 7),
    (lambda: fnn.Conv1x1(256, 128), 256),
], ids=["conv2d", "grouped", "conv1d", "conv1x1"])
def test_init_distribution(make, fan_in):
    """torch's default init: kaiming_uniform(a=sqrt(5)) -> U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias."""
    m = make()
    bound = 1 / math.sqrt(fan_in)
    w = m.weight.detach().double().flatten()
    assert float(w.abs().max()) <= bound * (1 + 1e-6)
    assert float(w.abs().max()) > 0.95 * bound  # fills the range
    assert abs(float(w.mean())) < 0.05 * bound
    assert abs(float(w.std()) / (bound / math.sqrt(3)) - 1) < 0.05  # std of a uniform on [-b, b]
    b = m.bias.detach().double()
    assert float(b.abs().max()) <= bound * (1 + 1e-6) and float(b.std()) > 0.2 * bound
    m2 = make()
    assert not torch.equal(m.weight, m2.weight), "two layers got the same init"


def test_init_matches_torch_with_same_seed():
    torch.manual_seed(123)
    ours = fnn.Conv2d(8, 16, 3)
    torch.manual_seed(123)
    theirs = tnn.Conv2d(8, 16, 3)
    assert_equal(ours.weight, theirs.weight, "same seed, same init as torch.nn.Conv2d")
    assert_equal(ours.bias, theirs.bias)


def test_padding_mode_not_supported():
    for mode in ("reflect", "replicate", "circular"):
        with pytest.raises(NotImplementedError, match="padding_mode"):
            fnn.Conv2d(3, 4, 3, padding=1, padding_mode=mode)
        with pytest.raises(NotImplementedError, match="padding_mode"):
            fnn.Conv1d(3, 4, 3, padding=1, padding_mode=mode)


def test_adaptive_pool_other_sizes_not_supported():
    with pytest.raises(NotImplementedError, match="output_size"):
        fnn.AdaptiveAvgPool2d(2)
    with pytest.raises(NotImplementedError, match="output_size"):
        fnn.AdaptiveAvgPool2d((1, 2))


def test_layer_errors_name_argument():
    with pytest.raises((ValueError, TypeError), match=r"\b(input|weight)\b"):
        fnn.Conv2d(3, 4, 3)(torch.randn(1, 5, 8, 8))
    with pytest.raises((ValueError, TypeError), match=r"\binput\b"):
        fnn.MaxPool2d(2)(torch.randn(8))


# --------------------------------------------------------------------------
# a small CNN: convert(), training, torch.compile
# --------------------------------------------------------------------------
def _torch_cnn():
    return tnn.Sequential(
        tnn.Conv2d(3, 8, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(8, 8, 3, stride=1, padding=1, groups=2), tnn.ReLU(inplace=True), tnn.AvgPool2d(2),
        tnn.Conv2d(8, 12, 1), tnn.ReLU(), tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(12, 5))


def _fast_cnn():
    return tnn.Sequential(
        fnn.Conv2d(3, 8, 3, padding=1), fnn.ReLU(), fnn.MaxPool2d(2),
        fnn.Conv2d(8, 8, 3, stride=1, padding=1, groups=2), fnn.ReLU(inplace=True), fnn.AvgPool2d(2),
        fnn.Conv1x1(8, 12), fnn.ReLU(), fnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(12, 5))


def test_convert_swaps_layers_keeps_weights():
    model = _torch_cnn()
    model.eval()
    ref = copy.deepcopy(model)
    params_before = {n: p for n, p in model.named_parameters()}
    x = torch.randn(4, 3, 16, 16)
    y_ref = ref(x)
    out = fastconv.convert(model)
    assert out is model or out is None
    fast_types = (fnn.Conv2d, fnn.Conv1d, fnn.Conv1x1, fnn.MaxPool2d, fnn.AvgPool2d, fnn.AdaptiveAvgPool2d, fnn.ReLU)
    for name, m in model.named_children():
        if isinstance(m, (tnn.Conv2d, tnn.MaxPool2d, tnn.AvgPool2d, tnn.AdaptiveAvgPool2d, tnn.ReLU)):
            assert isinstance(m, fast_types), f"layer {name} ({type(m).__name__}) was not converted"
    assert isinstance(model[9], tnn.Flatten) and type(model[10]) is tnn.Linear
    assert model[4].inplace, "ReLU(inplace=True) keeps inplace"
    for n, p in model.named_parameters():
        assert torch.equal(p, params_before[n]), f"parameter {n} changed"
    assert_close(model(x), y_ref, 72 * 3, what="converted model output")
    assert not model.training


def test_convert_nested_and_guided():
    inner = tnn.Sequential(tnn.Conv2d(2, 4, 3, padding=1), tnn.ReLU())
    model = tnn.Sequential(inner, tnn.Sequential(tnn.Identity(), tnn.ReLU()),
                           tnn.MaxPool2d(2))
    ref = copy.deepcopy(model)
    fastconv.convert(model, guided=True)
    assert isinstance(model[0][0], fnn.Conv2d)
    assert isinstance(model[0][1], fnn.GuidedReLU) and isinstance(model[1][1], fnn.GuidedReLU)
    assert isinstance(model[2], fnn.MaxPool2d)
    x = torch.randn(2, 2, 6, 6)
    gy = torch.randn(2, 4, 3, 3)
    xr = x.clone().requires_grad_()
    yr = ref(xr)
    assert_close(model(x), yr, 18, what="guided model forward")
    # guided backprop through the whole model, computed independently with hooks on torch's model
    hooks = [m.register_full_backward_hook(lambda mod, gi, go: (gi[0].clamp(min=0),))
             for m in ref.modules() if isinstance(m, tnn.ReLU)]
    xr = x.clone().requires_grad_()
    ref(xr).backward(gy)
    for h in hooks:
        h.remove()
    xl = x.clone().requires_grad_()
    model(xl).backward(gy)
    assert_close(xl.grad, xr.grad, 40, what="guided backprop input gradient")


def test_convert_conv1d_and_unsupported_left_alone():
    model = tnn.Sequential(tnn.Conv1d(3, 4, 5, padding=2), tnn.ReLU(), tnn.Conv2d(1, 1, 3, padding=1,
                                                                                  padding_mode="reflect"))
    fastconv.convert(model)
    assert isinstance(model[0], fnn.Conv1d)
    assert isinstance(model[1], fnn.ReLU)
    assert model[2].padding_mode == "reflect"  # left as torch's layer (or at least still reflect-padded)
    x = torch.randn(1, 1, 5, 5)
    assert_close(model[2](x), torch.nn.functional.conv2d(torch.nn.functional.pad(x.double(), (1, 1, 1, 1),
                                                                                 mode="reflect"),
                                                         model[2].weight.double(), model[2].bias.double()), 9)


def _train(model, steps, lr=0.05):
    g = torch.Generator().manual_seed(7)
    dtype = next(model.parameters()).dtype
    # one fixed batch, seen every step: the loss must go down (the net memorises it)
    xs = torch.randn(1, 8, 3, 16, 16, generator=g).to(dtype).expand(steps, -1, -1, -1, -1)
    ys = torch.randint(0, 5, (1, 8), generator=g).expand(steps, -1)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    losses = []
    for x, y in zip(xs, ys):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def test_small_cnn_trains_like_torch():
    torch.manual_seed(0)
    theirs = _torch_cnn().double()
    ours = _fast_cnn().double()
    ours.load_state_dict(theirs.state_dict())
    lt = _train(theirs, 6)
    lo = _train(ours, 6)
    torch.testing.assert_close(torch.tensor(lo), torch.tensor(lt), atol=1e-9, rtol=1e-9)
    for (n, pt), (_, po) in zip(theirs.named_parameters(), ours.named_parameters()):
        torch.testing.assert_close(po, pt, atol=1e-9, rtol=1e-9, msg=lambda m: f"{n}: {m}")
    # float32: the same, within float32 accuracy, and the loss goes down
    torch.manual_seed(1)
    theirs = _torch_cnn()
    ours = _fast_cnn()
    ours.load_state_dict(theirs.state_dict())
    lt = _train(theirs, 12, lr=0.1)
    lo = _train(ours, 12, lr=0.1)
    torch.testing.assert_close(torch.tensor(lo), torch.tensor(lt), atol=1e-3, rtol=1e-3)
    assert min(lo[-3:]) < lo[0]


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_small_cnn_compiled_matches_eager(backend):
    torch._dynamo.reset()
    model = _fast_cnn().double()
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    gy = torch.randn(4, 5, dtype=torch.float64)
    y_ref, gx_ref, gp_ref = _run(model, x, gy)
    model.zero_grad()
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    y, gx, gp = _run(compiled, x, gy)
    assert_close(y, y_ref, 100, what=f"compiled ({backend}) forward")
    assert_close(gx, gx_ref, 100, what=f"compiled ({backend}) grad_input")
    for n in gp_ref:
        assert_close(gp[n.replace("_orig_mod.", "")] if n in gp else gp["_orig_mod." + n], gp_ref[n], 100,
                     what=f"compiled ({backend}) grad {n}")
    # a second call with another batch size reuses or recompiles without graph breaks
    x2 = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    assert_close(compiled(x2), model(x2), 100, what="compiled, new batch size")


def test_compiled_functional_ops_fullgraph():
    """Every functional op inside one fullgraph-compiled function."""
    torch._dynamo.reset()

    def f(x, w, b, w1):
        y = fastconv.conv2d(x, w, b, stride=1, padding=1)
        y = fastconv.relu(y)
        y = fastconv.max_pool2d(y, 2)
        y = fastconv.avg_pool2d(y, 2, ceil_mode=True)
        y = fastconv.conv1x1(y, w1)
        y = fastconv.guided_relu(y)
        z = fastconv.conv1d(y.flatten(2), w1[:, :, 0], padding=0)
        return fastconv.global_avg_pool2d(y).sum() + z.sum()

    x = torch.randn(2, 3, 12, 12, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    w1 = torch.randn(4, 4, 1, 1, dtype=torch.float64, requires_grad=True)
    ref = f(x, w, b, w1)
    gref = torch.autograd.grad(ref, (x, w, b, w1))
    cf = torch.compile(f, fullgraph=True, backend="aot_eager")
    out = cf(x, w, b, w1)
    g = torch.autograd.grad(out, (x, w, b, w1))
    assert_close(out, ref, 1000, what="compiled functional")
    for a, e in zip(g, gref):
        assert_close(a, e, 1000, what="compiled functional grads")
