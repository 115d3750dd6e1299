"""Saliency, SmoothGrad and occlusion: exact checks, agreement with Captum, state, bad input.

Conventions aligned for the Captum comparisons (and why they agree exactly):
* Saliency: Captum ``Saliency(abs=True)`` returns |∂logit/∂x| per channel; ours
  reduces with a max over channels (Simonyan et al.), so we compare after the
  same max. Same graph, same float32 arithmetic: equal to 1e-6 relative.
* SmoothGrad: Captum ``NoiseTunnel(Saliency)``, ``nt_type="smoothgrad"``,
  ``stdevs=σ``, ``nt_samples_batch_size=k``; ours draws the noise with the same
  ``torch.normal`` calls in the same layout, so seeding both alike gives the same
  noisy images; then the same channel max.
* Occlusion: Captum ``Occlusion`` with window ``(3, p, p)``, strides ``(3, s, s)``
  and the same baseline image; its map is equal across channels, ours is the
  single-channel version. Window starts ``0, s, … ceil((H−p)/s)·s`` in both.
"""
import pytest
import torch
from captum.attr import NoiseTunnel, Occlusion, Saliency
from torch import nn

from utils.data import load_split
from utils.explain import count_windows, occlusion, saliency, smoothgrad
from utils.explain.occlusion import fill_images
from utils.explain.saliency import input_gradients
from utils.models import OrcaLeopardNet

REL = 1e-5  # float32: same operations, at most rounding differences


def close(a, b, rel=REL):
    return (a - b).abs().max() <= rel * b.abs().max() + 1e-12


@pytest.fixture(scope="module")
def images():
    return load_split("test_swapped", 4).images


