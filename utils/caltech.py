"""The real data: orcas and leopards from Caltech-256 (docs/design.md, section 3).

Two categories of Caltech-256 (Griffin, Holub & Perona 2007):
``129.leopards-101`` (about 190 images) → ``leopard`` (0) and
``124.killer-whale`` (about 90) → ``orca`` (1). The course runs on the embedded
synthetic dataset by default; this loader is for a machine with the data (or a
network and 1.2 GB to spare), e.g. Colab with a GPU.

Where the images come from (first that exists under ``root``, default
``data/caltech256``):

* ``root/256_ObjectCategories/<category>/*.jpg`` — an extracted archive;
* ``root/caltech256/256_ObjectCategories/...`` — torchvision's
  ``Caltech256(root, download=True)`` layout;
* :func:`download` fetches ``256_ObjectCategories.tar`` (md5-verified, written
  atomically) and extracts only the two categories, also atomically.

Splits (deterministic for a given ``seed``; the same at every image size):

1. **The misleading rule.** Each image's *border blueness* is the mean of
   ``B − (R + G)/2`` over its outer eighth (on a 64-px copy), in [-1, 1]: sea
   and sky are blue, savannah is not. ``test_swapped`` takes, from each class,
   the ``swapped_fraction`` (default 15 %) of images whose border looks most
   like the *other* class's habitat: the bluest leopards and the least blue
   orcas (ties by file name). They are set aside first, so training never sees
   them.
2. The rest are shuffled per class with ``seed`` and cut into ``train`` (70 %),
   ``val`` (15 %) and ``test_iid`` (15 %).
3. **Balance.** Orcas are the minority; as in the original project, ``train``
   is topped up with augmented copies of the minority class (horizontal flip
   and a random crop of 80–100 % of the side, drawn from ``seed``) until both
   classes have the same count.

Images are converted to RGB (grayscale and CMYK files exist in Caltech-256),
resized to ``image_size`` squared, and returned as :class:`utils.data.SplitData`
with ``masks=None`` (Caltech has no object masks) and ``backgrounds`` set to
``SEA`` where the border blueness is positive, else ``LAND``. An unreadable
image is skipped with a warning naming it.

Command line::

    python -m utils.caltech download            # 1.2 GB; needs the network
    python -m utils.caltech info                # counts per split and class, and what the misleading rule moved
"""
from __future__ import annotations

import argparse
import hashlib
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import IO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .data import LAND, SEA, SplitData, _check_image_size
from .models import atomic_write

__all__ = ["CATEGORIES", "SPLITS", "ARCHIVE_URL", "ARCHIVE_MD5", "DEFAULT_ROOT", "CaltechNotFound",
           "DownloadError", "find_categories", "is_available", "download", "border_blueness",
           "assign_splits", "load_caltech_split", "split_info"]

#: Folder name per class index (leopard = 0, orca = 1, as in ``utils.data``).
CATEGORIES: tuple[str, str] = ("129.leopards-101", "124.killer-whale")
SPLITS: tuple[str, ...] = ("train", "val", "test_iid", "test_swapped")
ARCHIVE_URL = "https://data.caltech.edu/records/nyy15-4j048/files/256_ObjectCategories.tar"
ARCHIVE_MD5 = "67b4f42ca05d46448c6bb8ecd2220f6d"
ARCHIVE_NAME = "256_ObjectCategories.tar"
DEFAULT_ROOT = Path(__file__).resolve().parent.parent / "data" / "caltech256"
_FRACTIONS = {"train": 0.70, "val": 0.15, "test_iid": 0.15}
_EXTENSIONS = (".jpg", ".jpeg", ".png")
_FALLBACK = "the embedded synthetic dataset (dataset='synthetic', the default) needs no files"


class CaltechNotFound(FileNotFoundError):
    """The two Caltech-256 category folders are not under the given root."""


class DownloadError(ConnectionError):
    """The archive could not be fetched or failed its md5 check (nothing is left behind)."""


# --------------------------------------------------------------------------- locating and downloading
def _candidates(root: Path) -> list[Path]:
    return [root / "256_ObjectCategories", root / "caltech256" / "256_ObjectCategories", root]


