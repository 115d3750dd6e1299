"""CAM and the Grad-CAM family: exact identities, hand-computed formulas, pytorch-grad-cam agreement, state, bad input.

Conventions aligned for the comparison with pytorch-grad-cam (grad-cam 1.5.7):
* both apply a ReLU to the weighted sum of activations;
* grad-cam rescales every map to [0, 1] (min-max) before *and* after resizing
  it with ``cv2.resize`` (bilinear, half-pixel centres); ours returns raw maps and
  upsamples with ``F.interpolate(bilinear, align_corners=False)``, the same
  interpolation (checked below). So we min-max scale ours the same way, and
  compare at feature resolution (grad-cam's target size set to the layer's) and
  at input resolution.
"""
import gc
import warnings

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from utils.data import load_split
from utils.explain import cam, gradcam, gradcam_pp, hirescam
from utils.explain.cam import upsample
from utils.explain.gradcam import layer_activations_and_gradients
from utils.models import OrcaLeopardNet

METHODS = {"gradcam": (gradcam, GradCAM), "gradcam_pp": (gradcam_pp, GradCAMPlusPlus), "hirescam": (hirescam, HiResCAM)}


@pytest.fixture(scope="module")
def images():
    return load_split("test_swapped", 6).images


def minmax(m):
    m = m - m.amin((1, 2), keepdim=True)
    return m / (1e-7 + m.amax((1, 2), keepdim=True))


def predicted(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


def grad_cam_package(cls, model, layer, x, targets, size=None):
    with cls(model=model, target_layers=[layer]) as explainer:
        if size is not None:
            explainer.get_target_width_height = lambda _: size  # (w, h)
        return torch.from_numpy(explainer(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets]))


# ------------------------------------------------------------------ exact identities
def test_cam_identity_mean_plus_bias_is_the_logit(model, images):
    for target in (None, 0, 1):
        m = cam(model, images, target, resolution="features")
        with torch.no_grad():
            logits = model(images)
        t = logits.argmax(1) if target is None else torch.full((6,), target)
        assert torch.allclose(m.mean((1, 2)) + model.classifier.bias[t], logits.gather(1, t.view(-1, 1))[:, 0],
                              atol=1e-5)
    assert cam(model, images).shape == (6, 64, 64)


def test_cam_of_the_two_classes_differ_by_the_decision_map(model, images):
    """For two classes, M_1 − M_0 = (w_1 − w_0)·f, and its mean is the logit margin minus the bias margin."""
    d = cam(model, images, 1, resolution="features") - cam(model, images, 0, resolution="features")
    with torch.no_grad():
        z = model(images)
    b = model.classifier.bias
    assert torch.allclose(d.mean((1, 2)), (z[:, 1] - z[:, 0]) - (b[1] - b[0]), atol=1e-5)


def test_cam_on_resnet_also_satisfies_the_identity(resnet):
    x = torch.rand(2, 3, 64, 64)
    m = cam(resnet, x, 1, resolution="features")
    with torch.no_grad():
        logits = resnet(x)
    assert m.shape == (2, 2, 2)
    assert torch.allclose(m.mean((1, 2)) + resnet.fc.bias[1], logits[:, 1], atol=1e-5)


@pytest.mark.parametrize("method", [gradcam, hirescam])
def test_gradcam_and_hirescam_at_the_last_layer_are_relu_cam_over_hw(method, model, images):
    for target in (None, 0):
        c = cam(model, images, target, resolution="features")
        g = method(model, images, target, resolution="features")
        assert torch.allclose(g, c.clamp(min=0) / (8 * 8), atol=1e-7)
        # the default layer is the GAP input, here the same module as features[-1]
        assert torch.allclose(g, method(model, images, target, layer=model.features[-1], resolution="features"))


def test_upsampling_is_bilinear_half_pixel_like_opencv():
    m = torch.rand(3, 8, 8)
    ours = upsample(m, (64, 64))
    ref = torch.stack([torch.from_numpy(cv2.resize(a.numpy(), (64, 64))) for a in m])
    assert (ours - ref).abs().max() < 1e-6