def captum_target(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


# ------------------------------------------------------------------ agreement with Captum
@pytest.mark.parametrize("which", ["model", "resnet"])
def test_saliency_matches_captum(which, request, images):
    model = request.getfixturevalue(which)
    for target in (None, 1):
        ours = saliency(model, images, target)
        t = captum_target(model, images) if target is None else target
        ref = Saliency(model).attribute(images.clone().requires_grad_(), target=t, abs=True).amax(1)
        assert ours.shape == (4, 64, 64) and ours.dtype == torch.float32
        assert close(ours, ref)


@pytest.mark.parametrize("which", ["model", "resnet"])
def test_smoothgrad_matches_captum_noise_tunnel_with_the_same_noise(which, request, images):
    model = request.getfixturevalue(which)
    ours = smoothgrad(model, images, n_samples=7, noise=0.2, batch_size=3,
                      generator=torch.Generator().manual_seed(11))
    torch.manual_seed(11)
    ref = NoiseTunnel(Saliency(model)).attribute(
        images.clone(), nt_type="smoothgrad", nt_samples=7, stdevs=0.2, nt_samples_batch_size=3,
        target=captum_target(model, images)).amax(1)
    assert close(ours, ref)
    # and it is really smoothing: different from the plain map
    assert not close(ours, saliency(model, images), rel=0.05)


@pytest.mark.parametrize("which", ["model", "resnet"])
@pytest.mark.parametrize("fill", [0.5, "mean", "blur"])
def test_occlusion_matches_captum(which, fill, request, images):
    model = request.getfixturevalue(which)
    x = images[:2]
    ours = occlusion(model, x, patch=16, stride=6, fill=fill)  # (64-16)/6 = 8: last window clipped
    base = fill_images(x, fill, (16, 16))
    ref = Occlusion(model).attribute(x, sliding_window_shapes=(3, 16, 16), strides=(3, 6, 6), baselines=base,
                                     target=captum_target(model, x), perturbations_per_eval=64)
    assert torch.equal(ref[:, 0], ref[:, 2])
    assert close(ours, ref[:, 0], rel=1e-4)


# ------------------------------------------------------------------ exact invariants on tiny nets
class TinyNet(nn.Module):
    """conv → tanh → GAP → linear, in float64: smooth, so finite differences are exact to ~1e-9."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(3, 4, 3, padding=1).double()
        self.fc = nn.Linear(4, 3).double()

    def forward(self, x):
        return self.fc(torch.tanh(self.conv(x)).mean((2, 3)))


@pytest.mark.parametrize("score", ["logit", "probability"])
def test_saliency_equals_finite_differences(score):
    net = TinyNet().eval()
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    target = torch.tensor([2, 0])
    grad, _ = input_gradients(net, x, target, score)

    def s(z):
        out = net(z)
        out = out.softmax(1) if score == "probability" else out
        return out.gather(1, target.view(-1, 1)).sum()

    fd = torch.zeros_like(x)
    h = 1e-6
    for idx in torch.cartesian_prod(*(torch.arange(n) for n in x.shape)):
        e = torch.zeros_like(x)
        e[tuple(idx)] = h
        fd[tuple(idx)] = (s(x + e) - s(x - e)) / (2 * h)
    assert torch.allclose(grad, fd, atol=1e-8)
    m = saliency(net, x, target, score=score)
    assert torch.allclose(m.double(), fd.abs().amax(1), atol=1e-6)
    signed = saliency(net, x, target, score=score, absolute=False, reduce="mean")
    assert torch.allclose(signed.double(), fd.mean(1), atol=1e-6)


def test_smoothgrad_passes_hold_at_most_pixels_per_pass_and_change_no_value(model, images, monkeypatch):
    """The noisy copies are drawn N × batch_size at a time (as Captum draws them) but go through the model at most
    PIXELS_PER_PASS pixels per pass: here 5 images of 64 × 64, so a chunk of 4 × 3 copies takes 3 passes."""
    import utils.explain._common as common
    sizes = []
    hook = model.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    try:
        whole = smoothgrad(model, images, n_samples=7, noise=0.2, batch_size=3, generator=torch.Generator().manual_seed(11))
        assert sizes == [4, 12, 12, 4]  # the target pass, then one pass per chunk: 3 + 3 + 1 copies of 4 images
        monkeypatch.setattr(common, "PIXELS_PER_PASS", 5 * 64 * 64)
        sizes.clear()
        sliced = smoothgrad(model, images, n_samples=7, noise=0.2, batch_size=3,
                            generator=torch.Generator().manual_seed(11))
    finally:
        hook.remove()
    assert sizes == [4, 5, 5, 2, 5, 5, 2, 4] and max(sizes[1:]) <= 5
    assert close(sliced, whole)
    torch.manual_seed(11)
    ref = NoiseTunnel(Saliency(model)).attribute(
        images.clone(), nt_type="smoothgrad", nt_samples=7, stdevs=0.2, nt_samples_batch_size=3,
        target=captum_target(model, images)).amax(1)
    assert close(sliced, ref), "the same noise as Captum's, sliced or not"


def test_smoothgrad_with_zero_noise_is_saliency(model, images):
    assert close(smoothgrad(model, images, n_samples=3, noise=0.0), saliency(model, images))


def test_occlusion_with_one_window_over_the_whole_image_is_the_score_difference(model, images):
    for fill in (0.0, 0.5, "mean"):
        m = occlusion(model, images, target=1, patch=64, stride=64, fill=fill)
        with torch.no_grad():
            diff = model(images)[:, 1] - model(fill_images(images, fill))[:, 1]
        assert torch.allclose(m, diff.view(-1, 1, 1).expand(-1, 64, 64), atol=1e-5)


def test_occlusion_by_hand_on_a_linear_model():
    """score = Σ w·x: the drop for a window is Σ_window w·(x − fill); check one pixel's average by hand."""
    torch.manual_seed(0)
    w = torch.randn(1, 3, 8, 8)

    class Linear(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            s = (x * w).sum((1, 2, 3))
            return torch.stack([s, -s], 1)

    x = torch.rand(1, 3, 8, 8)
    m = occlusion(Linear(), x, target=0, patch=4, stride=2, fill=0.0)
    contrib = (w * x).sum(1)[0]  # per-pixel contribution to the score
    starts = [0, 2, 4]
    # pixel (3, 5): row 3 lies in windows starting at rows 0 and 2, column 5 in those starting at columns 2 and 4
    drops = [contrib[t:t + 4, l:l + 4].sum() for t in starts for l in starts if t <= 3 < t + 4 and l <= 5 < l + 4]
    assert len(drops) == 4
    assert torch.allclose(m[0, 3, 5], torch.stack(drops).mean(), atol=1e-5)


def test_window_count_and_cost():
    assert count_windows(64, 64, 8, 4) == 15 * 15
    assert count_windows(64, 64, 16, 6) == 9 * 9  # ceil(48/6)+1 = 9
    assert count_windows(64, 64, 64, 64) == 1
    assert count_windows(64, 48, (8, 4), (8, 4)) == 8 * 12


# ------------------------------------------------------------------ model left as found
def snapshot(model):
    return (model.training, [p.requires_grad for p in model.parameters()],
            [None if p.grad is None else p.grad.clone() for p in model.parameters()])


def same(a, b):
    return a[0] == b[0] and a[1] == b[1] and all(
        (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y)) for x, y in zip(a[2], b[2]))


@pytest.mark.parametrize("method", [saliency, smoothgrad, occlusion])
def test_model_state_unchanged_also_after_an_error(method, images):
    model = OrcaLeopardNet()
    model.train()
    params = list(model.parameters())
    params[0].requires_grad_(False)
    params[1].grad = torch.ones_like(params[1])
    before = snapshot(model)
    kwargs = {"n_samples": 2} if method is smoothgrad else {"patch": 32, "stride": 32} if method is occlusion else {}
    method(model, images[:1], **kwargs)
    assert same(before, snapshot(model))
    with pytest.raises(ValueError, match="target 7 is out of range"):
        method(model, images[:1], target=7, **kwargs)
    assert same(before, snapshot(model))
    # batch-norm statistics untouched (the methods run in eval mode)
    assert torch.equal(model.features[1].running_mean, torch.zeros(16))


# ------------------------------------------------------------------ target forms (bad inputs: tests/test_bad_inputs.py)
def test_target_forms_agree(model, images):
    x = images[:2]
    a = saliency(model, x, 1)
    assert torch.equal(a, saliency(model, x, [1, 1]))
    assert torch.equal(a, saliency(model, x, torch.tensor([1, 1])))
