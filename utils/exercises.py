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
           "check_occlusion_batched", "check_largest_drops", "check_cam", "check_logits_from_cams", "check_decision_map", "check_gradcam",
           "check_hirescam", "check_kernel", "check_penalty", "default_cases", "RTOL"]

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


def default_cases(extra: dict[str, Any] | None = None, n: int = 3, size: int = 32) -> list[Case]:
    """The course's shipped model on ``test_swapped`` images and a randomly initialised ResNet-18 on random
    ``size``-px images (32: its last features are 1 × 1; 128 gives 4 × 4 for the CAM exercises); the target is the predicted class on even images and the other class on odd ones, so "explained the
    prediction" and "explained the other class" each differ from the right answer and from each other."""
    from .data import load_split
    from .models import load_shipped
    course, _ = load_shipped()
    images = load_split("test_swapped", n=n).images
    gen = torch.Generator().manual_seed(0)
    rand = torch.rand(n, 3, size, size, generator=gen)
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
    if diff.dim() == 2 and case.extra.get("grid"):  # one map, e.g. a kernel
        return f"{case.name}, row {idx[0]}, column {idx[1]}"
    pixel = f"pixel (row {idx[-2]}, column {idx[-1]})" if diff.dim() >= 3 else (
        f"class {idx[1]}" if diff.dim() == 2 else "")
    return f"{case.name}, image {idx[0]}" + (f", {pixel}" if pixel else "")


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = RTOL) -> bool:
    """Equal to ``rtol`` of ``b``'s largest magnitude; NaN in the same places counts as equal (a mistake that
    divides by zero where the learner's answer does too)."""
    if a.shape != b.shape:
        return False
    nan_a, nan_b = torch.isnan(a), torch.isnan(b)
    if nan_a.any() or nan_b.any():
        if not torch.equal(nan_a, nan_b) or bool(nan_a.all()):
            return False
        a, b = a[~nan_a], b[~nan_b]
    scale = float(b.abs().max()) or 1.0
    return float((a - b).abs().max()) <= rtol * scale


def check(exercise: str, fn: Callable[..., Any], call: Callable[[Callable[..., Any], Case], Any],
          reference: Callable[[Case], torch.Tensor], mistakes: Sequence[Mistake], cases: Sequence[Case],
          reference_name: str, shape_hints: Callable[[tuple, tuple], str | None] | None = None,
          verbose: bool = False, post: Callable[[Case], str | None] | None = None,
          diagnose: Callable[[Callable[..., Any], Case], str | None] | None = None,
          summary: str | None = None) -> CheckResult:
    """Run ``call(fn, case)`` on every case and compare with ``reference(case)``; return the verdict (a notebook
    shows it as the cell's result; ``verbose`` prints it too).

    ``mistakes`` are tried in order when the output is wrong; ``shape_hints(got, expected)`` may name the mistake
    behind a wrong shape; ``post(case)``, run when the values are right, may still object (e.g. to how they were
    computed); ``diagnose(fn, case)``, run when they are wrong and match no mistake, may name a property the
    answer lacks (e.g. scale invariance). ``summary`` replaces "on 2 models and 6 images" in the verdict. The first
    case that fails decides the message.
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
            named = [m.message for m in mistakes if _close(out, m.compute(case))]
            return verdict("wrong", named[0] if named else f"the map has NaN or infinite values on {case.name}")
        if _close(out, expected):
            objection = post(case) if post else None
            if objection:
                return verdict("wrong", objection)
            continue
        for mistake in mistakes:
            candidate = mistake.compute(case)
            if _close(out, candidate) and not _close(candidate, expected):
                return verdict("wrong", mistake.message)
        found = diagnose(fn, case) if diagnose else None
        if found:
            return verdict("wrong", found)
        diff = (out - expected).abs()
        rel = float(diff.max()) / (float(expected.abs().max()) or 1.0)
        return verdict("wrong", f"not equal to the reference: largest absolute error {float(diff.max()):.3g}, "
                                f"relative {rel:.3g} (allowed {RTOL:g}), at {_where(case, diff)}")
    where = summary or f"{len(cases)} models and {sum(c.images.shape[0] for c in cases)} images"
    return verdict("correct", f"correct: equal to the reference ({reference_name}) on {where} "
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


# ----------------------------------------------------------------------------- notebook 03: CAM
def _gap_parts(case: Case) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(features [N, K, h, w] before the global average pooling, classifier weight [C, K], bias [C])``, cached."""
    if "features" not in case.extra:
        from .explain._common import model_state_preserved
        from .explain._layers import capture, find_gap_head
        pool, linear = find_gap_head(case.model)
        with model_state_preserved(case.model), torch.no_grad(), capture(pool, "input") as store:
            case.extra["logits"] = case.model(case.images).detach()
        case.extra.update(features=store[-1].detach(), weight=linear.weight.detach().clone(),
                          bias=linear.bias.detach().clone())
    return case.extra["features"], case.extra["weight"], case.extra["bias"]


