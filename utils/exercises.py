"""Checkers for the notebooks' exercises: run the learner's function beside the reference and say what is wrong.

Each exercise in a notebook is a markdown heading "Exercise …" and a code cell
marked ``# YOUR CODE HERE`` whose stub raises ``NotImplementedError``; the next
cell calls its checker, e.g. ``check_saliency(saliency_map)``. A checker runs the
function on several models and inputs (the course model and a torchvision
``resnet18(weights=None)``), next to the reference in :mod:`utils.explain`, and
prints one verdict:

* not attempted yet (the stub still raises): the notebook carries on with the
  reference, so it runs top to bottom as shipped;
* a specific mistake: wrong type, shape, dtype or device; the model or the
  input left changed (train mode, ``requires_grad``, ``.grad`` on the weights,
  hooks); or the output equals what a typical mistake computes (forgot |·|,
  the mean instead of the max over channels, the probability instead of the
  logit, the wrong class, channels reduced before averaging, …);
* otherwise the largest absolute and relative error and where it is (which
  model, image and pixel);
* correct.

A checker never raises for the learner's mistakes (the notebook goes on); it
returns a :class:`CheckResult` (truthy when correct), which a notebook shows as the cell's result. The solutions are in
``solutions/`` and tests feed every checker the solution and each typical mistake
(CS231n's TODO-cell pattern: checked against reference outputs with a relative error).
"""
from __future__ import annotations

import contextlib
import io
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .explain.saliency import input_gradients

__all__ = ["CheckResult", "Case", "Mistake", "check", "check_saliency", "check_smoothgrad", "check_occlusion",
           "check_occlusion_batched", "check_largest_drops", "default_cases", "RTOL"]

#: The relative error (largest |difference| ÷ largest |reference|) below which an answer is correct: float32 noise
#: from a different but equivalent order of operations stays far below it.
RTOL = 1e-4


@dataclass
class CheckResult:
    """A checker's verdict: ``status`` is ``"correct"``, ``"not attempted"`` or ``"wrong"``; ``message`` says why."""
    exercise: str
    status: str
    message: str

    def __bool__(self) -> bool:
        return self.status == "correct"

    def __repr__(self) -> str:  # what a notebook shows when the check is a cell's last line
        mark = {"correct": "✓", "not attempted": "·", "wrong": "✗"}[self.status]
        return f"{mark} {self.exercise}: {self.message}"


@dataclass
class Case:
    """One model and batch the learner's function runs on, with the arguments it receives."""
    name: str
    model: nn.Module
    images: torch.Tensor
    target: torch.Tensor
    extra: dict[str, Any]


@dataclass
class Mistake:
    """A typical mistake: what it computes on a case, and the message when the learner's output equals that."""
    message: str
    compute: Callable[[Case], torch.Tensor]


def _resnet() -> nn.Module:
    from torchvision.models import resnet18
    torch.manual_seed(0)
    return resnet18(weights=None, num_classes=2).eval()


def default_cases(extra: dict[str, Any] | None = None, n: int = 3) -> list[Case]:
    """The course's shipped model on ``test_swapped`` images and a randomly initialised ResNet-18 on random 32-px
    images; the target is the predicted class on even images and the other class on odd ones, so "explained the
    prediction" and "explained the other class" each differ from the right answer and from each other."""
    from .data import load_split
    from .models import load_shipped
    course, _ = load_shipped()
    images = load_split("test_swapped", n=n).images
    gen = torch.Generator().manual_seed(0)
    rand = torch.rand(n, 3, 32, 32, generator=gen)
    cases = []
    for name, model, x in (("the course model", course.eval(), images), ("resnet18(weights=None)", _resnet(), rand)):
        with torch.no_grad():
            pred = model(x).argmax(1)
        flip = torch.tensor([i % 2 for i in range(n)])  # the predicted class for even images, the other for odd ones
        cases.append(Case(name, model, x, (pred + flip) % 2, dict(extra or {})))
    return cases


# ----------------------------------------------------------------------------- the state a function must leave
def _state(model: nn.Module) -> dict[str, Any]:
    return {"training": [m.training for m in model.modules()],
            "requires_grad": [p.requires_grad for p in model.parameters()],
            "grads": [p.grad is not None for p in model.parameters()],
            "hooks": sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
                         + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())}


