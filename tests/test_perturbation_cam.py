"""AblationCAM and Score-CAM: exact where the maths gives a value, equal to pytorch-grad-cam after its scaling, the
network's tail cut exactly (skip connections included), the model left as found."""
import pytest
import torch
from pytorch_grad_cam import AblationCAM, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn
from torchvision.models import resnet18

from utils.data import load_split
from utils.explain import ablation_cam, score_cam
from utils.explain import perturbation_cam as P
from utils.explain._tail import split_at
from utils.explain.cam import upsample


@pytest.fixture(scope="module")
def images():
    return load_split("test_swapped", 4).images


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return resnet18(weights=None, num_classes=3).eval()


@pytest.fixture(scope="module")
def noise():
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def _minmax(m):
    m = m - m.amin((1, 2), keepdim=True)
    return m / (1e-7 + m.amax((1, 2), keepdim=True))


def test_ablating_a_channel_before_gap_and_linear_drops_the_logit_by_w_times_its_mean(model, images, resnet, noise):
    """y = Σ_k w_ck mean(f_k) + b_c, so zeroing channel k lowers y_c by exactly w_ck · mean(f_k)."""
    for net, x, head in ((model, images, model.classifier), (resnet, noise, resnet.fc)):
        acts, score, ablated, t = P.ablation_weights(net, x)  # default layer: the input of the pooling
        expected = (head.weight[t] * acts.mean((2, 3))).detach()
        assert torch.allclose(score[:, None] - ablated, expected, atol=1e-5 * float(expected.abs().max()) + 1e-6)


@pytest.mark.parametrize("layer", ["layer3", "layer4.0.conv2", "layer4.1.bn1", None])
def test_the_tail_alone_gives_what_the_whole_model_gives(layer, resnet, noise, monkeypatch):
    """layer4.0.conv2 and layer4.1.bn1 sit inside a block whose skip connection (the block's input, downsampled in
    layer4.0) joins after them: the tail reads that side input from the clean pass. bn1 is followed by an in-place
    ReLU, which must not change the recorded activations. The whole model with the layer's output replaced agrees."""
    if layer is not None:
        cut = split_at(resnet, resnet.get_submodule(layer))
        assert cut is not None and len(cut.side_nodes) == (0 if layer == "layer3" else 1)
    fast = P.ablation_weights(resnet, noise[:1], layer=layer, batch_size=128)
    monkeypatch.setattr(P, "split_at", lambda *a: None)  # the fallback: the whole model, the layer hooked
    whole = P.ablation_weights(resnet, noise[:1], layer=layer, batch_size=128)
    for a, b in zip(fast, whole):
        assert torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-5)


CASES = [("course", "features.14"), ("course", "features.10"), ("resnet", "layer3"), ("resnet", "layer4")]


@pytest.mark.parametrize("net, layer", CASES)
@pytest.mark.parametrize("ours, theirs", [(ablation_cam, AblationCAM), (score_cam, ScoreCAM)],
                         ids=["AblationCAM", "ScoreCAM"])
def test_agrees_with_grad_cam_after_its_scaling(ours, theirs, net, layer, model, images, resnet, noise):
    """grad-cam min-max scales the feature-resolution map, resizes it bilinearly and scales again; the raw maps here,
    scaled the same way, are equal to 1e-4. (Layers after a ReLU: grad-cam ablates to 0 there too.)"""
    net, x = (model, images) if net == "course" else (resnet, noise[:1])  # 64 px: layer3 4 × 4, layer4 2 × 2
    with torch.no_grad():
        pred = net(x).argmax(1)
    mine = ours(net, x, pred, layer=layer, resolution="features")
    with theirs(model=net, target_layers=[net.get_submodule(layer)]) as explainer:
        reference = torch.from_numpy(explainer(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in pred]))
    assert torch.allclose(_minmax(upsample(_minmax(mine), tuple(x.shape[-2:]))), reference, atol=1e-4)


def test_input_resolution_is_the_bilinear_upsampling_of_the_feature_map(model, images):
    for method in (ablation_cam, score_cam):
        small = method(model, images[:2], resolution="features")
        assert small.shape == (2, 8, 8) and (small >= 0).all()
        assert torch.allclose(method(model, images[:2]), upsample(small, (64, 64)))


def test_score_cam_weights_are_a_softmax_of_the_masked_images_logits(model, images):
    """Spelled out for one image and the last layer: mask = the upsampled map scaled to [0, 1]."""
    x = images[:1]
    feats = model.forward_features(x).detach()
    up = torch.nn.functional.interpolate(feats, size=(64, 64), mode="bilinear", align_corners=True)[0]
    low, high = up.amin((1, 2), keepdim=True), up.amax((1, 2), keepdim=True)
    masks = (up - low) / (high - low + 1e-8)
    with torch.no_grad():
        t = int(model(x).argmax())
        weights = torch.stack([model(x * m)[0, t] for m in masks]).softmax(0)
    expected = torch.einsum("k,khw->hw", weights, feats[0]).clamp(min=0)
    assert torch.allclose(score_cam(model, x, layer="features.14", resolution="features")[0], expected,
                          rtol=1e-5, atol=1e-6)
    from utils.explain.perturbation_cam import score_weights  # what notebook 04 prints the spread of
    acts, w = score_weights(model, x, layer="features.14")
    assert torch.allclose(acts, feats) and torch.allclose(w[0], weights, rtol=1e-5, atol=1e-7)


