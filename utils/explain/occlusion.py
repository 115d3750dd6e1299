"""Occlusion sensitivity (Zeiler & Fergus 2014, section 4.2).

Slide a ``patch`` over the image with step ``stride``, replace the pixels under
it by a ``fill``, and record how much the target score drops:

    Δ_w = S_c(x) − S_c(x with window w filled)

Each pixel gets the mean of Δ_w over the windows that cover it. A large positive
value: hiding that region hurts the class. Window starts are ``0, s, 2s, …`` up
to and including ``ceil((H − p) / s) · s``; the last window is clipped at the
border so every pixel is covered (Captum's ``Occlusion`` convention, which the
tests check against).

Cost: ``1 + n_h · n_w`` forward passes per image, with
``n_h = ceil((H − p) / s) + 1`` (see :func:`count_windows`), no backward pass.
The windows of one image go through the model in batches of ``batch_size``
(by default as many as fit about 262,144 pixels, :data:`utils.explain._common.PIXELS_PER_PASS`: 64 images at
64 px, 5 at 224; on a 2-core CPU the per-image cost grows once a batch's activations leave the cache, e.g.
EfficientNet-Lite0 at 224 px 13-15 ms per image at 2-8 per pass against 23 ms at 64).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ._common import (Target, auto_batch_size, check_finite_number, check_images, check_positive_int,
                      expects_unit_range, gaussian_blur, inference_copy, model_state_preserved, resolve_target)

__all__ = ["occlusion", "count_windows", "fill_images"]

Fill = float | str


def _pair(name: str, value: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return check_positive_int(name, value[0]), check_positive_int(name, value[1])
    v = check_positive_int(name, value)
    return v, v


def _starts(size: int, patch: int, stride: int) -> list[int]:
    return [i * stride for i in range(math.ceil((size - patch) / stride) + 1)]


def count_windows(height: int, width: int, patch: int | tuple[int, int], stride: int | tuple[int, int]) -> int:
    """Number of window positions (= forward passes per image, besides the unoccluded one)."""
    (ph, pw), (sh, sw) = _pair("patch", patch), _pair("stride", stride)
    return len(_starts(height, ph, sh)) * len(_starts(width, pw, sw))


def fill_images(images: torch.Tensor, fill: Fill, patch: tuple[int, int] = (8, 8)) -> torch.Tensor:
    """The image a window is filled from: a constant, the per-image channel ``"mean"``, or a ``"blur"``.

    ``"blur"``: a Gaussian blur with σ = patch/4 px (kernel 2·⌈2σ⌉+1), reflect padding —
    removes the detail under the window but keeps its colour, so the score drop
    measures shape and texture rather than "a grey square appeared".
    """
    if isinstance(fill, str):
        if fill == "mean":
            return images.mean((2, 3), keepdim=True).expand_as(images)
        if fill == "blur":
            sigma = max(patch) / 4
            return gaussian_blur(images, sigma, math.ceil(2 * sigma))
        raise ValueError(f"fill must be a number, 'mean' or 'blur'; got {fill!r}")
    if isinstance(fill, bool) or not isinstance(fill, (int, float)):
        raise TypeError(f"fill must be a number, 'mean' or 'blur'; got {type(fill).__name__}")
    return torch.full_like(images, float(fill))


def occlusion(model: nn.Module, images: torch.Tensor, target: Target = None, *,
              patch: int | tuple[int, int] = 8, stride: int | tuple[int, int] = 4, fill: Fill = 0.5,
              batch_size: int | None = None) -> torch.Tensor:
    """Occlusion map ``[N, H, W]``: mean drop of the target logit over the windows covering each pixel.

    ``fill``: a value (default 0.5, mid-grey in [0, 1] pixel space), ``"mean"``
    (each image's mean colour) or ``"blur"`` (see :func:`fill_images`).
    ``stride`` must not exceed ``patch`` (pixels between windows would get no score).
    """
    images = check_images(model, images)
    (ph, pw), (sh, sw) = _pair("patch", patch), _pair("stride", stride)
    batch_size = auto_batch_size(batch_size, images)
    n, _, h, w = images.shape
    if ph > h or pw > w:
        raise ValueError(f"patch {ph}×{pw} is larger than the images ({h}×{w}); use a smaller patch")
    if sh > ph or sw > pw:
        raise ValueError(f"stride {sh}×{sw} is larger than the patch {ph}×{pw}: pixels between windows "
                         f"would never be occluded; use stride <= patch")
    if not isinstance(fill, str):
        value = check_finite_number("fill", fill, "a pixel value, or 'mean' or 'blur'")
        if expects_unit_range(model) and not 0.0 <= value <= 1.0:
            raise ValueError(f"fill {value:g} is outside [0, 1], the range of the images this model takes: the "
                             f"windows would show it pixels it never sees; use a value in [0, 1] (0.5 = grey), "
                             f"'mean' or 'blur'")
    base = fill_images(images, fill, (ph, pw))

    # one boolean mask per window position: [W, 1, H, W]
    masks = []
    for top in _starts(h, ph, sh):
        for left in _starts(w, pw, sw):
            m = torch.zeros(h, w, dtype=torch.bool, device=images.device)
            m[top:top + ph, left:left + pw] = True
            masks.append(m)
    masks_t = torch.stack(masks).unsqueeze(1)
    counts = masks_t.sum(0).squeeze(0).float()  # windows covering each pixel (>= 1 everywhere)

    out = torch.empty(n, h, w, dtype=torch.float32, device=images.device)
    with model_state_preserved(model), torch.no_grad():
        logits = model(images)
        t = resolve_target(target, logits)
        fast = inference_copy(model)  # Conv + BatchNorm folded: same function, fewer passes over memory
        clean = fast(images).gather(1, t.view(-1, 1)).squeeze(1)  # the drops compare like with like
        for i in range(n):
            drops = []
            for j in range(0, len(masks_t), batch_size):
                m = masks_t[j:j + batch_size]
                occluded = torch.where(m, base[i:i + 1], images[i:i + 1])
                # channels-last: the convolutions' fast layout on CPU (about 0.8× the time per forward here)
                occluded = occluded.contiguous(memory_format=torch.channels_last)
                drops.append(clean[i] - fast(occluded)[:, t[i]])
            d = torch.cat(drops).float()
            out[i] = (d.view(-1, 1, 1) * masks_t.squeeze(1)).sum(0) / counts
    return out
