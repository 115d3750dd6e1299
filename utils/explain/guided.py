"""Guided Backpropagation (Springenberg et al. 2015) and Guided Grad-CAM (Selvaraju et al. 2017, section 3).

Guided Backpropagation is the input gradient with one change (Springenberg et al., eq. in Figure 1): at every
rectifier the backward pass lets a gradient through only where it is positive *and* where the forward input was
positive, ``R_l = 1[f_l > 0] · 1[R_{l+1} > 0] · R_{l+1}``. The ordinary gradient keeps the first factor only;
the "deconvnet" keeps the second only.

Which activations count as rectifiers: ``nn.ReLU`` and ``nn.ReLU6`` modules, in place or not. For ReLU6 the
forward factor is its own derivative, ``1[0 < f_l < 6]`` (the ordinary gradient's), so the rule is "positive
gradients only, through the rectifier's own derivative" for both. Any other activation module (SiLU, GELU,
LeakyReLU, Hardswish, ...) is refused by default, because guided backpropagation is not defined for it;
``others="gradient"`` passes the ordinary gradient through it instead (what Captum's ``GuidedBackprop`` does
without saying so: it hooks ``nn.ReLU`` only, and the ReLU6 of EfficientNet-Lite would get the plain gradient).
Rectifiers called as functions (``F.relu`` in ``forward``) cannot be hooked: a model with no rectifier *module*
is refused, since its guided map would silently be the plain gradient.

Guided Grad-CAM (Selvaraju et al., section 3, Figure 1): the guided gradient multiplied element-wise by Grad-CAM
upsampled bilinearly to the input, at a chosen layer.

Both return ``[N, H, W]``: like :func:`~utils.explain.saliency` (``absolute=True``, ``reduce="max"``), the
largest ``|·|`` over the three colour channels; :func:`guided_gradients` gives the ``[N, 3, H, W]`` gradient
itself (the papers draw it as an RGB image). Conventions versus the libraries: Captum's ``GuidedBackprop`` and
``GuidedGradCam(interpolate_mode="bilinear")`` return ``[N, 3, H, W]``; the same numbers before the channel
reduction (tested, 1e-4 relative). grad-cam's ``GuidedBackpropReLUModel`` replaces ``nn.ReLU`` modules (one image;
``[H, W, 3]``; it leaves fresh ``nn.ReLU()`` modules in the model, losing ``inplace``). Here the model is left as
found: hooks for the call only, removed also on error.
Cost: one forward and one backward pass (Guided Grad-CAM: two of each).
"""
from __future__ import annotations

import contextlib
import copy
from typing import Iterator, Literal

import torch
from torch import nn

from ._common import Target, check_images, model_state_preserved, resolve_target
from .gradcam import gradcam
from .saliency import Reduce, _check_options, _reduce

__all__ = ["guided_backprop", "guided_gradcam", "guided_gradients", "guided", "relu6_as_relu", "RECTIFIERS"]

Others = Literal["error", "gradient"]

#: The activation modules guided backpropagation gates (subclasses included).
RECTIFIERS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)

#: Activation modules that are not rectifiers: refused unless ``others="gradient"``.
_OTHER_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.SiLU, nn.GELU, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.Hardswish, nn.Hardsigmoid,
    nn.Hardtanh, nn.Mish, nn.Softplus, nn.Sigmoid, nn.Tanh, nn.LogSigmoid, nn.Softsign, nn.Tanhshrink,
    nn.Hardshrink, nn.Softshrink, nn.Threshold, nn.GLU)


def _positive_part(grad: torch.Tensor) -> torch.Tensor:
    return grad.clamp(min=0)


