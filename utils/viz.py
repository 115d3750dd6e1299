"""Plots for the course: heatmap overlays, labelled grids, and ``save_figure`` → ``figs/``.

Display code rescales maps (the methods return raw values): :func:`to_display`
divides each map by its largest absolute value, so 1 is the strongest
attribution in *that* image (figures say so in their colour bar). Over an image a
map's opacity grows with its magnitude (:func:`overlay`, :func:`map_table`): where
the map is 0 the image shows through. Saved figures are byte-for-byte reproducible (no
dates or software versions in the files), so re-running a notebook leaves
``git status`` clean.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from .data import CLASSES

__all__ = ["FIGS_DIR", "to_display", "clip_quantile", "overlay", "show_grid", "map_table", "show_splits", "save_figure",
           "image_to_numpy", "save_table", "save_macros"]

#: Where exported figures, tables and results go: ``figs/`` (the LaTeX report includes them from there),
#: or the folder in the environment variable ``VEX_FIGS_DIR``. The test suite sets it to a temporary
#: folder (conftest.py), so running the notebooks under pytest never rewrites a tracked file.
FIGS_DIR = Path(os.environ.get("VEX_FIGS_DIR") or Path(__file__).resolve().parent.parent / "figs")


def image_to_numpy(image: torch.Tensor) -> np.ndarray:
    """``[3, H, W]`` tensor in [0, 1] → ``[H, W, 3]`` array for ``imshow``."""
    return image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()


def to_display(heatmap: torch.Tensor, signed: bool = False) -> np.ndarray:
    """One map ``[H, W]`` scaled for display: ``signed``, divided by its max |value| (to [-1, 1]); otherwise its
    positive part divided by the positive part's maximum (to [0, 1]), what the figures' colour bars say."""
    m = heatmap.detach().float().cpu()
    if not signed:
        m = m.clamp(min=0)
    peak = m.abs().max()
    return (m / peak if peak > 0 else m).numpy()


def clip_quantile(maps: torch.Tensor, q: float = 0.99, signed: bool = False) -> torch.Tensor:
    """Each map of ``[N, H, W]`` (or one ``[H, W]``) with its positive values capped at their ``q``-quantile, for
    display: a gradient map of a real photo has a few pixels far above the rest, and divided by its largest value
    the map is invisible but for those pixels. Say so in the figure (e.g. "clipped at its 99th percentile").
    ``signed=True`` (a signed map such as Integrated Gradients): ``|value|`` capped at the ``q``-quantile of the
    non-zero ``|values|``, both signs alike."""
    if not 0.0 < q <= 1.0:
        raise ValueError(f"q must be a quantile in (0, 1]; got {q!r}")
    m = maps.detach().float()
    size = (m.abs() if signed else m.clamp(min=0)).flatten(-2).reshape(-1, m.shape[-2] * m.shape[-1])
    top = torch.stack([f[f > 0].quantile(q) if (f > 0).any() else f.new_zeros(()) for f in size])
    top = top.view(*m.shape[:-2], 1, 1)
    return torch.maximum(torch.minimum(m, top), -top) if signed else torch.minimum(m, top)


def _largest(m: torch.Tensor, signed: bool) -> float:
    """A map's largest magnitude as drawn: of the whole map if ``signed``, else of its positive part (0 if none)."""
    m = m.detach().float()
    return float((m.abs() if signed else m.clamp(min=0)).max())


