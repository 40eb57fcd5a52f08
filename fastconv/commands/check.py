"""fastconv check: every op on random data against torch, with a timing beside it.

Not a benchmark (see ``fastconv bench``): a quick end-to-end proof that the
installed build computes what torch computes, with a rough speed ratio.
"""
from __future__ import annotations

import time


def register(sub):
    p = sub.add_parser("check", help="run every op on random data against torch and print errors and timings")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per op (median is shown)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.set_defaults(func=run)


def _median_times(fns, repeats):
    """Median time of each fn, run interleaved after one warm-up call each."""
    import statistics

    for f in fns:
        f()
    samples = [[] for _ in fns]
    for _ in range(repeats):
        for i, f in enumerate(fns):
            t0 = time.perf_counter()
            f()
            samples[i].append(time.perf_counter() - t0)
    return [statistics.median(s) for s in samples]


def cases(torch, dtype, device):
    """(name, fastconv fn, torch fn, reduction length) with shared random inputs; both return a tuple."""
    import torch.nn.functional as F

    import fastconv

    g = torch.Generator(device="cpu").manual_seed(0)

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype).to(device)

    x, w, b = rnd(8, 32, 33, 31), rnd(48, 32, 3, 3), rnd(48)
    gy = rnd(8, 48, 17, 16)
    conv_args = dict(stride=2, padding=1, dilation=1, groups=1)

    def torch_conv_bwd():
        return torch.ops.aten.convolution_backward(gy, x, w, [48], [2, 2], [1, 1], [1, 1], False, [0, 0], 1,
                                                   [True, True, True])

    x1, w1, b1 = rnd(4, 16, 101), rnd(24, 16, 5), rnd(24)
    gy1 = rnd(4, 24, 99)
    xr, wr, br = rnd(8, 64, 28, 28), rnd(32, 64, 1, 1), rnd(32)
    gyr = rnd(8, 32, 28, 28)
    xp = rnd(8, 32, 56, 55)
    yp, idx = F.max_pool2d(xp, 3, 2, 1, return_indices=True)
    gyp = torch.randn_like(yp)
    gya = torch.randn_like(F.avg_pool2d(xp, 2))
    xa, gya2 = rnd(8, 64, 56, 56), rnd(8, 64, 56, 56)

    return [
        ("conv2d", lambda: (fastconv.conv2d(x, w, b, **conv_args),), lambda: (F.conv2d(x, w, b, **conv_args),),
         32 * 9),
        ("conv2d_backward", lambda: fastconv.conv2d_backward(gy, x, w, **conv_args), torch_conv_bwd,
         8 * 17 * 16),
        ("conv1d", lambda: (fastconv.conv1d(x1, w1, b1, padding=1),), lambda: (F.conv1d(x1, w1, b1, padding=1),),
         16 * 5),
        ("conv1d_backward", lambda: fastconv.conv1d_backward(gy1, x1, w1, padding=1),
         lambda: torch.ops.aten.convolution_backward(gy1, x1, w1, [24], [1], [1], [1], False, [0], 1,
                                                     [True, True, True]), 4 * 99),
        ("conv1x1", lambda: (fastconv.conv1x1(xr, wr, br),), lambda: (F.conv2d(xr, wr, br),), 64),
        ("conv1x1_backward", lambda: fastconv.conv1x1_backward(gyr, xr, wr),
         lambda: torch.ops.aten.convolution_backward(gyr, xr, wr, [32], [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
                                                     [True, True, True]), 8 * 28 * 28),
        ("max_pool2d", lambda: fastconv.max_pool2d(xp, 3, 2, 1, return_indices=True),
         lambda: F.max_pool2d(xp, 3, 2, 1, return_indices=True), 1),
        ("max_pool2d_backward", lambda: (fastconv.max_pool2d_backward(gyp, xp, idx, 3, 2, 1),),
         lambda: (torch.ops.aten.max_pool2d_with_indices_backward(gyp, xp, [3, 3], [2, 2], [1, 1], [1, 1], False,
                                                                  idx),), 9),
        ("avg_pool2d", lambda: (fastconv.avg_pool2d(xp, 2),), lambda: (F.avg_pool2d(xp, 2),), 4),
        ("avg_pool2d_backward", lambda: (fastconv.avg_pool2d_backward(gya, xp, 2),),
         lambda: (torch.ops.aten.avg_pool2d_backward(gya, xp, [2, 2], [2, 2], [0, 0], False, True, None),), 4),
        ("relu", lambda: (fastconv.relu(xa),), lambda: (torch.relu(xa),), 1),
        ("relu_backward", lambda: (fastconv.relu_backward(gya2, xa),),
         lambda: (torch.ops.aten.threshold_backward(gya2, xa, 0),), 1),
        ("guided_relu_backward", lambda: (fastconv.guided_relu_backward(gya2, xa),),
         lambda: (gya2 * (xa > 0) * (gya2 > 0),), 1),
    ]


def run(args) -> int:
    try:
        import torch
    except ImportError:
        print("fastconv check compares against torch, which is not installed (pip install torch)")
        return 1
    import fastconv

    dtype = getattr(torch, args.dtype)
    eps = torch.finfo(dtype).eps
    print(f"fastconv {fastconv.__version__}  isa={fastconv._ops._C.isa()}  threads={fastconv.get_num_threads()}  "
          f"dtype={args.dtype}  device={args.device}")
    header = f"{'op':22s} {'max abs err':>12s} {'tolerance':>10s} {'result':>6s} {'fastconv ms':>12s} " \
             f"{'torch ms':>10s} {'ratio':>7s}"
    print(header)
    print("-" * len(header))
    failures = 0
    with torch.no_grad():
        for name, ours, theirs, reduction in cases(torch, dtype, args.device):
            got, want = ours(), theirs()
            err, tol = 0.0, 0.0
            for a, b in zip(got, want):
                if a is None or b is None:
                    continue
                scale = max(b.abs().max().item(), 1.0)
                tol = max(tol, 8 * eps * reduction ** 0.5 * scale + 1e-30)
                diff = (a.to(b.dtype) - b).abs()
                err = max(err, float("inf") if torch.isnan(diff).any() else diff.max().item())
            ok = err <= tol
            failures += not ok
            t_ours, t_theirs = _median_times([ours, theirs], args.repeats)
            print(f"{name:22s} {err:12.3e} {tol:10.1e} {'pass' if ok else 'FAIL':>6s} {t_ours * 1e3:12.3f} "
                  f"{t_theirs * 1e3:10.3f} {t_theirs / t_ours:6.2f}x")
    print("ratio = torch time / fastconv time (> 1: fastconv faster). "
          "Rough timings; see `fastconv bench` for the real benchmark.")
    if failures:
        print(f"{failures} op(s) FAILED")
    return 1 if failures else 0
