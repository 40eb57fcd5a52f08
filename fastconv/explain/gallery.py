"""Pictures of every explain method (one PNG each) and an HTML page showing them; used by
``fastconv explain``. Needs matplotlib. Models: the digits LeNet-5 (trained on the fly, seeded, or loaded
with ``weights=``) and the small natural-image CNN of :mod:`fastconv.explain.demo`."""
from __future__ import annotations

import html
import os
import time

import numpy as np
import torch

from . import demo
from .adversarial import fgsm, targeted_attack
from .attribution import deconvnet, guided_backprop, occlusion_map, saliency
from ._common import capture
from .features import filters, receptive_field, top_patches
from .synthesis import class_model, deep_dream, invert, style_transfer

__all__ = ["METHODS", "CAPTIONS", "Context", "render", "write_all"]

METHODS = ("filters", "top-patches", "occlusion", "saliency", "guided-backprop", "class-model", "inversion",
           "deep-dream", "style-transfer", "adversarial")

CAPTIONS = {
    "filters": "First-layer filters as images, w/||w|| (the unit-norm input each neuron likes best): the "
               "digits LeNet-5 (top) and the natural-image CNN, whose first layer is k-means on whitened patches.",
    "top-patches": "For six channels of LeNet-5's second conv layer (after ReLU), the test-set patches that "
                   "excite them most, each cut to the unit's receptive field computed from the layer geometry.",
    "occlusion": "Occlusion: drop of the true class probability (middle) and score (bottom) as an 8x8 grey "
                 "patch slides over the digit (stride 2); bright = the region the prediction depends on.",
    "saliency": "Saliency |d score / d input|: the vanilla gradient of the true class score.",
    "guided-backprop": "Vanilla gradient, guided backprop (fastconv's guided-ReLU kernel) and deconvnet, for "
                       "digits (class score) and for the cat (one relu4 unit of the natural-image CNN, shown "
                       "over its receptive field).",
    "class-model": "Class model visualisation: from a (nearly) zero image, gradient ascent on "
                   "S_c(I) - 0.05 ||I||^2 (plus a light blur every 4 steps), one image per digit class, with the "
                   "final score and probability.",
    "inversion": "Feature inversion: images whose embedding at each layer matches the original's "
                 "(||Phi(x) - Phi_0||^2 + alpha-norm + TV, Adam); deeper layers keep less.",
    "deep-dream": "Deep dream: gradient ascent on ||h||^2 of a layer, from the astronaut, with jitter and octaves.",
    "style-transfer": "Style transfer: content loss at conv3 plus Gram-matrix style loss at relu1-relu4, "
                      "optimising the image from the content.",
    "adversarial": "Adversarial examples: FGSM (eps = 0.15, pixels in [0, 1]; rows 2-3) and a targeted "
                   "iterative attack to class 0 (eps <= 0.3, row 4), with predictions, probabilities and "
                   "perturbation sizes.",
}


class Context:
    """Lazily built models and data shared by the pictures."""

    def __init__(self, seed: int = 0, weights: str | None = None, size: int = 96, quick: bool = False):
        self.seed, self.weights, self.size, self.quick = seed, weights, size, quick
        self._digits_model = self._data = self._image_model = None

    @property
    def digits_model(self):
        if self._digits_model is None:
            self._digits_model = demo.digits_model(seed=self.seed, weights=self.weights)
        return self._digits_model

    @property
    def data(self):
        if self._data is None:
            self._data = demo.digits()
        return self._data

    @property
    def image_model(self):
        if self._image_model is None:
            self._image_model = demo.image_model(self.seed)
        return self._image_model

    def steps(self, n):
        return max(2, n // 5) if self.quick else n

    def examples(self, k=4):
        """k correctly classified test digits of different classes."""
        _, _, x, y = self.data
        with torch.no_grad():
            pred = self.digits_model(x).argmax(1)
        out, seen = [], set()
        for i in range(len(y)):
            if pred[i] == y[i] and int(y[i]) not in seen:
                seen.add(int(y[i]))
                out.append(i)
            if len(out) == k:
                break
        return x[out], y[out]


# ------------------------------------------------------------------------------------------ drawing

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _img(t):
    """(C, H, W) or (H, W) tensor -> array for imshow."""
    a = t.detach().cpu().float().numpy()
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))
    return a


