"""``fastconv summary``: the layer calculator (output W x H x D, weights, biases,
FLOPs per layer, with the lecture notes' numbers checked)."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "summary", help="layer-by-layer output sizes, parameters and FLOPs of a network",
        description="Per layer: output W x H x D (by fastconv.conv_output_size), weight and bias counts, FLOPs; "
                    "totals; and the lecture notes' worked numbers checked (right or wrong) in footnotes.")
    p.add_argument("model", nargs="?", default=None,
                   help="model name (see --list), e.g. lenet5, alexnet, alexnet_notes, vgg16, googlenet, resnet50")
    p.add_argument("--input", dest="input_size", metavar="CxHxW", default=None,
                   help="input size, channels first, e.g. 3x227x227 (default: the model's canonical size)")
    p.add_argument("--num-classes", type=int, default=None, help="classifier outputs (default: the model's)")
    p.add_argument("--all", action="store_true", help="also show ReLU, Dropout and Flatten rows")
    p.add_argument("--list", action="store_true", help="list the models and their default input sizes")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from fastconv import models as M
    from fastconv._summary import summary

    if args.list or args.model is None:
        print("models (fastconv summary NAME, fastconv train --model NAME):")
        for name in M.list_models():
            info = M.info(name)
            print(f"  {name:<14} {'x'.join(map(str, info.input_size)):<10} {info.description}")
        return 0 if args.list else 2
    kw = {} if args.num_classes is None else {"num_classes": args.num_classes}
    try:
        s = summary(args.model, args.input_size, verbose=args.all, **kw)
    except ValueError as e:
        print(f"fastconv summary: error: {e}", file=sys.stderr)
        return 2
    print(s.table())
    return 0
