"""Layer calculator: ``fastconv.summary(model_or_name, input_size)``.

For every layer of a network, in the order the forward pass runs them:

* the output size W x H x D. For conv and pool layers it is computed with
  :func:`fastconv.conv_output_size`, the notes' formula
  ``W2 = floor((W1 - F + 2P) / S) + 1`` (with dilation and ceil mode); the size
  the forward pass actually produced is checked against it. A ``*`` marks the
  layers where the division is not exact, i.e. where the notes' formula without
  the floor would give a fraction (e.g. AlexNet's 11x11/4 conv on 224x224:
  (224 - 11)/4 + 1 = 54.25, the layer gives 54);
* the weight and the bias parameter counts, separately (the notes count conv
  weights only, e.g. LeNet-5's 150 = 5*5*1*6, but FC weights with biases, e.g.
  400*120 + 120 = 48,120). BatchNorm's gamma counts as weights, beta as biases;
* FLOPs for one sample: a multiply-accumulate counts 2 (conv:
  2 * K * C/groups * F_h * F_w * H2 * W2, linear: 2 * in * out), a bias add 1
  per output element, BatchNorm 2 per element (folded scale and shift), ReLU 1
  per element, pooling F_h * F_w per output element, global average pooling
  H * W per channel; dropout, flatten, residual adds and concatenations 0.

Totals come at the bottom. The network is traced on the ``meta`` device when
given by name (no memory, no arithmetic: VGG-16's 138 M parameters cost
nothing), else with one forward pass of a zero batch of size 1.

The lecture notes' worked numbers are checked against the computed rows and
printed as footnotes, ``[ok]`` or ``[WRONG]``/``[imprecise]`` with the right
value. What the checks find (inputs: LeNet-5 1x32x32, AlexNet 3x227x227, ZFNet
and VGG-16 3x224x224):

* AlexNet conv1: (227 - 11 + 0)/4 + 1 = 55 -- right; but the notes then write
  D2 = 3, wrong: the output depth is the number of filters, 96.
* LeNet-5: 150, 2,400, 48,120, 10,164 -- all right (150 and 2,400 are weights
  only: 156 and 2,416 with biases; LeCun's original sparse C3 has 1,516).
* AlexNet conv weights: conv2 (5*5*96)*256 = 614,400 ~ 0.6 M -- right;
  conv3 (3*3*256)*384 = 884,736 ~ "0.8 M" -- imprecise, 0.88 M (0.9 M to one
  decimal); conv4 (3*3*384)*384 = 1,327,104 ~ "1.372 M" -- wrong digits,
  1.327 M (~1.3 M is right).
* AlexNet total "27.55 M" -- wrong: the notes' own unpadded network
  (``alexnet_notes``) has 28,823,912 parameters, the paper's 62,378,344.
* ZFNet: conv1 difference 20.7 K and conv3 difference 0.29 M -- right; conv5
  "3*3*((384*256) - (1024*512)) = 0.36 M" -- wrong: 3*3*(1024*512 - 384*256) =
  3,833,856 ~ 3.83 M (the expression as written is negative).
* VGG-16: first FC layer 7*7*512*4096 = 102,760,448 ~ 102 M -- right. Conv
  layers "~16 M" -- wrong, 14,714,688 ~ 14.7 M. FC layers
  "(512*7*7*4096) + (4096*4096) + (4096*1024) ~ 122 M" -- wrong twice: the last
  layer is 4096*1000 (1000 classes), and the sum is 123,633,664 ~ 123.6 M (the
  notes' own expression gives 123.7 M).
* GoogLeNet "12 times fewer parameters than AlexNet" -- imprecise: 8.9x against
  the paper's AlexNet here (the 12x is the GoogLeNet paper's claim); "2 times
  more computation" -- 1.4x against the single-tower AlexNet built here, about
  2x against the original two-tower one (grouped conv2/4/5).

>>> s = summary("lenet5")                   # doctest: +SKIP
>>> s.row("features.conv1").weights         # doctest: +SKIP
150
>>> print(s)                                # doctest: +SKIP
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
import torch
from torch import nn

class ShapeMismatch(RuntimeError):
    """The forward pass and fastconv.conv_output_size disagree on a layer's output size."""


