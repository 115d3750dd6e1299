"""The exercise checkers: each accepts its solution, says "not attempted" to a stub, and names each typical mistake;
the notebooks run as shipped (stubs) and, cut to their exercises, with the solutions swapped in."""
import importlib.util
from pathlib import Path

import pytest
import torch

from utils import exercises as X
from utils.exercises import cam as X03
from utils.exercises import occlusion as X02
from utils.exercises.framework import _predicted

ROOT = Path(__file__).resolve().parent.parent


def _solutions(name: str):
    spec = importlib.util.spec_from_file_location(f"solutions_{name}", ROOT / "solutions" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


S = _solutions("saliency")


@pytest.fixture(scope="module")
def cases():
    return X.default_cases()


def _input_grad(model, images, target, score="logit"):
    x = images.detach().clone().requires_grad_(True)
    out = model(x)
    if score == "probability":
        out = out.softmax(1)
    (g,) = torch.autograd.grad(out[torch.arange(len(x)), target].sum(), x)
    return g


# ------------------------------------------------------------------ saliency
def _backward_leaves_grads(model, images, target):
    x = images.detach().clone().requires_grad_(True)
    model(x)[torch.arange(len(x)), target].sum().backward()
    return x.grad.abs().amax(1)


def _train_mode(model, images, target):
    model.train()
    return S.saliency_map(model, images, target)


def _freezes_weights(model, images, target):
    for p in model.parameters():
        p.requires_grad_(False)
    return S.saliency_map(model, images, target)


def _leaves_hook(model, images, target):
    model.register_forward_hook(lambda *a: None)
    return S.saliency_map(model, images, target)


def _modifies_input(model, images, target):
    images.requires_grad_(True)
    (g,) = torch.autograd.grad(model(images)[torch.arange(len(images)), target].sum(), images)
    return g.abs().amax(1)


SALIENCY_MISTAKES = {
    "forgot |·|": (lambda m, x, t: _input_grad(m, x, t).amax(1), "forgot the absolute value"),
    "mean over channels": (lambda m, x, t: _input_grad(m, x, t).abs().mean(1), "mean over the colour channels"),
    "sum over channels": (lambda m, x, t: _input_grad(m, x, t).abs().sum(1), "summed over the colour channels"),
    "no channel reduction": (lambda m, x, t: _input_grad(m, x, t).abs(), "reduce the 3 colour channels with the max"),
    "probability": (lambda m, x, t: _input_grad(m, x, t, "probability").abs().amax(1), "softmax probability"),
    "predicted class": (lambda m, x, t: _input_grad(m, x, m(x).argmax(1)).abs().amax(1), "predicted class instead"),
    "other class": (lambda m, x, t: _input_grad(m, x, 1 - t).abs().amax(1), "explained the other class"),
    "sum of logits": (lambda m, x, t: _input_grad(m, x, torch.zeros_like(t)).add(_input_grad(m, x, torch.ones_like(t)))
                      .abs().amax(1), "sum of all logits"),
    "backward() leaves .grad": (_backward_leaves_grads, "gradients were left behind"),
    "train mode": (_train_mode, "training mode"),
    "requires_grad changed": (_freezes_weights, "changed requires_grad"),
    "hook left": (_leaves_hook, "left hooks registered"),
    "input changed": (_modifies_input, "changed the images it was given"),
    "still attached": (lambda m, x, t: S.saliency_map(m, x, t).requires_grad_(True), "still requires grad"),
    "float64": (lambda m, x, t: S.saliency_map(m, x, t).double(), "wrong dtype torch.float64"),
    "other device": (lambda m, x, t: torch.empty(S.saliency_map(m, x, t).shape, device="meta"), "is on meta"),
    "not a tensor": (lambda m, x, t: S.saliency_map(m, x, t).tolist(), "got list"),
    "NaN": (lambda m, x, t: S.saliency_map(m, x, t) * float("nan"), "NaN or infinite"),
    "raises": (lambda m, x, t: m(x)[0, 5], "raised IndexError"),
    "one pixel off": (lambda m, x, t: S.saliency_map(m, x, t).index_put_((torch.tensor(1), torch.tensor(2), torch.tensor(3)),
                                                                         torch.tensor(9.0)),
                      "image 1, pixel (row 2, column 3)"),
}


def test_saliency_solution_is_accepted(cases):
    result = X.check_saliency(S.saliency_map, cases=cases, verbose=False)
    assert result and result.status == "correct" and "2 models" in result.message


def test_saliency_stub_is_not_attempted(cases):
    def stub(model, images, target):
        raise NotImplementedError("write your code here")
    result = X.check_saliency(stub, cases=cases)
    assert not result and result.status == "not attempted"
    assert repr(result).startswith("· vanilla saliency: not attempted yet")
    assert "carries on with the reference (utils.explain.saliency)" in repr(result)


@pytest.mark.parametrize("name", list(SALIENCY_MISTAKES))
def test_saliency_mistakes_get_their_own_message(name):
    fn, expected = SALIENCY_MISTAKES[name]
    result = X.check_saliency(fn, cases=X.default_cases(), verbose=False)  # fresh models: a mistake may change them
    assert result.status == "wrong" and expected in result.message, result.message


def test_every_saliency_mistake_message_is_distinct():
    messages = [m.message for m in X.SALIENCY_MISTAKES] + [m.message for m in X.SMOOTHGRAD_MISTAKES]
    assert len(set(messages)) == len(messages)


# ------------------------------------------------------------------ SmoothGrad
def _noisy(m, x, t, noise, per_copy):
    return torch.stack([per_copy(m, x + eps, t) for eps in noise])


SMOOTHGRAD_MISTAKES = {
    "max before mean": (lambda m, x, t, n: _noisy(m, x, t, n, lambda *a: _input_grad(*a).abs().amax(1)).mean(0),
                        "max over channels before averaging"),
    "abs after mean": (lambda m, x, t, n: _noisy(m, x, t, n, _input_grad).mean(0).abs().amax(1),
                       "averaged the signed gradients"),
    "forgot |·|": (lambda m, x, t, n: _noisy(m, x, t, n, _input_grad).mean(0).amax(1), "forgot the absolute value"),
    "sum": (lambda m, x, t, n: _noisy(m, x, t, n, _input_grad).abs().sum(0).amax(1), "summed over the noisy copies"),
    "first copy only": (lambda m, x, t, n: _input_grad(m, x + n[0], t).abs().amax(1), "only the first noisy copy"),
    "clean image": (lambda m, x, t, n: _input_grad(m, x, t).abs().amax(1), "saliency of the clean image"),
    "prediction per copy": (lambda m, x, t, n: _noisy(m, x, t, n, lambda m_, xx, t_: _input_grad(m_, xx, m_(xx).argmax(1)))
                            .abs().mean(0).amax(1), "prediction on each noisy copy"),
}


def test_smoothgrad_solution_is_accepted_and_its_reference_is_the_course_smoothgrad():
    assert X.check_smoothgrad(S.smoothgrad_map, verbose=False)
    # the checker's reference = utils.explain.smoothgrad given the same noise (drawn as it draws it)
    from utils.explain import smoothgrad
    case = X.default_cases(n=2)[0]
    k, sigma = 3, 0.1
    std = torch.full((2 * k,) + tuple(case.images.shape[1:]), sigma)
    eps = torch.normal(0.0, std, generator=torch.Generator().manual_seed(5))  # copies of one image adjacent
    noise = eps.view(2, k, *case.images.shape[1:]).transpose(0, 1)
    ours = S.smoothgrad_map(case.model, case.images, case.target, noise)
    course = smoothgrad(case.model, case.images, case.target, n_samples=k, batch_size=k, noise=sigma,
                        generator=torch.Generator().manual_seed(5))
    assert torch.allclose(ours, course, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", list(SMOOTHGRAD_MISTAKES))
def test_smoothgrad_mistakes_get_their_own_message(name, cases):
    fn, expected = SMOOTHGRAD_MISTAKES[name]
    result = X.check_smoothgrad(fn, cases=cases, verbose=False)
    assert result.status == "wrong" and expected in result.message, result.message


# ------------------------------------------------------------------ Integrated Gradients
def _learner_ig(alphas=lambda m: [k / m for k in range(1, m + 1)], factor=True, average=True, reduce="sum",
                target=None):
    """A learner's Integrated Gradients, written independently of the checker, with one mistake per knob."""
    def fn(model, images, t, baseline, steps):
        t = t if target is None else target(model, images, t)
        total = torch.zeros_like(images)
        for a in alphas(steps):
            x = (baseline + a * (images - baseline)).detach().requires_grad_(True)
            (g,) = torch.autograd.grad(model(x)[torch.arange(len(x)), t].sum(), x)
            total += g
        attr = (total / (steps if average else 1)) * ((images - baseline) if factor else 1)
        return {"sum": attr.sum(1), "mean": attr.mean(1), "absmax": attr.abs().amax(1)}[reduce]
    return fn


INTEGRATED_MISTAKES = {
    "no (x - x') factor": (_learner_ig(factor=False), "forgot the factor (x − x')"),
    "left Riemann": (_learner_ig(alphas=lambda m: [k / m for k in range(m)]), "left Riemann sum"),
    "linspace(0, 1, m)": (_learner_ig(alphas=lambda m: torch.linspace(0, 1, m).tolist()), "both ends included"),
    "sum, not average": (_learner_ig(average=False), "without dividing by their number"),
    "mean over channels": (_learner_ig(reduce="mean"), "mean over the colour channels"),
    "max |.| over channels": (_learner_ig(reduce="absmax"), "max of |·| over the colour channels"),
    "predicted class": (_learner_ig(target=lambda m, x, t: m(x).argmax(1)), "predicted class instead of `target`"),
    "other class": (_learner_ig(target=lambda m, x, t: 1 - t), "explained the other class"),
    "from x to the baseline": (_learner_ig(alphas=lambda m: [1 - k / m for k in range(1, m + 1)]),
                               "walked from the images towards the baseline"),  # the left sum's points
}


def test_integrated_gradients_solution_is_accepted_and_matches_the_course_method():
    assert X.check_integrated_gradients(S.integrated_gradients_map, verbose=False)
    assert X.check_integrated_gradients(_learner_ig(), verbose=False)  # the test's own version, all knobs right
    from utils.explain import integrated_gradients
    case = X.default_cases(n=2)[0]
    base = torch.full_like(case.images, 0.3)
    ours = S.integrated_gradients_map(case.model, case.images, case.target, base, 16)
    course, delta = integrated_gradients(case.model, case.images, case.target, baseline=base, steps=16,
                                         return_delta=True)
    assert torch.allclose(ours, course, rtol=1e-3, atol=1e-3 * float(course.abs().max()))  # course: folded copy


@pytest.mark.parametrize("name", list(INTEGRATED_MISTAKES))
def test_integrated_gradients_mistakes_get_their_own_message(name):
    fn, expected = INTEGRATED_MISTAKES[name]
    result = X.check_integrated_gradients(fn, verbose=False)
    assert result.status == "wrong" and expected in result.message, result.message


def test_every_integrated_gradients_mistake_message_is_distinct_and_each_mistake_differs_from_the_answer():
    messages = [m.message for m in X.INTEGRATED_MISTAKES]
    assert len(set(messages)) == len(messages)
    from utils.exercises.saliency import _integrated_cases, _ig
    for case in _integrated_cases(None):
        right = _ig(case)
        for m in X.INTEGRATED_MISTAKES:
            assert not X.framework._close(m.compute(case), right), m.message


# ------------------------------------------------------------------ occlusion
O = _solutions("occlusion")


def _occ(**knobs):
    return lambda m, x, t, **opts: X02._occlusion(X.Case("learner", m, x, t, opts), **knobs)


OCCLUSION_MISTAKES = {
    "wrong sign": (_occ(sign=-1.0), "wrong sign"),
    "sum over windows": (_occ(reduce="sum"), "summed the drops"),
    "assigned, not accumulated": (_occ(reduce="last"), "only the last window's drop"),
    "windows stop before the border": (_occ(clip_last=False), "stop before the border"),
    "black fill": (_occ(fill=0.0), "filled the windows with 0"),
    "probability": (_occ(score="probability"), "softmax probability"),
    "predicted class": (lambda m, x, t, **o: X02._occlusion(X.Case("l", m, x, _predicted(X.Case("l", m, x, t, o)), o)),
                        "predicted class's score"),
    "other class": (lambda m, x, t, **o: X02._occlusion(X.Case("l", m, x, 1 - t, o)), "other class's score"),
}


def test_occlusion_solutions_are_accepted():
    assert X.check_occlusion(O.occlusion_map)
    assert X.check_occlusion_batched(O.occlusion_map_batched)
    assert X.check_occlusion(O.occlusion_map_batched)  # batching is allowed in the first exercise too


def test_the_unbatched_loop_is_right_but_not_batched():
    result = X.check_occlusion_batched(O.occlusion_map)
    assert result.status == "wrong" and "the values are right, but not batched" in result.message, result.message


def test_the_checkers_plain_occlusion_is_the_course_occlusion():
    """The mistakes are knobs on one plain implementation; with every knob at its default it is the reference."""
    for case in X02._occlusion_cases(None):
        assert torch.allclose(X02._occlusion(case), X02._occlusion_reference(case), rtol=1e-5, atol=1e-5)


def _drops(**knobs):
    return lambda m, x, t: X02._drops(X.Case("learner", m, x, t, {}), **knobs)


LARGEST_DROPS_MISTAKES = {
    "rows swapped": (_drops(fills=("blur", 0.5)), "wrong way round"),
    "smallest value": (_drops(reduce="min"), "smallest value"),
    "mean of the map": (_drops(reduce="mean"), "averaged each map"),
    "mean-colour fill": (_drops(fills=(0.5, "mean")), "mean colour"),
    "other window": (_drops(patch=8, stride=4), "patch 16, stride 8"),
    "transposed": (lambda m, x, t: X02._drops(X.Case("l", m, x, t, {})).T, "one row per fill"),
}


def test_largest_drops_solution_is_accepted():
    assert X.check_largest_drops(O.largest_drops)


# ------------------------------------------------------------------ CAM (notebook 03)
C = _solutions("cam")


def _cam(f, w, t):
    return torch.einsum("nk,nkhw->nhw", w[t], f)


CAM_MISTAKES = {
    "ReLU": (lambda f, w, t: _cam(f, w, t).clamp(min=0), "applied a ReLU"),
    "mean over channels": (lambda f, w, t: _cam(f, w, t) / f.shape[1], "averaged over the K channels"),
    "divided by hw": (lambda f, w, t: _cam(f, w, t) / (f.shape[2] * f.shape[3]), "divided by h·w"),
    "no weights, mean": (lambda f, w, t: f.mean(1), "averaged the feature maps without the class weights"),
    "no weights, sum": (lambda f, w, t: f.sum(1), "summed the feature maps without the class weights"),
    "other class": (lambda f, w, t: _cam(f, w, 1 - t), "other class's weights"),
    "all classes' weights": (lambda f, w, t: torch.einsum("k,nkhw->nhw", w.sum(0), f), "summed the weights of all classes"),
    "every class's map": (lambda f, w, t: torch.einsum("ck,nkhw->nchw", w, f), "index the weights with target"),
    "upsampled": (lambda f, w, t: torch.nn.functional.interpolate(_cam(f, w, t)[:, None], scale_factor=2)[:, 0],
                  "keep the features' resolution"),
}


def test_cam_solutions_are_accepted():
    assert X.check_cam(C.cam_map)
    assert X.check_logits_from_cams(C.logits_from_cams)


def test_the_cam_checker_is_the_course_cam_and_the_logit_identity_holds_on_its_cases():
    for case in X03._cam_cases(None):
        from utils.explain import cam
        assert torch.allclose(X03._cam(case), cam(case.model, case.images, case.target, resolution="features"), atol=1e-5)
        f, w, b = X03._gap_parts(case)
        assert torch.allclose(X03._all_cams(case).mean((2, 3)) + b, case.model(case.images), atol=1e-4)


LOGIT_MISTAKES = {
    "no bias": (lambda m, b: m.mean((2, 3)), "forgot the bias"),
    "sum over cells": (lambda m, b: m.sum((2, 3)) + b, "summed over the cells"),
    "max over cells": (lambda m, b: m.amax((2, 3)) + b, "largest cell"),
    "positive part": (lambda m, b: m.clamp(min=0).mean((2, 3)) + b, "only the positive part"),
    "biases swapped": (lambda m, b: m.mean((2, 3)) + b.flip(0), "wrong way round"),
    "not pooled": (lambda m, b: m + b.view(1, -1, 1, 1), "average each map over its cells"),
    "one class": (lambda m, b: m[:, 0].mean((1, 2)) + b[0], "keep dimension 1"),
}


def _class_map(f, w, c):
    return torch.einsum("k,nkhw->nhw", w[c], f)


DECISION_MISTAKES = {
    "wrong order": (lambda f, w: _class_map(f, w, 0) - _class_map(f, w, 1), "wrong order"),
    "added": (lambda f, w: _class_map(f, w, 0) + _class_map(f, w, 1), "added the two maps"),
    "ReLU": (lambda f, w: (_class_map(f, w, 1) - _class_map(f, w, 0)).clamp(min=0), "applied a ReLU to d"),
    "positive parts": (lambda f, w: _class_map(f, w, 1).clamp(min=0) - _class_map(f, w, 0).clamp(min=0),
                       "subtracted the positive parts"),
    "orca CAM alone": (lambda f, w: _class_map(f, w, 1), "orca CAM alone"),
    "both maps": (lambda f, w: torch.einsum("ck,nkhw->nchw", w, f), "one map per image"),
}


def test_decision_map_solution_is_accepted():
    assert X.check_decision_map(C.decision_map)


# ------------------------------------------------------------------ Grad-CAM and HiResCAM (notebook 04)
G = _solutions("gradcam")
F = torch.nn.functional


def _layer_map(model, layer, images, target, *, weights="mean", relu="relu", score="logit", mode="bilinear",
               align_corners=False, relu_late=False, leave_hook=False, backward=False):
    """A learner's Grad-CAM / HiResCAM written independently of the checker, one knob per mistake."""
    store = []
    handle = layer.register_forward_hook(lambda m, i, o: store.append(o))
    logits = model(images)
    out = logits.softmax(1) if score == "probability" else logits
    s = out[torch.arange(len(images)), target].sum()
    if backward:
        store[-1].retain_grad()
        s.backward()
        g = store[-1].grad
    else:
        (g,) = torch.autograd.grad(s, store[-1])
    if not leave_hook:
        handle.remove()
    a = store[-1].detach()
    if weights == "mean":
        m = (g.mean((2, 3), keepdim=True) * a).sum(1)
    elif weights == "sum":
        m = (g.sum((2, 3), keepdim=True) * a).sum(1)
    elif weights == "relu":
        m = (g.mean((2, 3), keepdim=True).clamp(min=0) * a).sum(1)
    else:
        m = (g * a).sum(1)
    act = {"relu": lambda t: t.clamp(min=0), "none": lambda t: t, "abs": torch.abs}[relu]
    m = m if relu_late else act(m)
    kw = {} if mode == "nearest" else {"align_corners": align_corners}
    up = F.interpolate(m[:, None], size=images.shape[-2:], mode=mode, **kw)[:, 0].detach()
    return act(up) if relu_late else up


def _knobs(**k):
    return lambda m, l, x, t: _layer_map(m, l, x, t, **k)


GRADCAM_MISTAKES = {
    "forgot the ReLU": (_knobs(relu="none"), "forgot the ReLU"),
    "abs instead of ReLU": (_knobs(relu="abs"), "|·| instead of the ReLU"),
    "weights not averaged over space": (_knobs(weights="cell"), "not averaged over space"),
    "weights summed": (_knobs(weights="sum"), "summed the gradients"),
    "ReLU on the weights": (_knobs(weights="relu"), "ReLU to the channel weights"),
    "probability": (_knobs(score="probability"), "softmax probability"),
    "other class": (lambda m, l, x, t: _layer_map(m, l, x, 1 - t), "other class"),
    "predicted class": (lambda m, l, x, t: _layer_map(m, l, x, m(x).argmax(1)), "predicted class"),
    "nearest": (_knobs(mode="nearest"), "nearest-neighbour"),
    "align_corners=True": (_knobs(align_corners=True), "align_corners=True"),
    "bicubic": (_knobs(mode="bicubic"), "bicubic"),
    "ReLU after upsampling": (_knobs(relu_late=True), "upsampled before the ReLU"),
    "not upsampled": (lambda m, l, x, t: F.interpolate(_layer_map(m, l, x, t)[:, None], scale_factor=0.25)[:, 0],
                      "upsample the map to the image's size"),
    "hook left behind": (_knobs(leave_hook=True), "left hooks registered"),
    "backward() leaves .grad": (_knobs(backward=True), "gradients were left behind"),
}
HIRESCAM_MISTAKES = {
    "Grad-CAM's averaged weights": (_knobs(), "that is Grad-CAM"),
    "forgot the ReLU": (_knobs(weights="cell", relu="none"), "forgot the ReLU"),
    "abs instead of ReLU": (_knobs(weights="cell", relu="abs"), "|·| instead of the ReLU"),
    "other class": (lambda m, l, x, t: _layer_map(m, l, x, 1 - t, weights="cell"), "other class"),
    "predicted class": (lambda m, l, x, t: _layer_map(m, l, x, m(x).argmax(1), weights="cell"), "predicted class"),
    "nearest": (_knobs(weights="cell", mode="nearest"), "nearest-neighbour"),
    "align_corners=True": (_knobs(weights="cell", align_corners=True), "align_corners=True"),
    "ReLU after upsampling": (_knobs(weights="cell", relu_late=True), "upsampled before the ReLU"),
}


def test_gradcam_solutions_are_accepted_and_the_learners_plain_version_too():
    assert X.check_gradcam(G.gradcam_map)
    assert X.check_hirescam(G.hirescam_map)
    assert X.check_gradcam(_knobs())  # the test's own plain version with every knob at its default
    assert X.check_hirescam(_knobs(weights="cell"))


# ------------------------------------------------------------------ the kernel and the penalty (notebook 05)
L = _solutions("camloss")


def _kernel(h, w, s, *, invert=True, norm="peak", centres="cells", units="side", two=True):
    import math

    def coords(n):
        i = torch.arange(n, dtype=torch.float32)
        u = {"cells": (i + 0.5) / n - 0.5, "corners": i / n - 0.5, "linspace": torch.linspace(-0.5, 0.5, n)}[centres]
        return u * n if units == "cells" else u
    g = torch.exp(-(coords(h)[:, None] ** 2 + coords(w)[None] ** 2) / ((2 if two else 1) * s * s))
    g = g / (2 * math.pi * s * s) if norm == "density" else (g / g.sum() if norm == "sum" else g)
    return 1 - g if invert else g


KERNEL_MISTAKES = {
    "not inverted": (lambda h, w, s: _kernel(h, w, s, invert=False), "not inverted"),
    "density-normalised": (lambda h, w, s: _kernel(h, w, s, norm="density"), "divided it by 2πσ²"),
    "sum-normalised": (lambda h, w, s: _kernel(h, w, s, norm="sum"), "divided it by its sum"),
    "distances in cells": (lambda h, w, s: _kernel(h, w, s, units="cells"), "distances are in cells"),
    "cell corners": (lambda h, w, s: _kernel(h, w, s, centres="corners"), "cell corners"),
    "linspace": (lambda h, w, s: _kernel(h, w, s, centres="linspace"), "linspace"),
    "no 2 in the exponent": (lambda h, w, s: _kernel(h, w, s, two=False), "left out the 2"),
    "height and width swapped": (lambda h, w, s: _kernel(w, h, s), "rows first"),
    "one wrong cell": (lambda h, w, s: _kernel(h, w, s).index_put_((torch.tensor(1), torch.tensor(2)), torch.tensor(5.0)),
                       "row 1, column 2"),
}


def test_kernel_solution_is_accepted():
    result = X.check_kernel(L.inverted_gaussian_kernel)
    assert result and "3 grids" in result.message


PENALTY_MISTAKES = {
    "not divided (not scale-invariant)": (lambda m, k: (k * m.abs()).sum((1, 2)), "not scale-invariant"),
    "divided by the cells (not scale-invariant)": (lambda m, k: (k * m.abs()).mean((1, 2)), "not scale-invariant"),
    "signed": (lambda m, k: (k * m).sum((1, 2)) / m.sum((1, 2)), "forgot |·|"),
    "squared": (lambda m, k: (k * m * m).sum((1, 2)) / (m * m).sum((1, 2)), "d², the first formulation"),
    "positive part": (lambda m, k: (k * m.clamp(min=0)).sum((1, 2)) / m.clamp(min=0).sum((1, 2)), "positive part"),
    "share near the centre": (lambda m, k: ((1 - k) * m.abs()).sum((1, 2)) / m.abs().sum((1, 2)), "near* the centre"),
    "one number for the batch": (lambda m, k: (k * m.abs()).sum() / m.abs().sum(), "one penalty per image"),
    "not summed": (lambda m, k: k * m.abs() / m.abs().sum((1, 2), keepdim=True), "sum the weighted mass"),
}


def test_penalty_solution_is_accepted_and_the_verdict_states_scale_invariance():
    result = X.check_penalty(L.ratio_penalty)
    assert result and "scale-invariant" in result.message and "0.001, 7, -2" in result.message


def test_right_values_that_are_not_scale_invariant_are_refused():
    def scaled(maps, kernel):  # right on the maps as given, not on small multiples of them
        return L.ratio_penalty(maps, kernel) * (1 if float(maps.abs().max()) > 1e-2 else 2)
    result = X.check_penalty(scaled)
    assert result.status == "wrong" and "not scale-invariant" in result.message, result.message


# ------------------------------------------------------------------ every checker names every typical mistake
CHECKED_MISTAKES = {"occlusion": OCCLUSION_MISTAKES, "largest_drops": LARGEST_DROPS_MISTAKES, "cam": CAM_MISTAKES,
                    "logits_from_cams": LOGIT_MISTAKES, "decision_map": DECISION_MISTAKES, "gradcam": GRADCAM_MISTAKES,
                    "hirescam": HIRESCAM_MISTAKES, "kernel": KERNEL_MISTAKES, "penalty": PENALTY_MISTAKES}


@pytest.mark.parametrize("checker,name", [(c, n) for c, table in CHECKED_MISTAKES.items() for n in table])
def test_each_mistake_gets_its_own_message(checker, name):
    """The learner's function makes one typical mistake (written independently of the checker's own version of it);
    the checker's verdict names it. Fresh cases each time: a mistake may leave the model changed."""
    fn, expected = CHECKED_MISTAKES[checker][name]
    result = getattr(X, f"check_{checker}")(fn)
    assert result.status == "wrong" and expected in result.message, result.message


def test_every_checkers_mistake_messages_are_distinct():
    for table in (X.OCCLUSION_MISTAKES, X.CAM_MISTAKES, X.LOGIT_MISTAKES, X.DECISION_MISTAKES, X.GRADCAM_MISTAKES,
                  X.HIRESCAM_MISTAKES, X.KERNEL_MISTAKES, X.PENALTY_MISTAKES, X.LARGEST_DROPS_MISTAKES):
        messages = [m.message for m in table]
        assert len(set(messages)) == len(messages)


# ------------------------------------------------------------------ the notebooks, as shipped and solved
import inspect  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import nbformat  # noqa: E402

from utils.notebooks import cell_names, slice_notebook  # noqa: E402

STUB = "# YOUR CODE HERE"
CHECK_CELL = re.compile(r"^(check_\w+)\((\w+)\)$")


def swapped(path: Path, answers: dict[str, str]) -> nbformat.NotebookNode:
    """Notebook ``path`` with each stub whose function is in ``answers`` replaced by that source, and the checker
    cells' stored results set to what the checker answers for it (so strict nbval compares the real verdicts)."""
    nb = nbformat.read(path, as_version=4)
    functions, namespace = {}, {"torch": torch}  # one namespace, as in the notebook's kernel
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith(STUB):
            name = re.search(r"^def (\w+)\(", cell.source, re.M).group(1)
            if name in answers:
                prefix = cell.source[:cell.source.index(f"def {name}(")]  # the stub's imports stay
                cell.source = prefix + answers[name]
                exec(cell.source, namespace)
                functions[name] = namespace[name]
    for cell in nb.cells:
        match = CHECK_CELL.match(cell.source.strip()) if cell.cell_type == "code" else None
        if match and match.group(2) in functions:
            verdict = getattr(X, match.group(1))(functions[match.group(2)])
            cell.outputs[0]["data"] = {"text/plain": repr(verdict)}
    assert set(functions) == set(answers), f"stubs not found for {set(answers) - set(functions)}"
    return nb


def the_exercises(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` cut to its exercises: every stub, every checker cell, every cell that reads a learner's function, and
    the earlier cells they need (``utils.notebooks.slice_notebook``). The cells left out never call a learner's
    function, so they run the same with or without the solutions and the notebook's own strict nbval run
    (``pytest --nbval notebooks``) covers them; running them here again doubled the notebooks' time in CI."""
    names = {re.search(r"^def (\w+)\(", c.source, re.M).group(1) for c in nb.cells
             if c.cell_type == "code" and c.source.startswith(STUB)}
    return slice_notebook(nb, lambda c: c.source.startswith(STUB) or bool(CHECK_CELL.match(c.source.strip()))
                          or bool(cell_names(c.source)[1] & names))


def _strict_nbval(nb: nbformat.NotebookNode, tmp_path: Path) -> subprocess.CompletedProcess:
    target = tmp_path / "notebook.ipynb"
    nbformat.write(nb, target)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VEX_FIGS_DIR": str(tmp_path / "figs")}
    return subprocess.run([sys.executable, "-m", "pytest", "--nbval", "-q", "-p", "no:cacheprovider",
                           "--nbval-current-env", "--nbval-sanitize-with", str(ROOT / "notebooks" / "nbval_sanitize.cfg"),
                           "--rootdir", str(tmp_path), str(target)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)


NOTEBOOK_SOLUTIONS = {"01_saliency.ipynb": "saliency", "02_occlusion.ipynb": "occlusion", "03_cam.ipynb": "cam",
                      "04_gradcam.ipynb": "gradcam", "05_camloss.ipynb": "camloss"}


def test_every_stub_has_a_checker_after_it_and_a_tested_solution():
    for notebook, module in NOTEBOOK_SOLUTIONS.items():
        nb = nbformat.read(ROOT / "notebooks" / notebook, as_version=4)
        cells = [c for c in nb.cells if c.cell_type == "code"]
        stubs = [i for i, c in enumerate(cells) if c.source.startswith(STUB)]
        assert stubs, notebook
        solutions = _solutions(module)
        for i in stubs:
            name = re.search(r"^def (\w+)\(", cells[i].source, re.M).group(1)
            assert "raise NotImplementedError" in cells[i].source and hasattr(solutions, name)
            assert CHECK_CELL.match(cells[i + 1].source.strip()).group(2) == name, "the checker follows the stub"
            assert "not attempted yet" in cells[i + 1].outputs[0]["data"]["text/plain"]


def test_the_exercise_run_keeps_the_stubs_the_checkers_and_every_cell_that_uses_a_learners_function():
    nb = nbformat.read(ROOT / "notebooks" / "05_camloss.ipynb", as_version=4)
    cut = the_exercises(nb)
    sources = [c.source for c in cut.cells]
    assert sum(s.startswith(STUB) for s in sources) == 2 and sum(bool(CHECK_CELL.match(s.strip())) for s in sources) == 2
    assert not any("train_model" in s or "RUNS = {" in s for s in sources), "05's training is not an exercise's"
    assert len(cut.cells) < len([c for c in nb.cells if c.cell_type == "code"]) / 4
    nb.cells.append(nbformat.v4.new_code_cell("k = inverted_gaussian_kernel(8, 8, 1.0)\nprint(float(k.max()))"))
    assert the_exercises(nb).cells[-1].source == nb.cells[-1].source, "a later cell using the learner's function runs"


@pytest.mark.slow
@pytest.mark.parametrize("notebook", list(NOTEBOOK_SOLUTIONS))
def test_the_notebook_passes_strict_nbval_with_the_solutions_swapped_in(notebook, tmp_path):
    solutions = _solutions(NOTEBOOK_SOLUTIONS[notebook])
    functions = [n for n, f in inspect.getmembers(solutions, inspect.isfunction) if f.__module__ == solutions.__name__]
    names = [n for n in functions if not n.startswith("_")]
    helpers = "".join(inspect.getsource(getattr(solutions, n)) + "\n\n" for n in functions if n.startswith("_"))
    nb = swapped(ROOT / "notebooks" / notebook, {n: helpers + inspect.getsource(getattr(solutions, n)) for n in names})
    assert sum("✓" in c.outputs[0]["data"]["text/plain"] for c in nb.cells
               if c.cell_type == "code" and CHECK_CELL.match(c.source.strip())) == len(names)
    run = _strict_nbval(the_exercises(nb), tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


@pytest.mark.slow
def test_a_wrong_answer_gets_its_message_and_the_notebook_goes_on(tmp_path):
    wrong = '''def saliency_map(model, images, target):
    x = images.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x)[torch.arange(len(x)), target].sum(), x)
    return g.amax(1)
'''
    nb = swapped(ROOT / "notebooks" / "01_saliency.ipynb", {"saliency_map": wrong})
    shown = [c.outputs[0]["data"]["text/plain"] for c in nb.cells if c.cell_type == "code" and "check_saliency(" in c.source
             and CHECK_CELL.match(c.source.strip())]
    assert shown[0].startswith("✗ vanilla saliency: you forgot the absolute value")
    # "goes on": the verdict is the cell's output, not an error, and the next code cell (with what it needs) runs; the
    # rest of the notebook is the solutions run's and the notebook's own
    check = next(i for i, c in enumerate(nb.cells)
                 if c.cell_type == "code" and c.source.strip() == "check_saliency(saliency_map)")
    after = next(i for i in range(check + 1, len(nb.cells)) if nb.cells[i].cell_type == "code")
    run_these = {id(nb.cells[i]) for i in (check - 1, check, after)}
    nb = slice_notebook(nb, lambda c: id(c) in run_these)
    assert nb.cells[-1].source.startswith("maps = saliency(model, examples)")
    run = _strict_nbval(nb, tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