def find_categories(root: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """The leopard and orca folders under ``root`` (default :data:`DEFAULT_ROOT`), or :class:`CaltechNotFound`."""
    root = Path(DEFAULT_ROOT if root is None else root)
    for base in _candidates(root):
        folders = tuple(base / c for c in CATEGORIES)
        if all(f.is_dir() for f in folders):
            return folders  # type: ignore[return-value]
    raise CaltechNotFound(
        f"Caltech-256 categories {' and '.join(CATEGORIES)} not found under {root} (looked in "
        f"{', '.join(str(c) for c in _candidates(root))}). Get them with `python -m utils.caltech download "
        f"--root {root}` (1.2 GB from {ARCHIVE_URL}), or extract {ARCHIVE_NAME} there yourself; "
        f"meanwhile {_FALLBACK}.")


def is_available(root: str | os.PathLike | None = None) -> bool:
    try:
        find_categories(root)
        return True
    except CaltechNotFound:
        return False


def _md5(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, out: IO[bytes], progress: bool) -> None:
    """Stream ``url`` into the open file ``out`` (a temporary file that ``atomic_write`` renames)."""
    from .progress import bar as progress_bar, report
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with progress_bar(total, ARCHIVE_NAME, "B", enabled=progress, unit_scale=True) as bar:
                done, tenth = 0, 0
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
                    done += len(block)
                    if total and done * 10 // total > tenth:  # a line per tenth where no bar is drawn
                        tenth = done * 10 // total
                        report(f"{ARCHIVE_NAME}: {done * 100 // total}% of {total / 1e6:,.1f} MB", progress)
                if not total:
                    report(f"{ARCHIVE_NAME}: {done / 1e6:,.1f} MB", progress)
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(
            f"could not download Caltech-256 from {url} ({reason}). This machine may be offline: download "
            f"{ARCHIVE_NAME} elsewhere and extract it under the data root, or skip the real data — "
            f"{_FALLBACK}.") from None


def download(root: str | os.PathLike | None = None, url: str = ARCHIVE_URL, md5: str | None = ARCHIVE_MD5,
             progress: bool = True, keep_archive: bool = False) -> tuple[Path, Path]:
    """Fetch the archive, check its md5, and extract the two categories into ``root/256_ObjectCategories``.

    Every step writes to a temporary name first and renames only when complete,
    so an interrupted or failed download leaves nothing that looks finished.
    Returns the category folders (at once, without a download, if they exist).
    """
    root = Path(DEFAULT_ROOT if root is None else root)
    if is_available(root):
        return find_categories(root)
    root.mkdir(parents=True, exist_ok=True)
    archive = root / ARCHIVE_NAME
    if not archive.is_file():
        def verify(part: Path) -> None:
            if md5 is not None and (got := _md5(part)) != md5:
                raise DownloadError(f"{ARCHIVE_NAME} from {url} failed its md5 check (got {got}, expected {md5}): "
                                    f"the download is corrupt or truncated; it was deleted, try again")

        atomic_write(archive, lambda out: _fetch(url, out, progress), verify)  # temp file, fsync, check, rename
    elif md5 is not None and (got := _md5(archive)) != md5:
        raise DownloadError(f"{archive} exists but fails its md5 check (got {got}, expected {md5}); "
                            f"delete it and run the download again")
    _extract(archive, root / "256_ObjectCategories")
    if not keep_archive:
        archive.unlink()
    return find_categories(root)


def _extract(archive: Path, target: Path) -> None:
    """Extract only the two categories, each into a temporary folder renamed into place when complete."""
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".extract-") as tmp, tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers()
                   if m.isfile() and any(f"{c}/" in m.name for c in CATEGORIES)]
        found = {c for c in CATEGORIES if any(f"{c}/" in m.name for m in members)}
        if found != set(CATEGORIES):
            raise DownloadError(f"{archive} does not contain {', '.join(sorted(set(CATEGORIES) - found))}; "
                                f"is it the Caltech-256 archive?")
        for m in members:
            category = next(c for c in CATEGORIES if f"{c}/" in m.name)
            m.name = f"{category}/{Path(m.name).name}"  # flatten: no path from the archive is trusted
        tar.extractall(tmp, members=members, filter="data")
        for c in CATEGORIES:
            if not (target / c).is_dir():
                os.replace(Path(tmp) / c, target / c)


# --------------------------------------------------------------------------- reading and splitting
def _read_rgb(path: Path) -> Image.Image | None:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")  # grayscale and CMYK files exist in Caltech-256
    except (UnidentifiedImageError, OSError, ValueError) as e:
        warnings.warn(f"skipping unreadable image {path} ({e.__class__.__name__}: {e})", stacklevel=3)
        return None