def _state_problem(before: dict[str, Any], after: dict[str, Any]) -> str | None:
    if after["training"] != before["training"]:
        return ("your function left the model in training mode (or changed a module's mode): BatchNorm then uses the "
                "batch's statistics and the map changes with the batch. Do not call model.train(); if you switch "
                "modes, restore them before returning")
    if after["requires_grad"] != before["requires_grad"]:
        return ("your function changed requires_grad of the model's weights and did not restore it; you only need "
                "the gradient with respect to the input (set requires_grad on a copy of the images, not the weights)")
    if any(a and not b for a, b in zip(after["grads"], before["grads"])):
        return ("gradients were left behind in the model's weights (.grad is set after your function): "
                "loss.backward() also fills the weights' .grad; use torch.autograd.grad(score, x), which returns the "
                "input gradient only, or clear them (model.zero_grad(set_to_none=True))")
    if after["hooks"] != before["hooks"]:
        return ("your function left hooks registered on the model: keep the handle that register_*_hook returns "
                "and call handle.remove() (in a finally: block, so an error does not leave them behind)")
    return None


def _where(case: Case, diff: torch.Tensor) -> str:
    flat = int(diff.flatten().argmax())
    idx = []
    for size in reversed(diff.shape):
        idx.append(flat % size)
        flat //= size
    idx = idx[::-1]
    pixel = f"pixel (row {idx[-2]}, column {idx[-1]})" if diff.dim() >= 3 else f"index {idx}"
    return f"{case.name}, image {idx[0]}, {pixel}"


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = RTOL) -> bool:
    if a.shape != b.shape:
        return False
    scale = float(b.abs().max()) or 1.0
    return float((a - b).abs().max()) <= rtol * scale


def check(exercise: str, fn: Callable[..., Any], call: Callable[[Callable[..., Any], Case], Any],
          reference: Callable[[Case], torch.Tensor], mistakes: Sequence[Mistake], cases: Sequence[Case],
          reference_name: str, shape_hints: Callable[[tuple, tuple], str | None] | None = None,
          verbose: bool = False, post: Callable[[Case], str | None] | None = None) -> CheckResult:
    """Run ``call(fn, case)`` on every case and compare with ``reference(case)``; return the verdict (a notebook
    shows it as the cell's result; ``verbose`` prints it too).

    ``mistakes`` are tried in order when the output is wrong; ``shape_hints(got, expected)`` may name the mistake
    behind a wrong shape; ``post(case)``, run when the values are right, may still object (e.g. to how they were
    computed). The first case that fails decides the message.
    """
    def verdict(status: str, message: str) -> CheckResult:
        result = CheckResult(exercise, status, message)
        if verbose:
            print(repr(result))
        return result

    if not callable(fn):
        return verdict("wrong", f"expected a function; got {type(fn).__name__}")
    for case in cases:
        images_before = case.images.clone()
        before = _state(case.model)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                out = call(fn, case)
        except NotImplementedError:
            return verdict("not attempted", f"not attempted yet. The notebook carries on with the reference "
                                            f"({reference_name}); write your version in the cell above and run both cells again.")
        except Exception as e:  # the learner's bug: report it, do not stop the notebook
            frame = traceback.extract_tb(e.__traceback__)[-1]
            return verdict("wrong", f"your function raised {type(e).__name__}: {e} (line {frame.lineno}: "
                                    f"{(frame.line or '').strip()}) on {case.name}")
        problem = _state_problem(before, _state(case.model))
        if problem:
            return verdict("wrong", problem)
        if case.images.requires_grad or not torch.equal(case.images, images_before):
            return verdict("wrong", "your function changed the images it was given (their values or requires_grad): "
                                    "work on a copy, e.g. x = images.detach().clone().requires_grad_(True)")
        expected = reference(case)
        if not isinstance(out, torch.Tensor):
            return verdict("wrong", f"expected a torch.Tensor of shape {list(expected.shape)}; got {type(out).__name__}")
        if out.requires_grad:
            return verdict("wrong", "the returned map still requires grad (it is attached to the graph): return "
                                    "map.detach()")
        if out.device != expected.device:
            return verdict("wrong", f"the map is on {out.device}, the images on {expected.device}: compute it on the "
                                    f"images' device and do not move it")
        if tuple(out.shape) != tuple(expected.shape):
            hint = shape_hints(tuple(out.shape), tuple(expected.shape)) if shape_hints else None
            return verdict("wrong", f"wrong shape {list(out.shape)} on {case.name}, expected {list(expected.shape)}"
                                    + (f": {hint}" if hint else ""))
        if out.dtype != expected.dtype:
            return verdict("wrong", f"wrong dtype {out.dtype}, expected {expected.dtype} (the images' dtype)")
        if not bool(torch.isfinite(out).all()):
            return verdict("wrong", f"the map has NaN or infinite values on {case.name}")
        if _close(out, expected):
            objection = post(case) if post else None
            if objection:
                return verdict("wrong", objection)
            continue
        for mistake in mistakes:
            candidate = mistake.compute(case)
            if _close(out, candidate) and not _close(candidate, expected):
                return verdict("wrong", mistake.message)
        diff = (out - expected).abs()
        rel = float(diff.max()) / (float(expected.abs().max()) or 1.0)
        return verdict("wrong", f"not equal to the reference: largest absolute error {float(diff.max()):.3g}, "
                                f"relative {rel:.3g} (allowed {RTOL:g}), at {_where(case, diff)}")
    return verdict("correct", f"correct: equal to the reference ({reference_name}) on "
                              f"{len(cases)} models and {sum(c.images.shape[0] for c in cases)} images "
                              f"(relative error below {RTOL:g}).")


