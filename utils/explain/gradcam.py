"""Grad-CAM and two relatives, for any convolutional layer, on one template.

With activations ``A_k`` of a layer and gradients ``G_k = ∂y_c/∂A_k`` of the
target logit, every method here is ``ReLU(Σ_k (weights ⊙ A)_k)``, upsampled
bilinearly to the input; only the weights differ (as in pytorch-grad-cam's
``BaseCAM``):

* Grad-CAM (Selvaraju et al., ICCV 2017, eq. 1–2): ``α_k = mean_ij G_k(i, j)``.
* Grad-CAM++ (Chattopadhay et al., WACV 2018, eq. 19 with the ReLU of eq. 7):
  ``α_k = Σ_ij a_k(i, j) · ReLU(G_k(i, j))`` with
  ``a = G² / (2G² + (Σ_ab A_k(a, b)) G³ + ε)`` (and 0 where ``G = 0``), ε = 1e-6 as
  in pytorch-grad-cam.
* HiResCAM (Draelos & Carin 2020): element-wise, ``Σ_k G_k ⊙ A_k``.

For a GAP + linear head at the last conv layer, ``G_k = w_ck / (hw)`` everywhere,
so Grad-CAM and HiResCAM both equal ``ReLU(CAM) / (hw)``: a positive multiple of
CAM (tested).

Conventions versus pytorch-grad-cam: the same ReLU; no per-image min-max
scaling here (grad-cam scales each map to [0, 1]); bilinear upsampling with
``align_corners=False`` (grad-cam uses ``cv2.resize``, the same interpolation).
The layer is a module or a dotted name (``"features.9"``, ``"layer4"``); the
default is the input of the global average pooling — the features CAM uses.
For a layer followed by an in-place op (ResNet's ``bn1`` → ``ReLU(inplace=True)``)
the maps use the layer's real output; pytorch-grad-cam's hook would see it
overwritten by the in-place op there.
Cost: one forward pass, recorded for autograd only from the layer on, and a
backward pass down to the layer.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ._common import Target, check_images, model_state_preserved, resolve_target
from ._layers import capture, find_gap_head, resolve_layer, spatial
from .cam import Resolution, check_resolution, upsample

__all__ = ["gradcam", "gradcam_pp", "hirescam", "layer_activations_and_gradients"]

Combine = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (A, G) [N,K,h,w] -> map [N,h,w]


def layer_activations_and_gradients(model: nn.Module, images: torch.Tensor, target: Target = None,
                                    layer: nn.Module | str | None = None
                                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(A, ∂y_target/∂A, target)`` at ``layer`` from one forward and one backward pass.

    The model is left as found (mode, ``requires_grad``, ``.grad``; the hook is removed, also on error).
    """
    images = check_images(model, images)
    if layer is None:
        module, where, name = find_gap_head(model)[0], "input", "before global average pooling"
    else:
        name = repr(layer) if isinstance(layer, str) else type(layer).__name__
        module, where = resolve_layer(model, layer), "output"
    with model_state_preserved(model), capture(module, where, leaf=True) as store, torch.enable_grad():
        logits = model(images)  # no graph before the layer: it starts at the captured leaf
        if not store:
            raise ValueError(f"layer {name} was not used in the forward pass")
        acts = spatial(name, store[-1])
        t = resolve_target(target, logits)
        (grads,) = torch.autograd.grad(logits.gather(1, t.view(-1, 1)).sum(), acts)
    return acts.detach(), grads.detach(), t


def _layer_cam(combine: Combine, model: nn.Module, images: torch.Tensor, target: Target,
               layer: nn.Module | str | None, resolution: Resolution) -> torch.Tensor:
    check_resolution(resolution)
    acts, grads, _ = layer_activations_and_gradients(model, images, target, layer)
    maps = combine(acts, grads).clamp(min=0).float()
    return maps if resolution == "features" else upsample(maps, tuple(images.shape[-2:]))


def _gradcam_combine(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return (g.mean((2, 3), keepdim=True) * a).sum(1)


def _gradcam_pp_combine(a: torch.Tensor, g: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    g2 = g * g
    denom = 2 * g2 + a.sum((2, 3), keepdim=True) * g2 * g + eps
    alpha = torch.where(g != 0, g2 / denom, torch.zeros_like(g))
    weights = (alpha * g.clamp(min=0)).sum((2, 3), keepdim=True)
    return (weights * a).sum(1)


def _hirescam_combine(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return (g * a).sum(1)


def gradcam(model: nn.Module, images: torch.Tensor, target: Target = None, *, layer: nn.Module | str | None = None,
            resolution: Resolution = "input") -> torch.Tensor:
    """Grad-CAM ``ReLU(Σ_k mean_ij(∂y_c/∂A_k) · A_k)`` → ``[N, H, W]`` (Selvaraju et al. 2017)."""
    return _layer_cam(_gradcam_combine, model, images, target, layer, resolution)


def gradcam_pp(model: nn.Module, images: torch.Tensor, target: Target = None, *,
               layer: nn.Module | str | None = None, resolution: Resolution = "input") -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018, eq. 19; pytorch-grad-cam's formulation) → ``[N, H, W]``."""
    return _layer_cam(_gradcam_pp_combine, model, images, target, layer, resolution)


def hirescam(model: nn.Module, images: torch.Tensor, target: Target = None, *, layer: nn.Module | str | None = None,
             resolution: Resolution = "input") -> torch.Tensor:
    """HiResCAM ``ReLU(Σ_k (∂y_c/∂A_k) ⊙ A_k)`` → ``[N, H, W]`` (Draelos & Carin 2020)."""
    return _layer_cam(_hirescam_combine, model, images, target, layer, resolution)