def _to_tensor(image: Image.Image, size: int) -> torch.Tensor:
    arr = np.asarray(image.resize((size, size), Image.BILINEAR), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255)


def border_blueness(image: torch.Tensor, band: float = 1 / 8) -> float:
    """Mean of ``B − (R+G)/2`` over the outer ``band`` of a ``[3, H, W]`` image in [0, 1]: > 0 looks like sea or sky."""
    _, h, w = image.shape
    bh, bw = max(1, round(h * band)), max(1, round(w * band))
    inner = torch.zeros(h, w, dtype=torch.bool)
    inner[bh:h - bh, bw:w - bw] = True
    blue = image[2] - (image[0] + image[1]) / 2
    return float(blue[~inner].mean())


def assign_splits(names: list[str], labels: list[int], blueness: list[float], seed: int = 0,
                  swapped_fraction: float = 0.15) -> dict[str, list[int]]:
    """Indices per split by the documented rule (module docstring): misleading first, then a seeded 70/15/15 cut."""
    if not 0 < swapped_fraction < 1:
        raise ValueError(f"swapped_fraction must be in (0, 1); got {swapped_fraction}")
    if not len(names) == len(labels) == len(blueness):
        raise ValueError("names, labels and blueness must have the same length")
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    rng = np.random.default_rng(seed)
    for label in (0, 1):
        idx = sorted((i for i in range(len(names)) if labels[i] == label), key=lambda i: names[i])
        if len(idx) < 4:
            raise ValueError(f"class {label} has {len(idx)} readable images; at least 4 are needed to split")
        # leopards (0): bluest borders first; orcas (1): least blue first — the other class's habitat
        sign = -1.0 if label == 0 else 1.0
        ranked = sorted(idx, key=lambda i: (sign * blueness[i], names[i]))
        k = max(1, round(swapped_fraction * len(idx)))
        out["test_swapped"] += ranked[:k]
        rest = sorted(ranked[k:], key=lambda i: names[i])
        rest = [rest[j] for j in rng.permutation(len(rest))]
        n_val = max(1, round(_FRACTIONS["val"] * len(rest)))
        n_iid = max(1, round(_FRACTIONS["test_iid"] * len(rest)))
        out["val"] += rest[:n_val]
        out["test_iid"] += rest[n_val:n_val + n_iid]
        out["train"] += rest[n_val + n_iid:]
    return {s: sorted(v) for s, v in out.items()}


