"""Benchmark suites: every conv / pool / activation layer of the networks in the course notes with its real shape,
plus whole training steps of LeNet-5 and a small ResNet.

Shapes follow ../shared/reference/cnn-notes.txt where the notes give them (LeNet-5 on 32x32, the notes' unpadded
AlexNet on 227x227 and the ZFNet variant derived from it), and the original papers otherwise (VGG-16, GoogLeNet
inception 3a/4a, ResNet-18/-50 on 224x224). Repeated identical shapes (VGG conv3_2 == conv3_3, ...) appear once.

Batch sizes are the ones a user trains with on a machine like this one (LeNet 64, AlexNet/ZFNet 32, VGG 8,
inception 32, ResNet 32, train steps 64 / 32), chosen with the repeat counts of runner.TimingConfig so the
``full`` suite takes roughly 20-30 minutes on a quiet 2-core AVX-512 box (see benchmarks/README.md). ``quick`` is a tiny subset with small batches for CI.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Tuple



def _out(size: int, k: int, stride: int = 1, pad: int = 0, dilation: int = 1, ceil_mode: bool = False) -> int:
    """floor((in + 2P - D(F-1) - 1)/S) + 1 (ceil with torch's rule that the last window starts inside the input or
    left padding): the same definition as fastconv.conv_output_size, repeated so the suites import without the
    compiled extension."""
    span = size + 2 * pad - dilation * (k - 1) - 1
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + pad:
            out -= 1
    else:
        out = span // stride + 1
    return out


# --------------------------------------------------------------------------------------------------------------------
# case descriptions
# --------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConvCase:
    """One conv layer. ``cls`` groups layers the way issue 3 states targets: 'large' (AlexNet/ZFNet conv2-5, VGG,
    ResNet 3x3), 'small' (LeNet, few-input-channel first layers, 1x1 reductions), 'other'."""
    net: str
    name: str
    N: int
    C: int
    H: int
    W: int
    K: int
    R: int
    S: int
    stride: int = 1
    pad: int = 0
    dilation: int = 1
    groups: int = 1
    bias: bool = True
    cls: str = "other"
    kind: str = field(default="conv", init=False)

    @property
    def P(self) -> int:
        return _out(self.H, self.R, self.stride, self.pad, self.dilation)

    @property
    def Q(self) -> int:
        return _out(self.W, self.S, self.stride, self.pad, self.dilation)

    @property
    def is_1x1(self) -> bool:
        return self.R == 1 and self.S == 1 and self.stride == 1 and self.pad == 0 and self.groups == 1

    def flops(self) -> int:
        """2*N*K*P*Q*C*R*S/groups: the multiply-adds of one pass (forward, backward-data or backward-weight)."""
        return 2 * self.N * self.K * self.P * self.Q * (self.C // self.groups) * self.R * self.S

    def shape_str(self) -> str:
        s = f"{self.N}x{self.C}x{self.H}x{self.W} -> {self.K}x{self.P}x{self.Q} k{self.R}x{self.S}"
        if self.stride != 1:
            s += f" s{self.stride}"
        if self.pad:
            s += f" p{self.pad}"
        if self.dilation != 1:
            s += f" d{self.dilation}"
        if self.groups != 1:
            s += f" g{self.groups}"
        return s

    def params(self) -> dict:
        return dict(N=self.N, C=self.C, H=self.H, W=self.W, K=self.K, R=self.R, S=self.S, P=self.P, Q=self.Q,
                    stride=self.stride, padding=self.pad, dilation=self.dilation, groups=self.groups, bias=self.bias)


@dataclass(frozen=True)
class PoolCase:
    net: str
    name: str
    op: str  # "max" | "avg"
    N: int
    C: int
    H: int
    W: int
    k: int
    stride: int
    pad: int = 0
    ceil_mode: bool = False
    cls: str = "pool"
    kind: str = field(default="pool", init=False)

    @property
    def P(self) -> int:
        return _out(self.H, self.k, self.stride, self.pad, 1, self.ceil_mode)

    @property
    def Q(self) -> int:
        return _out(self.W, self.k, self.stride, self.pad, 1, self.ceil_mode)

    def shape_str(self) -> str:
        s = f"{self.N}x{self.C}x{self.H}x{self.W} -> {self.P}x{self.Q} {self.op}{self.k}x{self.k} s{self.stride}"
        if self.pad:
            s += f" p{self.pad}"
        if self.ceil_mode:
            s += " ceil"
        return s

    def params(self) -> dict:
        return dict(N=self.N, C=self.C, H=self.H, W=self.W, P=self.P, Q=self.Q, kernel_size=self.k,
                    stride=self.stride, padding=self.pad, ceil_mode=self.ceil_mode, op=self.op)


@dataclass(frozen=True)
class ActCase:
    net: str
    name: str
    op: str  # "relu" | "guided" | "deconvnet"
    N: int
    C: int
    H: int
    W: int
    cls: str = "act"
    kind: str = field(default="act", init=False)

    def shape_str(self) -> str:
        return f"{self.N}x{self.C}x{self.H}x{self.W} {self.op}"

    def params(self) -> dict:
        return dict(N=self.N, C=self.C, H=self.H, W=self.W, op=self.op)


@dataclass(frozen=True)
class TrainCase:
    """One SGD training step (zero_grad, forward, cross-entropy, backward, step) of a whole model."""
    net: str
    name: str
    model: str  # "lenet5" | "resnet_small"
    N: int
    C: int
    H: int
    W: int
    num_classes: int = 10
    depth: int = 0  # resnet_small only: 6n + 2 (0: the model's default, ResNet-20)
    cls: str = "train"
    kind: str = field(default="train", init=False)

    def shape_str(self) -> str:
        d = f"-{self.depth}" if self.depth else ""
        return f"{self.model}{d} batch {self.N}x{self.C}x{self.H}x{self.W}"

    def model_kwargs(self) -> dict:
        return {"depth": self.depth} if self.depth else {}

    def params(self) -> dict:
        return dict(model=self.model, N=self.N, C=self.C, H=self.H, W=self.W, num_classes=self.num_classes,
                    **self.model_kwargs())


Case = object  # ConvCase | PoolCase | ActCase | TrainCase


# --------------------------------------------------------------------------------------------------------------------
# the networks
# --------------------------------------------------------------------------------------------------------------------

def lenet5(N: int = 64) -> List[Case]:
    # notes: 32x32x1 -> conv 6@5x5 -> 28 -> pool 2/2 -> 14 -> conv 16@5x5 -> 10 -> pool 2/2 -> 5 -> 400 -> FC.
    # LeNet's "subsampling" is an average pool; the modern variant uses max: both are measured.
    return [
        ConvCase("lenet5", "conv1", N, 1, 32, 32, 6, 5, 5, cls="small"),
        ActCase("lenet5", "relu1", "relu", N, 6, 28, 28),
        PoolCase("lenet5", "pool1 avg", "avg", N, 6, 28, 28, 2, 2),
        PoolCase("lenet5", "pool1 max", "max", N, 6, 28, 28, 2, 2),
        ConvCase("lenet5", "conv2", N, 6, 14, 14, 16, 5, 5, cls="small"),
        PoolCase("lenet5", "pool2 max", "max", N, 16, 10, 10, 2, 2),
    ]


def alexnet(N: int = 32) -> List[Case]:
    # the notes' single-tower, unpadded AlexNet: 227 -> 55 -> 27 -> 23 -> 11 -> 9 -> 7 -> 5 -> 2
    return [
        ConvCase("alexnet", "conv1", N, 3, 227, 227, 96, 11, 11, stride=4, cls="small"),
        ActCase("alexnet", "relu1", "relu", N, 96, 55, 55),
        PoolCase("alexnet", "pool1", "max", N, 96, 55, 55, 3, 2),
        ConvCase("alexnet", "conv2", N, 96, 27, 27, 256, 5, 5, cls="large"),
        PoolCase("alexnet", "pool2", "max", N, 256, 23, 23, 3, 2),
        ConvCase("alexnet", "conv3", N, 256, 11, 11, 384, 3, 3, cls="large"),
        ConvCase("alexnet", "conv4", N, 384, 9, 9, 384, 3, 3, cls="large"),
        ConvCase("alexnet", "conv5", N, 384, 7, 7, 256, 3, 3, cls="large"),
        PoolCase("alexnet", "pool5", "max", N, 256, 5, 5, 3, 2),
    ]


def zfnet(N: int = 32) -> List[Case]:
    # notes: AlexNet with conv1 11x11 -> 7x7 and conv3/4/5 widened to 512/1024/512.
    return [
        ConvCase("zfnet", "conv1", N, 3, 227, 227, 96, 7, 7, stride=4, cls="small"),
        PoolCase("zfnet", "pool1", "max", N, 96, 56, 56, 3, 2),
        ConvCase("zfnet", "conv2", N, 96, 27, 27, 256, 5, 5, cls="large"),
        ConvCase("zfnet", "conv3", N, 256, 11, 11, 512, 3, 3, cls="large"),
        ConvCase("zfnet", "conv4", N, 512, 9, 9, 1024, 3, 3, cls="large"),
        ConvCase("zfnet", "conv5", N, 1024, 7, 7, 512, 3, 3, cls="large"),
    ]


def vgg16(N: int = 8) -> List[Case]:
    # 224x224, 3x3 pad 1 throughout, 2x2/2 max pools; one entry per distinct shape.
    return [
        ConvCase("vgg16", "conv1_1", N, 3, 224, 224, 64, 3, 3, pad=1, cls="small"),
        ConvCase("vgg16", "conv1_2", N, 64, 224, 224, 64, 3, 3, pad=1, cls="large"),
        ActCase("vgg16", "relu1_2", "relu", N, 64, 224, 224),
        ActCase("vgg16", "relu1_2 guided", "guided", N, 64, 224, 224),
        PoolCase("vgg16", "pool1", "max", N, 64, 224, 224, 2, 2),
        ConvCase("vgg16", "conv2_1", N, 64, 112, 112, 128, 3, 3, pad=1, cls="large"),
        ConvCase("vgg16", "conv2_2", N, 128, 112, 112, 128, 3, 3, pad=1, cls="large"),
        PoolCase("vgg16", "pool2", "max", N, 128, 112, 112, 2, 2),
        ConvCase("vgg16", "conv3_1", N, 128, 56, 56, 256, 3, 3, pad=1, cls="large"),
        ConvCase("vgg16", "conv3_2", N, 256, 56, 56, 256, 3, 3, pad=1, cls="large"),
        ConvCase("vgg16", "conv4_1", N, 256, 28, 28, 512, 3, 3, pad=1, cls="large"),
        ConvCase("vgg16", "conv4_2", N, 512, 28, 28, 512, 3, 3, pad=1, cls="large"),
        ConvCase("vgg16", "conv5_1", N, 512, 14, 14, 512, 3, 3, pad=1, cls="large"),
        PoolCase("vgg16", "pool5", "max", N, 512, 14, 14, 2, 2),
    ]


def inception(N: int = 32) -> List[Case]:
    # GoogLeNet inception 3a (192x28x28) and 4a (480x14x14): 1x1 branch, 1x1 reduction -> 3x3, 1x1 reduction -> 5x5,
    # 3x3/1 max pool -> 1x1 projection.
    return [
        ConvCase("inception", "3a 1x1", N, 192, 28, 28, 64, 1, 1, cls="small"),
        ConvCase("inception", "3a 3x3 reduce", N, 192, 28, 28, 96, 1, 1, cls="small"),
        ConvCase("inception", "3a 3x3", N, 96, 28, 28, 128, 3, 3, pad=1, cls="large"),
        ConvCase("inception", "3a 5x5 reduce", N, 192, 28, 28, 16, 1, 1, cls="small"),
        ConvCase("inception", "3a 5x5", N, 16, 28, 28, 32, 5, 5, pad=2, cls="other"),
        PoolCase("inception", "3a pool", "max", N, 192, 28, 28, 3, 1, pad=1),
        ConvCase("inception", "3a pool proj", N, 192, 28, 28, 32, 1, 1, cls="small"),
        ConvCase("inception", "4a 1x1", N, 480, 14, 14, 192, 1, 1, cls="small"),
        ConvCase("inception", "4a 3x3 reduce", N, 480, 14, 14, 96, 1, 1, cls="small"),
        ConvCase("inception", "4a 3x3", N, 96, 14, 14, 208, 3, 3, pad=1, cls="large"),
        ConvCase("inception", "4a 5x5 reduce", N, 480, 14, 14, 16, 1, 1, cls="small"),
        ConvCase("inception", "4a 5x5", N, 16, 14, 14, 48, 5, 5, pad=2, cls="other"),
        ConvCase("inception", "4a pool proj", N, 480, 14, 14, 64, 1, 1, cls="small"),
    ]


def resnet(N: int = 32) -> List[Case]:
    # ResNet-18 basic blocks, the stride-2 downsampling (3x3/2 + 1x1/2 projection), ResNet-50 bottlenecks, the stem.
    return [
        ConvCase("resnet", "stem 7x7/2", N, 3, 224, 224, 64, 7, 7, stride=2, pad=3, bias=False, cls="small"),
        PoolCase("resnet", "stem pool", "max", N, 64, 112, 112, 3, 2, pad=1),
        ConvCase("resnet", "basic 3x3 64", N, 64, 56, 56, 64, 3, 3, pad=1, bias=False, cls="large"),
        ConvCase("resnet", "basic 3x3 128", N, 128, 28, 28, 128, 3, 3, pad=1, bias=False, cls="large"),
        ConvCase("resnet", "basic 3x3 256", N, 256, 14, 14, 256, 3, 3, pad=1, bias=False, cls="large"),
        ConvCase("resnet", "basic 3x3 512", N, 512, 7, 7, 512, 3, 3, pad=1, bias=False, cls="large"),
        ConvCase("resnet", "down 3x3/2 64-128", N, 64, 56, 56, 128, 3, 3, stride=2, pad=1, bias=False,
                 cls="large"),
        ConvCase("resnet", "down 1x1/2 64-128", N, 64, 56, 56, 128, 1, 1, stride=2, bias=False, cls="small"),
        ConvCase("resnet", "bottleneck 1x1 256-64", N, 256, 56, 56, 64, 1, 1, bias=False, cls="small"),
        ConvCase("resnet", "bottleneck 3x3 64", N, 64, 56, 56, 64, 3, 3, pad=1, bias=False, cls="large"),
        ConvCase("resnet", "bottleneck 1x1 64-256", N, 64, 56, 56, 256, 1, 1, bias=False, cls="small"),
        ConvCase("resnet", "bottleneck 1x1 1024-256", N, 1024, 14, 14, 256, 1, 1, bias=False, cls="small"),
        ConvCase("resnet", "bottleneck 3x3 256", N, 256, 14, 14, 256, 3, 3, pad=1, bias=False, cls="large"),
        ConvCase("resnet", "bottleneck 1x1 256-1024", N, 256, 14, 14, 1024, 1, 1, bias=False, cls="small"),
        ActCase("resnet", "relu 64x56", "relu", N, 64, 56, 56),
        ActCase("resnet", "guided 64x56", "guided", N, 64, 56, 56),
        ActCase("resnet", "deconvnet 64x56", "deconvnet", N, 64, 56, 56),
        PoolCase("resnet", "global avg 7x7", "avg", N, 512, 7, 7, 7, 7),
    ]


def train(n_lenet: int = 64, n_resnet: int = 32) -> List[Case]:
    return [
        TrainCase("train", "lenet5 step", "lenet5", n_lenet, 1, 32, 32),
        TrainCase("train", "resnet_small step", "resnet_small", n_resnet, 3, 32, 32),
    ]


def quick() -> List[Case]:
    """A tiny subset for CI: one of each kind, small batches."""
    return [
        ConvCase("quick", "lenet conv1", 8, 1, 32, 32, 6, 5, 5, cls="small"),
        ConvCase("quick", "lenet conv2", 8, 6, 14, 14, 16, 5, 5, cls="small"),
        ConvCase("quick", "3x3 32", 2, 32, 16, 16, 32, 3, 3, pad=1, bias=False, cls="large"),
        ConvCase("quick", "3x3/2 down", 2, 16, 16, 16, 32, 3, 3, stride=2, pad=1, bias=False, cls="large"),
        ConvCase("quick", "1x1 reduce", 2, 64, 14, 14, 16, 1, 1, cls="small"),
        ConvCase("quick", "1x1/2 proj", 2, 16, 16, 16, 32, 1, 1, stride=2, bias=False, cls="small"),
        PoolCase("quick", "max 3x3/2", "max", 2, 16, 27, 27, 3, 2),
        PoolCase("quick", "max 3x3/1 p1", "max", 2, 16, 14, 14, 3, 1, pad=1),
        PoolCase("quick", "avg 2x2", "avg", 4, 6, 28, 28, 2, 2),
        ActCase("quick", "relu", "relu", 2, 16, 28, 28),
        ActCase("quick", "guided", "guided", 2, 16, 28, 28),
        TrainCase("quick", "lenet5 step", "lenet5", 8, 1, 32, 32),
        TrainCase("quick", "resnet_small step", "resnet_small", 4, 3, 32, 32, depth=8),
    ]


SUITES: Dict[str, Callable[[], List[Case]]] = {
    "lenet5": lenet5,
    "alexnet": alexnet,
    "zfnet": zfnet,
    "vgg16": vgg16,
    "inception": inception,
    "resnet": resnet,
    "train": train,
    "quick": quick,
}
SUITE_HELP = {
    "lenet5": "LeNet-5 convs, pools, relu (batch 64)",
    "alexnet": "AlexNet (notes' unpadded variant) convs, pools, relu (batch 32)",
    "zfnet": "ZFNet convs and pool (batch 32)",
    "vgg16": "VGG-16, one entry per distinct conv shape, pools, relu/guided relu (batch 8)",
    "inception": "GoogLeNet inception 3a/4a branches incl. 1x1 reductions and the pool branch (batch 32)",
    "resnet": "ResNet basic 3x3, stride-2 downsampling, bottleneck 1x1-3x3-1x1, stem, activations (batch 32)",
    "train": "whole SGD training steps: LeNet-5 (batch 64) and the CIFAR ResNet-20 resnet_small (batch 32)",
    "quick": "tiny subset of every kind, small batches (CI)",
    "full": "every suite above except quick",
}
FULL = ["lenet5", "alexnet", "zfnet", "vgg16", "inception", "resnet", "train"]


def list_suites() -> List[str]:
    return list(SUITES) + ["full"]


def get_suite(names: str) -> List[Case]:
    """Cases of one suite, ``full``, or a comma-separated list of suites."""
    out: List[Case] = []
    for name in [n.strip() for n in names.split(",") if n.strip()]:
        if name in ("full", "all"):
            for n in FULL:
                out.extend(SUITES[n]())
        elif name in SUITES:
            out.extend(SUITES[name]())
        else:
            raise ValueError(f"unknown suite {name!r}; choose from {', '.join(list_suites())}")
    return out


def case_id(case) -> str:
    return f"{case.net}/{case.name}"


# --------------------------------------------------------------------------------------------------------------------
# models for the training-step cases
# --------------------------------------------------------------------------------------------------------------------

def _layers(use_fastconv: bool):
    """The namespace the model builders take their layers from: fastconv.nn or torch.nn."""
    import torch.nn as tnn
    if not use_fastconv:
        return tnn
    import fastconv.nn as fnn
    return fnn


def build_lenet5(ns, num_classes: int = 10):
    import torch.nn as tnn
    return tnn.Sequential(
        ns.Conv2d(1, 6, 5), ns.ReLU(), ns.MaxPool2d(2, 2),
        ns.Conv2d(6, 16, 5), ns.ReLU(), ns.MaxPool2d(2, 2),
        tnn.Flatten(), tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(),
        tnn.Linear(84, num_classes),
    )


def build_resnet_small(ns, num_classes: int = 10):
    """Fallback when fastconv.models is missing (depth is ignored): a CIFAR ResNet-8: 3x3 stem (16), three stages
    of one basic block (16, 32/2, 64/2) with 1x1/2 projection
    shortcuts, BatchNorm (torch's in both twins), global average pool, linear classifier."""
    import torch
    import torch.nn as tnn

    class BasicBlock(tnn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = ns.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
            self.bn1 = tnn.BatchNorm2d(cout)
            self.relu1 = ns.ReLU()
            self.conv2 = ns.Conv2d(cout, cout, 3, padding=1, bias=False)
            self.bn2 = tnn.BatchNorm2d(cout)
            self.relu2 = ns.ReLU()
            self.shortcut = tnn.Sequential()
            if stride != 1 or cin != cout:
                self.shortcut = tnn.Sequential(ns.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                               tnn.BatchNorm2d(cout))

        def forward(self, x):
            out = self.relu1(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu2(out + self.shortcut(x))

    class ResNetSmall(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = ns.Conv2d(3, 16, 3, padding=1, bias=False)
            self.bn1 = tnn.BatchNorm2d(16)
            self.relu = ns.ReLU()
            self.layer1 = BasicBlock(16, 16, 1)
            self.layer2 = BasicBlock(16, 32, 2)
            self.layer3 = BasicBlock(32, 64, 2)
            self.pool = ns.AdaptiveAvgPool2d(1)
            self.fc = tnn.Linear(64, num_classes)

        def forward(self, x):
            x = self.relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(torch.flatten(self.pool(x), 1))

    return ResNetSmall()


_BUILDERS = {"lenet5": build_lenet5, "resnet_small": build_resnet_small}


def build_model_pair(name: str, num_classes: int = 10, seed: int = 0, **model_kwargs):
    """(fastconv model, torch.nn twin with the same weights, source string).

    Prefers ``fastconv.models.get(name)`` and its ``backend="torch"`` twin (same module names and parameter
    shapes, weights copied with ``load_twin_state``); else a reverse conversion of the fastconv model
    (:func:`torch_twin`); else both from the builders above (fastconv.nn layers vs torch.nn layers). Whatever the
    source, the twin is verified to run no fastconv op and the fastconv model to run some."""
    import torch
    try:
        import fastconv.models as fm  # type: ignore
        if name in fm.list_models():
            torch.manual_seed(seed)
            fc_model = fm.get(name, num_classes=num_classes, **model_kwargs)
            twin = None
            try:
                twin = fm.get(name, num_classes=num_classes, backend="torch", **model_kwargs)
                fm.load_twin_state(twin, fc_model)
                src = f"fastconv.models.get({name!r}) vs backend='torch' twin"
            except Exception:  # noqa: BLE001
                twin = torch_twin(fc_model)
                src = f"fastconv.models.get({name!r}) vs reverse-converted twin"
            if twin is not None and _pure_pair(fc_model, twin):
                return fc_model, twin, src
    except ImportError:
        pass
    builder = _BUILDERS[name]
    torch.manual_seed(seed)
    fc_model = builder(_layers(True), num_classes)
    twin = builder(_layers(False), num_classes)
    twin.load_state_dict(_matching_state(fc_model, twin))
    return fc_model, twin, f"fastconv.bench.suites.build_{name}"


def _pure_pair(fc_model, twin) -> bool:
    x = _probe_input(fc_model)
    fc_ops, th_ops = ops_used(fc_model, x), ops_used(twin, x)
    return (any(o.startswith("fastconv") for o in fc_ops)
            and not any(o.startswith("fastconv") for o in th_ops))


def _matching_state(src, dst) -> dict:
    """src's state dict reshaped to dst's parameter shapes (Conv1x1 may store (K, C) where Conv2d has (K, C, 1, 1))."""
    want = dst.state_dict()
    out = {}
    for k, v in src.state_dict().items():
        out[k] = v.detach().clone().reshape(want[k].shape) if k in want else v
    return out


_TORCH_EQUIV = {
    "Conv2d": "Conv2d", "Conv1d": "Conv1d", "Conv1x1": "Conv2d", "MaxPool2d": "MaxPool2d", "AvgPool2d": "AvgPool2d",
    "AdaptiveAvgPool2d": "AdaptiveAvgPool2d", "ReLU": "ReLU", "GuidedReLU": "ReLU",
}


def _torch_module_for(m):
    import torch.nn as tnn
    name = type(m).__name__
    if name in ("Conv2d", "Conv1d"):
        cls = getattr(tnn, name)
        return cls(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                   dilation=m.dilation, groups=m.groups, bias=m.bias is not None,
                   padding_mode=getattr(m, "padding_mode", "zeros"))
    if name == "Conv1x1":
        return tnn.Conv2d(m.in_channels, m.out_channels, 1, bias=m.bias is not None)
    if name == "MaxPool2d":
        return tnn.MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation, m.return_indices, m.ceil_mode)
    if name == "AvgPool2d":
        return tnn.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                             m.divisor_override)
    if name == "AdaptiveAvgPool2d":
        return tnn.AdaptiveAvgPool2d(m.output_size)
    if name in ("ReLU", "GuidedReLU"):
        return tnn.ReLU(getattr(m, "inplace", False))
    raise TypeError(f"no torch.nn equivalent for {type(m).__module__}.{name}")


def torch_twin(model):
    """A deep copy of ``model`` with every fastconv.nn layer replaced by its torch.nn equivalent, same weights.
    Returns None when the copy still runs fastconv ops (a forward calling fastconv functions directly)."""
    import copy
    import torch

    twin = copy.deepcopy(model)

    def swap(parent):
        for cname, child in list(parent.named_children()):
            if type(child).__module__.startswith("fastconv.nn") and type(child).__name__ in _TORCH_EQUIV:
                new = _torch_module_for(child)
                new.load_state_dict(_matching_state(child, new))
                new.train(child.training)
                setattr(parent, cname, new)
            else:
                swap(child)

    swap(twin)
    # verify by running it: no op of the fastconv namespace may show up
    ops = ops_used(twin, _probe_input(model))
    if any(o.startswith("fastconv") for o in ops):
        return None
    return twin


def _probe_input(model):
    import torch
    first = next(m for m in model.modules() if hasattr(m, "in_channels"))
    c = first.in_channels
    return torch.randn(2, c, 32, 32)


def ops_used(model, x) -> Dict[str, int]:
    """Count of dispatcher ops (namespace::name) one forward + backward of ``model`` runs."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    counts: Dict[str, int] = {}

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            key = f"{func.namespace}::{func._opname}"
            counts[key] = counts.get(key, 0) + 1
            return func(*args, **(kwargs or {}))

    m = __import__("copy").deepcopy(model)
    with Count():
        out = m(x)
        out.float().sum().backward()
    return counts
