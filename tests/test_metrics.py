"""Deletion/insertion, Spearman and the randomisation check on models whose answers are known."""
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from utils.explain import cam, gradcam
from utils.metrics import deletion_insertion, randomisation_check, spearman
from utils.models import OrcaLeopardNet


class RegionNet(nn.Module):
    """logit_1 = 40 · (mean of channel 0 over the top-left 4×4 region − 0.25), logit_0 = 0: only that region matters."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(40.0))

    def forward(self, x):
        z = self.scale * (x[:, 0, :4, :4].mean((1, 2)) - 0.25)
        return torch.stack([torch.zeros_like(z), z], 1)


def region_map(n=2):
    m = torch.zeros(n, 8, 8)
    m[:, :4, :4] = 1.0 + torch.arange(16.0).view(4, 4) / 100  # distinct values inside the region
    return m


def test_deletion_and_insertion_rank_a_perfect_map_first():
    net, x = RegionNet(), torch.ones(2, 3, 8, 8)
    perfect = region_map()
    inverted = -perfect
    target = torch.tensor([1, 1])
    good = deletion_insertion(net, x, perfect, target, steps=4, deletion_fill=0.0, insertion_start=0.0)
    bad = deletion_insertion(net, x, inverted, target, steps=4, deletion_fill=0.0, insertion_start=0.0)
    assert (good["deletion"] < bad["deletion"]).all() and (good["insertion"] > bad["insertion"]).all()
    # curve endpoints are exact: intact image, then everything removed (deletion); the reverse for insertion
    p_intact, p_empty = torch.sigmoid(torch.tensor(40 * 0.75)), torch.sigmoid(torch.tensor(40 * -0.25))
    for r in (good, bad):
        assert torch.allclose(r["deletion_curve"][:, 0], p_intact) and torch.allclose(r["deletion_curve"][:, -1], p_empty)
        assert torch.allclose(r["insertion_curve"][:, 0], p_empty) and torch.allclose(r["insertion_curve"][:, -1], p_intact)
    # the perfect map removes the 16 region pixels within the first step (16 of 64 pixels): the curve is at p_empty
    assert torch.allclose(good["deletion_curve"][:, 1], p_empty)
    # AUC by trapezoids over 5 equally spaced points
    c = good["deletion_curve"][0]
    assert torch.isclose(good["deletion"][0], ((c[1:] + c[:-1]) / 2).mean())


def test_deletion_insertion_leaves_the_model_mode_and_checks_shapes():
    net = RegionNet().train()
    deletion_insertion(net, torch.ones(1, 3, 8, 8), region_map(1), steps=2)
    assert net.training
    with pytest.raises(ValueError, match="maps must be \\[N, H, W\\]"):
        deletion_insertion(net, torch.ones(1, 3, 8, 8), torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        deletion_insertion(net, torch.ones(1, 3, 8, 8), region_map(1), steps=0)


def test_deletion_insertion_runs_a_folded_copy_with_the_models_own_probabilities(monkeypatch):
    """The curves come from a copy with Conv + BatchNorm folded (fewer passes over memory): the same probabilities as
    the model itself to float32 rounding; the model is not touched (its hooks see only the target's pass)."""
    import utils.metrics as M
    torch.manual_seed(0)
    model = OrcaLeopardNet().eval()
    for m in model.modules():  # statistics as if trained, so the folding has something to fold
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.rand(2, 3, 32, 32)
    maps = torch.rand(2, 32, 32)
    calls = []
    model.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    folded = deletion_insertion(model, x, maps, steps=4)
    assert calls == [2], "one pass of the model itself (the target); the 2 × 10 masked images went to the copy"
    monkeypatch.setattr(M, "inference_copy", lambda m: m)  # the model itself for every pass
    plain = deletion_insertion(model, x, maps, steps=4)
    assert len(calls) == 1 + 1 + 2
    for key in ("deletion_curve", "insertion_curve"):
        assert torch.allclose(folded[key], plain[key], rtol=0, atol=1e-6)
        assert not torch.equal(folded[key][:, 0], folded[key][:, -1])  # the curves move: the test can see a change


def test_spearman_matches_scipy():
    torch.manual_seed(0)
    a, b = torch.rand(3, 5, 5), torch.rand(3, 5, 5)
    ours = spearman(a, b)
    ref = [spearmanr(a[i].flatten(), b[i].flatten()).statistic for i in range(3)]
    assert torch.allclose(ours, torch.tensor(ref, dtype=ours.dtype), atol=1e-6)
    assert torch.allclose(spearman(a, a), torch.ones(3)) and torch.allclose(spearman(a, -a), -torch.ones(3))


def test_randomisation_check_leaves_the_model_alone_and_walks_top_down():
    torch.manual_seed(0)
    model = OrcaLeopardNet().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(2, 3, 32, 32)
    rng = torch.random.get_rng_state()
    result = randomisation_check(model, x, cam)
    assert torch.equal(torch.random.get_rng_state(), rng)  # global RNG untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    names = [n for n, _ in result]
    assert names[0] == "classifier" and names[-1] == "features.0" and len(names) == 9  # 4 conv + 4 bn + linear
    # CAM explains the model: randomising the classifier already changes it
    assert result[0][1] < 0.99
    assert result == randomisation_check(model, x, cam)  # seeded: reproducible


def test_randomisation_by_blocks_resets_each_block_whole_and_returns_the_maps():
    torch.manual_seed(0)
    model = OrcaLeopardNet().eval()
    x = torch.rand(2, 3, 32, 32)
    result, maps = randomisation_check(model, x, cam, layers=["classifier", "features.9", "features.4"],
                                       return_maps=True)
    assert [n for n, _ in result] == ["classifier", "features.9", "features.4"]
    assert len(maps) == 4 and torch.equal(maps[0], cam(model, x, model(x).argmax(1)))
    assert result[0] == randomisation_check(model, x, cam)[0]  # the first step is the same layer either way
    assert abs(result[-1][1] - float(spearman(maps[0].abs(), maps[-1].abs()).mean())) < 1e-6
    with pytest.raises(ValueError, match="layer 'features.99' not found.*top-level blocks: normalize, features"):
        randomisation_check(model, x, cam, layers=["features.99"])
    with pytest.raises(ValueError, match="'pool' has no parameters"):
        randomisation_check(model, x, cam, layers=["pool"])
    with pytest.raises(TypeError, match=r"layers=\['classifier'\]"):
        randomisation_check(model, x, cam, layers="classifier")


def test_randomisation_reports_chosen_steps_with_the_full_cascades_values():
    torch.manual_seed(0)
    model = OrcaLeopardNet().eval()
    x = torch.rand(2, 3, 32, 32)
    full, full_maps = randomisation_check(model, x, gradcam, return_maps=True)
    ends, ends_maps = randomisation_check(model, x, gradcam, at=(0, -1), return_maps=True)
    assert ends == [full[0], full[-1]] and len(ends_maps) == 3
    assert torch.equal(ends_maps[0], full_maps[0]) and torch.equal(ends_maps[2], full_maps[-1])
    assert randomisation_check(model, x, gradcam, at=(3, -9, 3)) == [full[0], full[3]]  # -9: the first of 9 steps
    with pytest.raises(ValueError, match=r"\[9\] are out of range; this cascade has 9 steps \(0 to 8"):
        randomisation_check(model, x, gradcam, at=(0, 9))
    with pytest.raises(ValueError, match="names no step"):
        randomisation_check(model, x, gradcam, at=())
    with pytest.raises(TypeError, match=r"sequence of step indices, e.g. \(0, -1\)"):
        randomisation_check(model, x, gradcam, at=-1)


def test_every_method_meets_the_same_random_networks_and_its_own_noise_again():
    """The random weights come from their own seeded stream, and each call of the method replays the caller's random
    state: a method that draws noise sees the same networks as one that does not, and the same noise each time."""
    torch.manual_seed(0)
    model = OrcaLeopardNet().eval()
    model.features[1].running_var.fill_(4.0)  # as if trained (a new layer's is 1)
    x = torch.rand(2, 3, 32, 32)
    seen = {"plain": [], "noisy": []}

    def record(kind, draws):
        def method(m, images, target):
            seen[kind].append({k: v.detach().clone() for k, v in m.state_dict().items()})
            return cam(m, images, target) + (torch.rand(images.shape[0], 32, 32) if draws else 0)
        return method

    randomisation_check(model, x, record("plain", False))
    before = torch.random.get_rng_state()
    randomisation_check(model, x, record("noisy", True))
    after = torch.random.get_rng_state()
    assert len(seen["plain"]) == len(seen["noisy"]) == 10
    assert all(torch.equal(a[k], b[k]) for a, b in zip(seen["plain"], seen["noisy"]) for k in a)
    assert not torch.equal(seen["plain"][0]["classifier.weight"], seen["plain"][1]["classifier.weight"])
    torch.random.set_rng_state(before)
    torch.rand(2, 32, 32)  # what one call of the noisy method draws
    assert torch.equal(after, torch.random.get_rng_state()), "the caller's state ends as after one call"
    # reset_parameters() resets a batch norm's statistics too: the randomised layer is a new one
    var = [s["features.1.running_var"] for s in seen["plain"]]
    assert torch.equal(var[0], torch.full_like(var[0], 4.0)) and torch.equal(var[-1], torch.ones_like(var[-1]))

    def noise(m, images, target):  # blind to the model, random: the same noise at each call, so it fails, ρ = 1
        return torch.rand(images.shape[0], 32, 32)
    assert all(abs(rho - 1.0) < 1e-6 for _, rho in randomisation_check(model, x, noise))


def test_a_method_blind_to_the_model_fails_the_sanity_check():
    """An 'explanation' that only looks at the image (an edge detector) stays perfectly correlated."""
    def edges(model, images, target):  # diagonal differences, padded back to [N, H, W]
        return torch.nn.functional.pad((images[:, :, 1:, 1:] - images[:, :, :-1, :-1]).abs().sum(1), (0, 1, 0, 1))
    model = OrcaLeopardNet().eval()
    result = randomisation_check(model, torch.rand(2, 3, 32, 32), edges)
    assert all(abs(rho - 1.0) < 1e-6 for _, rho in result)
    assert min(rho for _, rho in randomisation_check(model, torch.rand(2, 3, 32, 32), gradcam)) < 0.9


def test_cam_logit_split_adds_up_exactly_and_follows_the_mask():
    from utils.data import load_split
    from utils.metrics import cam_logit_split
    from utils.models import load_shipped
    model = load_shipped()[0]
    d = load_split("test_iid", 8)
    r = cam_logit_split(model, d.images, d.masks)
    assert torch.allclose(r["animal"] + r["background"] + r["bias"], r["logit"], atol=1e-5)
    empty = cam_logit_split(model, d.images, torch.zeros_like(d.masks))  # no animal: all is background
    assert torch.equal(empty["animal"], torch.zeros(8)) and torch.allclose(empty["background"], r["animal"] + r["background"])


def test_baseline_maps():
    from utils.explain import centre_map, random_map
    net, x = OrcaLeopardNet(), torch.rand(2, 3, 16, 16)
    assert torch.equal(random_map(net, x, seed=3), random_map(net, x, seed=3))
    assert not torch.equal(random_map(net, x, seed=3), random_map(net, x, seed=4))
    c = centre_map(net, x)
    assert c.shape == (2, 16, 16) and torch.equal(c[0], c[1])
    assert c[0, 7:9, 7:9].min() > c[0, 0, 0] and torch.allclose(c[0], c[0].flip(0)) and torch.allclose(c[0], c[0].T)
