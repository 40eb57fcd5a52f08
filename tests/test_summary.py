"""fastconv.summary: the notes' worked numbers, each against an independent hand
computation, and the notes' mistakes flagged."""
from __future__ import annotations

import argparse

import pytest
import torch

import fastconv
from fastconv._summary import ModelSummary, parse_input_size, summary


@pytest.fixture(scope="module")
def lenet() -> ModelSummary:
    return summary("lenet5")


@pytest.fixture(scope="module")
def alexnet() -> ModelSummary:
    return summary("alexnet", "3x227x227")


@pytest.fixture(scope="module")
def vgg() -> ModelSummary:
    return summary("vgg16")


def status(s: ModelSummary, fragment: str) -> str:
    hits = [c.status for c in s.checks if fragment in c.text]
    assert len(hits) == 1, f"{fragment!r} matches {hits} in {[c.text for c in s.checks]}"
    return hits[0]


def test_alexnet_conv1_227_to_55(alexnet):
    # the notes' exercise: (W1 - F + 2P)/S + 1 = (227 - 11 + 0)/4 + 1 = 55
    assert (227 - 11 + 2 * 0) // 4 + 1 == 55
    assert fastconv.conv_output_size(227, 11, stride=4) == 55
    row = alexnet.row("features.conv1")
    assert row.output == (96, 55, 55) and row.whd == "55x55x96"
    assert not row.inexact                       # 216 / 4 is exact
    # the notes then write D2 = 3: wrong, the depth is the number of filters (96)
    assert status(alexnet, "depth") == "WRONG"


def test_lenet5_numbers(lenet):
    c1, p1, c2, f1, f2 = (lenet.row(n) for n in ("features.conv1", "features.pool1", "features.conv2",
                                                 "classifier.fc1", "classifier.fc2"))
    assert c1.weights == 5 * 5 * 1 * 6 == 150 and c1.biases == 6 and c1.params == (5 * 5 * 1 + 1) * 6 == 156
    assert p1.params == 0 and p1.output == (6, 14, 14)
    assert c2.weights == (5 * 5 * 6) * 16 == 2400 and c2.params == (5 * 5 * 6 + 1) * 16 == 2416
    assert lenet.row("features.pool2").output == (16, 5, 5)        # flattened: 5*5*16 = 400
    assert f1.params == 400 * 120 + 120 == 48120
    assert f2.params == 120 * 84 + 84 == 10164
    assert all(c.status == "ok" for c in lenet.checks), [str(c) for c in lenet.checks]
    # FLOPs: 2 per multiply-accumulate plus a bias add per output
    assert c1.flops == 2 * (5 * 5 * 1) * 6 * 28 * 28 + 6 * 28 * 28


def test_alexnet_conv_weights(alexnet):
    conv2 = alexnet.row("features.conv2").weights
    conv3 = alexnet.row("features.conv3").weights
    conv4 = alexnet.row("features.conv4").weights
    assert conv2 == 5 * 5 * 96 * 256 == 614_400                  # ~0.6 M: right
    assert round(conv2 / 1e6, 1) == 0.6
    assert conv3 == 3 * 3 * 256 * 384 == 884_736                 # "~0.8 M": 0.88 M, truncated
    assert int(conv3 / 1e5) / 10 == 0.8 and round(conv3 / 1e6, 1) == 0.9
    assert conv4 == 3 * 3 * 384 * 384 == 1_327_104               # "~1.372 M": it is 1.327 M (~1.3 M right)
    assert round(conv4 / 1e6, 1) == 1.3 and round(conv4 / 1e6, 3) != 1.372
    assert status(alexnet, "conv2 (5*5*96)*256") == "ok"
    assert status(alexnet, "conv3 (3*3*256)*384") == "imprecise"
    assert status(alexnet, "conv4 (3*3*384)*384") == "WRONG"