def _gate(module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
    """Forward hook of a rectifier: the gradient arriving at its output keeps its positive part only; the
    rectifier's own backward then applies ``1[f > 0]`` (ReLU) or ``1[0 < f < 6]`` (ReLU6): the guided rule. A hook
    on the output tensor, so in-place rectifiers (the output *is* the overwritten input) work the same."""
    if isinstance(out, torch.Tensor) and out.requires_grad:
        out.register_hook(_positive_part)


def _check_others(others: object) -> None:
    if others not in ("error", "gradient"):
        raise ValueError(f"others must be 'error' (refuse activations that are not ReLU/ReLU6, the default) or "
                         f"'gradient' (pass their ordinary gradient, as Captum does); got {others!r}")


def _rectifiers(model: nn.Module, others: Others) -> list[nn.Module]:
    """The model's rectifier modules; a ValueError naming the problem if there are none or (``others="error"``)
    if other activation modules are present."""
    rect = [m for m in model.modules() if isinstance(m, RECTIFIERS)]
    other = [(name, type(m).__name__) for name, m in model.named_modules()
             if isinstance(m, _OTHER_ACTIVATIONS) and not isinstance(m, RECTIFIERS)]
    if other and others == "error":
        listed = ", ".join(f"{kind} at {name!r}" for name, kind in other[:4]) + (" …" if len(other) > 4 else "")
        raise ValueError(f"guided backpropagation is defined for rectifiers (nn.ReLU, nn.ReLU6); this "
                         f"{type(model).__name__} also has {listed}. Pass others='gradient' to back-propagate "
                         f"their ordinary gradient (Captum's behaviour), or explain it with saliency or Grad-CAM")
    if not rect:
        raise ValueError(f"{type(model).__name__} has no nn.ReLU or nn.ReLU6 module, so guided backpropagation would "
                         f"be the plain gradient (rectifiers called as functions, F.relu, cannot be hooked); use "
                         f"saliency, or build the model with nn.ReLU modules")
    return rect


@contextlib.contextmanager
def guided(model: nn.Module, others: Others = "error") -> Iterator[nn.Module]:
    """Inside the block, backward passes through the model's rectifiers follow the guided rule; hooks removed on
    exit (also on error). Checks the model's activations first (see the module docstring)."""
    _check_others(others)
    handles = [m.register_forward_hook(_gate) for m in _rectifiers(model, others)]
    try:
        yield model
    finally:
        for h in handles:
            h.remove()


def guided_gradients(model: nn.Module, images: torch.Tensor, target: Target = None, *,
                     others: Others = "error") -> tuple[torch.Tensor, torch.Tensor]:
    """``(guided ∂y_target/∂images [N, 3, H, W], target [N])`` from one forward and one backward pass.

    ``target=None``: each image's predicted class (the forward pass is the model's own). The model is left as found.
    """
    images = check_images(model, images)
    with model_state_preserved(model), guided(model, others), torch.enable_grad():
        x = images.detach().requires_grad_(True)
        logits = model(x)
        t = resolve_target(target, logits)
        (grad,) = torch.autograd.grad(logits.gather(1, t.view(-1, 1)).sum(), x)
    return grad.detach(), t


def guided_backprop(model: nn.Module, images: torch.Tensor, target: Target = None, *, others: Others = "error",
                    absolute: bool = True, reduce: Reduce = "max") -> torch.Tensor:
    """Guided Backpropagation ``max_ch |guided ∂y_c/∂x|`` → ``[N, H, W]`` (Springenberg et al. 2015).

    ``others``: what to do with activations that are not ReLU/ReLU6 ("error", or "gradient": their ordinary
    gradient). ``absolute``/``reduce``: the channel reduction, as for :func:`~utils.explain.saliency`.
    """
    _check_options("logit", reduce)
    grad, _ = guided_gradients(model, images, target, others=others)
    return _reduce(grad.abs() if absolute else grad, reduce)


def guided_gradcam(model: nn.Module, images: torch.Tensor, target: Target = None, *,
                   layer: nn.Module | str | None = None, others: Others = "error", absolute: bool = True,
                   reduce: Reduce = "max") -> torch.Tensor:
    """Guided Grad-CAM: guided gradient ⊙ Grad-CAM upsampled bilinearly, reduced over channels → ``[N, H, W]``
    (Selvaraju et al. 2017, section 3).

    ``layer``: Grad-CAM's layer (as for :func:`~utils.explain.gradcam`; default the input of the global average
    pooling). ``target=None``: the predicted class, the same for both factors.
    """
    _check_options("logit", reduce)
    grad, t = guided_gradients(model, images, target, others=others)
    cam = gradcam(model, images, t, layer=layer)  # [N, H, W], >= 0
    product = grad * cam[:, None]
    return _reduce(product.abs() if absolute else product, reduce)


class _ReLU6SeenAsReLU(nn.ReLU):
    """ReLU6's function in an ``nn.ReLU`` subclass (see :func:`relu6_as_relu`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.relu6(x, inplace=self.inplace)


def relu6_as_relu(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose ``nn.ReLU6`` modules are ``nn.ReLU`` subclasses computing ReLU6: the same function,
    so that Captum's ``GuidedBackprop`` and ``GuidedGradCam`` (which hook ``nn.ReLU`` only) guide them too. For the
    comparisons in the tests and the benchmark; the model itself is not touched."""
    model = copy.deepcopy(model)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(module, name, _ReLU6SeenAsReLU(inplace=child.inplace))
    return model
