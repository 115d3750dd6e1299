"""CAMLoss: the class activation map as a training signal (docs/design.md, section 4).

The training images have their animals in the middle, so evidence far from the
centre is background. CAMLoss adds to the cross-entropy a penalty on the share
of a map's mass that lies away from the centre, weighted by an inverted 2-D
Gaussian kernel at feature-map resolution:

    K(x, y) = 1 − exp(−((x − ½)² + (y − ½)²) / 2σ²)        (x, y in units of the side; K = 0 at the centre)
    L = CE + λ · mean_n P(map_n)

Two maps, both from the same forward pass as the logits (features ``f``,
classifier weights ``w``):

* ``"decision"`` (default): ``d = (w_y − w̄_other) · f``, the evidence for the
  true class *against* the others (for two classes, ``w_y − w_other``), penalised
  as ``P = Σ K m / Σ m`` with the mass ``m = |d|`` (``mass="abs"``) or ``d²``
  (``mass="squared"``, the first formulation). It sees background evidence
  whichever logit carries it. Global average pooling sums ``d`` linearly, so
  ``|d|`` is the share of the decision each cell carries; with ``d²`` many weak
  background cells can outvote one strong animal cell while the penalty looks small.
* ``"positive_cam"``: the true class's CAM after a ReLU, ``P = Σ K M⁺ / Σ M⁺``:
  the original idea. A network can dodge it by routing the background through
  the *other* class's logit, which this map never sees (notebook 05
  measures ``test_swapped`` 0.000 with it on every seed).

Three schedules: ``"joint"`` adds the penalty at every step; ``"alternate"`` is
the original project's: even epochs (0, 2, …) train on the cross-entropy only,
odd epochs on ``λ · P`` only; ``"hybrid"``: even epochs on ``CE + λ · P``, odd
epochs on ``λ · P`` only (the cross-entropy epochs cannot relearn the background freely);
``"alternate2"``: one cross-entropy-only epoch, then two penalty-only epochs (epochs 0, 3, 6, … on CE).

The functions' keyword defaults are the first formulation (``mass="squared"``,
``schedule="joint"``). Which mass, map, schedule and architecture the camloss
strategy trains with by default (``utils.train.STRATEGIES``) was chosen by ``python -m utils.camloss_search`` (results in ``results/camloss_search.jsonl``).

Both penalties lie in [0, 1) and are unchanged when the map is multiplied by a
positive constant (the decision map also by a negative one), so the network
cannot lower them by shrinking its features.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["MAPS", "SCHEDULES", "MASSES", "inverted_gaussian_kernel", "inverted_gaussian", "decision_map",
           "positive_cam", "penalty", "batch_penalty", "camloss", "check_options"]

MAPS = ("decision", "positive_cam")
SCHEDULES = ("joint", "alternate", "hybrid", "alternate2")
MASSES = ("abs", "squared")
EPS = 1e-12


def check_options(lam: float, sigma: float, map: str, schedule: str = "joint", mass: str = "squared") -> None:
    """Reject a bad λ, σ, map, schedule or mass name with a message that names it."""
    for name, value in (("lam", lam), ("sigma", sigma)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number; got {type(value).__name__}")
    if lam < 0:
        raise ValueError(f"lam (λ, the weight of the CAM penalty) must be >= 0; got {lam}")
    if sigma <= 0:
        raise ValueError(f"sigma (σ, the kernel width as a fraction of the side) must be > 0; got {sigma}")
    if map not in MAPS:
        raise ValueError(f"map must be one of {MAPS}; got {map!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}; got {schedule!r}")
    if mass not in MASSES:
        raise ValueError(f"mass must be one of {MASSES}; got {mass!r}")


def inverted_gaussian_kernel(height: int, width: int, sigma: float = 0.2,
                             device: torch.device | str | None = None) -> torch.Tensor:
    """``K = 1 − G_σ`` on an ``height × width`` grid of cell centres: 0 at the image centre, → 1 at the corners."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0; got {sigma}")
    ys = (torch.arange(height, dtype=torch.float32, device=device) + 0.5) / height - 0.5
    xs = (torch.arange(width, dtype=torch.float32, device=device) + 0.5) / width - 0.5
    return inverted_gaussian(ys.view(-1, 1) ** 2 + xs.view(1, -1) ** 2, sigma)


