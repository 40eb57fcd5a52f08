"""fastconv: hand-written CPU (OpenMP, SIMD) and CUDA kernels for CNN layers.

    import fastconv
    y = fastconv.conv2d(x, w, b, stride=2, padding=1)   # torch tensors (autograd) or numpy arrays
    model = torch.nn.Sequential(fastconv.nn.Conv2d(3, 16, 3, padding=1), fastconv.nn.ReLU(), ...)
    fastconv.convert(torch_model)                        # swap torch layers for fastconv's, weights kept

``fastconv.nn``, ``fastconv.models``, ``convert`` and ``summary`` need torch; the
functional API works on numpy arrays without it.
"""
from __future__ import annotations

import importlib

from . import _ops
from ._ops import get_num_threads, set_num_threads
from ._shape import conv_output_size
from .functional import (adaptive_avg_pool2d, avg_pool2d, avg_pool2d_backward, conv1d, conv1d_backward, conv1x1,
                         conv1x1_backward, conv2d, conv2d_backward, global_avg_pool2d, guided_relu,
                         guided_relu_backward, max_pool2d, max_pool2d_backward, relu, relu_backward)

__version__ = _ops._C.__version__

__all__ = [
    "conv2d", "conv1d", "conv1x1", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "global_avg_pool2d", "relu",
    "guided_relu", "conv2d_backward", "conv1d_backward", "conv1x1_backward", "max_pool2d_backward",
    "avg_pool2d_backward", "relu_backward", "guided_relu_backward", "conv_output_size", "get_num_threads",
    "set_num_threads", "info", "convert", "summary", "nn", "models", "__version__",
]

# Submodules that need torch load on first use, so `import fastconv` works without it.
_LAZY_MODULES = {"nn", "models", "explain", "bench"}
_LAZY_ATTRS = {"convert": ("nn", "convert"), "summary": ("_summary", "summary")}


def __getattr__(name):
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY_ATTRS:
        module, attr = _LAZY_ATTRS[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'fastconv' has no attribute {name!r}")


def info() -> dict:
    """Version, the CPU instruction set in use, OpenMP threads and runtimes, CUDA build and devices."""
    C = _ops._C
    out = {
        "version": __version__,
        "isa": C.isa(),
        "compiled_isas": C.compiled_isas(),
        "openmp_version": C.openmp_version(),
        "num_threads": get_num_threads(),
        "threads_follow": "torch.get_num_threads()" if _ops.torch is not None else "fastconv.set_num_threads()",
        "openmp_runtimes": _ops.openmp_runtimes(),
        "cuda_compiled": bool(C.cuda_compiled),
        "cuda_devices": C.cuda_device_count() if C.cuda_compiled else 0,
        "cuda_runtime": C.cuda_runtime_info(),
        "torch": _ops.torch.__version__ if _ops.torch is not None else None,
    }
    if out["cuda_compiled"] and out["cuda_devices"] == 0:
        out["cuda_runtime"] += " (compiled in, but no CUDA device is visible: CUDA tensors are unavailable)"
    return out
