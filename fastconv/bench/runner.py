"""Run benchmark cases: correctness first, then fastconv and torch timed in the same run, interleaved.

For every case the runner builds the inputs once, then for each pass (conv: forward, backward-data,
backward-weight(+bias); pool/activation: forward, backward; train: step):

1. correctness: both sides run once and the fastconv result is compared with torch's with a tolerance scaled by
   the reduction length L of the pass: ``max|fc - torch| <= 32 * eps * sqrt(L) * max|torch|`` (eps = 2^-23 for fp32,
   2^-10 with --tf32 on CUDA). A failure is reported and the pass is still timed.
2. warm-up: each side runs at least ``warmup`` more times and at least ``warmup_s`` seconds (weight conversions
   get cached, pages get touched); the fastest warm-up call estimates the time per call.
3. timing: ``reps`` samples per side, alternating which side goes first; a sample is ``inner`` back-to-back calls
   (inner chosen so a sample lasts >= ``min_sample_s``) divided by inner. Reported: the median (and min, quartiles).
   CPU samples use time.perf_counter with the GC off; CUDA samples use CUDA events after flushing L2 with a
   buffer of twice its size, one call per sample so inputs come from DRAM.

Rates: conv passes count 2*N*K*P*Q*C*R*S/groups flops each (the same number for forward, backward-data and
backward-weight); memory-bound ops count bytes read + bytes written of the tensors the fastconv call touches
(the same count is used for torch, so the GB/s ratio equals the speed ratio); train steps count 3x the forward
flops of their conv and linear layers (nominal). ratio = torch median / fastconv median (> 1: fastconv faster);
ratio_pairs = quartiles of the per-repeat ratios (torch sample / fastconv sample of the same repeat), the noise band
of the ratio.
"""
from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from . import suites as S

EPS_FP32 = 2.0 ** -23
EPS_TF32 = 2.0 ** -10
EPS_FP64 = 2.0 ** -52


@dataclass
class TimingConfig:
    warmup: int = 2            # at least this many warm-up calls per side ...
    warmup_s: float = 0.05     # ... and at least this long
    min_reps: int = 9
    max_reps: int = 81
    budget_s: float = 4.0      # seconds of samples per side per pass (reps = budget / sample time, clamped)
    min_sample_s: float = 0.01  # a sample lasts at least this long (inner loop for tiny ops)
    slow_call_s: float = 1.0   # a call slower than this gets only ``slow_reps`` samples
    slow_reps: int = 3

    @classmethod
    def quick(cls) -> "TimingConfig":
        return cls(warmup=1, warmup_s=0.005, min_reps=3, max_reps=5, budget_s=0.03, min_sample_s=0.002,
                   slow_call_s=0.2, slow_reps=3)


def tolerance(L: int, eps: float) -> float:
    return 32.0 * eps * math.sqrt(max(int(L), 1))


def compare(name: str, got, ref, L: int, eps: float) -> dict:
    """Relative max error of got vs ref (normalised by max|ref|) against the tolerance for reduction length L."""
    import torch
    tol = tolerance(L, eps)
    if got is None or ref is None:
        return dict(what=name, passed=False, err=float("inf"), tol=tol, L=int(L), msg="missing output")
    if tuple(got.shape) != tuple(ref.shape):
        return dict(what=name, passed=False, err=float("inf"), tol=tol, L=int(L),
                    msg=f"shape {tuple(got.shape)} != {tuple(ref.shape)}")
    g = got.detach().to("cpu", torch.float64)
    r = ref.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(g).all()):
        return dict(what=name, passed=False, err=float("inf"), tol=tol, L=int(L), msg="non-finite values")
    scale = float(r.abs().max()) if r.numel() else 0.0
    diff = float((g - r).abs().max()) if r.numel() else 0.0
    err = diff / scale if scale > 0 else diff
    return dict(what=name, passed=err <= tol, err=err, tol=tol, L=int(L))


def merge_checks(checks: List[dict]) -> dict:
    """One verdict from several compared tensors: passed if all passed; err/tol of the worst (largest err/tol)."""
    worst = max(checks, key=lambda c: (c["err"] / c["tol"]) if c["tol"] > 0 else float("inf"))
    out = dict(worst)
    out["passed"] = all(c["passed"] for c in checks)
    out["parts"] = [{k: v for k, v in c.items() if k != "parts"} for c in checks]
    return out


