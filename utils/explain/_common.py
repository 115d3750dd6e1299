"""What every explanation method shares: input checks, target resolution, leaving the model as found.

The one API (docs/design.md, section 2)::

    method(model, images, target=None, **options) -> Tensor[N, H, W]

* ``images``: float ``[N, 3, H, W]`` on the model's device; in ``[0, 1]`` for
  models that normalise internally (the course model), any range otherwise.
* ``target``: ``None`` (the predicted class), an int, or N ints.
* returns raw float32 maps at input resolution, same device, no per-image rescaling.
* leaves the model as it found it: train/eval mode, ``requires_grad``, ``.grad``.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..models import evaluating

Target = int | Sequence[int] | torch.Tensor | None
Precision = Literal["float32", "bfloat16"]


def expects_unit_range(model: nn.Module) -> bool:
    """Whether the model normalises internally, so its inputs must be images in [0, 1]."""
    return isinstance(getattr(model, "normalize", None), nn.Module)


def check_images(model: nn.Module, images: object) -> torch.Tensor:
    """Validate ``images`` for ``model``; raise TypeError/ValueError naming the problem and the fix."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor of shape [N, 3, H, W]; got {type(images).__name__}")
    if not images.is_floating_point():
        hint = " (divide uint8 images by 255)" if images.dtype == torch.uint8 else ""
        raise TypeError(f"images must be a float tensor; got dtype {images.dtype}{hint}")
    if images.dim() == 3:
        raise ValueError(f"images must have shape [N, 3, H, W]; got {list(images.shape)} "
                         f"(one image? add a batch dimension: images.unsqueeze(0))")
    if images.dim() != 4:
        raise ValueError(f"images must have shape [N, 3, H, W]; got {list(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("images is an empty batch (N = 0); pass at least one image")
    if images.shape[1] != 3:
        raise ValueError(f"images must have 3 colour channels in dimension 1; got shape {list(images.shape)} "
                         f"(channels last? use images.permute(0, 3, 1, 2))")
    h, w = images.shape[-2:]
    if min(h, w) == 0:
        raise ValueError(f"images are {h}×{w} pixels: empty; pass images with at least one pixel per side")
    smallest = getattr(model, "min_image_size", 1)
    if min(h, w) < smallest:
        raise ValueError(f"images are {h}×{w} pixels; this model needs at least {smallest}×{smallest} "
                         f"(it halves the side {smallest.bit_length() - 1} times); resize them, "
                         f"e.g. torch.nn.functional.interpolate(images, size=64)")
    param = next(iter(model.parameters()), None)
    if param is not None and param.device != images.device:
        raise ValueError(f"images are on {images.device} but the model is on {param.device}; "
                         f"move them with images.to({str(param.device)!r})")
    if param is not None and param.dtype != images.dtype:
        raise TypeError(f"images are {images.dtype} but the model's weights are {param.dtype}; "
                        f"convert them with images.to({param.dtype})")
    finite = torch.isfinite(images.detach())
    if not bool(finite.all()):
        first = int((~finite).flatten(1).any(1).nonzero()[0])
        raise ValueError(f"images contain {int((~finite).sum())} NaN or infinite values (first in image {first}); "
                         f"every map would be NaN or meaningless: fix the loading or preprocessing "
                         f"(torch.nan_to_num replaces them)")
    if expects_unit_range(model):
        lo, hi = (float(v) for v in torch.aminmax(images.detach()))
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"images must be in [0, 1] (the model normalises them itself); got values in "
                             f"[{lo:.3g}, {hi:.3g}] — pass raw images, not normalised ones")
    return images


