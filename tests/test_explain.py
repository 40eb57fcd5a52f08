"""fastconv.explain: properties of the visualisation methods, and agreement with Captum.

Every check is against an independent reference: Captum's attributions on the same model and input, autograd
hooks on the ReLUs, the definition of the Gram matrix, a model's prediction after the attack, or the support of
an input gradient (for receptive fields).
"""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("sklearn")
explain = pytest.importorskip("fastconv.explain")
fnn = pytest.importorskip("fastconv.nn")
from fastconv.explain import demo  # noqa: E402

ATOL = 1e-5     # float32 gradients of the same network: fastconv kernels vs Captum's hooks on them


@pytest.fixture(autouse=True)
def _one_thread():
    """These models and batches are tiny: threads only add overhead (conftest restores the count)."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits():
    return demo.digits()


@pytest.fixture(scope="module")
def model():
    """LeNet-5 trained on the fly on the digits (seeded, cached for the module)."""
    return demo.digits_model(seed=0)


@pytest.fixture(scope="module")
def correct(model, digits):
    """40 test digits the model classifies correctly, with their labels."""
    _, _, x, y = digits
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    return x[ok][:40], y[ok][:40]


def _captum(name, model, *args, **kwargs):
    ca = pytest.importorskip("captum.attr")
    with warnings.catch_warnings():      # Captum warns that it sets requires_grad and hooks the ReLUs
        warnings.simplefilter("ignore")
        return getattr(ca, name)(model).attribute(*args, **kwargs)


def _relus(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.ReLU)]


# ------------------------------------------------------------------------------------ Captum agreement

def test_model_is_trained(model, digits):
    _, _, x, y = digits
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc > 0.9


@pytest.mark.parametrize("name", ["Saliency", "GuidedBackprop", "Deconvolution"])
def test_gradient_attributions_match_captum(model, correct, name):
    x, y = correct[0][:8], correct[1][:8]
    ours = getattr(explain, name)(model).attribute(x, target=y)
    theirs = _captum(name, model, x.clone(), target=y)
    assert ours.shape == x.shape
    assert theirs.abs().max() > 1e-3                      # not trivially zero
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=1e-4)
    # one int target for the whole batch, and a single unbatched image
    torch.testing.assert_close(getattr(explain, name)(model).attribute(x, target=3),
                               _captum(name, model, x.clone(), target=3), atol=ATOL, rtol=1e-4)
    one = getattr(explain, name)(model).attribute(x[0], target=int(y[0]))
    assert one.shape == x[0].shape
    torch.testing.assert_close(one, ours[0], atol=ATOL, rtol=1e-4)


def _torch_twin(model):
    """The same network (shared weights) with torch.nn's own Conv2d / MaxPool2d / ReLU instead of fastconv's."""
    twin = copy.deepcopy(model)
    for parent in list(twin.modules()):
        for name, m in list(parent.named_children()):
            if isinstance(m, fnn.Conv2d):
                t = torch.nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation)
                t.weight, t.bias = m.weight, m.bias
            elif isinstance(m, fnn.MaxPool2d):
                t = torch.nn.MaxPool2d(m.kernel_size, m.stride)
            elif isinstance(m, fnn.ReLU):
                t = torch.nn.ReLU()
            else:
                continue
            setattr(parent, name, t)
    assert not any(type(m).__module__.startswith("fastconv.nn") for m in twin.modules())
    return twin


@pytest.mark.parametrize("name", ["Saliency", "GuidedBackprop", "Deconvolution"])
def test_captum_on_torch_layers_matches_fastconv(model, correct, name):
    """Captum on a pure torch.nn twin (torch's kernels, Captum's ReLU hooks) against fastconv.explain on the
    fastconv model (fastconv's conv / pool / guided-relu kernels): independent implementations agree."""
    x, y = correct[0][:8], correct[1][:8]
    ours = getattr(explain, name)(model).attribute(x, target=y)
    theirs = _captum(name, _torch_twin(model), x.clone(), target=y)
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=1e-4)
    # a torch.nn model given to fastconv.explain (guided rules: on a copy converted to fastconv kernels)
    torch.testing.assert_close(getattr(explain, name)(_torch_twin(model)).attribute(x, target=y), ours,
                               atol=ATOL, rtol=1e-4)