__all__ = ["summary", "ShapeMismatch", "ModelSummary", "LayerRow", "NoteCheck", "parse_input_size"]

_NOTES = "the lecture notes (cnn-notes.txt)"


@dataclass
class LayerRow:
    name: str
    kind: str
    output: tuple[int, ...]      # (D, H, W) for feature maps, (D,) for vectors
    weights: int
    biases: int
    flops: int
    inexact: bool = False        # the output-size division was not exact (floor applied)
    hidden: bool = False         # parameterless, shape-preserving (ReLU, Dropout, Flatten): shown with verbose

    @property
    def params(self) -> int:
        return self.weights + self.biases

    @property
    def whd(self) -> str:
        """The output as the notes write it: W x H x D (or D for a vector)."""
        if len(self.output) == 3:
            d, h, w = self.output
            return f"{w}x{h}x{d}"
        return "x".join(str(v) for v in self.output)


@dataclass
class NoteCheck:
    status: str                  # "ok", "WRONG", "imprecise", "info"
    text: str

    def __str__(self) -> str:
        return f"[{self.status}] {self.text}"


@dataclass
class ModelSummary:
    model_name: str
    input_size: tuple[int, ...]
    rows: list[LayerRow]
    total_weights: int
    total_biases: int
    total_flops: int
    checks: list[NoteCheck] = field(default_factory=list)
    verbose: bool = False

    @property
    def total_params(self) -> int:
        return self.total_weights + self.total_biases

    def row(self, name: str) -> LayerRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no layer named {name!r}; layers: {', '.join(r.name for r in self.rows)}")

    def table(self, verbose: bool | None = None) -> str:
        verbose = self.verbose if verbose is None else verbose
        rows = [r for r in self.rows if verbose or not r.hidden]
        cin = "x".join(str(v) for v in self.input_size)
        head = ("#", "layer", "type", "output WxHxD", "weights", "biases", "FLOPs")
        body = []
        for i, r in enumerate(rows, 1):
            body.append((str(i), r.name, r.kind, r.whd + ("*" if r.inexact else ""), f"{r.weights:,}",
                         f"{r.biases:,}", _si(r.flops)))
        widths = [max(len(x[j]) for x in [head] + body) for j in range(len(head))]
        right = {0, 4, 5, 6}

        def fmt(cells):
            return "  ".join(c.rjust(widths[j]) if j in right else c.ljust(widths[j]) for j, c in enumerate(cells))

        line = "-" * len(fmt(head))
        out = [f"fastconv.summary: {self.model_name}, input {cin} (C x H x W), batch 1", line, fmt(head), line]
        out += [fmt(b) for b in body]
        out.append(line)
        out.append(f"total: {self.total_params:,} parameters = {self.total_weights:,} weights + "
                   f"{self.total_biases:,} biases; {_si(self.total_flops)}FLOPs "
                   f"({self.total_flops:,}) per sample")
        notes = []
        if any(r.inexact for r in rows):
            notes.append("* (W1 - F + 2P)/S is not a whole number here: the size is floor(...) + 1, as "
                         "fastconv.conv_output_size and torch compute it (the notes' formula omits the floor).")
        if not verbose and any(r.hidden for r in self.rows):
            notes.append("ReLU/Dropout/Flatten rows hidden (verbose=True or --all shows them); their FLOPs are "
                         "in the total.")
        notes.append("FLOPs: multiply-accumulate = 2, bias add / ReLU = 1, BatchNorm = 2 per element, "
                     "pooling = window size per output.")
        out += notes
        if self.checks:
            out.append("")
            out.append(f"Checked against {_NOTES}:")
            out += [f"  {c}" for c in self.checks]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return self.table()


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} "


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f} M"


