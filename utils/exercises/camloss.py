"""Checkers of notebook 05's exercises: the inverted Gaussian kernel and the ratio penalty."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from .cam import _cam_cases, _gap_parts
from .framework import CheckResult, Case, Mistake, _close, check


KERNEL_GRIDS = ((8, 8, 0.3), (5, 12, 0.2), (16, 16, 0.5))


def _grid_cases() -> list[Case]:
    return [Case(f"the {h} × {w} grid with σ = {s}", nn.Identity(), torch.zeros(1), torch.zeros(1, dtype=torch.long),
                 {"height": h, "width": w, "sigma": s, "grid": True}) for h, w, s in KERNEL_GRIDS]


def _kernel(case: Case, *, invert: bool = True, norm: str = "peak", centres: str = "cells", units: str = "side",
            two: bool = True) -> torch.Tensor:
    """The inverted Gaussian written out plainly, one knob per typical mistake."""
    import math
    h, w, s = case.extra["height"], case.extra["width"], case.extra["sigma"]

    def coords(n: int) -> torch.Tensor:
        i = torch.arange(n, dtype=torch.float32)
        if centres == "corners":
            u = i / n - 0.5
        elif centres == "linspace":
            u = torch.linspace(-0.5, 0.5, n)
        else:
            u = (i + 0.5) / n - 0.5
        return u * n if units == "cells" else u
    d2 = coords(h).view(-1, 1) ** 2 + coords(w).view(1, -1) ** 2
    g = torch.exp(-d2 / ((2 if two else 1) * s ** 2))
    if norm == "density":
        g = g / (2 * math.pi * s ** 2)
    elif norm == "sum":
        g = g / g.sum()
    return 1 - g if invert else g


KERNEL_MISTAKES = [
    Mistake("the kernel is not inverted: the penalty weight must be 0 at the centre and grow towards the border, "
            "K = 1 − exp(−d²/2σ²)", lambda c: _kernel(c, invert=False)),
    Mistake("the Gaussian is not peak-normalised: you divided it by 2πσ² (a probability density), so K is not 0 at "
            "the centre and can be negative; use exp(−d²/2σ²) with no factor in front (peak 1)",
            lambda c: _kernel(c, norm="density")),
    Mistake("the Gaussian is not peak-normalised: you divided it by its sum, so K is close to 1 everywhere; use "
            "exp(−d²/2σ²) with peak 1", lambda c: _kernel(c, norm="sum")),
    Mistake("the distances are in cells, but σ is a fraction of the side: measure positions in units of the side, "
            "u = (i + 0.5) / h − 0.5", lambda c: _kernel(c, units="cells")),
    Mistake("the positions are cell corners (i / h − 0.5), so the kernel is off-centre by half a cell: cell i's "
            "centre is at (i + 0.5) / h − 0.5", lambda c: _kernel(c, centres="corners")),
    Mistake("linspace(−0.5, 0.5, h) puts the outermost cells' centres on the border of the image; cell i's centre "
            "is at (i + 0.5) / h − 0.5", lambda c: _kernel(c, centres="linspace")),
    Mistake("the exponent is −d²/(2σ²): you left out the 2", lambda c: _kernel(c, two=False)),
]


def check_kernel(fn: Callable[[int, int, float], torch.Tensor], verbose: bool = False) -> CheckResult:
    """Exercise 05.1: ``fn(height, width, sigma) → [height, width]``, the inverted Gaussian ``K = 1 − exp(−d²/2σ²)``
    at the cell centres, ``d`` the distance from the image centre in units of the side
    (:func:`utils.camloss.inverted_gaussian_kernel`)."""
    from ..camloss import inverted_gaussian_kernel

    def hint(got: tuple, expected: tuple) -> str | None:
        return "rows first: the kernel is [height, width]" if got == expected[::-1] else None
    return check("inverted Gaussian kernel", fn, lambda f, c: f(c.extra["height"], c.extra["width"], c.extra["sigma"]),
                 lambda c: inverted_gaussian_kernel(c.extra["height"], c.extra["width"], c.extra["sigma"]),
                 KERNEL_MISTAKES, _grid_cases(), "utils.camloss.inverted_gaussian_kernel", hint, verbose,
                 summary="3 grids (" + "; ".join(f"{h} × {w}, σ = {s}" for h, w, s in KERNEL_GRIDS) + ")")


SCALES = (1e-3, 7.0, -2.0)


def _penalty_cases(cases: Sequence[Case] | None) -> list[Case]:
    """Decision maps ``d = (w_y − w_other) · f`` of the course model (8 × 8, σ 0.3) and of the ResNet-18 on 128-px
    images (4 × 4, σ 0.5), the target taken as the label y."""
    from ..camloss import decision_map, inverted_gaussian_kernel
    cases = _cam_cases(cases)
    for c, sigma in zip(cases, (0.3, 0.5)):
        f, w, _ = _gap_parts(c)
        c.extra.update(maps=decision_map(f, w, c.target), kernel=inverted_gaussian_kernel(f.shape[2], f.shape[3], sigma))
    return cases


def _ratio(case: Case, *, mass: str = "abs", divide: str = "mass", complement: bool = False) -> torch.Tensor:
    maps, k = case.extra["maps"], case.extra["kernel"]
    m = {"abs": maps.abs(), "signed": maps, "squared": maps * maps, "positive": maps.clamp(min=0)}[mass]
    num = (m * k).sum((1, 2))
    den = {"mass": m.sum((1, 2)), "none": torch.ones_like(num), "cells": torch.full_like(num, float(k.numel()))}[divide]
    share = num / den
    return 1 - share if complement else share


def _scale_invariance(fn: Callable[..., Any], case: Case) -> str | None:
    """Multiply the map by 0.001, 7 and −2: a ratio penalty must not change."""
    maps, k = case.extra["maps"], case.extra["kernel"]
    base = fn(maps.clone(), k.clone())
    for s in SCALES:
        scaled = fn(s * maps, k.clone())
        if not isinstance(scaled, torch.Tensor) or not _close(scaled, base):
            shown = float(scaled[0]) if isinstance(scaled, torch.Tensor) and scaled.numel() else scaled
            return (f"your penalty is not scale-invariant: on {case.name}, image 0 gets {float(base[0]):.4g} for the map "
                    f"and {shown:.4g} for {s:g} × the map. The network could lower it by shrinking its features "
                    f"instead of moving its evidence; divide by the map's total mass Σ|d| (the penalty is a share)")
    return None


PENALTY_MISTAKES = [
    Mistake("you forgot |·|: positive and negative cells cancel in Σ d, so the 'share' can exceed 1 or be negative; "
            "the mass of a cell is |d|", lambda c: _ratio(c, mass="signed")),
    Mistake("you used d², the first formulation: many weak background cells then outvote one strong animal cell; "
            "the course's default mass is |d|", lambda c: _ratio(c, mass="squared")),
    Mistake("you kept only the positive part of d: negative evidence far from the centre is background evidence "
            "too; use |d|", lambda c: _ratio(c, mass="positive")),
    Mistake("you computed the share *near* the centre (1 − the penalty): weigh by K, which is 0 at the centre",
            lambda c: _ratio(c, complement=True)),
]


def check_penalty(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], cases: Sequence[Case] | None = None,
                  verbose: bool = False) -> CheckResult:
    """Exercise 05.2: ``fn(maps [N, h, w], kernel [h, w]) → [N]``, the share of each map's mass away from the
    centre, ``P = Σ K·|d| / Σ |d|`` (:func:`utils.camloss.penalty` with ``mass="abs"``); the checker also
    multiplies the maps by 0.001, 7 and −2 and requires the same penalty (scale invariance)."""
    from ..camloss import penalty

    def hint(got: tuple, expected: tuple) -> str | None:
        if len(got) == 0:
            return "one penalty per image is wanted ([N]): sum over the cells (dimensions 1 and 2) only; training averages over the batch later"
        if len(got) == 3:
            return "sum the weighted mass over the cells (dimensions 1 and 2): one number per image"
        return None

    def post(c: Case) -> str | None:
        return c.extra.pop("objection", None)

    def call(f: Callable[..., Any], c: Case) -> Any:
        out = f(c.extra["maps"].clone(), c.extra["kernel"].clone())
        if isinstance(out, torch.Tensor) and _close(out, penalty(c.extra["maps"], c.extra["kernel"], mass="abs")):
            c.extra["objection"] = _scale_invariance(f, c)
        return out
    cases = _penalty_cases(cases)
    result = check("ratio penalty", fn, call, lambda c: penalty(c.extra["maps"], c.extra["kernel"], mass="abs"),
                   PENALTY_MISTAKES, cases, "utils.camloss.penalty(maps, kernel, mass=\"abs\")", hint, post=post,
                   diagnose=_scale_invariance,
                   summary=f"the decision maps of 2 models and {sum(c.images.shape[0] for c in cases)} images")
    if result:
        result.message += (f" And scale-invariant: the same penalty when each map is multiplied by "
                           f"{', '.join(f'{s:g}' for s in SCALES)}, so the network cannot lower it by shrinking "
                           f"its features.")
    if verbose:
        print(repr(result))
    return result
