"""fastconv.models: registry, architecture (every conv/pool/relu a fastconv layer),
parameter counts against independent figures, and the fastconv network against
its torch.nn twin on the same weights."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import fastconv.models as M
from fastconv.models._common import load_twin_state

# torch.nn layer types that must not appear in a fastconv-backed model
TORCH_ONLY = (nn.Conv2d, nn.Conv1d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.ReLU)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(name, **kw) -> nn.Module:
    with torch.device("meta"):
        return M.get(name, **kw)


def test_registry():
    names = M.list_models()
    for n in ("lenet5", "alexnet", "zfnet", "vgg16", "googlenet", "resnet18", "resnet34", "resnet50", "resnet_small"):
        assert n in names
    assert names == sorted(names)
    assert M.canonical_name("LeNet") == "lenet5"
    with pytest.raises(ValueError, match="unknown model"):
        M.get("nope")
    with pytest.raises(TypeError):
        M.get("lenet5", bogus=1)


@pytest.mark.parametrize("name", M.list_models())
def test_every_conv_pool_relu_is_fastconv(name):
    import fastconv.nn as fnn

    model = meta_model(name)
    kinds = set()
    for mod_name, m in model.named_modules():
        if isinstance(m, TORCH_ONLY):
            assert type(m).__module__ == fnn.__name__, f"{name}.{mod_name} is {type(m)} (not a fastconv layer)"
            kinds.add(type(m).__name__)
        if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride == (1, 1):
            assert isinstance(m, fnn.Conv1x1), f"{name}.{mod_name}: a 1x1 stride-1 conv should be a Conv1x1"
    assert {"Conv2d", "ReLU"} <= kinds
    if name in ("googlenet", "resnet50"):
        assert "Conv1x1" in kinds


@pytest.mark.parametrize("name,classes", [("lenet5", 10), ("alexnet", 1000), ("alexnet_notes", 1000),
                                          ("zfnet", 1000), ("vgg16", 1000), ("googlenet", 1000),
                                          ("resnet18", 1000), ("resnet50", 1000), ("resnet_small", 10)])
def test_output_shapes(name, classes):
    """The torch twin on the meta device (no memory, no arithmetic) at the canonical input."""
    c, h, w = M.info(name).input_size
    with torch.device("meta"):
        model = M.get(name, backend="torch")
    assert tuple(model(torch.zeros(2, c, h, w, device="meta")).shape) == (2, classes)


def test_parameter_counts():
    # LeNet-5 by hand: (5*5*1+1)*6 + (5*5*6+1)*16 + (400+1)*120 + (120+1)*84 + (84+1)*10
    assert n_params(meta_model("lenet5")) == 156 + 2416 + 48120 + 10164 + 850 == 61706
    # AlexNet (single tower), layer by layer: (F*F*D + 1) * K, then FC (in + 1) * out
    convs = (11 * 11 * 3 + 1) * 96 + (5 * 5 * 96 + 1) * 256 + (3 * 3 * 256 + 1) * 384 + (3 * 3 * 384 + 1) * 384 \
        + (3 * 3 * 384 + 1) * 256
    fcs = lambda flat: (flat + 1) * 4096 + (4096 + 1) * 4096 + (4096 + 1) * 1000  # noqa: E731
    assert n_params(meta_model("alexnet")) == convs + fcs(6 * 6 * 256)
    assert n_params(meta_model("alexnet_notes")) == convs + fcs(2 * 2 * 256)
    # published figures (torchvision's models are the same networks)
    assert n_params(meta_model("vgg16")) == 138_357_544
    assert n_params(meta_model("resnet18")) == 11_689_512
    assert n_params(meta_model("resnet34")) == 21_797_672
    assert n_params(meta_model("resnet50")) == 25_557_032
    assert n_params(meta_model("resnet_small")) == 272_474   # ResNet-20, "0.27 M" in He et al. Table 6


def test_constructor_arguments():
    m = M.get("lenet5", num_classes=3, in_channels=3, input_size=28)
    assert m.features.conv1.in_channels == 3 and m.classifier.fc3.out_features == 3
    assert m.classifier.fc1.in_features == 16 * 4 * 4          # 28 -> 24 -> 12 -> 8 -> 4
    assert M.get("resnet_small", num_classes=7, in_channels=1, depth=8).fc.out_features == 7
    with pytest.raises(ValueError, match="too small"):
        M.get("alexnet", input_size=32)
    with pytest.raises(ValueError, match="6n"):
        M.get("resnet_small", depth=21)
    g = M.Inception(32, 8, 4, 8, 2, 4, 4)
    assert g.out_channels == 24


def _compare(fc_model: nn.Module, build_twin, x: torch.Tensor, train_mode: bool = False, atol: float = 1e-4):
    twin = build_twin()
    load_twin_state(twin, fc_model)
    fc_model.train(train_mode)
    twin.train(train_mode)
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    ya, yb = fc_model(xa), twin(xb)
    torch.testing.assert_close(ya, yb, atol=atol, rtol=1e-4)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    torch.testing.assert_close(xa.grad, xb.grad, atol=atol, rtol=1e-3)
    pa = dict(fc_model.named_parameters())
    for k, p in twin.named_parameters():
        torch.testing.assert_close(pa[k].grad, p.grad, atol=atol * 10, rtol=1e-3, msg=lambda m: f"{k}: {m}")


def test_lenet5_matches_torch_twin():
    _compare(M.get("lenet5"), lambda: M.get("lenet5", backend="torch"), torch.randn(3, 1, 32, 32))


def test_inception_block_matches_torch_twin():
    cfg = (16, 8, 4, 8, 2, 4, 4)
    _compare(M.Inception(*cfg), lambda: M.Inception(*cfg, backend="torch"), torch.randn(2, 16, 9, 9),
             train_mode=True)


def test_bottleneck_matches_torch_twin():
    _compare(M.Bottleneck(16, 8, stride=2), lambda: M.Bottleneck(16, 8, stride=2, backend="torch"),
             torch.randn(2, 16, 10, 10), train_mode=True)


def test_resnet_small_matches_torch_twin():
    _compare(M.get("resnet_small", depth=8), lambda: M.get("resnet_small", depth=8, backend="torch"),
             torch.randn(2, 3, 32, 32))


@pytest.mark.slow
def test_googlenet_forward_small_input():
    model = M.get("googlenet", num_classes=5).eval()
    twin = M.get("googlenet", num_classes=5, backend="torch").eval()
    load_twin_state(twin, model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), twin(x), atol=1e-4, rtol=1e-4)
