"""Autograd and torch.library integration: gradcheck in float64 for every op,
torch.library.opcheck for every registered op, and bitwise determinism of the
backward-weight pass across runs and thread counts."""
from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import fastconv
from helpers import DEVICES, distinct, randn

F64 = torch.float64


def _gc(fn, inputs, **kw):
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5, **kw)


# --------------------------------------------------------------------------
# gradcheck (float64)
# --------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", ["fast", "reference"])
@pytest.mark.parametrize("cfg", [
    dict(C=2, K=3, R=3, S=3, stride=1, padding=1, dilation=1, groups=1),
    dict(C=4, K=4, R=2, S=3, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2),
    dict(C=3, K=3, R=3, S=3, stride=2, padding=1, dilation=1, groups=3),
], ids=["plain", "strided-dilated-grouped", "depthwise"])
def test_gradcheck_conv2d(cfg, variant, device, gen):
    x = randn((2, cfg["C"], 5, 4), F64, device, gen).requires_grad_()
    w = randn((cfg["K"], cfg["C"] // cfg["groups"], cfg["R"], cfg["S"]), F64, device, gen).requires_grad_()
    b = randn((cfg["K"],), F64, device, gen).requires_grad_()
    kw = {k: cfg[k] for k in ("stride", "padding", "dilation", "groups")}
    _gc(lambda x, w, b: fastconv.conv2d(x, w, b, variant=variant, **kw), (x, w, b))
    _gc(lambda x, w: fastconv.conv2d(x, w, None, variant=variant, **kw), (x, w))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", ["fast", "reference"])
def test_gradcheck_conv2d_same_padding(variant, device, gen):
    x = randn((1, 2, 5, 6), F64, device, gen).requires_grad_()
    w = randn((3, 2, 2, 3), F64, device, gen).requires_grad_()
    _gc(lambda x, w: fastconv.conv2d(x, w, padding="same", variant=variant), (x, w))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", ["fast", "reference"])
def test_gradcheck_conv1d(variant, device, gen):
    x = randn((2, 4, 7), F64, device, gen).requires_grad_()
    w = randn((4, 2, 3), F64, device, gen).requires_grad_()
    b = randn((4,), F64, device, gen).requires_grad_()
    _gc(lambda x, w, b: fastconv.conv1d(x, w, b, stride=2, padding=2, dilation=2, groups=2, variant=variant),
        (x, w, b))
    _gc(lambda x, w: fastconv.conv1d(x, w, padding="same", groups=2, variant=variant), (x, w))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", ["fast", "reference"])
def test_gradcheck_conv1x1(variant, device, gen):
    x = randn((2, 3, 3, 2), F64, device, gen).requires_grad_()
    b = randn((2,), F64, device, gen).requires_grad_()
    for wshape in [(2, 3, 1, 1), (2, 3)]:
        w = randn(wshape, F64, device, gen).requires_grad_()
        _gc(lambda x, w, b: fastconv.conv1x1(x, w, b, variant=variant), (x, w, b))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1),
                                dict(kernel_size=(3, 2), stride=2, padding=(1, 0), dilation=(1, 2), ceil_mode=True)],
                         ids=["k2", "k3s1p1", "ceil-dilated"])
def test_gradcheck_max_pool2d(kw, device, gen):
    # distinct values spaced far more than gradcheck's eps: the argmax does not flip
    x = distinct((2, 2, 7, 6), F64, device, gen, spacing=0.01).requires_grad_()
    _gc(lambda x: fastconv.max_pool2d(x, **kw), (x,))
    _gc(lambda x: fastconv.max_pool2d(x, return_indices=True, **kw)[0], (x,))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1),
                                dict(kernel_size=3, stride=2, padding=1, count_include_pad=False, ceil_mode=True),
                                dict(kernel_size=(2, 3), stride=1, divisor_override=5)],
                         ids=["k2", "k3s1p1", "nopad-ceil", "divisor"])
