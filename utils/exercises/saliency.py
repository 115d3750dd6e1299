"""Checkers of notebook 01's exercises: saliency and SmoothGrad."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from ..explain.saliency import input_gradients
from .framework import CheckResult, Case, Mistake, _channel_hint, _predicted, check, default_cases


def _grad(case: Case, images: torch.Tensor | None = None, target: torch.Tensor | None = None,
          score: str = "logit") -> torch.Tensor:
    """∂S/∂x per channel ``[N, 3, H, W]``, the model left as it was."""
    from ..explain._common import model_state_preserved
    with model_state_preserved(case.model):
        g, _ = input_gradients(case.model, case.images if images is None else images,
                               case.target if target is None else target, score)
    return g.detach()


SALIENCY_MISTAKES = [
    Mistake("you forgot the absolute value: the paper's map is max over channels of |∂S/∂x| (negative gradients "
            "matter as much as positive ones)", lambda c: _grad(c).amax(1)),
    Mistake("you took the mean over the colour channels; the paper takes the max of |∂S/∂x| over channels",
            lambda c: _grad(c).abs().mean(1)),
    Mistake("you summed over the colour channels; the paper takes the max of |∂S/∂x| over channels",
            lambda c: _grad(c).abs().sum(1)),
    Mistake("you differentiated the softmax probability; the paper (and this course) differentiates the class score "
            "before the softmax, the logit", lambda c: _grad(c, score="probability").abs().amax(1)),
    Mistake("you explained the model's predicted class instead of `target`: differentiate the logit of the class "
            "you are given (logits[range(N), target])", lambda c: _grad(c, target=_predicted(c)).abs().amax(1)),
    Mistake("you explained the other class: the logit to differentiate is logits[range(N), target]",
            lambda c: _grad(c, target=1 - c.target).abs().amax(1)),
    Mistake("you took the gradient of the sum of all logits, not of the target class's logit",
            lambda c: (_grad(c, target=torch.zeros_like(c.target)) + _grad(c, target=torch.ones_like(c.target))
                       ).abs().amax(1)),
]


def check_saliency(fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
                   cases: Sequence[Case] | None = None, verbose: bool = False) -> CheckResult:
    """Exercise 01.1: ``fn(model, images [N, 3, H, W], target [N]) → [N, H, W]``, max over channels of
    |∂ logit_target / ∂x| (Simonyan et al. 2014, eq. 1–3), the model and the images left as they were."""
    from ..explain import saliency
    return check("vanilla saliency", fn, lambda f, c: f(c.model, c.images, c.target),
                 lambda c: saliency(c.model, c.images, c.target), SALIENCY_MISTAKES,
                 default_cases() if cases is None else cases, "utils.explain.saliency", _channel_hint, verbose)


# ----------------------------------------------------------------------------- notebook 01: SmoothGrad
def _noise(case: Case) -> torch.Tensor:
    return case.extra["noise"]


def _noisy_grads(case: Case, score: str = "logit") -> torch.Tensor:
    """Per-channel gradients at every noisy copy: ``[n_samples, N, 3, H, W]``."""
    return torch.stack([_grad(case, images=case.images + eps, score=score) for eps in _noise(case)])


SMOOTHGRAD_MISTAKES = [
    Mistake("you took the max over channels before averaging over the noisy copies; SmoothGrad (as this course and "
            "Captum's NoiseTunnel compute it) averages |∂S/∂x| per channel first, then takes the max over channels",
            lambda c: _noisy_grads(c).abs().amax(2).mean(0)),
    Mistake("you averaged the signed gradients and took |·| afterwards; average |∂S/∂x| of each noisy copy",
            lambda c: _noisy_grads(c).mean(0).abs().amax(1)),
    Mistake("you forgot the absolute value: average |∂S/∂x| over the noisy copies, then the max over channels",
            lambda c: _noisy_grads(c).mean(0).amax(1)),
    Mistake("you summed over the noisy copies instead of averaging (divide by the number of copies)",
            lambda c: _noisy_grads(c).abs().sum(0).amax(1)),
    Mistake("you used only the first noisy copy: average over all of them (dimension 0 of `noise`)",
            lambda c: _noisy_grads(c)[0].abs().amax(1)),
    Mistake("you computed the saliency of the clean image: add each noise sample to the images first",
            lambda c: _grad(c).abs().amax(1)),
    Mistake("you explained the model's prediction on each noisy copy instead of `target`",
            lambda c: torch.stack([_grad(c, images=c.images + eps, target=_predicted(c, c.images + eps))
                                   for eps in _noise(c)]).abs().mean(0).amax(1)),
]


def _smoothgrad_cases(cases: Sequence[Case] | None, n_samples: int = 4, sigma: float = 0.1) -> list[Case]:
    cases = default_cases() if cases is None else list(cases)
    gen = torch.Generator().manual_seed(1)
    for c in cases:
        c.extra = {**c.extra, "noise": sigma * torch.randn((n_samples,) + tuple(c.images.shape), generator=gen)}
    return cases


def check_smoothgrad(fn: Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                     cases: Sequence[Case] | None = None, verbose: bool = False) -> CheckResult:
    """Exercise 01.2: ``fn(model, images, target, noise [n, N, 3, H, W]) → [N, H, W]``: the mean over the n noisy
    copies ``images + noise[k]`` of |∂ logit_target / ∂x| per channel, then the max over channels (Smilkov et al.
    2017, eq. 3; :func:`utils.explain.smoothgrad` draws ``noise`` itself)."""
    def reference(c: Case) -> torch.Tensor:
        return _noisy_grads(c).abs().mean(0).amax(1)
    return check("SmoothGrad", fn, lambda f, c: f(c.model, c.images, c.target, _noise(c)), reference,
                 SMOOTHGRAD_MISTAKES, _smoothgrad_cases(cases), "utils.explain.smoothgrad", _channel_hint, verbose)
