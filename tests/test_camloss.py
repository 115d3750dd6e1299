"""CAMLoss: kernel, penalties, one forward pass, gradients, options, and the strategy in training."""
import json
import math

import pytest
import torch

from utils import train as T
from utils.camloss import (camloss, check_options, decision_map, inverted_gaussian_kernel, penalty, positive_cam)
from utils.models import OrcaLeopardNet


@pytest.mark.parametrize("h, w", [(8, 8), (7, 7), (24, 24), (6, 10)])
def test_kernel_shape_symmetry_minimum_and_corners(h, w):
    k = inverted_gaussian_kernel(h, w, sigma=0.2)
    assert k.shape == (h, w) and float(k.min()) >= 0 and float(k.max()) < 1
    assert torch.allclose(k, k.flip(0)) and torch.allclose(k, k.flip(1))
    if h == w:
        assert torch.allclose(k, k.T)
    centre = k[(h - 1) // 2: h // 2 + 1, (w - 1) // 2: w // 2 + 1]
    assert torch.isclose(centre.max(), k.min())  # the minimum is at the centre cell(s)
    assert torch.isclose(k[0, 0], k.max()) and torch.isclose(k[-1, -1], k.max())  # the maximum at the corners
    if h % 2:
        assert k[h // 2, w // 2] == 0  # an odd grid has a cell exactly at the centre


def test_kernel_width():
    narrow, wide = inverted_gaussian_kernel(8, 8, 0.1), inverted_gaussian_kernel(8, 8, 0.4)
    assert (narrow >= wide).all() and narrow.mean() > wide.mean()
    with pytest.raises(ValueError, match="sigma must be > 0"):
        inverted_gaussian_kernel(8, 8, 0.0)


@pytest.mark.parametrize("map, mass", [("decision", "squared"), ("decision", "abs"), ("positive_cam", "squared")])
def test_penalty_is_scale_invariant_and_prefers_the_centre(map, mass):
    k = inverted_gaussian_kernel(8, 8, 0.2)
    torch.manual_seed(0)
    m = torch.rand(3, 8, 8)
    p = penalty(m, k, map, mass)
    assert torch.allclose(penalty(m * 37.0, k, map, mass), p, atol=1e-6)
    if map == "decision":
        assert torch.allclose(penalty(-m, k, map, mass), p, atol=1e-6)  # the sign of the decision map does not matter
    centre, border = torch.zeros(1, 8, 8), torch.zeros(1, 8, 8)
    centre[0, 3:5, 3:5] = 1.0
    border[0, 0, :] = 1.0
    assert penalty(centre, k, map, mass) < 0.2 < penalty(border, k, map, mass) < 1.0


def test_abs_mass_counts_what_global_average_pooling_sums():
    """One strong animal cell (d = 8) against 20 weak background cells (d = 1 each).

    GAP sums d linearly: the background carries 20 / 28 of the decision. The |d| share off-centre says so
    (≈ 0.7 of the kernel's weight there); the d² share (20 / 84) calls the same map mostly central.
    """
    d = torch.zeros(1, 8, 8)
    d[0, 3, 3] = 8.0
    border = torch.tensor([(0, j) for j in range(8)] + [(7, j) for j in range(8)] + [(i, 0) for i in (2, 3, 4, 5)])
    d[0, border[:, 0], border[:, 1]] = 1.0
    k = inverted_gaussian_kernel(8, 8, 0.3)
    background_share_of_logit = float(d[0, border[:, 0], border[:, 1]].sum() / d.sum())
    assert math.isclose(background_share_of_logit, 20 / 28, rel_tol=1e-6)
    k_border = float(k[border[:, 0], border[:, 1]].mean())
    expected_abs = (20 * k_border + 8 * float(k[3, 3])) / 28
    expected_sq = (20 * k_border + 64 * float(k[3, 3])) / 84
    assert math.isclose(float(penalty(d, k, "decision", "abs")), expected_abs, rel_tol=1e-5)
    assert math.isclose(float(penalty(d, k, "decision", "squared")), expected_sq, rel_tol=1e-5)
    assert float(penalty(d, k, "decision", "abs")) > 0.5 > 0.3 > float(penalty(d, k, "decision", "squared"))


def test_maps_from_features_and_weights():
    torch.manual_seed(0)
    f, w = torch.rand(2, 4, 3, 3), torch.randn(2, 4)
    y = torch.tensor([0, 1])
    d = decision_map(f, w, y)
    assert torch.allclose(d[0], torch.einsum("k,khw->hw", w[0] - w[1], f[0]), atol=1e-6)
    assert torch.allclose(d[1], torch.einsum("k,khw->hw", w[1] - w[0], f[1]), atol=1e-6)
    assert torch.allclose(positive_cam(f, w, y)[1], torch.einsum("k,khw->hw", w[1], f[1]).clamp(min=0))
    w3 = torch.randn(3, 4)  # three classes: w_y minus the mean of the others
    assert torch.allclose(decision_map(f, w3, torch.tensor([2, 2]))[0],
                          torch.einsum("k,khw->hw", w3[2] - (w3[0] + w3[1]) / 2, f[0]), atol=1e-6)


def test_one_forward_pass_and_the_gradient_reaches_the_conv_weights():
    torch.manual_seed(0)
    model = OrcaLeopardNet().train()
    calls = []
    model.features.register_forward_hook(lambda *a: calls.append(1))
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 0, 1])
    loss, logits, parts = T.STRATEGIES["camloss"].loss(model, x, y, {"lam": 10.0, "sigma": 0.2, "map": "decision"})
    assert len(calls) == 1 and logits.shape == (4, 2) and set(parts) == {"ce", "penalty"}
    calls.clear()  # the default strategy records the same parts, from its one forward pass
    _, _, parts = T.STRATEGIES["default"].loss(model, x, y, {"epoch": 0})
    assert len(calls) == 1 and set(parts) == {"ce", "penalty"} and 0 <= parts["penalty"] < 1
    # the penalty alone (no cross-entropy) moves the first convolution
    logits, feats = model.forward_with_features(x)
    _, parts = camloss(logits, feats, y, model.classifier.weight)
    pen_only = camloss(logits, feats, y, model.classifier.weight, lam=1.0)[0] - torch.nn.functional.cross_entropy(logits, y)
    model.zero_grad()
    pen_only.backward()
    assert model.features[0].weight.grad.abs().sum() > 0
    assert 0 <= parts["penalty"] < 1 and parts["ce"] > 0


