"""Right for the Right Reasons (utils.rrr and the rrr strategy): exact values on tiny nets in float64, the double
backpropagation checked by finite differences, the annotation's contract, and the strategy end to end."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils import rrr
from utils import train as T


def _tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 3, 3, padding=1), nn.Tanh(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 3)).double().eval()


def _summed_log_p(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(model(x), 1).sum()


def test_the_input_gradient_is_the_finite_difference_of_the_summed_log_probabilities():
    model, x = _tiny(), torch.rand(2, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    logits, grad = rrr.input_gradients(model, x)
    assert torch.equal(logits, model(x)) and grad.shape == x.shape
    h = 1e-4  # central differences: error ~h² (1e-8 of the value) plus rounding ~1e-16/h
    for n, c, i, j in ((0, 0, 0, 0), (1, 2, 3, 4), (0, 1, 5, 2)):
        e = torch.zeros_like(x)
        e[n, c, i, j] = h
        fd = (_summed_log_p(model, x + e) - _summed_log_p(model, x - e)) / (2 * h)
        assert float(grad[n, c, i, j]) == pytest.approx(float(fd.detach()), rel=1e-6, abs=1e-10)


def test_the_penalty_is_the_squared_gradient_inside_the_annotation():
    g = torch.arange(2 * 3 * 2 * 2, dtype=torch.float64).reshape(2, 3, 2, 2)
    a = torch.zeros(2, 1, 2, 2, dtype=torch.float64)
    a[0, 0, 0, 1] = 1.0  # image 0: one pixel must not matter; image 1: nothing is annotated
    assert rrr.rrr_penalty(g, a).tolist() == [1.0 ** 2 + 5.0 ** 2 + 9.0 ** 2, 0.0]
    assert rrr.rrr_penalty(g, torch.ones_like(a)).tolist() == g.pow(2).sum((1, 2, 3)).tolist()
    a[1] = 0.5  # a soft annotation scales the gradient before squaring
    assert float(rrr.rrr_penalty(g, a)[1]) == pytest.approx(0.25 * float(g[1].pow(2).sum()))


def test_double_backpropagation_gives_the_penalty_its_gradient_in_the_weights():
    """d(penalty)/d(weight) from autograd (through the input gradient) = the finite difference of the penalty."""
    model, x = _tiny(2), torch.rand(2, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    a = torch.zeros(2, 1, 6, 6, dtype=torch.float64)
    a[..., :2, :] = 1.0

    def penalty() -> torch.Tensor:
        _, grad = rrr.input_gradients(model, x, create_graph=True)
        return rrr.rrr_penalty(grad, a).mean()

    w = model[0].weight
    (dw,) = torch.autograd.grad(penalty(), w)
    assert float(dw.abs().max()) > 0
    h = 1e-4
    for idx in ((0, 0, 0, 0), (3, 2, 1, 2)):
        with torch.no_grad():
            w[idx] += h
        up = float(penalty())
        with torch.no_grad():
            w[idx] -= 2 * h
        down = float(penalty())
        with torch.no_grad():
            w[idx] += h
        assert float(dw[idx]) == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-12)


def test_the_loss_is_cross_entropy_plus_lambda_times_the_mean_penalty():
    model, x = _tiny(), torch.rand(3, 3, 6, 6, dtype=torch.float64)
    y, a = torch.tensor([0, 1, 2]), torch.ones(3, 1, 6, 6, dtype=torch.float64)
    logits, grad = rrr.input_gradients(model, x)
    loss, parts = rrr.rrr_loss(logits, grad, y, a, lam=7.0)
    assert float(loss) == pytest.approx(float(F.cross_entropy(logits, y) + 7.0 * grad.pow(2).sum((1, 2, 3)).mean()))
    assert float(parts["ce"]) == pytest.approx(float(F.cross_entropy(logits, y)))
    with pytest.raises(ValueError, match="lam must be a number >= 0"):
        rrr.rrr_loss(logits, grad, y, a, lam=-1.0)


@pytest.mark.parametrize("bad, error, says", [
    (torch.ones(2, 5, 5), ValueError, r"annotation must be \[N, H, W\] = \[2, 6, 6\]"),
    (torch.ones(3, 6, 6), ValueError, r"\[2, 6, 6\]"),
    (torch.full((2, 6, 6), 2.0), ValueError, r"in \[0, 1\]"),
    ([[0, 1]], TypeError, "annotation must be a tensor"),
])
def test_a_bad_annotation_is_a_clear_error(bad, error, says):
    with pytest.raises(error, match=says):
        rrr.check_annotation(torch.zeros(2, 3, 6, 6), bad)
    assert rrr.check_annotation(torch.zeros(2, 3, 6, 6), torch.ones(2, 6, 6, dtype=torch.bool)).shape == (2, 1, 6, 6)


TINY = dict(epochs=3, n_train=128, n_eval=16, image_size=32, widths=(4, 8), batch_size=16, arch="local")


def test_the_strategy_trains_on_the_background_annotation_and_lowers_its_penalty():
    """rrr records ce and its penalty per epoch; with λ = 1000 the trained model's penalty on held-out images is well
    below that of the same training with λ = 0 (measured: 0.0045 against 0.0126)."""
    runs = {lam: T.train(T.TrainConfig(strategy="rrr", seed=0, extra={"lam": lam}, **TINY), progress=False)
            for lam in (0.0, 1e3)}
    held_out = {}
    for lam, r in runs.items():
        assert {"ce", "penalty", "val", "test_swapped"} <= set(r.history[-1]) and r.history[-1]["penalty"] >= 0
        val = T.split_data(r.config, "val")
        _, grad = rrr.input_gradients(r.model, val.images)
        held_out[lam] = float(rrr.rrr_penalty(grad, rrr.check_annotation(val.images, ~val.masks)).mean())
    assert held_out[1e3] < 0.6 * held_out[0.0], held_out
    assert T.STRATEGIES["rrr"].defaults["lam"] > 0 and not T.STRATEGIES["rrr"].channels_last


def test_rrr_needs_masks_so_not_on_caltech():
    with pytest.raises(ValueError, match="rrr.*object masks.*Caltech-256 has none"):
        T.TrainConfig(strategy="rrr", dataset="caltech256")


def test_the_command_line_trains_rrr_with_its_lambda(tmp_path, capsys):
    import json
    assert T.main(["rrr", "--lam", "5", "--epochs", "1", "--n-train", "64", "--image-size", "32", "--out",
                   str(tmp_path), "--quiet"]) == 0
    saved = json.loads((tmp_path / "rrr_seed0.json").read_text())
    assert saved["config"]["extra"] == {"lam": 5.0} and saved["config"]["arch"] == "local"
    assert "penalty" in saved["history"][0]
    for bad, says in ((["--lam", "-1"], "lam must be a number >= 0"), (["--sigma", "0.2"], "do not apply")):
        with pytest.raises(SystemExit):
            T.main(["rrr", *bad, "--out", str(tmp_path)])
        assert says in capsys.readouterr().err
