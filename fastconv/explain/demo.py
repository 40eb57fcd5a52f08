"""Small models and data for the explain methods, built from fastconv layers on CPU in seconds.

* digits: sklearn's 8x8 digits upsampled to 32x32, pixels in [0, 1] (fastconv.data's split when installed).
* digits_model: LeNet-5 (behind a fixed standardisation, so it takes [0, 1] pixels) trained on them on the
  fly, seeded (about 97% test accuracy in a few seconds); ``weights=`` loads ``fastconv train``'s instead.
* image_model: a small CNN for natural images, first layer from k-means on whitened image patches (edge and
  colour detectors, as learned first layers look), deeper layers random; no download, no training.
* natural_image: scikit-image's bundled astronaut / chelsea / coffee at a small size.
"""
from __future__ import annotations

import copy
import functools
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["DigitsNet", "Standardize", "digits", "digits_cnn", "digits_model", "image_model", "natural_image"]


@functools.lru_cache(maxsize=4)
def _digits(size: int, seed: int):
    """(x_train, y_train, x_test, y_test) in [0, 1], and the training set's (mean, std)."""
    try:
        from fastconv.data import load_digits      # the split `fastconv train` uses
    except ImportError:
        load_digits = None
    if load_digits is not None:
        d = load_digits(size=size, seed=seed)
        mean, std = float(d.mean[0]), float(d.std[0])
        to01 = lambda a: torch.from_numpy(a * std + mean).float().clamp(0, 1)   # undo the standardising
        return (to01(d.x_train), torch.from_numpy(d.y_train).long(), to01(d.x_test),
                torch.from_numpy(d.y_test).long()), (mean, std)
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = len(y) // 5
    te, tr = perm[:n_test], perm[n_test:]
    return (x[tr], y[tr], x[te], y[te]), (float(x[tr].mean()), float(x[tr].std()))


def digits(size: int = 32, seed: int = 0):
    """(x_train, y_train, x_test, y_test): the sklearn digits upsampled to (N, 1, size, size), pixels in [0, 1]
    (fastconv.data's seeded 80/20 split, un-standardised, when it is installed)."""
    return tuple(t.clone() for t in _digits(size, seed)[0])


class Standardize(torch.nn.Module):
    """(x - mean) / std with fixed numbers: lets a model trained on standardised digits take [0, 1] pixels."""

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.mean, self.std = float(mean), float(std)

    def forward(self, x):
        return (x - self.mean) / self.std

    def extra_repr(self):
        return f"mean={self.mean:.4f}, std={self.std:.4f}"


def _lenet5():
    try:
        from fastconv.models import lenet5
        return lenet5(num_classes=10, in_channels=1, input_size=32)
    except (ImportError, AttributeError):
        pass
    import fastconv.nn as fnn

    class LeNet5(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = torch.nn.Sequential(OrderedDict([
                ("conv1", fnn.Conv2d(1, 6, 5)), ("relu1", fnn.ReLU()), ("pool1", fnn.MaxPool2d(2, 2)),
                ("conv2", fnn.Conv2d(6, 16, 5)), ("relu2", fnn.ReLU()), ("pool2", fnn.MaxPool2d(2, 2))]))
            self.flatten = torch.nn.Flatten()
            self.classifier = torch.nn.Sequential(OrderedDict([
                ("fc1", torch.nn.Linear(400, 120)), ("relu3", fnn.ReLU()), ("fc2", torch.nn.Linear(120, 84)),
                ("relu4", fnn.ReLU()), ("fc3", torch.nn.Linear(84, 10))]))

        def forward(self, x):
            return self.classifier(self.flatten(self.features(x)))

    return LeNet5()


class DigitsNet(torch.nn.Module):
    """LeNet-5 behind a fixed standardisation, so that it takes digits with pixels in [0, 1] (the space where
    adversarial eps, clipping and synthesised images make sense). Submodules: ``standardize``, ``features``
    (conv1, relu1, pool1, conv2, relu2, pool2), ``flatten``, ``classifier`` (fc1, relu3, fc2, relu4, fc3); the
    convolutions, pools and ReLUs are fastconv's. ``lenet`` is the LeNet-5 whose state dict ``fastconv train``
    saves."""

    def __init__(self, mean: float, std: float, lenet=None):
        super().__init__()
        lenet = _lenet5() if lenet is None else lenet
        self.standardize = Standardize(mean, std)
        self.features, self.flatten, self.classifier = lenet.features, lenet.flatten, lenet.classifier

    def forward(self, x):
        return self.classifier(self.flatten(self.features(self.standardize(x))))

    def load_lenet_state_dict(self, state):
        try:
            self.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"weights: not a LeNet-5 state dict for 1x32x32 digits: {e}") from None


def digits_cnn(seed: int = 0) -> torch.nn.Module:
    """An untrained :class:`DigitsNet` (LeNet-5, fastconv.models' when available) with the digits' statistics."""
    mean, std = _digits(32, seed)[1]
    return DigitsNet(mean, std)


