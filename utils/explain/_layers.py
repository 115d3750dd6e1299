"""Finding layers and capturing their activations, with hooks that never outlive the call."""
from __future__ import annotations

import contextlib
from typing import Iterator, Literal

import torch
from torch import nn

Where = Literal["input", "output"]


def resolve_layer(model: nn.Module, layer: nn.Module | str) -> nn.Module:
    """``layer`` as a submodule of ``model``: a module, or a dotted name such as ``"features.9"`` or ``"layer4"``."""
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError:
            convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
            raise ValueError(f"layer {layer!r} not found in {type(model).__name__}; conv layers are: "
                             f"{', '.join(convs[-6:])}{' …' if len(convs) > 6 else ''}") from None
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise ValueError(f"layer {type(layer).__name__} is not a module of this {type(model).__name__}")
        return layer
    raise TypeError(f"layer must be an nn.Module of the model or a dotted name; got {type(layer).__name__}")


def find_gap_head(model: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """The global-average-pooling module and the final linear layer of a GAP + linear head."""
    if hasattr(model, "pool") and isinstance(getattr(model, "classifier", None), nn.Linear):
        return model.pool, model.classifier  # the course model
    pools = [m for m in model.modules() if isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size in (1, (1, 1))]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not pools or not linears:
        raise ValueError(f"{type(model).__name__} has no global-average-pooling + linear head, so it has no CAM; "
                         f"use gradcam(model, images, layer=...) instead")
    return pools[-1], linears[-1]


@contextlib.contextmanager
def capture(module: nn.Module, where: Where = "output", leaf: bool = False) -> Iterator[list[torch.Tensor]]:
    """Collect ``module``'s input or output tensors of every forward pass in the block; the hook is removed on exit.

    ``leaf=True``: the network continues from a fresh leaf tensor that requires grad
    (the same values), and that leaf is what is stored; so gradients with respect to
    it need no graph of the layers before it. The rest of the network receives
    ``leaf * 1`` (not the leaf itself), which stays valid if an in-place op follows.
    """
    store: list[torch.Tensor] = []

    def keep(t: torch.Tensor) -> torch.Tensor:
        if not leaf:
            store.append(t)
            return t
        store.append(t.detach().requires_grad_(True))
        return store[-1] * 1

    if where == "output":
        handle = module.register_forward_hook(lambda m, i, o: keep(o))
    else:
        handle = module.register_forward_pre_hook(lambda m, i: (keep(i[0]),) + tuple(i[1:]))
    try:
        yield store
    finally:
        handle.remove()


def spatial(name: str, t: torch.Tensor) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or t.dim() != 4:
        shape = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"layer {name} has no spatial output [N, C, h, w] (got {shape}); "
                         f"pick a convolutional layer")
    if t.shape[-2] * t.shape[-1] == 1:
        raise ValueError(f"layer {name} has a 1×1 output: a map from it is one number, the same everywhere; "
                         f"pick a convolutional layer before the pooling (or use larger images)")
    return t
