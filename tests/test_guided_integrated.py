"""Guided Backpropagation, Guided Grad-CAM and Integrated Gradients: exact values on tiny hand-built nets, agreement
with Captum and pytorch-grad-cam on the course model, a ResNet-18 and the real network, completeness, the model
left as found.

Conventions aligned for the comparisons (utils/explain/guided.py and integrated.py say why):
* Guided Backprop: Captum ``GuidedBackprop`` and grad-cam ``GuidedBackpropReLUModel`` give the ``[N, 3, H, W]``
  gradient; ours before the channel reduction (``guided_gradients``). Captum hooks ``nn.ReLU`` only, so on the real
  network (ReLU6) it runs on ``relu6_as_relu(net)``, the same function with ReLU6 seen as a ReLU.
* Guided Grad-CAM: Captum ``GuidedGradCam(interpolate_mode="bilinear")`` (the paper's upsampling; Captum's default
  is nearest), reduced like ours.
* Integrated Gradients: Captum ``IntegratedGradients(method="riemann_*")``, same steps and ``internal_batch_size``,
  summed over channels; ``fold=False`` (the model's own arithmetic). Captum's trapezoid weights sum to (m − 1)/m.
"""
import copy
import warnings

import pytest
import torch
from captum.attr import GuidedBackprop, GuidedGradCam, IntegratedGradients
from pytorch_grad_cam import GuidedBackpropReLUModel
from torch import nn

from utils import photos
from utils.data import load_split
from utils.explain import gradcam, guided_backprop, guided_gradcam, integrated_gradients, saliency
from utils.explain.guided import guided_gradients, relu6_as_relu
from utils.explain.integrated import _blur, path_points
from utils.models import OrcaLeopardNet

REL = 1e-4


def close(a, b, rel=REL):
    return float((a - b).abs().max()) <= rel * float(b.abs().max()) + 1e-12


@pytest.fixture(scope="module")
def images():
    return load_split("test_swapped", 4).images


@pytest.fixture(autouse=True)
def _quiet_captum():
    with warnings.catch_warnings():  # Captum warns that it sets backward hooks on ReLU modules
        warnings.simplefilter("ignore")
        yield


def predicted(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


# ------------------------------------------------------------------ exact values on a hand-built net
class Tiny(nn.Module):
    """1×1 conv (3 → 2 channels, weights W) → activation → global average pooling → linear (2 → 2, weights V)."""

    def __init__(self, act: nn.Module):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)
        self.act = act
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [-1.0, 0.5, 2.0]]).view(2, 3, 1, 1))
            self.classifier.weight.copy_(torch.tensor([[2.0, -3.0], [-1.0, 1.5]]))

    def forward(self, x):
        return self.classifier(self.pool(self.act(self.conv(x))).flatten(1))


@pytest.mark.parametrize("act, low, high", [(nn.ReLU(), 0, float("inf")), (nn.ReLU(inplace=True), 0, float("inf")),
                                            (nn.ReLU6(), 0, 6), (nn.ReLU6(inplace=True), 0, 6)],
                         ids=["ReLU", "ReLU in place", "ReLU6", "ReLU6 in place"])
def test_guided_gradient_is_the_rule_written_out(act, low, high):
    """∂y_c/∂x[ch] = Σ_k W[k, ch] · 1[low < z_k < high] · max(V[c, k], 0) / (H·W): positive gradients only, through
    the rectifier's own derivative (ReLU6: zero above 6 as well)."""
    torch.manual_seed(0)
    tiny = Tiny(act).eval()
    x = torch.randn(2, 3, 5, 5) * 4  # z spans well past 0 and 6
    z = tiny.conv(x)
    assert ((z > 6).any() and (z < 0).any())
    W, V = tiny.conv.weight.view(2, 3), tiny.classifier.weight
    for c in (0, 1):
        gate = ((z > low) & (z < high)).float() * V[c].clamp(min=0).view(1, 2, 1, 1) / 25  # [N, k, H, W]
        expected = torch.einsum("nkhw,kc->nchw", gate, W)
        got, t = guided_gradients(tiny, x, c)
        assert torch.allclose(got, expected, atol=1e-6) and t.tolist() == [c, c]
        plain = torch.einsum("nkhw,kc->nchw", ((z > low) & (z < high)).float() * V[c].view(1, 2, 1, 1) / 25, W)
        assert not torch.allclose(got, plain, atol=1e-3)  # the negative weight V[c, k] is cut: not the plain gradient
        assert torch.allclose(guided_backprop(tiny, x, c), expected.abs().amax(1), atol=1e-6)