def target_indices(target: Target, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """An int or N ints as a long tensor ``[n]`` (form checks only; ``None`` is not allowed here)."""
    if isinstance(target, bool):
        raise TypeError("target must be None, an int or a sequence of ints; got a bool")
    if isinstance(target, int):
        return torch.full((n,), target, dtype=torch.long, device=device)
    t = torch.as_tensor(target, device=device)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices; got dtype {t.dtype}")
    if t.dim() > 1:
        raise ValueError(f"target must be an int or a 1-D sequence of N ints; got shape {list(t.shape)} "
                         f"(labels of shape [N, 1]? use labels.squeeze(1))")
    t = t.long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(n).clone()
    if t.numel() != n:
        raise ValueError(f"target has {t.numel()} entries for {n} images; give one per image, an int, or None")
    return t


def resolve_target(target: Target, logits: torch.Tensor) -> torch.Tensor:
    """``target`` as a long tensor of N class indices (``None``: the predicted classes), range-checked."""
    n, num_classes = logits.shape
    if target is None:
        return logits.argmax(1)
    t = target_indices(target, n, logits.device)
    if ((t < 0) | (t >= num_classes)).any():
        bad = t[(t < 0) | (t >= num_classes)][0].item()
        raise ValueError(f"target {bad} is out of range for a model with {num_classes} classes "
                         f"(valid: 0..{num_classes - 1})")
    return t


def check_finite_number(name: str, value: object, hint: str) -> float:
    """A real, finite number (not a bool) as a float; else TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number ({hint}); got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number ({hint}); got {value!r}")
    return float(value)


def check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int; got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0; got {value}")
    return value


#: Pixels per forward pass when a perturbation method's ``batch_size`` is left at ``None``: 64 images at 64 px,
#: 5 at 224. Measured on 2 CPU cores (the folded, channels-last copy these methods run): the course model at 64 px
#: 0.29 ms per image at 64 per pass, 0.52 at 128; at 192 px 2.3 ms at 4-8, 5.1 at 64; EfficientNet-Lite0 at 224 px
#: 13-15 ms at 2-8, 23 ms at 64. Past about this many pixels the activations leave the cache.
PIXELS_PER_PASS = 64 * 64 * 64


def auto_batch_size(batch_size: object, images: torch.Tensor) -> int:
    """``batch_size`` checked, or for ``None`` the images per pass that fit :data:`PIXELS_PER_PASS` (at least 1)."""
    if batch_size is None:
        return max(1, PIXELS_PER_PASS // (images.shape[-2] * images.shape[-1]))
    return check_positive_int("batch_size", batch_size)


def gaussian_blur(images: torch.Tensor, sigma: float, radius: int) -> torch.Tensor:
    """``images`` [N, C, H, W] under a separable Gaussian blur of σ pixels, kernel ±``radius``, reflected borders
    (``radius`` < H and W). Occlusion's "blur" fill and Integrated Gradients' "blurred" baseline."""
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    c = images.shape[1]
    padded = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(padded, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


@contextlib.contextmanager
def model_state_preserved(model: nn.Module, *, need_param_grads: bool = False) -> Iterator[nn.Module]:
    """Run the model in eval mode and restore mode, ``requires_grad`` and ``.grad`` afterwards, even on error.

    Parameters do not require grad inside (unless ``need_param_grads``): input
    gradients are all the methods need, and nothing accumulates in ``.grad``.
    """
    params = list(model.parameters())
    requires = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    if not need_param_grads:
        for p in params:
            p.requires_grad_(False)
    try:
        with evaluating(model):
            yield model
    finally:
        for p, r, g in zip(params, requires, grads):
            p.requires_grad_(r)
            p.grad = g


def inference_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode: call it inside :func:`model_state_preserved`) with every Conv + BatchNorm
    pair folded into one convolution (``torch.fx.experimental.optimization.fuse``), for the many forward passes of
    the perturbation methods (occlusion, Score-CAM).

    The same function up to float32 rounding (about 1e-7 of the logits, tested against Captum and grad-cam), and
    about 0.6× the time per forward pass of the course model on a CPU: the folded network skips BatchNorm's
    separate pass over every activation. The model itself is not touched (its hooks do not run on the copy); a model
    ``torch.fx`` cannot trace is used as it is.
    """
    try:
        from torch.fx.experimental.optimization import fuse
        return fuse(model)  # deep-copies the model first
    except Exception:  # untraceable (data-dependent control flow), or nothing fusable in an unusual layout
        return model


def check_precision(precision: object) -> Precision:
    """``precision`` of Score-CAM's masked forward passes: "float32" (default, exact) or "bfloat16"."""
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"precision must be 'float32' (exact, the default) or 'bfloat16' (faster forward passes "
                         f"under autocast, about 2 significant digits per logit); got {precision!r}")
    return precision  # type: ignore[return-value]


def forward_precision(precision: Precision, device: torch.device) -> contextlib.AbstractContextManager:
    """The context Score-CAM's masked passes run in: the model as it is for "float32"; for "bfloat16",
    ``torch.autocast`` (convolutions and matrix products in bfloat16, 8 bits of mantissa, accumulated in float32).

    bfloat16 is fast where the hardware has it (GPUs; CPUs with AVX-512 BF16 or AMX: about 3.5× a float32 ResNet-18
    pass on this project's machine) and can be *slower* than float32 on CPUs without it (emulated). It suits
    Score-CAM, whose softmax over hundreds of channels averages the scores' errors out (the map moves by well under
    1%); it does not suit occlusion, whose drops are differences of nearby logits: measured, bfloat16 moved the
    occlusion map by up to 62% of its maximum, so occlusion has no such option.
    """
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
