"""Two maps that explain nothing, as yardsticks for the metrics (same API as the methods).

* :func:`random_map` — uniform noise: what any metric gives by chance.
* :func:`centre_map` — a Gaussian bump in the middle of the image: objects in this
  dataset are centred, so a map that ignores both model and image still "finds" them.

A method that does not beat these on localisation, or that scores like them in
the randomisation sanity check (ρ = 1: blind to the model), explains little.
"""
from __future__ import annotations

import torch
from torch import nn

from ._common import Target, check_images

__all__ = ["random_map", "centre_map"]


def random_map(model: nn.Module, images: torch.Tensor, target: Target = None, *, seed: int = 0) -> torch.Tensor:
    """Uniform noise ``[N, H, W]``, the same for the same ``seed`` (model and target are ignored)."""
    images = check_images(model, images)
    g = torch.Generator().manual_seed(seed)
    n, _, h, w = images.shape
    return torch.rand(n, h, w, generator=g).to(images.device)


def centre_map(model: nn.Module, images: torch.Tensor, target: Target = None, *, sigma: float = 0.25) -> torch.Tensor:
    """``exp(−r² / 2σ²)`` around the image centre, σ as a fraction of the side (model and target are ignored)."""
    images = check_images(model, images)
    n, _, h, w = images.shape
    ys = (torch.arange(h, dtype=torch.float32, device=images.device) + 0.5) / h - 0.5
    xs = (torch.arange(w, dtype=torch.float32, device=images.device) + 0.5) / w - 0.5
    r2 = ys.view(-1, 1) ** 2 + xs.view(1, -1) ** 2
    return torch.exp(-r2 / (2 * sigma ** 2)).expand(n, h, w).clone()
