"""fastconv.train and fastconv.data: a short training run, the .npz loader, and
DistributedDataParallel (2 processes, gloo) against one process with the
combined batch."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import fastconv.models as M
from fastconv.data import load_digits, load_npz
from fastconv.train import TrainConfig, random_shift, train

QUIET = dict(progress=False, plot=False)


def test_digits_dataset():
    ds = load_digits()
    assert ds.x_train.shape == (1437, 1, 32, 32) and ds.x_test.shape == (360, 1, 32, 32)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert abs(float(ds.x_train.mean())) < 1e-4 and abs(float(ds.x_train.std()) - 1) < 1e-4
    assert sorted(np.unique(ds.y_test)) == list(range(10))          # stratified
    again = load_digits()
    assert np.array_equal(ds.y_test, again.y_test) and np.array_equal(ds.x_test, again.x_test)  # fixed split


def test_short_training_run(tmp_path):
    """Two epochs of LeNet-5 on the digits (about 90% test accuracy; the
    default 12 reach about 99%), fastconv and its torch twin."""
    r = train(TrainConfig(epochs=2, out=str(tmp_path), progress=False, threads=1), log=lambda *a: None)
    fc, tt = r.history["fastconv"], r.history["torch"]
    assert len(fc.test_acc) == len(tt.test_acc) == 2
    assert fc.final_acc >= 0.80, fc.test_acc
    assert tt.final_acc >= 0.80, tt.test_acc
    assert fc.loss[-1] < fc.loss[0]
    # same initial weights and batches: the first epoch's losses agree closely
    assert fc.loss[0] == pytest.approx(tt.loss[0], rel=1e-3)
    assert all(t > 0 for t in fc.epoch_time + tt.epoch_time)
    # the weights load into a fresh model, the plot is a PNG
    fresh = M.get("lenet5")
    fresh.load_state_dict(torch.load(r.files["weights"], weights_only=True))
    with open(r.files["plot"], "rb") as f:
        assert f.read(4) == b"\x89PNG"


def test_random_shift():
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5)
    assert torch.equal(random_shift(x, 0, torch.Generator()), x)
    y = random_shift(x, 1, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    z = random_shift(x, 1, torch.Generator().manual_seed(0))
    assert torch.equal(y, z)


# --------------------------------------------------------------------------
# the .npz loader
# --------------------------------------------------------------------------
def test_npz_loader_nhw_uint8(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.random((30, 12, 12)) * 255).astype(np.uint8)
    y = np.repeat(np.arange(3), 10)
    p = tmp_path / "d.npz"
    np.savez(p, x=x, y=y)
    ds = load_npz(p)
    assert ds.x_train.shape[1:] == (1, 12, 12) and ds.num_classes == 3
    assert len(ds.y_train) + len(ds.y_test) == 30 and len(ds.y_test) == 6
    assert ds.x_train.dtype == np.float32 and abs(float(ds.x_train.mean())) < 1e-5
    assert sorted(np.unique(ds.y_test)) == [0, 1, 2]                   # stratified


def test_npz_loader_nchw_names_and_test_split(tmp_path):
    rng = np.random.default_rng(1)
    p = tmp_path / "c.npz"
    np.savez(p, x=rng.random((8, 3, 6, 6)).astype(np.float32), y=np.array(["cat", "dog"] * 4),
             x_test=rng.random((4, 3, 6, 6)).astype(np.float32), y_test=np.array(["dog", "cat", "dog", "dog"]))
    ds = load_npz(p)
    assert ds.classes == ["cat", "dog"] and ds.num_classes == 2 and ds.in_channels == 3
    assert ds.y_test.tolist() == [1, 0, 1, 1] and len(ds.y_train) == 8


@pytest.mark.parametrize("arrays,match", [
    (dict(x=np.zeros((10, 8, 8))), r"missing key\(s\) \['y'\]"),
    (dict(x=np.zeros((10, 8)), y=np.zeros(10, int)), "N x C x H x W or N x H x W"),
    (dict(x=np.zeros((10, 8, 8)), y=np.zeros(9, int)), "9 labels but the images have 10"),
    (dict(x=np.zeros((10, 8, 8, 3)), y=np.arange(10) % 2), "channels last"),
    (dict(x=np.full((10, 8, 8), np.nan), y=np.arange(10) % 2), "NaN"),
    (dict(x=np.zeros((10, 8, 8)), y=np.arange(10) - 1), ">= 0"),
    (dict(x=np.zeros((10, 8, 8)), y=np.arange(10) % 2, x_test=np.zeros((2, 8, 8))), "both x_test and y_test"),
    (dict(x=np.zeros((10, 8, 8)), y=np.zeros((10, 2))), "one-hot"),
    (dict(x=np.zeros((10, 8, 8)), y=np.zeros(10, int)), "at least 2 classes"),
])
def test_npz_loader_errors(tmp_path, arrays, match):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(ValueError, match=match):
        load_npz(p)


def test_npz_loader_not_a_file(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_npz(tmp_path / "missing.npz")
    p = tmp_path / "junk.npz"
    p.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="npz"):
        load_npz(p)


def test_train_on_npz_via_cli(tmp_path, capsys):
    """A user's 2-class 1x20x20 data set through `fastconv train --data`: the
    model adapts its input channels, size and classes."""
    rng = np.random.default_rng(2)
    y = np.arange(60) % 2
    x = rng.normal(size=(60, 20, 20)).astype(np.float32) * 0.3
    x[y == 1, 5:15, 8:12] += 2.0                                      # class 1: a bright bar
    p = tmp_path / "bars.npz"
    np.savez(p, x=x, y=y)
    from fastconv.commands import train as cmd

    parser = argparse.ArgumentParser()
    cmd.register(parser.add_subparsers())
    out = tmp_path / "run"
    args = parser.parse_args(["train", "--data", str(p), "--epochs", "3", "--batch-size", "8", "--out", str(out),
                              "--no-compare", "--no-progress"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "2 classes" in text and "1x20x20" in text and "test accuracy" in text
    assert (out / "lenet5.pt").exists() and (out / "lenet5_curves.png").exists()
    args = parser.parse_args(["train", "--data", str(tmp_path / "nope.npz"), "--out", str(out)])
    assert args.func(args) == 2


# --------------------------------------------------------------------------
# DistributedDataParallel
# --------------------------------------------------------------------------
@pytest.mark.slow
def test_ddp_matches_one_process_with_the_combined_batch(tmp_path):
    """`torchrun --nproc_per_node=2 -m fastconv train --distributed` (gloo, CPU):
    after two steps on global batches of 33 (shards of 16 and 17) the weights
    equal one process's trained on the same 33-sample batches."""
    steps, batch = 2, 33
    ddp_out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "fastconv", "train", "--distributed", "--epochs", "1", "--batch-size", str(batch),
           "--max-steps", str(steps), "--no-compare", "--no-progress", "--out", str(ddp_out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 processes (DDP, gloo)" in proc.stdout
    ddp = torch.load(ddp_out / "lenet5.pt", weights_only=True)

    single = train(TrainConfig(epochs=1, batch_size=batch, max_steps=steps, compare=False,
                               out=str(tmp_path / "one"), **QUIET), log=lambda *a: None)
    one = single.model.state_dict()
    torch.manual_seed(0)
    init = M.get("lenet5").state_dict()
    assert ddp.keys() == one.keys()
    for k in one:
        assert not torch.equal(one[k], init[k]), f"{k} did not move"
        torch.testing.assert_close(ddp[k], one[k], atol=1e-6, rtol=1e-5, msg=lambda m: f"{k}: {m}")
