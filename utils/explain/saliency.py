"""Gradient saliency (Simonyan, Vedaldi & Zisserman 2014) and SmoothGrad (Smilkov et al. 2017).

Saliency: the class score ``S_c`` is approximated near the image ``x`` by its
first-order Taylor expansion ``S_c(x') ≈ wᵀx' + b`` with ``w = ∂S_c/∂x |_x``;
the map is ``M(i, j) = max_ch |w(ch, i, j)|`` (eq. 1–3 of the paper): how much a
small change of each pixel would change the score.

SmoothGrad: gradients are noisy, so average the map over copies of the image
with Gaussian noise, ``M̂(x) = 1/n Σ_k M(x + ε_k)``, ``ε_k ~ N(0, σ²)`` with
``σ = noise × (x_max − x_min)`` (eq. 3 of Smilkov et al.; images in [0, 1], so
``σ = noise``).

Conventions (stated because the libraries differ): the score is the *logit*
(pre-softmax) unless ``score="probability"``; ``absolute=True`` takes ``|∂S/∂x|``
before reducing over channels (Captum ``Saliency(abs=True)``); SmoothGrad
averages the per-channel ``|∂S/∂x|`` over the noise samples and then reduces over
channels (what Captum's ``NoiseTunnel(Saliency)`` followed by a channel max gives).
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ._common import (Target, auto_batch_size, check_finite_number, check_images, check_positive_int,
                      model_state_preserved, resolve_target, target_indices)

__all__ = ["saliency", "smoothgrad", "input_gradients"]

Score = Literal["logit", "probability"]
Reduce = Literal["max", "mean"]


def _check_options(score: str, reduce: str) -> None:
    if score not in ("logit", "probability"):
        raise ValueError(f"score must be 'logit' or 'probability'; got {score!r}")
    if reduce not in ("max", "mean"):
        raise ValueError(f"reduce must be 'max' (the paper) or 'mean'; got {reduce!r}")


def _reduce(grads: torch.Tensor, reduce: str) -> torch.Tensor:
    return (grads.amax(1) if reduce == "max" else grads.mean(1)).float()


def input_gradients(model: nn.Module, images: torch.Tensor, target: Target,
                    score: Score = "logit") -> tuple[torch.Tensor, torch.Tensor]:
    """``(∂S_target/∂images [N,3,H,W], target [N])`` from one forward and one backward pass.

    ``target=None`` picks each image's predicted class from that same forward pass.

    Low level: expects checked inputs and a model already in eval mode with
    frozen parameters (see :func:`model_state_preserved`).
    """
    x = images.detach().requires_grad_(True)  # a new leaf sharing memory; the caller's tensor is untouched
    with torch.enable_grad():
        logits = model(x)
        t = resolve_target(target, logits)
        scores = logits.softmax(1) if score == "probability" else logits
        picked = scores.gather(1, t.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(picked, x)
    return grad, t


def saliency(model: nn.Module, images: torch.Tensor, target: Target = None, *, score: Score = "logit",
             absolute: bool = True, reduce: Reduce = "max") -> torch.Tensor:
    """Vanilla gradient saliency ``max_ch |∂S_c/∂x|`` → ``[N, H, W]`` (Simonyan et al. 2014, eq. 1–3).

    ``score``: differentiate the logit (default) or the softmax probability.
    ``absolute=False`` keeps the sign (then ``reduce="mean"`` is the sensible reduction).
    Cost: one forward and one backward pass for the whole batch.
    """
    images = check_images(model, images)
    _check_options(score, reduce)
    with model_state_preserved(model):
        grad, _ = input_gradients(model, images, target, score)
    grad = grad.abs() if absolute else grad
    return _reduce(grad, reduce).detach()


def smoothgrad(model: nn.Module, images: torch.Tensor, target: Target = None, *, n_samples: int = 25,
               noise: float = 0.15, batch_size: int = 25, generator: torch.Generator | None = None,
               score: Score = "logit", absolute: bool = True, reduce: Reduce = "max") -> torch.Tensor:
    """SmoothGrad: the saliency averaged over ``n_samples`` noisy copies of each image → ``[N, H, W]``.

    ``noise`` is σ as a fraction of the input range (images in [0, 1]: σ = noise;
    Smilkov et al. recommend 0.1–0.2). The noise of ``batch_size`` copies of every
    image is drawn at once, exactly as Captum's ``NoiseTunnel`` draws it
    (``torch.normal`` per chunk of N × batch_size images, copies of one image
    adjacent), so with the same seed both see the same images; ``generator`` makes
    the draws reproducible (``None``: the global RNG). The noisy images then go
    through the model at most ``PIXELS_PER_PASS`` pixels per pass (64 images of
    64 × 64): each image's gradient is its own, so the slicing changes no value
    beyond rounding (on 2 CPU cores: the same bits), and a pass of a thousand images
    runs about twice as slow per image as one of 64 (the activations leave the caches).
    The target is fixed from the *clean* image (``None``: its predicted class).
    Cost: ``n_samples`` forward+backward passes per image (plus one forward when ``target=None``).
    """
    images = check_images(model, images)
    _check_options(score, reduce)
    check_positive_int("n_samples", n_samples)
    check_positive_int("batch_size", batch_size)
    noise = check_finite_number("noise", noise, "σ as a fraction of the input range, e.g. 0.15")
    if noise < 0:
        raise ValueError(f"noise must be a number >= 0 (σ as a fraction of the input range); got {noise!r}")
    n = images.shape[0]
    rows = auto_batch_size(None, images)  # images per forward+backward pass
    total = torch.zeros_like(images)
    with model_state_preserved(model):
        if target is None:
            with torch.no_grad():
                t = model(images).argmax(1)
        else:  # its range is checked against the logits of the first pass below
            t = target_indices(target, n, images.device)
        done = 0
        while done < n_samples:
            k = min(batch_size, n_samples - done)
            std = torch.full((n * k,) + tuple(images.shape[1:]), float(noise), device=images.device)
            eps = torch.normal(0.0, std, generator=generator) if generator is not None else torch.normal(0.0, std)
            noisy, targets = images.repeat_interleave(k, dim=0) + eps, t.repeat_interleave(k)
            grad = torch.cat([input_gradients(model, noisy[i:i + rows], targets[i:i + rows], score)[0]
                              for i in range(0, n * k, rows)])
            grad = grad.abs() if absolute else grad
            total += grad.view(n, k, *images.shape[1:]).sum(1)
            done += k
    return _reduce(total / n_samples, reduce).detach()