@functools.lru_cache(maxsize=2)
def _trained(seed: int, epochs: int):
    threads = torch.get_num_threads()
    # one thread: for batches this small, more threads cost more than they give (and much more on a busy
    # machine); the global RNG is left as it was
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = digits_cnn(seed)
        xtr, ytr, _, _ = _digits(32, seed)[0]
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        gen = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            perm = torch.randperm(len(ytr), generator=gen)
            for i in range(0, len(perm), 32):
                idx = perm[i:i + 32]
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def digits_model(seed: int = 0, epochs: int = 4, weights: str | None = None) -> torch.nn.Module:
    """A trained :class:`DigitsNet` in eval mode, taking [0, 1] pixels (a fresh copy each call; the training,
    about 97% test accuracy in a few seconds on one core, is cached per process).

    weights: a LeNet-5 state dict written by ``fastconv train`` (``runs/lenet5.pt``), loaded instead of
    training; its standardisation is that of the split with the run's seed (read from the metrics JSON next
    to it when there is one, else ``seed``).
    """
    if weights is not None:
        import json
        import os

        metrics = os.path.join(os.path.dirname(weights) or ".",
                               os.path.splitext(os.path.basename(weights))[0] + "_metrics.json")
        if os.path.exists(metrics):
            with open(metrics) as f:
                seed = int(json.load(f).get("config", {}).get("seed", seed))
        model = digits_cnn(seed)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_lenet_state_dict(state.get("state_dict", state))
        return model.eval()
    model = copy.deepcopy(_trained(seed, epochs))
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def natural_image(name: str = "chelsea", size: int = 96) -> torch.Tensor:
    """One of scikit-image's bundled images (astronaut, chelsea, coffee, ...) as a (1, 3, size, size) tensor in
    [0, 1]: centre-cropped to a square, then resized with antialiasing."""
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    h, w = img.shape[:2]
    s = min(h, w)
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s, :3]
    x = torch.tensor(np.ascontiguousarray(img), dtype=torch.float32).permute(2, 0, 1).unsqueeze(0) / 255.0
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def _kmeans_filters(k: int, size: int, seed: int) -> torch.Tensor:
    """k first-layer filters (k, 3, size, size): k-means centroids of contrast-normalised, ZCA-whitened patches
    of the bundled images (Coates & Ng 2011), mapped back through the whitening: edge and colour detectors."""
    gen = np.random.default_rng(seed)
    patches = []
    for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field"):
        try:
            x = natural_image(name, 128)[0].numpy()
        except Exception:                 # an image missing from an older scikit-image
            continue
        for _ in range(2000):
            i, j = gen.integers(0, 128 - size, 2)
            patches.append(x[:, i:i + size, j:j + size].ravel())
    p = np.array(patches, dtype=np.float64)
    p = (p - p.mean(1, keepdims=True)) / np.sqrt(p.var(1, keepdims=True) + 0.01)
    mean = p.mean(0)
    u, s, _ = np.linalg.svd(np.cov((p - mean).T))
    zca = u @ np.diag(1.0 / np.sqrt(s + 0.1)) @ u.T
    pw = (p - mean) @ zca
    c = pw[gen.choice(len(pw), k, replace=False)]
    for _ in range(15):                                  # spherical k-means
        c /= np.linalg.norm(c, axis=1, keepdims=True) + 1e-12
        assign = np.argmax(np.abs(pw @ c.T), axis=1)
        proj = pw @ c.T
        for j in range(k):
            m = assign == j
            if m.any():
                c[j] = (proj[m, j:j + 1] * pw[m]).sum(0)
    w = c @ zca                                             # filters acting on unwhitened patches
    w /= np.linalg.norm(w, axis=1, keepdims=True) + 1e-12
    return torch.tensor(w, dtype=torch.float32).reshape(k, 3, size, size)


@functools.lru_cache(maxsize=2)
def _image_model(seed: int):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = _image_cnn()
    with torch.no_grad():
        model.conv1.weight.copy_(_kmeans_filters(16, 5, seed))
        model.conv1.bias.zero_()
    model.eval()
    return model


def _image_cnn():
    import fastconv.nn as fnn

    return torch.nn.Sequential(OrderedDict([
        ("conv1", fnn.Conv2d(3, 16, 5, padding=2)), ("relu1", fnn.ReLU()), ("pool1", fnn.MaxPool2d(2)),
        ("conv2", fnn.Conv2d(16, 32, 3, padding=1)), ("relu2", fnn.ReLU()), ("pool2", fnn.MaxPool2d(2)),
        ("conv3", fnn.Conv2d(32, 64, 3, padding=1)), ("relu3", fnn.ReLU()),
        ("conv4", fnn.Conv2d(64, 64, 3, padding=1)), ("relu4", fnn.ReLU()),
    ]))


def image_model(seed: int = 0) -> torch.nn.Module:
    """Four conv layers (conv1..conv4, relu1..relu4, pool1, pool2) for (1, 3, H, W) images in [0, 1]."""
    return copy.deepcopy(_image_model(seed))