def test_gradcheck_avg_pool2d(kw, device, gen):
    x = randn((2, 2, 7, 6), F64, device, gen).requires_grad_()
    _gc(lambda x: fastconv.avg_pool2d(x, **kw), (x,))


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_global_avg_pool2d(device, gen):
    x = randn((2, 3, 5, 4), F64, device, gen).requires_grad_()
    _gc(fastconv.global_avg_pool2d, (x,))
    _gc(lambda x: fastconv.adaptive_avg_pool2d(x, 1), (x,))


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_relu(device, gen):
    # keep values away from 0, where relu is not differentiable
    x = randn((3, 4, 5), F64, device, gen)
    x = (x + 0.1 * x.sign()).requires_grad_()
    _gc(fastconv.relu, (x,))
    # guided relu's backward is not a true gradient, but for the one-hot
    # (non-negative) grad_outputs of gradcheck's full Jacobian it coincides with relu's
    _gc(lambda x: fastconv.guided_relu(x, mode="guided"), (x,), fast_mode=False)


@pytest.mark.parametrize("device", DEVICES)
def test_deconvnet_is_not_the_gradient(device, gen):
    """The deconvnet rule ignores [x > 0]: gradcheck must fail on it (sanity
    check that gradcheck sees fastconv's backward at all)."""
    x = (randn((6,), F64, device, gen) - 0.5).requires_grad_()
    x.data[0] = -1.0
    assert not torch.autograd.gradcheck(lambda x: fastconv.guided_relu(x, mode="deconvnet"), (x,),
                                        raise_exception=False, fast_mode=False)


# --------------------------------------------------------------------------
# torch.library.opcheck for every registered op
# --------------------------------------------------------------------------
OPS = ["conv2d", "conv2d_backward", "conv1d", "conv1d_backward", "conv1x1", "conv1x1_backward", "max_pool2d",
       "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward", "relu", "relu_backward", "guided_relu",
       "guided_relu_backward"]


