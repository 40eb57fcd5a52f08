"""max_pool2d, avg_pool2d and global average pooling: forward, indices and
gradients against torch over a stacked grid, outputs poisoned."""
from __future__ import annotations

import dataclasses
import itertools
import math
import random

import pytest
import torch
import torch.nn.functional as F

import fastconv
from helpers import (DEVICES, LAYOUTS_4D, assert_close, assert_equal, distinct, grads, leaf, out_size, poison,
                     randint, randn, with_layout)


def _arg(v):
    return v[0] if v[0] == v[1] else v


def _diff(obj, base):
    diff = [f"{f.name}={getattr(obj, f.name)}" for f in dataclasses.fields(obj)
            if getattr(obj, f.name) != getattr(base, f.name)]
    return "-".join(diff).replace(" ", "").replace("(", "").replace(")", "") or "base"


def _windows_touch_input(n, out, k, s, p, d):
    """Every (dilated) window has at least one tap inside the input. With
    dilation a window can sit entirely in the padding; torch then returns -inf
    with an index outside the plane and its backward writes into the next
    plane, so those combos are not compared."""
    return all(any(0 <= o * s - p + j * d < n for j in range(k)) for o in range(out))


# ==========================================================================
# max pooling
# ==========================================================================
@dataclasses.dataclass(frozen=True)
class MaxCase:
    N: int = 2
    C: int = 3
    H: int = 9
    W: int = 8
    k: tuple = (3, 3)
    stride: tuple | None = None
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    ceil_mode: bool = False
    dtype: str = "float32"
    layout: str = "contiguous"

    @property
    def s(self):
        return self.stride if self.stride is not None else self.k

    @property
    def PQ(self):
        return (out_size(self.H, self.k[0], self.s[0], self.padding[0], self.dilation[0], self.ceil_mode),
                out_size(self.W, self.k[1], self.s[1], self.padding[1], self.dilation[1], self.ceil_mode))

    def valid(self):
        P, Q = self.PQ
        return (P >= 1 and Q >= 1 and all(p <= k // 2 for p, k in zip(self.padding, self.k))
                and _windows_touch_input(self.H, P, self.k[0], self.s[0], self.padding[0], self.dilation[0])
                and _windows_touch_input(self.W, Q, self.k[1], self.s[1], self.padding[1], self.dilation[1]))

    def kwargs(self):
        return dict(kernel_size=_arg(self.k), stride=None if self.stride is None else _arg(self.stride),
                    padding=_arg(self.padding), dilation=_arg(self.dilation), ceil_mode=self.ceil_mode)

    def __str__(self):
        return _diff(self, MaxCase())


def _fit(c):
    while c.PQ[0] < 1:
        c = dataclasses.replace(c, H=c.H + 1)
    while c.PQ[1] < 1:
        c = dataclasses.replace(c, W=c.W + 1)
    return c


def _max_cases():
    B = MaxCase()
    r = dataclasses.replace
    cases = [B]
    for k in [1, 2, 5, 7, 11]:
        cases.append(_fit(r(B, k=(k, k), H=max(B.H, k), W=max(B.W, k + 1))))
    cases += [r(B, k=(2, 3)), r(B, k=(3, 1)), r(B, k=(1, 4))]
    for s in [(1, 1), (2, 2), (3, 3), (4, 4), (1, 2), (3, 1)]:
        cases.append(r(B, stride=s))
    cases += [r(B, padding=(1, 1)), r(B, padding=(1, 0), stride=(1, 1)), r(B, k=(5, 5), padding=(2, 2), stride=(2, 2)),
              r(B, k=(7, 7), padding=(3, 3), stride=(1, 2), H=9, W=11), r(B, k=(4, 6), padding=(2, 3), stride=(3, 2))]
    for d in [(2, 2), (3, 3), (1, 2)]:
        cases.append(_fit(r(B, dilation=d, stride=(1, 1))))
    cases.append(r(B, dilation=(2, 3), k=(2, 2), padding=(1, 1), stride=(2, 1), H=10, W=11))
    for H, W in [(8, 8), (10, 7), (11, 13), (5, 10)]:  # ceil_mode where it adds a partial window
        cases.append(r(B, ceil_mode=True, H=H, W=W, stride=(2, 2)))
    cases += [r(B, ceil_mode=True, k=(3, 3), stride=(2, 2), padding=(1, 1), H=7, W=8),
              r(B, ceil_mode=True, k=(2, 2), stride=(2, 2), padding=(1, 1), H=4, W=5),  # last window would start in padding
              r(B, ceil_mode=True, k=(3, 3), stride=(3, 3), dilation=(2, 1), H=12, W=10)]
    for N in [0, 1, 3]:
        cases.append(r(B, N=N))
    for C in [1, 17]:
        cases.append(r(B, C=C))
    cases += [r(B, H=3, W=3), r(B, H=3, W=20, k=(3, 2)), r(B, H=1, W=1, k=(1, 1)), r(B, dtype="float64")]
    for lay in LAYOUTS_4D[1:]:
        cases.append(r(B, layout=lay))
    # (float32 on AVX-512 with 10 or more output columns and column stride
    # 1 or 2 takes the column lanes instead: see _COLUMN_LANES.)
    # Planes over 16384 elements take the row kernels (unrolled 2x2/s2,
    # 3x3/s2, the tap-major loop, scalar borders) or, with column stride 1,
    # padded rows; smaller ones whose windows all lie inside the input the
    # gathered outputs, the others 16 planes as lanes, whose blocks end
    # partial here (except 2x2 / stride 2 with output rows of 32 or more: row
    # kernels).
    W = 2400
    cases += [r(B, N=1, C=2, H=6, W=W, k=(2, 2)), r(B, N=1, C=2, H=7, W=W, k=(3, 3), stride=(2, 2)),
              r(B, N=1, C=2, H=5, W=W, k=(3, 3), stride=(1, 1), padding=(1, 1)),
              r(B, N=1, C=2, H=7, W=W, k=(3, 3), stride=(2, 2), padding=(1, 1), ceil_mode=True),
              r(B, N=1, C=2, H=9, W=W, k=(5, 3), stride=(1, 2), padding=(2, 1), dilation=(2, 1)),
              r(B, N=1, C=2, H=6, W=W, k=(2, 2), dtype="float64"), r(B, N=1, C=3, H=6, W=70, k=(2, 2)),
              r(B, N=3, C=17, H=5, W=5, k=(3, 3), stride=(2, 2)), r(B, N=2, C=9, H=14, W=14, k=(2, 2), dtype="float64"),
              r(B, N=1, C=2, H=130, W=130, k=(5, 5), stride=(5, 5))]  # planes too large for a block: row path
    rng = random.Random(42)
    while len(cases) < 79:
        k = (rng.choice([1, 2, 3, 5, 7]), rng.choice([1, 2, 3, 5]))
        c = MaxCase(N=rng.choice([0, 1, 3, 2]), C=rng.choice([1, 3, 17]), H=rng.randint(1, 20), W=rng.randint(1, 20),
                    k=k, stride=rng.choice([None, (rng.randint(1, 4), rng.randint(1, 4))]),
                    padding=(rng.randint(0, k[0] // 2), rng.randint(0, k[1] // 2)),
                    dilation=(rng.randint(1, 3), rng.randint(1, 3)), ceil_mode=rng.random() < 0.4,
                    dtype=rng.choice(["float32", "float64"]), layout=rng.choice(LAYOUTS_4D))
        c = _fit(c)
        if c.valid() and c.H <= 24 and c.W <= 24:
            cases.append(c)
    assert all(c.valid() for c in cases), [str(c) for c in cases if not c.valid()]
    return cases


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", _max_cases(), ids=str)
def test_max_pool2d(case, device, gen):
    dt = getattr(torch, case.dtype)
    # distinct values: the argmax is unambiguous and the gradient well defined
    x0 = distinct((case.N, case.C, case.H, case.W), dt, device, gen, spacing=0.01)
    x = with_layout(x0, case.layout, gen)
    kw = case.kwargs()
    yr, ir = F.max_pool2d(x0.cpu().double(), return_indices=True, **kw)
    P, Q = case.PQ
    assert tuple(yr.shape) == (case.N, case.C, P, Q)  # our out_size agrees with torch
    gy = randn(yr.shape, dt, device, gen)
    xr = leaf(x0.cpu().double())
    (gxr,) = grads(F.max_pool2d(xr, **kw), [xr], gy.cpu().double())

    with poison():
        y = fastconv.max_pool2d(x, **kw)
    assert y.device == x.device
    assert_equal(y, yr.to(dt), "max_pool2d forward")
    assert y.dtype == dt
    with poison():
        y2, idx = fastconv.max_pool2d(x, return_indices=True, **kw)
    assert_equal(y2, yr.to(dt), "max_pool2d forward (return_indices)")
    assert idx.dtype == torch.int64
    assert_equal(idx, ir, "max_pool2d indices")

    # overlapping windows may pick the same element: gx sums up to ceil(k/s)^2 grads
    red = math.ceil(case.k[0] / case.s[0]) * math.ceil(case.k[1] / case.s[1])
    xl = leaf(x)
    with poison():
        (gx,) = grads(fastconv.max_pool2d(xl, **kw), [xl], gy)
    assert_close(gx, gxr, red, dtype=dt, what="max_pool2d grad (autograd)")
    with poison():
        gx2 = fastconv.max_pool2d_backward(gy, x, idx, **kw)
    assert_close(gx2, gxr, red, dtype=dt, what="max_pool2d_backward")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_max_pool2d_ties_first_max_wins(dtype, device, gen):
    """Small-integer input full of ties: the first maximum in the window wins,
    as torch; gradients are routed to that element."""
    wide = randint((3, 4, 11, 1500), -1, 1, dtype, device, gen)  # row kernels, padded rows; left 10 columns: planes
    for kw, x in itertools.product([dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=2),
                                    dict(kernel_size=(3, 2), stride=2, dilation=2, ceil_mode=True),
                                    dict(kernel_size=4, stride=3, padding=2, ceil_mode=True)],
                                   [wide, wide[..., :10].contiguous()]):
        yr, ir = F.max_pool2d(x.cpu(), return_indices=True, **kw)
        with poison():
            y, idx = fastconv.max_pool2d(x, return_indices=True, **kw)
        assert_equal(y, yr, f"ties forward {kw}")
        assert_equal(idx, ir, f"ties indices {kw}")
        gy = randint(yr.shape, -3, 3, dtype, device, gen)
        xr = leaf(x.cpu())
        (gxr,) = grads(F.max_pool2d(xr, **kw), [xr], gy.cpu())
        xl = leaf(x)
        with poison():
            (gx,) = grads(fastconv.max_pool2d(xl, **kw), [xl], gy)
        assert_equal(gx, gxr, f"ties backward {kw}")  # integer sums: exact


@pytest.mark.parametrize("device", DEVICES)
def test_max_pool2d_nan_propagates(device, gen):
    """A NaN in a window makes that output NaN and its index points at the NaN, as torch."""
    x = randn((2, 3, 9, 1900), torch.float32, device, gen)  # row kernels, padded rows; planes (its left 9)
    x[0, 1, 4, 4] = float("nan")
    x[1, 2, 0, 8] = float("nan")
    x[0, 0, 3, 40] = float("nan")
    x[1, 0, 6, 41] = float("nan")
    for kw, xs in itertools.product([dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=2, ceil_mode=True),
                                     dict(kernel_size=3, stride=2)], [x, x[..., :9].contiguous()]):
        yr, ir = F.max_pool2d(xs.cpu(), return_indices=True, **kw)
        with poison():
            y, idx = fastconv.max_pool2d(xs, return_indices=True, **kw)
        assert int(torch.isnan(yr).sum()) > 0
        assert_equal(y, yr, f"nan forward {kw}")
        assert_equal(idx, ir, f"nan indices {kw}")


@pytest.mark.parametrize("device", DEVICES)
def test_max_pool2d_infinities(device, gen):
    """+-inf inputs, including windows that are entirely -inf."""
    x = randn((1, 2, 8, 2100), torch.float32, device, gen)  # row kernels, padded rows; planes (its left 8)
    x[0, 0, :4, :4] = float("-inf")
    x[0, 0, 2:6, 30:36] = float("-inf")
    x[0, 1, 5, 5] = float("inf")
    for kw, xs in itertools.product([dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1)],
                                    [x, x[..., :8].contiguous()]):
        yr, ir = F.max_pool2d(xs.cpu(), return_indices=True, **kw)
        with poison():
            y, idx = fastconv.max_pool2d(xs, return_indices=True, **kw)
        assert_equal(y, yr, f"inf forward {kw}")
        assert_equal(idx, ir, f"inf indices {kw}")