def _cam(case: Case, target: torch.Tensor | None = None) -> torch.Tensor:
    f, w, _ = _gap_parts(case)
    return torch.einsum("nk,nkhw->nhw", w[case.target if target is None else target], f)


def _cam_cases(cases: Sequence[Case] | None) -> list[Case]:
    """The course model (8 × 8 features) and the ResNet-18 on 128-px images (4 × 4 features after layer4)."""
    return default_cases(size=128) if cases is None else list(cases)


def _cam_hint(got: tuple, expected: tuple) -> str | None:
    if len(got) == 4 and got[0] == expected[0] and got[2:] == expected[1:]:
        return ("one map per image is wanted: weigh the K feature maps by the target class's weights and sum over "
                "the channel dimension (1); with all classes' maps you get [N, C, h, w]: index the weights with "
                "target (weight[target] is [N, K])")
    if len(got) == 3 and got[0] == expected[0] and got[1:] != expected[1:]:
        return "keep the features' resolution (h × w); the notebook upsamples the map to the image afterwards"
    return None


CAM_MISTAKES = [
    Mistake("you applied a ReLU: the CAM is signed (negative cells are evidence against the class), and only the "
            "signed map adds up to the logit", lambda c: _cam(c).clamp(min=0)),
    Mistake("you averaged over the K channels: the map is the weighted *sum* Σ_k w_ck f_k (the only average is "
            "the pooling's, over the cells, which exercise 2 applies)", lambda c: _cam(c) / _gap_parts(c)[0].shape[1]),
    Mistake("you divided by h·w: the map is Σ_k w_ck f_k; the 1/hw belongs to the pooling (the mean over cells), "
            "which exercise 2 applies", lambda c: _cam(c) / (_gap_parts(c)[0].shape[2] * _gap_parts(c)[0].shape[3])),
    Mistake("you averaged the feature maps without the class weights: weigh channel k by w[target, k]",
            lambda c: _gap_parts(c)[0].mean(1)),
    Mistake("you summed the feature maps without the class weights: weigh channel k by w[target, k]",
            lambda c: _gap_parts(c)[0].sum(1)),
    Mistake("you used the other class's weights: the map of class c uses row c of the weight, weight[target]",
            lambda c: _cam(c, 1 - c.target)),
    Mistake("you summed the weights of all classes: use the target class's row, weight[target]",
            lambda c: torch.einsum("k,nkhw->nhw", _gap_parts(c)[1].sum(0), _gap_parts(c)[0])),
]


def check_cam(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
              cases: Sequence[Case] | None = None, verbose: bool = False) -> CheckResult:
    """Exercise 03.1: ``fn(features [N, K, h, w], weight [C, K], target [N]) → [N, h, w]``, the class activation
    map ``M_c = Σ_k w_ck f_k`` of each image's target class (Zhou et al. 2016, eq. 2), signed, at the features'
    resolution (:func:`utils.explain.cam` with ``resolution="features"``)."""
    from .explain import cam

    def call(f: Callable[..., Any], c: Case) -> Any:
        feats, weight, _ = _gap_parts(c)
        return f(feats.clone(), weight.clone(), c.target.clone())
    return check("CAM", fn, call, lambda c: cam(c.model, c.images, c.target, resolution="features"), CAM_MISTAKES,
                 _cam_cases(cases), "utils.explain.cam", _cam_hint, verbose)


def _all_cams(case: Case) -> torch.Tensor:
    f, w, _ = _gap_parts(case)
    return torch.einsum("ck,nkhw->nchw", w, f)