# ----------------------------------------------------------------------------- notebook 01: saliency
def _grad(case: Case, images: torch.Tensor | None = None, target: torch.Tensor | None = None,
          score: str = "logit") -> torch.Tensor:
    """∂S/∂x per channel ``[N, 3, H, W]``, the model left as it was."""
    from .explain._common import model_state_preserved
    with model_state_preserved(case.model):
        g, _ = input_gradients(case.model, case.images if images is None else images,
                               case.target if target is None else target, score)
    return g.detach()


def _predicted(case: Case, images: torch.Tensor | None = None) -> torch.Tensor:
    with torch.no_grad():
        return case.model(case.images if images is None else images).argmax(1)


def _channel_hint(got: tuple, expected: tuple) -> str | None:
    if len(got) == 4 and got[1] == 3 and got[0] == expected[0] and got[2:] == expected[1:]:
        return "one value per pixel is wanted: reduce the 3 colour channels with the max over dimension 1 (.amax(1))"
    if len(got) == 3 and got[0] == expected[0] * 3:
        return "the batch dimension is 3 times too long: reduce over the channel dimension (1), not the batch"
    if len(got) == 2 and got == expected[1:]:
        return "one map per image is wanted ([N, H, W]): do not reduce over the batch"
    return None


SALIENCY_MISTAKES = [
    Mistake("you forgot the absolute value: the paper's map is max over channels of |∂S/∂x| (negative gradients "
            "matter as much as positive ones)", lambda c: _grad(c).amax(1)),
    Mistake("you took the mean over the colour channels; the paper takes the max of |∂S/∂x| over channels",
            lambda c: _grad(c).abs().mean(1)),
    Mistake("you summed over the colour channels; the paper takes the max of |∂S/∂x| over channels",
            lambda c: _grad(c).abs().sum(1)),
    Mistake("you differentiated the softmax probability; the paper (and this course) differentiates the class score "
            "before the softmax, the logit", lambda c: _grad(c, score="probability").abs().amax(1)),
    Mistake("you explained the model's predicted class instead of `target`: differentiate the logit of the class "
            "you are given (logits[range(N), target])", lambda c: _grad(c, target=_predicted(c)).abs().amax(1)),
    Mistake("you explained the other class: the logit to differentiate is logits[range(N), target]",
            lambda c: _grad(c, target=1 - c.target).abs().amax(1)),
    Mistake("you took the gradient of the sum of all logits, not of the target class's logit",
            lambda c: (_grad(c, target=torch.zeros_like(c.target)) + _grad(c, target=torch.ones_like(c.target))
                       ).abs().amax(1)),
]


