"""The training loop behind ``fastconv train``.

Default: LeNet-5 (fastconv layers) on scikit-learn's handwritten digits
upsampled to 32x32 (1,437 train / 360 test images), 12 epochs of SGD with
momentum 0.9, learning rate 0.02 divided by 10 for the last third, weight decay
1e-5 (the notes' bag of tricks), mini-batches of 32 (not the notes' 256: the
data set is small), and random shifts of up to 2 pixels as the only
augmentation. It reaches 98.6-99.4% test accuracy (seeds 0-4; without the
shifts 96.4-98.3%, so they are what makes >= 97% dependable).

The same network built from torch.nn layers (``backend="torch"``), loaded with
the same initial weights, is trained alongside on the same batches in the same
order, epoch by epoch in turn, so the per-epoch times of fastconv and torch
are measured under the same conditions.

Distributed: under ``torchrun --nproc_per_node=N -m fastconv train
--distributed`` every process builds the same model (same seed), wraps it in
DistributedDataParallel (gloo on the CPU, nccl on CUDA) and takes its share of
each global mini-batch of ``batch_size`` samples. The loss of a shard is the
sum of its per-sample losses times N / batch_size, so DDP's gradient average
equals the gradient of the mean loss over the combined batch, even for unequal
shards: after each step the weights are those of one process trained on the
combined batch (up to float rounding). BatchNorm statistics are per process
(not synchronised), so that equality is exact for models without BatchNorm.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TrainConfig", "TrainResult", "train", "train_step", "build_models", "evaluate"]

BACKEND_LABEL = {"fastconv": "fastconv", "torch": "torch.nn"}


@dataclass
class TrainConfig:
    model: str = "lenet5"
    epochs: int = 12
    batch_size: int = 32
    lr: float = 0.02
    momentum: float = 0.9          # the notes' bag of tricks
    weight_decay: float = 1e-5     # the notes' bag of tricks
    lr_drop_at: float = 2 / 3      # divide the learning rate by 10 after this fraction of the epochs (0: never)
    augment: int | None = None     # random shifts of up to this many pixels; None: round(min(H, W) / 16)
    device: str = "cpu"
    data: str | None = None        # .npz path; None: the bundled digits
    out: str | None = "fastconv-out"
    distributed: bool = False
    seed: int = 0
    compare: bool = True           # also train the torch.nn twin and time it
    max_steps: int | None = None   # stop after this many optimizer steps (tests, smoke runs)
    progress: bool = True
    plot: bool = True
    threads: int | None = None     # torch.set_num_threads (fastconv's kernels follow torch's count); None: as is


@dataclass
class History:
    loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    test_loss: list = field(default_factory=list)
    test_acc: list = field(default_factory=list)
    epoch_time: list = field(default_factory=list)

    @property
    def median_time(self) -> float:
        return float(np.median(self.epoch_time)) if self.epoch_time else float("nan")

    @property
    def final_acc(self) -> float:
        return self.test_acc[-1] if self.test_acc else float("nan")


@dataclass
class TrainResult:
    config: TrainConfig
    dataset: str
    history: dict                  # backend -> History
    model: nn.Module               # the trained fastconv model (unwrapped from DDP)
    files: dict = field(default_factory=dict)
    rank: int = 0
    world_size: int = 1

    @property
    def accuracy(self) -> float:
        return self.history["fastconv"].final_acc


# --------------------------------------------------------------------------
# pieces
# --------------------------------------------------------------------------
def load_data(cfg: TrainConfig):
    from . import data as D

    if cfg.data:
        return D.load_npz(cfg.data, seed=cfg.seed)
    return D.load_digits(seed=cfg.seed)


def build_models(name: str, dataset, seed: int, compare: bool, device) -> dict[str, nn.Module]:
    """The fastconv model (seeded init) and, with ``compare``, its torch.nn twin
    holding the same initial weights."""
    from . import models as M

    kw = dict(num_classes=dataset.num_classes, in_channels=dataset.in_channels, input_size=dataset.input_size)
    torch.manual_seed(seed)
    out = {"fastconv": M.get(name, **kw).to(device)}
    if compare:
        twin = M.get(name, backend="torch", **kw).to(device)
        M.load_twin_state(twin, out["fastconv"])
        out["torch"] = twin
    return out


def random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels in x and y (edge
    pixels repeated): the one augmentation used, drawn from ``gen`` so that
    fastconv and its torch twin see the very same batches."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    p = max_shift
    padded = F.pad(x, (p, p, p, p), mode="replicate")
    offs = torch.randint(0, 2 * p + 1, (n, 2), generator=gen).tolist()
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offs)])


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def train_step(model: nn.Module, opt: torch.optim.Optimizer, xb: torch.Tensor, yb: torch.Tensor,
               global_batch: int, world_size: int = 1) -> tuple[float, int]:
    """One SGD step on this process's shard (xb, yb) of a global batch of
    ``global_batch`` samples. Returns (sum of the shard's losses, correct)."""
    opt.zero_grad(set_to_none=True)
    logits = model(xb)
    loss_sum = F.cross_entropy(logits, yb, reduction="sum")
    (loss_sum * (world_size / global_batch)).backward()
    opt.step()
    return float(loss_sum.detach()), int((logits.detach().argmax(1) == yb).sum())


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device, batch_size: int = 256,
             rank: int = 0, world_size: int = 1) -> tuple[float, float]:
    """(mean loss, accuracy) on (x, y); with world_size > 1 each process takes
    a contiguous share and the sums are all-reduced."""
    was = model.training
    model.eval()
    n = len(y)
    lo, hi = rank * n // world_size, (rank + 1) * n // world_size
    sums = torch.zeros(3, dtype=torch.float64)
    for i in range(lo, hi, batch_size):
        xb = x[i:min(i + batch_size, hi)].to(device)
        yb = y[i:min(i + batch_size, hi)].to(device)
        logits = model(xb)
        sums[0] += float(F.cross_entropy(logits, yb, reduction="sum"))
        sums[1] += int((logits.argmax(1) == yb).sum())
        sums[2] += len(yb)
    if world_size > 1:
        import torch.distributed as dist
        dist.all_reduce(sums)
    model.train(was)
    return float(sums[0] / sums[2]), float(sums[1] / sums[2])


