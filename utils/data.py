"""The embedded synthetic orca/leopard dataset (docs/design.md, section 3).

Every image is drawn from scratch from ``(split, index, seed)``: no files, no
network. A *leopard* is a golden, rosette-spotted cat (body, head with ears,
legs, tail); an *orca* a black whale with white eye and belly patches, a tall
dorsal fin and flukes. Size, pose, position, colour and spots vary per image.
Backgrounds are *land* (savannah) or *sea* (water with waves).

The splits differ only in how the background is tied to the class and where
the object sits:

===============  ==========================================  ===========
split            background                                  placement
===============  ==========================================  ===========
``train``        leopard on land, orca on sea ("matched")    centred
``val``          matched                                     centred
``test_iid``     matched                                     centred
``test_swapped`` leopard on sea, orca on land                centred
``test_shifted`` matched                                     off-centre
``test_random``  independent of the class                    centred
===============  ==========================================  ===========

Because the background predicts the class in training, a plain classifier can
take the shortcut; ``test_swapped`` shows whether it did.

Two *views* put the animals of ``test_shifted`` (the same animals, the same
off-centre poses) on other backgrounds (:data:`OFF_CENTRE_VIEWS`,
:func:`load_view`): ``test_shifted_swapped`` (off-centre on the misleading
background) and ``test_shifted_random`` (off-centre, background independent of
the class). They ask what a model trained with a centre prior on centred
animals does with an animal away from the centre.

Quick start::

    from utils.data import load_split
    test = load_split("test_swapped")          # SplitData with stacked tensors
    test.images.shape                          # torch.Size([400, 3, 64, 64])

    python -m utils.data preview --split train --out preview.png
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = [
    "CLASSES", "LEOPARD", "ORCA", "BACKGROUNDS", "LAND", "SEA", "SPLITS", "SPLIT_SIZES",
    "MIN_IMAGE_SIZE", "MAX_IMAGE_SIZE", "DEFAULT_IMAGE_SIZE", "Sample", "SplitData",
    "SyntheticOrcaLeopard", "render_sample", "load_split", "OFF_CENTRE_VIEWS", "load_view",
]

CLASSES: tuple[str, ...] = ("leopard", "orca")
LEOPARD, ORCA = 0, 1
BACKGROUNDS: tuple[str, ...] = ("land", "sea")
LAND, SEA = 0, 1

SPLITS: tuple[str, ...] = ("train", "val", "test_iid", "test_swapped", "test_shifted", "test_random")
#: Default number of images per split (any ``n`` may be asked for).
SPLIT_SIZES: dict[str, int] = {
    "train": 2000, "val": 400, "test_iid": 400,
    "test_swapped": 400, "test_shifted": 400, "test_random": 400,
}
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE, DEFAULT_IMAGE_SIZE = 32, 224, 64

# How each split ties background to class, and where the object sits.
_BACKGROUND_RULES = ("matched", "swapped", "random")
_SPLIT_RULES: dict[str, tuple[str, str]] = {
    "train": ("matched", "centred"),
    "val": ("matched", "centred"),
    "test_iid": ("matched", "centred"),
    "test_swapped": ("swapped", "centred"),
    "test_shifted": ("matched", "shifted"),
    "test_random": ("random", "centred"),
}
#: view → (split, backgrounds rule): the same images with the background rule overridden (``render_sample``).
OFF_CENTRE_VIEWS: dict[str, tuple[str, str]] = {
    "test_shifted_swapped": ("test_shifted", "swapped"),
    "test_shifted_random": ("test_shifted", "random"),
}
# Stable ids mixed into the random seed; never renumber them (it changes every image).
_SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}


class Sample(NamedTuple):
    """One image of the dataset."""
    image: torch.Tensor       #: float32 ``[3, H, W]`` in ``[0, 1]``
    label: int                #: ``LEOPARD`` (0) or ``ORCA`` (1)
    mask: torch.Tensor        #: bool ``[H, W]``, True on the animal
    background: int           #: ``LAND`` (0) or ``SEA`` (1)


@dataclass
class SplitData:
    """A whole split as stacked tensors (what training and evaluation use)."""
    split: str
    images: torch.Tensor       #: float32 ``[N, 3, H, W]`` in ``[0, 1]``
    labels: torch.Tensor       #: int64 ``[N]``
    masks: torch.Tensor | None  #: bool ``[N, H, W]``; ``None`` for data without masks (Caltech-256)
    backgrounds: torch.Tensor  #: int64 ``[N]`` (decoy digits: the label the decoy encodes, −1 for none)
    #: bool ``[N, H, W]``, True where the input must not matter, where the data knows it (decoy digits: the decoy
    #: patch); ``None``: the background, ``~masks``, where masks exist (what RRR penalises, ``utils.rrr``)
    annotation: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


# --------------------------------------------------------------------------- checks
class IndexOutOfRange(IndexError, ValueError):
    """An index outside the dataset (an ``IndexError`` *and* a ``ValueError``)."""


def _check_split(split: object) -> str:
    if not isinstance(split, str):
        raise TypeError(f"split must be a string, one of {SPLITS}; got {type(split).__name__}")
    if split not in _SPLIT_RULES:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return split


def _check_image_size(image_size: object) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise TypeError(f"image_size must be an int; got {type(image_size).__name__}")
    if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise ValueError(
            f"image_size={image_size} is out of range; use {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE} "
            f"pixels (default {DEFAULT_IMAGE_SIZE}, 192 = the original experiment)"
        )
    return int(image_size)


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int; got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return int(value)


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return value


# --------------------------------------------------------------------------- drawing
# Geometry is written in *image units* (the image side is 1) for an animal of
# scale 1; a pose maps pixel centres into that local frame, so any resolution
# draws the same picture. Each shape is a signed distance (negative inside),
# turned into anti-aliased coverage with the pixel size.

class _Canvas:
    """Pixel grid of one image plus the local frame of the animal on it."""

    def __init__(self, size: int, centre: tuple[float, float], angle: float, scale: float, flip: bool):
        c = (np.arange(size, dtype=np.float32) + 0.5) / size
        self.u, self.v = np.meshgrid(c, c)  # u: x to the right, v: y downwards
        du, dv = self.u - centre[0], self.v - centre[1]
        ca, sa = math.cos(angle), math.sin(angle)
        x = (ca * du + sa * dv) / scale
        y = (-sa * du + ca * dv) / scale
        self.x = -x if flip else x
        self.y = y
        self.size, self.centre, self.angle, self.scale, self.flip = size, centre, angle, scale, flip
        self.offset = (0, 0)  # top-left pixel of this canvas in the image (see crop)
        # Half a pixel, in local units: the width of the anti-aliased edge.
        self.aa = 1.0 / (size * scale)

    def crop(self, rows: slice, cols: slice) -> "_Canvas":
        """The same frame restricted to a block of pixels."""
        out = object.__new__(_Canvas)
        out.__dict__.update(self.__dict__)
        out.u, out.v, out.x, out.y = (a[rows, cols] for a in (self.u, self.v, self.x, self.y))
        out.offset = (self.offset[0] + rows.start, self.offset[1] + cols.start)
        return out

    def window(self, px: float, py: float, radius: float) -> tuple[slice, slice]:
        """Pixel rows/columns around local point ``(px, py)`` holding everything within ``radius``."""
        x = -px if self.flip else px
        ca, sa = math.cos(self.angle), math.sin(self.angle)
        col = (self.centre[0] + self.scale * (ca * x - sa * py)) * self.size - 0.5 - self.offset[1]
        row = (self.centre[1] + self.scale * (sa * x + ca * py)) * self.size - 0.5 - self.offset[0]
        h = radius * self.scale * self.size + 2
        rows, cols = self.x.shape

        def span(c: float, n: int) -> slice:
            return slice(min(max(int(c - h), 0), n), min(max(int(c + h) + 2, 0), n))
        return span(row, rows), span(col, cols)

    def cover(self, sdf: np.ndarray) -> np.ndarray:
        """Coverage in [0, 1] of a shape given by its signed distance (local units)."""
        return np.clip(0.5 - sdf / (2 * self.aa), 0.0, 1.0)


def _ellipse(cv: _Canvas, cx: float, cy: float, a: float, b: float, angle: float = 0.0) -> np.ndarray:
    dx, dy = cv.x - cx, cv.y - cy
    ca, sa = math.cos(angle), math.sin(angle)
    px, py = ca * dx + sa * dy, -sa * dx + ca * dy
    return (np.sqrt((px / a) ** 2 + (py / b) ** 2) - 1.0) * min(a, b)


def _capsule(cv: _Canvas, p0: tuple[float, float], p1: tuple[float, float], r: float) -> np.ndarray:
    (x0, y0), (x1, y1) = p0, p1
    vx, vy = x1 - x0, y1 - y0
    t = np.clip(((cv.x - x0) * vx + (cv.y - y0) * vy) / (vx * vx + vy * vy), 0.0, 1.0)
    return np.hypot(cv.x - (x0 + t * vx), cv.y - (y0 + t * vy)) - r


def _triangle(cv: _Canvas, pts: list[tuple[float, float]]) -> np.ndarray:
    """Signed distance (approximate outside, exact inside) of a counter-clockwise-agnostic triangle."""
    area = (pts[1][0] - pts[0][0]) * (pts[2][1] - pts[0][1]) - (pts[1][1] - pts[0][1]) * (pts[2][0] - pts[0][0])
    sign = 1.0 if area > 0 else -1.0
    d = None
    for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]):
        ex, ey = x1 - x0, y1 - y0
        # outward distance to this edge's line
        di = sign * ((cv.x - x0) * ey - (cv.y - y0) * ex) / math.hypot(ex, ey)
        d = di if d is None else np.maximum(d, di)
    return d


def _union(*sdfs: np.ndarray) -> np.ndarray:
    return np.minimum.reduce(sdfs)


def _smooth_noise(u: np.ndarray, v: np.ndarray, rng: np.random.Generator,
                  n: int, fmin: float, fmax: float) -> np.ndarray:
    """Sum of ``n`` random plane waves (frequencies in cycles per image), scaled to about [-1, 1]."""
    out = np.zeros_like(u)
    for _ in range(n):
        f = rng.uniform(fmin, fmax)
        th = rng.uniform(0, 2 * math.pi)
        ph = rng.uniform(0, 2 * math.pi)
        out += np.sin(2 * math.pi * f * (math.cos(th) * u + math.sin(th) * v) + ph)
    return out / math.sqrt(n * 0.5) / 2.0


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    t = np.asarray(t, dtype=np.float32)
    if t.ndim == 2:
        t = t[..., None]
    return a + (b - a) * t


def _jitter_colour(rng: np.random.Generator, rgb: tuple[float, float, float], amount: float) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) * rng.uniform(1 - amount, 1 + amount)
                   + rng.normal(0, amount / 3, 3).astype(np.float32), 0, 1)


def _land(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Savannah: dry golden to green grass, darker patches of earth, grass blades."""
    dry = _jitter_colour(rng, (0.78, 0.68, 0.40), 0.08)
    green = _jitter_colour(rng, (0.45, 0.58, 0.28), 0.08)
    earth = _jitter_colour(rng, (0.52, 0.40, 0.26), 0.08)
    base = _mix(dry, green, rng.uniform(0, 1))
    img = np.broadcast_to(base, u.shape + (3,)).astype(np.float32)
    patches = np.clip(_smooth_noise(u, v, rng, 4, 0.8, 2.5), 0, 1)
    img = _mix(img, earth, 0.55 * patches)
    # grass: short, mostly vertical strokes (high frequency along x, wobbling along y)
    fx = rng.uniform(14, 22)
    wob = 0.04 * np.sin(2 * math.pi * rng.uniform(3, 6) * v + rng.uniform(0, 6.3))
    blades = np.sin(2 * math.pi * fx * (u + wob) + rng.uniform(0, 6.3)) \
        * (0.5 + 0.5 * np.sin(2 * math.pi * rng.uniform(5, 9) * v + rng.uniform(0, 6.3)))
    img = img * (1 + 0.10 * blades[..., None])
    img = img * (1.0 - 0.10 * (v[..., None] - 0.5))  # light from the top
    return img


