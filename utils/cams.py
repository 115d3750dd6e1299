"""Export CAM overlays of a trained model: ``python -m utils.cams MODEL`` (the original's ``generator {model}``).

``MODEL`` is a checkpoint name in ``data/models/`` (``default_seed0``,
``camloss_seed0``…) or a path to a ``.pt`` file. For the first ``--n`` images of
``--split`` (default ``test_swapped``, the misleading test) it writes, under
``data/cams/<MODEL>/``:

* ``<index>_<true>_pred-<predicted>.png`` — the image with the CAM of the
  predicted class on top (Zhou et al. 2016, eq. 2; upsampled bilinearly,
  rescaled to [0, 1] per image for display);
* ``grid.png`` — all of them in one figure;
* ``index.json`` — per image: true class, predicted class, probability, and the
  share of the CAM's positive mass inside the object mask (synthetic data;
  ``null`` where the CAM has no positive part).

The folder is built under a temporary name and renamed when complete, so a
failed export never leaves a half-written folder behind; an older export of the
same model is replaced.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch

from .data import CLASSES, SPLITS
from .models import CheckpointError, load_checkpoint
from .train import DEFAULT_MODELS_DIR, TrainConfig, split_data

__all__ = ["DEFAULT_CAMS_DIR", "resolve_model", "export_cams"]

DEFAULT_CAMS_DIR = DEFAULT_MODELS_DIR.parent / "cams"


def resolve_model(model: str, models_dir: str | Path = DEFAULT_MODELS_DIR) -> Path:
    """A checkpoint path from a name in ``models_dir`` or a path; a clear error listing what exists otherwise."""
    path = Path(model)
    if path.suffix == ".pt" and path.is_file():
        return path
    candidate = Path(models_dir) / f"{model}.pt"
    if candidate.is_file():
        return candidate
    have = sorted(p.stem for p in Path(models_dir).glob("*.pt")) if Path(models_dir).is_dir() else []
    raise FileNotFoundError(f"no model {model!r}: neither a .pt file nor {candidate}. "
                            + (f"Trained models: {', '.join(have)}." if have else "No models are trained yet.")
                            + " Train one with `python -m utils.train default --seed 0`.")


def export_cams(model: str, split: str = "test_swapped", n: int = 16, out_dir: str | Path = DEFAULT_CAMS_DIR,
                models_dir: str | Path = DEFAULT_MODELS_DIR) -> Path:
    """Write the overlays of ``model`` on the first ``n`` images of ``split``; returns the folder."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .explain.cam import cam
    from .metrics import energy_in_mask
    from .viz import overlay, show_grid

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int; got {n!r}")
    path = resolve_model(model, models_dir)
    net, meta = load_checkpoint(path, "cpu")
    saved = meta.get("config")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path} has no training config in its metadata; export needs it to draw the data")
    cfg = TrainConfig(**{**saved, "device": "cpu"})  # TrainConfig turns the saved widths list back into a tuple
    data = split_data(cfg, split)
    images, labels = data.images[:n], data.labels[:n]
    with torch.no_grad():
        probs = net(images).softmax(1)
    preds = probs.argmax(1)
    maps = cam(net, images, target=preds)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / path.stem
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{path.stem}."))
    try:
        index = []
        for i in range(len(labels)):
            name = f"{i:04d}_{CLASSES[int(labels[i])]}_pred-{CLASSES[int(preds[i])]}.png"
            fig, ax = plt.subplots(figsize=(2.2, 2.2))
            overlay(ax, images[i], maps[i], title=f"true {CLASSES[int(labels[i])]} / pred {CLASSES[int(preds[i])]}")
            fig.savefig(tmp / name, dpi=100, bbox_inches="tight", metadata={"Software": None})
            plt.close(fig)
            row = {"file": name, "true": CLASSES[int(labels[i])], "pred": CLASSES[int(preds[i])],
                   "prob": round(float(probs[i, preds[i]]), 4)}
            if data.masks is not None:
                share = float(energy_in_mask(maps[i:i + 1], data.masks[i:i + 1])[0])
                row["cam_energy_in_mask"] = None if share != share else round(share, 4)  # None: no positive CAM
            index.append(row)
        fig = show_grid(images, maps, labels=labels, preds=preds, probs=probs.max(1).values)
        fig.savefig(tmp / "grid.png", dpi=100, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        (tmp / "index.json").write_text(json.dumps({"model": str(path), "split": split, "images": index},
                                                   indent=2) + "\n")
        old = None
        if final.exists():
            old = out_dir / f".{path.stem}.old"
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        tmp.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.cams", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="checkpoint name in data/models (e.g. camloss_seed0) or a .pt path")
    parser.add_argument("--split", default="test_swapped", help=f"one of {', '.join(SPLITS)} (default test_swapped)")
    parser.add_argument("--n", type=int, default=16, help="number of images (default 16)")
    parser.add_argument("--out", default=str(DEFAULT_CAMS_DIR), help="output root (default data/cams/)")
    parser.add_argument("--models-dir", default=str(DEFAULT_MODELS_DIR), help="where named models live")
    args = parser.parse_args(argv)
    try:
        folder = export_cams(args.model, args.split, args.n, args.out, args.models_dir)
    except (FileNotFoundError, ValueError, TypeError) as e:
        parser.error(str(e))
    print(f"wrote {len(list(folder.glob('0*.png')))} overlays, grid.png and index.json to {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
