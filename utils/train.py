"""One training loop, several strategies (docs/design.md, sections 2 and 4).

Strategies differ only in their loss and in the training data's background rule:

* ``default`` — cross-entropy on ``train`` (leopards on land, orcas on sea):
  the background predicts the class, and the model is free to use it.
* ``oracle`` — the same loss on the same animals, but on backgrounds drawn
  independently of the class: the control that shows the object is learnable.
* ``camloss`` — cross-entropy plus λ times a penalty on the CAM's mass away from
  the image centre (``utils.camloss``), from the same forward pass as the logits.
  Options (``TrainConfig.extra`` / CLI): ``lam`` (λ, default 10), ``sigma`` (σ of
  the kernel as a fraction of the side, default 0.3), ``map`` (``"decision"``, default,
  or ``"positive_cam"``), ``schedule`` (``"alternate"``, default: cross-entropy-only and
  penalty-only epochs, or ``"joint"``), ``mass`` (``"abs"``, default, or ``"squared"``).
  By default it trains the receptive-field-limited architecture (``arch="local"``)
  for 10 epochs. ``python -m utils.camloss_search`` chose these defaults on sweep
  seeds 100-109 (``results/camloss_search.jsonl``; a test checks they are its pick).
  Compare it with ``default`` and ``oracle`` on the same architecture and epochs
  (``--arch local --epochs 10``, or ``python -m utils.headline``, which does so).
* ``rrr`` — Right for the Right Reasons (Ross et al. 2017, ``utils.rrr``): cross-entropy
  plus λ times the squared input gradient of the summed log-probabilities on the
  background (``1 − mask``: it needs the masks, so synthetic data only). Option ``lam``.
  Same architecture and length as camloss; λ screened by ``python -m utils.camloss_search``
  (``results/rrr.jsonl``).

Datasets (``TrainConfig.dataset``, ``--dataset``): ``synthetic`` (the default), ``caltech256`` (the original
project's photos; no masks, so neither oracle nor rrr), and ``decoy_digits`` / ``decoy_mnist``: Right for the Right
Reasons' decoy protocol (``utils.decoy_digits``; ten classes, 32 px), where the oracle trains on decoys of random
labels, rrr's annotation is the decoy, and ``--arch mlp`` is the paper's MLP (no CAM, so not camloss).

Command line (writes ``<name>.pt`` and ``<name>.json`` and prints a table)::

    python -m utils.train default --seed 0
    python -m utils.train oracle --seed 1 --epochs 8 --out /tmp/models
    python -m utils.train camloss --seed 0              # the search's formulation (local, |d|, alternate, 10 epochs)
    python -m utils.train default --seed 0 --arch local --epochs 10   # its comparison: the same network, no penalty
    python -m utils.train rrr --seed 0                                # its published peer, with the masks (λ 100)
    python -m utils.train default --dataset decoy_digits --arch mlp --epochs 30   # the paper's DecoyMNIST MLP
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import caltech
from . import camloss as cl
from . import decoy_digits as dd
from . import rrr
from .data import DEFAULT_IMAGE_SIZE, OFF_CENTRE_VIEWS, SPLITS, SplitData, _check_image_size, load_split
from .progress import bar as progress_bar, report
from .models import (DigitMLP, OrcaLeopardNet, atomic_write, build_model, evaluating, load_checkpoint, local_kernels,
                     save_checkpoint, sha256_of)

__all__ = ["Strategy", "STRATEGIES", "ARCHS", "TrainConfig", "TrainResult", "train", "evaluate", "evaluate_splits",
           "evaluate_views", "view_data",
           "pick_device", "seed_everything", "load_or_train", "save_result", "DEFAULT_MODELS_DIR"]

#: The image size ``python -m utils.train --dataset caltech256`` trains at: the original project's 192 px.
CALTECH_IMAGE_SIZE = 192
#: RRR's default λ (``python -m utils.train rrr --lam``; ``utils.rrr``), chosen on seeds 100-102 by
#: ``utils.camloss_search.choose_rrr`` (``results/rrr.jsonl``; a test keeps them equal): no λ of 1, 10, 100, 1000
#: holds the search's bars, so the pick is the strongest penalty that still learns the task (val ≥ 0.97).
RRR_LAM = 100.0
#: Where trained models live (git-ignored): ``data/models/<name>.pt`` and ``.json``.
DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "data" / "models"
#: ``synthetic``: the embedded dataset (``utils.data``); ``caltech256``: the real photos (``utils.caltech``);
#: ``decoy_digits`` / ``decoy_mnist``: Right for the Right Reasons' decoy protocol on scikit-learn's bundled digits
#: (offline) or on MNIST (after ``python -m utils.decoy_digits download``) (``utils.decoy_digits``).
DATASETS: dict[str, tuple[str, ...]] = {"synthetic": SPLITS, "caltech256": caltech.SPLITS,
                                        "decoy_digits": dd.SPLITS, "decoy_mnist": dd.SPLITS}
#: decoy dataset → its source of digits (``utils.decoy_digits.SOURCES``)
DECOY_DATASETS = {"decoy_digits": "digits", "decoy_mnist": "mnist"}

#: ``(model, images, labels, options, annotation) -> (loss, logits, parts)``; ``options`` are the strategy's plus
#: ``epoch`` (from 0); ``annotation`` is the batch's ``[N, H, W]`` region that must not matter where the strategy asks
#: for one (``Strategy.annotation``), else ``None``; ``parts`` are detached 0-d tensors for the epoch's record (``ce``
#: and ``penalty``), summed on the device.
LossFn = Callable[[OrcaLeopardNet, torch.Tensor, torch.Tensor, dict[str, Any], "torch.Tensor | None"],
                  tuple[torch.Tensor, torch.Tensor, dict[str, float]]]


def _cross_entropy(model: OrcaLeopardNet, images: torch.Tensor, labels: torch.Tensor, options: dict[str, Any],
                   annotation: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    if not isinstance(model, OrcaLeopardNet):  # decoy digits' MLP: no feature map, no CAM to record
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        return loss, logits, {"ce": loss.detach()}
    logits, features = model.forward_with_features(images)
    loss = F.cross_entropy(logits, labels)
    with torch.no_grad():  # recorded, not trained on: the camloss default's penalty of this model's decision map
        o = STRATEGIES["camloss"].defaults
        pen = cl.batch_penalty(features, model.classifier.weight, labels, sigma=o["sigma"], map=o["map"], mass=o["mass"])
    return loss, logits, {"ce": loss.detach(), "penalty": pen}


def _camloss(model: OrcaLeopardNet, images: torch.Tensor, labels: torch.Tensor, options: dict[str, Any],
             annotation: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    logits, features = model.forward_with_features(images)  # one pass: the CAM comes from the same features
    loss, parts = cl.camloss(logits, features, labels, model.classifier.weight, **options)
    return loss, logits, parts


def _rrr(model: OrcaLeopardNet, images: torch.Tensor, labels: torch.Tensor, options: dict[str, Any],
         annotation: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    # the input gradient with its graph (double backpropagation): the penalty's gradient reaches the weights
    logits, grad = rrr.input_gradients(model, images, create_graph=True)
    a = rrr.check_annotation(images, annotation)
    loss, parts = rrr.rrr_loss(logits, grad, labels, a, lam=options["lam"])
    return loss, logits, parts


#: The architectures training can build: the course model (3×3 convolutions in every block, what notebooks
#: 01-04 explain), its receptive-field-limited variant (1×1 after the first block: a last-layer cell sees
#: a 10-pixel patch at 64 px, so the centre prior of CAMLoss speaks about the centre of the *image*), and, for decoy
#: digits only, the MLP of Ross et al.'s DecoyMNIST experiment (``utils.models.DigitMLP``: no CAM, so not camloss).
ARCHS = ("course", "local", "mlp")
#: Keys a saved config may lack because they were added later, with the value every such training used.
LEGACY_CONFIG: dict[str, Any] = {"arch": "course", "decoy": {}}
LEGACY_OPTIONS = {"schedule": "joint", "mass": "squared"}
#: Epochs when neither the strategy nor the caller sets them.
DEFAULT_EPOCHS = 6


@dataclass(frozen=True)
class Strategy:
    """How to train: the loss ``(model, images, labels, options) -> (loss, logits)`` and the training backgrounds."""
    name: str
    description: str
    loss: LossFn = _cross_entropy
    #: ``None``: the ``train`` split as it is; ``"random"``: backgrounds independent of the class.
    train_backgrounds: str | None = None
    #: the options ``TrainConfig.extra`` may set for this strategy, with their defaults
    defaults: dict[str, Any] = field(default_factory=dict)
    #: the strategy's own defaults for ``TrainConfig`` fields left at ``None`` (``arch``, ``epochs``)
    config_defaults: dict[str, Any] = field(default_factory=dict)
    #: ``"background"``: the loss gets each batch's region that must not matter: ``1 − object mask`` where masks
    #: exist (synthetic), the decoy patch on decoy digits (``SplitData.annotation``); Caltech-256 has neither
    annotation: str | None = None
    #: train in channels-last memory (faster convolutions); off where it is slower, e.g. the double backward of
    #: rrr (measured on 2 cores, 64 images at 64 px: 0.74 s a step channels-last, 0.24 s contiguous)
    channels_last: bool = True


STRATEGIES: dict[str, Strategy] = {
    "default": Strategy("default", "cross-entropy; the background predicts the class"),
    "oracle": Strategy("oracle", "cross-entropy on class-independent backgrounds (control)",
                       train_backgrounds="random"),
    "camloss": Strategy("camloss", "cross-entropy + λ · CAM mass away from the centre", loss=_camloss,
                        # chosen by `python -m utils.camloss_search` on sweep seeds 100-109 (docs/design.md §4)
                        defaults={"lam": 10.0, "sigma": 0.3, "map": "decision", "schedule": "alternate", "mass": "abs"},
                        config_defaults={"arch": "local", "epochs": 10}),
    "rrr": Strategy("rrr", "cross-entropy + λ · squared input gradient on the background (Ross et al. 2017)",
                    loss=_rrr, defaults={"lam": RRR_LAM}, annotation="background", channels_last=False,
                    config_defaults={"arch": "local", "epochs": 10}),
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model (same config + same seed → same weights on CPU)."""
    strategy: str = "default"
    seed: int = 0
    epochs: int | None = None   #: ``None``: the strategy's (``Strategy.config_defaults``), else 6
    image_size: int = DEFAULT_IMAGE_SIZE
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    n_train: int = 2000
    n_eval: int = 400
    data_seed: int = 0
    widths: tuple[int, ...] = (16, 32, 64, 128)
    device: str = "auto"
    dataset: str = "synthetic"  #: one of ``DATASETS``; ``caltech256``: all its images (``n_train``/``n_eval`` do not
    #: apply); decoy digits: at most ``n_train`` training digits, every digit of ``val`` and ``test``, 32 px
    amp: bool = False           #: mixed precision (bfloat16 autocast) for the forward pass
    extra: dict[str, Any] = field(default_factory=dict)  # strategy options (camloss: lam, sigma, map, schedule, mass)
    arch: str | None = None     #: one of ``ARCHS``; ``None``: the strategy's, else ``"course"``
    #: decoy digits' protocol (``utils.decoy_digits.DecoyProtocol`` fields ``patch``, ``step``, ``placement``);
    #: ``{}``: the authors' (a 4×4 patch in a random corner, grey step 25)
    decoy: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        defaults = STRATEGIES[self.strategy].defaults
        unknown = set(self.extra) - set(defaults)
        if unknown:
            raise ValueError(f"option(s) {', '.join(sorted(unknown))} do not apply to strategy {self.strategy!r}"
                             + (f" (it takes {', '.join(defaults)})" if defaults else " (it takes none)"))
        extra = {**defaults, **self.extra}
        own = STRATEGIES[self.strategy].config_defaults
        if self.epochs is None:
            object.__setattr__(self, "epochs", own.get("epochs", DEFAULT_EPOCHS))
        if self.arch is None:
            object.__setattr__(self, "arch", own.get("arch", "course"))
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}; got {self.arch!r}")
        if self.strategy == "camloss":
            cl.check_options(extra["lam"], extra["sigma"], extra["map"], extra["schedule"], extra["mass"])
            extra["lam"], extra["sigma"] = float(extra["lam"]), float(extra["sigma"])
        if self.strategy == "rrr":
            extra["lam"] = rrr.check_lam(extra["lam"])
        object.__setattr__(self, "extra", extra)
        for name in ("seed", "epochs", "batch_size", "n_train", "n_eval", "data_seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name} must be an int; got {type(v).__name__}")
            if v < (0 if name in ("seed", "data_seed") else 1):
                raise ValueError(f"{name} must be {'>= 0' if 'seed' in name else '>= 1'}; got {v}")
        _check_image_size(self.image_size)
        if not (self.lr > 0):
            raise ValueError(f"lr must be > 0; got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0; got {self.weight_decay}")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:i]'; got {self.device!r}")
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        if self.dataset == "caltech256" and STRATEGIES[self.strategy].train_backgrounds is not None:
            raise ValueError(f"strategy {self.strategy!r} redraws the training backgrounds independently of the "
                             f"class, which only the synthetic dataset can do (a photo keeps the background it was "
                             f"taken with); use dataset='synthetic'")
        if self.dataset == "caltech256" and STRATEGIES[self.strategy].annotation is not None:
            raise ValueError(f"strategy {self.strategy!r} needs object masks for its annotation (the background "
                             f"must not matter), and Caltech-256 has none; use dataset='synthetic'")
        decoy = self.dataset in DECOY_DATASETS
        if not isinstance(self.decoy, dict):
            raise TypeError(f"decoy must be a dict of DecoyProtocol fields; got {type(self.decoy).__name__}")
        if self.decoy and not decoy:
            raise ValueError(f"decoy options apply to the decoy-digit datasets only ({', '.join(DECOY_DATASETS)}); "
                             f"dataset {self.dataset!r} takes none")
        if decoy:
            try:
                dd.DecoyProtocol(**self.decoy)
            except TypeError as e:
                raise ValueError(f"bad decoy option ({e}); the protocol takes patch, step and placement") from None
            if self.image_size != dd.CANVAS:
                raise ValueError(f"decoy digits are {dd.CANVAS} px; use image_size={dd.CANVAS} (got "
                                 f"{self.image_size})")
        if self.arch == "mlp" and not decoy:
            raise ValueError(f"arch 'mlp' is decoy digits' reproduction model (Ross et al.'s MLP); use it with "
                             f"dataset {' or '.join(repr(d) for d in DECOY_DATASETS)}")
        if self.arch == "mlp" and self.strategy == "camloss":
            raise ValueError("camloss penalises a class activation map, and the MLP (arch 'mlp') has none; use "
                             "arch 'course' or 'local'")
        if not isinstance(self.amp, bool):
            raise TypeError(f"amp must be True or False; got {type(self.amp).__name__}")
        object.__setattr__(self, "widths", tuple(self.widths))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["widths"] = list(self.widths)
        if not d["decoy"]:  # only decoy digits have a protocol: every other record keeps the form it had before
            del d["decoy"]
        return d

    @property
    def decoy_protocol(self) -> "dd.DecoyProtocol | None":
        """The decoy protocol of a decoy-digit dataset, else ``None``."""
        return dd.DecoyProtocol(**self.decoy) if self.dataset in DECOY_DATASETS else None

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names of this config's dataset, in label order."""
        return dd.CLASSES if self.dataset in DECOY_DATASETS else ("leopard", "orca")

    def same_model_as(self, other: dict[str, Any]) -> bool:
        """Whether a saved config (``to_dict`` form) describes the same training, device aside.

        Fields added after a checkpoint was written count as their defaults (what that training used).
        """
        known = {f.name: f.default for f in dataclasses.fields(self) if f.default is not dataclasses.MISSING}
        known.update(LEGACY_CONFIG)
        mine = {k: v for k, v in self.to_dict().items() if k != "device"}
        theirs = {k: other.get(k, known.get(k)) for k in mine}
        if isinstance(theirs.get("extra"), dict) and theirs.get("strategy") == self.strategy:
            # options added later, too: as that training ran them
            legacy = {k: v for k, v in LEGACY_OPTIONS.items() if k in STRATEGIES[self.strategy].defaults}
            theirs["extra"] = {**STRATEGIES[self.strategy].defaults, **legacy, **theirs["extra"]}
        return mine == theirs

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits this config's dataset has (``train`` first)."""
        return DATASETS[self.dataset]

    @property
    def model_config(self) -> dict[str, Any]:
        """What :func:`~utils.models.build_model` builds for this training."""
        if self.arch == "mlp":
            return {"arch": DigitMLP.arch, "pixels": self.image_size ** 2, "hidden": (50, 30),
                    "num_classes": len(self.classes)}
        config: dict[str, Any] = {"arch": OrcaLeopardNet.arch, "widths": self.widths}
        if len(self.classes) != 2:
            config["num_classes"] = len(self.classes)
        if self.arch == "local":
            config["kernel_sizes"] = local_kernels(len(self.widths))
        return config

    @property
    def history_splits(self) -> tuple[str, ...]:
        """The splits evaluated after every epoch: validation and the misleading test (Caltech: val and test)."""
        return tuple(s for s in ("val", "test_swapped", "test") if s in self.splits)[:2]