def test_saliency_is_abs_gradient_and_shape(model, correct):
    x, y = correct[0][:4], correct[1][:4]
    s = explain.saliency(model, x, target=y)
    assert s.shape == x.shape and bool((s >= 0).all())
    leaf = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(leaf).gather(1, y[:, None]).sum(), leaf)
    torch.testing.assert_close(s, g.abs())
    torch.testing.assert_close(explain.saliency(model, x, target=y, abs=False), g)


@pytest.mark.parametrize("window,stride,baseline", [((1, 6, 6), (1, 4, 4), 0.5), ((1, 5, 5), 3, 0.0),
                                                     ((1, 8, 8), (1, 8, 8), 0.25)])
def test_occlusion_matches_captum(model, correct, window, stride, baseline):
    x, y = correct[0][:4], correct[1][:4]
    ours = explain.Occlusion(model).attribute(x, sliding_window_shapes=window, strides=stride,
                                              baselines=baseline, target=y)
    theirs = _captum("Occlusion", model, x, sliding_window_shapes=window, strides=stride, baselines=baseline,
                     target=y, perturbations_per_eval=64)
    assert ours.shape == x.shape
    assert theirs.abs().max() > 1e-2
    torch.testing.assert_close(ours, theirs, atol=ATOL * 10, rtol=1e-4)   # scores of order 10, summed


# ------------------------------------------------------------------------- guided backprop properties

@pytest.mark.parametrize("mode", ["guided", "deconvnet"])
def test_guided_never_passes_negative_gradient(model, correct, mode):
    """Hooks on every ReLU's input record what the ReLU passes backward: never negative under the guided and
    deconvnet rules, while plain backprop does pass negative gradients through the same ReLUs."""
    x, y = correct[0][:6], correct[1][:6]

    def passed_gradients(net):
        seen = []

        def fwd(_m, inp, _out):
            inp[0].register_hook(lambda g: seen.append(g.detach().clone()))
        handles = [m.register_forward_hook(fwd) for m in _relus(net)]
        leaf = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net(leaf).gather(1, y[:, None]).sum(), leaf)
        for h in handles:
            h.remove()
        return seen, g

    gm = explain.guided_model(model, mode)
    assert all(isinstance(m, fnn.GuidedReLU) and m.mode == mode for m in _relus(gm))
    seen, g = passed_gradients(gm)
    assert len(seen) == len(_relus(model)) == 4
    assert all(bool((s >= 0).all()) for s in seen)
    assert any(bool((s > 0).any()) for s in seen)
    fn = explain.guided_backprop if mode == "guided" else explain.deconvnet
    torch.testing.assert_close(fn(model, x, target=y), g)
    plain, _ = passed_gradients(model)
    assert any(bool((s < 0).any()) for s in plain)        # the property is not trivially true


def _lenet_variant(model, relu_style):
    """The same weights, with the ReLUs written the ways that break hook-based tools."""
    conv1, conv2 = model.features.conv1, model.features.conv2
    fc1, fc2, fc3 = model.classifier.fc1, model.classifier.fc2, model.classifier.fc3

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2, self.fc1, self.fc2, self.fc3 = conv1, conv2, fc1, fc2, fc3
            self.pool = torch.nn.MaxPool2d(2)
            self.act = torch.nn.ReLU(inplace=True)            # one in-place module used four times

        def forward(self, x):
            r = self.act if relu_style == "module" else (lambda t: F.relu(t, inplace=True))
            x = self.pool(r(self.conv1(model.standardize(x))))
            x = self.pool(r(self.conv2(x)))
            x = r(self.fc1(x.flatten(1)))
            return self.fc3(r(self.fc2(x)))
    return Net()