def test_other_activations_are_refused_or_passed_with_their_gradient_as_captum_does(images):
    tiny = Tiny(nn.Sequential(nn.ReLU(), nn.SiLU())).eval()
    x = torch.randn(2, 3, 5, 5)
    with pytest.raises(ValueError, match=r"defined for rectifiers.*SiLU at 'act.1'.*others='gradient'"):
        guided_backprop(tiny, x)
    got, t = guided_gradients(tiny, x, 0, others="gradient")
    ref = GuidedBackprop(tiny).attribute(x.clone().requires_grad_(), target=0)
    assert close(got, ref)
    functional = nn.Sequential(nn.Conv2d(3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    with pytest.raises(ValueError, match=r"no nn.ReLU or nn.ReLU6 module.*F.relu"):
        guided_backprop(functional, x)


# ------------------------------------------------------------------ agreement with Captum and grad-cam
@pytest.mark.parametrize("which", ["model", "resnet"])
def test_guided_backprop_matches_captum_and_grad_cam(which, request, images):
    """The course model (ReLU) and a ResNet-18 (one in-place ReLU module used twice per block)."""
    model = request.getfixturevalue(which)
    for target in (None, 1):
        got, t = guided_gradients(model, images, target)
        ref = GuidedBackprop(model).attribute(images.clone().requires_grad_(), target=t)
        assert close(got, ref)
        assert close(guided_backprop(model, images, target), ref.abs().amax(1))
        package = GuidedBackpropReLUModel(copy.deepcopy(model), device="cpu")  # it rewrites the model's ReLUs
        for i in (0, 3):
            theirs = torch.from_numpy(package(images[i:i + 1].clone(), int(t[i]))).permute(2, 0, 1)
            assert close(got[i], theirs)
    assert not close(got, saliency(model, images, 1, absolute=False, reduce="mean")[:, None], rel=0.05)


def test_guided_backprop_matches_captum_on_the_real_network(net, cat):
    """EfficientNet-Lite0's ReLU6, guided by both (Captum on the copy that shows them as nn.ReLU)."""
    got, t = guided_gradients(net, cat)
    ref = GuidedBackprop(relu6_as_relu(net)).attribute(cat.clone().requires_grad_(), target=t)
    assert close(got, ref)
    plain = GuidedBackprop(net).attribute(cat.clone().requires_grad_(), target=t)  # Captum on the net itself:
    assert not close(plain, ref, rel=0.1)  # no ReLU module, so no guidance at all (the plain gradient)


@pytest.mark.parametrize("which, layer", [("model", "features.11"), ("model", "features.7"), ("resnet", "layer4"),
                                          ("resnet", "layer3")])
def test_guided_gradcam_matches_captum(which, layer, request, images):
    model = request.getfixturevalue(which)
    t = predicted(model, images)
    ours = guided_gradcam(model, images, layer=layer, absolute=False, reduce="mean")
    ref = GuidedGradCam(model, model.get_submodule(layer)).attribute(
        images.clone().requires_grad_(), target=t, interpolate_mode="bilinear")
    assert close(ours, ref.mean(1))
    assert close(guided_gradcam(model, images, layer=layer), ref.abs().amax(1))


def test_guided_gradcam_matches_captum_on_the_real_network_and_is_the_product(net, cat):
    ours = guided_gradcam(net, cat, layer=photos.CAM_LAYER, absolute=False, reduce="mean")
    captum_net = relu6_as_relu(net)
    ref = GuidedGradCam(captum_net, captum_net.get_submodule(photos.CAM_LAYER)).attribute(
        cat.clone().requires_grad_(), target=predicted(net, cat), interpolate_mode="bilinear")
    assert close(ours, ref.mean(1))
    g, t = guided_gradients(net, cat)
    assert torch.allclose(ours, (g * gradcam(net, cat, t, layer=photos.CAM_LAYER)[:, None]).mean(1))


@pytest.mark.parametrize("rule", ["riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid"])
@pytest.mark.parametrize("which", ["model", "resnet"])
def test_integrated_gradients_matches_captum(which, rule, request, images):
    model = request.getfixturevalue(which)
    """Steps chosen so that every α is exact in float32 (k/16): Captum's α come from a float32 linspace, ours are
    rounded from float64, and at other step counts they differ by one ulp, which on the untrained ResNet moves the
    maps by 0.13% (the inputs cross ReLU kinks; measured at 15 steps): IG is that sensitive."""
    t = predicted(model, images)
    m = 17 if rule == "riemann_trapezoid" else 16
    ours, delta = integrated_gradients(model, images, steps=m, rule=rule, batch_size=12, fold=False,
                                       return_delta=True)
    ref, ref_delta = IntegratedGradients(model).attribute(images, target=t, n_steps=m, method=rule,
                                                          internal_batch_size=12, return_convergence_delta=True)
    scale = 17 / 16 if rule == "riemann_trapezoid" else 1.0  # Captum's trapezoid weights sum to 16/17
    assert close(ours, ref.sum(1) * scale)
    if rule != "riemann_trapezoid":
        assert torch.allclose(delta, ref_delta, atol=1e-4)


def test_integrated_gradients_matches_captum_on_the_real_network(net, cat):
    t = predicted(net, cat)
    ours = integrated_gradients(net, cat, steps=8, batch_size=4, fold=False)
    ref = IntegratedGradients(net).attribute(cat, target=t, n_steps=8, method="riemann_right", internal_batch_size=4)
    assert close(ours, ref.sum(1))
    folded = integrated_gradients(net, cat, steps=8, batch_size=4)  # fold=True: a gradient moves at kinks
    assert close(folded, ours, rel=0.1) and folded.sum() == pytest.approx(float(ours.sum()), rel=0.05)


# ------------------------------------------------------------------ completeness and the Riemann error
class Quadratic(nn.Module):
    """1×1 conv → square → global average pooling → linear: F is quadratic along any straight path, so its
    derivative g(α) is linear and the Riemann errors are known exactly."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(3, 4, 1)
        self.classifier = nn.Linear(4, 2)

    def forward(self, x):
        return self.classifier((self.conv(x) ** 2).mean((2, 3)))


def test_completeness_error_is_the_known_riemann_error_on_a_quadratic_net():
    """Right rule: Σ_k g(k/m)/m − ∫g = (g(1) − g(0)) / (2m); left: the negative; middle and trapezoid: 0."""
    quad = Quadratic().eval()
    torch.manual_seed(4)
    x, base = torch.rand(2, 3, 6, 6), torch.rand(2, 3, 6, 6)

    def g(alpha):  # dF/dα along the path, for target 1
        p = (base + alpha * (x - base)).requires_grad_(True)
        (grad,) = torch.autograd.grad(quad(p)[:, 1].sum(), p)
        return (grad * (x - base)).sum((1, 2, 3))
    jump = (g(1.0) - g(0.0)).detach()
    for m in (8, 32, 128):
        for rule, expected in [("riemann_right", jump / (2 * m)), ("riemann_left", -jump / (2 * m)),
                               ("riemann_middle", 0 * jump), ("riemann_trapezoid", 0 * jump)]:
            maps, delta = integrated_gradients(quad, x, 1, baseline=base, steps=m, rule=rule, return_delta=True)
            assert torch.allclose(delta, expected, atol=2e-5), (m, rule)


def test_completeness_error_shrinks_with_the_steps_on_the_course_model(model, images):
    errors = [float(integrated_gradients(model, images, steps=m, return_delta=True)[1].abs().max())
              for m in (8, 32, 128)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.01
    f = model(images).gather(1, predicted(model, images).view(-1, 1)).squeeze(1) - model(0 * images).gather(
        1, predicted(model, images).view(-1, 1)).squeeze(1)
    maps = integrated_gradients(model, images, steps=128)
    assert torch.allclose(maps.sum((1, 2)), f.detach(), atol=0.01)  # the maps split F(x) − F(black)


def test_path_points_and_weights():
    a, w = path_points(4, "riemann_right")
    assert a.tolist() == [0.25, 0.5, 0.75, 1.0] and w.tolist() == [0.25] * 4
    a, w = path_points(4, "riemann_trapezoid")
    assert torch.allclose(a, torch.tensor([0, 1 / 3, 2 / 3, 1], dtype=torch.float64))
    assert torch.allclose(w, torch.tensor([1 / 6, 1 / 3, 1 / 3, 1 / 6], dtype=torch.float64))
    for rule in ("riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid"):
        assert float(path_points(7, rule)[1].sum()) == pytest.approx(1.0)


# ------------------------------------------------------------------ baselines, batching, state
def test_baselines(model, images):
    x = images[:2]
    assert torch.equal(integrated_gradients(model, x, baseline="black"),
                       integrated_gradients(model, x, baseline=torch.zeros(1, 3, 64, 64)))
    assert torch.equal(integrated_gradients(model, x, baseline=x), torch.zeros(2, 64, 64))  # x' = x: nothing to split
    from torchvision.transforms.functional import gaussian_blur
    assert torch.allclose(_blur(x, 6.4), gaussian_blur(x, kernel_size=2 * 20 + 1, sigma=6.4), atol=1e-5)
    maps, delta = integrated_gradients(model, x, baseline="blurred", steps=64, return_delta=True)
    blurred = gaussian_blur(x, kernel_size=41, sigma=6.4)
    t = predicted(model, x)
    gap = (model(x) - model(blurred)).gather(1, t.view(-1, 1)).squeeze(1)
    assert torch.allclose(maps.sum((1, 2)) - gap, delta, atol=1e-4) and delta.abs().max() < 0.05 * gap.abs().max()


def test_batching_does_not_change_the_maps(model, images):
    a = integrated_gradients(model, images[:3], steps=10, batch_size=1)
    for b in (7, 30, None):
        assert torch.allclose(a, integrated_gradients(model, images[:3], steps=10, batch_size=b), atol=1e-6)


def hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.mark.parametrize("method", [guided_backprop, guided_gradcam, integrated_gradients])
def test_model_left_as_found_also_after_an_error(method, images):
    net = OrcaLeopardNet().train()
    params = list(net.parameters())
    params[2].requires_grad_(False)
    params[1].grad = torch.ones_like(params[1])
    before = (net.training, [p.requires_grad for p in params], [p.grad for p in params])
    assert torch.isfinite(method(net, images[:2])).all()
    with pytest.raises(ValueError, match="target 3 is out of range"):
        method(net, images[:2], target=3)
    after = (net.training, [p.requires_grad for p in params], [p.grad for p in params])
    assert before == after and hooks(net) == 0
    assert torch.equal(net.features[1].running_mean, torch.zeros(16))  # eval mode inside
    assert all(p.is_contiguous() for p in params)  # the channels-last copy is a copy
