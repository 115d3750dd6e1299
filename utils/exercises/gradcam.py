"""Checkers of notebook 04's exercises: Grad-CAM and HiResCAM."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from .framework import CheckResult, Case, Mistake, _predicted, check, default_cases


def _layer_cases(cases: Sequence[Case] | None) -> list[Case]:
    """Grad-CAM below the last layer, where it differs from CAM and from HiResCAM: the course model's third block
    (``features.10``, 16 × 16) and the ResNet-18's ``layer3`` on 128-px images (8 × 8)."""
    cases = default_cases(size=128) if cases is None else list(cases)
    for c in cases:
        name = "features.10" if hasattr(c.model, "features") else "layer3"
        c.extra = {**c.extra, "layer": c.model.get_submodule(name), "layer_name": name}
    return cases


class _Softmax(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).softmax(1)


def _acts_grads(case: Case, target: torch.Tensor | None = None, score: str = "logit"
                ) -> tuple[torch.Tensor, torch.Tensor]:
    from ..explain.gradcam import layer_activations_and_gradients
    key = ("acts", score, None if target is None else tuple(target.tolist()))
    if key not in case.extra:
        # the wrapper takes the model's mode: restoring the wrapper's mode afterwards sets the model's too
        model = _Softmax(case.model).train(case.model.training) if score == "probability" else case.model
        a, g, _ = layer_activations_and_gradients(model, case.images, case.target if target is None else target,
                                                  case.extra["layer"])
        case.extra[key] = (a, g)
    return case.extra[key]


def _layer_map(case: Case, *, method: str = "gradcam", relu: str = "relu", target: torch.Tensor | None = None,
               score: str = "logit", mode: str = "bilinear", align_corners: bool | None = False,
               relu_after_upsampling: bool = False) -> torch.Tensor:
    """Grad-CAM (``method="gradcam"``: channel weights = gradients averaged over space; ``"sum"``: summed;
    ``"hirescam"``: element-wise) written out plainly, with one knob per typical mistake."""
    import torch.nn.functional as F
    a, g = _acts_grads(case, target, score)
    if method == "gradcam":
        m = (g.mean((2, 3), keepdim=True) * a).sum(1)
    elif method == "sum":
        m = (g.sum((2, 3), keepdim=True) * a).sum(1)
    elif method == "relu_weights":
        m = (g.mean((2, 3), keepdim=True).clamp(min=0) * a).sum(1)
    else:
        m = (g * a).sum(1)
    activate = {"relu": lambda t: t.clamp(min=0), "none": lambda t: t, "abs": torch.abs}[relu]
    if not relu_after_upsampling:
        m = activate(m)
    size = tuple(case.images.shape[-2:])
    up = F.interpolate(m.unsqueeze(1), size=size, mode=mode,
                       **({} if mode == "nearest" else {"align_corners": align_corners})).squeeze(1)
    return activate(up) if relu_after_upsampling else up


def _layer_hint(got: tuple, expected: tuple) -> str | None:
    if len(got) == 3 and got[0] == expected[0] and got[1:] != expected[1:]:
        return ("upsample the map to the image's size: F.interpolate(m[:, None], size=images.shape[-2:], "
                "mode=\"bilinear\", align_corners=False)[:, 0]")
    if len(got) == 4 and got[0] == expected[0]:
        return "one map per image is wanted: sum the weighted channels over dimension 1"
    return None


def _upsampling_mistakes(method: str) -> list[Mistake]:
    return [
        Mistake("wrong upsampling: nearest-neighbour gives blocks; the course (like grad-cam and OpenCV's resize) "
                "upsamples bilinearly with align_corners=False", lambda c: _layer_map(c, method=method, mode="nearest")),
        Mistake("wrong upsampling: align_corners=True stretches the map so the corner cells' centres sit on the image's "
                "corner pixels; use align_corners=False (cell centres at pixel centres, as OpenCV's resize)",
                lambda c: _layer_map(c, method=method, align_corners=True)),
        Mistake("wrong upsampling: bicubic; use mode=\"bilinear\", align_corners=False",
                lambda c: _layer_map(c, method=method, mode="bicubic")),
        Mistake("you upsampled before the ReLU: apply the ReLU at the layer's resolution, then upsample (bilinear "
                "interpolation of a clipped map is not the clipped interpolation)",
                lambda c: _layer_map(c, method=method, relu_after_upsampling=True)),
    ]


