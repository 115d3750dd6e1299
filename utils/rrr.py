"""Right for the Right Reasons: the input gradient as a training signal (Ross, Hughes & Doshi-Velez, IJCAI 2017).

RRR adds to the cross-entropy the squared input gradient of the summed
log-probabilities, inside an annotation ``A`` of the input region that must
*not* matter (their equation 1, without the weight decay term, which the
optimiser's ``weight_decay`` already is):

    L = CE + λ · mean_n Σ_{c,i,j} ( A_n(i, j) · ∂/∂x_n(c, i, j) Σ_k log p_k(x_n) )²

The gradient is taken with ``create_graph=True``, so the penalty's own gradient
with respect to the weights flows back through it (*double backpropagation*):
every step costs a backward pass more than cross-entropy. On the synthetic
orcas and leopards ``A`` is the background, ``1 − mask``; Caltech-256 has no
masks, so RRR cannot run there. CAMLoss needs no annotation: that is the
comparison notebook 05 draws.

Why Σ_k log p_k, not the true class's log-probability: the annotation says the
region must not matter for *any* class's score, and the sum needs no label (the
paper's choice). The penalty is in the units of (log-probability per unit of
input)², summed over the annotated inputs; λ trades it against the
cross-entropy (``python -m utils.train rrr --lam``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["input_gradients", "rrr_penalty", "rrr_loss", "check_annotation", "check_lam"]


def _at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """float32 under mixed precision (bfloat16 logits), float64 kept (the exact tests)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def check_lam(lam: object) -> float:
    """λ as a float, or a clear error: a number >= 0 (0 is plain cross-entropy)."""
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam >= 0:
        raise ValueError(f"lam must be a number >= 0; got {lam!r}")
    return float(lam)


def check_annotation(images: torch.Tensor, annotation: torch.Tensor) -> torch.Tensor:
    """``annotation`` as a float ``[N, 1, H, W]`` (from ``[N, H, W]`` or ``[N, 1, H, W]``, bool or float in [0, 1])."""
    if not isinstance(annotation, torch.Tensor):
        raise TypeError(f"annotation must be a tensor [N, H, W] (1 where the input must not matter); got "
                        f"{type(annotation).__name__}")
    a = annotation.unsqueeze(1) if annotation.dim() == 3 else annotation
    n, _, h, w = images.shape
    if a.dim() != 4 or a.shape[1] != 1 or tuple(a.shape[-2:]) != (h, w) or a.shape[0] != n:
        raise ValueError(f"annotation must be [N, H, W] = [{n}, {h}, {w}] like the images' batch and pixels; got "
                         f"{list(annotation.shape)}")
    a = a.to(images.device, torch.float32)
    if bool(((a < 0) | (a > 1)).any()):
        raise ValueError("annotation must lie in [0, 1] (1: must not matter, 0: may matter)")
    return a


def input_gradients(logits_of, images: torch.Tensor, create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, ∂ Σ_n Σ_k log p_k(x_n) / ∂x)``: the gradient of every image's summed log-probabilities with respect
    to its own pixels, ``[N, C, H, W]`` (images are independent in eval mode and under batch norm's running stats;
    in train mode batch norm couples them, as in any training step)."""
    x = images.detach().requires_grad_(True)
    logits = logits_of(x)
    total = F.log_softmax(_at_least_float32(logits), dim=1).sum()
    (grad,) = torch.autograd.grad(total, x, create_graph=create_graph)
    return logits, grad


def rrr_penalty(grad: torch.Tensor, annotation: torch.Tensor) -> torch.Tensor:
    """Per image, ``Σ (A ⊙ ∂/∂x Σ_k log p_k)²`` over channels and pixels → ``[N]`` (Ross et al. 2017, eq. 1)."""
    return (annotation * grad).pow(2).sum((1, 2, 3))


def rrr_loss(logits: torch.Tensor, grad: torch.Tensor, labels: torch.Tensor, annotation: torch.Tensor, *,
             lam: float = 10.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``CE + λ · mean_n penalty_n`` and both parts (detached 0-d tensors)."""
    check_lam(lam)
    ce = F.cross_entropy(_at_least_float32(logits), labels)
    pen = rrr_penalty(grad, annotation).mean()
    return ce + lam * pen, {"ce": ce.detach(), "penalty": pen.detach()}