def check_saliency(fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
                   cases: Sequence[Case] | None = None, verbose: bool = False) -> CheckResult:
    """Exercise 01.1: ``fn(model, images [N, 3, H, W], target [N]) → [N, H, W]``, max over channels of
    |∂ logit_target / ∂x| (Simonyan et al. 2014, eq. 1–3), the model and the images left as they were."""
    from .explain import saliency
    return check("vanilla saliency", fn, lambda f, c: f(c.model, c.images, c.target),
                 lambda c: saliency(c.model, c.images, c.target), SALIENCY_MISTAKES,
                 default_cases() if cases is None else cases, "utils.explain.saliency", _channel_hint, verbose)


# ----------------------------------------------------------------------------- notebook 01: SmoothGrad
def _noise(case: Case) -> torch.Tensor:
    return case.extra["noise"]


def _noisy_grads(case: Case, score: str = "logit") -> torch.Tensor:
    """Per-channel gradients at every noisy copy: ``[n_samples, N, 3, H, W]``."""
    return torch.stack([_grad(case, images=case.images + eps, score=score) for eps in _noise(case)])


SMOOTHGRAD_MISTAKES = [
    Mistake("you took the max over channels before averaging over the noisy copies; SmoothGrad (as this course and "
            "Captum's NoiseTunnel compute it) averages |∂S/∂x| per channel first, then takes the max over channels",
            lambda c: _noisy_grads(c).abs().amax(2).mean(0)),
    Mistake("you averaged the signed gradients and took |·| afterwards; average |∂S/∂x| of each noisy copy",
            lambda c: _noisy_grads(c).mean(0).abs().amax(1)),
    Mistake("you forgot the absolute value: average |∂S/∂x| over the noisy copies, then the max over channels",
            lambda c: _noisy_grads(c).mean(0).amax(1)),
    Mistake("you summed over the noisy copies instead of averaging (divide by the number of copies)",
            lambda c: _noisy_grads(c).abs().sum(0).amax(1)),
    Mistake("you used only the first noisy copy: average over all of them (dimension 0 of `noise`)",
            lambda c: _noisy_grads(c)[0].abs().amax(1)),
    Mistake("you computed the saliency of the clean image: add each noise sample to the images first",
            lambda c: _grad(c).abs().amax(1)),
    Mistake("you explained the model's prediction on each noisy copy instead of `target`",
            lambda c: torch.stack([_grad(c, images=c.images + eps, target=_predicted(c, c.images + eps))
                                   for eps in _noise(c)]).abs().mean(0).amax(1)),
]


def _smoothgrad_cases(cases: Sequence[Case] | None, n_samples: int = 4, sigma: float = 0.1) -> list[Case]:
    cases = default_cases() if cases is None else list(cases)
    gen = torch.Generator().manual_seed(1)
    for c in cases:
        c.extra = {**c.extra, "noise": sigma * torch.randn((n_samples,) + tuple(c.images.shape), generator=gen)}
    return cases


def check_smoothgrad(fn: Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                     cases: Sequence[Case] | None = None, verbose: bool = False) -> CheckResult:
    """Exercise 01.2: ``fn(model, images, target, noise [n, N, 3, H, W]) → [N, H, W]``: the mean over the n noisy
    copies ``images + noise[k]`` of |∂ logit_target / ∂x| per channel, then the max over channels (Smilkov et al.
    2017, eq. 3; :func:`utils.explain.smoothgrad` draws ``noise`` itself)."""
    def reference(c: Case) -> torch.Tensor:
        return _noisy_grads(c).abs().mean(0).amax(1)
    return check("SmoothGrad", fn, lambda f, c: f(c.model, c.images, c.target, _noise(c)), reference,
                 SMOOTHGRAD_MISTAKES, _smoothgrad_cases(cases), "utils.explain.smoothgrad", _channel_hint, verbose)


# ----------------------------------------------------------------------------- notebook 02: occlusion
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
    from .explain import occlusion
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
    from .explain import occlusion
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