def inverted_gaussian(squared_distance: torch.Tensor, sigma: float) -> torch.Tensor:
    """``K = 1 − exp(−d²/2σ²)`` for squared distances ``d²`` from the centre (in units of the side)."""
    return 1.0 - torch.exp(-squared_distance / (2 * sigma ** 2))


def decision_map(features: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(w_y − mean_{c≠y} w_c) · f`` per image: ``[N, K, h, w]`` features, ``[C, K]`` weights → ``[N, h, w]``."""
    c = weight.shape[0]
    others = (weight.sum(0, keepdim=True) - weight) / (c - 1)  # row y: mean of the other classes' weights
    return torch.einsum("nk,nkhw->nhw", weight[labels] - others[labels], features)


def positive_cam(features: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``ReLU(w_y · f)``: the true class's CAM, positive part → ``[N, h, w]``."""
    return F.relu(torch.einsum("nk,nkhw->nhw", weight[labels], features))


def penalty(maps: torch.Tensor, kernel: torch.Tensor, map: str = "decision", mass: str = "squared") -> torch.Tensor:
    """Per image, the kernel-weighted share of the map's mass: ``Σ K·m / Σ m``.

    ``m`` is ``|d|`` or ``d²`` (``mass``) for the decision map, ``M⁺`` for the positive CAM (``mass`` does not apply).
    """
    if map != "decision":
        m = maps.clamp(min=0)
    else:
        m = maps.abs() if mass == "abs" else maps * maps
    return (m * kernel).sum((1, 2)) / (m.sum((1, 2)) + EPS)


def batch_penalty(features: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *, sigma: float = 0.3,
                  map: str = "decision", mass: str = "squared") -> torch.Tensor:
    """``mean_n P(map_n)`` of a batch's last features ``[N, K, h, w]`` and classifier weights, in float32."""
    build = decision_map if map == "decision" else positive_cam
    kernel = inverted_gaussian_kernel(features.shape[2], features.shape[3], sigma, features.device)
    with torch.autocast(features.device.type, enabled=False):  # the ratio in float32, also under mixed precision
        return penalty(build(features.float(), weight.float(), labels), kernel, map, mass).mean()


def camloss(logits: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, *,
            lam: float = 10.0, sigma: float = 0.3, map: str = "decision", schedule: str = "joint",
            mass: str = "squared", epoch: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
    """``CE + λ · mean P`` from one forward pass's logits and last features; also returns both parts (detached
    0-d tensors: reading them as floats is left to the caller, so training need not wait for the device each step).

    The keyword defaults here are the first formulation's; what ``python -m utils.train camloss`` trains
    with is ``utils.train.STRATEGIES["camloss"]`` (its ``defaults`` and ``config_defaults``).

    With ``schedule="alternate"`` the loss is ``CE`` in even epochs and ``λ · mean P`` in odd ones;
    with ``"hybrid"``, ``CE + λ · mean P`` in even epochs and ``λ · mean P`` in odd ones; with ``"alternate2"``,
    ``CE`` in epochs 0, 3, 6, … and ``λ · mean P`` in the others.
    """
    check_options(lam, sigma, map, schedule, mass)
    ce = F.cross_entropy(logits, labels)
    pen = batch_penalty(features, weight, labels, sigma=sigma, map=map, mass=mass)
    if (schedule in ("alternate", "hybrid") and epoch % 2 == 1) or (schedule == "alternate2" and epoch % 3 != 0):
        loss = lam * pen
    elif schedule in ("alternate", "alternate2"):
        loss = ce
    else:
        loss = ce + lam * pen
    return loss, {"ce": ce.detach(), "penalty": pen.detach()}