# ----------------------------------------------------------------------------------------------------------------------
# timers
# ----------------------------------------------------------------------------------------------------------------------

class CpuTimer:
    device = "cpu"

    def once(self, fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    def sample(self, fn, inner: int) -> float:
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        return (time.perf_counter() - t0) / inner


class CudaTimer:
    """CUDA events around one call, L2 flushed before each sample so the inputs are read from DRAM."""
    device = "cuda"

    def __init__(self):
        import torch
        self.torch = torch
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        l2 = int(getattr(props, "L2_cache_size", 0) or (64 << 20))
        self.flush_buf = torch.empty(max(2 * l2, 8 << 20) // 4, dtype=torch.float32, device="cuda")
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def once(self, fn) -> float:
        self.flush_buf.zero_()
        self.start.record()
        fn()
        self.end.record()
        self.end.synchronize()
        return self.start.elapsed_time(self.end) / 1e3

    def sample(self, fn, inner: int) -> float:
        return self.once(fn)  # one call per sample: an inner loop would hit warm L2


def _stats(samples: List[float], inner: int) -> dict:
    s = sorted(samples)
    n = len(s)
    q = statistics.quantiles(s, n=4) if n >= 2 else [s[0]] * 3
    return dict(median_ms=statistics.median(s) * 1e3, min_ms=s[0] * 1e3, q1_ms=q[0] * 1e3, q3_ms=q[2] * 1e3,
                reps=n, inner=inner)


def _warm_up(fn, timer, cfg: TimingConfig) -> float:
    """At least ``cfg.warmup`` calls and at least ``cfg.warmup_s`` seconds of them (small ops get many calls);
    returns the fastest call, the estimate of the time per call that sets ``inner`` and ``reps``."""
    best = float("inf")
    n = 0
    t0 = time.perf_counter()
    while n < max(cfg.warmup, 1) or (time.perf_counter() - t0 < cfg.warmup_s and n < 10000):
        best = min(best, timer.once(fn))
        n += 1
    return best


def pair_ratios(sa: List[float], sb: List[float]) -> dict:
    """Quartiles of the per-repeat ratios sb[i] / sa[i]. Each repeat times a and b back to back, so a slow phase of a
    shared machine (another tenant's burst) slows both sides of a pair alike: the spread of these ratios is the
    noise on the ratio itself, which the spread of either side's times overstates."""
    rs = sorted(b / a for a, b in zip(sa, sb) if a > 0)
    if not rs:
        return dict(median=None, q1=None, q3=None, n=0)
    q = statistics.quantiles(rs, n=4) if len(rs) >= 2 else [rs[0]] * 3
    return dict(median=statistics.median(rs), q1=q[0], q3=q[2], n=len(rs))


def time_pair(fa: Callable, fb: Callable, cfg: TimingConfig, timer) -> tuple:
    """Warm up both, then interleave samples of fa and fb. Returns (stats_a, stats_b, pair_ratios(a, b))."""
    ta = _warm_up(fa, timer, cfg)
    tb = _warm_up(fb, timer, cfg)
    cuda = timer.device == "cuda"
    ia = 1 if cuda else max(1, math.ceil(cfg.min_sample_s / max(ta, 1e-7)))
    ib = 1 if cuda else max(1, math.ceil(cfg.min_sample_s / max(tb, 1e-7)))
    sample_s = max(ta * ia, tb * ib, 1e-7)
    if max(ta, tb) > cfg.slow_call_s:
        reps = cfg.slow_reps
    else:
        reps = int(min(max(cfg.budget_s / sample_s, cfg.min_reps), cfg.max_reps))
    sa: List[float] = []
    sb: List[float] = []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for r in range(reps):
            if r % 2 == 0:
                sa.append(timer.sample(fa, ia))
                sb.append(timer.sample(fb, ib))
            else:
                sb.append(timer.sample(fb, ib))
                sa.append(timer.sample(fa, ia))
    finally:
        if gc_was:
            gc.enable()
    return _stats(sa, ia), _stats(sb, ib), pair_ratios(sa, sb)


# ----------------------------------------------------------------------------------------------------------------------
# passes of each case kind
# ----------------------------------------------------------------------------------------------------------------------

@dataclass
class Pass:
    name: str
    op: str                      # the fastconv entry point used
    fc: Callable[[], object]
    th: Callable[[], object]
    metric: str                  # "flops" | "bytes"
    work: float                  # flops or bytes per call
    check: Callable[[], dict]    # runs both once, compares
    grad: bool = False           # needs autograd enabled (train steps)


def _nbytes(*ts) -> int:
    return int(sum(t.numel() * t.element_size() for t in ts if t is not None))


def conv_passes(case: S.ConvCase, device: str, eps: float) -> List[Pass]:
    import torch
    import torch.nn.functional as F
    import fastconv as fc

    aten = torch.ops.aten
    g = torch.Generator().manual_seed(0)
    N, C, K, R, Sx, groups = case.N, case.C, case.K, case.R, case.S, case.groups
    x = torch.randn(N, C, case.H, case.W, generator=g).to(device)
    w = (torch.randn(K, C // groups, R, Sx, generator=g) / math.sqrt(C // groups * R * Sx)).to(device)
    b = torch.randn(K, generator=g).to(device) if case.bias else None
    go = torch.randn(N, K, case.P, case.Q, generator=g).to(device)
    st, pd, dl = case.stride, case.pad, case.dilation
    flops = case.flops()
    use_1x1 = case.is_1x1 and hasattr(fc, "conv1x1") and hasattr(fc, "conv1x1_backward")

    if use_1x1:
        fwd_op, bwd_op = "conv1x1", "conv1x1_backward"

        def fc_fwd():
            return fc.conv1x1(x, w, b)

        def fc_bwd(mask):
            return fc.conv1x1_backward(go, x, w, output_mask=mask)
    else:
        fwd_op, bwd_op = "conv2d", "conv2d_backward"

        def fc_fwd():
            return fc.conv2d(x, w, b, st, pd, dl, groups)

        def fc_bwd(mask):
            return fc.conv2d_backward(go, x, w, st, pd, dl, groups, output_mask=mask)

    def th_fwd():
        return F.conv2d(x, w, b, st, pd, dl, groups)

    def th_bwd(mask):
        return aten.convolution_backward(go, x, w, [K] if b is not None else None, [st, st], [pd, pd], [dl, dl],
                                         False, [0, 0], groups, list(mask))

    mask_d = (True, False, False)
    mask_w = (False, True, b is not None)
    L_fwd = (C // groups) * R * Sx
    L_bd = (K // groups) * R * Sx
    L_bw = N * case.P * case.Q

    def check_fwd():
        return compare("y", fc_fwd(), th_fwd(), L_fwd, eps)

    def check_bd():
        return compare("grad_input", fc_bwd(mask_d)[0], th_bwd(mask_d)[0], L_bd, eps)

    def check_bw():
        a, r = fc_bwd(mask_w), th_bwd(mask_w)
        parts = [compare("grad_weight", a[1], r[1], L_bw, eps)]
        if b is not None:
            parts.append(compare("grad_bias", a[2], r[2], L_bw, eps))
        return merge_checks(parts)

    bw_name = "backward-weight+bias" if b is not None else "backward-weight"
    return [
        Pass("forward", fwd_op, fc_fwd, th_fwd, "flops", flops, check_fwd),
        Pass("backward-data", bwd_op, lambda: fc_bwd(mask_d), lambda: th_bwd(mask_d), "flops", flops, check_bd),
        Pass(bw_name, bwd_op, lambda: fc_bwd(mask_w), lambda: th_bwd(mask_w), "flops", flops, check_bw),
    ]


def pool_passes(case: S.PoolCase, device: str, eps: float) -> List[Pass]:
    import torch
    import torch.nn.functional as F
    import fastconv as fc

    aten = torch.ops.aten
    g = torch.Generator().manual_seed(0)
    x = torch.randn(case.N, case.C, case.H, case.W, generator=g).to(device)
    go = torch.randn(case.N, case.C, case.P, case.Q, generator=g).to(device)
    k, s, p, cm = case.k, case.stride, case.pad, case.ceil_mode
    window_overlap = math.ceil(k / s) ** 2

    if case.op == "max":
        y_fc, idx_fc = fc.max_pool2d(x, k, s, p, 1, cm, return_indices=True)
        y_th, idx_th = F.max_pool2d(x, k, s, p, 1, cm, return_indices=True)

        def fc_fwd():
            return fc.max_pool2d(x, k, s, p, 1, cm, return_indices=True)

        def th_fwd():
            return F.max_pool2d(x, k, s, p, 1, cm, return_indices=True)

        def fc_bwd():
            return fc.max_pool2d_backward(go, x, idx_fc, k, s, p, 1, cm)

        def th_bwd():
            return aten.max_pool2d_with_indices_backward(go, x, [k, k], [s, s], [p, p], [1, 1], cm, idx_th)

        def check_fwd():
            a, r = fc_fwd(), th_fwd()
            c = compare("y", a[0], r[0], 1, eps)
            same_idx = tuple(a[1].shape) == tuple(r[1].shape) and bool((a[1].long() == r[1].long()).all())
            c["indices_equal_torch"] = same_idx
            return c

        fwd_bytes = _nbytes(x, y_fc, idx_fc)
        bwd_bytes = _nbytes(go, idx_fc, x)  # grad_input has x's size
        fwd_op, bwd_op = "max_pool2d", "max_pool2d_backward"
    else:
        def fc_fwd():
            return fc.avg_pool2d(x, k, s, p, cm, True, None)

        def th_fwd():
            return F.avg_pool2d(x, k, s, p, cm, True, None)

        def fc_bwd():
            return fc.avg_pool2d_backward(go, x, k, s, p, cm, True, None)

        def th_bwd():
            return aten.avg_pool2d_backward(go, x, [k, k], [s, s], [p, p], cm, True, None)

        def check_fwd():
            return compare("y", fc_fwd(), th_fwd(), k * k, eps)

        y_fc = fc_fwd()
        fwd_bytes = _nbytes(x, y_fc)
        bwd_bytes = _nbytes(go, x)
        fwd_op, bwd_op = "avg_pool2d", "avg_pool2d_backward"

    def check_bwd():
        return compare("grad_input", fc_bwd(), th_bwd(), window_overlap, eps)

    return [
        Pass("forward", fwd_op, fc_fwd, th_fwd, "bytes", fwd_bytes, check_fwd),
        Pass("backward", bwd_op, fc_bwd, th_bwd, "bytes", bwd_bytes, check_bwd),
    ]


def act_passes(case: S.ActCase, device: str, eps: float) -> List[Pass]:
    import torch
    import torch.nn.functional as F
    import fastconv as fc

    aten = torch.ops.aten
    g = torch.Generator().manual_seed(0)
    x = torch.randn(case.N, case.C, case.H, case.W, generator=g).to(device)
    go = torch.randn(case.N, case.C, case.H, case.W, generator=g).to(device)
    passes: List[Pass] = []

    def chk(name, fa, fb):
        return lambda: compare(name, fa(), fb(), 1, eps)

    if case.op == "relu":
        fa, fb = (lambda: fc.relu(x)), (lambda: F.relu(x))
        passes.append(Pass("forward", "relu", fa, fb, "bytes", _nbytes(x, x), chk("y", fa, fb)))
        ba, bb = (lambda: fc.relu_backward(go, x)), (lambda: aten.threshold_backward(go, x, 0))
        passes.append(Pass("backward", "relu_backward", ba, bb, "bytes", _nbytes(go, x, x),
                           chk("grad_input", ba, bb)))
    elif case.op == "guided":
        # torch has no guided ReLU: the twin is what captum's GuidedBackprop computes, relu(relu_backward(g, x))
        fa, fb = (lambda: fc.guided_relu(x)), (lambda: F.relu(x))
        passes.append(Pass("forward", "guided_relu", fa, fb, "bytes", _nbytes(x, x), chk("y", fa, fb)))
        ba = lambda: fc.guided_relu_backward(go, x, mode="guided")  # noqa: E731
        bb = lambda: F.relu(aten.threshold_backward(go, x, 0))  # noqa: E731
        passes.append(Pass("backward", "guided_relu_backward", ba, bb, "bytes", _nbytes(go, x, x),
                           chk("grad_input", ba, bb)))
    elif case.op == "deconvnet":
        ba = lambda: fc.guided_relu_backward(go, x, mode="deconvnet")  # noqa: E731
        bb = lambda: F.relu(go)  # noqa: E731
        passes.append(Pass("backward", "guided_relu_backward(deconvnet)", ba, bb, "bytes", _nbytes(go, x),
                           chk("grad_input", ba, bb)))
    else:
        raise ValueError(case.op)
    return passes


def train_passes(case: S.TrainCase, device: str, eps: float) -> List[Pass]:
    import copy
    import torch
    import torch.nn.functional as F

    fc_model, th_model, source = S.build_model_pair(case.model, case.num_classes, **case.model_kwargs())
    fc_model.to(device).train()
    th_model.to(device).train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(case.N, case.C, case.H, case.W, generator=g).to(device)
    y = torch.randint(0, case.num_classes, (case.N,), generator=g).to(device)

    # nominal flops and the longest reduction, from the torch twin's conv / linear layers
    fwd_flops = [0]
    longest = [1]

    def hook(mod, inp, out):
        w = getattr(mod, "weight", None)
        if w is None or not isinstance(out, torch.Tensor):
            return
        fwd_flops[0] += 2 * out.numel() * w[0].numel()
        spatial = out.numel() // max(out.shape[1], 1)  # N*P*Q for conv, N for linear
        longest[0] = max(longest[0], w[0].numel(), spatial)

    hs = [m.register_forward_hook(hook) for m in th_model.modules()
          if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv1d, torch.nn.Linear))]
    with torch.no_grad():
        copy.deepcopy(th_model)(x)  # hooks are copied with the module; the twin's BN stats stay untouched
    for h in hs:
        h.remove()

    def make_step(model, xx=x):
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xx), y)
            loss.backward()
            opt.step()
            return loss
        return step

    def check():
        # fp32, as timed: the loss must agree to fp32 tolerance. The fp32 gradients are only reported
        # (fp32_grad_*): where a pre-activation lies within rounding of 0, the two libraries' ReLU masks can
        # differ, and BatchNorm's backward spreads that one element over its channel, so gradients of deep BN
        # nets legitimately differ by up to ~1e-2 (torch fp32 vs torch fp64 shows the same effect).
        a, r = copy.deepcopy(fc_model), copy.deepcopy(th_model)
        la, lr_ = make_step(a)(), make_step(r)()
        parts = [compare("loss (fp32)", la.detach().reshape(1), lr_.detach().reshape(1), longest[0], eps)]
        pa = dict(a.named_parameters())
        mx = nw = 0.0
        for name, p in r.named_parameters():
            q = pa.get(name)
            if q is not None and q.grad is not None and p.grad is not None:
                d = (q.grad.reshape(p.grad.shape) - p.grad).double()
                ref = p.grad.double()
                mx = max(mx, float(d.abs().max() / ref.abs().max().clamp_min(1e-300)))
                nw = max(nw, float(d.norm() / ref.norm().clamp_min(1e-300)))
        # float64: every gradient and every updated parameter, where ReLU masks cannot flip
        a, r = copy.deepcopy(fc_model).double(), copy.deepcopy(th_model).double()
        x64 = x.double()
        make_step(a, x64)()
        make_step(r, x64)()
        tol_L = longest[0] * 4  # several layers in a chain: a generous multiple of the longest reduction
        pa = dict(a.named_parameters())
        for name, p in r.named_parameters():
            q = pa.get(name)
            if q is None:
                parts.append(dict(what=f"param {name}", passed=False, err=float("inf"), tol=0.0, L=0,
                                  msg="missing in fastconv model"))
                continue
            parts.append(compare(f"grad {name} (fp64)", None if q.grad is None else q.grad.reshape(p.grad.shape),
                                 p.grad, tol_L, EPS_FP64))
            parts.append(compare(f"updated {name} (fp64)", q.detach().reshape(p.shape), p.detach(), tol_L,
                                 EPS_FP64))
        out = merge_checks(parts)
        out["model_source"] = source
        out["fp32_grad_max_rel_err"] = mx
        out["fp32_grad_normwise_rel_err"] = nw
        return out

    fc_step, th_step = make_step(fc_model), make_step(th_model)
    return [Pass("step", f"train step ({source})", fc_step, th_step, "flops", 3 * fwd_flops[0], check, grad=True)]


def build_passes(case, device: str, eps: float) -> List[Pass]:
    if case.kind == "conv":
        return conv_passes(case, device, eps)
    if case.kind == "pool":
        return pool_passes(case, device, eps)
    if case.kind == "act":
        return act_passes(case, device, eps)
    if case.kind == "train":
        return train_passes(case, device, eps)
    raise ValueError(case.kind)


# ----------------------------------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------------------------------

def _rate(metric: str, work: float, ms: Optional[float]) -> Optional[float]:
    if not ms or ms <= 0:
        return None
    return work / (ms * 1e-3) / 1e9  # GFLOP/s or GB/s


def run_case(case, device: str, cfg: TimingConfig, timer, eps: float, peak: dict) -> List[dict]:
    import torch
    rows: List[dict] = []
    base = dict(id=S.case_id(case), net=case.net, layer=case.name, kind=case.kind, cls=case.cls,
                shape=case.shape_str(), params=case.params())
    try:
        passes = build_passes(case, device, eps)
    except Exception as e:  # noqa: BLE001 - a missing op must not stop the run
        return [dict(base, **{"pass": "setup", "op": None, "error": f"{type(e).__name__}: {e}",
                              "traceback": traceback.format_exc(limit=4),
                              "check": dict(passed=False, err=float("inf"), tol=0.0, msg="setup failed")})]
    for p in passes:
        row = dict(base, **{"pass": p.name, "op": p.op, "metric": "GFLOP/s" if p.metric == "flops" else "GB/s",
                            "work": p.work})
        ctx = torch.enable_grad() if p.grad else torch.no_grad()
        with ctx:
            try:
                row["check"] = p.check()
            except Exception as e:  # noqa: BLE001
                row["check"] = dict(passed=False, err=float("inf"), tol=0.0, msg=f"{type(e).__name__}: {e}")
                row["error"] = f"{type(e).__name__}: {e}"
                row["traceback"] = traceback.format_exc(limit=4)
                rows.append(row)
                continue
            try:
                fa, fb, pairs = time_pair(p.fc, p.th, cfg, timer)
            except Exception as e:  # noqa: BLE001
                row["error"] = f"{type(e).__name__}: {e}"
                row["traceback"] = traceback.format_exc(limit=4)
                rows.append(row)
                continue
        row["fastconv"], row["torch"] = fa, fb
        fa["rate"] = _rate(p.metric, p.work, fa["median_ms"])
        fb["rate"] = _rate(p.metric, p.work, fb["median_ms"])
        row["ratio"] = fb["median_ms"] / fa["median_ms"] if fa["median_ms"] > 0 else None
        row["ratio_pairs"] = pairs
        ref = peak.get("fma_gflops") if p.metric == "flops" else peak.get("copy_gbs")
        row["pct_peak"] = 100.0 * fa["rate"] / ref if ref and fa["rate"] else None
        row["pct_peak_torch"] = 100.0 * fb["rate"] / ref if ref and fb["rate"] else None
        rows.append(row)
    return rows


def setup_threads(n: Optional[int]) -> int:
    """Use n threads in both libraries (default: torch's current count). Returns the count used."""
    import torch
    import fastconv as fc
    if n is None or n <= 0:
        n = torch.get_num_threads()
    torch.set_num_threads(n)
    setter = getattr(fc, "set_num_threads", None)
    if setter is not None:
        setter(n)
    return n


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
MALLOC_MODES = ("steady", "default")


def steady_heap() -> str:
    """Keep freed memory in this process's heap, so that a call's fresh tensors reuse touched pages.

    Turns off glibc's mmap allocations and raises its trim threshold to 1 GiB, for the rest of the process. Under
    glibc's defaults a timing loop that frees each result at once faults its next outputs' pages in again on
    (almost) every call, and torch paid most of that; why and how much: benchmarks/README.md, method step 4.
    Returns what was set, or why not.
    """
    if not sys.platform.startswith("linux"):
        return f"default (mallopt: not glibc on {sys.platform})"
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError) as e:
        return f"default (mallopt unavailable: {e})"
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1
    return "steady (glibc mallopt: no mmap allocations, trim threshold 1 GiB)" if ok else "default (mallopt failed)"


def meta_info(device: str, threads: int, tf32: bool, suite: str, quick: bool) -> dict:
    import torch
    from . import peak as pk
    info = dict(
        date=time.strftime("%Y-%m-%dT%H:%M:%S%z"), suite=suite, quick=quick, device=device, threads=threads,
        tf32=tf32, dtype="float32", cpu_model=pk.cpu_model(), cpu_id=pk.cpu_id(), cpus=pk.num_cpus(),
        slug=pk.device_slug(device),
        python=platform.python_version(), torch=torch.__version__, platform=platform.platform(),
        loadavg_start=list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    )
    try:
        import fastconv as fc
        info["fastconv"] = getattr(fc, "__version__", None)
        fci = getattr(fc, "info", None)
        if fci is not None:
            v = fci()
            info["fastconv_info"] = v if isinstance(v, (dict, str)) else str(v)
        gnt = getattr(fc, "get_num_threads", None)
        info["fastconv_threads"] = gnt() if gnt else None
    except Exception as e:  # noqa: BLE001
        info["fastconv_error"] = f"{type(e).__name__}: {e}"
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        info["cudnn_benchmark"] = True
    return info


def run_benchmark(suite: str = "full", device: str = "cpu", quick: bool = False, threads: Optional[int] = None,
                  tf32: bool = False, progress: bool = True, cfg: Optional[TimingConfig] = None,
                  filter: Optional[str] = None, malloc: str = "steady") -> dict:
    """Run a suite and return the result document (meta, peak, results, summary).

    malloc="steady" first calls :func:`steady_heap` (for the rest of this process); "default" leaves glibc's
    allocator as it is, so that every call may page-fault its fresh outputs in.
    """
    import torch
    from . import peak as pk
    from . import report

    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda: torch sees no CUDA device")
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        timer = CudaTimer()
    else:
        if tf32:
            raise ValueError("--tf32 only applies to --device cuda")
        timer = CpuTimer()
    eps = EPS_TF32 if tf32 else EPS_FP32
    cfg = cfg or (TimingConfig.quick() if quick else TimingConfig())
    if malloc not in MALLOC_MODES:
        raise ValueError(f"malloc: expected one of {MALLOC_MODES}, got {malloc!r}")
    heap = steady_heap() if malloc == "steady" else "default"
    threads = setup_threads(threads)
    cases = S.get_suite(suite)
    if filter:
        cases = [c for c in cases if filter.lower() in S.case_id(c).lower()]

    doc = dict(meta=meta_info(device, threads, tf32, suite, quick))
    doc["meta"]["malloc"] = heap
    t_start = time.perf_counter()
    doc["peak"] = pk.measure_peak(threads, device, quick=quick)
    doc["peak"]["wall_s"] = time.perf_counter() - t_start
    doc["meta"]["timing"] = cfg.__dict__.copy()

    it = cases
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(cases, desc="bench", unit="case", file=sys.stderr, dynamic_ncols=True)
            it = bar
        except ImportError:
            bar = None
    results: List[dict] = []
    for case in it:
        if bar is not None:
            bar.set_postfix_str(S.case_id(case)[:40])
        t_case = time.perf_counter()
        rows = run_case(case, device, cfg, timer, eps, doc["peak"])
        for r in rows:
            r["case_wall_s"] = time.perf_counter() - t_case
        results.extend(rows)
        if bar is None and progress:
            print(f"  {S.case_id(case)}: " + ", ".join(
                f"{r['pass']} {r['ratio']:.2f}x" if r.get("ratio") else f"{r['pass']} error" for r in rows),
                file=sys.stderr)
    if bar is not None:
        bar.close()
    doc["results"] = results
    doc["meta"]["elapsed_s"] = time.perf_counter() - t_start
    doc["meta"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    doc["summary"] = report.summarize(doc)
    return doc
