"""``fastconv train``: train a network of fastconv layers (default LeNet-5 on
the handwritten digits bundled with scikit-learn) and time it against the same
network in torch.nn. Options left out take fastconv.train.TrainConfig's
defaults (named in the help); torch is imported only when the command runs."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train LeNet-5 (or another model) on bundled digits or your .npz, fastconv vs torch.nn",
        description="Trains a model built from fastconv layers and, from the same initial weights on the same "
                    "batches, the same model in torch.nn; prints accuracy and time per epoch of both, writes the "
                    "weights, a metrics JSON and a loss/accuracy PNG. Default: LeNet-5 on scikit-learn's 1,797 "
                    "handwritten digits upsampled to 32x32 (about 99% test accuracy). "
                    "Distributed: torchrun --nproc_per_node=2 -m fastconv train --distributed")
    p.add_argument("--model", help="model name (fastconv summary --list); default lenet5")
    p.add_argument("--epochs", type=int, help="default 12")
    p.add_argument("--batch-size", type=int, help="mini-batch size (the global batch under --distributed); default 32")
    p.add_argument("--lr", type=float,
                   help="SGD learning rate (momentum 0.9, weight decay 1e-5, divided by 10 for the last third of the "
                        "epochs); default 0.02")
    p.add_argument("--device", help="cpu or cuda; default cpu")
    p.add_argument("--data", metavar="PATH",
                   help=".npz with x (N x C x H x W or N x H x W) and y (N labels), optionally x_test / y_test; "
                        "default: the bundled digits")
    p.add_argument("--out", metavar="DIR", help="where the weights, metrics and plot go; default fastconv-out")
    p.add_argument("--distributed", action="store_true",
                   help="DistributedDataParallel under torchrun (gloo on the CPU)")
    p.add_argument("--seed", type=int, help="initial weights, split, batch order and shifts; default 0")
    p.add_argument("--augment", type=int, metavar="PX",
                   help="random shifts of up to PX pixels; default image size / 16 (2 for 32x32); 0: off")
    p.add_argument("--threads", type=int,
                   help="CPU threads for fastconv and torch; default torch's (one per core)")
    p.add_argument("--no-compare", dest="compare", action="store_false",
                   help="train only the fastconv model (no torch.nn timing)")
    p.add_argument("--max-steps", type=int, help=argparse.SUPPRESS)  # tests, smoke runs
    p.add_argument("--no-progress", dest="progress", action="store_false", help="one line per epoch, no bars")
    p.set_defaults(func=run)


_FIELDS = ("model", "epochs", "batch_size", "lr", "device", "data", "out", "distributed", "seed", "augment",
           "threads", "compare", "max_steps", "progress")


def run(args) -> int:
    import sys

    from fastconv.train import TrainConfig, train

    given = {k: getattr(args, k) for k in _FIELDS if getattr(args, k, None) is not None}
    cfg = TrainConfig(**given)
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
