"""conv2d, conv1d and conv1x1: forward and every gradient against torch.

The grid is stacked, not a Cartesian product: every axis (kernel, stride,
padding, dilation, groups, sizes, N, C, bias, dtype, memory layout of input and
weight) is varied on its own around a base case, plus a seeded random sample of
combinations. Each case runs for both variants ('fast', 'reference') and on
every device, with outputs poisoned (NaN) so unwritten elements fail.
The reference is torch in float64; tolerances scale with the reduction length.
"""
from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

import fastconv
from helpers import (DEVICES, LAYOUTS_3D, LAYOUTS_4D, assert_close, assert_equal, cpu_flags, grads, leaf,
                     out_size, poison, randint, randn, with_layout)

VARIANTS = ["fast", "reference"]
KERNELS = [1, 2, 3, 5, 7, 11]


def _arg(v):
    """Pass square pairs as an int (both spellings get exercised)."""
    return v[0] if v[0] == v[1] else v


# ==========================================================================
# conv2d
# ==========================================================================
@dataclasses.dataclass(frozen=True)
class Conv2dCase:
    N: int = 2
    C: int = 3
    H: int = 7
    W: int = 9
    K: int = 4
    R: int = 3
    S: int = 3
    stride: tuple = (1, 1)
    padding: tuple = (1, 1)
    dilation: tuple = (1, 1)
    groups: int = 1
    bias: bool = True
    dtype: str = "float32"
    xlayout: str = "contiguous"
    wlayout: str = "contiguous"

    @property
    def PQ(self):
        return (out_size(self.H, self.R, self.stride[0], self.padding[0], self.dilation[0]),
                out_size(self.W, self.S, self.stride[1], self.padding[1], self.dilation[1]))

    def valid(self):
        P, Q = self.PQ
        return P >= 1 and Q >= 1 and self.C % self.groups == 0 and self.K % self.groups == 0

    def __str__(self):
        base = Conv2dCase()
        diff = [f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(base, f.name)]
        return "-".join(diff).replace(" ", "").replace("(", "").replace(")", "") or "base"


def _fit2d(c: Conv2dCase) -> Conv2dCase:
    """Grow H, W until the output is at least 1x1 (invalid combos are skipped by construction)."""
    while out_size(c.H, c.R, c.stride[0], c.padding[0], c.dilation[0]) < 1:
        c = dataclasses.replace(c, H=c.H + 1)
    while out_size(c.W, c.S, c.stride[1], c.padding[1], c.dilation[1]) < 1:
        c = dataclasses.replace(c, W=c.W + 1)
    return c


def _conv2d_cases():
    B = Conv2dCase()
    r = dataclasses.replace
    cases = []
    for k in KERNELS:  # kernel size; input grown so that the kernel fits
        cases.append(_fit2d(r(B, R=k, S=k, H=max(B.H, k + 1), W=max(B.W, k + 3))))
    for R, S in [(1, 3), (3, 1), (2, 5), (5, 2), (1, 11)]:  # non-square kernels
        cases.append(_fit2d(r(B, R=R, S=S, W=max(B.W, S))))
    for s in [(2, 2), (3, 3), (4, 4), (1, 3), (4, 2)]:  # stride
        cases.append(r(B, stride=s))
    for p in [(0, 0), (2, 2), (3, 3), (0, 3), (2, 0)]:  # padding (3 > kernel/2 is fine for conv, as torch)
        cases.append(r(B, padding=p))
    cases.append(r(B, R=1, S=1, padding=(2, 2)))  # padding larger than the kernel
    cases.append(r(B, R=2, S=2, padding=(3, 1), stride=(2, 3)))
    for d in [(2, 2), (3, 3), (1, 3), (2, 1)]:  # dilation
        cases.append(r(B, dilation=d))
    cases.append(r(B, R=5, S=2, dilation=(2, 3), H=11, W=6, padding=(0, 2)))
    for C, K, g in [(4, 6, 2), (6, 6, 6), (3, 6, 3), (17, 17, 17), (4, 4, 4), (6, 4, 2), (16, 8, 2)]:  # groups
        cases.append(r(B, C=C, K=K, groups=g))
    cases.append(r(B, C=8, K=8, groups=8, stride=(2, 2), R=5, S=5, padding=(2, 2), H=9, W=10))  # depthwise strided
    for N in [0, 1, 3]:
        cases.append(r(B, N=N))
    for C in [1, 17]:
        cases.append(r(B, C=C))
    for K in [1, 17, 33]:
        cases.append(r(B, K=K))
    for H, W in [(1, 1), (1, 9), (11, 5), (2, 3), (20, 17), (13, 19)]:  # odd, tiny, non-square sizes
        cases.append(_fit2d(r(B, H=H, W=W)))
    cases.append(r(B, R=1, S=1, padding=(0, 0), H=1, W=1))
    # plain 1x1 reads x in place: groups, strips that end exactly at x's end
    cases += [r(B, R=1, S=1, padding=(0, 0), C=6, K=9, groups=3, H=5, W=11),
              r(B, R=1, S=1, padding=(0, 0), H=6, W=8, K=9)]
    cases.append(r(B, bias=False))
    cases.append(r(B, dtype="float64"))
    cases.append(r(B, dtype="float64", C=17, K=5, R=5, S=5, padding=(2, 2), H=9, W=11))
    for lx in LAYOUTS_4D[1:]:
        cases.append(r(B, xlayout=lx))
    for lw in LAYOUTS_4D[1:]:
        cases.append(r(B, wlayout=lw))
    cases.append(r(B, xlayout="channels_last", wlayout="channels_last", C=17, K=8))
    cases.append(r(B, xlayout="sliced", wlayout="transposed", groups=3, C=3, K=6, stride=(2, 1)))

    # a seeded random sample of combinations of every axis
    rng = random.Random(20261125)
    while len(cases) < 97:
        R = rng.choice(KERNELS)
        S = rng.choice([R, rng.choice(KERNELS[:4])])
        dil = (rng.randint(1, 3), rng.randint(1, 3))
        dil = tuple(d if d * (k - 1) + 1 <= 21 else 1 for d, k in zip(dil, (R, S)))
        gmode = rng.choice(["1", "1", "2", "C"])
        if gmode == "1":
            g, C, K = 1, rng.choice([1, 3, 17, 5]), rng.choice([1, 4, 9, 16])
        elif gmode == "2":
            g = 2
            C, K = 2 * rng.choice([1, 2, 3, 8]), 2 * rng.choice([1, 2, 5])
        else:
            C = rng.choice([1, 3, 6, 17])
            g, K = C, C * rng.choice([1, 2])
        c = Conv2dCase(
            N=rng.choice([0, 1, 1, 3, 3, 2]), C=C, K=K, R=R, S=S, groups=g,
            H=rng.randint(1, 20), W=rng.randint(1, 20),
            stride=(rng.randint(1, 4), rng.randint(1, 4)),
            padding=(rng.randint(0, 3), rng.randint(0, 3)), dilation=dil,
            bias=rng.random() < 0.7, dtype=rng.choice(["float32", "float32", "float64"]),
            xlayout=rng.choice(LAYOUTS_4D), wlayout=rng.choice(LAYOUTS_4D))
        c = _fit2d(c)
        if c.valid() and c.H <= 24 and c.W <= 24:
            cases.append(c)
    assert all(c.valid() for c in cases)
    return cases