def overlay(ax: plt.Axes, image: torch.Tensor, heatmap: torch.Tensor | None = None, *, alpha: float = 0.75,
            cmap: str = "inferno", signed: bool = False, title: str | None = None, underlay: bool = True,
            outline: torch.Tensor | None = None, vmax: float | None = None) -> "plt.AxesImage | None":
    """Draw ``image`` with ``heatmap`` (rescaled by :func:`to_display`) on top; returns the map's image (or None).

    The course's drawing rule: the map's opacity grows with its magnitude, from 0 (transparent: the photo shows
    through, so a white stripe of the sea or the orca's white belly is not mistaken for evidence) to ``alpha`` at
    the map's largest magnitude. ``signed`` maps (CAM, occlusion) use the diverging ``bwr`` scale centred at 0;
    maps that are never negative (saliency, Grad-CAM) a one-sided ``cmap`` on [0, 1], their negatives clipped.
    ``underlay=False`` draws the map alone, opaque (white is 0 on the signed scale), where colours of the image
    would be mistaken for the map's (blue evidence over a blue sea); ``outline`` (an ``[H, W]`` mask, e.g. the
    animal's) is then drawn as a black contour for orientation. ``vmax``: the map is drawn in its own units on
    ``[-vmax, vmax]`` (``[0, vmax]`` if not signed), e.g. one scale shared by a figure, instead of divided by its
    own largest magnitude.
    """
    if vmax is not None and not vmax > 0:
        raise ValueError(f"vmax must be a positive number (the map's largest magnitude to show); got {vmax!r}")
    if underlay or heatmap is None:
        ax.imshow(image_to_numpy(image), interpolation="nearest")
    shown = None
    if heatmap is not None:
        if vmax is None:
            m, top = to_display(heatmap, signed), 1.0
        else:
            raw = heatmap.detach().float().cpu()
            m, top = (raw if signed else raw.clamp(min=0)).numpy(), float(vmax)
        opacity = alpha * np.clip(np.abs(m) / top, 0, 1) if underlay else None
        shown = ax.imshow(m, cmap="bwr" if signed else cmap, vmin=-top if signed else 0, vmax=top, alpha=opacity,
                          interpolation="bilinear")
        if outline is not None:
            ax.contour(outline.detach().float().cpu().numpy(), levels=[0.5], colors="k", linewidths=0.7)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    return shown


def label_text(label: int | None, pred: int | None = None, prob: float | None = None) -> str:
    """``"true orca / pred leopard 0.99"`` (parts left out when unknown)."""
    parts = []
    if label is not None:
        parts.append(f"true {CLASSES[int(label)]}")
    if pred is not None:
        ok = "" if label is None or int(pred) == int(label) else " ✗"
        parts.append(f"pred {CLASSES[int(pred)]}" + (f" {prob:.2f}" if prob is not None else "") + ok)
    return "\n".join(parts)