class _Record(TorchDispatchMode):
    """Records every fastconv:: op call (with its arguments) made under it."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.namespace == "fastconv":
            clone = lambda v: v.detach().clone() if isinstance(v, torch.Tensor) else v  # noqa: E731
            self.calls.append((func, tuple(clone(a) for a in args), {k: clone(v) for k, v in kwargs.items()}))
        return func(*args, **kwargs)


def _scenarios(device, gen):
    """Public-API calls (forward + backward) exercising every registered op."""
    def r(*s):
        return randn(s, F64, device, gen)

    def conv2d():
        x, w, b = r(2, 4, 5, 4).requires_grad_(), r(4, 2, 3, 2).requires_grad_(), r(4).requires_grad_()
        fastconv.conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2), groups=2).sum().backward()
        x, w = r(1, 3, 5, 5).requires_grad_(), r(2, 3, 3, 3)
        fastconv.conv2d(x, w, padding=1, variant="reference").sum().backward()

    def conv1d():
        x, w, b = r(2, 3, 9).requires_grad_(), r(4, 3, 3).requires_grad_(), r(4).requires_grad_()
        fastconv.conv1d(x, w, b, stride=2, padding=1, dilation=2).sum().backward()

    def conv1x1():
        x, w, b = r(2, 5, 3, 4).requires_grad_(), r(3, 5, 1, 1).requires_grad_(), r(3).requires_grad_()
        fastconv.conv1x1(x, w, b).sum().backward()

    def max_pool2d():
        x = distinct((2, 3, 6, 7), F64, device, gen, spacing=0.01).requires_grad_()
        fastconv.max_pool2d(x, 3, 2, 1, ceil_mode=True).sum().backward()

    def avg_pool2d():
        x = r(2, 3, 6, 7).requires_grad_()
        fastconv.avg_pool2d(x, 3, 2, 1, count_include_pad=False).sum().backward()

    def relu():
        x = r(3, 4).requires_grad_()
        (fastconv.relu(x) * r(3, 4)).sum().backward()

    def guided_relu():
        x = r(3, 4).requires_grad_()
        (fastconv.guided_relu(x) * r(3, 4)).sum().backward()
        x = r(3, 4).requires_grad_()
        (fastconv.guided_relu(x, mode="deconvnet") * r(3, 4)).sum().backward()

    return {"conv2d": conv2d, "conv1d": conv1d, "conv1x1": conv1x1, "max_pool2d": max_pool2d,
            "avg_pool2d": avg_pool2d, "relu": relu, "guided_relu": guided_relu}


def test_every_op_is_registered():
    for name in OPS:
        assert hasattr(torch.ops.fastconv, name), f"torch.ops.fastconv.{name} is not registered"
    # and no registered op escapes test_opcheck
    get_names = getattr(torch._C, "_dispatch_get_all_op_names", None)
    if get_names is not None:
        registered = {n.split("::", 1)[1].split(".")[0] for n in get_names() if n.startswith("fastconv::")}
        assert registered <= set(OPS), f"ops without an opcheck test: {sorted(registered - set(OPS))}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", OPS)
def test_opcheck(name, device, gen):
    assert hasattr(torch.ops.fastconv, name), f"torch.ops.fastconv.{name} is not registered"
    scenario = _scenarios(device, gen)[name.replace("_backward", "")]
    rec = _Record()
    with rec:
        scenario()
    calls = [c for c in rec.calls if c[0]._opname == name]
    assert calls, f"the public API never called torch.ops.fastconv.{name}"
    forward = not name.endswith("_backward")
    for op, args, kwargs in calls:
        if forward:  # inputs that require grad, so the autograd registration is exercised
            args = tuple(a.requires_grad_() if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                         for a in args)
        torch.library.opcheck(op, args, kwargs)


# --------------------------------------------------------------------------
# determinism: bitwise-identical backward-weight across runs and thread counts
# --------------------------------------------------------------------------
def _set_threads(setter, n):
    if setter == "fastconv":
        fastconv.set_num_threads(n)
    else:
        torch.set_num_threads(n)


@pytest.mark.parametrize("variant", ["fast", "reference"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backward_weight_deterministic(dtype, variant, gen):
    """The same inputs give bitwise-identical grad_weight / grad_bias / grad_input
    on every run and with 1, 2, 3 or 4 threads (set through fastconv or torch)."""
    cases = [
        # N*P*Q large enough that several threads share the reduction
        (randn((8, 16, 24, 24), dtype, gen=gen), randn((16, 16, 3, 3), dtype, gen=gen), dict(padding=1), "conv2d"),
        (randn((6, 8, 19, 17), dtype, gen=gen), randn((12, 4, 5, 3), dtype, gen=gen),
         dict(stride=2, padding=2, dilation=(1, 2), groups=2), "conv2d"),
        (randn((8, 32, 16, 16), dtype, gen=gen), randn((24, 32, 1, 1), dtype, gen=gen), {}, "conv1x1"),
        (randn((16, 8, 200), dtype, gen=gen), randn((8, 8, 5), dtype, gen=gen), dict(padding=2), "conv1d"),
    ]
    for x, w, kw, op in cases:
        fwd = {"conv2d": fastconv.conv2d, "conv1x1": fastconv.conv1x1, "conv1d": fastconv.conv1d}[op]
        bwd = {"conv2d": fastconv.conv2d_backward, "conv1x1": fastconv.conv1x1_backward,
               "conv1d": fastconv.conv1d_backward}[op]
        gy = randn(fwd(x, w, **kw).shape, dtype, gen=gen)
        results = []
        for setter, n in [("torch", 1), ("torch", 1), ("torch", 2), ("torch", 2), ("fastconv", 3), ("fastconv", 4),
                          ("torch", 2)]:
            _set_threads(setter, n)
            gx, gw, gb = bwd(gy, x, w, variant=variant, **kw)
            xl, wl = x.detach().requires_grad_(), w.detach().requires_grad_()
            fwd(xl, wl, variant=variant, **kw).backward(gy)
            results.append((setter, n, gx, gw, gb, xl.grad, wl.grad))
        ref = results[0]
        for setter, n, gx, gw, gb, agx, agw in results[1:]:
            where = f"{op} {kw} with {n} thread(s) set via {setter}"
            assert torch.equal(gw, ref[3]), f"grad_weight differs bitwise: {where}"
            assert torch.equal(agw, ref[3]), f"grad_weight (autograd) differs bitwise: {where}"
            assert torch.equal(gb, ref[4]), f"grad_bias differs bitwise: {where}"
            assert torch.equal(gx, ref[2]), f"grad_input differs bitwise: {where}"
            assert torch.equal(agx, ref[2]), f"grad_input (autograd) differs bitwise: {where}"


def test_forward_deterministic(gen):
    x = randn((4, 16, 20, 20), gen=gen)
    w = randn((16, 16, 3, 3), gen=gen)
    outs = []
    for n in (1, 2, 3, 1):
        torch.set_num_threads(n)
        outs.append((fastconv.conv2d(x, w, padding=1), fastconv.avg_pool2d(x, 3, 1, 1),
                     fastconv.max_pool2d(x, 3, 2, 1, return_indices=True)))
    for o in outs[1:]:
        assert torch.equal(o[0], outs[0][0])
        assert torch.equal(o[1], outs[0][1])
        assert torch.equal(o[2][0], outs[0][2][0]) and torch.equal(o[2][1], outs[0][2][1])


# --------------------------------------------------------------------------
# the eager shortcut past the custom_op dispatcher (fastconv/_ops.py `eager`)
# --------------------------------------------------------------------------
def _conv_relu_pool(x, w, b, call):
    y = call("conv2d", x, w, b, [1, 2], [1, 0], [1, 1], 1, 0)
    y = call("relu", y)
    y, _ = call("max_pool2d", y, [2, 2], [2, 2], [0, 0], [1, 1], True)
    return call("avg_pool2d", y, [2, 1], [1, 1], [1, 0], False, True, 0)


@pytest.mark.parametrize("device", DEVICES)
def test_eager_shortcut_matches_the_registered_ops(device, gen):
    """The functional API skips torch.ops' dispatcher in plain eager calls: outputs and every
    gradient must be bitwise those of the registered custom ops (same kernels, same formulas)."""
    def via_eager(name, *a):
        return getattr(fastconv._ops.eager, name)(*a)

    def via_torch_ops(name, *a):
        return getattr(torch.ops.fastconv, name)(*a)

    base = [randn((3, 4, 9, 7), torch.float32, device, gen), randn((5, 4, 3, 2), torch.float32, device, gen),
            randn((5,), torch.float32, device, gen)]
    out = {}
    for tag, call in (("eager", via_eager), ("torch.ops", via_torch_ops)):
        leaves = [t.clone().requires_grad_() for t in base]
        y = _conv_relu_pool(*leaves, call)
        y.backward(torch.ones_like(y))
        out[tag] = [y.detach()] + [t.grad for t in leaves]
    for a, b in zip(out["eager"], out["torch.ops"]):
        assert torch.equal(a, b)


def test_eager_shortcut_yields_to_profiler_and_modes(gen):
    """Under the profiler or a dispatch mode the calls go through torch.ops.fastconv, so they
    show up as fastconv:: ops (and FakeTensor / opcheck see them)."""
    x = randn((2, 3, 4, 4), torch.float32, "cpu", gen)
    with torch.profiler.profile() as prof:
        fastconv.relu(x)
    assert any(e.name == "fastconv::relu" for e in prof.events())
    with _Record() as rec:
        fastconv.max_pool2d(x, 2)
    assert [c[0].name() for c in rec.calls] == ["fastconv::max_pool2d"]