def test_batch_size_does_not_change_the_maps(model, images):
    for method in (ablation_cam, score_cam):
        a = method(model, images[:2], batch_size=7)
        b = method(model, images[:2], batch_size=1000)  # float32 sums in another order: equal to 1e-4 of the peak
        assert (a - b).abs().max() <= 1e-4 * b.abs().max()


def _state(net):
    return ([m.training for m in net.modules()], [p.requires_grad for p in net.parameters()],
            [p.grad is None for p in net.parameters()],
            sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules()))


def test_the_model_is_left_as_found_also_on_error(model, images, monkeypatch):
    model.train()
    try:
        before = _state(model)
        for method in (ablation_cam, score_cam):
            method(model, images[:1], layer="features.10")
            assert _state(model) == before
            with pytest.raises(ValueError, match="out of range"):
                method(model, images[:1], 5)
            assert _state(model) == before
        monkeypatch.setattr(P, "split_at", lambda *a: None)  # the hooked whole-model path, failing half-way
        calls = {"n": 0}
        real_forward = model.forward

        def failing(x):
            calls["n"] += 1
            if calls["n"] > 1:
                raise RuntimeError("boom")
            return real_forward(x)
        monkeypatch.setattr(model, "forward", failing)
        with pytest.raises(RuntimeError, match="boom"):
            ablation_cam(model, images[:1], layer="features.10")
        monkeypatch.undo()
        assert _state(model) == before
    finally:
        model.eval()


def test_a_zero_target_score_is_refused_clearly():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    with torch.no_grad():
        net[4].weight.zero_()
        net[4].bias.zero_()
    with pytest.raises(ValueError, match="target score of image 0 is exactly 0"):
        ablation_cam(net, torch.rand(1, 3, 16, 16), 0, layer="1")


def test_an_untraceable_model_falls_back_to_the_whole_model(images, model):
    class Branchy(nn.Module):  # Python control flow on a tensor's value: torch.fx cannot trace it
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            if x.sum() > 0:
                return self.inner(x)
            return self.inner(x) * 0
    wrapped = Branchy(model).eval()
    assert split_at(wrapped, wrapped.inner.features[10]) is None
    assert torch.allclose(ablation_cam(wrapped, images[:2], layer="inner.features.10"),
                          ablation_cam(model, images[:2], layer="features.10"), rtol=1e-5, atol=1e-6)


def test_the_folded_inference_copy_is_the_same_function_and_leaves_the_model_alone(model, images, resnet, noise):
    """Occlusion and Score-CAM run their forward passes through a copy with Conv + BatchNorm folded together."""
    from utils.explain._common import inference_copy, model_state_preserved
    for net, x in ((model, images), (resnet, noise)):
        before = {k: v.clone() for k, v in net.state_dict().items()}
        with model_state_preserved(net), torch.no_grad():
            fast = inference_copy(net)
            a, b = net(x), fast(x.contiguous(memory_format=torch.channels_last))
        assert fast is not net and not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
        assert (a - b).abs().max() <= 1e-5 * a.abs().max()
        assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
        assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())

    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x
    branchy = Branchy()
    assert inference_copy(branchy) is branchy  # untraceable: used as it is


def test_bfloat16_score_cam_stays_within_a_percent_of_float32(model, images):
    """precision="bfloat16" runs the masked passes under autocast: scores to ~2 significant digits, but the softmax
    weights average the errors out (measured: ≤ 0.3% of the map's maximum on 16 images at features.10). Not
    bit-equal (the option does change the arithmetic), float32 out, autocast off again afterwards."""
    exact = score_cam(model, images, layer="features.10")
    fast = score_cam(model, images, layer="features.10", precision="bfloat16")
    assert fast.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
    assert not torch.equal(fast, exact)
    err = (fast - exact).abs().flatten(1).amax(1) / exact.flatten(1).amax(1)
    assert err.max() <= 0.01, err


def test_maps_that_are_zero_everywhere_share_one_pass(model, images, monkeypatch):
    """After a ReLU many maps are 0 everywhere (here about a third at features.14): their masks are exact zeros, so
    each masks its image to the same black image, scored once. The values are checked above (the spelled-out
    softmax and the agreement with grad-cam, both at features.14); this checks the passes saved."""
    seen = []
    real = P.inference_copy

    def counting(net):
        fast = real(net)

        def run(x):
            seen.append(len(x))
            return fast(x)
        return run
    monkeypatch.setattr(P, "inference_copy", counting)
    score_cam(model, images, layer="features.14", batch_size=16)
    acts = model.forward_features(images).detach()
    live = int(acts.flatten(2).ne(0).any(2).sum())
    assert 0 < live < acts.shape[0] * acts.shape[1]  # both kinds present
    assert sum(seen) == live + 1 and seen[0] == 1  # the black image first, then the live maps, 16 at a time