def show_grid(images: torch.Tensor, maps: Sequence[torch.Tensor] | torch.Tensor | None = None, *,
              labels: Sequence[int] | torch.Tensor | None = None, preds: Sequence[int] | torch.Tensor | None = None,
              probs: Sequence[float] | torch.Tensor | None = None, row_titles: Sequence[str] | None = None,
              columns: int | None = None, alpha: float = 0.75, cmap: str = "inferno", signed: bool = False,
              size: float = 1.7, colorbar: str | None = None, underlay: bool = True,
              outlines: Sequence[torch.Tensor] | torch.Tensor | None = None, scale: str = "each") -> Figure:
    """A grid of images with optional heatmaps and "true / pred (confidence)" titles.

    ``maps`` may be one ``[N, H, W]`` tensor (one row of overlays under the
    images) or a list of them (one row per method, named by ``row_titles``), drawn by :func:`overlay` (opacity
    growing with magnitude, ``alpha`` at the largest). Without ``maps``: the images alone, ``columns`` per row.
    ``colorbar``: a colour bar at the right with this label (each map is divided by its own largest magnitude,
    :func:`to_display`, so the bar runs 0 … 1, or -1 … 1 for ``signed`` maps, drawn on the diverging ``bwr`` scale
    centred at 0; say so in the label). Every row is ``signed`` or none is: draw maps that are never negative
    (saliency) and signed maps (occlusion, CAM) in separate figures. ``underlay=False``: the maps alone, with
    ``outlines`` (one mask per image, e.g. the animals') as contours (:func:`overlay`). ``scale="all"``: every map
    in its own units on one scale, the largest magnitude in the figure, and the colour bar in those units (give
    them as ``colorbar``): maps of the same quantity can then be compared across images and rows, and a map of
    noise looks like noise; ``"row"``: one such scale and colour bar per row (two models whose maps differ in
    size, each row comparable across its images); ``"each"`` (default) divides each map by its own largest
    magnitude (say so in ``colorbar``).
    """
    if scale not in ("each", "row", "all"):
        raise ValueError(f"scale must be 'each' (each map ÷ its largest magnitude), 'row' or 'all' (one scale in the "
                         f"maps' units per row or for the figure); got {scale!r}")
    n = images.shape[0]
    rows_of_maps = [] if maps is None else ([maps] if isinstance(maps, torch.Tensor) else list(maps))
    if rows_of_maps:
        nrows, ncols = 1 + len(rows_of_maps), n
    else:
        ncols = columns or min(n, 8)
        nrows = math.ceil(n / ncols)

    tops = [None] * len(rows_of_maps)  # None: each map ÷ its own largest magnitude
    if scale == "all" and rows_of_maps:
        tops = [max(_largest(m, signed) or 1.0 for m in rows_of_maps)] * len(rows_of_maps)
    elif scale == "row":
        tops = [_largest(m, signed) or 1.0 for m in rows_of_maps]
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        ax = axes[0, i] if rows_of_maps else axes.flat[i]
        ax.axis("on")
        title = label_text(None if labels is None else int(labels[i]), None if preds is None else int(preds[i]),
                           None if probs is None else float(probs[i]))
        overlay(ax, images[i], title=title or None)
        for r, m in enumerate(rows_of_maps, start=1):
            axes[r, i].axis("on")
            overlay(axes[r, i], images[i], m[i], alpha=alpha, cmap=cmap, signed=signed, underlay=underlay,
                    outline=None if outlines is None else outlines[i], vmax=tops[r - 1])
    if row_titles:
        for r, t in enumerate(row_titles, start=1 if rows_of_maps else 0):
            axes[r, 0].set_ylabel(t, fontsize=9)
    if colorbar and rows_of_maps:
        fig.tight_layout(rect=(0, 0, 1 - 0.75 / fig.get_figwidth(), 1))
        if scale == "row":  # one bar beside each row, in that row's units
            spans = [(axes[r, -1].get_position().y0, axes[r, -1].get_position().height)
                     for r in range(1, len(rows_of_maps) + 1)]
        else:
            spans = [(0.12, 0.6)]
        for (y0, height), top in zip(spans, tops if scale == "row" else tops[:1]):
            top = 1.0 if top is None else top
            norm = plt.Normalize(-top if signed else 0, top)
            cax = fig.add_axes((1 - 0.6 / fig.get_figwidth(), y0 + 0.1 * height, 0.12 / fig.get_figwidth(), 0.8 * height))
            bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="bwr" if signed else cmap), cax=cax)
            bar.set_label(colorbar, fontsize=7 if scale != "row" else 6)
            cax.tick_params(labelsize=6)
    else:
        fig.tight_layout()
    return fig