# ------------------------------------------------------------------ formulas on a hand-computable net
class SquareNet(nn.Module):
    """A = x itself (identity layer), y_c = Σ_k v_ck · mean(A_k²): so ∂y_c/∂A_k = 2 v_ck A_k / (hw)."""

    def __init__(self, v):
        super().__init__()
        self.layer = nn.Identity()
        self.v = nn.Parameter(torch.tensor(v))

    def forward(self, x):
        a = self.layer(x)
        return (a * a).mean((2, 3)) @ self.v.T


def test_gradcam_pp_and_hirescam_formulas_by_hand():
    # one image, channels: A_0 = [[1, 2], [0, 3]], A_1 = 1 everywhere, A_2 = 0; class 0 weights v = (1, -1, 1)
    x = torch.tensor([[[[1.0, 2.0], [0.0, 3.0]], [[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]])
    net = SquareNet([[1.0, -1.0, 1.0], [0.0, 0.0, 1.0]])
    a, g, _ = layer_activations_and_gradients(net, x, 0, layer="layer")
    assert torch.allclose(g[0, 0], torch.tensor([[0.5, 1.0], [0.0, 1.5]]))  # 2·1·A/4
    assert torch.allclose(g[0, 1], torch.full((2, 2), -0.5))
    # HiResCAM: ReLU(Σ_k G_k A_k) = ReLU([[.5, 2], [0, 4.5]] − .5) = [[0, 1.5], [0, 4]]
    assert torch.allclose(hirescam(net, x, 0, layer="layer", resolution="features")[0],
                          torch.tensor([[0.0, 1.5], [0.0, 4.0]]))
    # Grad-CAM: α = (mean G_0, mean G_1, 0) = (0.75, -0.5, 0); ReLU(0.75 A_0 − 0.5)
    assert torch.allclose(gradcam(net, x, 0, layer="layer", resolution="features")[0],
                          torch.tensor([[0.25, 1.0], [0.0, 1.75]]))
    # Grad-CAM++: channel 0, ΣA = 6: a_ij = g²/(2g² + 6g³ + ε); α_0 = Σ a_ij·ReLU(g_ij)
    g0 = torch.tensor([0.5, 1.0, 1.5])  # the non-zero gradients (the zero one contributes 0)
    alpha0 = (g0 ** 2 / (2 * g0 ** 2 + 6 * g0 ** 3 + 1e-6) * g0).sum()
    # channel 1 has negative gradients only: ReLU kills them, α_1 = 0; channel 2: G = 0, α_2 = 0
    expected = (alpha0 * x[0, 0]).clamp(min=0)
    assert torch.allclose(gradcam_pp(net, x, 0, layer="layer", resolution="features")[0], expected, atol=1e-6)


# ------------------------------------------------------------------ agreement with pytorch-grad-cam
@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("layer", ["features.14", "features.13", "features.6"])  # last ReLU, last BN (8×8), block 2 ReLU (32×32)
def test_agrees_with_pytorch_grad_cam_on_the_course_model(name, layer, model, images):
    ours_fn, cls = METHODS[name]
    ours = ours_fn(model, images, layer=layer, resolution="features")
    ref = grad_cam_package(cls, model, model.get_submodule(layer), images, predicted(model, images),
                           size=tuple(ours.shape[-2:])[::-1])
    assert (minmax(ours) - ref).abs().max() < 1e-4
    full = grad_cam_package(cls, model, model.get_submodule(layer), images, predicted(model, images))
    assert (minmax(upsample(minmax(ours), (64, 64))) - full).abs().max() < 1e-4


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("layer", ["layer4", "layer3.1.conv2"])
def test_agrees_with_pytorch_grad_cam_on_resnet18(name, layer, resnet):
    ours_fn, cls = METHODS[name]
    torch.manual_seed(1)
    x = torch.rand(3, 3, 64, 64)
    for target in ([1, 1, 1], None):
        ours = ours_fn(resnet, x, target, layer=layer, resolution="features")
        t = predicted(resnet, x) if target is None else target
        ref = grad_cam_package(cls, resnet, resnet.get_submodule(layer), x, t, size=tuple(ours.shape[-2:])[::-1])
        assert (minmax(ours) - ref).abs().max() < 1e-4


@pytest.mark.parametrize("method", [gradcam, gradcam_pp, hirescam])
def test_a_layer_followed_by_an_in_place_relu(method, resnet):
    """ResNet's bn1 feeds ReLU(inplace=True). Our maps use bn1's real output, exactly as with an out-of-place ReLU.

    (pytorch-grad-cam differs here: on the CPU its hook keeps a view of bn1's output,
    which the in-place ReLU then overwrites, so it pairs post-ReLU activations with
    pre-ReLU gradients.)
    """
    import copy
    out_of_place = copy.deepcopy(resnet)
    for m in out_of_place.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    x = torch.rand(2, 3, 64, 64)
    a = method(resnet, x, 1, layer="layer1.0.bn1", resolution="features")
    b = method(out_of_place, x, 1, layer="layer1.0.bn1", resolution="features")
    assert torch.allclose(a, b, atol=1e-6) and a.abs().max() > 0


# ------------------------------------------------------------------ state, hooks, memory
def hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.mark.parametrize("method", [cam, gradcam, gradcam_pp, hirescam])
def test_no_hooks_and_state_left_also_after_an_error(method, images):
    net = OrcaLeopardNet().train()
    params = list(net.parameters())
    params[2].requires_grad_(False)
    before = (net.training, [p.requires_grad for p in params], [p.grad for p in params])
    method(net, images[:2])
    with pytest.raises(ValueError, match="target 3 is out of range"):
        method(net, images[:2], target=3)
    after = (net.training, [p.requires_grad for p in params], [p.grad for p in params])
    assert before == after and hooks(net) == 0
    assert torch.equal(net.features[1].running_mean, torch.zeros(16))  # eval mode inside


def live_tensors():
    gc.collect()
    with warnings.catch_warnings():  # touching some torch.distributed objects warns
        warnings.simplefilter("ignore")
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


def test_no_memory_growth_over_100_calls(model, images):
    x = images[:2]
    gradcam(model, x)
    before = live_tensors()
    for _ in range(100):
        gradcam(model, x)
        cam(model, x)
    assert live_tensors() <= before + 5  # nothing kept per call (activations, gradients, hooks)
    assert hooks(model) == 0


def test_every_method_returns_plain_float32_maps(model, images):
    from utils.explain import centre_map, occlusion, random_map, saliency, smoothgrad
    for method in (cam, gradcam, gradcam_pp, hirescam, saliency, smoothgrad, occlusion, random_map, centre_map):
        kwargs = {"n_samples": 2} if method is smoothgrad else {"patch": 32, "stride": 32} if method is occlusion else {}
        m = method(model, images[:2], **kwargs)
        assert m.shape == (2, 64, 64) and m.dtype == torch.float32, method.__name__
        assert not m.requires_grad and m.grad_fn is None, f"{method.__name__} returns a tensor attached to a graph"


# ------------------------------------------------------------------ bad input
def test_unknown_layer_name(model, images):
    with pytest.raises(ValueError, match=r"layer 'features.99' not found.*conv layers are"):
        gradcam(model, images, layer="features.99")


def test_layer_of_another_model(model, images, resnet):
    with pytest.raises(ValueError, match="not a module of this OrcaLeopardNet"):
        gradcam(model, images, layer=resnet.layer4)


def test_layer_without_spatial_output(model, images):
    with pytest.raises(ValueError, match="no spatial output"):
        gradcam(model, images, layer="classifier")


def test_cam_needs_a_gap_linear_head(images):
    no_head = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    no_head(images[:1])
    with pytest.raises(ValueError, match="no global-average-pooling \\+ linear head.*gradcam"):
        cam(no_head, images[:1])
    # a pool and a linear that are not the head (extra layer between them)
    fake = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4), nn.Tanh(),
                         nn.Linear(4, 2))
    with pytest.raises(ValueError, match="not linear\\(global average pool"):
        cam(fake, images[:1])