def test_lambda_zero_is_cross_entropy():
    torch.manual_seed(0)
    logits, feats, y, w = torch.randn(4, 2), torch.rand(4, 8, 2, 2), torch.tensor([0, 1, 1, 0]), torch.randn(2, 8)
    loss, _ = camloss(logits, feats, y, w, lam=0.0)
    assert torch.isclose(loss, torch.nn.functional.cross_entropy(logits, y))


@pytest.mark.parametrize("lam, sigma, map, exc, words", [
    (-0.1, 0.2, "decision", ValueError, "lam .* must be >= 0"),
    (1.0, 0.0, "decision", ValueError, "sigma .* must be > 0"),
    (1.0, -1.0, "decision", ValueError, "sigma .* must be > 0"),
    (1.0, 0.2, "gradcam", ValueError, "map must be one of"),
    ("1", 0.2, "decision", TypeError, "lam must be a number"),
])
def test_bad_options(lam, sigma, map, exc, words):
    with pytest.raises(exc, match=words):
        check_options(lam, sigma, map)


def test_bad_schedule():
    with pytest.raises(ValueError, match="schedule must be one of .*'joint', 'alternate', 'hybrid', 'alternate2'.*got 'mixed'"):
        check_options(1.0, 0.2, "decision", "mixed")
    with pytest.raises(ValueError, match="schedule must be one of"):
        T.TrainConfig(strategy="camloss", extra={"schedule": "mixed"})
    with pytest.raises(ValueError, match="mass must be one of .*'abs', 'squared'.*got 'cube'"):
        T.TrainConfig(strategy="camloss", extra={"mass": "cube"})
    with pytest.raises(ValueError, match="arch must be one of .*'course', 'local'.*got 'bagnet'"):
        T.TrainConfig(strategy="camloss", arch="bagnet")


