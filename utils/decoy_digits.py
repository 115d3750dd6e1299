"""Decoy digits: the DecoyMNIST protocol of Right for the Right Reasons (Ross, Hughes & Doshi-Velez, IJCAI 2017).

In the authors' code (``rrr/decoy_mnist.py``) every *training* digit gets a
4×4 patch in a random corner whose grey level encodes its label,
``255 − 25·label``; every *test* digit gets a patch whose level comes from a
random label. A model that reads the patch instead of the digit scores well in
training and near chance (0.1) on the test split: the orca/leopard scenario of
this course (the background predicts the class in training, misleads at test
time) with ten classes and a shortcut the size of a postage stamp.

One code path, two sources of digits (:data:`SOURCES`):

* ``"digits"`` — scikit-learn's 1,797 bundled 8×8 digits (``load_digits``: in
  the wheel, offline), upscaled to 24 px and centred on a 32-px canvas; split
  60/20/20 (``train``/``val``/``test``) by a permutation of ``seed``.
* ``"mnist"`` — torchvision's MNIST (28 px, the authors' data), centred on the
  same 32-px canvas; ``train`` and ``val`` from its 60,000 training digits (the
  last sixth is ``val``), ``test`` from its 10,000 test digits. Read from
  :data:`MNIST_ROOT`; ``python -m utils.decoy_digits download`` fetches it
  (Colab), and offline :class:`MNISTNotFound` says so.

The splits (:data:`SPLITS`): ``train`` and ``val`` carry label-coded decoys,
``test`` random-label decoys (the misleading split). :class:`DecoyProtocol`
sets the patch's side, its grey step and the placement; the default is the
authors'. The control (the oracle of this scenario, ``utils.train``'s
``oracle``) trains on decoys of *random* labels (``decoys="random"``): it sees
patches, as the test split has them, but they say nothing about the class, as
the oracle's backgrounds say nothing about the animal. (A model trained on no
decoy at all meets the patches first at test time; with a frame decoy that
alone costs it half its accuracy.)

Images come back as :class:`utils.data.SplitData` in the course's format
(``[N, 3, 32, 32]`` in ``[0, 1]``, the grey value in all three channels, so the
course network takes them unchanged); ``masks`` is ``None`` (no object masks)
and ``annotation`` is the decoy patch, the region that must not matter (what
RRR penalises; ``backgrounds`` holds the label the patch encodes, −1 for none).

Command line::

    python -m utils.decoy_digits info                  # split sizes, the decoy levels
    python -m utils.decoy_digits preview --out d.png   # a grid of training and test digits
    python -m utils.decoy_digits download              # MNIST into data/mnist (needs the network)
"""
from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data import SplitData

__all__ = ["SOURCES", "SPLITS", "CANVAS", "CLASSES", "DECOY_RULES", "PLACEMENTS", "MNIST_ROOT", "DecoyProtocol", "MNISTNotFound",
           "decoy_level", "add_decoys", "load_decoy_split", "download_mnist"]

SOURCES = ("digits", "mnist")
SPLITS = ("train", "val", "test")
#: The side of every decoy-digit image (a digit of 24 px, scikit-learn's, or 28 px, MNIST's, centred on it).
CANVAS = 32
CLASSES = tuple(str(d) for d in range(10))
#: ``"label"``: the patch encodes the true label (train, val); ``"random"``: a random label's (test, and the oracle's
#: training); ``"none"``: no patch.
DECOY_RULES = ("label", "random", "none")
PLACEMENTS = ("corner", "fixed", "frame")
_SPLIT_RULE = {"train": "label", "val": "label", "test": "random"}
#: Where MNIST is read from and downloaded to (git-ignored): torchvision's layout, ``data/mnist/MNIST/raw/``.
MNIST_ROOT = Path(__file__).resolve().parent.parent / "data" / "mnist"
_SPLIT_SEEDS = {"train": 1, "val": 2, "test": 3}


class MNISTNotFound(FileNotFoundError):
    """MNIST is not under the given root (offline, or not downloaded yet)."""


@dataclass(frozen=True)
class DecoyProtocol:
    """How the decoy is drawn. The defaults are the authors' (``rrr/decoy_mnist.py``): a 4×4 patch in a random corner,
    grey level ``(255 − step·label) / 255`` with ``step`` 25."""
    patch: int = 4      #: side of the square patch, in pixels of the 32-px canvas
    step: int = 25      #: grey-level step between two labels' patches, out of 255 (``255 − 9·step ≥ 0``)
    #: ``"corner"``: one of the four corners, at random; ``"fixed"``: always the top left; ``"frame"``: a frame
    #: ``patch`` pixels wide around the whole canvas (the decoy becomes a background, as the sea and the savannah are)
    placement: str = "corner"

    def __post_init__(self) -> None:
        for name in ("patch", "step"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"decoy {name} must be an int; got {type(v).__name__}")
        if not 1 <= self.patch <= CANVAS // 4:
            raise ValueError(f"decoy patch must be 1..{CANVAS // 4} pixels (it sits in a corner, clear of the "
                             f"digit's middle); got {self.patch}")
        if not 1 <= self.step <= 28:
            raise ValueError(f"decoy step must be 1..28 (ten levels 255 − step·label must stay >= 0); got {self.step}")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"decoy placement must be one of {', '.join(PLACEMENTS)}; got {self.placement!r}")


