"""The CAMLoss experiment: one configuration chosen by device, and the seed study (docs/design.md, sections 1 and 4).

The same code runs everywhere; only the configuration changes:

* **CPU** (this course's machines, a laptop): the synthetic dataset at 64 px,
  2,000 training images, the camloss default's epochs, one seed (seed 0) trained
  live; seeds 0-4 of the same configuration are recorded in the search's results
  file (``utils.camloss_search.recorded_rows``), which notebook 05 reads.
* **CUDA** (Colab with a GPU): the synthetic set at 192 px (the original
  experiment's input), more images and epochs, 5 seeds trained live, a larger
  batch, bfloat16 mixed precision where the GPU has it in hardware.
* **The real photos** (:func:`photos_config`; a GPU and the Caltech-256 orcas and
  leopards on disk, ``python -m utils.caltech download``): default and camloss on
  them, notebook 05's last section. No masks and no class-independent
  backgrounds there, so no oracle and no share on the animal.

Every strategy trains on the camloss default's architecture (and, unless the
configuration sets them, its epochs), so only the loss and the training
backgrounds differ between default, camloss and oracle.

Usage (what notebook 05 does)::

    cfg = choose_config()          # printed at the start of the notebook
    rows, models = seed_study(cfg, {"default": ("default", {}), "camloss": ("camloss", {})})
    summary = summarise(rows, cfg.splits)
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import caltech
from .models import OrcaLeopardNet, load_shipped
from .progress import Status
from .train import DATASETS, DEFAULT_MODELS_DIR, TrainConfig, load_or_train, pick_device

__all__ = ["ExperimentConfig", "choose_config", "has_fast_bfloat16", "CPU_CONFIG", "CUDA_CONFIG", "CUDA_CALTECH_CONFIG",
           "ORIGINAL_DEFAULT_TEST", "photos_config", "photos_missing", "photos_table", "seed_study", "summarise",
           "mean_std", "gap_closed", "constant_predictions"]


@dataclass(frozen=True)
class ExperimentConfig:
    """How big the CAMLoss experiment is on this machine (fields as in :class:`~utils.train.TrainConfig`)."""
    device: str
    dataset: str
    image_size: int
    epochs: int | None  #: ``None``: the camloss default's (every strategy trains as long)
    batch_size: int
    n_train: int
    n_eval: int
    seeds: tuple[int, ...]
    amp: bool

    @property
    def arch(self) -> str:
        """The architecture every strategy trains on: the camloss default's."""
        return TrainConfig(strategy="camloss").arch

    @property
    def n_epochs(self) -> int:
        """``epochs``, or the camloss default's when it is ``None``."""
        return self.epochs if self.epochs is not None else TrainConfig(strategy="camloss").epochs

    @property
    def splits(self) -> tuple[str, ...]:
        return DATASETS[self.dataset]

    def train_config(self, strategy: str, seed: int, arch: str | None = None, epochs: int | None = None,
                     **extra: Any) -> TrainConfig:
        """The :class:`TrainConfig` of one run of this experiment (``extra``: the strategy's options; ``arch`` and
        ``epochs``: another architecture or length than the study's, for a run that compares with them)."""
        return TrainConfig(strategy=strategy, seed=seed, epochs=epochs or self.n_epochs, image_size=self.image_size,
                           batch_size=self.batch_size, n_train=self.n_train, n_eval=self.n_eval,
                           device=self.device, dataset=self.dataset, amp=self.amp, extra=extra, arch=arch or self.arch)

    @property
    def tag(self) -> str:
        """A short stable name for this configuration's models folder (device aside: CPU and GPU runs differ anyway)."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k != "seeds"}
        fields.update(epochs=self.n_epochs, arch=self.arch)
        digest = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.dataset}-{self.image_size}px-{digest}"

    def describe(self) -> str:
        data = (f"Caltech-256 orcas/leopards ({caltech.DEFAULT_ROOT})" if self.dataset == "caltech256"
                else f"synthetic, {self.n_train} training images")
        return (f"device {self.device} | data: {data} | {self.image_size} px | {self.arch} architecture | "
                f"{self.n_epochs} epochs | batch {self.batch_size} | seeds {list(self.seeds)} | "
                f"mixed precision {'on (bfloat16)' if self.amp else 'off'}")


#: The small configuration: the command line's (``python -m utils.train``, ``utils.camloss_search``), seed 0
#: trained live (about 25 s per model on 2 cores); seeds 0-4 are in the search's results file.
CPU_CONFIG = ExperimentConfig(device="cpu", dataset="synthetic", image_size=64, epochs=None, batch_size=64,
                              n_train=2000, n_eval=400, seeds=(0,), amp=False)
#: The large configuration for a GPU (Colab): the original's 192 px, more data and epochs, 5 seeds trained live.
CUDA_CONFIG = ExperimentConfig(device="cuda", dataset="synthetic", image_size=192, epochs=12, batch_size=128,
                               n_train=4000, n_eval=400, seeds=tuple(range(5)), amp=True)
#: The GPU configuration on the real Caltech-256 photos (fewer images than the synthetic set: more epochs).
CUDA_CALTECH_CONFIG = dataclasses.replace(CUDA_CONFIG, dataset="caltech256", epochs=30, batch_size=64)


def choose_config(device: str = "auto") -> ExperimentConfig:
    """The CPU or the CUDA configuration for ``device`` (``"auto"``: CUDA when present).

    Both are the synthetic scenario, which has the masks and the oracle every
    section of notebook 05 needs; the real photos are :func:`photos_config`'s,
    for the notebook's own section on them. Mixed precision
    (bfloat16) is on only where the GPU computes bfloat16 in hardware (compute
    capability 8.0 and newer: A100, L4, H100); a T4 or a V100, Colab's usual GPUs,
    only emulates it, slower than float32, so there it trains in float32.
    """
    if pick_device(device).type != "cuda":
        return CPU_CONFIG
    return _with_this_gpus_precision(CUDA_CONFIG)


#: The original project's default model on its Caltech-256 photos (TF/Keras, its own split): test accuracy.
ORIGINAL_DEFAULT_TEST = 0.5938


def photos_config(device: str = "auto") -> ExperimentConfig | None:
    """The configuration of notebook 05's section on the real photos: ``CUDA_CALTECH_CONFIG`` on a GPU with the
    Caltech-256 photos on disk, else ``None`` (:func:`photos_missing` says what is missing). Not on a CPU: 192-px
    photos for 30 epochs and five seeds is GPU work."""
    if pick_device(device).type != "cuda" or not caltech.is_available():
        return None
    return _with_this_gpus_precision(CUDA_CALTECH_CONFIG)


def photos_missing(device: str = "auto") -> str:
    """Why :func:`photos_config` gives ``None`` here, and what to do: one sentence per missing piece."""
    missing = []
    if pick_device(device).type != "cuda":
        missing.append("no GPU here (on Colab: Runtime → Change runtime type → GPU)")
    if not caltech.is_available():
        missing.append("the Caltech-256 photos are not on disk (`python -m utils.caltech download` puts them, 1.2 GB, "
                       "where `utils.caltech.DEFAULT_ROOT` says: data/caltech256)")
    return ("the real-photo section needs a GPU and the photos; here: " + "; ".join(missing) + ". Nothing trained."
            if missing else "the GPU and the photos are here")


def photos_table(rows: list[dict[str, Any]], splits: tuple[str, ...] = caltech.SPLITS) -> str:
    """Notebook 05's real-photo table: accuracy per split, mean ± std over the seeds, beside the original project's
    default, and the numbers that need what the photos lack, marked as such (never 0 or NaN)."""
    summary = summarise(rows, splits)
    seeds = sorted({r["seed"] for r in rows})
    lines = [f"accuracy on the Caltech-256 photos, mean ± std over seeds {seeds} (test_swapped misleads: 0.5 = chance)",
             f"{'':<10}" + "".join(f"{s:>18}" for s in splits)]
    for run, per_split in summary.items():
        lines.append(f"{run:<10}" + "".join(f"{f'{m:.3f} ± {sd:.3f}':>18}" for m, sd in per_split.values()))
    lines += [f"{'oracle':<10}not available (no class-independent backgrounds: a photo keeps its own)",
              f"{'':<10}the evidence on the animal: not available (no masks)",
              f"original project, its default on its test split: {ORIGINAL_DEFAULT_TEST} (TF/Keras; not computed here)"]
    return "\n".join(lines)


def _with_this_gpus_precision(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` with mixed precision off where this GPU only emulates bfloat16 (:func:`has_fast_bfloat16`)."""
    return cfg if has_fast_bfloat16() else dataclasses.replace(cfg, amp=False)