@dataclass
class TrainResult:
    model: OrcaLeopardNet
    config: TrainConfig
    accuracy: dict[str, float]           #: per split, ``train`` included
    #: per epoch: mean loss, cross-entropy and penalty over the epoch's steps, train accuracy, accuracy on
    #: ``config.history_splits`` after the epoch, seconds (training steps only)
    history: list[dict[str, float]]
    device: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"strategy": self.config.strategy, "config": self.config.to_dict(), "accuracy": self.accuracy,
                "history": self.history, "device": self.device, "train_seconds": round(self.seconds, 1)}


# --------------------------------------------------------------------------- helpers
def pick_device(preference: str = "auto") -> torch.device:
    """CUDA when present (Colab), else CPU; ``"cuda"`` without a GPU is an error, not a silent fallback."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(preference).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device(preference)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) and make cuDNN deterministic."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


@functools.lru_cache(maxsize=16)
def _split(split: str, n: int, image_size: int, data_seed: int, backgrounds: str | None,
           dataset: str = "synthetic", root: str | None = None, decoy: "dd.DecoyProtocol | None" = None
           ) -> SplitData:
    # Cached per process: several trainings in one notebook or script share the drawn images.
    # The tensors are shared, so treat them as read-only. ``root``: where the photos were read (part of the key).
    if dataset in DECOY_DATASETS:  # the training split capped at n; "random" backgrounds: decoys of random labels
        return dd.load_decoy_split(split, DECOY_DATASETS[dataset], decoy or dd.DecoyProtocol(), data_seed,
                                   decoys=backgrounds,
                                   n=n if split == "train" else None, root=root)
    if dataset == "caltech256":
        return caltech.load_caltech_split(split, image_size, root, seed=data_seed)
    return load_split(split, n, image_size, data_seed, backgrounds)


def _photos_root(dataset: str) -> str | None:
    """The folder the photos of ``dataset`` are read from now (``utils.caltech.DEFAULT_ROOT``,
    ``utils.decoy_digits.MNIST_ROOT``), for the cache key."""
    return {"caltech256": str(caltech.DEFAULT_ROOT), "decoy_mnist": str(dd.MNIST_ROOT)}.get(dataset)


def split_data(config: TrainConfig, split: str) -> SplitData:
    """The images of ``split`` as ``config`` sees them (``train``: the strategy's training set)."""
    if split not in config.splits:
        raise ValueError(f"dataset {config.dataset!r} has no split {split!r}; it has {', '.join(config.splits)}")
    if split == "train":
        return _split("train", config.n_train, config.image_size, config.data_seed,
                      STRATEGIES[config.strategy].train_backgrounds, config.dataset, _photos_root(config.dataset),
                      config.decoy_protocol)
    return _split(split, config.n_eval, config.image_size, config.data_seed, None, config.dataset,
                  _photos_root(config.dataset), config.decoy_protocol)


@torch.no_grad()
def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    """Accuracy of ``model`` (put in eval mode, restored afterwards) on ``images``/``labels``."""
    device = next(model.parameters()).device
    correct = 0
    with evaluating(model):
        for i in range(0, len(labels), batch_size):
            pred = model(images[i:i + batch_size].to(device)).argmax(1)
            correct += int((pred.cpu() == labels[i:i + batch_size]).sum())
    return correct / max(len(labels), 1)


def evaluate_splits(model: torch.nn.Module, config: TrainConfig, splits: tuple[str, ...] | None = None
                    ) -> dict[str, float]:
    """Accuracy on each split (default: all of the dataset's; ``train``: the training set the strategy used)."""
    out = {}
    for s in config.splits if splits is None else splits:
        d = split_data(config, s)
        out[s] = round(evaluate(model, d.images, d.labels), 4)
    return out


def view_data(config: TrainConfig, view: str) -> SplitData:
    """The images of an off-centre view (:data:`utils.data.OFF_CENTRE_VIEWS`) as ``config`` evaluates them."""
    if config.dataset != "synthetic":
        raise ValueError(f"the off-centre views exist for the synthetic data only; dataset {config.dataset!r} has "
                         f"none (use its splits: {', '.join(config.splits)})")
    if view not in OFF_CENTRE_VIEWS:
        raise ValueError(f"unknown view {view!r}; choose one of {', '.join(OFF_CENTRE_VIEWS)}")
    split, rule = OFF_CENTRE_VIEWS[view]
    return dataclasses.replace(_split(split, config.n_eval, config.image_size, config.data_seed, rule), split=view)


def evaluate_views(model: torch.nn.Module, config: TrainConfig) -> dict[str, float]:
    """Accuracy on each of :data:`utils.data.OFF_CENTRE_VIEWS` (``n_eval`` images; synthetic data only, else ``{}``)."""
    if config.dataset != "synthetic":
        return {}
    out = {}
    for view in OFF_CENTRE_VIEWS:
        d = view_data(config, view)
        out[view] = round(evaluate(model, d.images, d.labels), 4)
    return out


# --------------------------------------------------------------------------- training
def train(config: TrainConfig | None = None, progress: bool = True, **overrides: Any) -> TrainResult:
    """Train one model: ``train(TrainConfig(strategy="oracle", seed=1))`` or ``train(strategy="oracle")``."""
    config = dataclasses.replace(config or TrainConfig(), **overrides)
    strategy = STRATEGIES[config.strategy]
    device = pick_device(config.device)
    start = time.perf_counter()

    data = split_data(config, "train")
    n_train = len(data)
    seed_everything(config.seed)
    # channels-last (NHWC) memory: the same maths, about a third faster convolutions on CPU (oneDNN)
    # and on GPU tensor cores; the model is handed back in the usual layout.
    model = build_model(config.model_config)
    layout = torch.channels_last if strategy.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=layout)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = -(-n_train // config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.epochs * steps)
    order = torch.Generator().manual_seed(config.seed)
    images, labels = data.images.to(device, memory_format=layout), data.labels.to(device)
    # the region that must not matter, for the strategies that ask for one: the data's own (decoy digits: the
    # patch), else the background, 1 − the object mask
    annotation = None
    if strategy.annotation == "background":
        annotation = (data.annotation if data.annotation is not None else ~data.masks).to(device)

    history: list[dict[str, float]] = []
    name = f"{config.strategy} seed {config.seed}"
    bar = progress_bar(config.epochs * steps, name, "batch", enabled=progress, leave=False)
    model.train()
    try:
        for epoch in range(config.epochs):
            epoch_start = time.perf_counter()
            perm = torch.randperm(n_train, generator=order).to(device)
            options = {**config.extra, "epoch": epoch}
            total, correct = 0.0, 0
            parts_total: dict[str, torch.Tensor] = {}  # on the device: read once per epoch
            for i in range(steps):
                idx = perm[i * config.batch_size:(i + 1) * config.batch_size]
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp):
                    loss, logits, parts = strategy.loss(model, images[idx], labels[idx], options,
                                                        None if annotation is None else annotation[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                value = loss.item()  # one device sync per step
                total += value * len(idx)
                for k, v in parts.items():
                    parts_total[k] = parts_total.get(k, 0) + v.float() * len(idx)
                correct += int((logits.argmax(1) == labels[idx]).sum())
                bar.update()
                bar.set_postfix(epoch=epoch + 1, loss=f"{value:.3f}")
            seconds = time.perf_counter() - epoch_start
            row = {"epoch": epoch + 1, "loss": round(total / n_train, 4),
                   **{k: round(v.item() / n_train, 4) for k, v in parts_total.items()},
                   "train_acc": round(correct / n_train, 4)}
            row.update(evaluate_splits(model, config, config.history_splits))  # eval mode inside, train after
            history.append({**row, "seconds": round(seconds, 3)})
            report(f"{name}: epoch {epoch + 1}/{config.epochs}, loss {row['loss']:.4f}, {seconds:.1f} s", progress)
    finally:
        bar.close()
    model.eval()
    accuracy = evaluate_splits(model, config)
    model = model.to(memory_format=torch.contiguous_format)
    return TrainResult(model, config, accuracy, history, str(device), time.perf_counter() - start)


def arithmetic_record() -> dict[str, Any]:
    """What decides this process's float rounding in training, recorded beside every saved model: PyTorch's CPU kernels
    (``cpu_capability``), the settings that force others, and the threads (a reduction over more threads sums in
    another order). Two CPUs that agree on all of it can still round differently; a checkpoint is the only exact record."""
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "settings": {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS")
                         if os.environ.get(k)}}


def _check_writable(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as e:
        raise ValueError(f"output folder {folder} is not writable ({e.strerror or e}); "
                         f"choose another with --out DIR") from None
    return folder


def default_name(config: TrainConfig) -> str:
    return f"{config.strategy}_seed{config.seed}"


def save_result(result: TrainResult, out_dir: str | os.PathLike = DEFAULT_MODELS_DIR,
                name: str | None = None) -> tuple[Path, Path]:
    """Write ``<name>.pt`` (checkpoint with metadata) and ``<name>.json`` (accuracy per split, config, the .pt's SHA-256)."""
    out_dir = _check_writable(Path(out_dir))
    name = name or default_name(result.config)
    meta = {"image_size": result.config.image_size, "classes": list(result.config.classes), **result.to_json(),
            "arithmetic": arithmetic_record()}
    pt = save_checkpoint(result.model, out_dir / f"{name}.pt", meta)
    meta["checkpoint_sha256"] = sha256_of(pt)  # what `load_shipped` checks: the JSON vouches for the .pt beside it
    js = atomic_write(out_dir / f"{name}.json", lambda f: f.write((json.dumps(meta, indent=2) + "\n").encode()))
    return pt, js


def load_or_train(strategy: str = "default", seed: int = 0, models_dir: str | os.PathLike = DEFAULT_MODELS_DIR,
                  progress: bool = True, **config: Any) -> tuple[OrcaLeopardNet, dict[str, Any]]:
    """The model ``<strategy>_seed<seed>`` from ``models_dir`` if it was trained with this config, else train and save it.

    Either way the weights are the same (training is deterministic on CPU), so a
    notebook's outputs do not depend on which path it took. Returns ``(model, meta)``.
    """
    cfg = TrainConfig(strategy=strategy, seed=seed, **config)
    path = Path(models_dir) / f"{default_name(cfg)}.pt"
    if path.is_file():
        model, meta = load_checkpoint(path, pick_device(cfg.device))
        if cfg.same_model_as(meta.get("config", {})):
            return model, meta
    result = train(cfg, progress=progress)
    save_result(result, models_dir)
    model, meta = load_checkpoint(path, pick_device(cfg.device))
    return model, meta


def format_table(accuracy: dict[str, float]) -> str:
    rows = [f"{'split':<14}{'accuracy':>9}"] + [f"{s:<14}{a:>9.3f}" for s, a in accuracy.items()]
    return "\n".join(rows)


# --------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.train", description="Train the course model.")
    parser.add_argument("strategy", help=f"one of: {', '.join(f'{k} ({v.description})' for k, v in STRATEGIES.items())}")
    d = TrainConfig()
    parser.add_argument("--seed", type=int, default=d.seed, help="training seed (default 0)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="default: the strategy's (" + ", ".join(
                            f"{k} {v.config_defaults.get('epochs', DEFAULT_EPOCHS)}" for k, v in STRATEGIES.items()) + ")")
    parser.add_argument("--arch", choices=ARCHS, default=None,
                        help="course (3x3 convolutions in every block) or local (1x1 after the first); default: "
                             "the strategy's (" + ", ".join(
                            f"{k} {v.config_defaults.get('arch', 'course')}" for k, v in STRATEGIES.items()) + ")")
    parser.add_argument("--dataset", choices=list(DATASETS), default=d.dataset,
                        help="synthetic (drawn here, offline; the default), caltech256 (the real photos of the "
                             "original project, after `python -m utils.caltech download`; not for the oracle), "
                             "decoy_digits (Ross et al.'s decoy protocol on scikit-learn's digits, offline; the "
                             "oracle trains on decoys of random labels, the control) or decoy_mnist (the same on MNIST, after `python -m "
                             "utils.decoy_digits download`)")
    parser.add_argument("--image-size", type=int, default=None,
                        help=f"pixels, 32-224 (default {d.image_size}; caltech256: {CALTECH_IMAGE_SIZE}, the "
                             f"original project's; decoy digits: {dd.CANVAS}, their only size)")
    parser.add_argument("--n-train", type=int, default=None,
                        help=f"training images (default {d.n_train}; decoy digits: at most this many; caltech256 "
                             f"trains on all of its split)")
    parser.add_argument("--decoy-patch", type=int, help="decoy digits: the patch's side in pixels (default 4)")
    parser.add_argument("--decoy-step", type=int, help="decoy digits: the grey step between labels, of 255 "
                                                       "(default 25)")
    parser.add_argument("--decoy-placement", choices=dd.PLACEMENTS,
                        help="decoy digits: corner (the authors', a random corner), fixed (the top left) or frame "
                             "(a frame --decoy-patch pixels wide around the digit) (default corner)")
    parser.add_argument("--widths", type=int, nargs="+", default=None,
                        help=f"channels of the conv blocks, one per block (default {' '.join(map(str, d.widths))}; "
                             f"the decoy study's CNN: 16 32 64)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    o = STRATEGIES["camloss"].defaults
    parser.add_argument("--lam", type=float, help=f"camloss: weight λ of the CAM penalty (default {o['lam']:g}); rrr: "
                                                  f"of the input-gradient penalty (default {RRR_LAM:g})")
    parser.add_argument("--sigma", type=float,
                        help=f"camloss: kernel width σ as a fraction of the side (default {o['sigma']:g})")
    parser.add_argument("--map", choices=cl.MAPS, help=f"camloss: which map is penalised (default {o['map']})")
    parser.add_argument("--schedule", choices=cl.SCHEDULES,
                        help=f"camloss: joint (CE + λP every step), alternate (CE-only / λP-only epochs), hybrid "
                             f"(CE + λP / λP-only epochs) or alternate2 (one CE-only, two λP-only epochs) "
                             f"(default {o['schedule']})")
    parser.add_argument("--mass", choices=cl.MASSES,
                        help=f"camloss: the decision map's mass, |d| (abs) or d² (squared) (default "
                             f"{STRATEGIES['camloss'].defaults['mass']})")
    parser.add_argument("--out", default=str(DEFAULT_MODELS_DIR), help="output folder (default data/models/)")
    parser.add_argument("--name", default=None, help="file name stem (default <strategy>_seed<seed>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        extra = {k: v for k, v in (("lam", args.lam), ("sigma", args.sigma), ("map", args.map),
                                   ("schedule", args.schedule), ("mass", args.mass)) if v is not None}
        if args.dataset == "caltech256" and args.n_train is not None:
            raise ValueError(f"--n-train applies to the synthetic data only; {args.dataset} trains on all of its "
                             f"train split")
        size = args.image_size or {"caltech256": CALTECH_IMAGE_SIZE, "decoy_digits": dd.CANVAS,
                                   "decoy_mnist": dd.CANVAS}.get(args.dataset, d.image_size)
        decoy = {k: v for k, v in (("patch", args.decoy_patch), ("step", args.decoy_step),
                                   ("placement", args.decoy_placement)) if v is not None}
        cfg = TrainConfig(strategy=args.strategy, seed=args.seed, epochs=args.epochs, image_size=size,
                          n_train=args.n_train or d.n_train, batch_size=args.batch_size, lr=args.lr,
                          device=args.device, extra=extra, arch=args.arch, dataset=args.dataset, decoy=decoy,
                          widths=tuple(args.widths) if args.widths else d.widths)
        if cfg.dataset == "caltech256":
            caltech.find_categories()  # offline or not downloaded: the way to get the photos, before any training
        if cfg.dataset == "decoy_mnist":
            dd.load_decoy_split("val", "mnist", n=1)  # likewise for MNIST
        out = _check_writable(Path(args.out))  # fail before training, not after
        device = pick_device(cfg.device)
    except (ValueError, TypeError, caltech.CaltechNotFound, dd.MNISTNotFound) as e:
        parser.error(str(e))
    options = "".join(f", {k}={v}" for k, v in cfg.extra.items())
    data = {"caltech256": "Caltech-256 photos", "decoy_digits": "decoy digits (scikit-learn's)",
            "decoy_mnist": "decoy MNIST"}.get(cfg.dataset, f"{cfg.n_train} synthetic images")
    print(f"training {cfg.strategy!r} (seed {cfg.seed}, {cfg.arch} architecture, {cfg.epochs} epochs, {cfg.image_size} px, "
          f"{data}{options}) on {device}", file=sys.stderr)
    result = train(cfg, progress=not args.quiet)
    pt, js = save_result(result, out, args.name)
    print(format_table(result.accuracy))
    print(f"saved {pt} and {js} ({result.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