LOGIT_MISTAKES = [
    Mistake("you forgot the bias: y_c = mean(M_c) + b_c", lambda c: _all_cams(c).mean((2, 3))),
    Mistake("you summed over the cells: the pooling is an average, so y_c = mean over the h·w cells of M_c, plus b_c",
            lambda c: _all_cams(c).sum((2, 3)) + _gap_parts(c)[2]),
    Mistake("you took the largest cell: the pooling averages, y_c = mean(M_c) + b_c",
            lambda c: _all_cams(c).amax((2, 3)) + _gap_parts(c)[2]),
    Mistake("you averaged only the positive part of the maps: the negative cells count too (the identity holds for "
            "the signed map)", lambda c: _all_cams(c).clamp(min=0).mean((2, 3)) + _gap_parts(c)[2]),
    Mistake("the classes' biases are the wrong way round: class c gets bias[c]",
            lambda c: _all_cams(c).mean((2, 3)) + _gap_parts(c)[2].flip(0)),
]


def check_logits_from_cams(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                           cases: Sequence[Case] | None = None, verbose: bool = False) -> CheckResult:
    """Exercise 03.2: ``fn(cams [N, C, h, w], bias [C]) → [N, C]``, the logits rebuilt from every class's CAM,
    ``y_c = mean_{x,y} M_c(x, y) + b_c``; checked against the logits the model itself computes."""
    def call(f: Callable[..., Any], c: Case) -> Any:
        _, _, bias = _gap_parts(c)
        return f(_all_cams(c).clone(), bias.clone())

    def hint(got: tuple, expected: tuple) -> str | None:
        if len(got) == 4:
            return "average each map over its cells (dimensions 2 and 3) to get one number per image and class"
        if len(got) == 1:
            return "one logit per image *and class* is wanted: keep dimension 1 (the classes)"
        return None
    return check("logits from CAMs", fn, call, lambda c: c.extra["logits"], LOGIT_MISTAKES,
                 _cam_cases(cases), "the model's own logits, model(images)", hint, verbose)


def _class_cam(case: Case, c: int) -> torch.Tensor:
    return _cam(case, torch.full_like(case.target, c))


DECISION_MISTAKES = [
    Mistake("wrong order: d = M_orca − M_leopard (class 1 minus class 0), so that positive cells are evidence for "
            "orca *against* leopard", lambda c: _class_cam(c, 0) - _class_cam(c, 1)),
    Mistake("you added the two maps: the decision is the *difference* of the logits, so subtract the maps",
            lambda c: _class_cam(c, 1) + _class_cam(c, 0)),
    Mistake("you applied a ReLU to d: the decision map is signed (blue cells argue for leopard), and only the signed "
            "map adds up to the logit difference", lambda c: (_class_cam(c, 1) - _class_cam(c, 0)).clamp(min=0)),
    Mistake("you subtracted the positive parts of the two CAMs: the decision sums the signed maps, negative cells "
            "included", lambda c: _class_cam(c, 1).clamp(min=0) - _class_cam(c, 0).clamp(min=0)),
    Mistake("that is the orca CAM alone: subtract the leopard CAM, M_orca − M_leopard", lambda c: _class_cam(c, 1)),
]


def check_decision_map(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], cases: Sequence[Case] | None = None,
                       verbose: bool = False) -> CheckResult:
    """Task 03.3: ``fn(features [N, K, h, w], weight [2, K]) → [N, h, w]``, the decision map
    ``d = M_orca − M_leopard = (w_1 − w_0) · f`` of a two-class GAP network."""
    from .explain import cam

    def call(f: Callable[..., Any], c: Case) -> Any:
        feats, weight, _ = _gap_parts(c)
        return f(feats.clone(), weight.clone())

    def reference(c: Case) -> torch.Tensor:
        return cam(c.model, c.images, 1, resolution="features") - cam(c.model, c.images, 0, resolution="features")
    def hint(got: tuple, expected: tuple) -> str | None:
        if len(got) == 4 and got[0] == expected[0] and got[2:] == expected[1:]:
            return ("one map per image is wanted: weigh the features by the difference of the two rows of the "
                    "weights, w[1] − w[0] (shape [K]), and sum over the channels")
        return _cam_hint(got, expected)
    return check("decision map", fn, call, reference, DECISION_MISTAKES, _cam_cases(cases),
                 "cam(model, images, 1) − cam(model, images, 0)", hint, verbose)


