"""``fastconv filter``: the notes' hand-made 3x3 kernels (blur, sharpen, edge
detect) and Sobel applied with fastconv.conv2d to an image; writes a PNG grid."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "filter", help="blur / sharpen / edge-detect / Sobel an image with fastconv.conv2d, write a PNG grid",
        description="Applies the lecture notes' 3x3 kernels (ones/9 blur, sharpen, -8 edge detector) and Sobel "
                    "with fastconv.conv2d to scikit-image's bundled 'camera' photo or your own image, and writes "
                    "the original and the filtered images as one PNG.")
    p.add_argument("--image", metavar="PATH", default=None,
                   help="an image file (PNG, JPEG, ...); default: scikit-image's sample 'camera'")
    p.add_argument("--out", metavar="PNG", default="fastconv-filters.png", help="output PNG (default: %(default)s)")
    p.add_argument("--color", action="store_true", help="filter each colour channel instead of converting to grey")
    p.add_argument("--pad", choices=("reflect", "zeros"), default="reflect",
                   help="border handling: mirror the image (default) or the notes' zero padding")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys
    import time

    from fastconv.filters import KERNELS, filter_grid, load_image

    try:
        img, desc = load_image(args.image, gray=not args.color)
    except ValueError as e:
        print(f"fastconv filter: error: {e}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    bank = filter_grid(img, args.out, desc, pad=args.pad)
    dt = time.perf_counter() - t0
    h, w = img.shape[:2]
    print(f"{desc}: {w}x{h}{'x' + str(img.shape[2]) if img.ndim == 3 else ''}, filtered with fastconv.conv2d "
          f"({args.pad} padding):")
    for name in ("blur", "sharpen", "edge", "sobel_x", "sobel_y"):
        k = KERNELS[name]
        rows = " ".join("[" + " ".join(f"{v:g}" if name != "blur" else "1/9" for v in r) + "]" for r in k)
        v = bank[name]
        print(f"  {name:<8} {rows:<36} output range [{v.min():.2f}, {v.max():.2f}]")
    print(f"wrote {args.out} (original, blur, sharpen, edge, Sobel x, Sobel magnitude) in {dt:.2f} s")
    return 0
