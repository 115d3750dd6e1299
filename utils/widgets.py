"""Interactive explorers for the notebooks.

Each explorer is a *pure* ``render_*(model, ...) -> Figure`` (testable without a
browser) wrapped in ``ipywidgets.interactive``; the callback renders, keeps the
figure on the widget as ``ui.figure`` and ends in ``plt.show()``. Drive one from
code with ``ui.children[i].value = ...`` (the order is given in each docstring).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn

from .camloss import inverted_gaussian, inverted_gaussian_kernel
from .data import CLASSES, SPLITS, SPLIT_SIZES, render_sample
from .explain import ablation_cam, cam, gradcam, gradcam_pp, hirescam, occlusion, saliency, score_cam, smoothgrad
from .explain.occlusion import count_windows
from .metrics import energy_in_mask
from .models import evaluating
from .viz import clip_quantile, label_text, overlay

__all__ = ["render_saliency", "saliency_explorer", "render_occlusion", "occlusion_explorer", "render_cam",
           "cam_explorer", "gradcam_explorer", "conv_layers", "render_kernel", "kernel_explorer"]

TARGETS = ("predicted",) + CLASSES
FILLS = {"grey (0.5)": 0.5, "black (0)": 0.0, "image mean": "mean", "blur": "blur"}
#: The last entry of every explorer's image dropdown: the bundled photographs (``utils.photos.PHOTOS``, the image
#: slider picks one) explained by the ImageNet network; the class "leopard" or "orca" asks about ImageNet's
#: 'leopard' or 'killer whale'.
PHOTO_SET = "photos (ImageNet network)"
PHOTO_CLASSES = {"leopard": "leopard", "orca": "killer whale"}
_NETWORKS: dict[str, nn.Module] = {}


@dataclass
class _Shown:
    """One image being explained: by the course model (a sample of a split) or by the ImageNet network (a photo)."""
    image: torch.Tensor  # [3, H, W] in [0, 1]
    label: int | None
    mask: torch.Tensor | None  # the animal's mask; photos have none
    x: torch.Tensor  # [1, 3, H, W] on the model's device
    probs: torch.Tensor
    t: int
    model: nn.Module
    names: tuple[str, ...] | list[str]
    photo: str | None  # the photo's name, or None for a course image


def _network(device: torch.device) -> nn.Module:
    from . import photos
    key = str(device)
    if key not in _NETWORKS:
        _NETWORKS[key] = photos.load_network(device=device)
    return _NETWORKS[key]


def _explain_one(model: nn.Module, split: str, index: int, target: str, image_size: int) -> _Shown:
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}; got {target!r}")
    device = next(model.parameters()).device
    if split == PHOTO_SET:
        from . import photos
        name = list(photos.PHOTOS)[index % len(photos.PHOTOS)]
        net = _network(device)
        x = photos.photo(name)[None].to(device)
        with torch.no_grad():
            probs = net(x).softmax(1)[0].cpu()
        t = int(probs.argmax()) if target == "predicted" else photos.class_index(PHOTO_CLASSES[target])
        return _Shown(x[0].cpu(), None, None, x, probs, t, net, photos.class_names(), name)
    s = render_sample(split, index, image_size=image_size)
    x = s.image.unsqueeze(0).to(device)
    with evaluating(model), torch.no_grad():
        probs = model(x).softmax(1)[0].cpu()
    t = int(probs.argmax()) if target == "predicted" else CLASSES.index(target)
    return _Shown(s.image, s.label, s.mask, x, probs, t, model, CLASSES, None)


def _panels(s: _Shown, heat: torch.Tensor, method: str, alpha: float, extra: str = "",
            signed: bool | None = None, units: str | None = None) -> Figure:
    """Image, raw map (``signed``: on ``bwr`` centred at 0; ``None``: signed when the map has a negative value) with a
    colour bar labelled ``units`` and the animal's outline, and the overlay of its positive part on the same scale
    (the course's drawing rule, :func:`utils.viz.overlay`)."""
    fig, axes = plt.subplots(1, 3, figsize=(8.4, 3.4))
    pred = int(s.probs.argmax())
    title = (label_text(s.label, pred, float(s.probs[pred])) if s.photo is None
             else f"{s.photo}: {s.names[pred]} {float(s.probs[pred]):.2f}")
    overlay(axes[0], s.image, title=title)
    # the raw map with its own scale: a signed map (occlusion, CAM) on a diverging scale centred at 0
    raw = heat.detach().float().cpu()
    signed = bool((raw < 0).any()) if signed is None else signed
    peak = float(raw.abs().max()) or 1.0
    im = axes[1].imshow(raw.numpy(), cmap="bwr" if signed else "inferno", vmin=-peak if signed else 0, vmax=peak)
    axes[1].set_title(f"{method} for '{s.names[s.t]}'" if s.photo is None
                      else f"{method}\nfor '{s.names[s.t]}' (p = {float(s.probs[s.t]):.2f})", fontsize=8)
    axes[1].set_xticks([])
    axes[1].set_yticks([])
    if s.mask is not None:  # the animal's outline, for orientation (the map is drawn alone here)
        axes[1].contour(s.mask.float().numpy(), levels=[0.5], colors="k" if signed else "c", linewidths=0.7)
    bar = fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.03)
    bar.ax.tick_params(labelsize=6)
    if units:
        bar.set_label(units, fontsize=7)
    if s.mask is None:
        where = f"{type(s.model).__name__}, {s.image.shape[-1]} px\n(a photo has no object mask){extra}"
    else:
        share = float(energy_in_mask(heat.unsqueeze(0).cpu(), s.mask.unsqueeze(0))[0])
        area = float(s.mask.float().mean())
        where = f"on the animal: {share:.0%} of the map\n(animal = {area:.0%} of the image){extra}"
    # the same units as the middle panel: a map whose positive part is small next to its negatives stays faint
    overlay(axes[2], s.image, heat, alpha=alpha, cmap="inferno", title=where, vmax=peak)
    axes[2].set_xlabel("overlay: the positive part on the middle panel's\nscale, more opaque where larger (0: transparent)",
                       fontsize=7)
    fig.tight_layout()
    return fig


