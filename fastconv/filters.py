"""The notes' hand-made image filters, run with :func:`fastconv.conv2d`.

Before kernels are learned, the notes convolve an image with hand-crafted 3x3
kernels:

* blur: all ones / 9 (each pixel becomes the mean of its 3x3 neighbourhood);
* sharpen: ``[[0, -1, 0], [-1, 5, -1], [0, -1, 0]]`` (the pixel plus 4x itself
  minus its four neighbours: the image plus its negative Laplacian);
* edge detect: ``[[1, 1, 1], [1, -8, 1], [1, 1, 1]]`` (zero on flat regions);
* and Sobel (not in the notes): horizontal and vertical gradients and their
  magnitude sqrt(gx^2 + gy^2).

``fastconv.conv2d`` computes the notes' formula, S[i, j] = sum_a sum_b
I[i + a, j + b] K[a, b] (cross-correlation, "the formula which looks at the
succeeding neighbours"), on a padded image so the kernel is centred on the
pixel of interest: out[i, j] = sum over a, b in {0, 1, 2} of
I[i + a - 1, j + b - 1] * K[a, b]. The first five kernels are symmetric, so
this equals the flipped-kernel convolution; for Sobel it fixes the sign:
sobel_x is positive where the image gets brighter to the right.

Images are numpy arrays: the functional API takes numpy in and gives numpy out,
so this module needs no torch. Colour images are filtered per channel (the
channels go through the batch axis). ``pad="reflect"`` (default) mirrors the
border; ``pad="zeros"`` is the notes' zero padding (which shows a frame on the
edge filters).
"""
from __future__ import annotations

import os

import numpy as np

__all__ = ["KERNELS", "apply_filter", "sobel_magnitude", "filter_bank", "load_image", "filter_grid"]

KERNELS: dict[str, np.ndarray] = {
    "blur": np.ones((3, 3)) / 9.0,
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float64),
    "edge": np.array([[1, 1, 1], [1, -8, 1], [1, 1, 1]], dtype=np.float64),
    "sobel_x": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64),
    "sobel_y": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float64),
}

TITLES = {
    "original": "original",
    "blur": "blur (ones / 9)",
    "sharpen": "sharpen",
    "edge": "edge detect (-8 centre)",
    "sobel_x": "Sobel x",
    "sobel_y": "Sobel y",
    "sobel": "Sobel magnitude",
}


def _as_kernel(kernel) -> np.ndarray:
    if isinstance(kernel, str):
        if kernel not in KERNELS:
            raise ValueError(f"unknown filter {kernel!r}; choose from {', '.join(KERNELS)}")
        kernel = KERNELS[kernel]
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        raise ValueError(f"a filter must be a 2-D kernel of odd size (to centre it), got shape {k.shape}")
    return k


def apply_filter(image: np.ndarray, kernel, pad: str = "reflect") -> np.ndarray:
    """Filter an H x W (grey) or H x W x C (colour) image with a 2-D kernel (a
    name from :data:`KERNELS` or an array) by fastconv.conv2d; same shape out,
    float64, values not clipped."""
    import fastconv

    k = _as_kernel(kernel)
    img = np.asarray(image, dtype=np.float64)
    if img.ndim not in (2, 3):
        raise ValueError(f"image must be H x W or H x W x C, got shape {img.shape}")
    planes = img[None] if img.ndim == 2 else np.moveaxis(img, -1, 0)      # C x H x W
    ph, pw = k.shape[0] // 2, k.shape[1] // 2
    x = planes[:, None, :, :]                                             # C x 1 x H x W: channels as the batch
    if pad == "reflect":
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), mode="reflect")
        padding = 0
    elif pad == "zeros":
        padding = (ph, pw)
    else:
        raise ValueError(f"pad must be 'reflect' or 'zeros', got {pad!r}")
    y = fastconv.conv2d(np.ascontiguousarray(x), np.ascontiguousarray(k[None, None]), None, 1, padding)
    y = np.asarray(y)[:, 0]
    return y[0] if img.ndim == 2 else np.moveaxis(y, 0, -1)


def sobel_magnitude(image: np.ndarray, pad: str = "reflect") -> np.ndarray:
    gx = apply_filter(image, "sobel_x", pad)
    gy = apply_filter(image, "sobel_y", pad)
    return np.sqrt(gx * gx + gy * gy)


def filter_bank(image: np.ndarray, pad: str = "reflect") -> dict[str, np.ndarray]:
    """The original and every filter of the notes plus Sobel, by name."""
    out = {"original": np.asarray(image, dtype=np.float64)}
    for name in ("blur", "sharpen", "edge", "sobel_x", "sobel_y"):
        out[name] = apply_filter(image, name, pad)
    out["sobel"] = np.sqrt(out["sobel_x"] ** 2 + out["sobel_y"] ** 2)
    return out


def load_image(path: str | None = None, gray: bool = True) -> tuple[np.ndarray, str]:
    """(image in [0, 1], description). No path: scikit-image's bundled
    ``camera`` (512 x 512 grey; ``astronaut`` in colour with ``gray=False``)."""
    from skimage import color, data, io, util

    if path is None:
        img, desc = (data.camera(), "scikit-image sample 'camera'") if gray else (
            data.astronaut(), "scikit-image sample 'astronaut'")
    else:
        if not os.path.exists(path):
            raise ValueError(f"--image: no such file: {path}")
        try:
            img = io.imread(path)
        except Exception as e:  # noqa: BLE001 - any unreadable image
            raise ValueError(f"--image: cannot read {path} as an image ({type(e).__name__}: {e})") from None
        desc = os.path.basename(path)
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[-1] == 4:
        img = color.rgba2rgb(img)
    if img.ndim == 3 and img.shape[-1] not in (1, 3):
        raise ValueError(f"image has an unexpected shape {img.shape} (expected H x W or H x W x 3)")
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    img = util.img_as_float64(img)
    if gray and img.ndim == 3:
        img = color.rgb2gray(img)
    return img, desc


def _display(name: str, v: np.ndarray) -> tuple[np.ndarray, dict]:
    """What to draw for a filter output: smoothing/sharpening clipped to [0, 1],
    edge responses as |value| scaled to their 99.5th percentile."""
    if name in ("original", "blur", "sharpen"):
        return np.clip(v, 0, 1), {"vmin": 0, "vmax": 1}
    a = np.abs(v)
    hi = float(np.percentile(a, 99.5)) or 1.0
    return np.clip(a / hi, 0, 1), {"vmin": 0, "vmax": 1}


def filter_grid(image: np.ndarray, out_png: str, title: str = "", pad: str = "reflect") -> dict[str, np.ndarray]:
    """Write a PNG grid of the original and its filtered versions; returns the filter bank."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    bank = filter_bank(image, pad)
    names = ["original", "blur", "sharpen", "edge", "sobel_x", "sobel"]
    fig, axes = plt.subplots(2, 3, figsize=(12, 8.4))
    for ax, name in zip(axes.flat, names):
        shown, kw = _display(name, bank[name])
        ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, **(kw if shown.ndim == 2 else {}))
        ax.set_title(TITLES[name])
        ax.axis("off")
    fig.suptitle(f"{title}: the notes' 3x3 filters with fastconv.conv2d" if title
                 else "the notes' 3x3 filters with fastconv.conv2d")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    d = os.path.dirname(os.path.abspath(out_png))
    os.makedirs(d, exist_ok=True)
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return bank
