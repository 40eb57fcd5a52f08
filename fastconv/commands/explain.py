"""fastconv explain: the CNN visualisation methods of fastconv.explain, one PNG each, or a gallery."""
from __future__ import annotations

# the same as fastconv.explain.gallery.METHODS, spelled out so that registering the command imports no torch
METHODS = ("filters", "top-patches", "occlusion", "saliency", "guided-backprop", "class-model", "inversion",
           "deep-dream", "style-transfer", "adversarial")


def register(sub):
    p = sub.add_parser(
        "explain", help="visualise what a CNN has learned (saliency, guided backprop, occlusion, deep dream, ...)",
        description="Draw one visualisation method to a PNG, or with --all every method plus an index.html "
                    "gallery. Digits methods use LeNet-5 trained on the fly (seeded, a few seconds) or --weights; "
                    "image methods use scikit-image's bundled photos and a small CNN, all on CPU.")
    p.add_argument("method", nargs="?", choices=METHODS, help="the method to draw")
    p.add_argument("--all", action="store_true", help="draw every method into --out (a folder) with index.html")
    p.add_argument("--out", help="output PNG (default explain-METHOD.png) or, with --all, folder "
                                 "(default explain-gallery)")
    p.add_argument("--weights", help="LeNet-5 state dict for the digits methods (e.g. from `fastconv train`)")
    p.add_argument("--seed", type=int, default=0, help="seed of the on-the-fly models (default 0)")
    p.add_argument("--size", type=int, default=96, help="side of the natural images in pixels (default 96)")
    p.add_argument("--quick", action="store_true", help="a fifth of the optimisation steps (smoke runs)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch and fastconv (default 1: these models and batches are too small "
                        "for more to pay off)")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    if args.all == bool(args.method):
        print("fastconv explain: give one METHOD or --all", file=sys.stderr)
        return 2
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    try:
        from fastconv.explain import gallery
    except ImportError as e:   # matplotlib / scikit-learn / scikit-image are the 'apps' extra
        print(f"fastconv explain needs the apps extra (pip install 'fastconv[apps]'): {e}", file=sys.stderr)
        return 1
    ctx = gallery.Context(seed=args.seed, weights=args.weights, size=args.size, quick=args.quick)
    if args.all:
        out = args.out or "explain-gallery"
        gallery.write_all(out, ctx)
        print(f"wrote {len(METHODS)} pictures and {out}/index.html")
        return 0
    out = args.out or f"explain-{args.method}.png"
    print(f"{args.method}: {gallery.render(args.method, out, ctx)}")
    print(f"wrote {out}")
    return 0