# --------------------------------------------------------------------------
# input size
# --------------------------------------------------------------------------
def parse_input_size(spec) -> tuple[int, int, int]:
    """(C, H, W) from "3x227x227", "3,227,227", (3, 227, 227), (1, 3, 227, 227) or
    (227, 227) (one channel). The notes write W x H x D (227x227x3); that order
    is refused with a hint rather than guessed."""
    if isinstance(spec, str):
        parts = [p for p in re.split(r"[x×,\s]+", spec.strip().lower()) if p]
        try:
            dims = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(f"input size must look like 3x227x227 (C x H x W), got {spec!r}") from None
    elif isinstance(spec, int):
        raise ValueError(f"input size must be C x H x W, e.g. (3, {spec}, {spec}); got the single number {spec}")
    else:
        dims = tuple(int(v) for v in spec)
    if len(dims) == 4:
        dims = dims[1:]
    if len(dims) == 2:
        dims = (1,) + dims
    if len(dims) != 3 or min(dims) < 1:
        raise ValueError(f"input size must be C x H x W with positive sizes, e.g. 3x227x227; got {spec!r}")
    c, h, w = dims
    if c > 4 and w <= 4 and h > 4:
        raise ValueError(f"input size is C x H x W (channels first); {spec!r} looks like W x H x D as the notes "
                         f"write it: did you mean {w}x{c}x{h}?")
    return dims  # type: ignore[return-value]


# --------------------------------------------------------------------------
# tracing
# --------------------------------------------------------------------------
def _kind(m: nn.Module) -> str:
    name = type(m).__name__
    return "Conv1x1" if name == "TorchConv1x1" else name


def _is(m: nn.Module, *names: str) -> bool:
    return type(m).__name__ in names or any(c.__name__ in names for c in type(m).__mro__[1:2])


def _hidden(m: nn.Module) -> bool:
    return _is(m, "ReLU", "GuidedReLU", "Dropout", "Flatten", "Identity")


