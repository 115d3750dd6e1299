"""The perturbation CAMs: channel weights from forward passes instead of gradients.

Both keep the CAM template of :mod:`utils.explain.gradcam`, ``ReLU(Σ_k w_k A_k)`` upsampled bilinearly
(``align_corners=False``) to the input, and differ only in how the channel weight ``w_k`` is measured:

* **AblationCAM** (Desai & Ramaswamy, WACV 2020, eq. 3): set channel ``k`` of the layer's output to 0 and measure
  the target score's relative drop, ``w_k = (y_c − y_c^k) / y_c``. Only the network *after* the layer changes, so the
  ablated copies run through the network's tail alone (:mod:`utils.explain._tail`: the model's graph cut at the
  layer with ``torch.fx``; a skip connection that bypasses the layer is fed its clean-pass value, which the ablation
  does not change), ``batch_size`` copies at a time, across images. A model that cannot be cut runs whole, with the
  layer's output replaced by a hook. For a GAP + linear head at the last layer the drop is exactly
  ``w_ck · mean f_k`` (tested).
* **Score-CAM** (Wang et al., CVPR workshops 2020): each activation map, upsampled to the image and scaled to
  [0, 1], masks the input; the target logit of the masked image, softmax-normalised over the channels, is ``w_k``.
  One forward pass of the whole model per channel and image, ``batch_size`` masked images at a time, built on the
  device from the activations (no host round trips), channels-last, through a copy of the model with each
  Conv + BatchNorm pair folded into one convolution (:func:`utils.explain._common.inference_copy`). Maps that are
  0 everywhere (frequent after a ReLU) give masks of exact zeros, hence one black image for all of them: one pass.
  ``precision="bfloat16"`` trades about 2 significant digits of each score for ~3.5× faster passes where the
  hardware has bfloat16.

Conventions, as pytorch-grad-cam's ``AblationCAM`` and ``ScoreCAM`` (the tests compare after its min-max scaling):
ablation sets the channel to 0 (grad-cam also does for a layer whose smallest activation is 0, e.g. after a ReLU;
for layers with negative values it uses ``min − 1e7`` instead); the weights divide by the clean score ``y_c`` (so a
negative score flips their signs, as in the paper's formula). Score-CAM upsamples the masks with
``align_corners=True`` (grad-cam's ``UpsamplingBilinear2d``), scales each to [0, 1] with ``(a − min)/(max − min +
1e-8)``, scores with the logit and takes the softmax over the channels (the authors' code accumulates the softmax
*probability* of each masked image instead). Both return raw ``[N, H, W]`` maps (grad-cam min-max scales them).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import (Precision, Target, auto_batch_size, check_images, check_positive_int, check_precision,
                      forward_precision, inference_copy, model_state_preserved, resolve_target)
from ._layers import capture, find_gap_head, resolve_layer, spatial
from ._tail import run_split, split_at
from .cam import Resolution, check_resolution, upsample

__all__ = ["ablation_cam", "score_cam", "ablation_weights", "score_weights"]


def _layer(model: nn.Module, layer: nn.Module | str | None) -> tuple[nn.Module, str, str]:
    """(module, "input"/"output", name): the default is the input of the global average pooling, as in Grad-CAM."""
    if layer is None:
        return find_gap_head(model)[0], "input", "before global average pooling"
    name = repr(layer) if isinstance(layer, str) else type(layer).__name__
    return resolve_layer(model, layer), "output", name


def _finish(acts: torch.Tensor, weights: torch.Tensor, size: tuple[int, int], resolution: Resolution) -> torch.Tensor:
    maps = torch.einsum("nk,nkhw->nhw", weights.to(acts.dtype), acts).clamp(min=0).float()
    return maps if resolution == "features" else upsample(maps, size)


def _chunks(pairs: torch.Tensor, k: int, batch_size: int):
    """``(flat index, image index, channel index)`` of the (image, channel) pairs ``pairs`` (flat, image-major
    indices into n·k), ``batch_size`` at a time."""
    for start in range(0, len(pairs), batch_size):
        block = pairs[start:start + batch_size]
        yield block, block // k, block % k


def ablation_weights(model: nn.Module, images: torch.Tensor, target: Target = None, *,
                     layer: nn.Module | str | None = None, batch_size: int = 256
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(activations [N, K, h, w], clean scores [N], ablated scores [N, K], target [N])`` of AblationCAM: the
    target logit with each channel of ``layer``'s output set to 0 in turn."""
    images = check_images(model, images)
    batch_size = check_positive_int("batch_size", batch_size)
    module, where, name = _layer(model, layer)
    with model_state_preserved(model), torch.no_grad():
        cut = split_at(model, module, where)
        clean = run_split(cut, images) if cut is not None else None
        if clean is not None:
            logits, acts, side = clean
        else:
            with capture(module, where, leaf=True) as store:  # leaf: an in-place op after the layer leaves it alone
                logits = model(images)
            if not store:
                raise ValueError(f"layer {name} was not used in the forward pass")
            acts, side = store[-1].detach(), []
        acts = spatial(name, acts)
        t = resolve_target(target, logits)
        score = logits.gather(1, t.view(-1, 1))[:, 0]
        n, k = acts.shape[:2]
        ablated = torch.empty(n * k, dtype=logits.dtype, device=logits.device)
        for block, img, ch in _chunks(torch.arange(n * k, device=acts.device), k, batch_size):
            copies = acts[img].clone()
            copies[torch.arange(len(img), device=acts.device), ch] = 0
            if clean is not None:
                out = cut.tail(copies, *[s[img] for s in side])
            else:  # the whole model, the layer's output (or the pooling's input) replaced by the ablated copies
                out = _replaced(model, module, where, images[img], copies)
            ablated[block] = out.gather(1, t[img].view(-1, 1))[:, 0]
    return acts, score, ablated.view(n, k), t


