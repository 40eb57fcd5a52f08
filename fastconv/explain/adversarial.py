"""Fooling a CNN: the fast gradient sign method and a targeted iterative attack."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ._common import input_gradient, prepare_input, target_indices

__all__ = ["Adversarial", "fgsm", "targeted_attack"]


class Adversarial(NamedTuple):
    adversarial: torch.Tensor     # perturbed inputs, the input's shape (batched)
    perturbation: torch.Tensor    # adversarial - original
    original_pred: torch.Tensor   # (N,) predicted class before
    new_pred: torch.Tensor        # (N,) predicted class after
    original_prob: torch.Tensor   # (N,) probability of original_pred before
    new_prob: torch.Tensor        # (N,) probability of new_pred after
    linf: torch.Tensor            # (N,) max |perturbation|
    l2: torch.Tensor              # (N,) ||perturbation||_2
    steps: int                    # gradient steps taken

    @property
    def flipped(self) -> torch.Tensor:
        return self.new_pred != self.original_pred


def _report(model, x, adv, steps):
    with torch.no_grad():
        p0 = model(x).softmax(1)
        p1 = model(adv).softmax(1)
    d = adv - x
    pr0, c0 = p0.max(1)
    pr1, c1 = p1.max(1)
    return Adversarial(adv, d, c0, c1, pr0, pr1, d.flatten(1).abs().amax(1), d.flatten(1).norm(dim=1), steps)


def fgsm(model, inputs, label=None, eps: float = 0.1, clamp=(0.0, 1.0)) -> Adversarial:
    """Fast gradient sign method (Goodfellow et al. 2014): x' = x + eps * sign(d CE(f(x), label) / dx), clipped to
    ``clamp`` (None: no clipping). label: None (the model's prediction), an int or one per example."""
    x, _ = prepare_input(inputs)
    with torch.no_grad():
        y = target_indices(model(x), label)
    g = input_gradient(lambda leaf: F.cross_entropy(model(leaf), y, reduction="sum"), x)
    adv = x + eps * g.sign()
    if clamp is not None:
        adv = adv.clamp(*clamp)
    return _report(model, x, adv.detach(), 1)


def targeted_attack(model, inputs, target, eps: float = 0.1, step_size: float = 0.01, steps: int = 50,
                    clamp=(0.0, 1.0)) -> Adversarial:
    """Targeted iterative FGSM (Kurakin et al. 2016): repeat x <- x - step_size * sign(d CE(f(x), target) / dx),
    projected onto the L-inf ball of radius ``eps`` around the input (and ``clamp``); an example stops moving
    once it is classified as ``target``, so its perturbation stays as small as the steps allow."""
    x, _ = prepare_input(inputs)
    with torch.no_grad():
        t = target_indices(model(x), target)
    adv = x.clone()
    taken = 0
    for _ in range(steps):
        with torch.no_grad():
            active = model(adv).argmax(1) != t
        if not bool(active.any()):
            break
        g = input_gradient(lambda leaf: F.cross_entropy(model(leaf), t, reduction="sum"), adv)
        step = step_size * g.sign() * active.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        adv = torch.max(torch.min(adv - step, x + eps), x - eps)
        if clamp is not None:
            adv = adv.clamp(*clamp)
        taken += 1
    return _report(model, x, adv.detach(), taken)