GRADCAM_MISTAKES = [
    Mistake("you forgot the ReLU: Grad-CAM keeps the positive part, ReLU(Σ_k α_k A^k)", lambda c: _layer_map(c, relu="none")),
    Mistake("you took |·| instead of the ReLU: negative evidence must be dropped, not flipped",
            lambda c: _layer_map(c, relu="abs")),
    Mistake("your channel weights are not averaged over space: you multiplied the gradient and the activations "
            "cell by cell. That is HiResCAM (exercise 2); Grad-CAM's weight α_k is the mean of ∂y/∂A^k over the cells",
            lambda c: _layer_map(c, method="hirescam")),
    Mistake("you summed the gradients over the cells: α_k is their mean (divide by h·w), as the paper's eq. 1",
            lambda c: _layer_map(c, method="sum")),
    Mistake("you applied a ReLU to the channel weights α_k: Grad-CAM keeps negative weights and applies the ReLU to "
            "the weighted sum", lambda c: _layer_map(c, method="relu_weights")),
    Mistake("you differentiated the softmax probability; Grad-CAM differentiates the class score before the "
            "softmax (the logit)", lambda c: _layer_map(c, score="probability")),
    Mistake("you explained the model's predicted class instead of `target`", lambda c: _layer_map(c, target=_predicted(c))),
    Mistake("you explained the other class: differentiate logits[range(N), target]",
            lambda c: _layer_map(c, target=1 - c.target)),
] + _upsampling_mistakes("gradcam")


def check_gradcam(fn: Callable[[nn.Module, nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
                  cases: Sequence[Case] | None = None, verbose: bool = False) -> CheckResult:
    """Exercise 04.1: ``fn(model, layer, images, target) → [N, H, W]``: ``ReLU(Σ_k α_k A^k)`` with ``α_k`` the
    gradient of the target logit averaged over the layer's cells (Selvaraju et al. 2017, eq. 1–2), upsampled
    bilinearly to the image; the model left as found (no hooks, no ``.grad``)."""
    from ..explain import gradcam
    cases = _layer_cases(cases)
    return check("Grad-CAM", fn, lambda f, c: f(c.model, c.extra["layer"], c.images, c.target),
                 lambda c: gradcam(c.model, c.images, c.target, layer=c.extra["layer"]), GRADCAM_MISTAKES, cases,
                 "utils.explain.gradcam", _layer_hint, verbose,
                 summary=f"2 models at an inner layer ({', '.join(c.extra['layer_name'] for c in cases)}) and "
                         f"{sum(c.images.shape[0] for c in cases)} images")


HIRESCAM_MISTAKES = [
    Mistake("that is Grad-CAM: you averaged the gradient over the cells. HiResCAM multiplies gradient and "
            "activation cell by cell, Σ_k (∂y/∂A^k) ⊙ A^k, before the ReLU", lambda c: _layer_map(c)),
    Mistake("you forgot the ReLU: HiResCAM keeps the positive part of Σ_k (∂y/∂A^k) ⊙ A^k",
            lambda c: _layer_map(c, method="hirescam", relu="none")),
    Mistake("you took |·| instead of the ReLU: negative evidence must be dropped, not flipped",
            lambda c: _layer_map(c, method="hirescam", relu="abs")),
    Mistake("you explained the model's predicted class instead of `target`",
            lambda c: _layer_map(c, method="hirescam", target=_predicted(c))),
    Mistake("you explained the other class: differentiate logits[range(N), target]",
            lambda c: _layer_map(c, method="hirescam", target=1 - c.target)),
] + _upsampling_mistakes("hirescam")


def check_hirescam(fn: Callable[[nn.Module, nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
                   cases: Sequence[Case] | None = None, verbose: bool = False) -> CheckResult:
    """Exercise 04.2: ``fn(model, layer, images, target) → [N, H, W]``: HiResCAM ``ReLU(Σ_k (∂y/∂A^k) ⊙ A^k)``
    (Draelos & Carin 2020), upsampled bilinearly to the image."""
    from ..explain import hirescam
    cases = _layer_cases(cases)
    return check("HiResCAM", fn, lambda f, c: f(c.model, c.extra["layer"], c.images, c.target),
                 lambda c: hirescam(c.model, c.images, c.target, layer=c.extra["layer"]), HIRESCAM_MISTAKES, cases,
                 "utils.explain.hirescam", _layer_hint, verbose,
                 summary=f"2 models at an inner layer ({', '.join(c.extra['layer_name'] for c in cases)}) and "
                         f"{sum(c.images.shape[0] for c in cases)} images")