# ----------------------------------------------------------------------------- notebook 04: Grad-CAM, HiResCAM
def _layer_cases(cases: Sequence[Case] | None) -> list[Case]:
    """Grad-CAM below the last layer, where it differs from CAM and from HiResCAM: the course model's third block
    (``features.10``, 16 × 16) and the ResNet-18's ``layer3`` on 128-px images (8 × 8)."""
    cases = default_cases(size=128) if cases is None else list(cases)
    for c in cases:
        name = "features.10" if hasattr(c.model, "features") else "layer3"
        c.extra = {**c.extra, "layer": c.model.get_submodule(name), "layer_name": name}
    return cases


class _Softmax(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).softmax(1)


def _acts_grads(case: Case, target: torch.Tensor | None = None, score: str = "logit"
                ) -> tuple[torch.Tensor, torch.Tensor]:
    from .explain.gradcam import layer_activations_and_gradients
    key = ("acts", score, None if target is None else tuple(target.tolist()))
    if key not in case.extra:
        # the wrapper takes the model's mode: restoring the wrapper's mode afterwards sets the model's too
        model = _Softmax(case.model).train(case.model.training) if score == "probability" else case.model
        a, g, _ = layer_activations_and_gradients(model, case.images, case.target if target is None else target,
                                                  case.extra["layer"])
        case.extra[key] = (a, g)
    return case.extra[key]


def _layer_map(case: Case, *, method: str = "gradcam", relu: str = "relu", target: torch.Tensor | None = None,
               score: str = "logit", mode: str = "bilinear", align_corners: bool | None = False,
               relu_after_upsampling: bool = False) -> torch.Tensor:
    """Grad-CAM (``method="gradcam"``: channel weights = gradients averaged over space; ``"sum"``: summed;
    ``"hirescam"``: element-wise) written out plainly, with one knob per typical mistake."""
    import torch.nn.functional as F
    a, g = _acts_grads(case, target, score)
    if method == "gradcam":
        m = (g.mean((2, 3), keepdim=True) * a).sum(1)
    elif method == "sum":
        m = (g.sum((2, 3), keepdim=True) * a).sum(1)
    elif method == "relu_weights":
        m = (g.mean((2, 3), keepdim=True).clamp(min=0) * a).sum(1)
    else:
        m = (g * a).sum(1)
    activate = {"relu": lambda t: t.clamp(min=0), "none": lambda t: t, "abs": torch.abs}[relu]
    if not relu_after_upsampling:
        m = activate(m)
    size = tuple(case.images.shape[-2:])
    up = F.interpolate(m.unsqueeze(1), size=size, mode=mode,
                       **({} if mode == "nearest" else {"align_corners": align_corners})).squeeze(1)
    return activate(up) if relu_after_upsampling else up


def _layer_hint(got: tuple, expected: tuple) -> str | None:
    if len(got) == 3 and got[0] == expected[0] and got[1:] != expected[1:]:
        return ("upsample the map to the image's size: F.interpolate(m[:, None], size=images.shape[-2:], "
                "mode=\"bilinear\", align_corners=False)[:, 0]")
    if len(got) == 4 and got[0] == expected[0]:
        return "one map per image is wanted: sum the weighted channels over dimension 1"
    return None


def _upsampling_mistakes(method: str) -> list[Mistake]:
    return [
        Mistake("wrong upsampling: nearest-neighbour gives blocks; the course (like grad-cam and OpenCV's resize) "
                "upsamples bilinearly with align_corners=False", lambda c: _layer_map(c, method=method, mode="nearest")),
        Mistake("wrong upsampling: align_corners=True stretches the map so the corner cells' centres sit on the image's "
                "corner pixels; use align_corners=False (cell centres at pixel centres, as OpenCV's resize)",
                lambda c: _layer_map(c, method=method, align_corners=True)),
        Mistake("wrong upsampling: bicubic; use mode=\"bilinear\", align_corners=False",
                lambda c: _layer_map(c, method=method, mode="bicubic")),
        Mistake("you upsampled before the ReLU: apply the ReLU at the layer's resolution, then upsample (bilinear "
                "interpolation of a clipped map is not the clipped interpolation)",
                lambda c: _layer_map(c, method=method, relu_after_upsampling=True)),
    ]