def _setup_distributed(cfg: TrainConfig):
    """(rank, world_size, device) and the process group, from torchrun's environment."""
    if not cfg.distributed:
        return 0, 1, torch.device(cfg.device)
    import torch.distributed as dist

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise RuntimeError("--distributed runs under torchrun, which sets RANK and WORLD_SIZE: "
                           "torchrun --nproc_per_node=2 -m fastconv train --distributed")
    device = torch.device(cfg.device)
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", 0))
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def _bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=True, disable=not enabled, dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")


def _plot(history: dict, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for backend, h in history.items():
        ep = np.arange(1, len(h.loss) + 1)
        label = BACKEND_LABEL[backend]
        a1.plot(ep, h.loss, "o-", label=f"{label} train")
        a1.plot(ep, h.test_loss, "s--", label=f"{label} test")
        a2.plot(ep, 100 * np.asarray(h.train_acc), "o-", label=f"{label} train")
        a2.plot(ep, 100 * np.asarray(h.test_acc), "s--", label=f"{label} test")
    a1.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss", yscale="log")
    a2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------
def train(cfg: TrainConfig, log=print) -> TrainResult:
    """Train ``cfg.model`` (and its torch.nn twin with ``cfg.compare``); see the module docstring.

    Under ``--distributed`` a process group this call creates is destroyed before it returns. Left alone,
    the DDP wrapper's reference cycles were collected only in the interpreter's final garbage collection;
    gloo's worker thread then freed the last all-reduce's tensors, could not take the GIL, and the process
    aborted ("terminate called without an active exception", 2-4 runs in 15)."""
    if not cfg.distributed:
        return _train(cfg, log)
    import gc

    import torch.distributed as dist

    owned = not dist.is_initialized()
    try:
        return _train(cfg, log)
    finally:
        if owned and dist.is_initialized():
            gc.collect()  # the DDP wrapper, its reducer and their pending work, while Python still runs
            dist.destroy_process_group()


def _train(cfg: TrainConfig, log) -> TrainResult:
    from . import models as M

    if cfg.epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {cfg.epochs}")
    if cfg.batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {cfg.batch_size}")
    if not cfg.lr > 0:
        raise ValueError(f"learning rate must be > 0, got {cfg.lr}")
    name = M.canonical_name(cfg.model)
    if cfg.threads is not None:
        if cfg.threads < 1:
            raise ValueError(f"threads must be >= 1, got {cfg.threads}")
        torch.set_num_threads(cfg.threads)
    rank, world, device = _setup_distributed(cfg)
    if world > 1 and cfg.batch_size < world:
        raise ValueError(f"batch size {cfg.batch_size} is smaller than the {world} processes")
    compare = cfg.compare and world == 1
    main = rank == 0
    say = log if main else (lambda *a, **k: None)

    ds = load_data(cfg)
    x_tr, y_tr = torch.from_numpy(ds.x_train), torch.from_numpy(ds.y_train)
    x_te, y_te = torch.from_numpy(ds.x_test), torch.from_numpy(ds.y_test)
    nets = build_models(name, ds, cfg.seed, compare, device)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        nets["fastconv"] = DDP(nets["fastconv"], device_ids=[device.index] if device.type == "cuda" else None)
    opts = {k: make_optimizer(m, cfg) for k, m in nets.items()}
    drop_epoch = math.ceil(cfg.epochs * cfg.lr_drop_at) if 0 < cfg.lr_drop_at < 1 and cfg.epochs >= 3 else None
    hist = {k: History() for k in nets}

    n, bs = len(y_tr), cfg.batch_size
    steps_per_epoch = math.ceil(n / bs)
    if world > 1 and n % bs and n % bs < world:
        steps_per_epoch -= 1                      # a last global batch too small to shard is dropped
    threads = torch.get_num_threads()
    shift = cfg.augment if cfg.augment is not None else round(min(ds.input_size) / 16)
    say(f"fastconv train: {name} on {ds.describe()}")
    say(f"  {cfg.epochs} epochs x {steps_per_epoch} batches of {bs}, SGD lr {cfg.lr:g} (/10 from epoch "
        f"{drop_epoch + 1 if drop_epoch else '-'}), momentum {cfg.momentum:g}, weight decay {cfg.weight_decay:g}; "
        f"random shifts <= {shift} px; device {device}, {threads} thread(s)" + (f", {world} processes (DDP, "
                                                     f"{'nccl' if device.type == 'cuda' else 'gloo'})" if world > 1
                                                     else ""))
    if compare:
        say("  fastconv and the same network in torch.nn, from the same initial weights, take turns epoch by epoch")
    elif cfg.compare and world > 1:
        say("  (under --distributed the torch.nn comparison is skipped)")
    try:
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
    except (OSError, AttributeError):
        load, cores = 0.0, 1
    if device.type == "cpu" and threads > 1 and load > 1.5 * cores:
        say(f"  note: this machine is busy (load {load:.1f} on {cores} cores); OpenMP threads that wait on each other "
            f"slow down badly then, and the timings say more with --threads 1")

    steps = 0
    done = False
    for epoch in range(cfg.epochs):
        if drop_epoch is not None and epoch == drop_epoch:
            for o in opts.values():
                for g in o.param_groups:
                    g["lr"] = cfg.lr / 10
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
        for backend, model in nets.items():
            aug_gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch + 1)  # same shifts for each backend
            opt = opts[backend]
            model.train()
            label = BACKEND_LABEL[backend]
            bar = _bar(steps_per_epoch, f"epoch {epoch + 1:>2}/{cfg.epochs} {label:<8}", cfg.progress and main)
            loss_sum = correct = seen = 0.0
            local_steps = 0
            t0 = time.perf_counter()
            for b in range(steps_per_epoch):
                idx = perm[b * bs:(b + 1) * bs]
                gb = len(idx)
                xg = random_shift(x_tr[idx], shift, aug_gen)       # the global batch, then this process's shard
                lo, hi = rank * gb // world, (rank + 1) * gb // world
                xb, yb = xg[lo:hi].to(device), y_tr[idx[lo:hi]].to(device)
                ls, c = train_step(model, opt, xb, yb, gb, world)
                loss_sum, correct, seen = loss_sum + ls, correct + c, seen + (hi - lo)
                local_steps += 1
                if bar is not None and (b % 5 == 4 or b == steps_per_epoch - 1):
                    bar.update(b + 1 - bar.n)
                    bar.set_postfix_str(f"loss={loss_sum / seen:.3f} acc={100 * correct / seen:.1f}%",
                                        refresh=False)
                if cfg.max_steps is not None and (steps + local_steps) >= cfg.max_steps:
                    break
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - t0
            if world > 1:
                import torch.distributed as dist
                t = torch.tensor([loss_sum, correct, seen], dtype=torch.float64)
                dist.all_reduce(t)
                loss_sum, correct, seen = t.tolist()
            te_loss, te_acc = evaluate(model, x_te, y_te, device, rank=rank, world_size=world)
            h = hist[backend]
            h.loss.append(loss_sum / seen)
            h.train_acc.append(correct / seen)
            h.test_loss.append(te_loss)
            h.test_acc.append(te_acc)
            h.epoch_time.append(elapsed)
            bar.set_postfix_str(f"loss={loss_sum / seen:.3f} acc={100 * correct / seen:.1f}% "
                                f"test={100 * te_acc:.1f}% {elapsed:.2f}s/epoch", refresh=False)
            bar.close()
            if not cfg.progress:
                say(f"epoch {epoch + 1:>2}/{cfg.epochs} {label:<8} loss {loss_sum / seen:.4f}  train "
                    f"{100 * correct / seen:.1f}%  test {100 * te_acc:.2f}%  {elapsed:.2f} s")
        steps += local_steps
        if cfg.max_steps is not None and steps >= cfg.max_steps:
            done = True
        if done:
            break

    fc_model = nets["fastconv"].module if world > 1 else nets["fastconv"]
    result = TrainResult(cfg, ds.describe(), hist, fc_model, rank=rank, world_size=world)
    if main:
        _report(result, say)
        if cfg.out:
            _save(result, name, say)
    return result


