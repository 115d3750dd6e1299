"""Measuring explanations against the object masks the dataset provides.

* :func:`energy_in_mask` — the share of a map's positive mass that lies on the
  object: ``Σ_{mask} max(M, 0) / Σ max(M, 0)`` (the "energy-based pointing game"
  of Wang et al. 2020, Score-CAM). Compare it with the mask's share of the image
  (:func:`mask_area`): a map that ignores the object scores about the area share.
* :func:`pointing_game` — whether the map's maximum falls on the object
  (Zhang et al. 2018).

Faithfulness and sanity, which need the model:

* :func:`deletion_insertion` — RISE's deletion and insertion curves (Petsiuk,
  Das & Saenko 2018): remove (or insert) pixels from most to least important and
  follow the target class's probability; the area under the curve. A faithful
  map gives a *low* deletion AUC and a *high* insertion AUC.
* :func:`randomisation_check` — the cascading model-parameter randomisation test
  (Adebayo et al., *Sanity Checks for Saliency Maps*, 2018): re-initialise the
  layers from the top down and measure the Spearman rank correlation between the
  maps before and after. A method that explains the *model* must change (low
  correlation); one that stays similar is an edge detector.
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from torch import nn

from .explain._common import inference_copy
from .explain.occlusion import fill_images
from .models import evaluating

__all__ = ["energy_in_mask", "mask_area", "pointing_game", "deletion_insertion", "spearman", "randomisation_check",
           "cam_logit_split"]


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


def _ranks(flat: torch.Tensor, descending: bool = False) -> torch.Tensor:
    """Rank of every entry in each row of ``[N, M]`` (0 = first in the order; ties broken by position)."""
    order = flat.argsort(dim=1, descending=descending, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks


def _trapezoid(y: torch.Tensor) -> torch.Tensor:
    """Area under ``y`` sampled at equally spaced points of [0, 1] (last dimension)."""
    return ((y[..., 1:] + y[..., :-1]) / 2).mean(-1)


@torch.no_grad()
def deletion_insertion(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, target: torch.Tensor | None = None,
                       *, steps: int = 16, deletion_fill: float | str = 0.0, insertion_start: float | str = "blur",
                       ) -> dict[str, torch.Tensor]:
    """RISE deletion/insertion AUCs per image, with the curves: ``{"deletion", "insertion", "deletion_curve", ...}``.

    Pixels are ranked by ``maps`` (ties: by position); at step ``k`` of ``steps`` the
    top ``k/steps`` of them are replaced by ``deletion_fill`` (RISE: 0) or, for
    insertion, copied into ``insertion_start`` (RISE: a blur of the image). The
    curves hold the softmax probability of ``target`` (``None``: the class
    predicted on the intact image) at the ``steps + 1`` points; AUC by trapezoids.
    Cost: ``2 (steps + 1)`` forward passes per image, of a copy of ``model`` with every Conv + BatchNorm pair
    folded into one convolution (:func:`~utils.explain._common.inference_copy`, as occlusion's passes: the same
    probabilities to about 1e-7, in about 2/3 of the time); the target is read from ``model`` itself.
    """
    if maps.shape != (images.shape[0],) + tuple(images.shape[2:]):
        raise ValueError(f"maps must be [N, H, W] matching images {list(images.shape)}; got {list(maps.shape)}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    with evaluating(model):
        n, _, h, w = images.shape
        t = model(images).argmax(1) if target is None else torch.as_tensor(target, device=images.device).view(-1)
        fast = inference_copy(model)
        deleted = fill_images(images, deletion_fill)
        start = fill_images(images, insertion_start)
        ranks = _ranks(maps.reshape(n, -1), descending=True).view(n, 1, h, w)  # 0 = most important
        counts = [round(k * h * w / steps) for k in range(steps + 1)]
        curves = {"deletion": [], "insertion": []}
        for i in range(n):
            top = torch.stack([ranks[i] < c for c in counts])  # [steps+1, 1, H, W]
            dele = torch.where(top, deleted[i], images[i])
            ins = torch.where(top, images[i], start[i])
            probs = fast(torch.cat([dele, ins])).softmax(1)[:, t[i]]
            curves["deletion"].append(probs[: steps + 1])
            curves["insertion"].append(probs[steps + 1:])
    out = {k: torch.stack(v) for k, v in curves.items()}
    return {"deletion": _trapezoid(out["deletion"]), "insertion": _trapezoid(out["insertion"]),
            "deletion_curve": out["deletion"], "insertion_curve": out["insertion"]}


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation per image of two ``[N, H, W]`` maps (ties broken by position)."""
    def centred_ranks(x: torch.Tensor) -> torch.Tensor:
        r = _ranks(x.reshape(x.shape[0], -1)).double()  # float64: ρ of identical maps is 1 to 1e-15
        return r - r.mean(1, keepdim=True)
    ra, rb = centred_ranks(a), centred_ranks(b)
    return ((ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1))).float()