GRADCAM_MISTAKES = [
    Mistake("you forgot the ReLU: Grad-CAM keeps the positive part, ReLU(Σ_k α_k A^k)", lambda c: _layer_map(c, relu="none")),
    Mistake("you took |·| instead of the ReLU: negative evidence must be dropped, not flipped",
            lambda c: _layer_map(c, relu="abs")),
    Mistake("your channel weights are not averaged over space: you multiplied the gradient and the activations "
            "cell by cell. That is HiResCAM (exercise 2); Grad-CAM's weight α_k is the mean of ∂y/∂A^k over the cells",
            lambda c: _layer_map(c, method="hirescam")),
    Mistake("you summed the gradients over the cells: α_k is their mean (divide by h·w), as the paper's eq. 1",
            lambda c: _layer_map(c, method="sum")),
    Mistake("you applied a ReLU to the channel weights α_k: Grad-CAM keeps negative weights and applies the ReLU to "
            "the weighted sum", lambda c: _layer_map(c, method="relu_weights")),
    Mistake("you differentiated the softmax probability; Grad-CAM differentiates the class score before the "
            "softmax (the logit)", lambda c: _layer_map(c, score="probability")),
    Mistake("you explained the model's predicted class instead of `target`", lambda c: _layer_map(c, target=_predicted(c))),
    Mistake("you explained the other class: differentiate logits[range(N), target]",
            lambda c: _layer_map(c, target=1 - c.target)),
] + _upsampling_mistakes("gradcam")


def check_gradcam(fn: Callable[[nn.Module, nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
                  cases: Sequence[Case] | None = None, verbose: bool = False) -> CheckResult:
    """Exercise 04.1: ``fn(model, layer, images, target) → [N, H, W]``: ``ReLU(Σ_k α_k A^k)`` with ``α_k`` the
    gradient of the target logit averaged over the layer's cells (Selvaraju et al. 2017, eq. 1–2), upsampled
    bilinearly to the image; the model left as found (no hooks, no ``.grad``)."""
    from .explain import gradcam
    cases = _layer_cases(cases)
    return check("Grad-CAM", fn, lambda f, c: f(c.model, c.extra["layer"], c.images, c.target),
                 lambda c: gradcam(c.model, c.images, c.target, layer=c.extra["layer"]), GRADCAM_MISTAKES, cases,
                 "utils.explain.gradcam", _layer_hint, verbose,
                 summary=f"2 models at an inner layer ({', '.join(c.extra['layer_name'] for c in cases)}) and "
                         f"{sum(c.images.shape[0] for c in cases)} images")


HIRESCAM_MISTAKES = [
    Mistake("that is Grad-CAM: you averaged the gradient over the cells. HiResCAM multiplies gradient and "
            "activation cell by cell, Σ_k (∂y/∂A^k) ⊙ A^k, before the ReLU", lambda c: _layer_map(c)),
    Mistake("you forgot the ReLU: HiResCAM keeps the positive part of Σ_k (∂y/∂A^k) ⊙ A^k",
            lambda c: _layer_map(c, method="hirescam", relu="none")),
    Mistake("you took |·| instead of the ReLU: negative evidence must be dropped, not flipped",
            lambda c: _layer_map(c, method="hirescam", relu="abs")),
    Mistake("you explained the model's predicted class instead of `target`",
            lambda c: _layer_map(c, method="hirescam", target=_predicted(c))),
    Mistake("you explained the other class: differentiate logits[range(N), target]",
            lambda c: _layer_map(c, method="hirescam", target=1 - c.target)),
] + _upsampling_mistakes("hirescam")


def check_hirescam(fn: Callable[[nn.Module, nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
                   cases: Sequence[Case] | None = None, verbose: bool = False) -> CheckResult:
    """Exercise 04.2: ``fn(model, layer, images, target) → [N, H, W]``: HiResCAM ``ReLU(Σ_k (∂y/∂A^k) ⊙ A^k)``
    (Draelos & Carin 2020), upsampled bilinearly to the image."""
    from .explain import hirescam
    cases = _layer_cases(cases)
    return check("HiResCAM", fn, lambda f, c: f(c.model, c.extra["layer"], c.images, c.target),
                 lambda c: hirescam(c.model, c.images, c.target, layer=c.extra["layer"]), HIRESCAM_MISTAKES, cases,
                 "utils.explain.hirescam", _layer_hint, verbose,
                 summary=f"2 models at an inner layer ({', '.join(c.extra['layer_name'] for c in cases)}) and "
                         f"{sum(c.images.shape[0] for c in cases)} images")


# ----------------------------------------------------------------------------- notebook 05: the kernel, the penalty
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
    from .camloss import inverted_gaussian_kernel

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
    from .camloss import decision_map, inverted_gaussian_kernel
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
    from .camloss import penalty

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
