"""``fastconv bench``: correctness-checked, interleaved benchmark of fastconv against torch on real CNN layers."""
from __future__ import annotations

import argparse
import sys

HELP = "benchmark fastconv against torch on the layers of LeNet-5, AlexNet, ZFNet, VGG-16, GoogLeNet, ResNet"


def register(subparsers) -> argparse.ArgumentParser:
    from fastconv.bench.runner import MALLOC_MODES
    from fastconv.bench.suites import SUITE_HELP
    suites = "; ".join(f"{k}: {v}" for k, v in SUITE_HELP.items())
    p = subparsers.add_parser(
        "bench", help=HELP, description=HELP + ". Every case is checked against torch first, then both are timed "
        "in the same run, interleaved, after warm-up; the table shows medians. Exit status 1 if any correctness "
        "check failed.")
    p.add_argument("--suite", default=None, metavar="NAME",
                   help=f"suite, or comma-separated suites (default: full, or quick with --quick). {suites}")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where both libraries run (default: cpu)")
    p.add_argument("--quick", action="store_true",
                   help="tiny subset, small batches, few repeats (well under a minute; used by CI)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="threads for both fastconv and torch (default: torch's current count)")
    p.add_argument("--tf32", action="store_true", help="CUDA only: allow TF32 in torch (cuDNN and matmul)")
    p.add_argument("--filter", default=None, metavar="TEXT", help="only cases whose net/layer contains TEXT")
    p.add_argument("--json", default=None, metavar="PATH", help="write the full result document as JSON")
    p.add_argument("--markdown", default=None, metavar="PATH", help="write the table as markdown")
    p.add_argument("--plot", default=None, metavar="PATH", help="draw the ratio per layer as a PNG (matplotlib)")
    p.add_argument("--malloc", choices=MALLOC_MODES, default="steady",
                   help="steady (default): no mmap allocations and freed memory kept in the heap (glibc mallopt), "
                   "so that repeated calls reuse touched pages as a training loop does; default: glibc as it is, "
                   "every call may page-fault its fresh outputs in")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--list", action="store_true", help="list the suites and their cases, then exit")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from fastconv import bench

    suite = args.suite or ("quick" if args.quick else "full")
    if args.list:
        for name in bench.list_suites():
            print(f"{name}: {bench.SUITE_HELP.get(name, '')}")
            if name != "full":
                for c in bench.get_suite(name):
                    print(f"    {bench.case_id(c):36s} {c.shape_str()}")
        return 0
    try:
        bench.get_suite(suite)
    except ValueError as e:
        print(f"fastconv bench: {e}", file=sys.stderr)
        return 2
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            print("fastconv bench: --device cuda but torch sees no CUDA device", file=sys.stderr)
            return 2
    if args.tf32 and args.device != "cuda":
        print("fastconv bench: --tf32 only applies to --device cuda", file=sys.stderr)
        return 2

    doc = bench.run_benchmark(suite=suite, device=args.device, quick=args.quick, threads=args.threads,
                              tf32=args.tf32, progress=not args.no_progress, filter=args.filter,
                              malloc=args.malloc)
    print(bench.format_table(doc))
    if args.json:
        bench.write_json(doc, args.json)
        print(f"wrote {args.json}")
    if args.markdown:
        bench.write_markdown(doc, args.markdown)
        print(f"wrote {args.markdown}")
    if args.plot:
        try:
            bench.plot(doc, args.plot)
            print(f"wrote {args.plot}")
        except ImportError as e:
            print(f"fastconv bench: --plot needs matplotlib ({e})", file=sys.stderr)
            return 2
    return 0 if doc["summary"]["all_passed"] else 1