def render_saliency(model: nn.Module, split: str = "test_swapped", index: int = 0, target: str = "predicted",
                    method: str = "saliency", noise: float = 0.15, n_samples: int = 16, alpha: float = 0.8,
                    image_size: int = 64) -> Figure:
    """Image, map and overlay of gradient saliency or SmoothGrad for one image of a split."""
    s = _explain_one(model, split, index, target, image_size)
    if method == "saliency":
        heat = saliency(s.model, s.x, s.t)[0]
    elif method == "smoothgrad":
        g = torch.Generator(device=s.x.device).manual_seed(index)  # the same noise for the same image
        heat = smoothgrad(s.model, s.x, s.t, n_samples=n_samples, noise=noise, generator=g, batch_size=n_samples)[0]
    else:
        raise ValueError(f"method must be 'saliency' or 'smoothgrad'; got {method!r}")
    name = method if method == "saliency" else f"SmoothGrad σ={noise:.2f}"
    if s.photo is not None:  # a real network's gradient: a few pixels far above the rest
        heat, name = clip_quantile(heat), name + " (clipped at p99)"
    return _panels(s, heat, name, alpha, units="max over channels of |∂ logit / ∂ pixel|")


def render_occlusion(model: nn.Module, split: str = "test_swapped", index: int = 0, target: str = "predicted",
                     patch: int = 8, stride: int = 4, fill: str = "grey (0.5)", alpha: float = 0.8,
                     image_size: int = 64) -> Figure:
    """Image, occlusion map and overlay; ``stride`` is capped at ``patch``. On a photo (224 px) the patch and stride
    are the sliders' values scaled by 224/64 = 3.5, so the windows cover the same share of the image (and the cost
    stays seconds: 8/4 → 28/14, 225 windows, instead of 3,025)."""
    s = _explain_one(model, split, index, target, image_size)
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {list(FILLS)}; got {fill!r}")
    stride = min(stride, patch)
    if s.photo is not None:
        scale = s.x.shape[-1] / 64
        patch, stride = round(patch * scale), round(stride * scale)
    heat = occlusion(s.model, s.x, s.t, patch=patch, stride=stride, fill=FILLS[fill])[0]
    passes = 1 + count_windows(s.x.shape[2], s.x.shape[3], patch, stride)
    return _panels(s, heat, f"occlusion {patch}px / {stride}px", alpha, f"\n{passes} forward passes",
                   units="drop of the logit when covered")


