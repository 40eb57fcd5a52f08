"""Shared test helpers: tolerances scaled with the reduction length, NaN
poisoning of the outputs fastconv allocates, random inputs in unusual memory
layouts, and the device list.

Every comparison in the suite is against torch (computed in float64 where the
op rounds) or against an independent formula, never against fastconv itself.
"""
from __future__ import annotations

import contextlib
import math
import zlib

import numpy as np
import pytest
import torch

# --------------------------------------------------------------------------
# devices
# --------------------------------------------------------------------------
HAS_CUDA = torch.cuda.is_available()

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")]),
]

DTYPES = [torch.float32, torch.float64]

# --------------------------------------------------------------------------
# tolerances
# --------------------------------------------------------------------------
EPS = {
    torch.float64: float(torch.finfo(torch.float64).eps),
    torch.float32: float(torch.finfo(torch.float32).eps),
    torch.float16: float(torch.finfo(torch.float16).eps),
    torch.bfloat16: float(torch.finfo(torch.bfloat16).eps),
}
_NP_TO_TORCH = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def torch_dtype(x) -> torch.dtype:
    if isinstance(x, torch.Tensor):
        return x.dtype
    return _NP_TO_TORCH[np.asarray(x).dtype]


def tolerance(dtype: torch.dtype, reduction: int, scale: float = 1.0, c: float = 8.0) -> tuple[float, float]:
    """(atol, rtol) for a result that is a sum of ``reduction`` rounded terms.

    A float sum of L terms of size ~s accumulates an error of about
    eps * sqrt(L) relative to the size of the result (random-walk rounding); we
    allow c times that, relative to ``scale`` (the magnitude of the result,
    normally max |expected|). ``reduction`` is the number of terms summed into
    one output element (C/groups*R*S for conv forward, N*P*Q for grad_weight...).
    """
    eps = EPS[dtype]
    r = c * eps * math.sqrt(max(int(reduction), 1))
    return r * max(float(scale), 1e-30), r