# Column stride 1 takes padded rows of 16 output columns (rows of 12 or
# more that fill most of their vectors, and planes too large for the
# planes path): tails, dilation, row stride 2, ceil mode, one plane split into
# row chunks across threads, NaN and -inf, both dtypes.
_STRIDE1_ROWS = [
    dict(shape=(2, 3, 12, 12), kernel_size=3, stride=1, padding=1),
    dict(shape=(1, 2, 13, 14), kernel_size=3, stride=1, padding=1),
    dict(shape=(2, 2, 15, 28), kernel_size=3, stride=1, padding=1),
    dict(shape=(1, 3, 9, 33), kernel_size=(2, 2), stride=1),
    dict(shape=(1, 1, 40, 47), kernel_size=(3, 5), stride=(2, 1), padding=(1, 2), ceil_mode=True),
    dict(shape=(2, 1, 11, 40), kernel_size=(2, 3), stride=(1, 1), dilation=(2, 3), padding=(1, 1)),
    dict(shape=(1, 1, 37, 70), kernel_size=(3, 7), stride=(3, 1), padding=(0, 3), dilation=(1, 2)),
    dict(shape=(1, 2, 150, 150), kernel_size=5, stride=1, padding=2),  # planes too large for the planes path
    dict(shape=(1, 1, 3000, 6), kernel_size=3, stride=1, padding=1),  # and rows narrower than half a vector
]


