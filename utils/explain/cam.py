"""Class activation maps (Zhou, Khosla, Lapedriza, Oliva & Torralba, CVPR 2016).

For a network that ends in global average pooling and one linear layer, the
logit of class ``c`` is

    y_c = Σ_k w_ck · (1/hw) Σ_{x,y} f_k(x, y) + b_c

so the *class activation map* ``M_c(x, y) = Σ_k w_ck f_k(x, y)`` (eq. 2 of the
paper) says how much each location contributes, and ``mean(M_c) + b_c = y_c``
exactly. The map is computed from the same forward pass as the logits (the
features are captured at the pooling layer's input) and upsampled bilinearly
(``align_corners=False``) to the input size. No ReLU and no rescaling: negative
values are evidence *against* the class.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ._common import Target, check_images, model_state_preserved, resolve_target
from ._layers import capture, find_gap_head, spatial

__all__ = ["cam", "upsample", "check_resolution"]

Resolution = Literal["input", "features"]


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[N, h, w]`` → ``[N, H, W]`` bilinear, ``align_corners=False`` (as OpenCV's ``resize`` does)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)


def check_resolution(resolution: object) -> None:
    """``resolution`` is ``"input"`` (upsampled to the image) or ``"features"`` (the layer's grid); else ValueError."""
    if resolution not in ("input", "features"):
        raise ValueError(f"resolution must be 'input' or 'features'; got {resolution!r}")


def cam(model: nn.Module, images: torch.Tensor, target: Target = None, *,
        resolution: Resolution = "input") -> torch.Tensor:
    """CAM ``Σ_k w_ck f_k`` of the target class → ``[N, H, W]`` (``resolution="features"``: ``[N, h, w]``).

    Works for the course model and any model with a GAP + linear head (e.g.
    torchvision ResNets); other models get a ``ValueError`` (use Grad-CAM).
    """
    images = check_images(model, images)
    check_resolution(resolution)
    pool, linear = find_gap_head(model)
    with model_state_preserved(model), torch.no_grad(), capture(pool, "input") as store:
        logits = model(images)
        feats = spatial("before global average pooling", store[-1])
        if feats.shape[1] != linear.in_features or not torch.allclose(
                linear(feats.mean((2, 3))), logits, rtol=1e-4, atol=1e-4 * float(logits.abs().max()) + 1e-6):
            raise ValueError(f"{type(model).__name__}'s output is not linear(global average pool(features)), "
                             f"so it has no CAM; use gradcam(model, images, layer=...) instead")
        t = resolve_target(target, logits)
        maps = torch.einsum("nk,nkhw->nhw", linear.weight[t], feats).float()
    return maps if resolution == "features" else upsample(maps, tuple(images.shape[-2:]))