def _show(ax, t, title=None, cmap="gray", vmin=None, vmax=None, signed=False):
    a = _img(t)
    if signed:
        m = max(float(np.abs(a).max()), 1e-12)
        a = 0.5 + 0.5 * a / m
        vmin, vmax = 0, 1
    elif a.ndim == 3:
        a = np.clip(a, 0, 1)
    ax.imshow(a, cmap=None if a.ndim == 3 else cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def _grid(plt, rows, cols, cell=1.3):
    fig, axes = plt.subplots(rows, cols, figsize=(cols * cell, rows * cell + 0.2), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes


def _on(ax):
    ax.axis("on")
    ax.set_xticks([])
    ax.set_yticks([])


def _norm01(a):
    a = a - a.min()
    return a / max(float(a.max()), 1e-12)


# -------------------------------------------------------------------------------------------- pictures

def _filters(ctx, plt):
    f1 = filters(ctx.digits_model)
    f2 = filters(ctx.image_model)
    cols = max(len(f1), 8)
    rows = 1 + (len(f2) + cols - 1) // cols
    fig, axes = _grid(plt, rows, cols, 0.9)
    for i, w in enumerate(f1):
        _on(axes[0, i])
        _show(axes[0, i], w, f"{i}" if i else "digits 0", signed=True)
    for i, w in enumerate(f2):
        ax = axes[1 + i // cols, i % cols]
        _on(ax)
        _show(ax, 0.5 + 0.5 * w / w.abs().max())
    return fig, f"digits: {tuple(f1.shape)}, image CNN: {tuple(f2.shape)} unit-norm filters"


def _top_patches(ctx, plt):
    _, _, x, _ = ctx.data
    model = ctx.digits_model
    tp = top_patches(model, "features.relu2", x, channels=range(6), k=8)
    fig, axes = _grid(plt, len(tp.channels), tp.patches.shape[1], 0.8)
    for r, ch in enumerate(tp.channels):
        for c in range(tp.patches.shape[1]):
            _on(axes[r, c])
            _show(axes[r, c], tp.patches[r, c], vmin=0, vmax=1)
        axes[r, 0].set_ylabel(f"ch {ch}", fontsize=8)
    f = tp.field
    return fig, f"receptive field {f.size[0]}x{f.size[1]}, jump {f.jump[0]}, on a {f.out_size} map"


def _occlusion(ctx, plt):
    xs, ys = ctx.examples(4)
    model = ctx.digits_model
    prob = occlusion_map(model, xs, target=ys, window=8, stride=2, baseline=0.5)
    score = occlusion_map(model, xs, target=ys, window=8, stride=2, baseline=0.5, probability=False)
    fig, axes = _grid(plt, 3, len(xs), 1.4)
    for i in range(len(xs)):
        _show(axes[0, i], xs[i], f"digit {int(ys[i])}", vmin=0, vmax=1)
        _show(axes[1, i], prob[i], f"prob. drop <= {float(prob[i].max()):.2f}", cmap="inferno")
        _show(axes[2, i], score[i], f"score drop <= {float(score[i].max()):.1f}", cmap="inferno")
    return fig, (f"{tuple(prob.shape[1:])} windows per image; mean largest probability drop "
                 f"{float(prob.amax((1, 2)).mean()):.2f}, score drop {float(score.amax((1, 2)).mean()):.1f}")


def _saliency(ctx, plt):
    xs, ys = ctx.examples(4)
    s = saliency(ctx.digits_model, xs, target=ys)
    fig, axes = _grid(plt, 2, len(xs), 1.4)
    for i in range(len(xs)):
        _show(axes[0, i], xs[i], f"digit {int(ys[i])}", vmin=0, vmax=1)
        _show(axes[1, i], s[i].amax(0), cmap="inferno")
    return fig, f"saliency of {len(xs)} digits, shape {tuple(s.shape)}"


def _guided(ctx, plt):
    xs, ys = ctx.examples(3)
    m = ctx.digits_model
    cols = [("input", xs), ("gradient", saliency(m, xs, ys, abs=False)),
            ("guided backprop", guided_backprop(m, xs, ys)), ("deconvnet", deconvnet(m, xs, ys))]
    # one unit of the image CNN's last layer, on the cat: its strongest unit of its most active channel,
    # shown over the unit's receptive field (the gradient is zero outside it)
    img = demo.natural_image("chelsea", ctx.size)
    im = ctx.image_model
    with torch.no_grad(), capture(im, ["relu4"]) as store:
        im(img)
        act = store[0][0]
    ch = int(act.amax((1, 2)).argmax())
    uy, ux = divmod(int(act[ch].argmax()), act.shape[2])
    rf = receptive_field(im, "relu4", tuple(img.shape[1:]))
    top = min(max(rf.start[0] + uy * rf.jump[0], 0), img.shape[2] - rf.size[0])
    left = min(max(rf.start[1] + ux * rf.jump[1], 0), img.shape[3] - rf.size[1])
    crop = (slice(None), slice(top, top + rf.size[0]), slice(left, left + rf.size[1]))
    unit = (ch, uy, ux)
    cat = [img[0], saliency(im, img, unit, abs=False, layer="relu4")[0],
           guided_backprop(im, img, unit, layer="relu4")[0], deconvnet(im, img, unit, layer="relu4")[0]]
    fig, axes = _grid(plt, len(xs) + 1, 4, 1.5)
    for c, (name, t) in enumerate(cols):
        for r in range(len(xs)):
            _show(axes[r, c], t[r], name if r == 0 else None, signed=c > 0, vmin=0 if c == 0 else None,
                  vmax=1 if c == 0 else None)
    for c, t in enumerate(cat):
        a = t[crop]
        _show(axes[-1, c], a if c == 0 else 0.5 + 0.5 * a / a.abs().max().clamp_min(1e-12),
              f"relu4 unit, {rf.size[0]}px field" if c == 0 else None)
    return fig, f"digits (class score) and relu4 unit {unit} of the image CNN over its {rf.size[0]}px field"


def _class_model(ctx, plt):
    m = ctx.digits_model
    r = class_model(m, list(range(10)), shape=(1, 32, 32), steps=ctx.steps(150), lr=0.2, l2=0.05,
                    blur_every=4, blur_sigma=0.7)
    with torch.no_grad():
        p = m(r.image).softmax(1)
    fig, axes = _grid(plt, 2, 5, 1.3)
    for c in range(10):
        _show(axes[c // 5, c % 5], r.image[c], f"{c}: S={r.history[-1][c]:.0f} p={float(p[c, c]):.2f}",
              signed=True)
    return fig, f"final class scores {min(r.history[-1]):.0f}..{max(r.history[-1]):.0f}"


def _inversion(ctx, plt):
    img = demo.natural_image("chelsea", ctx.size)
    im = ctx.image_model
    layers = ["conv1", "relu1", "pool1", "relu2", "relu3", "relu4"]
    fig, axes = _grid(plt, 1, len(layers) + 1, 1.5)
    _show(axes[0, 0], img[0], "original")
    dists = []
    for i, layer in enumerate(layers):
        r = invert(im, layer, img, steps=ctx.steps(150))
        dists.append(r.history[-1])
        _show(axes[0, i + 1], r.image[0], f"{layer} ({r.history[-1]:.2f})")
    return fig, "relative feature distances " + ", ".join(f"{d:.3f}" for d in dists)


def _deep_dream(ctx, plt):
    img = demo.natural_image("astronaut", int(ctx.size * 4 / 3))
    im = ctx.image_model
    fig, axes = _grid(plt, 1, 3, 2.4)
    _show(axes[0, 0], img[0], "astronaut")
    out = []
    for i, layer in enumerate(["relu2", "relu3"]):
        r = deep_dream(im, layer, img, steps=ctx.steps(12), lr=0.01, octaves=3)
        out.append((layer, r.history[0], r.history[-1]))
        _show(axes[0, i + 1], r.image[0], f"dream {layer}")
    return fig, "; ".join(f"{l}: ||h||^2 {a:.3g} -> {b:.3g}" for l, a, b in out)


def _style(ctx, plt):
    content = demo.natural_image("chelsea", ctx.size)
    style = demo.natural_image("coffee", ctx.size)
    r = style_transfer(ctx.image_model, content, style, ["conv3"], ["relu1", "relu2", "relu3", "relu4"],
                       steps=ctx.steps(200), lr=0.02, style_weight=10.0)
    fig, axes = _grid(plt, 1, 3, 2.0)
    _show(axes[0, 0], content[0], "content")
    _show(axes[0, 1], style[0], "style")
    _show(axes[0, 2], r.image[0], "result")
    return fig, f"loss {r.history[0]:.3g} -> {r.history[-1]:.3g}"


def _adversarial(ctx, plt):
    xs, ys = ctx.examples(4)
    m = ctx.digits_model
    a = fgsm(m, xs, ys, eps=0.15)
    t = targeted_attack(m, xs, 0, eps=0.3, step_size=0.01, steps=ctx.steps(60))
    fig, axes = _grid(plt, 4, len(xs), 1.4)
    for i in range(len(xs)):
        _show(axes[0, i], xs[i], f"{int(a.original_pred[i])} ({float(a.original_prob[i]):.2f})", vmin=0, vmax=1)
        _show(axes[1, i], a.adversarial[i], f"FGSM: {int(a.new_pred[i])} ({float(a.new_prob[i]):.2f})",
              vmin=0, vmax=1)
        _show(axes[2, i], a.perturbation[i], f"|d|inf {float(a.linf[i]):.2f}", signed=True)
        _show(axes[3, i], t.adversarial[i], f"to 0: {int(t.new_pred[i])} |d|inf {float(t.linf[i]):.2f}",
              vmin=0, vmax=1)
    return fig, (f"FGSM eps 0.15 flipped {int(a.flipped.sum())}/{len(xs)}; targeted: "
                 f"{int((t.new_pred == 0).sum())}/{len(xs)} reached class 0 in {t.steps} steps, "
                 f"mean L2 {float(t.l2.mean()):.2f}")


_MAKERS = {"filters": _filters, "top-patches": _top_patches, "occlusion": _occlusion, "saliency": _saliency,
           "guided-backprop": _guided, "class-model": _class_model, "inversion": _inversion,
           "deep-dream": _deep_dream, "style-transfer": _style, "adversarial": _adversarial}


def render(method: str, path: str, ctx: Context | None = None, dpi: int = 80) -> str:
    """Draw one method's picture to ``path`` (PNG); returns a one-line summary of what was computed."""
    if method not in _MAKERS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    plt = _plt()
    ctx = ctx or Context()
    fig, summary = _MAKERS[method](ctx, plt)
    fig.suptitle(method, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return summary


def write_all(out_dir: str, ctx: Context | None = None, methods=METHODS, log=print) -> list:
    """Every method's PNG in ``out_dir`` plus index.html showing them with captions; returns the rows
    (method, file, summary, seconds)."""
    os.makedirs(out_dir, exist_ok=True)
    ctx = ctx or Context()
    rows = []
    for method in methods:
        t0 = time.perf_counter()
        summary = render(method, os.path.join(out_dir, f"{method}.png"), ctx)
        dt = time.perf_counter() - t0
        rows.append((method, f"{method}.png", summary, dt))
        if log:
            log(f"{method:16s} {dt:6.1f}s  {summary}")
    items = "\n".join(
        f'<figure><img src="{html.escape(f)}" alt="{html.escape(m)}"><figcaption><b>{html.escape(m)}</b>: '
        f"{html.escape(CAPTIONS[m])}<br><small>{html.escape(s)} ({dt:.1f} s)</small></figcaption></figure>"
        for m, f, s, dt in rows)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>fastconv explain gallery</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}} figure{{margin:1.5em 0}}
img{{max-width:100%;border:1px solid #ddd}} figcaption{{font-size:90%}}</style></head>
<body><h1>Seeing inside a CNN with fastconv</h1>
<p>Generated by <code>fastconv explain --all</code>: every picture computed on fastconv's kernels on CPU.</p>
{items}
</body></html>
"""
    with open(os.path.join(out_dir, "index.html"), "w", encoding="utf-8") as f:
        f.write(page)
    return rows