def _distinct_with(shape, dtype, device, gen, specials):
    """Distinct values with specials[i] = value put at flat positions (negative: from the end)."""
    x = distinct(shape, dtype, device, gen, spacing=0.01)
    flat = x.view(-1)
    for i, v in specials:
        flat[i] = v
    return x


def _assert_max_pool_forward_is_torchs(xs, kw, what):
    """fastconv's forward, with and without indices, equal to torch's, outputs poisoned."""
    yr, ir = F.max_pool2d(xs.cpu(), return_indices=True, **kw)
    with poison():
        y, idx = fastconv.max_pool2d(xs, return_indices=True, **kw)
    assert_equal(y, yr, f"{what} forward {kw}")
    assert_equal(idx, ir, f"{what} indices {kw}")
    with poison():
        y1 = fastconv.max_pool2d(xs, **kw)
    assert_equal(y1, yr, f"{what} forward without indices {kw}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", _STRIDE1_ROWS, ids=lambda c: "x".join(map(str, c["shape"])))
def test_max_pool2d_column_stride_one(case, dtype, device, gen):
    kw = {k: v for k, v in case.items() if k != "shape"}
    shape = case["shape"]
    n = math.prod(shape)
    specials = [(n // 3, float("nan")), (n // 2, float("-inf")), (n // 2 + 1, float("-inf")), (n - 1, float("inf"))]
    for xs in [distinct(shape, dtype, device, gen, spacing=0.01), _distinct_with(shape, dtype, device, gen, specials)]:
        _assert_max_pool_forward_is_torchs(xs, kw, "stride-1 rows")


# float32 on AVX-512 with 10 or more output columns and column stride 1 or 2
# takes 16 output columns per vector, each tap one load (stride 2: two and a
# permute), columns outside the row loaded as -inf: vectors wholly inside
# the row and ones clipped at either edge, row tails of 1 to 15 columns,
# windows of up to 16 columns and wider ones (another path), dilation,
# ceil_mode windows that end in the padding, windows of only -inf at a padded
# edge (they report the clipped window's first position), NaN, ties.
_COLUMN_LANES = [
    dict(shape=(2, 3, 21, 21), kernel_size=3, stride=2),                           # 10 columns
    dict(shape=(1, 2, 23, 34), kernel_size=3, stride=2, padding=1),                # 17: a 1-column tail
    dict(shape=(1, 2, 9, 64), kernel_size=2, stride=2),                            # 32: whole vectors
    dict(shape=(2, 1, 14, 97), kernel_size=(3, 2), stride=(1, 2), padding=(1, 1), ceil_mode=True),
    dict(shape=(1, 2, 12, 90), kernel_size=(2, 5), stride=(2, 2), padding=(1, 2), dilation=(2, 3)),
    dict(shape=(1, 1, 8, 80), kernel_size=(1, 16), stride=(1, 2), padding=(0, 8)),  # the widest window
    dict(shape=(1, 1, 8, 80), kernel_size=(1, 17), stride=(1, 2), padding=(0, 8)),  # wider: not this path
    dict(shape=(1, 2, 11, 45), kernel_size=(4, 3), stride=(3, 1), padding=(2, 1), dilation=(1, 2)),
    dict(shape=(2, 2, 7, 50), kernel_size=3, stride=(2, 2), padding=1, ceil_mode=True),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", _COLUMN_LANES, ids=lambda c: "x".join(map(str, c["shape"])) + f"k{c['kernel_size']}")
def test_max_pool2d_column_lanes(case, dtype, device, gen):
    kw = {k: v for k, v in case.items() if k != "shape"}
    shape = case["shape"]
    n = math.prod(shape)
    W = shape[-1]
    # NaNs two apart in one row (the last one in a window wins), -inf runs at
    # the start of a row and at the end of the tensor
    specials = [(n // 3, float("nan")), (n // 3 + 2, float("nan")), (n // 2, float("-inf")),
                (n // 2 + 1, float("-inf")), (n - 1, float("-inf")), (n - 2, float("-inf")), (n - 3, float("inf"))]
    specials += [(W * 2 + i, float("-inf")) for i in range(6)]
    for xs in [distinct(shape, dtype, device, gen, spacing=0.01), _distinct_with(shape, dtype, device, gen, specials),
               randint(shape, -1, 1, dtype, device, gen), torch.full(shape, float("-inf"), dtype=dtype, device=device)]:
        _assert_max_pool_forward_is_torchs(xs, kw, "column lanes")


# Small planes whose windows all lie inside the input take 16 outputs of the
# flat output at once through a gather table (several planes per vector); the
# last outputs, past the last whole vector, run one lane at a time. NaN and
# -inf sit in the first and the last planes, two NaNs in one window (the last
# NaN wins), the ties of the integer inputs (the first maximum wins).
_GATHER_PLANES = [
    dict(shape=(3, 5, 5, 5), kernel_size=3, stride=2),                  # 2x2 outputs, 60 in all
    dict(shape=(2, 3, 9, 8), kernel_size=3),                            # 3x2
    dict(shape=(1, 7, 10, 10), kernel_size=2),                          # 5x5: a period of 400 outputs
    dict(shape=(2, 3, 11, 9), kernel_size=(3, 2), stride=(2, 3), dilation=(2, 1)),
    dict(shape=(1, 1, 7, 7), kernel_size=3, stride=2, ceil_mode=True),  # ceil_mode windows that still fit
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", _GATHER_PLANES, ids=lambda c: "x".join(map(str, c["shape"])))
def test_max_pool2d_small_planes_gathered(case, dtype, device, gen):
    kw = {k: v for k, v in case.items() if k != "shape"}
    shape = case["shape"]
    n = math.prod(shape)
    specials = [(0, float("nan")), (n - 1, float("nan")), (n - 2, float("nan")), (n - 4, float("-inf")),
                (n // 2, float("-inf")), (n // 2 + 1, float("-inf"))]
    for xs in [distinct(shape, dtype, device, gen, spacing=0.01), _distinct_with(shape, dtype, device, gen, specials),
               randint(shape, -1, 1, dtype, device, gen)]:
        _assert_max_pool_forward_is_torchs(xs, kw, "gathered planes")


# The gather tables are cached per plane geometry (the last 8 seen): pairs of
# layers that differ in one field of the geometry only, with the same output
# size, run in turn; each must get its own tables.
def _planes(H, W, **kw):
    return dict(shape=(2, 3, H, W), **kw)


_GATHER_GEOMETRY_PAIRS = {  # field: (layer, the layer with that field changed)
    "H": (_planes(9, 11, kernel_size=(2, 3), stride=2), _planes(8, 11, kernel_size=(2, 3), stride=2)),
    "W": (_planes(9, 11, kernel_size=(2, 3), stride=2), _planes(9, 12, kernel_size=(2, 3), stride=2)),
    "kernel_h": (_planes(9, 11, kernel_size=(2, 3), stride=2), _planes(9, 11, kernel_size=3, stride=2)),
    "kernel_w": (_planes(9, 11, kernel_size=(2, 3), stride=2), _planes(9, 11, kernel_size=2, stride=2)),
    "stride_h": (_planes(10, 11, kernel_size=(2, 3), stride=(3, 2)),
                 _planes(10, 11, kernel_size=(2, 3), stride=(4, 2))),
    "stride_w": (_planes(9, 10, kernel_size=2, stride=(2, 3)), _planes(9, 10, kernel_size=2, stride=(2, 4))),
    "dilation_h": (_planes(9, 11, kernel_size=(2, 3), stride=2), _planes(9, 11, kernel_size=(2, 3), stride=2,
                                                                        dilation=(2, 1))),
    "dilation_w": (_planes(9, 11, kernel_size=2, stride=2), _planes(9, 11, kernel_size=2, stride=2, dilation=(1, 2))),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("field", list(_GATHER_GEOMETRY_PAIRS))
def test_max_pool2d_gather_tables_per_geometry(field, dtype, gen):
    a, b = _GATHER_GEOMETRY_PAIRS[field]
    for case in [a, b, a, b]:
        kw = {k: v for k, v in case.items() if k != "shape"}
        _assert_max_pool_forward_is_torchs(distinct(case["shape"], dtype, "cpu", gen, spacing=0.01), kw,
                                           f"gathered planes after a layer that differs in {field}")


# ==========================================================================
# average pooling
# ==========================================================================
@dataclasses.dataclass(frozen=True)
class AvgCase:
    N: int = 2
    C: int = 3
    H: int = 9
    W: int = 8
    k: tuple = (3, 3)
    stride: tuple | None = None
    padding: tuple = (0, 0)
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None
    dtype: str = "float32"
    layout: str = "contiguous"

    @property
    def s(self):
        return self.stride if self.stride is not None else self.k

    @property
    def PQ(self):
        return (out_size(self.H, self.k[0], self.s[0], self.padding[0], 1, self.ceil_mode),
                out_size(self.W, self.k[1], self.s[1], self.padding[1], 1, self.ceil_mode))

    def valid(self):
        P, Q = self.PQ
        return P >= 1 and Q >= 1 and all(p <= k // 2 for p, k in zip(self.padding, self.k))

    def kwargs(self):
        return dict(kernel_size=_arg(self.k), stride=None if self.stride is None else _arg(self.stride),
                    padding=_arg(self.padding), ceil_mode=self.ceil_mode, count_include_pad=self.count_include_pad,
                    divisor_override=self.divisor_override)

    def __str__(self):
        return _diff(self, AvgCase())


def _avg_cases():
    B = AvgCase()
    r = dataclasses.replace
    cases = [B]
    for k in [1, 2, 5, 7, 11]:
        cases.append(r(B, k=(k, k), H=max(B.H, k), W=max(B.W, k + 1)))
    cases += [r(B, k=(2, 3)), r(B, k=(3, 1))]
    for s in [(1, 1), (2, 2), (3, 3), (4, 4), (1, 3)]:
        cases.append(r(B, stride=s))
    for p in [(1, 1), (1, 0)]:
        for cip in [True, False]:
            cases.append(r(B, padding=p, stride=(2, 2), count_include_pad=cip))
    cases += [r(B, k=(5, 5), padding=(2, 2), stride=(1, 1), count_include_pad=False),
              r(B, k=(7, 7), padding=(3, 3), stride=(2, 3), H=9, W=10),
              r(B, k=(4, 6), padding=(2, 3), stride=(3, 2), count_include_pad=False)]
    for H, W in [(8, 8), (10, 7), (11, 13)]:
        for cip in [True, False]:
            cases.append(r(B, ceil_mode=True, H=H, W=W, stride=(2, 2), count_include_pad=cip))
    cases += [r(B, ceil_mode=True, padding=(1, 1), stride=(2, 2), H=7, W=8),
              r(B, ceil_mode=True, padding=(1, 1), stride=(2, 2), H=7, W=8, count_include_pad=False),
              r(B, ceil_mode=True, k=(2, 2), stride=(2, 2), padding=(1, 1), H=4, W=5)]
    for d in [1, 4, 7]:
        cases.append(r(B, divisor_override=d))
    cases.append(r(B, divisor_override=2, padding=(1, 1), stride=(1, 1), count_include_pad=False, ceil_mode=True))
    for N in [0, 1, 3]:
        cases.append(r(B, N=N))
    for C in [1, 17]:
        cases.append(r(B, C=C))
    cases += [r(B, H=3, W=3), r(B, H=1, W=1, k=(1, 1)), r(B, dtype="float64")]
    for lay in LAYOUTS_4D[1:]:
        cases.append(r(B, layout=lay))
    rng = random.Random(7)
    while len(cases) < 70:
        k = (rng.choice([1, 2, 3, 5, 7]), rng.choice([1, 2, 3, 5]))
        c = AvgCase(N=rng.choice([0, 1, 3, 2]), C=rng.choice([1, 3, 17]), H=rng.randint(1, 20), W=rng.randint(1, 20),
                    k=k, stride=rng.choice([None, (rng.randint(1, 4), rng.randint(1, 4))]),
                    padding=(rng.randint(0, k[0] // 2), rng.randint(0, k[1] // 2)), ceil_mode=rng.random() < 0.4,
                    count_include_pad=rng.random() < 0.5, divisor_override=rng.choice([None, None, None, 3]),
                    dtype=rng.choice(["float32", "float64"]), layout=rng.choice(LAYOUTS_4D))
        c = _fit(c)
        if c.valid() and c.H <= 24 and c.W <= 24:
            cases.append(c)
    assert all(c.valid() for c in cases), [str(c) for c in cases if not c.valid()]
    return cases


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", _avg_cases(), ids=str)
def test_avg_pool2d(case, device, gen):
    dt = getattr(torch, case.dtype)
    x0 = randn((case.N, case.C, case.H, case.W), dt, device, gen)
    x = with_layout(x0, case.layout, gen)
    kw = case.kwargs()
    xr = leaf(x0.cpu().double())
    yr = F.avg_pool2d(xr, **kw)
    assert tuple(yr.shape[2:]) == case.PQ
    gy = randn(yr.shape, dt, device, gen)
    (gxr,) = grads(yr, [xr], gy.cpu().double())
    red_fwd = case.k[0] * case.k[1]
    red_bwd = math.ceil(case.k[0] / case.s[0]) * math.ceil(case.k[1] / case.s[1])
    xl = leaf(x)
    with poison():
        y = fastconv.avg_pool2d(xl, **kw)
    assert y.device == x.device
    assert_close(y, yr, red_fwd, dtype=dt, what="avg_pool2d forward")
    with poison():
        (gx,) = grads(y, [xl], gy)
    assert_close(gx, gxr, red_bwd, dtype=dt, what="avg_pool2d grad (autograd)")
    with poison():
        gx2 = fastconv.avg_pool2d_backward(gy, x, **kw)
    assert_close(gx2, gxr, red_bwd, dtype=dt, what="avg_pool2d_backward")


@pytest.mark.parametrize("shape,kernel,divisor,dtype", [
    ((3, 5, 28, 28), (2, 2), None, torch.float32),   # LeNet's pool: rows of whole vectors and a tail
    ((2, 3, 27, 29), (3, 3), None, torch.float32),   # a row and two columns past the last window
    ((2, 2, 20, 21), (2, 5), 3, torch.float32),      # a kernel width of the generic widening
    ((2, 3, 11, 23), (1, 2), None, torch.float64),   # one input row per window
    ((1, 4, 6, 5), (3, 1), None, torch.float64),     # rows shorter than a vector
])
def test_avg_pool2d_backward_tiled_bits(shape, kernel, divisor, dtype, gen):
    """Windows that tile the map (kernel = stride, no padding): the backward writes each input once, so
    its bits, the sign of zero included, must be torch's, whose kernel adds each delta to a zeroed gx."""
    x = randn(shape, dtype, "cpu", gen)
    P, Q = shape[2] // kernel[0], shape[3] // kernel[1]
    gy = randn((shape[0], shape[1], P, Q), dtype, "cpu", gen)
    gy.view(-1)[::7] = -0.0
    gy.view(-1)[3::11] = -torch.finfo(dtype).tiny / 2 ** 10  # gy / divisor underflows to -0
    ref = torch.ops.aten.avg_pool2d_backward(gy, x, list(kernel), list(kernel), [0, 0], False, True, divisor)
    with poison():
        gx = fastconv.avg_pool2d_backward(gy, x, kernel, divisor_override=divisor)
    assert_equal(gx, ref, "tiled avg_pool2d_backward")
    assert torch.equal(torch.signbit(gx), torch.signbit(ref)), "tiled avg_pool2d_backward: sign of zero"


# float32 on AVX-512 with column stride 1 or 2 sums 16 output columns per
# vector, each tap a load with the columns outside the row read as 0: its
# sums run in torch's order, so the forward is torch's bits (both dtypes
# checked). Edges and tails, count_include_pad off, divisor_override,
# ceil_mode windows that end in the padding, wide windows, -0, inf and NaN
# (the last case has 3 output columns: the row kernels, for comparison).
_AVG_COLUMN_LANES = [
    dict(shape=(3, 5, 28, 28), kernel_size=2),                                       # LeNet's pool
    dict(shape=(2, 3, 13, 37), kernel_size=3, stride=(2, 1), padding=1),
    dict(shape=(1, 2, 9, 75), kernel_size=(2, 5), stride=2, padding=(1, 2), count_include_pad=False),
    dict(shape=(2, 2, 11, 40), kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(shape=(1, 3, 7, 33), kernel_size=(3, 11), stride=(1, 2), padding=(1, 5), divisor_override=7),
    dict(shape=(2, 1, 8, 17), kernel_size=(1, 2), stride=(3, 1), ceil_mode=True, count_include_pad=False),
    dict(shape=(1, 2, 4, 5), kernel_size=2, stride=2, padding=1, ceil_mode=True),  # a last window would start in
]                                                                                  # the padding: dropped, 3 columns


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", _AVG_COLUMN_LANES, ids=lambda c: "x".join(map(str, c["shape"])))
def test_avg_pool2d_column_lanes_bits(case, dtype, gen):
    kw = {k: v for k, v in case.items() if k != "shape"}
    shape = case["shape"]
    n = math.prod(shape)
    x = randn(shape, dtype, "cpu", gen)
    x.view(-1)[::5] = -0.0
    xs = x.clone()
    xs.view(-1)[n // 3] = float("nan")
    xs.view(-1)[n // 2] = float("inf")
    xs.view(-1)[n - 1] = float("-inf")
    for xi in (x, xs):
        ref = F.avg_pool2d(xi, **kw)
        with poison():
            y = fastconv.avg_pool2d(xi, **kw)
        assert_equal(y, ref, f"avg_pool2d forward {kw}")
        num = ~ref.isnan()
        assert torch.equal(torch.signbit(y[num]), torch.signbit(ref[num])), f"avg_pool2d forward {kw}: sign of zero"


@pytest.mark.parametrize("device", DEVICES)
def test_avg_pool2d_exact(device, gen):
    """Integer input, power-of-two divisors: averages are exact."""
    for dtype in (torch.float32, torch.float64):
        x = randint((2, 5, 12, 10), -9, 9, dtype, device, gen)
        for kw in [dict(kernel_size=2), dict(kernel_size=4, stride=2, padding=2),
                   dict(kernel_size=(2, 4), stride=1, padding=(1, 2), count_include_pad=True),
                   dict(kernel_size=3, stride=2, divisor_override=4, ceil_mode=True)]:
            xr = leaf(x.cpu().double())
            yr = F.avg_pool2d(xr, **kw)
            gy = randint(yr.shape, -4, 4, dtype, device, gen)
            (gxr,) = grads(yr, [xr], gy.cpu().double())
            xl = leaf(x)
            with poison():
                y = fastconv.avg_pool2d(xl, **kw)
                (gx,) = grads(y, [xl], gy)
            assert_equal(y, yr.detach().to(dtype), f"avg exact forward {kw}")
            assert_equal(gx, gxr.to(dtype), f"avg exact backward {kw}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 3, 7, 5), (1, 17, 1, 1), (0, 4, 3, 3), (3, 1, 20, 13)], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced"])
def test_global_avg_pool2d(shape, dtype, layout, device, gen):
    x0 = randn(shape, dtype, device, gen)
    x = with_layout(x0, layout, gen)
    N, C, H, W = shape
    xr = leaf(x0.cpu().double())
    yr = F.adaptive_avg_pool2d(xr, 1)
    gy = randn(yr.shape, dtype, device, gen)
    (gxr,) = grads(yr, [xr], gy.cpu().double())
    for fn in (lambda t: fastconv.adaptive_avg_pool2d(t, 1), fastconv.global_avg_pool2d):
        xl = leaf(x)
        with poison():
            y = fn(xl)
        assert y.shape in {(N, C, 1, 1), (N, C)}, y.shape
        assert_close(y.reshape(N, C, 1, 1), yr, H * W, dtype=dtype, what="global average pool forward")
        with poison():
            (gx,) = grads(y, [xl], gy.reshape(y.shape))
        assert_close(gx, gxr, 1, dtype=dtype, what="global average pool backward")
    y = fastconv.adaptive_avg_pool2d(x, (1, 1))
    assert_close(y, yr, H * W, dtype=dtype, what="adaptive_avg_pool2d(x, (1, 1))")
