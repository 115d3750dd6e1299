"""The framework of the exercise checkers: a case (model, images, target), a typical mistake, and `check`,
which runs the learner's function beside the reference and returns the verdict (see the package's docstring)."""
from __future__ import annotations

import contextlib
import io
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

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
    from ..data import load_split
    from ..models import load_shipped
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


# ----------------------------------------------------------------------------- helpers more than one notebook's checkers use
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