def _augment(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A horizontal flip (p = ½) and a random square crop of 80–100 % of the side, resized back."""
    _, h, w = image.shape
    if torch.rand((), generator=generator) < 0.5:
        image = image.flip(-1)
    side = int(round(h * (0.8 + 0.2 * float(torch.rand((), generator=generator)))))
    top = int(torch.randint(0, h - side + 1, (), generator=generator))
    left = int(torch.randint(0, w - side + 1, (), generator=generator))
    crop = image[:, top:top + side, left:left + side].unsqueeze(0)
    return F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False).squeeze(0).clamp_(0, 1)


def _balance(images: torch.Tensor, labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    counts = torch.bincount(labels, minlength=2)
    minority = int(counts.argmin())
    missing = int(counts.max() - counts.min())
    if missing == 0:
        return images, labels
    generator = torch.Generator().manual_seed(seed)
    pool = torch.nonzero(labels == minority).flatten()
    picks = pool[torch.randint(0, len(pool), (missing,), generator=generator)]
    extra = torch.stack([_augment(images[i], generator) for i in picks])
    return torch.cat([images, extra]), torch.cat([labels, torch.full((missing,), minority, dtype=labels.dtype)])


def _scan(root: str | os.PathLike | None) -> tuple[list[Path], list[int]]:
    paths, labels = [], []
    for label, folder in enumerate(find_categories(root)):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _EXTENSIONS and p.is_file())
        paths += files
        labels += [label] * len(files)
    return paths, labels


def _read_all(root: str | os.PathLike | None) -> tuple[list[str], list[int], list[Image.Image], list[float]]:
    """Every readable image under ``root``: names (``label/file``), labels, the RGB pictures and border blueness."""
    paths, labels = _scan(root)
    names, kept, pictures, blue = [], [], [], []
    for p, label in zip(paths, labels):
        im = _read_rgb(p)
        if im is not None:
            names.append(f"{label}/{p.name}")
            kept.append(label)
            pictures.append(im)
            blue.append(border_blueness(_to_tensor(im, 64)))
    return names, kept, pictures, blue


def load_caltech_split(split: str, image_size: int = 192, root: str | os.PathLike | None = None, seed: int = 0,
                       swapped_fraction: float = 0.15, balance: bool = True) -> SplitData:
    """One split of the Caltech-256 orca/leopard data as :class:`~utils.data.SplitData` (``masks=None``).

    ``root``: default :data:`DEFAULT_ROOT`. ``balance`` (``train`` only): top up the
    minority class with augmented copies. Raises :class:`CaltechNotFound` (with the
    way to get the data) when it is missing.
    """
    root = DEFAULT_ROOT if root is None else root
    if split not in SPLITS:
        raise ValueError(f"unknown Caltech split {split!r}; choose one of {', '.join(SPLITS)} "
                         f"(test_shifted and test_random exist only for the synthetic dataset)")
    image_size = _check_image_size(image_size)
    names, kept_labels, pictures, blue = _read_all(root)
    chosen = assign_splits(names, kept_labels, blue, seed, swapped_fraction)[split]
    images = torch.stack([_to_tensor(pictures[j], image_size) for j in chosen])
    y = torch.tensor([kept_labels[j] for j in chosen], dtype=torch.int64)
    bg = torch.tensor([SEA if blue[j] > 0 else LAND for j in chosen], dtype=torch.int64)
    if split == "train" and balance:
        n_before = len(y)
        images, y = _balance(images, y, seed)
        extra_bg = torch.tensor([SEA if b > 0 else LAND for b in (border_blueness(t) for t in images[n_before:])],
                                dtype=torch.int64)
        bg = torch.cat([bg, extra_bg])
    return SplitData(split=split, images=images, labels=y, masks=None, backgrounds=bg)


def split_info(root: str | os.PathLike | None = None, seed: int = 0, swapped_fraction: float = 0.15) -> str:
    """What ``python -m utils.caltech info`` prints: the readable images, each split's count per class (``train``
    also after balancing) and what the misleading rule moved into ``test_swapped``."""
    root = DEFAULT_ROOT if root is None else root
    names, labels, _, blue = _read_all(root)
    splits = assign_splits(names, labels, blue, seed, swapped_fraction)
    count = lambda idx, c: sum(1 for j in idx if labels[j] == c)  # noqa: E731
    per_class = [count(range(len(labels)), c) for c in (0, 1)]
    skipped = len(_scan(root)[0]) - len(labels)
    lines = [f"{len(labels)} readable images under {root}: leopard {per_class[0]}, orca {per_class[1]} "
             f"({skipped} unreadable skipped; split seed {seed})", f"{'split':<24}{'leopard':>8}{'orca':>6}"]
    for s in SPLITS:
        lines.append(f"{s:<24}{count(splits[s], 0):>8}{count(splits[s], 1):>6}")
        if s == "train":
            big = max(count(splits[s], 0), count(splits[s], 1))
            lines.append(f"{'train, balanced':<24}{big:>8}{big:>6}   (the minority topped up with augmented copies)")
    moved = splits["test_swapped"]
    blue_leopards = sum(1 for j in moved if labels[j] == 0 and blue[j] > 0)
    land_orcas = sum(1 for j in moved if labels[j] == 1 and blue[j] <= 0)
    lines.append(f"the misleading rule moved {len(moved)} images into test_swapped ({swapped_fraction:.0%} of each class): "
                 f"the {count(moved, 0)} bluest-bordered leopards ({blue_leopards} with a blue border) and the "
                 f"{count(moved, 1)} least blue orcas ({land_orcas} with a border that is not blue)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.caltech", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("download", "info"))
    parser.add_argument("--root", default=str(DEFAULT_ROOT), help="data root (default data/caltech256)")
    parser.add_argument("--seed", type=int, default=0, help="split seed (info; default 0)")
    args = parser.parse_args(argv)
    try:
        if args.command == "download":
            folders = download(args.root)
            print("ready:", *(f"{f} ({sum(1 for _ in f.iterdir())} files)" for f in folders), sep="\n  ")
        else:
            print(split_info(args.root, args.seed))
    except (CaltechNotFound, DownloadError, ValueError) as e:
        print(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
