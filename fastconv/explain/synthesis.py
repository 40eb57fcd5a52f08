"""Optimisation over images (the network's weights fixed, the pixels the parameters):
class model visualisation, feature inversion, deep dream, style transfer."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ._common import capture, model_device, prepare_input, select_scores

__all__ = ["Synthesis", "class_model", "total_variation", "invert", "deep_dream", "gram_matrix",
           "style_transfer"]


class Synthesis(NamedTuple):
    image: torch.Tensor     # the optimised image, the input's shape (batched)
    history: list           # the objective (or the quantity named in the function's doc) at every step


def _gaussian_blur(x, sigma):
    r = max(1, int(math.ceil(2 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x.device)
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def class_model(model, target, shape=(1, 32, 32), steps: int = 100, lr: float = 0.5, l2: float = 0.05,
                init_noise: float = 0.01, seed: int = 0, blur_every: int = 0, blur_sigma: float = 0.5,
                init=None) -> Synthesis:
    """Class model visualisation (Simonyan et al. 2013): argmax_I S_c(I) - l2 * ||I||^2 by plain gradient
    ascent, I <- I + lr * d(S_c - l2 ||I||^2)/dI, S_c the class score before softmax.

    target: a class, or a list of classes optimised together as one batch (one image each; the objective is
    separable, so this equals separate runs, only faster). The start is the zero image plus seeded noise of
    std ``init_noise``, the same for every class (``init`` to start elsewhere): at the exact zero image every
    max-pooling window is a tie and the ReLUs sit at their kink, so the gradient there is not an ascent
    direction (the score falls on the first step from zeros whatever the step size). ``blur_every`` > 0
    smooths the image every so many steps with a Gaussian of ``blur_sigma`` pixels (an optional extra
    regulariser, off by default).
    history: S_c at every step before the update (history[0] is the start's score); for a list of classes,
    each entry is the list of their scores.
    """
    many = not isinstance(target, int)
    targets = torch.as_tensor(list(target) if many else [target], dtype=torch.long)
    if init is None:
        gen = torch.Generator().manual_seed(seed)
        img = init_noise * torch.randn((1,) + tuple(shape), generator=gen).expand(len(targets), *shape).clone()
    else:
        img = prepare_input(init)[0].clone().expand(len(targets), *shape).clone()
    img, targets = img.to(model_device(model)), targets.to(model_device(model))
    history = []
    for step in range(steps):
        leaf = img.detach().requires_grad_(True)
        with torch.enable_grad():
            score = select_scores(model(leaf), targets)
            objective = score.sum() - l2 * (leaf * leaf).sum()
            (g,) = torch.autograd.grad(objective, leaf)
        s = score.detach().tolist()
        history.append(s if many else s[0])
        img = img + lr * g
        if blur_every and (step + 1) % blur_every == 0:
            img = _gaussian_blur(img, blur_sigma)
    return Synthesis(img.detach(), history)


def total_variation(x: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """sum over pixels of ((dx)^2 + (dy)^2)^(beta/2): small for piecewise-smooth images."""
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    return ((dx * dx + dy * dy) + 1e-8).pow(beta / 2).sum()


def invert(model, layer, image, steps: int = 200, lr: float = 0.05, alpha: int = 6, l_alpha: float = 1e-4,
           l_tv: float = 5e-3, init=None, seed: int = 0) -> Synthesis:
    """Feature inversion (Mahendran & Vedaldi 2015): find x with Phi(x) close to Phi_0 = Phi(image) where Phi is
    ``layer``'s output, minimising ||Phi(x) - Phi_0||^2 / ||Phi_0||^2 + l_alpha ||x||_alpha^alpha + l_tv TV(x)
    with Adam from small noise. history: the relative feature distance ||Phi(x) - Phi_0||^2 / ||Phi_0||^2.
    """
    x0, _ = prepare_input(image)
    with torch.no_grad(), capture(model, [layer]) as store:
        model(x0)
        phi0 = store[0].detach()
    norm0 = phi0.pow(2).sum().clamp_min(1e-12)
    gen = torch.Generator().manual_seed(seed)
    if init is None:
        x = torch.randn(x0.shape, generator=gen).to(x0.device) * 0.01 + x0.mean()
    else:
        x = prepare_input(init)[0].to(x0.device)
    x = x.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    history = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        with torch.enable_grad(), capture(model, [layer]) as store:
            model(x)
            dist = (store[0] - phi0).pow(2).sum() / norm0
            loss = dist + l_alpha * (x - 0.5).abs().pow(alpha).sum() + l_tv * total_variation(x)
            loss.backward()
        opt.step()
        history.append(float(dist.detach()))
    return Synthesis(x.detach(), history)


def deep_dream(model, layer, image, steps: int = 10, lr: float = 0.02, octaves: int = 1,
               octave_scale: float = 1.4, jitter: int = 2, seed: int = 0, clamp=(0.0, 1.0)) -> Synthesis:
    """Deep dream (Mordvintsev et al. 2015): gradient ascent on ||h||^2 (mean square of ``layer``'s output) from a
    natural image, steps normalised by the mean |gradient|, with random jitter (shifts) and optional octaves
    (the image is processed from small to full size, detail carried up). history: ||h||^2 (mean) per step.
    """
    x, _ = prepare_input(image)
    gen = torch.Generator().manual_seed(seed)
    h, w = x.shape[2:]
    sizes = [(max(8, round(h / octave_scale ** o)), max(8, round(w / octave_scale ** o)))
             for o in reversed(range(octaves))]
    base_small = [F.interpolate(x, size=s, mode="bilinear", align_corners=False, antialias=True) for s in sizes]
    detail = torch.zeros_like(base_small[0])
    history = []
    for o, size in enumerate(sizes):
        if o:
            detail = F.interpolate(detail, size=size, mode="bilinear", align_corners=False)
        img = (base_small[o] + detail).detach()
        for _ in range(steps):
            dy, dx = (torch.randint(-jitter, jitter + 1, (2,), generator=gen).tolist() if jitter else (0, 0))
            shifted = torch.roll(img, (dy, dx), dims=(2, 3)).requires_grad_(True)
            with torch.enable_grad(), capture(model, [layer]) as store:
                model(shifted)
                obj = store[0].pow(2).mean()
                (g,) = torch.autograd.grad(obj, shifted)
            history.append(float(obj.detach()))
            g = torch.roll(g, (-dy, -dx), dims=(2, 3))
            img = img + lr * g / g.abs().mean().clamp_min(1e-12)
            if clamp is not None:
                img = img.clamp(*clamp)
        detail = img - base_small[o]
    return Synthesis(img.detach(), history)


def gram_matrix(features: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Style Gram matrix G = V^T V of a (N, C, H, W) feature map, V = the (H*W, C) matrix with one row per
    position, one column per channel: G[i, j] = sum over positions of channel i times channel j, (N, C, C).

    (The notes write V in R^{64 x (256*256)} and V^T V in R^{64 x 64}; the dimensions only agree with V as
    positions x channels, as here.) ``normalize`` divides by H*W so layers of different size weigh alike.
    """
    n, c = features.shape[:2]
    v = features.reshape(n, c, -1).transpose(1, 2)         # (N, HW, C)
    g = v.transpose(1, 2) @ v
    return g / v.shape[1] if normalize else g


def style_transfer(model, content, style, content_layers, style_layers, steps: int = 150, lr: float = 0.03,
                   content_weight: float = 1.0, style_weight: float = 1e3, tv_weight: float = 0.0,
                   init=None) -> Synthesis:
    """Neural style transfer (Gatys et al. 2015): minimise
        content_weight * sum_l ||F_l(x) - F_l(content)||^2 / ||F_l(content)||^2
      + style_weight   * sum_l ||G_l(x) - G_l(style)||^2  / ||G_l(style)||^2  (+ tv_weight * TV(x))
    over the image x (Adam, starting from the content image, pixels kept in [0, 1]); G is :func:`gram_matrix`.
    The style image may differ in size from the content image. history: the total loss per step.
    """
    c0, _ = prepare_input(content)
    s0, _ = prepare_input(style)
    layers = list(content_layers) + list(style_layers)
    nc = len(content_layers)
    with torch.no_grad():
        with capture(model, layers) as store:
            model(c0)
            ctarget = [store[i].detach() for i in range(nc)]
        with capture(model, layers) as store:
            model(s0)
            starget = [gram_matrix(store[nc + i]).detach() for i in range(len(style_layers))]
    cnorm = [t.pow(2).sum().clamp_min(1e-12) for t in ctarget]
    snorm = [t.pow(2).sum().clamp_min(1e-12) for t in starget]
    x = (c0.clone() if init is None else prepare_input(init)[0].clone()).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    history = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        with torch.enable_grad(), capture(model, layers) as store:
            model(x)
            lc = sum((store[i] - t).pow(2).sum() / nrm for i, (t, nrm) in enumerate(zip(ctarget, cnorm)))
            ls = sum((gram_matrix(store[nc + i]) - t).pow(2).sum() / nrm
                     for i, (t, nrm) in enumerate(zip(starget, snorm)))
            loss = content_weight * lc + style_weight * ls
            if tv_weight:
                loss = loss + tv_weight * total_variation(x)
            loss.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
        history.append(float(loss.detach()))
    return Synthesis(x.detach(), history)
