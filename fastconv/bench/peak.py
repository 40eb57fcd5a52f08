"""This machine's measured peaks, taken once per benchmark run with the thread count the benchmark uses.

- FMA peak (GFLOP/s, fp32): ``fastconv._ops.fma_peak_gflops(num_threads, f64=False, seconds=0.5)``, a register-only
  FMA loop on every thread. When that function is missing, the fallback is the best of a few large torch matmuls
  (2*n^3 flops), which understates the true peak by the GEMM's own efficiency; the result says which was used.
- Copy bandwidth (GB/s): a large tensor copy (far beyond the last-level cache), counting bytes read + bytes
  written (2 * nbytes per copy), best of several. Memory-bound ops count their bytes the same way, so their
  "% of peak" is directly comparable. (Write-allocate traffic is not counted, neither here nor for the ops.)
"""
from __future__ import annotations

import glob
import os
import pathlib
import platform
import re
import time
from typing import Optional


def _cpuinfo() -> dict:
    """The first processor's fields in /proc/cpuinfo (empty where there is none)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine() or "cpu"


def cpu_id() -> str:
    """Family, model and cache sizes, e.g. ``family 6 model 207 stepping 2; L1d 48K, L2 2048K, L3 307200K``: virtual
    machines report one model name ("Intel(R) Xeon(R) Processor") for several CPU generations. Empty if unknown."""
    info = _cpuinfo()
    parts = [f"{k.replace('cpu ', '')} {info[k]}" for k in ("cpu family", "model", "stepping") if k in info]
    caches = []
    for d in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
        try:
            level, kind, size = (pathlib.Path(d, name).read_text().strip() for name in ("level", "type", "size"))
        except OSError:
            continue
        if kind != "Instruction":
            caches.append(f"L{level}{'d' if kind == 'Data' else ''} {size}")
    return "; ".join(x for x in (" ".join(parts), ", ".join(caches)) if x)


def num_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def cpu_slug() -> str:
    """File-name form of the CPU model plus core count, e.g. ``cpu-amd-epyc-2c``; with ``-avx2`` or ``-generic``
    appended when fastconv runs its kernels for that instruction set rather than AVX-512 (virtual machines report
    one model name for CPU generations with and without AVX-512, e.g. "AMD EPYC")."""
    name = cpu_model().lower()
    name = re.sub(r"\(r\)|\(tm\)|\bcpu\b|\bprocessor\b|@.*$|\d+-core", " ", name)
    name = re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "cpu"
    isa = _fastconv_isa()
    return f"cpu-{name}-{num_cpus()}c" + (f"-{isa}" if isa and isa != "avx512" else "")


def _fastconv_isa() -> Optional[str]:
    try:
        from fastconv import _ops  # type: ignore
        return str(_ops._C.isa())
    except Exception:  # noqa: BLE001
        return None


def device_slug(device: str = "cpu") -> str:
    if device == "cuda":
        import torch
        name = torch.cuda.get_device_name()
        return "cuda-" + (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu")
    return cpu_slug()


def _fma_peak_fastconv(num_threads: int, tries: int) -> Optional[float]:
    """Best of ``tries`` runs of fastconv's FMA loop (best, because other load on the machine only lowers it)."""
    try:
        from fastconv import _ops  # type: ignore
    except Exception:  # noqa: BLE001
        return None
    fn = getattr(_ops, "fma_peak_gflops", None)
    if fn is None:
        return None
    return max(float(fn(num_threads, f64=False, seconds=0.5)) for _ in range(max(tries, 1)))


def _best_time(fn, reps: int, sync=lambda: None) -> float:
    fn()
    sync()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def _matmul_peak(device: str, n: int, reps: int) -> float:
    import torch
    dev = torch.device(device)
    a = torch.randn(n, n, device=dev)
    b = torch.randn(n, n, device=dev)
    c = torch.empty(n, n, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    t = _best_time(lambda: torch.mm(a, b, out=c), reps, sync)
    return 2.0 * n ** 3 / t / 1e9


def _copy_bandwidth(device: str, nbytes: int, reps: int) -> float:
    import torch
    dev = torch.device(device)
    src = torch.ones(nbytes // 4, device=dev)
    dst = torch.empty_like(src)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    t = _best_time(lambda: dst.copy_(src), reps, sync)
    return 2.0 * src.numel() * 4 / t / 1e9


def measure_peak(num_threads: int, device: str = "cpu", quick: bool = False) -> dict:
    """Measure the FMA peak and copy bandwidth once. Returns a JSON-able dict with a human note."""
    import torch
    out: dict = {"device": device, "num_threads": num_threads}
    notes = []
    fma = None
    if device == "cpu":
        try:
            fma = _fma_peak_fastconv(num_threads, 1 if quick else 3)
        except Exception as e:  # noqa: BLE001
            notes.append(f"fastconv._ops.fma_peak_gflops failed ({type(e).__name__}: {e})")
            fma = None
    if fma is not None:
        out["fma_gflops"] = fma
        out["fma_source"] = "fastconv._ops.fma_peak_gflops (register FMA loop, fp32, best of runs)"
        # a reference point, not the peak: how fast torch's own GEMM runs here
        n = 1024 if quick else 2048
        out["torch_matmul_gflops"] = _matmul_peak(device, n, 2 if quick else 3)
        if out["torch_matmul_gflops"] > fma:
            notes.append(f"torch.mm ran at {out['torch_matmul_gflops']:.0f} GFLOP/s, above the measured FMA peak "
                         f"{fma:.0f}: the machine was probably busy while the FMA loop ran, so % of peak reads high")
    else:
        if device == "cpu":
            notes.append("fastconv._ops.fma_peak_gflops is missing: FMA peak is the best large torch matmul "
                         "instead, which understates the hardware peak by the GEMM's efficiency")
        n = 1024 if quick else (2048 if device == "cpu" else 8192)
        if device == "cuda":
            old = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = False
        try:
            out["fma_gflops"] = _matmul_peak(device, n, 2 if quick else 5)
        finally:
            if device == "cuda":
                torch.backends.cuda.matmul.allow_tf32 = old
        out["fma_source"] = f"torch.mm {n}x{n} fp32 fallback"
    nbytes = (32 << 20) if quick else ((128 << 20) if device == "cpu" else (1 << 30))
    out["copy_gbs"] = _copy_bandwidth(device, nbytes, 3 if quick else 7)
    out["copy_source"] = f"tensor copy of {nbytes >> 20} MiB, (read + write) bytes / time, best of runs"
    out["notes"] = notes
    return out
