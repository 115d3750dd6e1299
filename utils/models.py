"""The one architecture of the course, and its checkpoints (docs/design.md, section 2).

``OrcaLeopardNet``: input normalisation → conv blocks (3×3 conv, batch norm,
ReLU; 2×2 max-pool after every block but the last) → global average pooling →
linear. Global average pooling is what makes the true CAM of Zhou et al. (2016)
exist: with features ``f_k(x, y)`` of the last block and linear weights
``w_ck``, the logit is ``y_c = Σ_k w_ck · mean_xy f_k(x, y) + b_c``, so
``M_c(x, y) = Σ_k w_ck f_k(x, y)`` averages to ``y_c − b_c``.

Reach the parts explanations need as ``model.features`` (the conv stack; its
last module is the ReLU after the last conv), ``model.last_conv``,
``model.pool`` and ``model.classifier``; ``model.forward_with_features(x)``
returns logits and last features from one pass (what CAMLoss trains with).

Checkpoints are a plain dict of tensors and JSON-like metadata, written
atomically (temporary file, verified with ``torch.load(weights_only=True)``,
then renamed, with the umask's file mode) and read back with ``weights_only=True``.
:func:`load_shipped` reads the models committed under ``models/`` (``SHIPPED_MODELS``: the one
notebooks 01-04 explain, its positive control the oracle, and two that notebook 05 reads), each with its SHA-256 in the JSON beside it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import torch
from torch import nn

__all__ = ["OrcaLeopardNet", "DigitMLP", "build_model", "save_checkpoint", "load_checkpoint", "CheckpointError", "evaluating",
           "atomic_write", "sha256_of", "local_kernels", "load_shipped", "SHIPPED_DIR", "SHIPPED_DEFAULT",
           "SHIPPED_MODELS", "SHIPPED_ORACLE",
           "IMAGENET_MEAN", "IMAGENET_STD", "CHECKPOINT_FORMAT"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHECKPOINT_FORMAT = "visual-explanations-cnn/checkpoint"
CHECKPOINT_VERSION = 1
#: The tracked folder of the shipped model(s): ``<name>.pt`` + ``<name>.json`` (its config, accuracy and sha256).
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "models"
#: The default model notebooks 01-04 explain; ``python -m utils.train default --seed 0 --out models`` retrains it.
SHIPPED_DEFAULT = "default_seed0"
#: The positive control notebooks 01-04 show beside the default: the same network, data and epochs, trained on
#: backgrounds drawn independently of the class (``oracle``), so it has to use the animal.
SHIPPED_ORACLE = "oracle_seed0"
#: Every model that ships under ``models/``, with the command that trained it (run from the repository root). Notebook
#: 05 reads the two positive-CAM models: what they teach (the energy paradox, the penalty's loophole) is one training's
#: particular outcome, which another CPU's arithmetic changes, so every learner reads the same weights
#: (docs/design.md, section 4). Their JSON records the arithmetic they were trained with.
SHIPPED_MODELS: dict[str, str] = {
    SHIPPED_DEFAULT: "python -m utils.train default --seed 0 --out models",
    SHIPPED_ORACLE: "OMP_NUM_THREADS=1 python -m utils.train oracle --seed 0 --out models --name oracle_seed0",
    # one thread: on one kind of CPU, the same weights whatever its core count (a reduction's order depends on it)
    "positive_cam_seed0": "OMP_NUM_THREADS=1 python -m utils.train camloss --map positive_cam --seed 0 --out models "
                          "--name positive_cam_seed0",
    "positive_cam_course_joint_seed0": "OMP_NUM_THREADS=1 python -m utils.train camloss --map positive_cam --schedule "
                                       "joint --arch course --epochs 6 --seed 0 --out models "
                                       "--name positive_cam_course_joint_seed0",
    # notebook 05, section 10: seed 0 of camloss's and rrr's picks on frame decoy digits (utils.peer.peer_variants,
    # results/decoy_digits.jsonl): read, not trained, so the section trains nothing live (the rrr run takes a minute)
    "decoy_frame_camloss_seed0": "OMP_NUM_THREADS=1 python -m utils.train camloss --dataset decoy_digits --decoy-patch 4 "
                                 "--decoy-placement frame --arch course --widths 16 32 64 --epochs 20 --lam 3 --sigma 0.5 "
                                 "--schedule joint --seed 0 --out models --name decoy_frame_camloss_seed0",
    "decoy_frame_rrr_seed0": "OMP_NUM_THREADS=1 python -m utils.train rrr --dataset decoy_digits --decoy-patch 4 "
                             "--decoy-placement frame --arch course --widths 16 32 64 --epochs 20 --lam 100 --seed 0 "
                             "--out models --name decoy_frame_rrr_seed0",
}


class Normalize(nn.Module):
    """``(x − mean) / std`` per channel, so models take images in ``[0, 1]``."""

    def __init__(self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class OrcaLeopardNet(nn.Module):
    """Conv blocks → global average pooling → linear (the course model).

    ``widths`` are the channels of the conv blocks; with 4 blocks the feature
    map is 1/8 of the input side (8×8 at 64 px, 24×24 at 192 px).
    ``kernel_sizes`` (odd, one per block; default 3 everywhere) set each block's
    convolution: ``local_kernels(len(widths))`` keeps 3×3 in the first block and
    1×1 after it, so a last-layer cell sees only a 10-pixel patch of the image
    (a BagNet-like receptive field, Brendel & Bethge 2019; what CAMLoss trains, docs/design.md §4).
    """

    arch = "OrcaLeopardNet"

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128), num_classes: int = 2,
                 kernel_sizes: tuple[int, ...] | None = None):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be a non-empty tuple of positive ints; got {widths}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2; got {num_classes}")
        kernels = (3,) * len(widths) if kernel_sizes is None else tuple(int(k) for k in kernel_sizes)
        if len(kernels) != len(widths) or any(k < 1 or k % 2 == 0 for k in kernels):
            raise ValueError(f"kernel_sizes must give one odd size per block ({len(widths)} blocks); got {kernel_sizes}")
        self.widths, self.num_classes, self.kernel_sizes = widths, int(num_classes), kernels
        self.normalize = Normalize()
        layers: list[nn.Module] = []
        c_in = 3
        for i, (w, k) in enumerate(zip(widths, kernels)):
            layers += [nn.Conv2d(c_in, w, k, padding=k // 2, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=False)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(widths[-1], num_classes)

    @property
    def last_conv(self) -> nn.Conv2d:
        """The last convolution (Grad-CAM's usual target layer is ``features[-1]``, its ReLU)."""
        return [m for m in self.features if isinstance(m, nn.Conv2d)][-1]

    @property
    def min_image_size(self) -> int:
        """The smallest input side: each 2×2 max-pool halves it, and the last block needs at least 1 pixel."""
        return 2 ** (len(self.widths) - 1)

    @property
    def receptive_field(self) -> int:
        """The side, in input pixels, of the patch one last-layer cell sees (what CAMLoss's centre prior relies on)."""
        size, jump = 1, 1
        for m in self.features:
            if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
                k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
                s = m.stride if isinstance(m.stride, int) else m.stride[0]
                size, jump = size + (k - 1) * jump, jump * s
        return size

    def receptive_box(self, row: int, col: int) -> tuple[int, int, int]:
        """``(top, left, side)`` in input pixels of the patch last-layer cell ``(row, col)`` sees (it may reach past
        the border, where the convolutions see zero padding). Each convolution widens it by ``k // 2`` cells of its
        input on each side; each 2×2 max-pool doubles the step between cells."""
        margin, jump = 0, 1
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
                margin += (k // 2) * jump
            elif isinstance(m, nn.MaxPool2d):
                jump *= m.stride if isinstance(m.stride, int) else m.stride[0]
        return row * jump - margin, col * jump - margin, self.receptive_field

    @property
    def config(self) -> dict[str, Any]:
        config = {"arch": self.arch, "widths": list(self.widths), "num_classes": self.num_classes}
        if any(k != 3 for k in self.kernel_sizes):  # checkpoints of the 3×3 course model keep their old form
            config["kernel_sizes"] = list(self.kernel_sizes)
        return config

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Last conv features ``[N, K, h, w]`` of images ``[N, 3, H, W]`` in ``[0, 1]``."""
        return self.features(self.normalize(images))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from last features: global average pooling then the linear layer."""
        return self.classifier(self.pool(features).flatten(1))

    def forward_with_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.forward_features(images)
        return self.head(feats), feats

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(images))


class DigitMLP(nn.Module):
    """The MLP of Right for the Right Reasons' DecoyMNIST experiment (Ross et al. 2017): the grey image flattened,
    hidden layers of 50 and 30 ReLU units, a linear layer to the classes. It takes the course's images
    (``[N, 3, H, W]`` in ``[0, 1]``) and reads their grey value (the channels' mean: decoy digits carry the same grey
    in all three). It has no feature map, hence no CAM: the reproduction check of RRR, not a model CAMLoss can train."""

    arch = "DigitMLP"

    def __init__(self, pixels: int = 32 * 32, hidden: tuple[int, ...] = (50, 30), num_classes: int = 10):
        super().__init__()
        self.pixels, self.hidden, self.num_classes = int(pixels), tuple(int(h) for h in hidden), int(num_classes)
        if self.pixels < 1 or not self.hidden or min(self.hidden) < 1 or self.num_classes < 2:
            raise ValueError(f"DigitMLP needs pixels >= 1, hidden sizes >= 1 and num_classes >= 2; got {pixels}, "
                             f"{hidden}, {num_classes}")
        layers: list[nn.Module] = []
        width = self.pixels
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, self.num_classes)

    @property
    def config(self) -> dict[str, Any]:
        return {"arch": self.arch, "pixels": self.pixels, "hidden": list(self.hidden), "num_classes": self.num_classes}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        grey = images.mean(1).flatten(1)
        if grey.shape[1] != self.pixels:
            raise ValueError(f"DigitMLP was built for {self.pixels} pixels; got images of {grey.shape[1]}")
        return self.classifier(self.body(grey))


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode inside the block (batch norm uses its running statistics); the previous mode after it, even on error."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def build_model(config: dict[str, Any] | None = None) -> OrcaLeopardNet | DigitMLP:
    """A fresh model from a ``model.config`` dict (``None``: the default architecture; ``DigitMLP``: decoy digits' MLP)."""
    config = dict(config or {"arch": OrcaLeopardNet.arch})
    arch = config.pop("arch", OrcaLeopardNet.arch)
    if arch == DigitMLP.arch:
        return DigitMLP(pixels=config.get("pixels", 32 * 32), hidden=tuple(config.get("hidden", (50, 30))),
                        num_classes=config.get("num_classes", 10))
    if arch != OrcaLeopardNet.arch:
        raise ValueError(f"unknown architecture {arch!r}; this course has {OrcaLeopardNet.arch!r} and "
                         f"{DigitMLP.arch!r}")
    kernels = config.get("kernel_sizes")
    return OrcaLeopardNet(widths=tuple(config.get("widths", (16, 32, 64, 128))),
                          num_classes=config.get("num_classes", 2),
                          kernel_sizes=None if kernels is None else tuple(kernels))


