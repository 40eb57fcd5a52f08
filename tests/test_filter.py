"""fastconv.filters: output pixels against hand computations."""
from __future__ import annotations

import argparse
import os

import numpy as np
import pytest

from fastconv.filters import KERNELS, apply_filter, filter_grid, load_image, sobel_magnitude

# a 5x5 image with no structure a wrong index could hide behind
IMG = np.array([[3, 1, 4, 1, 5],
                [9, 2, 6, 5, 3],
                [5, 8, 9, 7, 9],
                [3, 2, 3, 8, 4],
                [6, 2, 6, 4, 3]], dtype=np.float64)


def test_blur_pixel_by_hand():
    # pixel (2, 2): mean of rows 1..3, cols 1..3 = (2+6+5 + 8+9+7 + 2+3+8) / 9 = 50 / 9
    assert apply_filter(IMG, "blur")[2, 2] == pytest.approx(50 / 9, abs=1e-12)
    # pixel (1, 3): rows 0..2, cols 2..4 = (4+1+5 + 6+5+3 + 9+7+9) / 9 = 49 / 9
    assert apply_filter(IMG, "blur")[1, 3] == pytest.approx(49 / 9, abs=1e-12)


def test_sharpen_and_edge_pixel_by_hand():
    # sharpen (2, 2): 5*9 - (6 + 3 + 8 + 7) = 45 - 24 = 21
    assert apply_filter(IMG, "sharpen")[2, 2] == pytest.approx(21, abs=1e-12)
    # edge (2, 1): neighbours 9+2+6 + 5+9 + 3+2+3 = 39, minus 8*8 = -25
    assert apply_filter(IMG, "edge")[2, 1] == pytest.approx(-25, abs=1e-12)


def test_sobel_pixel_by_hand():
    # neighbourhood of (2, 2): rows 1..3, cols 1..3 = [[2, 6, 5], [8, 9, 7], [2, 3, 8]]
    # sobel_x: right column (5, 7, 8) weighted 1, 2, 1 minus left column (2, 8, 2)
    #   = (5 + 14 + 8) - (2 + 16 + 2) = 27 - 20 = 7
    assert apply_filter(IMG, "sobel_x")[2, 2] == pytest.approx(7, abs=1e-12)
    # sobel_y (2, 2): bottom row (2, 3, 8) minus top row (2, 6, 5), weighted 1, 2, 1
    #   = (2 + 6 + 8) - (2 + 12 + 5) = 16 - 19 = -3
    assert apply_filter(IMG, "sobel_y")[2, 2] == pytest.approx(-3, abs=1e-12)
    assert sobel_magnitude(IMG)[2, 2] == pytest.approx(np.sqrt(7 ** 2 + 3 ** 2), abs=1e-12)


def test_padding_at_the_corner():
    # zero padding (the notes'): blur (0, 0) = (3 + 1 + 9 + 2) / 9
    assert apply_filter(IMG, "blur", pad="zeros")[0, 0] == pytest.approx(15 / 9, abs=1e-12)
    # reflect: the missing row/column mirror row 1 / column 1:
    # rows (1, 0, 1) x cols (1, 0, 1) -> 2+9+2 + 1+3+1 + 2+9+2 = 31
    assert apply_filter(IMG, "blur")[0, 0] == pytest.approx(31 / 9, abs=1e-12)


def test_colour_is_per_channel():
    rgb = np.stack([IMG, 2 * IMG, IMG[::-1]], axis=-1)
    out = apply_filter(rgb, "sharpen")
    assert out.shape == rgb.shape
    assert out[2, 2, 0] == pytest.approx(21) and out[2, 2, 1] == pytest.approx(42)
    np.testing.assert_allclose(out[..., 2], apply_filter(IMG[::-1], "sharpen"), atol=1e-12)


def test_kernels_are_the_notes():
    assert np.allclose(KERNELS["blur"] * 9, np.ones((3, 3)))
    assert KERNELS["sharpen"].sum() == 1 and KERNELS["edge"].sum() == 0 and KERNELS["edge"][1, 1] == -8
    with pytest.raises(ValueError):
        apply_filter(IMG, "nope")
    with pytest.raises(ValueError):
        apply_filter(IMG, np.ones((2, 2)))


def test_grid_png_and_cli(tmp_path):
    from skimage import io

    # the bundled sample loads without a download
    img, desc = load_image()
    assert img.ndim == 2 and img.min() >= 0 and img.max() <= 1 and "camera" in desc
    # a user's file through the CLI
    src = tmp_path / "in.png"
    rng = np.random.default_rng(0)
    io.imsave(src, (rng.random((24, 20, 3)) * 255).astype(np.uint8), check_contrast=False)
    out = tmp_path / "grid.png"
    from fastconv.commands import filter as cmd

    parser = argparse.ArgumentParser()
    cmd.register(parser.add_subparsers())
    args = parser.parse_args(["filter", "--image", str(src), "--out", str(out)])
    assert args.func(args) == 0
    assert out.exists() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    args = parser.parse_args(["filter", "--image", str(tmp_path / "missing.png")])
    assert args.func(args) == 2
    bank = filter_grid(IMG / 9, os.fspath(tmp_path / "small.png"))
    assert set(bank) >= {"original", "blur", "sharpen", "edge", "sobel"}
