"""Every explanation method refuses every unusable input with a ValueError/TypeError naming it and the fix.

The matrix below is the input contract (docs/design.md, section 2) written out:
each bad image tensor for each of the twelve methods, then each method's options.
A bad input must fail *before* any work, with the message a learner can act on,
never deep inside PyTorch and never by returning NaN or meaningless maps.
"""
import pytest
import torch
from torch import nn

from utils.data import load_split
from utils.explain import (ablation_cam, cam, gradcam, gradcam_pp, guided_backprop, guided_gradcam, hirescam,
                           integrated_gradients, occlusion, saliency, score_cam, smoothgrad)

METHODS = [saliency, smoothgrad, integrated_gradients, guided_backprop, guided_gradcam, occlusion, cam, gradcam,
           gradcam_pp, hirescam, ablation_cam, score_cam]


@pytest.fixture(scope="module")
def images():
    return load_split("test_swapped", 4).images


def _with(x, index, value):
    x = x.clone()
    x[index] = value
    return x


BAD_IMAGES = {  # name: (make the bad tensor from good images [2, 3, 64, 64], exception, words of the message)
    "not a tensor": (lambda x: x.numpy(), TypeError, "torch.Tensor"),
    "uint8": (lambda x: (x * 255).to(torch.uint8), TypeError, "float tensor.*divide uint8 images by 255"),
    "one image, no batch": (lambda x: x[0], ValueError, r"\[N, 3, H, W\].*unsqueeze\(0\)"),
    "5-D": (lambda x: x[None], ValueError, r"\[N, 3, H, W\]"),
    "empty batch": (lambda x: x[:0], ValueError, "empty batch"),
    "one channel": (lambda x: x[:, :1], ValueError, "3 colour channels"),
    "channels last": (lambda x: x.permute(0, 2, 3, 1), ValueError, "3 colour channels.*channels last"),
    "empty side": (lambda x: x[..., :0], ValueError, r"64×0 pixels: empty"),
    "smaller than the model's downsampling": (lambda x: x[..., :4, :4], ValueError,
                                              r"4×4 pixels; this model needs at least 8×8.*resize"),
    "normalised, not [0, 1]": (lambda x: (x - 0.5) / 0.25, ValueError, r"must be in \[0, 1\].*not normalised"),
    "NaN": (lambda x: _with(x, (1, 0, 5, 5), float("nan")), ValueError, "1 NaN or infinite values \\(first in image 1\\)"),
    "inf": (lambda x: _with(x, (0, 2, 0, 0), float("inf")), ValueError, "NaN or infinite values.*nan_to_num"),
    "float64 for a float32 model": (lambda x: x.double(), TypeError, r"float64 but the model's weights are torch.float32"),
    "float16 for a float32 model": (lambda x: x.half(), TypeError, r"images.to\(torch.float32\)"),
}


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("name", list(BAD_IMAGES))
def test_bad_images_are_refused_by_every_method(method, name, model, images):
    make, exc, words = BAD_IMAGES[name]
    with pytest.raises(exc, match=words):
        method(model, make(images[:2]))


BAD_TARGETS = {
    "out of range": (2, ValueError, "target 2 is out of range for a model with 2 classes"),
    "negative": (-1, ValueError, "target -1 is out of range"),
    "wrong length": ([0, 1, 1], ValueError, "target has 3 entries for 2 images"),
    "[N, 1] labels": (torch.tensor([[0], [1]]), ValueError, r"1-D sequence.*squeeze\(1\)"),
    "float": (0.5, TypeError, "integer class indices"),
    "NaN": (float("nan"), TypeError, "integer class indices"),
    "bool": (True, TypeError, "got a bool"),
}


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("name", list(BAD_TARGETS))
def test_bad_targets_are_refused_by_every_method(method, name, model, images):
    target, exc, words = BAD_TARGETS[name]
    with pytest.raises(exc, match=words):
        method(model, images[:2], target)