def _own_counts(m: nn.Module, seen: set[int]) -> tuple[int, int]:
    """(weights, biases) of the parameters m itself holds (not its children's),
    each parameter counted once across the model (shared modules)."""
    w = b = 0
    for pname, p in m.named_parameters(recurse=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        if pname == "bias" or pname.endswith("_bias") or pname.startswith("bias"):
            b += p.numel()
        else:
            w += p.numel()
    return w, b


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return int(v[0]), int(v[-1])
    return int(v), int(v)


def _formula_hw(m: nn.Module, in_hw: tuple[int, int]) -> tuple[tuple[int, int], bool] | None:
    """Output (H, W) of a conv / pool layer by fastconv.conv_output_size, and
    whether the division was inexact. None for other layers."""
    from fastconv import conv_output_size

    conv = _is(m, "Conv2d", "Conv1x1", "TorchConv1x1") or isinstance(m, nn.Conv2d)
    pool = _is(m, "MaxPool2d", "AvgPool2d") or isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))
    if not (conv or pool):
        return None
    k = _pair(getattr(m, "kernel_size", 1))
    stride = getattr(m, "stride", 1)
    s = _pair(k if (pool and stride is None) else stride)
    pad = getattr(m, "padding", 0)
    d = _pair(getattr(m, "dilation", 1))
    ceil = bool(getattr(m, "ceil_mode", False))
    if isinstance(pad, str):
        if pad == "same":
            return in_hw, False
        pad = 0
    p = _pair(pad)
    out = tuple(conv_output_size(in_hw[i], k[i], s[i], p[i], d[i], ceil) for i in range(2))
    inexact = any((in_hw[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) % s[i] for i in range(2))
    return out, inexact  # type: ignore[return-value]


def _flops(m: nn.Module, x: torch.Size, y: torch.Size) -> int:
    out_el = 1
    for v in y[1:]:
        out_el *= int(v)
    if _is(m, "Conv2d", "Conv1x1", "TorchConv1x1", "Conv1d") or isinstance(m, (nn.Conv1d, nn.Conv2d)):
        w = m.weight
        per_out = w.numel() // w.shape[0]          # C/groups * F_h * F_w
        f = 2 * per_out * out_el
        if getattr(m, "bias", None) is not None:
            f += out_el
        return f
    if isinstance(m, nn.Linear):
        return 2 * m.in_features * out_el + (out_el if m.bias is not None else 0)
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return 2 * out_el
    if _is(m, "ReLU", "GuidedReLU") or isinstance(m, nn.ReLU):
        return out_el
    if _is(m, "AdaptiveAvgPool2d") or isinstance(m, nn.AdaptiveAvgPool2d):
        in_el = 1
        for v in x[1:]:
            in_el *= int(v)
        return in_el
    if _is(m, "MaxPool2d", "AvgPool2d") or isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        kh, kw = _pair(m.kernel_size)
        return kh * kw * out_el
    return 0


def _trace(model: nn.Module, input_size: tuple[int, int, int], device) -> list[LayerRow]:
    calls: list[tuple[str, nn.Module, torch.Size, torch.Size]] = []
    names = {id(m): n for n, m in model.named_modules()}
    leaves = [m for m in model.modules() if next(iter(m.children()), None) is None]
    handles = []

    def hook(m, inputs, output):
        x = inputs[0] if inputs else None
        if isinstance(output, (tuple, list)):
            output = output[0]
        calls.append((names.get(id(m), _kind(m)), m, x.shape if isinstance(x, torch.Tensor) else None,
                      output.shape))

    for m in leaves:
        handles.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
            model(torch.zeros((1,) + tuple(input_size), device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    rows: list[LayerRow] = []
    seen: set[int] = set()
    for name, m, xs, ys in calls:
        w, b = _own_counts(m, seen)
        out = tuple(int(v) for v in ys[1:])
        inexact = False
        if xs is not None and len(xs) == 4 and len(ys) == 4:
            f = _formula_hw(m, (int(xs[2]), int(xs[3])))
            if f is not None:
                (h2, w2), inexact = f
                if (h2, w2) != (out[1], out[2]):
                    raise ShapeMismatch(
                        f"{name}: the forward pass produced {out[2]}x{out[1]} but fastconv.conv_output_size "
                        f"gives {w2}x{h2} for input {int(xs[3])}x{int(xs[2])}")
                out = (out[0], h2, w2)
        rows.append(LayerRow(name=name, kind=_kind(m), output=out, weights=w, biases=b,
                             flops=_flops(m, xs if xs is not None else ys, ys), inexact=inexact,
                             hidden=_hidden(m) and w == 0 and b == 0))
    return rows


# --------------------------------------------------------------------------
# the notes' numbers
# --------------------------------------------------------------------------
def _chk(ok: bool, text_ok: str, text_bad: str | None = None, bad: str = "WRONG") -> NoteCheck:
    return NoteCheck("ok" if ok else bad, text_ok if ok or text_bad is None else text_bad)


def _about(value: float, claim: float, rel: float = 0.05) -> bool:
    return abs(value - claim) <= rel * abs(claim)


def _checks_lenet(s: ModelSummary) -> list[NoteCheck]:
    c1, p1, c2, f1, f2 = (s.row(n) for n in ("features.conv1", "features.pool1", "features.conv2",
                                             "classifier.fc1", "classifier.fc2"))
    return [
        _chk(c1.weights == 150, f"C1 conv 5x5, K=6 on 32x32x1: 5*5*1*6 = 150 weights -- here {c1.weights:,} "
             f"(+{c1.biases} biases = {c1.params:,}; the notes count conv weights only), output {c1.whd}",
             f"C1: notes 150, here {c1.weights:,} weights"),
        _chk(p1.params == 0, f"S2 pool 2x2/2: 0 parameters -- here {p1.params}, output {p1.whd}"),
        _chk(c2.weights == 2400, f"C3 conv 5x5x6, K=16: (5*5*6)*16 = 2,400 weights -- here {c2.weights:,} "
             f"(+{c2.biases} biases = {c2.params:,}; LeCun's original C3 is sparsely connected: 1,516)",
             f"C3: notes 2,400, here {c2.weights:,} weights"),
        _chk(f1.params == 48120, f"flatten 5x5x16 = 400 -> FC 120: 400*120 + 120 = 48,120 -- here "
             f"{f1.weights:,} + {f1.biases} = {f1.params:,} (this time the notes include the biases)",
             f"FC1: notes 48,120, here {f1.params:,}"),
        _chk(f2.params == 10164, f"FC 120 -> 84: 120*84 + 84 = 10,164 -- here {f2.params:,}",
             f"FC2: notes 10,164, here {f2.params:,}"),
    ]


def _checks_alexnet(s: ModelSummary, variant: str) -> list[NoteCheck]:
    r = {n: s.row(f"features.{n}") for n in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5")}
    fc6 = s.row("classifier.fc6")
    c1 = r["conv1"]
    out = [
        _chk(c1.output[1:] == (55, 55), f"conv1 11x11/4, P=0: (227 - 11 + 0)/4 + 1 = 55 -- here {c1.whd}"),
        _chk(c1.output[0] == 3, "conv1 depth D2 = 3",
             f"conv1 depth: the notes write D2 = 3, but D2 = K, the number of filters: {c1.output[0]} "
             f"(output {c1.whd})"),
        _chk(_about(r["conv2"].weights, 0.6e6, 0.05),
             f"conv2 (5*5*96)*256 ~ 0.6 M weights -- here {r['conv2'].weights:,}"),
        NoteCheck("ok" if round(r["conv3"].weights / 1e5) == 8 else "imprecise",
                  f"conv3 (3*3*256)*384 ~ 0.8 M weights -- here {r['conv3'].weights:,} = "
                  f"{r['conv3'].weights / 1e6:.3f} M, i.e. ~0.9 M (the notes truncate)"),
        _chk(_about(r["conv4"].weights, 1.372e6, 0.001),
             f"conv4 (3*3*384)*384 ~ 1.372 M weights -- here {r['conv4'].weights:,}",
             f"conv4 (3*3*384)*384: the notes write ~1.372 M; it is {r['conv4'].weights:,} = "
             f"{r['conv4'].weights / 1e6:.3f} M (digits swapped; ~1.3 M is right)"),
    ]
    if variant == "notes":
        sizes = [r[n].output[1] for n in ("conv2", "pool2", "conv3", "conv4")]
        out.append(_chk(sizes == [23, 11, 9, 7],
                        f"unpadded conv2 -> pool -> conv3 -> conv4: 23 -> 11 -> 9 -> 7 -- here "
                        f"{' -> '.join(map(str, sizes))}"))
        fl = r["pool5"]
        out.append(_chk(fl.output == (256, 2, 2) and _about(fc6.weights, 4e6, 0.06),
                        f"FC1 input 2x2x256, (2*2*256)*4096 ~ 4 M weights -- here {fl.whd}, {fc6.weights:,}"))
    else:
        out.append(NoteCheck("info", "the notes draw conv2-5 unpadded (P=0: 23 -> 11 -> 9 -> 7 -> 5 -> FC1 input "
                             f"2x2x256, 4.2 M weights); the paper pads them (here {r['conv2'].output[1]} -> "
                             f"{r['pool2'].output[1]} -> {r['conv3'].output[1]} -> {r['conv4'].output[1]} -> "
                             f"{r['conv5'].output[1]} -> FC1 input {r['pool5'].whd}, {_millions(fc6.weights)} "
                             f"weights). `fastconv summary alexnet_notes` is the notes' version."))
    n_layers = sum(1 for row in s.rows if row.kind in ("Conv2d", "Linear"))
    out.append(_chk(n_layers == 8, f"8 layers with parameters: 5 conv + 3 FC -- here {n_layers}"))
    other = summary("alexnet" if variant == "notes" else "alexnet_notes", (3, 227, 227), _checks=False)
    notes_total = s.total_params if variant == "notes" else other.total_params
    paper_total = other.total_params if variant == "notes" else s.total_params
    out.append(_chk(_about(notes_total, 27.55e6, 0.005), "total 27.55 M parameters",
                    f"total: the notes say 27.55 M; their own (unpadded) network has {notes_total:,} = "
                    f"{_millions(notes_total)} (weights + biases), the paper's padded one {paper_total:,} = "
                    f"{_millions(paper_total)}"))
    return out


def _checks_zfnet(s: ModelSummary) -> list[NoteCheck]:
    a = summary("alexnet", (3, 227, 227), _checks=False)
    d = {n: s.row(f"features.{n}").weights - a.row(f"features.{n}").weights for n in ("conv1", "conv3", "conv4",
                                                                                         "conv5")}
    return [
        _chk(-d["conv1"] == 20736 and _about(-d["conv1"], 20.7e3, 0.01),
             f"layer 1, F 11 -> 7: ((11^2 - 7^2)*3)*96 = 20.7 K fewer weights -- here {-d['conv1']:,}"),
        _chk(d["conv3"] == 294912, f"layer 5 (conv3), K 384 -> 512: (3*3*256)*(512 - 384) = 0.29 M more -- here "
             f"{d['conv3']:,}"),
        NoteCheck("info", f"layer 6 (conv4), 384x384 -> 512x1024 (not in the notes): 3*3*(512*1024 - 384*384) = "
                  f"{d['conv4']:,} more"),
        _chk(_about(d["conv5"], 0.36e6, 0.05), "layer 7 (conv5) 0.36 M",
             f"layer 7 (conv5), K 256 -> 512: the notes write 3*3*((384*256) - (1024*512)) = 0.36 M; it is "
             f"3*3*(1024*512 - 384*256) = {d['conv5']:,} ~ {_millions(d['conv5'])} more (the input depth grew "
             f"to 1024 too; the notes' expression is negative as written)"),
    ]


def _checks_vgg(s: ModelSummary) -> list[NoteCheck]:
    conv_params = sum(r.params for r in s.rows if "Conv" in r.kind)
    fcs = [r for r in s.rows if r.kind == "Linear"]
    fc_w = sum(r.weights for r in fcs)
    fc_p = sum(r.params for r in fcs)
    notes_expr = 512 * 7 * 7 * 4096 + 4096 * 4096 + 4096 * 1024
    fc6 = s.row("classifier.fc6")
    return [
        _chk(_about(fc6.weights, 102e6, 0.01), f"first FC layer 7*7*512*4096 ~ 102 M -- here {fc6.weights:,} "
             f"weights (+{fc6.biases:,} biases), input {s.row('features.pool5').whd}"),
        _chk(_about(conv_params, 16e6, 0.05), "conv layers ~16 M",
             f"conv layers: the notes say ~16 M; they hold {conv_params:,} = {_millions(conv_params)} "
             f"(weights + biases)"),
        _chk(_about(fc_p, 122e6, 0.005), "FC layers ~122 M",
             f"FC layers: the notes write (512*7*7*4096) + (4096*4096) + (4096*1024) ~ 122 M; the last layer is "
             f"4096*{fcs[-1].output[0]} ({fcs[-1].output[0]} classes), total {fc_w:,} weights + "
             f"{fc_p - fc_w:,} biases = {_millions(fc_p)} (the notes' own expression is {notes_expr:,} = "
             f"{_millions(notes_expr)}, not 122 M)"),
        NoteCheck("info", f"whole network {s.total_params:,} = {_millions(s.total_params)} parameters"),
    ]


def _checks_googlenet(s: ModelSummary) -> list[NoteCheck]:
    a = summary("alexnet", (3, 227, 227), _checks=False)
    pr = a.total_params / s.total_params
    fr = s.total_flops / a.total_flops
    return [
        NoteCheck("ok" if 10 <= pr <= 14 else "imprecise",
                  f"\"12 times less parameters than AlexNet\": {a.total_params:,} / {s.total_params:,} = {pr:.1f}x "
                  f"here (12x is the GoogLeNet paper's own figure)"),
        NoteCheck("ok" if 1.5 <= fr <= 2.5 else "imprecise",
                  f"\"2 times more computations\": {_si(s.total_flops)}FLOPs vs this single-tower AlexNet's "
                  f"{_si(a.total_flops)}FLOPs = {fr:.1f}x; against the original two-tower AlexNet (conv2, 4, 5 "
                  f"grouped in two, about half their FLOPs) it is about 2x"),
    ]


def _notes_checks(model: nn.Module, input_size) -> list[NoteCheck]:
    """The checks that apply to this model at this input size, or a line saying
    why none do."""
    from . import models as M

    nc = getattr(model, "num_classes", None)
    c, h, w = input_size
    if isinstance(model, M.LeNet5):
        if (c, h, w) == (1, 32, 32):
            return ["lenet"]  # type: ignore[list-item]
        return [NoteCheck("info", "the notes' LeNet-5 numbers assume a 1x32x32 input; not checked")]
    if isinstance(model, M.AlexNet):
        if (c, h, w) == (3, 227, 227) and nc == 1000:
            return ["alexnet"]  # type: ignore[list-item]
        return [NoteCheck("info", "the notes' AlexNet numbers assume a 3x227x227 input, 1000 classes; not checked")]
    if isinstance(model, M.ZFNet):
        if (c, h, w) == (3, 224, 224) and tuple(model.widths) == (512, 1024, 512):
            return ["zfnet"]  # type: ignore[list-item]
        return [NoteCheck("info", "the notes' ZFNet numbers assume 3x224x224 and widths 512/1024/512")]
    if isinstance(model, M.VGG):
        if (c, h, w) == (3, 224, 224) and not model.batch_norm and nc == 1000:
            return ["vgg"]  # type: ignore[list-item]
        return [NoteCheck("info", "the notes' VGG-16 numbers assume 3x224x224, 1000 classes, no BatchNorm")]
    if isinstance(model, M.GoogLeNet):
        if (c, h, w) == (3, 224, 224) and nc == 1000:
            return ["googlenet"]  # type: ignore[list-item]
    return []


# --------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------
def summary(model_or_name, input_size=None, *, verbose: bool = False, _checks: bool = True,
            **model_kwargs) -> ModelSummary:
    """Layer-by-layer table of a network: output W x H x D, weights, biases, FLOPs.

    ``model_or_name``: a registered name (``fastconv.models.list_models()``,
    e.g. ``"alexnet"``; ``model_kwargs`` go to its constructor, e.g.
    ``num_classes=10``) or any ``torch.nn.Module`` taking an N x C x H x W batch.
    ``input_size``: C x H x W as a tuple or a string such as ``"3x227x227"``;
    optional for a name (its canonical size: LeNet-5 1x32x32, AlexNet
    3x227x227, ...). Returns a :class:`ModelSummary`; ``print()`` it for the
    table, with the notes' numbers checked in footnotes (see the module
    docstring for what they find).
    """
    from . import models as M

    if isinstance(model_or_name, str):
        name = M.canonical_name(model_or_name)
        info = M.info(name)
        size = parse_input_size(input_size) if input_size is not None else info.input_size
        kw = dict(model_kwargs)
        kw.setdefault("in_channels", size[0])
        kw.setdefault("input_size", size[1:])
        try:
            with torch.device("meta"):
                model = M.get(name, **kw)
            rows = _trace(model, size, "meta")
        except ShapeMismatch:
            raise
        except (ValueError, TypeError, NotImplementedError, RuntimeError):
            # fastconv's layers do not run on the meta device: trace the torch twin (the same
            # architecture, module names and parameters, built from torch.nn) there instead
            kw["backend"] = "torch"
            with torch.device("meta"):
                model = M.get(name, **kw)
            rows = _trace(model, size, "meta")
    elif isinstance(model_or_name, nn.Module):
        if model_kwargs:
            raise TypeError(f"model keyword arguments {sorted(model_kwargs)} only apply to a model name")
        model = model_or_name
        name = type(model).__name__
        if input_size is None:
            info_size = getattr(model, "input_size", None)
            c = getattr(model, "in_channels", None)
            if info_size is None or c is None:
                raise ValueError("input_size is required for a model object, e.g. (3, 224, 224)")
            input_size = (c,) + tuple(info_size)
        size = parse_input_size(input_size)
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
        rows = _trace(model, size, device)
    else:
        raise TypeError(f"summary() takes a model name or a torch.nn.Module, got {type(model_or_name).__name__}")

    seen: set[int] = set()
    tw = tb = 0
    for m in model.modules():
        w, b = _own_counts(m, seen)
        tw, tb = tw + w, tb + b
    s = ModelSummary(model_name=name, input_size=tuple(size), rows=rows, total_weights=tw, total_biases=tb,
                     total_flops=sum(r.flops for r in rows), verbose=verbose)
    if _checks:
        checks = []
        for item in _notes_checks(model, size):
            if isinstance(item, NoteCheck):
                checks.append(item)
            elif item == "lenet":
                checks += _checks_lenet(s)
            elif item == "alexnet":
                checks += _checks_alexnet(s, model.variant)
            elif item == "zfnet":
                checks += _checks_zfnet(s)
            elif item == "vgg":
                checks += _checks_vgg(s)
            elif item == "googlenet":
                checks += _checks_googlenet(s)
        s.checks = checks
    return s
