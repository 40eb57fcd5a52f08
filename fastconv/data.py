"""Data for ``fastconv train``: the bundled handwritten digits, or a user's .npz.

* :func:`load_digits`: scikit-learn's 1,797 8x8 grey digits (``sklearn.datasets.load_digits``,
  shipped with scikit-learn, no download), upsampled to 32x32 (bilinear, as
  torch's ``interpolate(..., align_corners=False)``) so LeNet-5 sees its
  32x32x1 input; a fixed stratified 80/20 split (1,437 train / 360 test) by ``seed``.
* :func:`load_npz`: a user's own images: an .npz with ``x`` (N x C x H x W or
  N x H x W) and ``y`` (N labels: integers 0..K-1, or any values, e.g. strings,
  which are mapped to 0..K-1 in sorted order), optionally ``x_test``/``y_test``
  for a given test set (else a fixed 80/20 split by ``seed``). Integer pixels
  are scaled by 1/255. Every problem raises ValueError naming the key and what
  was expected. Make one from MNIST or CIFAR already on disk with
  ``np.savez("mnist.npz", x=images, y=labels)``.

Both return a :class:`Dataset` of float32 N x C x H x W arrays standardised
with the training set's per-channel mean and std. numpy and scikit-learn only.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Dataset", "load_digits", "load_npz", "resize_bilinear", "split_indices"]


@dataclass
class Dataset:
    x_train: np.ndarray          # float32, N x C x H x W, standardised
    y_train: np.ndarray          # int64, N
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    name: str
    classes: list = field(default_factory=list)
    mean: np.ndarray | None = None   # per channel, before standardising
    std: np.ndarray | None = None

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def input_size(self) -> tuple[int, int]:
        return int(self.x_train.shape[2]), int(self.x_train.shape[3])

    def describe(self) -> str:
        h, w = self.input_size
        return (f"{self.name}: {len(self.y_train):,} train / {len(self.y_test):,} test images, "
                f"{self.in_channels}x{h}x{w}, {self.num_classes} classes")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) linear interpolation weights, half-pixel centres (align_corners=False)."""
    a = np.zeros((n_out, n_in), dtype=np.float64)
    scale = n_in / n_out
    for i in range(n_out):
        src = max((i + 0.5) * scale - 0.5, 0.0)
        i0 = min(int(np.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        t = src - i0
        a[i, i0] += 1.0 - t
        a[i, i1] += t
    return a


def resize_bilinear(images: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear resize of the last two axes of ``images`` (any leading axes)."""
    h_out, w_out = (size, size) if isinstance(size, int) else size
    ah = _interp_matrix(images.shape[-2], h_out)
    aw = _interp_matrix(images.shape[-1], w_out)
    return np.einsum("ih,...hw,jw->...ij", ah, images.astype(np.float64), aw)


def split_indices(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed (seeded) train/test split, stratified when every class has two or more samples."""
    from sklearn.model_selection import train_test_split

    n = len(y)
    idx = np.arange(n)
    _, counts = np.unique(y, return_counts=True)
    stratify = y if counts.min() >= 2 and round(n * test_fraction) >= len(counts) else None
    tr, te = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=stratify)
    return np.sort(tr), np.sort(te)


def _standardise(x_train: np.ndarray, x_test: np.ndarray):
    mean = x_train.mean(axis=(0, 2, 3), dtype=np.float64)
    std = x_train.std(axis=(0, 2, 3), dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    m = mean.reshape(1, -1, 1, 1)
    s = std.reshape(1, -1, 1, 1)
    return (((x_train - m) / s).astype(np.float32), ((x_test - m) / s).astype(np.float32),
            mean.astype(np.float32), std.astype(np.float32))


# --------------------------------------------------------------------------
# the bundled digits
# --------------------------------------------------------------------------
def load_digits(size: int = 32, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits upsampled to ``size`` x ``size``, fixed split."""
    from sklearn.datasets import load_digits as _load

    d = _load()
    images = d.images.astype(np.float64) / 16.0               # (1797, 8, 8) in [0, 1]
    if size != 8:
        images = resize_bilinear(images, size)
    x = images[:, None, :, :]
    y = d.target.astype(np.int64)
    tr, te = split_indices(y, test_fraction, seed)
    x_tr, x_te, mean, std = _standardise(x[tr], x[te])
    return Dataset(x_tr, y[tr], x_te, y[te], num_classes=10, name=f"digits ({size}x{size})",
                   classes=[str(i) for i in range(10)], mean=mean, std=std)


# --------------------------------------------------------------------------
# a user's .npz
# --------------------------------------------------------------------------
def _images(x, key: str, path: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise ValueError(f"{path}: '{key}' must hold numbers (pixel values), got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[:, None, :, :]
    elif x.ndim == 4:
        n, c, h, w = x.shape
        if c > 4 and w <= 4:
            raise ValueError(f"{path}: '{key}' has shape {x.shape}, which looks like N x H x W x C (channels last); "
                             f"fastconv wants N x C x H x W: save x.transpose(0, 3, 1, 2)")
    else:
        raise ValueError(f"{path}: '{key}' must be N x C x H x W or N x H x W (one channel), got shape {x.shape}")
    if 0 in x.shape:
        raise ValueError(f"{path}: '{key}' is empty (shape {x.shape})")
    if np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
        hi = int(x.max())
        x = x.astype(np.float64) / (255.0 if hi <= 255 else float(hi))
    else:
        x = x.astype(np.float64)
        if not np.isfinite(x).all():
            bad = int((~np.isfinite(x)).sum())
            raise ValueError(f"{path}: '{key}' contains {bad} NaN or infinite value(s)")
    return x


def _labels(y, key: str, n: int, path: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and 1 in y.shape:
        y = y.reshape(-1)
    if y.ndim != 1:
        raise ValueError(f"{path}: '{key}' must be a 1-D array of N class labels, got shape {y.shape}"
                         + (" (one-hot? save y.argmax(1))" if y.ndim == 2 else ""))
    if len(y) != n:
        raise ValueError(f"{path}: '{key}' has {len(y)} labels but the images have {n}")
    return y


def _encode(y_train: np.ndarray, y_test: np.ndarray | None, path: str):
    """Integer labels 0..K-1 stay as they are (K = max + 1); anything else is
    mapped to 0..K-1 in sorted order."""
    ys = [y_train] if y_test is None else [y_train, y_test]
    if all(np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.bool_) for v in ys) or all(
            np.issubdtype(v.dtype, np.floating) and np.isfinite(v).all() and (v == np.round(v)).all() for v in ys):
        ints = [v.astype(np.int64) for v in ys]
        lo = min(int(v.min()) for v in ints)
        if lo < 0:
            raise ValueError(f"{path}: labels must be >= 0 (class indices), found {lo}")
        k = max(int(v.max()) for v in ints) + 1
        return ints[0], (ints[1] if y_test is not None else None), k, [str(i) for i in range(k)]
    if any(np.issubdtype(v.dtype, np.floating) for v in ys):
        raise ValueError(f"{path}: labels must be class indices or names, got non-integer numbers "
                         f"(e.g. {ys[0][np.argmax(ys[0] != np.round(ys[0]))]!r})")
    classes = np.unique(np.concatenate([v.astype(str) for v in ys]))
    enc = [np.searchsorted(classes, v.astype(str)).astype(np.int64) for v in ys]
    return enc[0], (enc[1] if y_test is not None else None), len(classes), [str(c) for c in classes]


def load_npz(path: str | os.PathLike, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """Load a user's images for ``fastconv train --data PATH`` (see the module docstring)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"--data: no such file: {path}")
    try:
        archive = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise ValueError(f"{path}: cannot read it without pickle ({e}); save plain arrays with np.savez") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file
        raise ValueError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: expected an .npz archive (np.savez(path, x=..., y=...)), got a single .npy array")
    with archive:
        keys = set(archive.files)
        missing = {"x", "y"} - keys
        if missing:
            raise ValueError(f"{path}: missing key(s) {sorted(missing)}; found {sorted(keys) or 'none'}. Expected "
                             f"x (N x C x H x W or N x H x W images) and y (N labels)")
        has_test = {"x_test", "y_test"} & keys
        if has_test and has_test != {"x_test", "y_test"}:
            raise ValueError(f"{path}: give both x_test and y_test, or neither (found only {sorted(has_test)})")
        x = _images(archive["x"], "x", path)
        y = _labels(archive["y"], "y", len(x), path)
        if has_test:
            xt = _images(archive["x_test"], "x_test", path)
            yt = _labels(archive["y_test"], "y_test", len(xt), path)
            if xt.shape[1:] != x.shape[1:]:
                raise ValueError(f"{path}: x_test images are {xt.shape[1:]} but x images are {x.shape[1:]}")
        else:
            xt = yt = None
    y, yt, k, classes = _encode(y, yt, path)
    if k < 2:
        raise ValueError(f"{path}: need at least 2 classes, the labels hold {k}")
    if xt is None:
        if len(x) < 5:
            raise ValueError(f"{path}: need at least 5 images to split off a test set, got {len(x)}")
        tr, te = split_indices(y, test_fraction, seed)
        x, xt, y, yt = x[tr], x[te], y[tr], y[te]
    x_tr, x_te, mean, std = _standardise(x, xt)
    name = os.path.basename(path)
    return Dataset(x_tr, y, x_te, yt, num_classes=k, name=name, classes=classes, mean=mean, std=std)
