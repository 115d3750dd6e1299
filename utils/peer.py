"""CAMLoss beside its published peer, Right for the Right Reasons, on decoy digits (notebook 05, section 10; issue 36).

The recorded study is in the results files (``utils.camloss_search``: ``rrr_table`` on the orcas, ``decoy_table`` on
decoy digits). This module gives notebook 05 the rest: the live models (the recorded picks on the frame decoy
protocol, seed 0, through the one training loop) and the two maps the two methods speak about:

* the **decision map** ``d = (w_y − mean_{c≠y} w_c) · f`` at the feature grid (``utils.camloss.decision_map``), what
  CAMLoss penalises away from the centre; in logits: ``mean(d) + b_y − mean_{c≠y} b_c = z_y − mean_{c≠y} z_c``;
* the **input gradient** ``∂ Σ_k log p_k / ∂x`` summed over the three (equal) channels (``utils.rrr``), what RRR
  penalises on the decoy; in log-probability per unit of grey.

:func:`share_on` says how much of a map's magnitude lies on the decoy: where the evidence is reported and where the
slope is, the two things the methods constrain.
"""
from __future__ import annotations

import dataclasses
import os
import statistics
from pathlib import Path
from typing import Any

import torch

from . import camloss as cl
from . import rrr
from .camloss_search import DECOY_FILE, STUDY_SEEDS, choose_decoy, read_results, variant_config
from .explain.cam import upsample
from .models import OrcaLeopardNet, load_shipped
from .train import TrainConfig, load_or_train

__all__ = ["PEER_PROTOCOL", "PEER_SUBDIR", "SHIPPED_PEERS", "load_peers", "peer_variants", "peer_config", "train_peers", "decision_maps",
           "gradient_maps", "gradient_penalty", "share_on", "epoch_seconds"]

#: The decoy protocol the section shows: the frame, where the CNN takes the shortcut and the control does not.
PEER_PROTOCOL = "frame"
#: Where the live models are kept (git-ignored), beside notebook 05's study: ``<models>/study/peer/<variant>/``, with
#: ``<models>`` read from ``utils.experiment.DEFAULT_MODELS_DIR`` at call time (where the seed study keeps its own).
PEER_SUBDIR = Path("study") / "peer"


def peer_variants(rows: list[dict[str, Any]] | None = None) -> dict[str, str]:
    """label → recorded variant of the CNN on ``PEER_PROTOCOL``: the default, camloss's and rrr's picks
    (``choose_decoy``, on the screening seeds) and the control. ``rows``: the decoy runs
    (``read_results(DECOY_FILE)``, read here when not given)."""
    rows = read_results(DECOY_FILE) if rows is None else rows
    return {"default": f"decoy-{PEER_PROTOCOL}-cnn-default",
            "camloss": choose_decoy(rows, PEER_PROTOCOL, "cnn", "camloss"),
            "rrr": choose_decoy(rows, PEER_PROTOCOL, "cnn", "rrr"),
            "oracle": f"decoy-{PEER_PROTOCOL}-cnn-oracle"}


#: label → the shipped model (``utils.models.SHIPPED_MODELS``, under ``models/``) of seed 0 of that pick, which notebook 05
#: reads: every learner sees the same weights, and the section trains nothing live. A test keeps each one's config equal
#: to its pick's recorded config.
SHIPPED_PEERS = {"camloss": "decoy_frame_camloss_seed0", "rrr": "decoy_frame_rrr_seed0"}


def load_peers(shipped: dict[str, str] = SHIPPED_PEERS) -> dict[str, tuple[OrcaLeopardNet, dict[str, Any]]]:
    """label → ``(model, meta)`` of each shipped peer (SHA-256 checked by ``utils.models.load_shipped``)."""
    return {label: load_shipped(name) for label, name in shipped.items()}


def peer_config(variant: str, seed: int = 0, device: str = "cpu") -> TrainConfig:
    """The :class:`TrainConfig` of a recorded decoy variant (what the results file ran), on ``device``."""
    return dataclasses.replace(variant_config(variant, seed), device=device)


