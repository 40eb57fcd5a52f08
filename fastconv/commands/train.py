"""``fastconv train``: train a network of fastconv layers (default LeNet-5 on
the handwritten digits bundled with scikit-learn) and time it against the same
network in torch.nn."""
from __future__ import annotations


def register(subparsers) -> None:
    from fastconv.train import TrainConfig

    d = TrainConfig()
    p = subparsers.add_parser(
        "train", help="train LeNet-5 (or another model) on bundled digits or your .npz, fastconv vs torch.nn",
        description="Trains a model built from fastconv layers and, from the same initial weights on the same "
                    "batches, the same model in torch.nn; prints accuracy and time per epoch of both, writes the "
                    "weights, a metrics JSON and a loss/accuracy PNG. Default: LeNet-5 on scikit-learn's 1,797 "
                    "handwritten digits upsampled to 32x32 (about 98%% test accuracy). "
                    "Distributed: torchrun --nproc_per_node=2 -m fastconv train --distributed")
    p.add_argument("--model", default=d.model, help="model name (fastconv summary --list), default %(default)s")
    p.add_argument("--epochs", type=int, default=d.epochs, help="default %(default)s")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="mini-batch size (the global batch under --distributed), default %(default)s")
    p.add_argument("--lr", type=float, default=d.lr,
                   help="SGD learning rate (momentum %g, weight decay %g; divided by 10 for the last third), "
                        "default %%(default)s" % (d.momentum, d.weight_decay))
    p.add_argument("--device", default=d.device, help="cpu or cuda (default %(default)s)")
    p.add_argument("--data", metavar="PATH", default=None,
                   help=".npz with x (N x C x H x W or N x H x W) and y (N labels), optionally x_test / y_test; "
                        "default: the bundled digits")
    p.add_argument("--out", metavar="DIR", default=d.out, help="where the weights and plot go (default %(default)s)")
    p.add_argument("--distributed", action="store_true",
                   help="DistributedDataParallel under torchrun (gloo on the CPU)")
    p.add_argument("--seed", type=int, default=d.seed, help="initial weights, split and batch order; default %(default)s")
    p.add_argument("--no-compare", dest="compare", action="store_false",
                   help="train only the fastconv model (no torch.nn timing)")
    p.add_argument("--max-steps", type=int, default=None, help=argparse_suppress())
    p.add_argument("--no-progress", dest="progress", action="store_false", help="one line per epoch, no bars")
    p.set_defaults(func=run)


def argparse_suppress():
    import argparse
    return argparse.SUPPRESS


def run(args) -> int:
    import sys

    from fastconv.train import TrainConfig, train

    cfg = TrainConfig(model=args.model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      device=args.device, data=args.data, out=args.out, distributed=args.distributed,
                      seed=args.seed, compare=args.compare, max_steps=args.max_steps, progress=args.progress)
    try:
        train(cfg)
    except ValueError as e:
        print(f"fastconv train: error: {e}", file=sys.stderr)
        return 2
    finally:
        if cfg.distributed:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()
    return 0