def _report(r: TrainResult, say) -> None:
    hs = r.history
    cols = list(hs)
    say("")
    head = f"  {'after ' + str(len(hs['fastconv'].loss)) + ' epochs':<28}" + "".join(
        f"{BACKEND_LABEL[c]:>12}" for c in cols)
    say(head)
    say(f"  {'test accuracy':<28}" + "".join(f"{100 * hs[c].final_acc:>11.2f}%" for c in cols))
    say(f"  {'time per epoch (median)':<28}" + "".join(f"{hs[c].median_time:>10.3f} s" for c in cols))
    if len(hs["fastconv"].epoch_time) > 1:
        say(f"  {'first epoch (with warm-up)':<28}" + "".join(f"{hs[c].epoch_time[0]:>10.3f} s" for c in cols))
    if "torch" in hs:
        ratio = hs["torch"].median_time / hs["fastconv"].median_time
        say(f"  fastconv is {ratio:.2f}x the speed of torch.nn per epoch" if ratio >= 1 else
            f"  fastconv takes {1 / ratio:.2f}x the time of torch.nn per epoch")


def _save(r: TrainResult, name: str, say) -> None:
    os.makedirs(r.config.out, exist_ok=True)
    weights = os.path.join(r.config.out, f"{name}.pt")
    torch.save(r.model.state_dict(), weights)
    r.files["weights"] = weights
    metrics = os.path.join(r.config.out, f"{name}_metrics.json")
    with open(metrics, "w") as f:
        json.dump({"config": asdict(r.config), "dataset": r.dataset, "world_size": r.world_size,
                   "history": {k: asdict(v) for k, v in r.history.items()}}, f, indent=1)
    r.files["metrics"] = metrics
    if r.config.plot:
        png = os.path.join(r.config.out, f"{name}_curves.png")
        _plot(r.history, png, f"{name} on {r.dataset}")
        r.files["plot"] = png
    say(f"  wrote {', '.join(r.files.values())}")