def local_kernels(blocks: int) -> tuple[int, ...]:
    """3×3 in the first block, 1×1 after it: the receptive-field-limited variant (``arch="local"`` in training)."""
    return (3,) + (1,) * (blocks - 1)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: unreadable, not ours, or not matching the model."""


def _json_safe(meta: dict[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(meta))
    except TypeError as e:
        raise TypeError(f"checkpoint metadata must be JSON-serialisable: {e}") from None


def _umask() -> int:
    """The process's umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None],
                 verify: Callable[[Path], None] | None = None) -> Path:
    """Write ``path`` so it appears complete or not at all.

    ``write`` fills a temporary file in the same folder; it is flushed to disk,
    checked by ``verify`` (which raises if the file is wrong), then renamed over
    ``path``. On any failure the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); the result gets the mode any new file gets here (0666 & ~umask)
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if verify is not None:
            verify(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(model: OrcaLeopardNet, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model`` and ``meta`` (image size, classes, training config, metrics…) to ``path`` atomically.

    The file appears complete or not at all: it is written to a temporary file in
    the same folder, read back with ``torch.load(weights_only=True)``, then renamed.
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": model.config,
        "meta": _json_safe(meta or {}),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }

    def verify(tmp: Path) -> None:
        check = torch.load(tmp, map_location="cpu", weights_only=True)
        if check.keys() != payload.keys() or check["state_dict"].keys() != payload["state_dict"].keys():
            raise CheckpointError(f"verification of {tmp} failed: it does not read back as written")

    return atomic_write(path, lambda f: torch.save(payload, f), verify)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu"
                    ) -> tuple[OrcaLeopardNet, dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`: ``(model in eval mode, meta)``.

    Raises ``FileNotFoundError`` if there is no file and :class:`CheckpointError`
    (a ``ValueError``) if it is truncated, corrupt, of another format or does not
    fit the architecture it names.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one with `python -m utils.train default`")
    fix = f"delete {path} and train again (`python -m utils.train ...`)"
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, random bytes, pickled objects weights_only refuses...
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): "
                              f"{type(e).__name__}: {str(e).splitlines()[0][:200]}; {fix}") from e
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint of this course (no {CHECKPOINT_FORMAT!r} header); {fix}")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint version {payload.get('version')!r}, "
                              f"this code reads version {CHECKPOINT_VERSION}; {fix}")
    try:
        model = build_model(payload["model"])
        model.load_state_dict(payload["state_dict"], strict=True)
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path} does not match the architecture it names "
                              f"({payload.get('model')}): {str(e).splitlines()[0][:300]}; {fix}") from e
    model.to(device).eval()
    return model, payload.get("meta", {})


def sha256_of(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_shipped(name: str = SHIPPED_DEFAULT, device: str | torch.device = "cpu",
                 folder: str | os.PathLike = SHIPPED_DIR) -> tuple[OrcaLeopardNet, dict[str, Any]]:
    """A model committed under ``models/`` (``SHIPPED_MODELS``; by default what notebooks 01-04 explain):
    ``(model in eval mode, meta)``.

    Every learner explains the same weights, so the notebooks' stored outputs are
    what they see. ``<name>.json`` records the checkpoint's SHA-256; a file that
    differs (a Git LFS pointer, a truncated copy, another checkpoint copied over
    it) is refused with :class:`CheckpointError`. The meta dict is the JSON.
    """
    folder = Path(folder)
    pt, js = folder / f"{name}.pt", folder / f"{name}.json"
    retrain = SHIPPED_MODELS.get(name, f"python -m utils.train STRATEGY --seed N --out models --name {name}")
    if folder != SHIPPED_DIR:
        retrain = retrain.replace("--out models", f"--out {folder}")
    restore = f"restore it with `git checkout -- {pt} {js}`, or retrain it with `{retrain}`"
    if not pt.is_file() or not js.is_file():
        raise FileNotFoundError(f"the shipped model {name} is missing ({pt} and {js} are both needed); {restore}")
    try:
        meta = json.loads(js.read_text())
        expected = meta["checkpoint_sha256"]
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{js} is not the shipped model's description (no checkpoint_sha256: "
                              f"{type(e).__name__}); {restore}") from None
    actual = sha256_of(pt)
    if actual != expected:
        raise CheckpointError(f"{pt} has SHA-256 {actual[:12]}…, but {js.name} says {str(expected)[:12]}…: "
                              f"the file is not the shipped model (changed, truncated or a Git LFS pointer?); {restore}")
    model, _ = load_checkpoint(pt, device)
    return model, meta