def _replaced(model: nn.Module, module: nn.Module, where: str, images: torch.Tensor,
              replacement: torch.Tensor) -> torch.Tensor:
    if where == "output":
        handle = module.register_forward_hook(lambda m, i, o: replacement)
    else:
        handle = module.register_forward_pre_hook(lambda m, i: (replacement,) + tuple(i[1:]))
    try:
        return model(images)
    finally:
        handle.remove()


def ablation_cam(model: nn.Module, images: torch.Tensor, target: Target = None, *,
                 layer: nn.Module | str | None = None, resolution: Resolution = "input",
                 batch_size: int = 256) -> torch.Tensor:
    """AblationCAM ``ReLU(Σ_k w_k A_k)``, ``w_k = (y_c − y_c^k) / y_c`` (Desai & Ramaswamy 2020) → ``[N, H, W]``.

    Cost: one forward pass, then ``K`` passes of the network *after* ``layer`` per image (``K`` channels),
    ``batch_size`` at a time.
    """
    check_resolution(resolution)
    acts, score, ablated, t = ablation_weights(model, images, target, layer=layer, batch_size=batch_size)
    zero = (score == 0).nonzero()
    if len(zero):
        raise ValueError(f"the target score of image {int(zero[0])} is exactly 0, so AblationCAM's weights "
                         f"(y − y_k) / y are undefined; explain another class or use another layer")
    weights = (score[:, None] - ablated) / score[:, None]
    return _finish(acts, weights, tuple(images.shape[-2:]), resolution)


def score_weights(model: nn.Module, images: torch.Tensor, target: Target = None, *,
                  layer: nn.Module | str | None = None, batch_size: int | None = None,
                  precision: Precision = "float32") -> tuple[torch.Tensor, torch.Tensor]:
    """``(activations [N, K, h, w], weights [N, K])`` of Score-CAM: ``w = softmax_k(y_c(x ⊙ s(A_k)))``, each row
    summing to 1 (see :func:`score_cam` for the masks, the cost and ``precision``)."""
    images = check_images(model, images)
    batch_size = auto_batch_size(batch_size, images)
    precision = check_precision(precision)
    module, where, name = _layer(model, layer)
    size = tuple(images.shape[-2:])
    with model_state_preserved(model), torch.no_grad():
        with capture(module, where, leaf=True) as store:  # leaf: an in-place op after the layer leaves it alone
            logits = model(images)
        if not store:
            raise ValueError(f"layer {name} was not used in the forward pass")
        acts = spatial(name, store[-1].detach())
        t = resolve_target(target, logits)
        n, k = acts.shape[:2]
        scores = torch.empty(n * k, dtype=torch.float32, device=logits.device)
        fast = inference_copy(model)  # Conv + BatchNorm folded: same function, fewer passes over memory
        # A map that is 0 everywhere (common after a ReLU: 38% of the course model's last-block maps) scales to a
        # mask of exact zeros, so it masks every image to the same black image: one pass scores all of them.
        live = acts.flatten(2).ne(0).any(2).flatten()  # [n·k], image-major
        if not live.all():
            black = torch.zeros_like(images[:1]).contiguous(memory_format=torch.channels_last)
            with forward_precision(precision, black.device):
                black_logits = fast(black).float()[0]
            scores[~live] = black_logits[t.repeat_interleave(k)[~live]]
        for block, img, ch in _chunks(live.nonzero()[:, 0], k, batch_size):
            a = F.interpolate(acts[img, ch][:, None].float(), size=size, mode="bilinear", align_corners=True)
            low = a.amin((2, 3), keepdim=True)
            high = a.amax((2, 3), keepdim=True)
            masks = (a - low) / (high - low + 1e-8)
            masked = (images[img] * masks.to(images.dtype)).contiguous(memory_format=torch.channels_last)
            with forward_precision(precision, masked.device):
                out = fast(masked).float()  # channels-last: the convolutions' fast layout on a CPU
            scores[block] = out.gather(1, t[img].view(-1, 1))[:, 0]
        weights = scores.view(n, k).float().softmax(1)
    return acts, weights


def score_cam(model: nn.Module, images: torch.Tensor, target: Target = None, *,
              layer: nn.Module | str | None = None, resolution: Resolution = "input",
              batch_size: int | None = None, precision: Precision = "float32") -> torch.Tensor:
    """Score-CAM ``ReLU(Σ_k w_k A_k)``, ``w = softmax_k(y_c(x ⊙ s(A_k)))`` (Wang et al. 2020) → ``[N, H, W]``.

    ``s(A_k)``: the activation map upsampled to the image and scaled to [0, 1]. Cost: one forward pass, then ``K``
    forward passes of the whole model per image, ``batch_size`` at a time (default: as many masked images as fit
    about 262,144 pixels, 5 at 224 px, :data:`utils.explain._common.PIXELS_PER_PASS`); maps that are 0 everywhere
    all mask the image to black, and share one pass. The weights alone: :func:`score_weights`.

    ``precision="bfloat16"`` runs the ``K`` masked passes under bfloat16 autocast (see
    :func:`utils.explain._common.forward_precision`): about 3.5× faster where the hardware has bfloat16 (slower
    where it is emulated), at the price of scores good to about 2 significant digits; the softmax averages those
    errors out, and the map moves by well under 1% of its maximum (``python -m utils.benchmark --only
    perturbation`` measures speed and error). The activations, the softmax and the map stay float32.
    """
    check_resolution(resolution)
    acts, weights = score_weights(model, images, target, layer=layer, batch_size=batch_size, precision=precision)
    return _finish(acts, weights, tuple(images.shape[-2:]), resolution)