CAM_METHODS = {"CAM": cam, "Grad-CAM": gradcam, "Grad-CAM++": gradcam_pp, "HiResCAM": hirescam,
               "AblationCAM": ablation_cam, "Score-CAM": score_cam}


def conv_layers(model: nn.Module) -> list[str]:
    """Dotted names of the ReLU after each conv block (the course model), else of every Conv2d."""
    relus = [f"features.{i}" for i, m in enumerate(getattr(model, "features", [])) if isinstance(m, nn.ReLU)]
    return relus or [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def render_cam(model: nn.Module, split: str = "test_swapped", index: int = 0, target: str = "predicted",
               method: str = "CAM", layer: str | None = None, alpha: float = 0.8, image_size: int = 64) -> Figure:
    """Image, map and overlay of CAM (raw, signed) or a Grad-CAM variant at ``layer`` (``None``: the last block).

    On a photo, ``layer`` (one of the course model's :func:`conv_layers`) picks the ImageNet network's stage at the
    same relative depth (the last block → its head, the first → stage 3; ``utils.photos.STAGE_LAYERS``)."""
    s = _explain_one(model, split, index, target, image_size)
    if method not in CAM_METHODS:
        raise ValueError(f"method must be one of {list(CAM_METHODS)}; got {method!r}")
    if method == "CAM":
        heat = cam(s.model, s.x, s.t)[0]
        # CAM is signed whatever this image's values: red for the class, blue against, 0 white
        return _panels(s, heat, "CAM", alpha, signed=True, units="logit contribution per cell")
    if s.photo is not None and layer is not None:
        from .photos import STAGE_LAYERS
        course = conv_layers(model)
        depth = course.index(layer) / max(1, len(course) - 1) if layer in course else 1.0
        layer = STAGE_LAYERS[::-1][round(depth * (len(STAGE_LAYERS) - 1))]
    heat = CAM_METHODS[method](s.model, s.x, s.t, layer=layer)[0]
    return _panels(s, heat, f"{method} @ {layer or 'last block'}", alpha,
                   units="ReLU(Σ w_k A_k): activations × the method's weights")


def _wrap(render: Callable[..., Figure], model: nn.Module, image_size: int,
          **controls: widgets.Widget) -> widgets.interactive:
    latest: dict[str, Figure] = {}

    def show(**kwargs) -> None:
        if "figure" in latest:
            plt.close(latest["figure"])  # one live figure per explorer
        latest["figure"] = render(model, image_size=image_size, **kwargs)
        if "ui" in latest:
            latest["ui"].figure = latest["figure"]
        plt.show()

    # interactive() renders once while it is being built, before `ui` exists
    ui = widgets.interactive(show, **controls)
    latest["ui"], ui.figure = ui, latest["figure"]
    return ui


def _split_and_index(split: str) -> dict[str, widgets.Widget]:
    return {
        "split": widgets.Dropdown(options=[s for s in SPLITS if s != "train"] + [PHOTO_SET], value=split,
                                  description="images"),
        "index": widgets.IntSlider(value=0, min=0, max=SPLIT_SIZES["test_iid"] - 1, description="image"),
        "target": widgets.Dropdown(options=TARGETS, value="predicted", description="class"),
    }


def saliency_explorer(model: nn.Module, split: str = "test_swapped", image_size: int = 64) -> widgets.interactive:
    """Controls, in ``ui.children`` order: split, image index, class, method, SmoothGrad noise σ, opacity."""
    return _wrap(render_saliency, model, image_size, **_split_and_index(split),
                 method=widgets.ToggleButtons(options=["saliency", "smoothgrad"], value="saliency"),
                 noise=widgets.FloatSlider(value=0.15, min=0.0, max=0.5, step=0.05, description="noise σ"),
                 alpha=widgets.FloatSlider(value=0.8, min=0.0, max=1.0, step=0.1, description="peak opacity"))


def occlusion_explorer(model: nn.Module, split: str = "test_swapped", image_size: int = 64) -> widgets.interactive:
    """Controls, in ``ui.children`` order: split, image index, class, patch, stride, fill, opacity."""
    return _wrap(render_occlusion, model, image_size, **_split_and_index(split),
                 patch=widgets.IntSlider(value=8, min=4, max=32, step=4, description="patch px"),
                 stride=widgets.IntSlider(value=4, min=2, max=16, step=2, description="stride px"),
                 fill=widgets.Dropdown(options=list(FILLS), value="grey (0.5)", description="fill"),
                 alpha=widgets.FloatSlider(value=0.8, min=0.0, max=1.0, step=0.1, description="peak opacity"))


def cam_explorer(model: nn.Module, split: str = "test_swapped", image_size: int = 64) -> widgets.interactive:
    """Controls, in ``ui.children`` order: split, image index, class, opacity."""
    return _wrap(render_cam, model, image_size, **_split_and_index(split),
                 alpha=widgets.FloatSlider(value=0.8, min=0.0, max=1.0, step=0.1, description="peak opacity"))


def gradcam_explorer(model: nn.Module, split: str = "test_swapped", image_size: int = 64) -> widgets.interactive:
    """Controls, in ``ui.children`` order: split, image index, class, method, layer, opacity."""
    layers = conv_layers(model)
    return _wrap(render_cam, model, image_size, **_split_and_index(split),
                 method=widgets.ToggleButtons(options=[m for m in CAM_METHODS if m != "CAM"], value="Grad-CAM"),
                 layer=widgets.SelectionSlider(options=layers, value=layers[-1], description="layer"),
                 alpha=widgets.FloatSlider(value=0.8, min=0.0, max=1.0, step=0.1, description="peak opacity"))


def render_kernel(model: nn.Module, sigma: float = 0.2, index: int = 0, image_size: int = 64) -> Figure:
    """CAMLoss's kernel ``K = 1 − G_σ`` at ``model``'s feature-map resolution: the grid, over a training image, a profile."""
    s = render_sample("train", index, image_size=image_size)
    device = next(model.parameters()).device
    with evaluating(model), torch.no_grad():
        h, w = model.forward_features(s.image.unsqueeze(0).to(device)).shape[-2:]
    k = inverted_gaussian_kernel(h, w, sigma)
    fig, axes = plt.subplots(1, 3, figsize=(9.6, 3.3))
    axes[0].imshow(k.numpy(), cmap="magma", vmin=0, vmax=1)
    if h <= 12:  # small enough to print each cell's value
        for (i, j), v in zip(((i, j) for i in range(h) for j in range(w)), k.flatten().tolist()):
            axes[0].text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=6, color="w" if v < 0.6 else "k")
    axes[0].set_title(f"K at {h}×{w} (the last conv features)", fontsize=8)
    big = k.repeat_interleave(image_size // h, 0).repeat_interleave(image_size // w, 1)
    overlay(axes[1], s.image, title=f"over a training image ({CLASSES[s.label]})")
    axes[1].imshow(big.numpy(), cmap="magma", vmin=0, vmax=1, alpha=0.55, interpolation="nearest")
    axes[1].contour(s.mask.float().numpy(), levels=[0.5], colors="cyan", linewidths=0.8)
    r = torch.linspace(0, 0.71, 200)
    axes[2].plot(r.numpy(), inverted_gaussian(r ** 2, sigma).numpy(), color="k")
    ys, xs = torch.nonzero(s.mask, as_tuple=True)
    reach = float(((((ys + 0.5) / image_size - 0.5) ** 2 + ((xs + 0.5) / image_size - 0.5) ** 2).sqrt()).max())
    axes[2].axvspan(0, reach, color="cyan", alpha=0.2, label="this animal")
    axes[2].set_xlabel("distance from the centre (fraction of the side)", fontsize=8)
    axes[2].set_ylabel("penalty weight K", fontsize=8)
    axes[2].set_ylim(0, 1.02)
    axes[2].legend(fontsize=7, loc="lower right")
    axes[2].set_title(f"σ = {sigma:.2f}", fontsize=8)
    for ax in axes[:2]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def kernel_explorer(model: nn.Module, sigma: float = 0.2, image_size: int = 64) -> widgets.interactive:
    """Controls, in ``ui.children`` order: σ, training image index."""
    return _wrap(render_kernel, model, image_size,
                 sigma=widgets.FloatSlider(value=sigma, min=0.05, max=0.5, step=0.05, description="σ"),
                 index=widgets.IntSlider(value=0, min=0, max=SPLIT_SIZES["train"] - 1, description="image"))