@pytest.mark.parametrize("relu_style", ["module", "functional"])
def test_guided_robust_to_inplace_reused_and_functional_relus(model, correct, relu_style):
    x, y = correct[0][:4], correct[1][:4]
    net = _lenet_variant(model, relu_style)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    types = [type(m) for m in net.modules()]
    x_user = x.clone().requires_grad_(True)
    x_user.grad = torch.full_like(x, 7.0)                 # a gradient the user already has
    for fn in (explain.guided_backprop, explain.deconvnet, explain.saliency):
        torch.testing.assert_close(fn(net, x_user, target=y), fn(model, x, target=y), atol=1e-6, rtol=1e-5)
    assert bool((x_user.grad == 7.0).all())               # not accumulated into
    assert [type(m) for m in net.modules()] == types      # the user's model is not modified
    assert net.act.inplace and not net.act._forward_hooks and not net.act._backward_hooks
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())


def test_guided_backprop_of_one_unit(model, correct):
    """layer= differentiates one unit: the gradient is zero outside its receptive field."""
    x = correct[0][:1]
    rf = explain.receptive_field(model, "features.relu2", (1, 32, 32))
    g = explain.guided_backprop(model, x, target=(3, 2, 4), layer="features.relu2")
    top, left = rf.start[0] + 2 * rf.jump[0], rf.start[1] + 4 * rf.jump[1]
    inside = torch.zeros_like(g, dtype=torch.bool)
    inside[..., max(top, 0):top + rf.size[0], max(left, 0):left + rf.size[1]] = True
    assert bool((g[~inside] == 0).all())


# ------------------------------------------------------------------------------------------ occlusion

@pytest.mark.parametrize("probability", [False, True])
def test_occlusion_of_salient_region_drops_score_more_than_blank_corner(model, correct, probability):
    """Grey 6x6 patches: over the window where the saliency is largest the class score (or probability)
    drops much more than over a blank corner, for nearly every digit and by far on average. (Saliency is a
    first-order guide, so a few digits may have a bigger drop elsewhere; 37 of these 40 pass per image.)"""
    x, y = correct
    window, stride = 6, 2
    drops = explain.occlusion_map(model, x, target=y, window=window, stride=stride, baseline=0.5,
                                  probability=probability)
    n = (32 - window) // stride + 1
    assert drops.shape == (len(x), n, n)
    sal = explain.saliency(model, x, target=y)
    # saliency summed over each occlusion window (the same grid): its argmax is the most salient region
    hot = F.avg_pool2d(sal, window, stride).flatten(1).argmax(1)
    corners = [(0, 0), (0, n - 1), (n - 1, 0), (n - 1, n - 1)]
    salient, blank = [], []
    for i in range(len(x)):
        for r, c in corners:   # the first blank corner of this digit
            if float(x[i, :, r * stride:r * stride + window, c * stride:c * stride + window].max()) < 0.02:
                salient.append(float(drops[i].flatten()[hot[i]]))
                blank.append(float(drops[i, r, c]))
                break
    assert len(salient) >= 30
    wins = sum(s > b for s, b in zip(salient, blank))
    assert wins >= 0.85 * len(salient), (wins, len(salient))
    mean_salient, mean_blank = sum(salient) / len(salient), sum(blank) / len(blank)
    assert mean_salient > 10 * max(mean_blank, 0.0) and mean_salient > (0.05 if probability else 1.0)


# --------------------------------------------------------------------------------- adversarial examples

def test_fgsm_flips_predictions_at_small_eps(model, correct):
    x, y = correct
    eps = 0.15                                              # pixels are in [0, 1]; eps 0.1 flips about half
    r = explain.fgsm(model, x, label=y, eps=eps)
    assert r.adversarial.shape == x.shape
    assert bool((r.original_pred == y).all())
    with torch.no_grad():
        assert torch.equal(r.new_pred, model(r.adversarial).argmax(1))
    assert float(r.linf.max()) <= eps + 1e-6
    torch.testing.assert_close(r.l2, (r.adversarial - x).flatten(1).norm(dim=1))
    flipped = r.flipped.float().mean().item()
    assert flipped >= 0.8
    # the gradient's sign matters: random signs of the same size flip far fewer
    noise = (x + eps * torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(0)).mul(2).sub(1))
    with torch.no_grad():
        random_flipped = (model(noise.clamp(0, 1)).argmax(1) != y).float().mean().item()
    assert random_flipped < 0.2