def has_fast_bfloat16() -> bool:
    """Whether the current CUDA device computes bfloat16 in hardware. ``torch.cuda.is_bf16_supported()`` alone also
    says yes where bfloat16 is only emulated (a T4, compute capability 7.5), hence ``including_emulation=False``."""
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def _slug(label: str) -> str:
    """A folder name for a run label: ``"camloss λ=1"`` → ``"camloss_lam_1"``."""
    label = label.replace("λ", "lam").replace("σ", "sigma")
    return re.sub(r"[^A-Za-z0-9.-]+", "_", label).strip("_") or "run"


def seed_study(cfg: ExperimentConfig, runs: dict[str, tuple[str, dict[str, Any]]],
               seeds: tuple[int, ...] | None = None, models_dir: str | os.PathLike | None = None,
               progress: bool = True, shipped: dict[str, str] | None = None,
               ) -> tuple[list[dict[str, Any]], dict[tuple[str, int], OrcaLeopardNet]]:
    """Train (or load, when already trained with the same config) every run × seed: ``(rows, models)``.

    ``runs`` maps a label to ``(strategy, options)``, e.g. ``{"camloss λ=1": ("camloss", {"lam": 1.0})}``; options
    ``arch`` and ``epochs`` set those fields of the run (see :meth:`ExperimentConfig.train_config`).
    Models are kept in ``models_dir/<cfg.tag>/<label>/`` (default under ``data/models/study/``),
    so running the study again only reads them. Each row holds the label, seed, accuracy per split, the
    per-epoch ``history`` and ``source`` (``"trained"``, or the shipped model's file); ``models[(label, seed)]``
    is the model (eval mode, on ``cfg.device``).

    ``shipped`` maps a label to a model under ``models/`` (:data:`utils.models.SHIPPED_MODELS`, SHA-256 checked):
    a run × seed whose training config is that model's is read from there instead of trained, so its lesson does not
    depend on this CPU's arithmetic; any other configuration (a GPU's, another seed) trains as usual.
    """
    seeds = cfg.seeds if seeds is None else tuple(seeds)
    if not runs:
        raise ValueError("runs is empty: give at least one label -> (strategy, options)")
    shipped = shipped or {}
    unknown = sorted(set(shipped) - set(runs))
    if unknown:
        raise ValueError(f"shipped names label(s) {', '.join(map(repr, unknown))} that runs does not have "
                         f"(runs: {', '.join(map(repr, runs))})")
    base = Path(models_dir or DEFAULT_MODELS_DIR / "study") / cfg.tag
    rows, models = [], {}
    total = len(runs) * len(seeds)
    status = Status(progress)  # a line per model; in a notebook one line updated in place, not a bar
    started = time.perf_counter()
    for label, (strategy, options) in runs.items():
        folder = base / _slug(label)
        ready = load_shipped(shipped[label]) if label in shipped else None
        for seed in seeds:
            tc = cfg.train_config(strategy, seed, **options)
            if ready is not None and tc.same_model_as(ready[1].get("config", {})):
                model, meta = ready[0].to(pick_device(tc.device)), ready[1]
                source = f"models/{shipped[label]}.pt"
            else:
                status(f"models: {len(rows)}/{total}; now {label}, seed {seed} (trained the first time, then read)",
                       final=False)
                model, meta = load_or_train(strategy, seed, folder, progress=False, **{
                    k: v for k, v in tc.to_dict().items() if k not in ("strategy", "seed")})
                source = "trained"
            rows.append({"run": label, "seed": seed, **meta["accuracy"], "history": meta.get("history", []),
                         "source": source})
            models[(label, seed)] = model
            status(f"models: {len(rows)}/{total} ({label}, seed {seed}: {source})")
    sources = [r["source"] for r in rows]
    status(f"models: {total}/{total} ready in {time.perf_counter() - started:.0f} s ({sources.count('trained')} trained "
           f"here or read back from an earlier run, {total - sources.count('trained')} shipped in models/)", final=False)
    return rows, models


