"""Checkers of notebook 02's exercises: occlusion, batched occlusion, the largest drops."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from .framework import CheckResult, Case, Mistake, _channel_hint, _predicted, check, default_cases


class _Counting(nn.Module):
    """The model, counting its forward passes (what batching saves)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model(x)


def _occlusion_cases(cases: Sequence[Case] | None) -> list[Case]:
    """The course model with a 16-px patch every 8 px (49 windows); the 32-px ResNet case with an 8-px patch every
    5 px, so the last window is clipped at the border."""
    cases = default_cases() if cases is None else list(cases)
    for c, (patch, stride) in zip(cases, ((16, 8), (8, 5))):
        c.extra = {**c.extra, "patch": patch, "stride": stride, "fill": 0.5}
    return cases


def _occlusion(case: Case, *, target: torch.Tensor | None = None, fill: float | None = None, sign: float = 1.0,
               reduce: str = "mean", clip_last: bool = True, score: str = "logit") -> torch.Tensor:
    """Occlusion written out plainly, with one knob per typical mistake (the defaults are the reference's
    convention, which :func:`utils.explain.occlusion` follows and the tests compare)."""
    model, x = case.model, case.images
    t = case.target if target is None else target
    p, s = case.extra["patch"], case.extra["stride"]
    value = case.extra["fill"] if fill is None else fill
    n, _, h, w = x.shape
    last = -(-(h - p) // s) * s if clip_last else (h - p) // s * s
    starts = range(0, last + 1, s)
    total, count = torch.zeros(n, h, w), torch.zeros(h, w)
    with torch.no_grad():
        def scores(images: torch.Tensor) -> torch.Tensor:
            out = model(images)
            out = out.softmax(1) if score == "probability" else out
            return out[torch.arange(n), t]
        clean = scores(x)
        for top in starts:
            for left in starts:
                occluded = x.clone()
                occluded[:, :, top:top + p, left:left + p] = value
                drop = sign * (clean - scores(occluded))
                if reduce == "last":
                    total[:, top:top + p, left:left + p] = drop.view(n, 1, 1)
                else:
                    total[:, top:top + p, left:left + p] += drop.view(n, 1, 1)
                count[top:top + p, left:left + p] += 1
    if reduce == "mean":
        return total / count.clamp(min=1)
    return total


OCCLUSION_MISTAKES = [
    Mistake("wrong sign: the map is the drop of the score, S(x) − S(x with the window filled); you computed the "
            "rise", lambda c: _occlusion(c, sign=-1.0)),
    Mistake("you summed the drops of the windows covering each pixel; take their mean (divide by how many windows "
            "cover the pixel), or pixels covered more often look more important", lambda c: _occlusion(c, reduce="sum")),
    Mistake("each pixel keeps only the last window's drop (you assigned instead of accumulating): add every "
            "covering window's drop and divide by their number", lambda c: _occlusion(c, reduce="last")),
    Mistake("your windows stop before the border: when the stride does not divide H − patch, the last window "
            "starts at ceil((H − patch) / stride) · stride and is clipped by the image edge (Captum's convention)",
            lambda c: _occlusion(c, clip_last=False)),
    Mistake("you filled the windows with 0 (black); fill them with `fill` (0.5, mid-grey)", lambda c: _occlusion(c, fill=0.0)),
    Mistake("you used the softmax probability; the course measures the drop of the logit",
            lambda c: _occlusion(c, score="probability")),
    Mistake("you measured the predicted class's score instead of `target`'s", lambda c: _occlusion(c, target=_predicted(c))),
    Mistake("you measured the other class's score: use logits[range(N), target]", lambda c: _occlusion(c, target=1 - c.target)),
]


def _occlusion_reference(c: Case) -> torch.Tensor:
    from ..explain import occlusion
    return occlusion(c.model, c.images, c.target, patch=c.extra["patch"], stride=c.extra["stride"], fill=c.extra["fill"])


def _call_counting(f: Callable[..., Any], c: Case) -> Any:
    counting = _Counting(c.model)
    out = f(counting, c.images, c.target, patch=c.extra["patch"], stride=c.extra["stride"], fill=c.extra["fill"])
    c.extra["calls"] = counting.calls
    return out


def check_occlusion(fn: Callable[..., torch.Tensor], cases: Sequence[Case] | None = None,
                    verbose: bool = False) -> CheckResult:
    """Exercise 02.1: ``fn(model, images, target, patch, stride, fill) → [N, H, W]``, the mean drop of the target
    logit over the windows covering each pixel (Zeiler & Fergus 2014, section 4.2; :func:`utils.explain.occlusion`)."""
    return check("occlusion", fn, _call_counting, _occlusion_reference, OCCLUSION_MISTAKES,
                 _occlusion_cases(cases), "utils.explain.occlusion", _channel_hint, verbose)


def _batched(c: Case) -> str | None:
    n = c.images.shape[0]
    if c.extra["calls"] > 2 * n:
        return (f"the values are right, but not batched: {c.extra['calls']} forward passes for {n} images on "
                f"{c.name}. Stack every occluded copy of an image into one batch [windows, 3, H, W] and run the model "
                f"once per image (plus once for the clean images)")
    return None


def check_occlusion_batched(fn: Callable[..., torch.Tensor], cases: Sequence[Case] | None = None,
                            verbose: bool = False) -> CheckResult:
    """Exercise 02.2: the same map as :func:`check_occlusion`'s, with all windows of an image in one forward pass
    (at most two passes per image are accepted)."""
    return check("batched occlusion", fn, _call_counting, _occlusion_reference, OCCLUSION_MISTAKES,
                 _occlusion_cases(cases), "utils.explain.occlusion", _channel_hint, verbose, post=_batched)


# ----------------------------------------------------------------------------- notebook 02: a small task
def _drops(case: Case, fills: tuple = (0.5, "blur"), reduce: str = "max", patch: int = 16, stride: int = 8
           ) -> torch.Tensor:
    from ..explain import occlusion
    maps = [occlusion(case.model, case.images, case.target, patch=patch, stride=stride, fill=f) for f in fills]
    return torch.stack([m.amax((1, 2)) if reduce == "max" else (m.amin((1, 2)) if reduce == "min" else m.mean((1, 2)))
                        for m in maps])


LARGEST_DROPS_MISTAKES = [
    Mistake("the rows are the wrong way round: row 0 is the grey fill (0.5), row 1 the blur", lambda c: _drops(c, ("blur", 0.5))),
    Mistake("you took the smallest value of each map; the question is about the largest drop (.amax((1, 2)))",
            lambda c: _drops(c, reduce="min")),
    Mistake("you averaged each map; the question is about its largest value (.amax((1, 2)))",
            lambda c: _drops(c, reduce="mean")),
    Mistake("row 1 used the image's mean colour; the task compares grey with fill=\"blur\"",
            lambda c: _drops(c, (0.5, "mean"))),
    Mistake("use the task's window: patch 16, stride 8", lambda c: _drops(c, patch=8, stride=4)),
]


def check_largest_drops(fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
                        cases: Sequence[Case] | None = None, verbose: bool = False) -> CheckResult:
    """Task 02.3: ``fn(model, images, target) → [2, N]``: each image's largest occlusion drop (patch 16, stride 8)
    with the grey fill (row 0) and with the blur fill (row 1), computed with :func:`utils.explain.occlusion`."""
    def hint(got: tuple, expected: tuple) -> str | None:
        return "one row per fill, one column per image: stack the two [N] results (torch.stack)" \
            if got == expected[::-1] else None
    return check("largest drops", fn, lambda f, c: f(c.model, c.images, c.target), _drops, LARGEST_DROPS_MISTAKES,
                 default_cases() if cases is None else cases, "occlusion(...).amax((1, 2)) per fill", hint, verbose)
