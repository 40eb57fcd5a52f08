"""Shared helpers for fastconv.explain: targets, input gradients, layer capture, model copies."""
from __future__ import annotations

import contextlib
import copy
import itertools

import torch

__all__ = ["model_device", "prepare_input", "target_indices", "select_scores", "input_gradient", "shared_copy",
           "guided_model", "resolve_layer", "capture"]


def prepare_input(x, dtype=torch.float32):
    """Return (batched float tensor detached from the caller's graph, whether a batch dim was added).

    A 3-D input (C, H, W) is treated as one image. numpy arrays are accepted.
    """
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    x = x.detach()
    if not x.is_floating_point():
        x = x.to(dtype)
    unbatched = x.dim() == 3
    if unbatched:
        x = x.unsqueeze(0)
    return x, unbatched


def model_device(model) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a parameterless callable)."""
    if isinstance(model, torch.nn.Module):
        for t in itertools.chain(model.parameters(), model.buffers()):
            return t.device
    return torch.device("cpu")


def target_indices(output: torch.Tensor, target) -> torch.Tensor:
    """Per-example class indices (N,) for a (N, K) output.

    target: None (each example's predicted class), an int (all examples), or a list / 1-D tensor with one
    index per example.
    """
    n = output.shape[0]
    if target is None:
        return output.detach().reshape(n, -1).argmax(dim=1)
    if isinstance(target, torch.Tensor):
        t = target.to(device=output.device, dtype=torch.long).reshape(-1)
    elif isinstance(target, int):
        t = torch.tensor([target], device=output.device)
    else:
        t = torch.as_tensor(list(target), dtype=torch.long, device=output.device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"target: expected one index or {n} indices (one per example), got {t.numel()}")
    return t


def select_scores(output: torch.Tensor, target) -> torch.Tensor:
    """The (N,) scores output[i, target[i]]; an output with one value per example is returned flattened."""
    n = output.shape[0]
    flat = output.reshape(n, -1)
    if flat.shape[1] == 1 and target is None:
        return flat[:, 0]
    t = target_indices(flat, target)
    return flat.gather(1, t[:, None])[:, 0]


def input_gradient(fn, x: torch.Tensor) -> torch.Tensor:
    """d(sum fn(x))/dx on a fresh leaf copy of x.

    Uses torch.autograd.grad, so nothing is accumulated into any existing ``.grad`` (the caller's input or the
    model's parameters).
    """
    leaf = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = fn(leaf)
        (grad,) = torch.autograd.grad(out.sum(), leaf)
    return grad


def shared_copy(model: torch.nn.Module, memo: dict | None = None) -> torch.nn.Module:
    """A structural copy of ``model`` whose parameters and buffers are the original's objects (no weight copy).

    Swapping modules in the copy leaves the user's model untouched, while the weights stay live.
    ``memo`` (optional dict) receives the id(original) -> copy map, to find a module's counterpart.
    """
    memo = {} if memo is None else memo
    for t in itertools.chain(model.parameters(), model.buffers()):
        memo[id(t)] = t
    return copy.deepcopy(model, memo)


class _InplaceGuidedReLU(torch.autograd.Function):
    """``relu_(x)`` under a guided rule. The input is overwritten, so the mask is taken from the output
    (y > 0 exactly where x > 0)."""

    @staticmethod
    def forward(ctx, x, mode):
        x.clamp_(min=0)
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        ctx.mode = mode
        return x

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        if ctx.mode == "deconvnet":
            return g.clamp(min=0), None
        return g * ((y > 0) & (g > 0)).to(g.dtype), None


class _FunctionalReLUMode(torch.overrides.TorchFunctionMode):
    """Routes functional relu calls (F.relu, torch.relu, Tensor.relu and their in-place forms) made inside a
    model's forward to fastconv's guided-relu kernel, so models that call F.relu instead of holding ReLU
    modules get the guided rule too (a ReLU that no module swap can reach)."""

    def __init__(self, mode):
        super().__init__()
        self.mode = mode
        import torch.nn.functional as F
        self.outofplace = {F.relu, torch.relu, torch.Tensor.relu}
        self.inplace = {F.relu_, torch.relu_, torch.Tensor.relu_}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.outofplace or func in self.inplace:
            x = args[0] if args else kwargs["input"]
            inplace = func in self.inplace or bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
            if inplace:
                return _InplaceGuidedReLU.apply(x, self.mode)
            import fastconv
            return fastconv.guided_relu(x, mode=self.mode)
        return func(*args, **kwargs)


def guided_model(model: torch.nn.Module, mode: str = "guided", memo: dict | None = None) -> torch.nn.Module:
    """A copy of ``model`` (sharing its weights) converted by ``fastconv.convert(copy, guided=True, mode=mode)``:
    every ReLU module is a ``fastconv.nn.GuidedReLU(mode)`` and convolutions and pools run on fastconv's kernels.
    The user's model is not modified.

    GuidedReLU never works in place, a ReLU module used at several places stays one (stateless) module, and a
    GuidedReLU of the other mode is replaced too. ``mode`` is "guided" (Springenberg et al.: gradient passes
    only where input > 0 and gradient > 0) or "deconvnet" (Zeiler & Fergus: positive gradient passes whatever
    the input). Run the returned module inside :func:`guided_functional` to catch functional relu calls too.
    """
    if mode not in ("guided", "deconvnet"):
        raise ValueError(f"mode: expected 'guided' or 'deconvnet', got {mode!r}")
    import fastconv
    import fastconv.nn as fnn

    if isinstance(model, torch.nn.ReLU):
        return fnn.GuidedReLU(mode=mode)
    gm = fastconv.convert(shared_copy(model, memo), guided=True, mode=mode)
    replaced: dict[int, torch.nn.Module] = {}
    for parent in list(gm.modules()):                     # a GuidedReLU of the other mode
        for name, child in list(parent.named_children()):
            if isinstance(child, fnn.GuidedReLU) and getattr(child, "mode", mode) != mode:
                replaced.setdefault(id(child), fnn.GuidedReLU(mode=mode))
                setattr(parent, name, replaced[id(child)])
    return gm


@contextlib.contextmanager
def guided_functional(mode: str = "guided"):
    """Inside this context, functional relu calls use the guided rule (see :func:`guided_model`)."""
    with _FunctionalReLUMode(mode):
        yield


def resolve_layer(model: torch.nn.Module, layer) -> torch.nn.Module:
    """A submodule given as a module, a dotted name ("features.3") or an index into model.children()."""
    if isinstance(layer, torch.nn.Module):
        return layer
    if isinstance(layer, int):
        return list(model.children())[layer]
    if isinstance(layer, str):
        return model.get_submodule(layer)
    raise TypeError(f"layer: expected a module, a name or an index, got {type(layer).__name__}")


@contextlib.contextmanager
def capture(model: torch.nn.Module, layers):
    """Record the outputs of ``layers`` (a list) during forward passes: yields a dict layer-index -> tensor."""
    store: dict[int, torch.Tensor] = {}
    handles = []
    for i, layer in enumerate(layers):
        mod = resolve_layer(model, layer)

        def hook(_m, _inp, out, i=i):
            store[i] = out
        handles.append(mod.register_forward_hook(hook))
    try:
        yield store
    finally:
        for h in handles:
            h.remove()
