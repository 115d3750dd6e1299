"""Solutions to notebook 01's exercises (each function is pasted in place of its stub by the tests)."""
import torch


def saliency_map(model, images, target):
    """max over channels of |∂ logit_target / ∂x| → [N, H, W] (Simonyan et al. 2014, eq. 1-3)."""
    x = images.detach().clone().requires_grad_(True)          # a copy: the caller's images stay as they are
    logits = model(x)
    score = logits[torch.arange(len(x)), target].sum()        # the images are independent: one backward for all
    (grad,) = torch.autograd.grad(score, x)                   # the input gradient only: no .grad on the weights
    return grad.abs().amax(dim=1)


def smoothgrad_map(model, images, target, noise):
    """The mean over noisy copies images + noise[k] of |∂ logit_target / ∂x| per channel, then the max over channels
    (Smilkov et al. 2017, eq. 3)."""
    total = torch.zeros_like(images)
    for eps in noise:
        x = (images + eps).detach().requires_grad_(True)
        score = model(x)[torch.arange(len(x)), target].sum()
        (grad,) = torch.autograd.grad(score, x)
        total += grad.abs()
    return (total / len(noise)).amax(dim=1)


def integrated_gradients_map(model, images, target, baseline, steps):
    """(x − x') · (1/m) Σ_{k=1..m} ∂ logit_target/∂x at x' + (k/m)(x − x'), summed over the colour channels
    (Sundararajan et al. 2017, eq. 3: the right Riemann sum)."""
    total = torch.zeros_like(images)
    for k in range(1, steps + 1):
        x = (baseline + (k / steps) * (images - baseline)).detach().requires_grad_(True)
        score = model(x)[torch.arange(len(x)), target].sum()
        (grad,) = torch.autograd.grad(score, x)
        total += grad
    return (total / steps * (images - baseline)).sum(dim=1)
