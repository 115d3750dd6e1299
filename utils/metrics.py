"""Measuring explanations against the object masks the dataset provides.

* :func:`energy_in_mask` — the share of a map's positive mass that lies on the
  object: ``Σ_{mask} max(M, 0) / Σ max(M, 0)`` (the "energy-based pointing game"
  of Wang et al. 2020, Score-CAM). Compare it with the mask's share of the image
  (:func:`mask_area`): a map that ignores the object scores about the area share.
* :func:`pointing_game` — whether the map's maximum falls on the object
  (Zhang et al. 2018).
"""
from __future__ import annotations

import torch

__all__ = ["energy_in_mask", "mask_area", "pointing_game"]


def _check(maps: torch.Tensor, masks: torch.Tensor) -> None:
    if maps.dim() != 3 or masks.shape != maps.shape:
        raise ValueError(f"maps and masks must both be [N, H, W] of the same shape; got "
                         f"{list(maps.shape)} and {list(masks.shape)}")
    if masks.dtype != torch.bool:
        raise TypeError(f"masks must be a bool tensor; got {masks.dtype}")


def energy_in_mask(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per image, the share of the positive attribution inside the mask, in [0, 1] (NaN for an all-zero map)."""
    _check(maps, masks)
    pos = maps.detach().float().clamp(min=0)
    total = pos.sum((1, 2))
    inside = (pos * masks.to(pos.device)).sum((1, 2))
    return torch.where(total > 0, inside / total.clamp(min=1e-30), torch.full_like(total, float("nan")))


def mask_area(masks: torch.Tensor) -> torch.Tensor:
    """Per image, the mask's share of the image (what a map blind to the object would score)."""
    if masks.dim() != 3:
        raise ValueError(f"masks must be [N, H, W]; got {list(masks.shape)}")
    return masks.float().mean((1, 2))


def pointing_game(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per image, True if the map's maximum lies on the object (ties: the first maximum)."""
    _check(maps, masks)
    flat = maps.detach().flatten(1).argmax(1)
    return masks.to(maps.device).flatten(1).gather(1, flat.view(-1, 1)).squeeze(1)