BAD_OPTIONS = [  # (method, options, exception, words)
    (smoothgrad, dict(noise=-0.1), ValueError, "noise must be a number >= 0"),
    (smoothgrad, dict(noise=float("nan")), ValueError, "noise must be a finite number"),
    (smoothgrad, dict(noise=float("inf")), ValueError, "noise must be a finite number"),
    (smoothgrad, dict(noise="0.1"), TypeError, "noise must be a number"),
    (smoothgrad, dict(n_samples=0), ValueError, "n_samples must be > 0"),
    (smoothgrad, dict(n_samples=2.5), TypeError, "n_samples must be an int"),
    (smoothgrad, dict(batch_size=0), ValueError, "batch_size must be > 0"),
    (smoothgrad, dict(score="softmax"), ValueError, "score must be 'logit' or 'probability'"),
    (smoothgrad, dict(reduce="sum"), ValueError, "reduce must be 'max'"),
    (integrated_gradients, dict(steps=0), ValueError, "steps must be > 0"),
    (integrated_gradients, dict(steps=8.0), TypeError, "steps must be an int"),
    (integrated_gradients, dict(rule="simpson"), ValueError, "rule must be one of riemann_right.*got 'simpson'"),
    (integrated_gradients, dict(rule="riemann_trapezoid", steps=1), ValueError, "trapezoid rule needs steps >= 2"),
    (integrated_gradients, dict(batch_size=0), ValueError, "batch_size must be > 0"),
    (integrated_gradients, dict(baseline="white"), ValueError, "baseline must be 'black', 'blurred' or a tensor"),
    (integrated_gradients, dict(baseline=0.0), TypeError, "baseline must be 'black', 'blurred' or a tensor.*float"),
    (integrated_gradients, dict(baseline=torch.zeros(1, 3, 32, 32)), ValueError,
     r"baseline has shape \[1, 3, 32, 32\]; it must match the images: \[1, 3, 64, 64\]$"),
    (integrated_gradients, dict(baseline=torch.full((1, 3, 64, 64), float("nan"))), ValueError,
     "baseline contains NaN"),
    (integrated_gradients, dict(baseline=torch.full((1, 3, 64, 64), 2.0)), ValueError,
     r"baseline must be in \[0, 1\] like the images"),
    (integrated_gradients, dict(baseline=torch.zeros(1, 3, 64, 64, dtype=torch.float64)), ValueError,
     "baseline is torch.float64.*baseline.to\\(images\\)"),
    (integrated_gradients, dict(baseline="blurred", blur_sigma=0), ValueError, "blur_sigma must be > 0"),
    (integrated_gradients, dict(baseline="blurred", blur_sigma="3"), TypeError, "blur_sigma must be a number"),
    (guided_backprop, dict(others="ignore"), ValueError, "others must be 'error'.*or 'gradient'.*got 'ignore'"),
    (guided_backprop, dict(reduce="sum"), ValueError, "reduce must be 'max'"),
    (guided_gradcam, dict(layer="nope"), ValueError, "layer 'nope' not found"),
    (guided_gradcam, dict(layer="pool"), ValueError, "1×1 output"),
    (guided_gradcam, dict(others=None), ValueError, "others must be 'error'"),
    (occlusion, dict(patch=0), ValueError, "patch must be > 0"),
    (occlusion, dict(patch=80), ValueError, r"patch 80×80 is larger than the images \(64×64\)"),
    (occlusion, dict(patch=4.5), TypeError, "patch must be an int"),
    (occlusion, dict(stride=0), ValueError, "stride must be > 0"),
    (occlusion, dict(patch=8, stride=12), ValueError, "stride 12×12 is larger than the patch"),
    (occlusion, dict(fill="noise"), ValueError, "fill must be a number, 'mean' or 'blur'"),
    (occlusion, dict(fill=None), TypeError, "fill must be a number"),
    (occlusion, dict(fill=float("nan")), ValueError, "fill must be a finite number"),
    (occlusion, dict(fill=2.0), ValueError, r"fill 2 is outside \[0, 1\].*0.5 = grey"),
    (occlusion, dict(fill=-0.5), ValueError, r"fill -0.5 is outside \[0, 1\]"),
    (occlusion, dict(batch_size=0), ValueError, "batch_size must be > 0"),
    (cam, dict(resolution="native"), ValueError, "resolution must be"),
    (gradcam, dict(resolution="native"), ValueError, "resolution must be"),
    (gradcam, dict(layer="nope"), ValueError, "layer 'nope' not found"),
    (gradcam, dict(layer=3), TypeError, "layer must be"),
    (gradcam, dict(layer="classifier"), ValueError, r"no spatial output \[N, C, h, w\]"),
    (gradcam, dict(layer="pool"), ValueError, "1×1 output.*pick a convolutional layer"),
    (gradcam_pp, dict(layer="pool"), ValueError, "1×1 output"),
    (hirescam, dict(layer="pool"), ValueError, "1×1 output"),
    (ablation_cam, dict(layer="pool"), ValueError, "1×1 output"),
    (ablation_cam, dict(layer="classifier"), ValueError, r"no spatial output \[N, C, h, w\]"),
    (ablation_cam, dict(layer="nope"), ValueError, "layer 'nope' not found"),
    (ablation_cam, dict(batch_size=0), ValueError, "batch_size must be > 0"),
    (ablation_cam, dict(batch_size=2.5), TypeError, "batch_size must be an int"),
    (ablation_cam, dict(resolution="native"), ValueError, "resolution must be"),
    (score_cam, dict(layer="pool"), ValueError, "1×1 output"),
    (score_cam, dict(layer=nn.Linear(2, 2)), ValueError, "is not a module of this"),
    (score_cam, dict(batch_size=0), ValueError, "batch_size must be > 0"),
    (score_cam, dict(batch_size=True), TypeError, "batch_size must be an int"),
    (score_cam, dict(resolution="native"), ValueError, "resolution must be"),
    (score_cam, dict(precision="half"), ValueError, "precision must be 'float32'.*or 'bfloat16'.*got 'half'"),
    (score_cam, dict(precision=None), ValueError, "precision must be 'float32'.*got None"),
    (score_cam, dict(precision=torch.bfloat16), ValueError, "precision must be 'float32'.*got torch.bfloat16"),
]