def test_alternate_schedule_is_cross_entropy_then_penalty_only():
    """The original's schedule: CE alone in even epochs, λ·P alone in odd ones; joint is their sum."""
    torch.manual_seed(0)
    logits, feats, y, w = torch.randn(4, 2), torch.rand(4, 8, 3, 3), torch.tensor([0, 1, 1, 0]), torch.randn(2, 8)
    joint, parts = camloss(logits, feats, y, w, lam=4.0)
    for epoch in (0, 2):
        ce, _ = camloss(logits, feats, y, w, lam=4.0, schedule="alternate", epoch=epoch)
        assert torch.isclose(ce, torch.nn.functional.cross_entropy(logits, y))
    pen, _ = camloss(logits, feats, y, w, lam=4.0, schedule="alternate", epoch=1)
    assert math.isclose(float(pen), 4.0 * parts["penalty"], rel_tol=1e-6)
    # hybrid: the joint loss in even epochs, the penalty alone in odd ones
    assert torch.isclose(camloss(logits, feats, y, w, lam=4.0, schedule="hybrid", epoch=2)[0], joint)
    assert torch.isclose(camloss(logits, feats, y, w, lam=4.0, schedule="hybrid", epoch=3)[0], pen)
    # alternate2: cross-entropy in epochs 0, 3, 6, …, the penalty alone in the others
    for epoch, expected in ((0, ce), (1, pen), (2, pen), (3, ce), (4, pen)):
        assert torch.isclose(camloss(logits, feats, y, w, lam=4.0, schedule="alternate2", epoch=epoch)[0], expected)
    assert math.isclose(float(joint), parts["ce"] + 4.0 * parts["penalty"], rel_tol=1e-6)


def test_saved_camloss_configs_from_before_the_later_options_still_match():
    """A config saved before ``schedule``, ``mass`` and ``arch`` existed was trained joint, d², course model."""
    first = T.TrainConfig(strategy="camloss", arch="course", epochs=6,
                          extra={"schedule": "joint", "mass": "squared"})
    old = first.to_dict()
    del old["arch"]
    old["extra"] = {k: v for k, v in old["extra"].items() if k not in ("schedule", "mass")}
    assert first.same_model_as(old)
    for other in ({"arch": "local"}, {"extra": {"schedule": "alternate", "mass": "squared"}},
                  {"extra": {"schedule": "joint", "mass": "abs"}}):
        changed = {"arch": "course", "epochs": 6, "extra": {"schedule": "joint", "mass": "squared"}, **other}
        assert not T.TrainConfig(strategy="camloss", **changed).same_model_as(old), other


def test_camloss_strategy_trains_deterministically_and_records_its_options(tmp_path, capsys):
    tiny = dict(strategy="camloss", epochs=1, n_train=64, n_eval=16, image_size=32, widths=(4, 8), batch_size=32)
    a = T.train(T.TrainConfig(**tiny, extra={"lam": 5.0}), progress=False)
    b = T.train(T.TrainConfig(**tiny, extra={"lam": 5.0}), progress=False)
    assert a.config.extra == {**T.STRATEGIES["camloss"].defaults, "lam": 5.0}
    assert a.config.arch == T.STRATEGIES["camloss"].config_defaults["arch"]
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    assert T.main(["camloss", "--epochs", "1", "--n-train", "64", "--image-size", "32", "--lam", "3",
                   "--sigma", "0.3", "--map", "positive_cam", "--schedule", "alternate", "--mass", "squared",
                   "--arch", "course", "--out", str(tmp_path), "--quiet"]) == 0
    cfg = json.loads((tmp_path / "camloss_seed0.json").read_text())["config"]
    assert cfg["extra"] == {"lam": 3.0, "sigma": 0.3, "map": "positive_cam", "schedule": "alternate", "mass": "squared"}
    assert cfg["arch"] == "course" and cfg["epochs"] == 1
    assert "lam=3.0" in capsys.readouterr().err


def test_cli_rejects_camloss_options_for_other_strategies(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        T.main(["default", "--lam", "1", "--out", str(tmp_path)])
    assert e.value.code == 2 and "do not apply to strategy 'default'" in capsys.readouterr().err