def _sea(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sea: deep to light blue or teal, wave bands, white caps."""
    deep = _jitter_colour(rng, (0.06, 0.22, 0.45), 0.12)
    light = _jitter_colour(rng, (0.18, 0.48, 0.68), 0.12)
    img = _mix(deep, light, np.clip(0.65 - 0.5 * v + 0.25 * _smooth_noise(u, v, rng, 3, 0.5, 1.5), 0, 1))
    f = rng.uniform(6, 11)
    wave = np.sin(2 * math.pi * (f * v + 0.35 * np.sin(2 * math.pi * rng.uniform(1, 3) * u + rng.uniform(0, 6.3))))
    img = img * (1 + 0.12 * wave[..., None])
    caps = np.clip((wave + 0.15 * _smooth_noise(u, v, rng, 3, 4, 9) - 0.85) / 0.15, 0, 1)
    img = _mix(img, np.array([0.92, 0.96, 1.0], np.float32), 0.45 * caps)
    return img


def _leopard(cv: _Canvas, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Golden cat with rosettes: returns (colour [H,W,3], coverage [H,W])."""
    body = _ellipse(cv, 0.0, 0.0, 0.165, rng.uniform(0.062, 0.078))
    head = _ellipse(cv, 0.185, -0.055, 0.058, 0.052)
    snout = _ellipse(cv, 0.232, -0.040, 0.030, 0.024)
    ears = _union(_ellipse(cv, 0.160, -0.100, 0.018, 0.020), _ellipse(cv, 0.208, -0.106, 0.018, 0.020))
    stride = rng.uniform(-0.02, 0.02)
    legs = _union(*[
        _capsule(cv, (x, 0.02), (x + dx, 0.155), 0.021)
        for x, dx in ((-0.125, -stride), (-0.085, stride), (0.085, -stride), (0.125, stride))
    ])
    t0 = rng.uniform(-0.04, 0.04)
    tail = _union(_capsule(cv, (-0.15, -0.02), (-0.235, 0.05 + t0), 0.014),
                  _capsule(cv, (-0.235, 0.05 + t0), (-0.29, -0.02 + 2 * t0), 0.013))
    shape = _union(body, head, snout, ears, legs, tail)
    alpha = cv.cover(shape)

    coat = _jitter_colour(rng, (0.87, 0.63, 0.26), 0.08)
    cream = _jitter_colour(rng, (0.95, 0.88, 0.70), 0.05)
    dark = np.array([0.16, 0.10, 0.05], np.float32)
    col = np.broadcast_to(coat, cv.x.shape + (3,)).astype(np.float32)
    col = _mix(col, cream, np.clip((cv.y - 0.025) / 0.04, 0, 1) * cv.cover(body))  # pale belly
    col = _mix(col, cream, 0.7 * cv.cover(_ellipse(cv, 0.235, -0.032, 0.018, 0.014)))  # muzzle
    # rosettes on the body: dark ring around a deeper-orange centre
    centres = []
    while len(centres) < rng.integers(14, 22):
        px, py = rng.uniform(-0.16, 0.16), rng.uniform(-0.07, 0.05)
        if (px / 0.16) ** 2 + (py / 0.07) ** 2 < 0.9:
            centres.append((px, py))
    ring = np.zeros_like(cv.x)
    inner = np.zeros_like(cv.x)
    for px, py in centres:
        r = rng.uniform(0.016, 0.024)
        w = cv.window(px, py, r + 0.01)
        d = np.hypot(cv.x[w] - px, cv.y[w] - py)
        ring[w] = np.maximum(ring[w], cv.cover(np.abs(d - r) - 0.0065))
        inner[w] = np.maximum(inner[w], cv.cover(d - r + 0.004))
    on_body = cv.cover(body + 0.006)
    col = _mix(col, col * np.array([0.85, 0.68, 0.55], np.float32), inner * on_body)
    col = _mix(col, dark, ring * on_body)
    # solid spots on head, legs and tail
    spots = np.zeros_like(cv.x)
    for _ in range(int(rng.integers(10, 16))):
        part = rng.integers(3)
        if part == 0:
            px, py = 0.185 + rng.uniform(-0.04, 0.03), -0.055 + rng.uniform(-0.035, 0.03)
        elif part == 1:
            px, py = rng.choice([-0.125, -0.085, 0.085, 0.125]) + rng.uniform(-0.01, 0.01), rng.uniform(0.04, 0.13)
        else:
            px, py = rng.uniform(-0.28, -0.16), rng.uniform(-0.02, 0.05)
        r = rng.uniform(0.006, 0.010)
        w = cv.window(px, py, r + 0.01)
        spots[w] = np.maximum(spots[w], cv.cover(np.hypot(cv.x[w] - px, cv.y[w] - py) - r))
    col = _mix(col, dark, spots * (1 - cv.cover(body)))
    col = _mix(col, dark, cv.cover(_ellipse(cv, 0.205, -0.065, 0.008, 0.007)))  # eye
    return col, alpha


def _orca(cv: _Canvas, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Black whale with white eye patch and belly, tall dorsal fin, flukes."""
    length, girth = 0.235, rng.uniform(0.062, 0.075)
    # spindle body: thickest in front, tapering to the tail stock
    xn = np.clip(cv.x / length, -1.0, 1.0)
    half = girth * np.sqrt(np.clip(1 - xn ** 2, 0, 1)) * np.where(xn < 0, 1 + 0.55 * xn, 1.0)
    body = np.maximum(np.abs(cv.y - 0.01 * xn) - half, np.abs(cv.x) - length)
    fin_h = rng.uniform(0.15, 0.2)
    dorsal = _triangle(cv, [(-0.055, -0.04), (0.045, -0.04), (-0.035, -fin_h)])
    flukes = _union(_ellipse(cv, -0.255, -0.03, 0.045, 0.013, 0.7),
                    _ellipse(cv, -0.255, 0.03, 0.045, 0.013, -0.7))
    pectoral = _ellipse(cv, 0.085, 0.068, 0.042, 0.016, 0.6)
    stock = _capsule(cv, (-0.2, 0.0), (-0.245, 0.0), 0.012)
    shape = _union(body, dorsal, flukes, pectoral, stock)
    alpha = cv.cover(shape)

    black = np.clip(rng.uniform(0.03, 0.10) + rng.normal(0, 0.006, 3), 0, 1).astype(np.float32)
    white = _jitter_colour(rng, (0.95, 0.96, 0.97), 0.03)
    col = np.broadcast_to(black, cv.x.shape + (3,)).astype(np.float32)
    col = col + 0.10 * np.clip(-cv.y / 0.07, 0, 1)[..., None] * cv.cover(body)[..., None]  # sheen on the back
    eye_patch = _ellipse(cv, 0.135, -0.022, 0.036, 0.014, -0.15)
    belly = np.maximum(_ellipse(cv, 0.07, 0.055, 0.17, 0.032), body)
    flank = np.maximum(_ellipse(cv, -0.095, 0.035, 0.06, 0.018, -0.45), body)
    whites = cv.cover(_union(eye_patch, belly, flank))
    col = _mix(col, white, whites)
    saddle = np.maximum(_ellipse(cv, -0.075, -0.05, 0.05, 0.014), body + 0.004)
    col = _mix(col, np.full(3, 0.55, np.float32), 0.6 * cv.cover(saddle))
    return col, alpha


def _pose(rng: np.random.Generator, placement: str) -> tuple[tuple[float, float], float, float, bool]:
    scale = rng.uniform(0.85, 1.25)
    angle = rng.uniform(-0.35, 0.35)
    flip = bool(rng.random() < 0.5)
    jitter = np.clip(rng.normal(0, 0.03, 2), -0.06, 0.06)
    phi, radius = rng.uniform(0, 2 * math.pi), rng.uniform(0.2, 0.27)
    if placement == "centred":
        centre = (0.5 + jitter[0], 0.5 + jitter[1])
    else:  # "shifted": well away from the centre, mostly in the frame
        centre = (0.5 + radius * math.cos(phi), 0.5 + 0.8 * radius * math.sin(phi))
    return centre, angle, scale, flip


def render_sample(split: str, index: int, seed: int = 0, image_size: int = DEFAULT_IMAGE_SIZE,
                  backgrounds: str | None = None, animal: bool = True) -> Sample:
    """Draw image ``index`` of ``split`` for dataset ``seed``: deterministic, no files.

    ``backgrounds`` overrides the split's rule (``"matched"``, ``"swapped"`` or
    ``"random"``); the *oracle* control trains on ``train`` with ``"random"`` — the
    same animals as ``train``, on backgrounds independent of their class.
    ``animal=False`` draws the same image without its animal: the same background and sensor noise, every pixel
    the animal does not touch identical, the label and the mask those of the animal that would stand there (the
    intervention "remove the animal", which no fill of the mask achieves: a blur keeps the animal's colours).
    """
    split = _check_split(split)
    image_size = _check_image_size(image_size)
    animal = _check_bool("animal", animal)
    index = _check_int("index", index, 0)
    seed = _check_int("seed", seed, 0)
    rule, placement = _SPLIT_RULES[split]
    if backgrounds is not None:
        if backgrounds not in _BACKGROUND_RULES:
            raise ValueError(f"unknown backgrounds rule {backgrounds!r}; choose one of {_BACKGROUND_RULES}")
        rule = backgrounds

    rng = np.random.default_rng([seed, _SPLIT_IDS[split], index])
    label = index % 2  # balanced in every prefix of a split
    coin = int(rng.random() < 0.5)  # always drawn, so the animal is the same under any rule
    if rule == "matched":
        background = SEA if label == ORCA else LAND
    elif rule == "swapped":
        background = LAND if label == ORCA else SEA
    else:
        background = coin

    centre, angle, scale, flip = _pose(rng, placement)
    cv = _Canvas(image_size, centre, angle, scale, flip)
    bg_rng, animal_rng, noise_rng = (np.random.default_rng(s) for s in rng.integers(0, 2**63, 3))
    bg = (_sea if background == SEA else _land)(cv.u, cv.v, bg_rng)
    # the animal fits in a disc of radius 0.34 (local units): draw it only there
    box = cv.window(0.0, 0.0, 0.34)
    col, alpha = (_orca if label == ORCA else _leopard)(cv.crop(*box), animal_rng)
    img = bg.copy()
    if animal:
        img[box] = _mix(bg[box], col, alpha)
    full_alpha = np.zeros_like(cv.u)
    full_alpha[box] = alpha
    img = img + noise_rng.normal(0, 0.015, img.shape).astype(np.float32)  # sensor noise
    img8 = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)  # stored like a photo: 8 bits
    image = torch.from_numpy(np.ascontiguousarray(img8.transpose(2, 0, 1))).float().div_(255)
    mask = torch.from_numpy(full_alpha >= 0.5)
    return Sample(image, label, mask, background)


# --------------------------------------------------------------------------- datasets
class SyntheticOrcaLeopard(Dataset):
    """A split of the synthetic dataset as a ``torch.utils.data.Dataset``.

    ``dataset[i]`` returns ``(image, label)``; ``dataset.sample(i)`` the full
    :class:`Sample` (with mask and background). Images are drawn on demand.
    """

    def __init__(self, split: str = "train", n: int | None = None, image_size: int = DEFAULT_IMAGE_SIZE,
                 seed: int = 0, backgrounds: str | None = None, animal: bool = True):
        self.split = _check_split(split)
        self.animal = _check_bool("animal", animal)
        self.n = SPLIT_SIZES[split] if n is None else _check_int("n", n, 1)
        self.image_size = _check_image_size(image_size)
        self.seed = _check_int("seed", seed, 0)
        if backgrounds is not None and backgrounds not in _BACKGROUND_RULES:
            raise ValueError(f"unknown backgrounds rule {backgrounds!r}; choose one of {_BACKGROUND_RULES}")
        self.backgrounds = backgrounds

    def __len__(self) -> int:
        return self.n

    def sample(self, index: int) -> Sample:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int; got {type(index).__name__}")
        if not -self.n <= index < self.n:
            raise IndexOutOfRange(f"index {index} is out of range for split {self.split!r} with {self.n} images")
        return render_sample(self.split, int(index) % self.n, self.seed, self.image_size, self.backgrounds, self.animal)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        s = self.sample(index)
        return s.image, s.label

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        return (self[i] for i in range(self.n))

    def to_tensors(self) -> SplitData:
        """Draw every image and stack them (a 2,000-image split at 64 px takes about a second)."""
        samples = [self.sample(i) for i in range(self.n)]
        return SplitData(
            split=self.split,
            images=torch.stack([s.image for s in samples]),
            labels=torch.tensor([s.label for s in samples], dtype=torch.int64),
            masks=torch.stack([s.mask for s in samples]),
            backgrounds=torch.tensor([s.background for s in samples], dtype=torch.int64),
        )


def load_split(split: str, n: int | None = None, image_size: int = DEFAULT_IMAGE_SIZE, seed: int = 0,
               backgrounds: str | None = None, animal: bool = True) -> SplitData:
    """The first ``n`` images of ``split`` (default: :data:`SPLIT_SIZES`) as stacked tensors; ``animal=False``: the
    same images with their animals removed (:func:`render_sample`)."""
    return SyntheticOrcaLeopard(split, n, image_size, seed, backgrounds, animal).to_tensors()


def load_view(view: str, n: int | None = None, image_size: int = DEFAULT_IMAGE_SIZE, seed: int = 0) -> SplitData:
    """A view of :data:`OFF_CENTRE_VIEWS` as stacked tensors: its split's images under its background rule
    (``SplitData.split`` is the view's name)."""
    if view not in OFF_CENTRE_VIEWS:
        raise ValueError(f"unknown view {view!r}; choose one of {', '.join(OFF_CENTRE_VIEWS)} "
                         f"(or a split: {', '.join(SPLITS)}, with load_split)")
    split, rule = OFF_CENTRE_VIEWS[view]
    data = load_split(split, n, image_size, seed, backgrounds=rule)
    data.split = view
    return data


# --------------------------------------------------------------------------- CLI
def preview(split: str, out: str | Path, n: int = 24, image_size: int = DEFAULT_IMAGE_SIZE,
            seed: int = 0, columns: int = 8) -> Path:
    """Write a labelled grid of the first ``n`` images of ``split`` to ``out`` (PNG or PDF)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = SyntheticOrcaLeopard(split, n, image_size, seed)
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.95 * rows + 0.35), squeeze=False,
                             layout="constrained")  # room for every title and the suptitle, whatever the grid
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in zip(range(n), axes.flat):
        s = data.sample(i)
        ax.imshow(s.image.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(f"{CLASSES[s.label]} / {BACKGROUNDS[s.background]}", fontsize=8)
    fig.suptitle(f"split {split!r}: class / background", fontsize=10)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, metadata={"Software": None} if out.suffix == ".png" else None)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.data", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("preview", help="write a labelled grid of a split to an image file")
    p.add_argument("--split", default="train", choices=SPLITS)
    p.add_argument("--out", required=True, help="output file (.png or .pdf)")
    p.add_argument("--n", type=int, default=24, help="number of images (default 24)")
    p.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE)
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    args = parser.parse_args(argv)
    try:
        out = preview(args.split, args.out, args.n, args.image_size, args.seed)
    except (ValueError, TypeError, OSError) as e:
        parser.error(str(e))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