@pytest.mark.parametrize("method, kwargs, exc, words", BAD_OPTIONS,
                         ids=[f"{m.__name__}-{next(iter(k))}={next(iter(k.values()))!r}" for m, k, *_ in BAD_OPTIONS])
def test_bad_options_are_refused(method, kwargs, exc, words, model, images):
    with pytest.raises(exc, match=words):
        method(model, images[:1], **kwargs)


def test_a_fill_outside_0_1_is_fine_for_a_model_without_a_fixed_input_range(images):
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    assert torch.isfinite(occlusion(net, images[:1] * 4 - 2, patch=8, stride=8, fill=-2.0)).all()


def test_images_that_require_grad_are_explained_and_left_alone(model, images):
    x = images[:2].clone().requires_grad_()
    for method in METHODS:
        assert torch.isfinite(method(model, x)).all() and x.grad is None, method.__name__


BAD_PHOTO_CALLS = [  # (call on utils.photos, exception, words); load_photo's files: tests/test_photos.py
    (lambda p: p.photo("chelsey"), "PhotoError", r"no bundled photo named 'chelsey' \(did you mean 'chelsea'\?\)"),
    (lambda p: p.photo("chelsea", size=16), ValueError, r"size must be an int from 32 to 1024.*got 16"),
    (lambda p: p.photo("chelsea", size=224.0), ValueError, r"size must be an int.*got 224.0"),
    (lambda p: p.photos("chelsea"), TypeError, r"list of photo names.*use photo\('chelsea'\)"),
    (lambda p: p.composite("chelsea", "cofee"), "PhotoError", r"did you mean 'coffee'"),
    (lambda p: p.load_network("vgg16"), ValueError, "unknown network 'vgg16'; choose one of: efficientnet_lite0"),
    (lambda p: p.class_index(True), TypeError, "class name or an index; got bool"),
]


@pytest.mark.parametrize("call, exc, words", BAD_PHOTO_CALLS, ids=[w.split(" ")[0][:20] + str(i) for i, (_, _, w)
                                                                    in enumerate(BAD_PHOTO_CALLS)])
def test_bad_photo_calls_are_refused(call, exc, words):
    from utils import photos
    exc = getattr(photos, exc) if isinstance(exc, str) else exc
    with pytest.raises(exc, match=words):
        call(photos)