def summarise(rows: list[dict[str, Any]], splits: tuple[str, ...]) -> dict[str, dict[str, tuple[float, float]]]:
    """``{run: {split: (mean, std)}}`` over seeds (sample std, ``ddof=1``; 0 for a single seed)."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for label in dict.fromkeys(r["run"] for r in rows):
        mine = [r for r in rows if r["run"] == label]
        out[label] = {}
        for s in splits:
            out[label][s] = mean_std([r[s] for r in mine])
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; 0 for a single value)."""
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, math.sqrt(var)


def gap_closed(summary: dict[str, dict[str, tuple[float, float]]], run: str = "camloss", split: str = "test_swapped",
               low: str = "default", high: str = "oracle") -> float:
    """The share of the ``low`` → ``high`` gap on ``split`` that ``run`` closes (mean accuracies): 0 = none, 1 = all."""
    a, b, c = summary[low][split][0], summary[high][split][0], summary[run][split][0]
    if b == a:
        raise ValueError(f"{high!r} and {low!r} have the same mean accuracy on {split}: there is no gap to close")
    return (c - a) / (b - a)


def constant_predictions(preds: dict[str, "torch.Tensor"]) -> list[str]:
    """The labels whose predictions (class indices over a whole split) are all one class: a constant classifier,
    which scores exactly the class share (0.5 on a balanced split) whatever it has learned."""
    return [label for label, p in preds.items() if p.numel() and bool((p == p.flatten()[0]).all())]