def test_alexnet_totals_and_notes_variant(alexnet):
    notes = summary("alexnet_notes")
    # the notes' unpadded sizes 55 -> 27 -> 23 -> 11 -> 9 -> 7 -> 5 -> 2
    sizes = [notes.row(f"features.{n}").output[1] for n in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4",
                                                           "conv5", "pool5")]
    assert sizes == [55, 27, 23, 11, 9, 7, 5, 2]
    assert notes.row("classifier.fc6").weights == 2 * 2 * 256 * 4096         # "~4 M"
    conv = (11 * 11 * 3 + 1) * 96 + (5 * 5 * 96 + 1) * 256 + (3 * 3 * 256 + 1) * 384 + (3 * 3 * 384 + 1) * 384 \
        + (3 * 3 * 384 + 1) * 256
    fc = (4096 + 1) * 4096 + (4096 + 1) * 1000
    assert notes.total_params == conv + (1024 + 1) * 4096 + fc == 28_823_912   # notes: "27.55 M" -- wrong
    assert alexnet.total_params == conv + (9216 + 1) * 4096 + fc
    assert status(alexnet, "total") == "WRONG" and status(notes, "total") == "WRONG"


def test_vgg16_first_fc(vgg):
    fc6 = vgg.row("classifier.fc6")
    assert vgg.row("features.pool5").output == (512, 7, 7)
    assert fc6.weights == 512 * 7 * 7 * 4096 == 102_760_448       # "~102 M": right
    assert 102e6 <= fc6.weights < 103e6
    assert status(vgg, "first FC layer") == "ok"
    # conv layers "~16 M" (14.7 M) and FC "~122 M" with 4096*1024 (123.6 M, 4096*1000): wrong
    assert status(vgg, "conv layers") == "WRONG"
    assert status(vgg, "FC layers") == "WRONG"
    assert vgg.total_params == 138_357_544


def test_zfnet_differences():
    s = summary("zfnet")
    assert status(s, "layer 1") == "ok"                          # ((11^2 - 7^2)*3)*96 = 20,736
    assert status(s, "layer 5") == "ok"                          # (3*3*256)*(512-384) = 294,912
    assert status(s, "layer 7") == "WRONG"                       # 3*3*(1024*512 - 384*256) = 3,833,856, not 0.36 M
    assert s.row("features.conv5").weights - 3 * 3 * 384 * 256 == 3 * 3 * (1024 * 512 - 384 * 256)


def test_table_text(alexnet):
    text = alexnet.table()
    assert "55x55x96" in text and "34,848" in text
    assert "[WRONG]" in text and "1,327,104" in text
    assert f"{alexnet.total_params:,}" in text
    assert str(alexnet) == text


def test_inexact_division_is_marked():
    # 224 with 11x11/4: (224 - 11)/4 + 1 = 54.25 -> 54
    s = summary("alexnet", (3, 224, 224))
    r = s.row("features.conv1")
    assert r.output[1:] == (54, 54) and r.inexact
    assert "54x54x96*" in s.table()
    assert any("assume" in c.text for c in s.checks)           # the notes' checks need 227


def test_user_model_object():
    import fastconv.nn as fnn

    model = torch.nn.Sequential(fnn.Conv2d(3, 8, 3, stride=2, padding=1), fnn.ReLU(), fnn.MaxPool2d(2),
                                fnn.Conv1x1(8, 4), torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 5))
    s = summary(model, (3, 15, 15))
    assert [r.output for r in s.rows if not r.hidden] == [(8, 8, 8), (8, 4, 4), (4, 4, 4), (5,)]
    assert s.total_params == sum(p.numel() for p in model.parameters())
    assert s.total_weights == 8 * 3 * 9 + 4 * 8 + 64 * 5 and s.total_biases == 8 + 4 + 5
    assert s.checks == []


def test_parse_input_size():
    assert parse_input_size("3x227x227") == (3, 227, 227)
    assert parse_input_size((1, 3, 32, 32)) == (3, 32, 32)
    assert parse_input_size((28, 28)) == (1, 28, 28)
    with pytest.raises(ValueError, match="did you mean 3x227x227"):
        parse_input_size("227x227x3")
    with pytest.raises(ValueError):
        parse_input_size("abc")


def test_callable_as_package_attribute():
    assert callable(fastconv.summary)
    assert fastconv.summary("lenet5").total_params == 61706


def test_cli(capsys):
    from fastconv.commands import summary as cmd

    parser = argparse.ArgumentParser()
    cmd.register(parser.add_subparsers())
    args = parser.parse_args(["summary", "alexnet", "--input", "3x227x227"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "55x55x96" in out and "[WRONG]" in out
    args = parser.parse_args(["summary", "--list"])
    assert args.func(args) == 0
    assert "resnet_small" in capsys.readouterr().out
    args = parser.parse_args(["summary", "alexnet", "--input", "227x227x3"])
    assert args.func(args) == 2
