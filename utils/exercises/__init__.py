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

Layout: :mod:`.framework` holds the verdict, the cases and :func:`check`; each notebook's checkers and typical
mistakes are in their own module, named like its solutions: :mod:`.saliency` (01), :mod:`.occlusion` (02),
:mod:`.cam` (03), :mod:`.gradcam` (04), :mod:`.camloss` (05). Import the checkers from here.
"""
from __future__ import annotations

from .cam import CAM_MISTAKES, DECISION_MISTAKES, LOGIT_MISTAKES, check_cam, check_decision_map, check_logits_from_cams
from .camloss import KERNEL_MISTAKES, PENALTY_MISTAKES, check_kernel, check_penalty
from .framework import RTOL, Case, CheckResult, Mistake, check, default_cases
from .gradcam import GRADCAM_MISTAKES, HIRESCAM_MISTAKES, check_gradcam, check_hirescam
from .occlusion import (LARGEST_DROPS_MISTAKES, OCCLUSION_MISTAKES, check_largest_drops, check_occlusion,
                        check_occlusion_batched)
from .saliency import (INTEGRATED_MISTAKES, SALIENCY_MISTAKES, SMOOTHGRAD_MISTAKES, check_integrated_gradients,
                       check_saliency, check_smoothgrad)

__all__ = ["CheckResult", "Case", "Mistake", "check", "check_saliency", "check_smoothgrad",
           "check_integrated_gradients", "check_occlusion",
           "check_occlusion_batched", "check_largest_drops", "check_cam", "check_logits_from_cams", "check_decision_map",
           "check_gradcam", "check_hirescam", "check_kernel", "check_penalty", "default_cases", "RTOL"]