CONV2D_CASES = _conv2d_cases()


def check_conv2d(case: Conv2dCase, device: str, variant: str, gen: torch.Generator, public_backward=True):
    dt = getattr(torch, case.dtype)
    N, C, H, W, K, R, S, g = case.N, case.C, case.H, case.W, case.K, case.R, case.S, case.groups
    P, Q = case.PQ
    x0 = randn((N, C, H, W), dt, device, gen)
    w0 = randn((K, C // g, R, S), dt, device, gen)
    b0 = randn((K,), dt, device, gen) if case.bias else None
    gy = randn((N, K, P, Q), dt, device, gen)
    x = with_layout(x0, case.xlayout, gen)
    w = with_layout(w0, case.wlayout, gen)
    kw = dict(stride=_arg(case.stride), padding=_arg(case.padding), dilation=_arg(case.dilation), groups=g)

    # reference: torch in float64 on the CPU
    xr, wr = leaf(x0.cpu().double()), leaf(w0.cpu().double())
    br = leaf(b0.cpu().double()) if b0 is not None else None
    yr = F.conv2d(xr, wr, br, **kw)
    gxr, gwr, gbr = grads(yr, [xr, wr, br], gy.cpu().double())

    red_fwd = (C // g) * R * S
    red_gx = (K // g) * R * S
    red_gw = N * P * Q

    xl, wl = leaf(x), leaf(w)
    bl = leaf(b0) if b0 is not None else None
    with poison():
        y = fastconv.conv2d(xl, wl, bl, variant=variant, **kw)
    assert isinstance(y, torch.Tensor) and y.device == x.device
    assert_close(y, yr, red_fwd, dtype=dt, what="conv2d forward")
    with poison():
        gx, gw, gb = grads(y, [xl, wl, bl], gy)
    assert_close(gx, gxr, red_gx, dtype=dt, what="conv2d grad_input (autograd)")
    assert_close(gw, gwr, red_gw, dtype=dt, what="conv2d grad_weight (autograd)")
    if bl is not None:
        assert_close(gb, gbr, red_gw, dtype=dt, what="conv2d grad_bias (autograd)")

    if public_backward:
        with poison():
            gx2, gw2, gb2 = fastconv.conv2d_backward(gy, x, w, output_mask=(True, True, True), variant=variant, **kw)
        assert_close(gx2, gxr, red_gx, dtype=dt, what="conv2d_backward grad_input")
        assert_close(gw2, gwr, red_gw, dtype=dt, what="conv2d_backward grad_weight")
        assert_close(gb2, gy.cpu().double().sum((0, 2, 3)), red_gw, dtype=dt, what="conv2d_backward grad_bias")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", CONV2D_CASES, ids=str)
def test_conv2d(case, variant, device, gen):
    check_conv2d(case, device, variant, gen)


# Shapes that steer the CPU fast path into its small-map blocking (csrc/cpu/conv2d.cpp):
# the forward "flat" pixel axis across images (stride 1 with >= 128 output channels per group
# on a map the direct path would mostly pad; any stride > 1 map that does not fill its strips),
# and backward-data col2im over blocks of whole images (unpadded layers, whose rotated pass
# would be mostly padding taps; more images than one block holds; strided layers); strided
# layers otherwise take the direct path over stride phase planes (the grid above).
SMALL_MAP_CASES = [
    Conv2dCase(N=3, C=5, H=7, W=7, K=130),                                   # flat forward, 'same' 3x3
    Conv2dCase(N=3, C=5, H=7, W=7, K=130, dtype="float64"),
    Conv2dCase(N=2, C=4, H=6, W=5, K=260, groups=2, padding=(0, 0)),         # flat forward per group
    Conv2dCase(N=3, C=3, H=9, W=8, K=129, dilation=(2, 1), padding=(1, 0)),  # flat forward, dilated
    Conv2dCase(N=5, C=17, H=7, W=7, K=9, padding=(0, 0)),                    # col2im backward-data, unpadded
    Conv2dCase(N=37, C=18, H=3, W=4, K=3, R=2, S=3, padding=(0, 0)),         # many images per col2im block
    Conv2dCase(N=7, C=5, H=27, W=27, K=40, R=5, S=5, padding=(0, 0)),        # 23x23 (529 px): 4 images per block
    Conv2dCase(N=4, C=3, H=9, W=9, K=5, stride=(2, 2)),                      # flat forward, strided
    Conv2dCase(N=9, C=6, H=11, W=10, K=140, stride=(3, 2), bias=False),
    # the direct path's per-thread copy (880 channels x 16 stride phases x 301 columns) would pass
    # 16 MiB: im2col per image (N=1) and flat (N=2) instead
    Conv2dCase(N=1, C=880, H=5, W=1203, K=3, stride=(4, 4)),
    Conv2dCase(N=2, C=880, H=5, W=1203, K=3, stride=(4, 4)),
]


@pytest.mark.parametrize("case", SMALL_MAP_CASES, ids=str)
def test_conv2d_small_map_paths(case, gen):
    check_conv2d(case, "cpu", "fast", gen)


# The weight gradient's output-row path (no im2col; padded, strided or dilated layers whose output rows fill
# their vectors): lane tails, several images per block, image chunks, groups, stride phases, crs sub-ranges.
ROWS_CASES = [
    Conv2dCase(N=3, C=5, H=17, W=30, K=7),                                      # one row block, tail of 14
    Conv2dCase(N=9, C=4, H=6, W=14, K=13),                                      # several images per block
    Conv2dCase(N=9, C=4, H=6, W=14, K=13, dtype="float64"),
    Conv2dCase(N=2, C=6, H=33, W=61, K=4, R=3, S=5, stride=(2, 2), padding=(2, 3), dilation=(2, 1),
               groups=2),                                                       # phases, dilation, groups
    Conv2dCase(N=1, C=150, H=6, W=200, K=5),                                    # crs sub-ranges of the x copy
    Conv2dCase(N=2, C=3, H=70, W=33, K=20, R=5, S=5, padding=(2, 2), bias=False),  # several row blocks
    Conv2dCase(N=4, C=16, H=32, W=32, K=32, stride=(2, 2)),                     # ResNet downsampling
]


# The channel-lane paths of the forward and of the weight gradient (output channels as vector lanes, pixels or
# reduction indices broadcast; Kg a sum of tile widths, 32 / 48 / 64 on AVX-512): partial pixel tiles, several
# panels and panel groups, groups, strides, dilation, unpadded (x read in place), pixel blocks and reduction
# blocks, float64, and backward-data through the rotated forward pass.
LANES_CASES = [
    Conv2dCase(N=3, C=8, H=7, W=9, K=64),
    Conv2dCase(N=2, C=10, H=9, W=11, K=96, stride=(2, 2), dilation=(2, 1), padding=(2, 1)),
    Conv2dCase(N=2, C=16, H=8, W=8, K=64, groups=2, bias=False),
    Conv2dCase(N=2, C=8, H=6, W=7, K=32, dtype="float64"),
    Conv2dCase(N=5, C=9, H=8, W=8, K=32, padding=(0, 0)),
    Conv2dCase(N=1, C=64, H=40, W=40, K=64),
    Conv2dCase(N=1, C=8, H=5, W=5, K=128),
    Conv2dCase(N=2, C=32, H=7, W=7, K=16),
    Conv2dCase(N=2, C=32, H=6, W=6, K=16, padding=(3, 3)),
    Conv2dCase(N=2, C=9, H=30, W=29, K=64),  # weight gradient by lanes: two pixel blocks, a partial crs tile
    # border classes (taps in the padding skipped): windows wholly in the padding (bias only), dilation, an
    # unpadded small map (forward without classes; its weight gradient by lanes)
    Conv2dCase(N=2, C=8, H=5, W=6, K=32, padding=(3, 3)),
    Conv2dCase(N=2, C=8, H=9, W=8, K=64, dilation=(2, 2), padding=(1, 2)),
    Conv2dCase(N=3, C=32, H=7, W=7, K=32, padding=(0, 0)),
    Conv2dCase(N=3, C=6, H=14, W=14, K=16, R=5, S=5, padding=(0, 0)),  # weight gradient, one-vector lane tile
    Conv2dCase(N=2, C=5, H=9, W=9, K=48, groups=1),                      # weight gradient, 48 = 3 x 16 lanes
    # the three-vector tile (48 channels on AVX-512): GoogLeNet 4a's 5x5, several panels, groups
    Conv2dCase(N=2, C=16, H=9, W=10, K=48, R=5, S=5, padding=(2, 2)),
    Conv2dCase(N=2, C=16, H=7, W=7, K=144),
    Conv2dCase(N=2, C=32, H=6, W=9, K=96, groups=2, dtype="float64"),
    # mixed lane panels, where no one tile width divides the output channels (AVX-512: 208 = 64 + 64 + 48 + 32,
    # GoogLeNet 4a's 3x3; 80 = 48 + 32): border classes, groups, panel groups, float64
    Conv2dCase(N=3, C=12, H=7, W=7, K=208),
    Conv2dCase(N=2, C=16, H=6, W=5, K=160, groups=2, padding=(2, 2)),
    Conv2dCase(N=2, C=9, H=9, W=8, K=208, R=5, S=5, padding=(2, 2), dtype="float64"),
    Conv2dCase(N=1, C=10, H=5, W=5, K=80, padding=(0, 0)),
    # x read from a copy blocked by 16 channels (AVX-512: 128+ channels per group on maps of 28x28 and more), in
    # the forward and in the data gradient's rotated pass; groups, float64
    Conv2dCase(N=2, C=128, H=28, W=29, K=128),
    Conv2dCase(N=1, C=256, H=29, W=28, K=64, groups=2, dtype="float64"),
    # a padded image copy over the 1 MiB block size (1.2 MiB: one image per block; VGG conv4_2 has 1.8 MiB)
    Conv2dCase(N=2, C=300, H=30, W=30, K=64),
    # weight gradient by lanes from an input map over 64x64 (AVX-512; AVX2 with few channels): AlexNet
    # conv1-like (stride 4, x read in place), and a padded stride-2 layer
    Conv2dCase(N=2, C=3, H=67, W=71, K=32, R=11, S=11, stride=(4, 4), padding=(0, 0)),
    Conv2dCase(N=1, C=8, H=66, W=70, K=48, stride=(2, 2), padding=(1, 1)),
    # ... and an output map over 64x64 (AVX-512, at least 16 input channels): VGG conv2_1-like
    Conv2dCase(N=1, C=16, H=65, W=67, K=32),
    # weight gradient by lanes with all channel panels in one task (the padded copy of x made once for them):
    # many channels on a small padded map; mixed panels, groups, crs ranges, float64
    Conv2dCase(N=2, C=64, H=3, W=3, K=192, R=5, S=5, padding=(2, 2)),
    Conv2dCase(N=3, C=96, H=4, W=3, K=416, R=5, S=5, padding=(2, 2), groups=2),
    Conv2dCase(N=2, C=40, H=3, W=4, K=160, R=5, S=5, padding=(2, 2), dtype="float64"),
    # weight gradient of plain 1x1 layers by lanes (maps up to 32x32, x read in place): groups, float64
    Conv2dCase(N=3, C=20, H=9, W=7, K=48, R=1, S=1, padding=(0, 0)),
    Conv2dCase(N=2, C=24, H=5, W=5, K=64, R=1, S=1, padding=(0, 0), groups=2, dtype="float64"),
    # ... where x is at least twice gy: all panels in a task, each pixel block through every panel in turn
    # (several pixel blocks and crs ranges; stride 2, groups, float64)
    Conv2dCase(N=3, C=170, H=7, W=9, K=80, R=1, S=1, padding=(0, 0)),
    Conv2dCase(N=2, C=128, H=10, W=11, K=160, R=1, S=1, stride=(2, 2), padding=(0, 0), groups=2, dtype="float64"),
]


# The direct path over padded rows (pixels as lanes, B read in place): its tiles store straight into y, each
# vector's real columns packed, so the garbage columns of the padded rows never land. Few input channels (one
# reduction block), long reductions (earlier blocks through the per-thread C block), blocks of several rows with
# a shorter last one, a last strip of fewer vectors, output channels short of a panel, strides as phase planes.
DIRECT_CASES = [
    Conv2dCase(N=2, C=3, H=45, W=50, K=20),                                      # VGG conv1_1-like, 20 = 8+8+4
    Conv2dCase(N=1, C=3, H=58, W=61, K=20),                      # 'same' over 56x56: direct, not 'same' (AVX-512)
    Conv2dCase(N=2, C=50, H=37, W=41, K=24),                                     # 450-long reduction: 2 blocks
    Conv2dCase(N=2, C=50, H=37, W=41, K=24, dtype="float64"),
    Conv2dCase(N=2, C=3, H=61, W=63, K=10, R=11, S=11, stride=(4, 4), padding=(0, 0)),  # AlexNet conv1-like
    Conv2dCase(N=2, C=3, H=40, W=38, K=12, R=7, S=7, stride=(2, 2), padding=(3, 3)),    # ResNet stem-like
    Conv2dCase(N=3, C=1, H=32, W=32, K=6, R=5, S=5, padding=(0, 0)),             # LeNet conv1: rows of 32, 28 real
    Conv2dCase(N=2, C=6, H=14, W=14, K=16, R=5, S=5, padding=(0, 0), bias=False),  # LeNet conv2
]


@pytest.mark.parametrize("case", DIRECT_CASES, ids=str)
def test_conv2d_direct_path(case, gen):
    check_conv2d(case, "cpu", "fast", gen)


# The 'same' path (AVX-512; stride 1, output map = input map up to 56x56): x read in place, each tap's lanes in
# the padding masked; the strips at x's two ends (first image, last image) load under masks, which may address
# outside x. One image, dilation, groups, 5x5, odd and one-row maps, a last vector of one pixel, float64, and
# the data gradient's rotated pass of such layers (GoogLeNet 4a 5x5: 48 -> 16 channels).
SAME_CASES = [
    Conv2dCase(N=1, C=5, H=9, W=7, K=19),
    Conv2dCase(N=2, C=6, H=11, W=13, K=10, dilation=(2, 2), padding=(2, 2)),
    Conv2dCase(N=2, C=8, H=7, W=7, K=8, groups=2),
    Conv2dCase(N=3, C=16, H=14, W=14, K=48, R=5, S=5, padding=(2, 2)),
    Conv2dCase(N=2, C=4, H=1, W=17, K=8, R=1, S=3, padding=(0, 1)),
    Conv2dCase(N=2, C=3, H=17, W=1, K=9, R=3, S=1, padding=(1, 0)),   # 17 pixels: a last vector of one
    Conv2dCase(N=2, C=12, H=10, W=9, K=20, dtype="float64"),
]


@pytest.mark.parametrize("case", SAME_CASES, ids=str)
def test_conv2d_same_path(case, gen):
    check_conv2d(case, "cpu", "fast", gen)


@pytest.mark.parametrize("case", LANES_CASES, ids=str)
def test_conv2d_channel_lane_path(case, gen):
    check_conv2d(case, "cpu", "fast", gen)


@pytest.mark.parametrize("case", ROWS_CASES, ids=str)
def test_conv2d_weight_grad_rows_path(case, gen):
    check_conv2d(case, "cpu", "fast", gen)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv2d_weight_grad_nonfinite_input(dtype, gen):
    """An infinity in x reaches only the weight taps that pair it with an output pixel: the lanes a fast path
    computes past the end of an output row must not turn inf * 0 into NaN elsewhere."""
    x = randn((2, 3, 9, 30), dtype, gen=gen)
    x[0, 1, 4, -1] = float("inf")
    x[1, 2, 0, 0] = float("-inf")
    w = randn((5, 3, 3, 3), dtype, gen=gen)
    gy = randn((2, 5, 9, 30), dtype, gen=gen)
    _, gwr, _ = torch.ops.aten.convolution_backward(gy.double(), x.double(), w.double(), None, [1, 1], [1, 1],
                                                    [1, 1], False, [0, 0], 1, [False, True, False])
    with poison():
        _, gw, _ = fastconv.conv2d_backward(gy, x, w, padding=1, output_mask=(False, True, False))
    finite = torch.isfinite(gwr)
    assert 0 < int(finite.sum()) < gwr.numel()
    assert torch.equal(torch.isfinite(gw), finite), "non-finite pattern differs from torch's"
    assert torch.equal(torch.isnan(gw), torch.isnan(gwr)), "NaN pattern differs from torch's"
    assert_close(gw[finite], gwr[finite], 2 * 9 * 30, dtype=dtype, what="finite weight-gradient taps")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("mask", [(True, False, False), (False, True, False), (False, False, True),
                                  (True, True, False), (False, True, True)], ids=str)
def test_conv2d_backward_output_mask(mask, variant, device, gen):
    """Only the requested gradients are computed (None for the others), and the
    requested ones are right."""
    x = randn((2, 4, 8, 7), device=device, gen=gen)
    w = randn((6, 2, 3, 2), device=device, gen=gen)
    gy = randn((2, 6, 4, 7), device=device, gen=gen)
    kw = dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    xr, wr = leaf(x.cpu().double()), leaf(w.cpu().double())
    br = leaf(torch.zeros(6, dtype=torch.float64))
    ref = grads(F.conv2d(xr, wr, br, **kw), [xr, wr, br], gy.cpu().double())
    with poison():
        out = fastconv.conv2d_backward(gy, x, w, output_mask=mask, variant=variant, **kw)
    assert len(out) == 3
    for m, got, exp, red, name in zip(mask, out, ref, [3 * 6, 2 * 4 * 7, 2 * 4 * 7], ["gx", "gw", "gb"]):
        if m:
            assert_close(got, exp, red, dtype=torch.float32, what=name)
        else:
            assert got is None, f"{name} not requested but returned"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv2d_exact_small_integers(dtype, variant, device, gen):
    """Small-integer inputs: every sum is exact in float32, so forward and all
    gradients must equal torch's float64 result exactly."""
    kw = dict(stride=(2, 1), padding=(2, 1), dilation=(1, 2), groups=1)
    x = randint((3, 17, 11, 9), -3, 3, dtype, device, gen)
    w = randint((5, 17, 5, 3), -2, 2, dtype, device, gen)
    b = randint((5,), -4, 4, dtype, device, gen)
    yr = F.conv2d(x.cpu().double(), w.cpu().double(), b.cpu().double(), **kw)
    gy = randint(yr.shape, -2, 2, dtype, device, gen)
    xr, wr, br = leaf(x.cpu().double()), leaf(w.cpu().double()), leaf(b.cpu().double())
    ref = grads(F.conv2d(xr, wr, br, **kw), [xr, wr, br], gy.cpu().double())
    xl, wl, bl = leaf(x), leaf(w), leaf(b)
    with poison():
        y = fastconv.conv2d(xl, wl, bl, variant=variant, **kw)
        got = grads(y, [xl, wl, bl], gy)
    assert y.dtype == dtype
    assert_equal(y, yr.to(dtype), "forward")
    for name, gv, rv in zip(["grad_input", "grad_weight", "grad_bias"], got, ref):
        assert_equal(gv, rv.to(dtype), name)
    # grouped / depthwise too
    for g, C, K in [(2, 6, 4), (6, 6, 12)]:
        x = randint((2, C, 10, 7), -3, 3, dtype, device, gen)
        w = randint((K, C // g, 3, 3), -2, 2, dtype, device, gen)
        kw = dict(stride=1, padding=1, groups=g)
        xr, wr = leaf(x.cpu().double()), leaf(w.cpu().double())
        yr = F.conv2d(xr, wr, **kw)
        gy = randint(yr.shape, -2, 2, dtype, device, gen)
        ref = grads(yr, [xr, wr], gy.cpu().double())
        xl, wl = leaf(x), leaf(w)
        with poison():
            y = fastconv.conv2d(xl, wl, variant=variant, **kw)
            got = grads(y, [xl, wl], gy)
        assert_equal(y, yr.detach().to(dtype), f"groups={g} forward")
        assert_equal(got[0], ref[0].to(dtype), f"groups={g} grad_input")
        assert_equal(got[1], ref[1].to(dtype), f"groups={g} grad_weight")


# ==========================================================================
# conv1d
# ==========================================================================
@dataclasses.dataclass(frozen=True)
class Conv1dCase:
    N: int = 2
    C: int = 3
    L: int = 11
    K: int = 4
    R: int = 3
    stride: int = 1
    padding: int = 1
    dilation: int = 1
    groups: int = 1
    bias: bool = True
    dtype: str = "float32"
    xlayout: str = "contiguous"
    wlayout: str = "contiguous"

    @property
    def P(self):
        return out_size(self.L, self.R, self.stride, self.padding, self.dilation)

    def __str__(self):
        base = Conv1dCase()
        diff = [f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(base, f.name)]
        return "-".join(diff) or "base"


def _conv1d_cases():
    B = Conv1dCase()
    r = dataclasses.replace
    cases = [B]
    for k in KERNELS:
        if k != B.R:
            cases.append(r(B, R=k, L=max(B.L, k + 2)))
    for s in [2, 3, 4]:
        cases.append(r(B, stride=s))
    for p in [0, 2, 3]:
        cases.append(r(B, padding=p))
    for d in [2, 3]:
        cases.append(r(B, dilation=d))
    cases.append(r(B, R=5, dilation=3, padding=3, stride=2, L=13))
    for C, K, g in [(4, 6, 2), (6, 6, 6), (17, 34, 17), (3, 3, 3)]:
        cases.append(r(B, C=C, K=K, groups=g))
    for N in [0, 1, 3]:
        cases.append(r(B, N=N))
    for C in [1, 17]:
        cases.append(r(B, C=C))
    for L in [1, 2, 20]:
        cases.append(r(B, L=L))
    cases.append(r(B, L=3, R=5, padding=1))  # input smaller than kernel, made valid by padding
    cases.append(r(B, bias=False))
    cases.append(r(B, dtype="float64"))
    for lx in LAYOUTS_3D[1:]:
        cases.append(r(B, xlayout=lx))
    for lw in LAYOUTS_3D[1:]:
        cases.append(r(B, wlayout=lw))
    rng = random.Random(1125)
    while len(cases) < 60:
        R = rng.choice(KERNELS)
        d = rng.randint(1, 3)
        g = rng.choice([1, 1, 2, 0])
        if g == 0:
            C = rng.choice([1, 3, 17])
            g, K = C, C * rng.choice([1, 2])
        else:
            C, K = g * rng.choice([1, 3, 4]), g * rng.choice([1, 2, 5])
        c = Conv1dCase(N=rng.choice([0, 1, 3, 2]), C=C, K=K, R=R, L=rng.randint(1, 20), stride=rng.randint(1, 4),
                       padding=rng.randint(0, 3), dilation=d, groups=g, bias=rng.random() < 0.7,
                       dtype=rng.choice(["float32", "float64"]), xlayout=rng.choice(LAYOUTS_3D),
                       wlayout=rng.choice(LAYOUTS_3D))
        while c.P < 1:
            c = r(c, L=c.L + 1)
        if c.L <= 40:
            cases.append(c)
    assert all(c.P >= 1 for c in cases)
    return cases


CONV1D_CASES = _conv1d_cases()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", CONV1D_CASES, ids=str)
def test_conv1d(case, variant, device, gen):
    dt = getattr(torch, case.dtype)
    N, C, L, K, R, g = case.N, case.C, case.L, case.K, case.R, case.groups
    P = case.P
    x0 = randn((N, C, L), dt, device, gen)
    w0 = randn((K, C // g, R), dt, device, gen)
    b0 = randn((K,), dt, device, gen) if case.bias else None
    gy = randn((N, K, P), dt, device, gen)
    x, w = with_layout(x0, case.xlayout, gen), with_layout(w0, case.wlayout, gen)
    kw = dict(stride=case.stride, padding=case.padding, dilation=case.dilation, groups=g)

    xr, wr = leaf(x0.cpu().double()), leaf(w0.cpu().double())
    br = leaf(b0.cpu().double()) if b0 is not None else None
    yr = F.conv1d(xr, wr, br, **kw)
    gxr, gwr, gbr = grads(yr, [xr, wr, br], gy.cpu().double())

    xl, wl = leaf(x), leaf(w)
    bl = leaf(b0) if b0 is not None else None
    with poison():
        y = fastconv.conv1d(xl, wl, bl, variant=variant, **kw)
    assert y.device == x.device
    assert_close(y, yr, (C // g) * R, dtype=dt, what="conv1d forward")
    with poison():
        gx, gw, gb = grads(y, [xl, wl, bl], gy)
    assert_close(gx, gxr, (K // g) * R, dtype=dt, what="conv1d grad_input")
    assert_close(gw, gwr, N * P, dtype=dt, what="conv1d grad_weight")
    if bl is not None:
        assert_close(gb, gbr, N * P, dtype=dt, what="conv1d grad_bias")
    with poison():
        gx2, gw2, gb2 = fastconv.conv1d_backward(gy, x, w, output_mask=(True, True, True), variant=variant, **kw)
    assert_close(gx2, gxr, (K // g) * R, dtype=dt, what="conv1d_backward grad_input")
    assert_close(gw2, gwr, N * P, dtype=dt, what="conv1d_backward grad_weight")
    assert_close(gb2, gy.cpu().double().sum((0, 2)), N * P, dtype=dt, what="conv1d_backward grad_bias")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_conv1d_exact_small_integers(variant, device, gen):
    """The notes' weighted moving average: integer data and weights, exact sums."""
    for dtype in (torch.float32, torch.float64):
        x = randint((2, 5, 40), -3, 3, dtype, device, gen)
        w = randint((3, 5, 7), -2, 2, dtype, device, gen)
        b = randint((3,), -3, 3, dtype, device, gen)
        kw = dict(stride=2, padding=3, dilation=2)
        xr, wr, br = leaf(x.cpu().double()), leaf(w.cpu().double()), leaf(b.cpu().double())
        yr = F.conv1d(xr, wr, br, **kw)
        gy = randint(yr.shape, -2, 2, dtype, device, gen)
        ref = grads(yr, [xr, wr, br], gy.cpu().double())
        xl, wl, bl = leaf(x), leaf(w), leaf(b)
        with poison():
            y = fastconv.conv1d(xl, wl, bl, variant=variant, **kw)
            got = grads(y, [xl, wl, bl], gy)
        assert_equal(y, yr.detach().to(dtype), "forward")
        for name, gv, rv in zip(["grad_input", "grad_weight", "grad_bias"], got, ref):
            assert_equal(gv, rv.to(dtype), name)
    # moving average with weights 1/4 (exact in binary)
    x = randint((1, 1, 16), -8, 8, torch.float32, device, gen)
    w = torch.full((1, 1, 4), 0.25, device=device)
    y = fastconv.conv1d(x, w, variant=variant)
    assert_equal(y, torch.stack([x[0, 0, i:i + 4].double().mean() for i in range(13)]).view(1, 1, 13).float())


# ==========================================================================
# conv1x1
# ==========================================================================
@dataclasses.dataclass(frozen=True)
class Conv1x1Case:
    N: int = 2
    C: int = 8
    K: int = 5
    H: int = 5
    W: int = 7
    bias: bool = True
    w2d: bool = False
    dtype: str = "float32"
    xlayout: str = "contiguous"
    wlayout: str = "contiguous"

    def __str__(self):
        base = Conv1x1Case()
        diff = [f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(base, f.name)]
        return "-".join(diff) or "base"


def _conv1x1_cases():
    B = Conv1x1Case()
    r = dataclasses.replace
    cases = [B]
    for C in [1, 3, 17, 64]:
        cases.append(r(B, C=C))
    for K in [1, 16, 33]:
        cases.append(r(B, K=K))
    for N in [0, 1, 3]:
        cases.append(r(B, N=N))
    for H, W in [(1, 1), (1, 17), (13, 3), (16, 16)]:
        cases.append(r(B, H=H, W=W))
    cases += [r(B, bias=False), r(B, w2d=True), r(B, w2d=True, bias=False, K=9), r(B, dtype="float64"),
              r(B, dtype="float64", C=17, K=33)]
    # x read in place: several reduction blocks and pixel blocks, a map that
    # fills its strips exactly (48 float32 / 24 float64 columns)
    cases += [r(B, C=300, K=9, H=20, W=30), r(B, H=6, W=8, K=16), r(B, H=4, W=6, dtype="float64"),
              r(B, N=3, C=40, K=600, H=3, W=5)]
    # strips packed per reduction block where K >= 96 (several blocks, a partial last strip)
    cases += [r(B, N=2, C=300, K=100, H=7, W=9), r(B, N=2, C=150, K=97, H=5, W=7, dtype="float64")]
    for lx in LAYOUTS_4D[1:]:
        cases.append(r(B, xlayout=lx))
    for lw in ["transposed", "sliced"]:
        cases.append(r(B, wlayout=lw))
        cases.append(r(B, wlayout=lw, w2d=True))
    cases.append(r(B, xlayout="channels_last", C=32, K=16, H=6, W=6))  # the GoogLeNet reduction, NHWC input
    rng = random.Random(11)
    for _ in range(10):
        cases.append(Conv1x1Case(N=rng.choice([0, 1, 3]), C=rng.choice([1, 3, 17, 24]), K=rng.choice([1, 7, 16]),
                                 H=rng.randint(1, 12), W=rng.randint(1, 12), bias=rng.random() < 0.6,
                                 w2d=rng.random() < 0.5, dtype=rng.choice(["float32", "float64"]),
                                 xlayout=rng.choice(LAYOUTS_4D), wlayout=rng.choice(["contiguous", "transposed", "sliced"])))
    return cases


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", _conv1x1_cases(), ids=str)
def test_conv1x1(case, variant, device, gen):
    dt = getattr(torch, case.dtype)
    N, C, K, H, W = case.N, case.C, case.K, case.H, case.W
    x0 = randn((N, C, H, W), dt, device, gen)
    w0 = randn((K, C) if case.w2d else (K, C, 1, 1), dt, device, gen)
    b0 = randn((K,), dt, device, gen) if case.bias else None
    gy = randn((N, K, H, W), dt, device, gen)
    x, w = with_layout(x0, case.xlayout, gen), with_layout(w0, case.wlayout, gen)

    xr, wr = leaf(x0.cpu().double()), leaf(w0.cpu().double())
    br = leaf(b0.cpu().double()) if b0 is not None else None
    yr = F.conv2d(xr, wr.reshape(K, C, 1, 1), br)
    gxr, gwr, gbr = grads(yr, [xr, wr, br], gy.cpu().double())
    assert gwr.shape == w.shape

    xl, wl = leaf(x), leaf(w)
    bl = leaf(b0) if b0 is not None else None
    with poison():
        y = fastconv.conv1x1(xl, wl, bl, variant=variant)
    assert y.device == x.device
    assert_close(y, yr, C, dtype=dt, what="conv1x1 forward")
    with poison():
        gx, gw, gb = grads(y, [xl, wl, bl], gy)
    assert_close(gx, gxr, K, dtype=dt, what="conv1x1 grad_input")
    assert_close(gw, gwr, N * H * W, dtype=dt, what="conv1x1 grad_weight")
    if bl is not None:
        assert_close(gb, gbr, N * H * W, dtype=dt, what="conv1x1 grad_bias")
    with poison():
        gx2, gw2, gb2 = fastconv.conv1x1_backward(gy, x, w, output_mask=(True, True, True), variant=variant)
    assert_close(gx2, gxr, K, dtype=dt, what="conv1x1_backward grad_input")
    assert_close(gw2, gwr, N * H * W, dtype=dt, what="conv1x1_backward grad_weight (shape follows weight)")
    assert_close(gb2, gy.cpu().double().sum((0, 2, 3)), N * H * W, dtype=dt, what="conv1x1_backward grad_bias")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_conv1x1_exact_small_integers(variant, device, gen):
    for dtype in (torch.float32, torch.float64):
        x = randint((3, 19, 5, 6), -3, 3, dtype, device, gen)
        w = randint((7, 19, 1, 1), -2, 2, dtype, device, gen)
        b = randint((7,), -2, 2, dtype, device, gen)
        xr, wr, br = leaf(x.cpu().double()), leaf(w.cpu().double()), leaf(b.cpu().double())
        yr = F.conv2d(xr, wr, br)
        gy = randint(yr.shape, -2, 2, dtype, device, gen)
        ref = grads(yr, [xr, wr, br], gy.cpu().double())
        xl, wl, bl = leaf(x), leaf(w), leaf(b)
        with poison():
            y = fastconv.conv1x1(xl, wl, bl, variant=variant)
            got = grads(y, [xl, wl, bl], gy)
        assert_equal(y, yr.detach().to(dtype), "forward")
        for name, gv, rv in zip(["grad_input", "grad_weight", "grad_bias"], got, ref):
            assert_equal(gv, rv.to(dtype), name)


# ==========================================================================
# the same checks with each CPU micro-kernel ISA forced (FASTCONV_ISA is read at import),
# and the max pooling kernels compiled beside them
# ==========================================================================
_ISA_SCRIPT = textwrap.dedent("""
    import contextlib, io, sys
    sys.path.insert(0, {tests!r})
    import torch
    import torch.nn.functional as F
    import fastconv
    from helpers import assert_close, grads, leaf, randn, with_layout, poison

    isa = sys.argv[1]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        info = fastconv.info()
    if isinstance(info, dict) and "isa" in info:
        assert str(info["isa"]).lower().replace("-", "") == isa, f"forced {{isa}}, info says {{info}}"
    else:
        text = (str(info) + buf.getvalue()).lower()
        assert isa in text, f"forced {{isa}}, info says {{text}}"

    g = torch.Generator().manual_seed(5)
    n = 0
    for dt in (torch.float32, torch.float64):
        for (N, C, H, W, K, R, S, st, pd, dl, gr, lay) in [
                (2, 3, 7, 9, 4, 3, 3, 1, 1, 1, 1, "contiguous"),
                (3, 17, 13, 19, 33, 5, 5, 2, 2, 1, 1, "channels_last"),
                (1, 16, 11, 23, 16, 3, 3, 1, 1, 2, 16, "contiguous"),
                (2, 8, 9, 17, 12, 1, 1, 1, 0, 1, 2, "transposed"),
                (2, 5, 12, 31, 7, 2, 7, (1, 3), (0, 3), 1, 1, "sliced"),
                (1, 1, 20, 20, 1, 11, 11, 1, 3, 1, 1, "contiguous"),
                (3, 4, 6, 14, 13, 3, 3, 1, 1, 1, 1, "contiguous"),    # weight grad by output rows, tails
                (2, 6, 17, 30, 5, 3, 3, 2, 1, 1, 1, "contiguous"),
                (2, 8, 7, 9, 48, 3, 3, 1, 1, 1, 1, "contiguous"),    # forward by channel lanes
                (2, 12, 7, 7, 208, 3, 3, 1, 1, 1, 1, "contiguous"),  # lanes in panels of mixed widths
                (1, 3, 67, 69, 32, 11, 11, 4, 0, 1, 1, "contiguous")]:  # weight grad by lanes, map over 64x64
            x0 = randn((N, C, H, W), dt, gen=g)
            w0 = randn((K, C // gr, R, S), dt, gen=g)
            b0 = randn((K,), dt, gen=g)
            kw = dict(stride=st, padding=pd, dilation=dl, groups=gr)
            xr, wr, br = leaf(x0.double()), leaf(w0.double()), leaf(b0.double())
            yr = F.conv2d(xr, wr, br, **kw)
            gy = randn(yr.shape, dt, gen=g)
            ref = grads(yr, [xr, wr, br], gy.double())
            xl, wl, bl = leaf(with_layout(x0, lay, g)), leaf(w0), leaf(b0)
            with poison():
                y = fastconv.conv2d(xl, wl, bl, **kw)
                got = grads(y, [xl, wl, bl], gy)
            P, Q = yr.shape[2:]
            assert_close(y, yr, C // gr * R * S, dtype=dt, what=f"{{isa}} conv2d fwd")
            for nm, a, e, red in zip(["gx", "gw", "gb"], got, ref, [K // gr * R * S, N * P * Q, N * P * Q]):
                assert_close(a, e, red, dtype=dt, what=f"{{isa}} conv2d {{nm}}")
            n += 1
        # conv1x1 with channel counts around vector widths, and conv1d
        for C, K in [(1, 1), (7, 9), (16, 16), (17, 33), (64, 3)]:
            x0 = randn((2, C, 5, 7), dt, gen=g)
            w0 = randn((K, C, 1, 1), dt, gen=g)
            xr, wr = leaf(x0.double()), leaf(w0.double())
            yr = F.conv2d(xr, wr)
            gy = randn(yr.shape, dt, gen=g)
            ref = grads(yr, [xr, wr], gy.double())
            xl, wl = leaf(x0), leaf(w0)
            with poison():
                y = fastconv.conv1x1(xl, wl)
                got = grads(y, [xl, wl], gy)
            assert_close(y, yr, C, dtype=dt, what=f"{{isa}} conv1x1 fwd")
            assert_close(got[0], ref[0], K, dtype=dt, what=f"{{isa}} conv1x1 gx")
            assert_close(got[1], ref[1], 70, dtype=dt, what=f"{{isa}} conv1x1 gw")
            x0 = randn((3, C, 37), dt, gen=g)
            w0 = randn((K, C, 5), dt, gen=g)
            xr, wr = leaf(x0.double()), leaf(w0.double())
            yr = F.conv1d(xr, wr, padding=2, stride=2)
            gy = randn(yr.shape, dt, gen=g)
            ref = grads(yr, [xr, wr], gy.double())
            xl, wl = leaf(x0), leaf(w0)
            with poison():
                y = fastconv.conv1d(xl, wl, padding=2, stride=2)
                got = grads(y, [xl, wl], gy)
            assert_close(y, yr, 5 * C, dtype=dt, what=f"{{isa}} conv1d fwd")
            assert_close(got[0], ref[0], 5 * K, dtype=dt, what=f"{{isa}} conv1d gx")
            assert_close(got[1], ref[1], 3 * 19, dtype=dt, what=f"{{isa}} conv1d gw")
        # max pooling kernels: padded rows (column stride 1), planes as lanes
        for shape, kw in [((2, 3, 9, 28), dict(kernel_size=3, stride=1, padding=1)),
                          ((1, 1, 30, 45), dict(kernel_size=(2, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2))),
                          ((2, 5, 7, 7), dict(kernel_size=3, stride=1, padding=1)),
                          ((3, 7, 9, 11), dict(kernel_size=3, stride=2))]:
            x0 = randn(shape, dt, gen=g)
            yr, ir = F.max_pool2d(x0, return_indices=True, **kw)
            with poison():
                y, idx = fastconv.max_pool2d(x0, return_indices=True, **kw)
            assert torch.equal(y, yr) and torch.equal(idx, ir), f"{{isa}} max_pool2d {{shape}} {{kw}}"
            n += 1
    print("OK", n)
""")

_ISA_NEEDS = {"generic": set(), "avx2": {"avx2", "fma"}, "avx512": {"avx512f"}}


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_conv_forced_isa(isa):
    if not _ISA_NEEDS[isa] <= cpu_flags():
        pytest.skip(f"this CPU lacks {isa}")
    env = dict(os.environ, FASTCONV_ISA=isa)
    script = _ISA_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", script, isa], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"FASTCONV_ISA={isa}:\n{r.stdout}\n{r.stderr}"
    assert r.stdout.strip().startswith("OK")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("which", ["x", "w", "b", "xb", "wb"])
def test_conv_partial_requires_grad(which, device, gen):
    """Only the tensors that require grad get one, and it is right (autograd asks
    the backward for a subset of the gradients)."""
    x0 = randn((2, 4, 7, 6), device=device, gen=gen)
    w0 = randn((6, 2, 3, 3), device=device, gen=gen)
    b0 = randn((6,), device=device, gen=gen)
    gy = randn((2, 6, 4, 3), device=device, gen=gen)
    kw = dict(stride=2, padding=1, groups=2)
    xr, wr, br = leaf(x0.cpu().double()), leaf(w0.cpu().double()), leaf(b0.cpu().double())
    ref = dict(zip("xwb", grads(F.conv2d(xr, wr, br, **kw), [xr, wr, br], gy.cpu().double())))
    t = {"x": x0.clone(), "w": w0.clone(), "b": b0.clone()}
    for k in which:
        t[k].requires_grad_()
    with poison():
        y = fastconv.conv2d(t["x"], t["w"], t["b"], **kw)
        y.backward(gy)
    for k in "xwb":
        if k in which:
            red = {"x": 3 * 9, "w": 24, "b": 24}[k]
            assert_close(t[k].grad, ref[k], red, dtype=torch.float32, what=f"grad of {k}")
        else:
            assert t[k].grad is None


_GB_SCRIPT = """
import hashlib, torch, fastconv
g = torch.Generator().manual_seed(7)
h = hashlib.sha256()
# shapes for the weight gradient's lanes, dot, rows and gemm paths, each with the bias gradient fused
for xs, ws, kw in [((4, 32, 16, 16), (32, 32, 3, 3), dict(padding=1)),
                   ((2, 3, 47, 47), (8, 3, 11, 11), dict(stride=4)),
                   ((8, 1, 32, 32), (6, 1, 5, 5), {}),
                   ((2, 64, 70, 70), (96, 64, 3, 3), dict(padding=1))]:
    x, w = torch.randn(xs, generator=g), torch.randn(ws, generator=g)
    gy = torch.randn(fastconv.conv2d(x, w, **kw).shape, generator=g)
    for dt in (torch.float32, torch.float64):
        gb = fastconv.conv2d_backward(gy.to(dt), x.to(dt), w.to(dt), **kw)[2]
        # against torch's float64 sum too, so that bits agreeing across ISAs are also right
        n = gy[:, 0].numel()
        torch.testing.assert_close(gb.double(), gy.double().sum((0, 2, 3)), rtol=0, atol=1e-12 * n if dt == torch.float64
                                   else 1e-6 * n)
        h.update(gb.numpy().tobytes())
print(h.hexdigest())
"""


def test_conv_bias_grad_same_bits_on_every_isa():
    """The fused bias gradient's double sums run in vector lanes on AVX2 / AVX-512 in the same fixed pattern as
    the generic build: the same bits whichever instruction set the dispatcher picks (each also checked against
    torch's float64 sum of grad_output)."""
    digests = {}
    for isa in ("generic", "avx2", "avx512"):
        if not _ISA_NEEDS[isa] <= cpu_flags():
            continue
        env = dict(os.environ, FASTCONV_ISA=isa)
        r = subprocess.run([sys.executable, "-c", _GB_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"FASTCONV_ISA={isa}:\n{r.stdout}\n{r.stderr}"
        digests[isa] = r.stdout.strip()
    assert len(set(digests.values())) == 1, digests