def test_targeted_attack_reaches_target_within_eps(model, correct):
    x, y = correct[0][:10], correct[1][:10]
    target = torch.where(y == 0, 1, 0)
    r = explain.targeted_attack(model, x, target, eps=0.3, step_size=0.02, steps=40)
    assert float(r.linf.max()) <= 0.3 + 1e-6
    assert float(r.adversarial.min()) >= 0 and float(r.adversarial.max()) <= 1
    assert (r.new_pred == target).float().mean().item() >= 0.8
    assert r.steps < 40                                      # stops once every example is there
    with torch.no_grad():
        assert torch.equal(r.new_pred, model(r.adversarial).argmax(1))


# ------------------------------------------------------------------------------- optimisation over images

def test_class_model_raises_score_monotonically(model):
    r = explain.class_model(model, list(range(10)), shape=(1, 32, 32), steps=12)     # one image per class
    assert r.image.shape == (10, 1, 32, 32)
    for cls in range(10):
        scores = [h[cls] for h in r.history]
        assert all(b > a for a, b in zip(scores, scores[1:])), (cls, scores)
        assert scores[-1] > scores[0] + 2
    one = explain.class_model(model, 3, shape=(1, 32, 32), steps=12)       # a batch is separate runs
    torch.testing.assert_close(torch.tensor(one.history), torch.tensor([h[3] for h in r.history]),
                               atol=1e-3, rtol=1e-4)
    r = explain.class_model(model, 3, steps=60)
    with torch.no_grad():
        out = model(r.image)
    assert int(out.argmax(1)) == 3
    assert float(out.softmax(1)[0, 3]) > 0.99


def test_gram_matrix_is_vtv():
    f = torch.randn(2, 5, 4, 3, dtype=torch.float64)
    v = f.reshape(2, 5, 12).transpose(1, 2)                 # (positions, channels)
    g = explain.gram_matrix(f, normalize=False)
    assert g.shape == (2, 5, 5)
    for n in range(2):
        torch.testing.assert_close(g[n], v[n].T @ v[n])
        assert float(torch.linalg.eigvalsh(g[n]).min()) > -1e-10   # symmetric positive semi-definite
    torch.testing.assert_close(explain.gram_matrix(f), g / 12)


@pytest.fixture(scope="module")
def cat():
    pytest.importorskip("skimage")
    return demo.natural_image("chelsea", 40)


def test_image_space_methods_improve_their_objectives(cat):
    im = demo.image_model()
    dream = explain.deep_dream(im, "relu3", cat, steps=5, lr=0.02, octaves=2)
    assert dream.image.shape == cat.shape and dream.history[-1] > 2 * dream.history[0]
    assert float(dream.image.min()) >= 0 and float(dream.image.max()) <= 1
    inv = explain.invert(im, "relu2", cat, steps=40)
    assert inv.image.shape == cat.shape and inv.history[-1] < 0.5 * inv.history[0]
    style = demo.natural_image("coffee", 32)                 # a style image of another size
    st = explain.style_transfer(im, cat, style, ["conv3"], ["relu1", "relu2"], steps=25, lr=0.02,
                                style_weight=10.0)
    assert st.image.shape == cat.shape and st.history[-1] < 0.5 * st.history[0]


# ------------------------------------------------------------------------------ filters and patches