def map_table(images: Sequence[torch.Tensor] | torch.Tensor, maps: Sequence[Sequence[torch.Tensor | None]], *,
              row_titles: Sequence[str], col_titles: Sequence[str] | None = None,
              cell_titles: Sequence[Sequence[str]] | None = None, signed: bool = False, scale: str = "cell",
              cmap: str = "inferno", alpha: float = 0.75, size: float = 1.55, image_row: str | None = None,
              colorbar_label: str | None = None, underlay: bool = True,
              outlines: Sequence[torch.Tensor] | None = None) -> Figure:
    """A table of overlays: row ``r``, column ``c`` draws ``maps[r][c]`` (``[H, W]``, or ``None``: the image alone)
    over ``images[c]``, with one colour bar for the whole figure.

    ``scale`` says what a colour means: ``"cell"`` divides each map by its own largest magnitude, ``"row"`` by the
    largest over its row (compare the maps of one row), ``"column"`` by the largest over its column (compare the
    maps of one image, e.g. its classes), ``"all"`` by the largest in the figure. ``signed`` maps use
    a diverging scale centred at 0 (``bwr``, -1 blue … +1 red); others clip negatives and use ``cmap`` on [0, 1].
    ``image_row``: a first row showing the images alone, titled so. ``cell_titles[r][c]`` goes above each overlay.
    Over the image, a map's opacity grows with its magnitude (``alpha`` at 1), so 0 is transparent; with
    ``underlay=False`` the maps are drawn opaque, without the image, and ``outlines`` (one ``[H, W]`` mask per
    column, e.g. the object's) are drawn as contours for orientation.
    """
    if scale not in ("cell", "row", "column", "all"):
        raise ValueError(f"scale must be 'cell', 'row', 'column' or 'all'; got {scale!r}")
    if len(row_titles) != len(maps) or len({len(r) for r in maps}) > 1 or len(maps[0]) != len(images):
        raise ValueError("maps must be rows × columns with one column per image and one title per row")
    rows = ([[None] * len(images)] if image_row else []) + [list(r) for r in maps]
    titles = ([image_row] if image_row else []) + list(row_titles)
    cells = ([[""] * len(images)] if image_row else []) + [list(t) for t in (cell_titles or [[""] * len(images)] * len(maps))]

    def peak(ms: list) -> float:
        return max((_largest(m, signed) for m in ms if m is not None), default=0.0) or 1.0

    every = peak([m for r in rows for m in r])
    column_peaks = [peak([r[c] for r in rows]) for c in range(len(images))]
    aspect = images[0].shape[-2] / images[0].shape[-1]  # a 224 × 448 composite gets half-height rows
    fig, axes = plt.subplots(len(rows), len(images),
                             figsize=(size * len(images) + 0.9, size * aspect * len(rows) + 0.35),
                             squeeze=False)
    mappable = None
    for r, row in enumerate(rows):
        row_peak = peak(row)
        for c, m in enumerate(row):
            ax = axes[r, c]
            if underlay or m is None:
                ax.imshow(image_to_numpy(images[c]), interpolation="nearest")
            if m is not None:
                div = {"cell": peak([m]), "row": row_peak, "column": column_peaks[c], "all": every}[scale]
                shown = (m.detach().float().cpu() / div) if signed else (m.detach().float().cpu().clamp(min=0) / div)
                opacity = (alpha * shown.abs().clamp(max=1)).numpy() if underlay else 1.0
                mappable = ax.imshow(shown.numpy(), cmap="bwr" if signed else cmap, vmin=-1 if signed else 0, vmax=1,
                                     alpha=opacity, interpolation="bilinear")
                if outlines is not None:
                    ax.contour(outlines[c].float().cpu().numpy(), levels=[0.5], colors="k", linewidths=0.7)
            ax.set_xticks([])
            ax.set_yticks([])
            text = (col_titles[c] if r == 0 and col_titles else "") + ("\n" if r == 0 and col_titles and cells[r][c] else "")
            if text + cells[r][c]:
                ax.set_title(text + cells[r][c], fontsize=7)
        axes[r, 0].set_ylabel(titles[r], fontsize=8)
    fig.tight_layout(rect=(0, 0, 1 - 0.7 / fig.get_figwidth(), 1))
    if mappable is not None:
        cax = fig.add_axes((1 - 0.55 / fig.get_figwidth(), 0.15, 0.12 / fig.get_figwidth(), 0.7))
        fig.colorbar(mappable, cax=cax).set_label(colorbar_label or {
            "cell": "each map ÷ its largest value", "row": "map ÷ largest value in its row",
            "column": "map ÷ largest value in its column", "all": "map ÷ largest value in the figure"}[scale] + (" (signed)" if signed else ""), fontsize=7)
        cax.tick_params(labelsize=6)
    return fig


def show_splits(splits: dict[str, "SplitData"], per_split: int = 4, size: float = 1.25) -> Figure:
    """The first ``per_split`` images of each split, one row per split, titled "class / background", with the
    object mask's outline in cyan (what the localisation metrics score against)."""
    from .data import BACKGROUNDS
    fig, axes = plt.subplots(len(splits), per_split, figsize=(size * per_split + 1.2, size * len(splits) + 0.2),
                             squeeze=False, layout="constrained")
    for r, (name, d) in enumerate(splits.items()):
        for c in range(per_split):
            ax = axes[r, c]
            ax.imshow(image_to_numpy(d.images[c]), interpolation="nearest")
            if d.masks is not None:
                ax.contour(d.masks[c].float().numpy(), levels=[0.5], colors="cyan", linewidths=0.7)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{CLASSES[int(d.labels[c])]} / {BACKGROUNDS[int(d.backgrounds[c])]}", fontsize=7)
        axes[r, 0].set_ylabel(name, fontsize=8)
    return fig