def train_peers(variants: dict[str, str], seed: int = 0, models_dir: str | os.PathLike | None = None,
                device: str = "cpu", progress: bool = True) -> dict[str, tuple[OrcaLeopardNet, dict[str, Any]]]:
    """label → ``(model, meta)`` of each variant at ``seed``, trained the first time and read from ``models_dir`` after
    (``utils.train.load_or_train``: the same weights either way on one CPU). Each variant gets its own folder.
    ``device`` is the CPU by default, on a GPU machine too: the recorded runs are CPU runs, and these models train in
    about a minute there."""
    if models_dir is None:
        from . import experiment
        models_dir = Path(experiment.DEFAULT_MODELS_DIR) / PEER_SUBDIR
    out = {}
    for label, variant in variants.items():
        cfg = peer_config(variant, seed, device)
        fields = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__ if k not in ("strategy", "seed")}
        out[label] = load_or_train(cfg.strategy, seed, Path(models_dir) / variant, progress=progress, **fields)
    return out


def decision_maps(model: OrcaLeopardNet, images: torch.Tensor, labels: torch.Tensor,
                  size: tuple[int, int] | None = None) -> torch.Tensor:
    """``d = (w_y − mean_{c≠y} w_c) · f`` per image ``[N, h, w]`` in logits (``size``: upsampled bilinearly)."""
    with torch.no_grad():
        features = model.eval().forward_features(images)
        d = cl.decision_map(features, model.classifier.weight, labels)
    return d if size is None else upsample(d, size)


def gradient_maps(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``∂ Σ_k log p_k / ∂x`` summed over channels, ``[N, H, W]`` (what RRR penalises; eval mode)."""
    model.eval()
    _, grad = rrr.input_gradients(model, images)
    return grad.sum(1)


def gradient_penalty(model: torch.nn.Module, images: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """RRR's penalty of each image on ``region`` (bool ``[N, H, W]``): ``Σ (region ⊙ ∂ Σ_k log p_k / ∂x)²`` over
    channels and pixels → ``[N]`` (eval mode; ``utils.rrr.rrr_penalty``)."""
    model.eval()
    _, grad = rrr.input_gradients(model, images)
    return rrr.rrr_penalty(grad, region.unsqueeze(1).to(grad.dtype)).detach()


def share_on(maps: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Per image, the share of ``|map|`` that lies inside ``region`` (bool ``[N, H, W]``): ``Σ_region |m| / Σ |m|``."""
    if maps.shape != region.shape:
        raise ValueError(f"maps {list(maps.shape)} and region {list(region.shape)} must have the same shape "
                         f"(upsample a feature-grid map to the image first)")
    m = maps.abs()
    return (m * region).sum((1, 2)) / m.sum((1, 2)).clamp(min=1e-12)


def epoch_seconds(variant: str, rows: list[dict[str, Any]] | None = None) -> float:
    """The recorded cost of one training epoch of ``variant``: the median over the study seeds (natively) of each
    run's median epoch (training steps only, ``history[...]["seconds"]``). Runs of one results file ran on one
    machine, one after the other, so their ratios compare the methods (``python -m utils.benchmark`` measures
    them side by side). ``rows``: the decoy runs (``read_results(DECOY_FILE)``, read here when not given)."""
    rows = read_results(DECOY_FILE) if rows is None else rows
    runs = [r for r in rows if r["variant"] == variant and r["seed"] in STUDY_SEEDS
            and r["arithmetic"].startswith("native")]
    if not runs:
        raise ValueError(f"the decoy runs hold no native run of {variant!r} on seeds {list(STUDY_SEEDS)}; record them "
                         f"with `python -m utils.camloss_search run --variants {variant} --seeds "
                         f"{' '.join(map(str, STUDY_SEEDS))} --results results/{DECOY_FILE.name}`")
    return statistics.median(statistics.median(h["seconds"] for h in r["history"]) for r in runs)
