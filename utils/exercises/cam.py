"""Checkers of notebook 03's exercises: CAM, the logits from the maps, the decision map."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from .framework import CheckResult, Case, Mistake, check, default_cases


def _gap_parts(case: Case) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(features [N, K, h, w] before the global average pooling, classifier weight [C, K], bias [C])``, cached."""
    if "features" not in case.extra:
        from ..explain._common import model_state_preserved
        from ..explain._layers import capture, find_gap_head
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
    from ..explain import cam

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
    from ..explain import cam

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
