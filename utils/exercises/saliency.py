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


# ----------------------------------------------------------------------------- notebook 01: Integrated Gradients
def _path_grads(case: Case, alphas: Sequence[float], target: torch.Tensor | None = None) -> torch.Tensor:
    """∂S_target/∂x at ``baseline + α (images − baseline)`` for each α: ``[len(alphas), N, 3, H, W]``."""
    base = case.extra["baseline"]
    return torch.stack([_grad(case, images=base + a * (case.images - base), target=target) for a in alphas])


def _steps(case: Case) -> int:
    return case.extra["steps"]


def _right(case: Case) -> list[float]:
    return [k / _steps(case) for k in range(1, _steps(case) + 1)]


def _ig(case: Case, alphas: Sequence[float] | None = None, factor: bool = True, average: bool = True,
        target: torch.Tensor | None = None, reduce: str = "sum") -> torch.Tensor:
    """The exercise's Integrated Gradients with knobs for the typical mistakes (all defaults: the right answer)."""
    grads = _path_grads(case, _right(case) if alphas is None else alphas, target)
    total = grads.mean(0) if average else grads.sum(0)
    attr = total * (case.images - case.extra["baseline"]) if factor else total
    return {"sum": attr.sum(1), "mean": attr.mean(1), "absmax": attr.abs().amax(1)}[reduce]


INTEGRATED_MISTAKES = [
    Mistake("you forgot the factor (x − x'): Integrated Gradients multiplies the averaged gradient by "
            "(images − baseline), which is what makes the attributions add up to F(x) − F(x')",
            lambda c: _ig(c, factor=False)),
    Mistake("you used the left Riemann sum, α = 0, 1/m, …, (m−1)/m (or walked from the images towards the "
            "baseline, x + α (x' − x), which visits the same points); the rule stated (the paper's eq. 3) is the "
            "right sum from the baseline, x' + α (x − x') at α = 1/m, 2/m, …, 1: range(1, steps + 1)",
            lambda c: _ig(c, alphas=[k / _steps(c) for k in range(_steps(c))])),
    Mistake("your path points run from 0 to 1 in `steps` points, both ends included (torch.linspace(0, 1, steps)); "
            "the rule stated is α = k/m for k = 1, …, m",
            lambda c: _ig(c, alphas=torch.linspace(0, 1, _steps(c)).tolist())),
    Mistake("you summed the gradients over the steps without dividing by their number: the integral is their "
            "average (each step has width 1/m)", lambda c: _ig(c, average=False)),
    Mistake("you took the mean over the colour channels; sum them, so that each map still adds up to F(x) − F(x')",
            lambda c: _ig(c, reduce="mean")),
    Mistake("you took the max of |·| over the colour channels (as for saliency); Integrated Gradients keeps the sign "
            "and sums the channels, so that each map adds up to F(x) − F(x')", lambda c: _ig(c, reduce="absmax")),
    Mistake("you explained the model's predicted class instead of `target`",
            lambda c: _ig(c, target=_predicted(c))),
    Mistake("you explained the other class: the score is logits[range(N), target]",
            lambda c: _ig(c, target=1 - c.target)),
]


def _integrated_cases(cases: Sequence[Case] | None, steps: int = 8) -> list[Case]:
    """The default cases with a grey, slightly noisy baseline (not black: with x' = 0 the factor x − x' is x, and
    forgetting the baseline in it could not be told from the right answer)."""
    cases = default_cases() if cases is None else list(cases)
    gen = torch.Generator().manual_seed(2)
    for c in cases:
        base = (0.5 + 0.1 * torch.randn(c.images.shape[1:], generator=gen)).clamp(0, 1).expand_as(c.images)
        c.extra = {**c.extra, "baseline": base.contiguous(), "steps": steps}
    return cases


def check_integrated_gradients(fn: Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, int],
                                            torch.Tensor],
                               cases: Sequence[Case] | None = None, verbose: bool = False) -> CheckResult:
    """Exercise 01.3: ``fn(model, images, target, baseline [N, 3, H, W], steps) → [N, H, W]``:
    ``(x − x') · (1/m) Σ_{k=1..m} ∂S_target/∂x at x' + (k/m)(x − x')``, summed over the colour channels
    (Sundararajan et al. 2017, eq. 3; :func:`utils.explain.integrated_gradients` with ``rule="riemann_right"``)."""
    from ..explain import integrated_gradients

    def reference(c: Case) -> torch.Tensor:  # fold=False: the model's own arithmetic, as the learner's loop runs it
        return integrated_gradients(c.model, c.images, c.target, baseline=c.extra["baseline"], steps=_steps(c),
                                    rule="riemann_right", fold=False)
    return check("Integrated Gradients", fn,
                 lambda f, c: f(c.model, c.images, c.target, c.extra["baseline"], _steps(c)), reference,
                 INTEGRATED_MISTAKES, _integrated_cases(cases), "utils.explain.integrated_gradients",
                 _channel_hint, verbose)