def decoy_level(label: int | torch.Tensor, step: int = 25) -> torch.Tensor:
    """The patch's grey value in ``[0, 1]`` for ``label``: ``(255 − step·label) / 255`` (label 0 white)."""
    return (255 - step * torch.as_tensor(label, dtype=torch.float32)) / 255


def add_decoys(images: torch.Tensor, codes: torch.Tensor, protocol: DecoyProtocol, generator: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Paint each image's patch: ``images`` ``[N, H, W]`` grey in ``[0, 1]``, ``codes`` ``[N]`` the label each patch
    encodes (−1: no patch). Returns ``(images with patches, annotation)``; the annotation is bool ``[N, H, W]``,
    True on the patch. The corner of each patch is drawn from ``generator``."""
    n, h, w = images.shape
    out, annotation = images.clone(), torch.zeros(n, h, w, dtype=torch.bool)
    corners = torch.randint(0, 4, (n,), generator=generator)
    p = protocol.patch
    for i in range(n):
        if int(codes[i]) < 0:
            continue
        if protocol.placement == "frame":
            annotation[i] = True
            annotation[i, p:h - p, p:w - p] = False
        else:
            c = 0 if protocol.placement == "fixed" else int(corners[i])
            top, left = (0 if c < 2 else h - p), (0 if c % 2 == 0 else w - p)
            annotation[i, top:top + p, left:left + p] = True
        out[i][annotation[i]] = decoy_level(int(codes[i]), protocol.step)
    return out, annotation


def _centre(digits: torch.Tensor) -> torch.Tensor:
    """``[N, s, s]`` digits in the middle of a black ``CANVAS``-px square."""
    n, s, _ = digits.shape
    canvas = torch.zeros(n, CANVAS, CANVAS)
    o = (CANVAS - s) // 2
    canvas[:, o:o + s, o:o + s] = digits
    return canvas


@functools.lru_cache(maxsize=1)
def _sklearn_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 digits as ``[N, 24, 24]`` grey in [0, 1] (8×8 at 0-16, upscaled ×3 bilinearly)."""
    from sklearn.datasets import load_digits
    d = load_digits()
    small = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    big = F.interpolate(small, size=(24, 24), mode="bilinear", align_corners=False).clamp(0, 1).squeeze(1)
    return big, torch.tensor(d.target, dtype=torch.int64)


def _mnist(train: bool, root: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's MNIST as ``[N, 28, 28]`` grey in [0, 1], or :class:`MNISTNotFound` with the way to get it."""
    from torchvision.datasets import MNIST
    try:
        ds = MNIST(str(root), train=train, download=False)
    except RuntimeError as e:  # torchvision: "Dataset not found. You can use download=True to download it"
        raise MNISTNotFound(f"MNIST is not under {root} ({e}); download it with `python -m utils.decoy_digits "
                            f"download` (it needs the network: on Colab, or copy torchvision's MNIST/raw folder "
                            f"there), or use the offline source 'digits' (scikit-learn's bundled digits)") from None
    return ds.data.to(torch.float32) / 255.0, ds.targets.to(torch.int64)


def _source_split(source: str, split: str, seed: int, root: str | os.PathLike | None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    if source == "digits":
        images, labels = _sklearn_digits()
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
        n_train, n_val = int(0.6 * len(labels)), int(0.2 * len(labels))
        pick = {"train": order[:n_train], "val": order[n_train:n_train + n_val],
                "test": order[n_train + n_val:]}[split]
        return images[pick], labels[pick]
    root = MNIST_ROOT if root is None else root
    images, labels = _mnist(split != "test", root)
    if split == "test":
        return images, labels
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_val = len(labels) // 6
    pick = order[n_val:] if split == "train" else order[:n_val]
    return images[pick], labels[pick]


def load_decoy_split(split: str, source: str = "digits", protocol: DecoyProtocol = DecoyProtocol(), seed: int = 0,
                     decoys: str | None = None, n: int | None = None, root: str | os.PathLike | None = None
                     ) -> SplitData:
    """One split of decoy digits (:data:`SPLITS`) as :class:`~utils.data.SplitData` in the course's image format.

    ``decoys``: override the split's rule (:data:`DECOY_RULES`; ``"none"`` for the decoy-free control); ``n``: at
    most this many images (the first of the split's seeded order); ``root``: MNIST's folder (default
    :data:`MNIST_ROOT`). The same ``(split, source, protocol, seed)`` gives the same images, patches and corners.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown decoy-digit source {source!r}; choose one of {', '.join(SOURCES)}")
    if split not in SPLITS:
        raise ValueError(f"unknown decoy-digit split {split!r}; choose one of {', '.join(SPLITS)}")
    rule = _SPLIT_RULE[split] if decoys is None else decoys
    if rule not in DECOY_RULES:
        raise ValueError(f"decoys must be one of {', '.join(DECOY_RULES)}; got {rule!r}")
    if not isinstance(protocol, DecoyProtocol):
        raise TypeError(f"protocol must be a DecoyProtocol; got {type(protocol).__name__}")
    digits, labels = _source_split(source, split, seed, root)
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int; got {n!r}")
        digits, labels = digits[:n], labels[:n]
    g = torch.Generator().manual_seed(seed * 1000 + _SPLIT_SEEDS[split])
    random_codes = torch.randint(0, 10, labels.shape, generator=g)
    codes = {"label": labels, "random": random_codes, "none": torch.full_like(labels, -1)}[rule]
    grey, annotation = add_decoys(_centre(digits), codes, protocol, g)
    images = grey.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    return SplitData(split=split, images=images, labels=labels, masks=None, backgrounds=codes, annotation=annotation)


def download_mnist(root: str | os.PathLike | None = None) -> Path:
    """Fetch MNIST into ``root`` (default :data:`MNIST_ROOT`) with torchvision (its mirrors, md5-checked). The files
    land in a temporary folder beside ``root`` and move into place only when all four arrived, so a failed download
    (offline: :class:`MNISTNotFound`, with the offline alternative) leaves nothing behind."""
    from torchvision.datasets import MNIST
    root = Path(MNIST_ROOT if root is None else root)
    if (root / "MNIST" / "raw").is_dir():
        try:
            _mnist(False, root)
            return root
        except MNISTNotFound:
            pass
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".mnist-", dir=root.parent))
    try:
        for train in (True, False):
            MNIST(str(tmp), train=train, download=True)
        root.mkdir(parents=True, exist_ok=True)
        if (root / "MNIST").exists():
            shutil.rmtree(root / "MNIST")
        os.replace(tmp / "MNIST", root / "MNIST")
    except (OSError, RuntimeError) as e:
        first = str(e).strip().splitlines()
        raise MNISTNotFound(f"could not download MNIST into {root} ({' '.join(first[:3])[:300]}); this needs the "
                            f"network (Colab has it). Offline, use the source 'digits' (dataset decoy_digits: "
                            f"scikit-learn's bundled digits)") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


# --------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.decoy_digits", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="split sizes and the decoy grey levels")
    info.add_argument("--source", choices=SOURCES, default="digits")
    preview = sub.add_parser("preview", help="a PNG of training (label decoys) and test (random decoys) digits")
    preview.add_argument("--source", choices=SOURCES, default="digits")
    preview.add_argument("--out", default="decoy_digits.png")
    preview.add_argument("--patch", type=int, default=DecoyProtocol.patch, help="the patch's side (frame: its width)")
    preview.add_argument("--placement", choices=PLACEMENTS, default=DecoyProtocol.placement)
    sub.add_parser("download", help=f"download MNIST into {MNIST_ROOT} (needs the network)")
    args = parser.parse_args(argv)
    try:
        if args.command == "download":
            print(f"MNIST is in {download_mnist()}")
        elif args.command == "info":
            for s in SPLITS:
                d = load_decoy_split(s, args.source)
                same = float((d.backgrounds == d.labels).float().mean())
                print(f"{s:<6}{len(d):>7} digits; decoys {_SPLIT_RULE[s]:<6} (patch encodes the true label: "
                      f"{same:.1%})")
            print("levels: " + ", ".join(f"{c}: {float(decoy_level(c)):.3f}" for c in range(10)))
        else:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            protocol = DecoyProtocol(patch=args.patch, placement=args.placement)
            fig, axes = plt.subplots(2, 8, figsize=(8, 2.4), facecolor="#d8d8d8")  # grey: a white patch shows
            for row, s in enumerate(("train", "test")):
                d = load_decoy_split(s, args.source, protocol, n=8)
                for i, ax in enumerate(axes[row]):
                    ax.imshow(d.images[i, 0], cmap="gray", vmin=0, vmax=1)
                    ax.set_title(f"{s}: {int(d.labels[i])}\ndecoy {int(d.backgrounds[i])}", fontsize=7)
                    ax.set_xticks([])
                    ax.set_yticks([])
            fig.savefig(args.out, dpi=150, bbox_inches="tight")
            print(f"wrote {args.out}")
    except MNISTNotFound as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