def save_figure(fig: Figure, name: str, folder: str | Path | None = None, dpi: int = 150) -> tuple[Path, Path]:
    """Write ``fig`` as ``<name>.pdf`` (for LaTeX) and ``<name>.png`` (for the web) under ``figs/``.

    No creation date or software version is written, so the same figure gives the
    same bytes on every run.
    """
    if not name or any(c in name for c in "/\\") or name.endswith((".pdf", ".png")):
        raise ValueError(f"name must be a plain file stem like 'saliency_examples'; got {name!r}")
    folder = Path(folder) if folder is not None else FIGS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    pdf, png = folder / f"{name}.pdf", folder / f"{name}.png"
    fig.savefig(pdf, metadata={"CreationDate": None, "Creator": None, "Producer": None}, bbox_inches="tight")
    fig.savefig(png, metadata={"Software": None}, dpi=dpi, bbox_inches="tight")
    return pdf, png


def _latex_text(v: object, digits: int) -> str:
    """A value as LaTeX text: floats rounded to ``digits``; ``_``, ``%`` and ``&`` escaped."""
    text = f"{v:.{digits}f}" if isinstance(v, float) else str(v)
    return text.replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")


def _write_tex(lines: list[str], name: str, folder: str | Path | None, example: str) -> Path:
    """Write ``lines`` to ``<folder or figs/>/<name>.tex``; ``name`` must be a plain file stem."""
    if not name or any(c in name for c in "/\\") or "." in name:
        raise ValueError(f"name must be a plain file stem like '{example}'; got {name!r}")
    folder = Path(folder) if folder is not None else FIGS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.tex"
    path.write_text("\n".join(lines) + "\n")
    return path


def save_table(rows: list[dict[str, object]], name: str, folder: str | Path | None = None,
               caption: str | None = None, digits: int = 3) -> Path:
    """Write ``rows`` (dicts with the same keys) as a LaTeX ``tabular`` to ``figs/<name>.tex`` for ``\\input``.

    Floats are rounded to ``digits``; the text depends only on the values, so the
    same numbers give the same bytes.
    """
    if not rows:
        raise ValueError("rows is empty")
    cols = list(rows[0])
    lines = [r"\begin{tabular}{l" + "r" * (len(cols) - 1) + "}", r"\hline",
             " & ".join(_latex_text(c, digits) for c in cols) + r" \\", r"\hline"]
    lines += [" & ".join(_latex_text(r[c], digits) for c in cols) + r" \\" for r in rows]
    lines += [r"\hline", r"\end{tabular}"]
    if caption:
        lines.insert(0, f"% {caption}")
    return _write_tex(lines, name, folder, "method_comparison")


def save_macros(values: dict[str, object], name: str, folder: str | Path | None = None, digits: int = 3) -> Path:
    """Write ``values`` as LaTeX macros (``\\newcommand{\\key}{value}``) to ``figs/<name>.tex``.

    A report ``\\input``s the file and writes ``\\key`` in its text, so the numbers
    it quotes are the ones the notebook computed. Keys are letters only (LaTeX
    command names); floats are rounded to ``digits``.
    """
    bad = [k for k in values if not (isinstance(k, str) and k.isascii() and k.isalpha())]
    if bad:
        raise ValueError(f"macro names must be ASCII letters only (LaTeX command names); got {bad}")
    lines = ["% written by a notebook (utils.viz.save_macros); do not edit"]
    lines += [f"\\newcommand{{\\{k}}}{{{_latex_text(v, digits)}}}" for k, v in values.items()]
    return _write_tex(lines, name, folder, "05_camloss_numbers")