def to_torch(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    return torch.from_numpy(np.ascontiguousarray(x))


def assert_close(actual, expected, reduction: int, *, dtype: torch.dtype | None = None, c: float = 8.0,
                 scale: float | None = None, what: str = "") -> None:
    """Compare fastconv's ``actual`` (torch or numpy) to a reference ``expected``
    (normally torch in float64) with a tolerance scaled by the reduction length.

    Checks shape and dtype (``dtype``: the dtype ``actual`` must have; defaults
    to the dtype of ``actual``, so pass it when it is known), that no NaN
    appears where the reference has none (an unwritten element of a poisoned
    output), then the values.
    """
    a = to_torch(actual)
    e = to_torch(expected)
    assert tuple(a.shape) == tuple(e.shape), f"{what}: shape {tuple(a.shape)} != expected {tuple(e.shape)}"
    if dtype is not None:
        assert a.dtype == dtype, f"{what}: dtype {a.dtype} != expected {dtype}"
    a64 = a.detach().to("cpu", torch.float64)
    e64 = e.detach().to("cpu", torch.float64)
    bad_nan = torch.isnan(a64) & ~torch.isnan(e64)
    assert not bool(bad_nan.any()), (
        f"{what}: {int(bad_nan.sum())} NaN element(s) where the reference has none "
        f"(first at {tuple(bad_nan.nonzero()[0].tolist())}): unwritten output?")
    if scale is None:
        finite = e64[torch.isfinite(e64)]
        scale = float(finite.abs().max()) if finite.numel() else 1.0
        scale = max(scale, 1e-3)
    atol, rtol = tolerance(a.dtype if a.dtype in EPS else torch.float64, reduction, scale, c)
    torch.testing.assert_close(a64, e64, atol=atol, rtol=rtol, equal_nan=True,
                               msg=lambda m: f"{what} (reduction={reduction}, atol={atol:.3g}, rtol={rtol:.3g}):\n{m}")


def assert_equal(actual, expected, what: str = "") -> None:
    """Bitwise-equal values (NaN == NaN, -0.0 == 0.0), same shape."""
    a = to_torch(actual).detach().cpu()
    e = to_torch(expected).detach().cpu()
    assert tuple(a.shape) == tuple(e.shape), f"{what}: shape {tuple(a.shape)} != expected {tuple(e.shape)}"
    if a.dtype != e.dtype:
        e = e.to(a.dtype)
    torch.testing.assert_close(a, e, atol=0, rtol=0, equal_nan=True, msg=lambda m: f"{what}:\n{m}")


# --------------------------------------------------------------------------
# poisoned outputs
# --------------------------------------------------------------------------
def has_poison() -> bool:
    import fastconv._ops as ops
    return hasattr(ops, "poison_outputs")


def poison():
    """Context under which every output fastconv allocates is pre-filled with
    NaN (int64 indices with -7), so an element the kernel forgets to write
    fails the comparison. Falls back to a no-op (and test_poison_context_exists
    fails) while the implementation lacks it."""
    import fastconv._ops as ops
    if hasattr(ops, "poison_outputs"):
        return ops.poison_outputs()
    return contextlib.nullcontext()


# --------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------
def seed_from(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def randn(shape, dtype=torch.float32, device="cpu", gen: torch.Generator | None = None) -> torch.Tensor:
    """Fresh random normal values (never zeros), made on the CPU for
    reproducibility, then moved."""
    t = torch.randn(tuple(shape), dtype=torch.float64, generator=gen)
    return t.to(dtype).to(device)


def randint(shape, lo, hi, dtype=torch.float32, device="cpu", gen: torch.Generator | None = None) -> torch.Tensor:
    t = torch.randint(lo, hi + 1, tuple(shape), generator=gen, dtype=torch.int64)
    return t.to(dtype).to(device)


def distinct(shape, dtype=torch.float64, device="cpu", gen=None, spacing=1.0) -> torch.Tensor:
    """Random values that are pairwise at least ``spacing`` apart (no ties), for
    max pooling gradients and gradcheck."""
    n = int(np.prod(shape)) if len(shape) else 1
    perm = torch.randperm(max(n, 1), generator=gen)[:n].to(torch.float64)
    t = (perm - n / 2) * spacing
    return t.reshape(tuple(shape)).to(dtype).to(device)


LAYOUTS_4D = ["contiguous", "channels_last", "transposed", "sliced"]
LAYOUTS_3D = ["contiguous", "transposed", "sliced"]


def with_layout(t: torch.Tensor, layout: str, gen: torch.Generator | None = None) -> torch.Tensor:
    """Same values as ``t`` in another memory layout:
    contiguous; channels_last (4-D); transposed (last two dims' strides swapped);
    sliced (a strided view into a larger buffer holding other random values)."""
    if layout == "contiguous":
        out = t.contiguous()
    elif layout == "channels_last":
        assert t.dim() == 4
        out = t.contiguous(memory_format=torch.channels_last)
        # torch keeps size-1 dims ambiguous; make sure it really is not NCHW-contiguous when possible
    elif layout == "transposed":
        out = t.transpose(-1, -2).contiguous().transpose(-1, -2)
    elif layout == "sliced":
        big_shape = [s * 2 + 1 for s in t.shape]
        big = torch.randn(big_shape, dtype=torch.float64, generator=gen).to(t.dtype).to(t.device)
        idx = tuple(slice(1, 1 + 2 * s, 2) for s in t.shape)
        big[idx] = t
        out = big[idx]
    else:
        raise ValueError(layout)
    assert out.shape == t.shape
    assert torch.equal(out, t)
    return out


def leaf(t: torch.Tensor) -> torch.Tensor:
    """A leaf tensor requiring grad with the same strides as ``t``."""
    return t.detach().requires_grad_(True)


def grads(outputs, inputs, grad_outputs):
    """torch.autograd.grad, returning None for inputs that are None."""
    live = [i for i in inputs if i is not None]
    gs = torch.autograd.grad(outputs, live, grad_outputs, allow_unused=False)
    it = iter(gs)
    return [next(it) if i is not None else None for i in inputs]


def pair(v):
    if isinstance(v, (tuple, list)):
        assert len(v) == 2
        return tuple(int(x) for x in v)
    return (int(v), int(v))


def out_size(n, k, s=1, p=0, d=1, ceil_mode=False):
    """Independent re-statement of torch's output-size rule (pooling_output_shape)."""
    eff = d * (k - 1) + 1
    num = n + 2 * p - eff + ((s - 1) if ceil_mode else 0)
    o = num // s + 1
    if ceil_mode and (o - 1) * s >= n + p:
        o -= 1
    return o


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()