def test_filters_are_unit_norm_maximisers(model):
    f = explain.filters(model)
    w = model.features.conv1.weight.detach()
    assert f.shape == w.shape
    torch.testing.assert_close(f.flatten(1).norm(dim=1), torch.ones(len(f)))
    # over unit-norm inputs, w.x is largest at x = w/||w||, where it equals ||w||
    rand = torch.randn(200, *w.shape[1:], generator=torch.Generator().manual_seed(1))
    rand = rand / rand.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    best = (w.flatten(1) * f.flatten(1)).sum(1)
    torch.testing.assert_close(best, w.flatten(1).norm(dim=1))
    assert bool(((rand.flatten(1) @ w.flatten(1).T) < best).all())


def test_receptive_field_matches_gradient_support():
    """The computed field is exactly the set of input pixels a unit's value depends on."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(fnn.Conv2d(2, 3, 3, padding=1), fnn.AvgPool2d(2),
                              fnn.Conv2d(3, 4, 3, stride=2, padding=2, dilation=2), fnn.AvgPool2d(3, 1))
    rf = explain.receptive_field(net, 3, (2, 23, 23))
    with torch.no_grad():
        assert rf.out_size == tuple(net(torch.zeros(1, 2, 23, 23)).shape[2:])
    for (i, j) in [(0, 0), (1, 2), (rf.out_size[0] - 1, rf.out_size[1] - 1)]:
        x = torch.rand(1, 2, 23, 23, requires_grad=True)
        (g,) = torch.autograd.grad(net(x)[0, 1, i, j], x)
        rows = g.abs().sum((0, 1, 3)).nonzero()[:, 0]
        cols = g.abs().sum((0, 1, 2)).nonzero()[:, 0]
        top, left = rf.start[0] + i * rf.jump[0], rf.start[1] + j * rf.jump[1]
        assert int(rows.min()) == max(top, 0) and int(rows.max()) == min(top + rf.size[0] - 1, 22)
        assert int(cols.min()) == max(left, 0) and int(cols.max()) == min(left + rf.size[1] - 1, 22)


def test_top_patches_are_the_strongest_units(model, digits):
    _, _, x, _ = digits
    x = x[:200]
    tp = explain.top_patches(model, "features.pool2", x, channels=[0, 5], k=4)
    assert tp.field.size == (16, 16) and tp.field.jump == (4, 4) and tp.field.start == (0, 0)
    assert tp.patches.shape == (2, 4, 1, 16, 16)
    acts = {}
    h = model.features.pool2.register_forward_hook(lambda m, i, o: acts.setdefault("a", o.detach()))
    with torch.no_grad():
        model(x)
    h.remove()
    a = acts["a"]
    for r, ch in enumerate(tp.channels):
        torch.testing.assert_close(tp.scores[r], a[:, ch].flatten().topk(4).values)
        for q in range(4):
            img, top, left = tp.locations[r, q].tolist()
            torch.testing.assert_close(tp.patches[r, q], x[img, :, top:top + 16, left:left + 16])


# ---------------------------------------------------------------------------------------------- CLI

def test_digits_model_loads_saved_lenet_weights(model, correct, tmp_path):
    """--weights: a LeNet-5 state dict (what `fastconv train` saves) loads behind the same standardisation."""
    path = tmp_path / "lenet5.pt"
    torch.save(model.state_dict(), path)
    loaded = demo.digits_model(weights=str(path))
    x = correct[0][:8]
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    torch.save({"features.conv1.weight": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="weights"):
        demo.digits_model(weights=str(tmp_path / "bad.pt"))


def test_cli_explain_writes_png_and_gallery(tmp_path):
    pytest.importorskip("matplotlib")
    from fastconv.cli import main
    from fastconv.explain import gallery

    assert main(["explain"]) == 2                            # neither a method nor --all
    out = tmp_path / "sal.png"
    assert main(["explain", "saliency", "--out", str(out), "--quick"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = gallery.write_all(str(tmp_path / "g"), gallery.Context(quick=True),
                             methods=("occlusion", "adversarial"), log=None)
    assert [r[0] for r in rows] == ["occlusion", "adversarial"]
    page = (tmp_path / "g" / "index.html").read_text()
    assert 'src="occlusion.png"' in page and (tmp_path / "g" / "adversarial.png").stat().st_size > 1000