Method = Callable[..., torch.Tensor]


def _parametrised(module: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in module.named_modules()
            if hasattr(m, "reset_parameters") and any(True for _ in m.parameters(recurse=False))]


def _reinitialise(layer: nn.Module) -> None:
    layer.reset_parameters()
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        # reset_parameters() resets the running statistics too (mean 0, variance 1) and sets the affine part to
        # 1 and 0, the identity: re-randomise the affine part, so the layer is random as a new one, not a no-op
        nn.init.normal_(layer.weight, 1.0, 0.5)
        nn.init.normal_(layer.bias, 0.0, 0.5)


def _own_state(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """A module's own parameters and buffers (not its children's)."""
    return list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))


def _random_state() -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """The CPU's random state and, where CUDA is in use, every GPU's."""
    gpus = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return torch.random.get_rng_state(), gpus


def _set_random_state(state: tuple[torch.Tensor, list[torch.Tensor] | None]) -> None:
    torch.random.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


def randomisation_check(model: nn.Module, images: torch.Tensor, method: Method, target: torch.Tensor | None = None,
                        *, seed: int = 0, absolute: bool = True, layers: Sequence[str] | None = None,
                        at: Sequence[int] | None = None, return_maps: bool = False
                        ) -> list[tuple[str, float]] | tuple[list[tuple[str, float]], list[torch.Tensor]]:
    """Cascading randomisation (Adebayo et al. 2018): ``[(layer, mean Spearman ρ), ...]`` from the top layer down.

    Works on a copy (the model is not touched). Each step re-initialises one more
    parametrised layer (``reset_parameters``, seeded), keeping the ones above it
    random, and compares ``method(copy, images, target)`` with the original maps
    (absolute values if ``absolute``, as in the paper). The target is fixed to the
    original model's prediction so both maps explain the same class.

    The random weights are drawn once, from their own stream seeded by ``seed``: every method meets the same
    randomised network at a given step. Every call of ``method`` starts from the random state the caller had
    (common random numbers): a method that draws random numbers (SmoothGrad's noise) draws the same ones for the
    trained network and for each randomised one, so the network is the only difference between the maps. The
    caller's random state ends as after one call of ``method``.

    ``layers``: dotted names of blocks to re-initialise instead, one more per step in the order given (top first;
    e.g. a real network's ``classifier``, ``features.head``, ``features.stage7``, …), each block whole (every
    parametrised layer inside it): ten steps for EfficientNet-Lite0 instead of its 99 layers.
    ``at``: the indices of the steps to report (e.g. ``(0, -1)``: the top layer alone and the whole network;
    ``None``: every step). The layers are randomised in the same order either way, so a reported step's ρ is
    the full cascade's, and ``method`` runs only ``1 + len(at)`` times instead of once per step.
    ``return_maps=True``: ``(results, maps)``, ``maps[0]`` the original maps and ``maps[j + 1]`` those after the
    ``j``-th reported step (as ``method`` returns them, before ``absolute``), for the paper's figure.
    """
    model = copy.deepcopy(model).eval()
    if layers is None:
        steps = [(name, [name]) for name, _ in reversed(_parametrised(model))]
    else:
        if isinstance(layers, str):
            raise TypeError(f"layers must be a sequence of dotted module names, top first; got the string {layers!r} "
                            f"(for one block: layers=[{layers!r}])")
        steps = []
        for name in layers:
            try:
                block = model.get_submodule(name)
            except AttributeError:
                raise ValueError(f"layer {name!r} not found in {type(model).__name__}; top-level blocks: "
                                 f"{', '.join(n for n, _ in model.named_children())}") from None
            inside = [f"{name}.{n}" if n else name for n, _ in _parametrised(block)]
            if not inside:
                raise ValueError(f"layer {name!r} has no parameters to re-initialise")
            steps.append((name, inside))
    if at is None:
        report = set(range(len(steps)))
    else:
        if isinstance(at, (int, str)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in at):
            raise TypeError(f"at must be a sequence of step indices, e.g. (0, -1); got {at!r}")
        bad = [i for i in at if not -len(steps) <= i < len(steps)]
        if bad:
            raise ValueError(f"at: step indices {bad} are out of range; this cascade has {len(steps)} steps "
                             f"(0 to {len(steps) - 1}, or -{len(steps)} to -1 from the end)")
        if not at:
            raise ValueError(f"at names no step; give at least one index, e.g. at=(0, -1), or at=None for all "
                             f"{len(steps)}")
        report = {i % len(steps) for i in at}
    with torch.no_grad():
        t = model(images).argmax(1) if target is None else target
    prep = (lambda m: m.abs()) if absolute else (lambda m: m)
    entry = _random_state()
    first = method(model, images, t)
    original, maps = prep(first), [first.detach()]
    # Every random weight first, on a second copy, in the cascade's order, from the seeded stream; fork_rng sets
    # the caller's random state (the CPU's and every GPU's) back afterwards.
    randomised = copy.deepcopy(model)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for _, group in steps:
            for name in group:
                _reinitialise(randomised.get_submodule(name))
    results = []
    for i, (step, group) in enumerate(steps):
        with torch.no_grad():
            for name in group:
                new = dict(_own_state(randomised.get_submodule(name)))
                for key, value in _own_state(model.get_submodule(name)):
                    value.copy_(new[key])
        if i in report:
            with torch.random.fork_rng():  # from the caller's state at the start, as the first map was made
                _set_random_state(entry)
                after = method(model, images, t)
            maps.append(after.detach())
            results.append((step, float(spearman(original, prep(after)).mean())))
    return (results, maps) if return_maps else results


@torch.no_grad()
def cam_logit_split(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, target: torch.Tensor | None = None
                    ) -> dict[str, torch.Tensor]:
    """Split each target logit exactly into ``animal + background + bias`` with the CAM (GAP + linear models).

    ``y_c = mean_xy M_c + b_c`` and the CAM is additive over feature cells, so with
    ``m`` = the share of each feature cell covered by the mask (the mask average-pooled
    to the feature grid): ``animal = mean(M_c · m)``, ``background = mean(M_c · (1 − m))``.
    The three parts add up to the logit (tested).
    """
    from .explain._layers import find_gap_head
    from .explain.cam import cam

    _, linear = find_gap_head(model)
    logits = model(images)
    t = logits.argmax(1) if target is None else torch.as_tensor(target, device=images.device).view(-1)
    maps = cam(model, images, t, resolution="features")
    cover = torch.nn.functional.adaptive_avg_pool2d(masks.float().unsqueeze(1).to(maps.device), maps.shape[-2:])[:, 0]
    return {"animal": (maps * cover).mean((1, 2)), "background": (maps * (1 - cover)).mean((1, 2)),
            "bias": linear.bias[t], "logit": logits.gather(1, t.view(-1, 1))[:, 0], "target": t}
