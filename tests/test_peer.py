"""utils.peer (notebook 05, section 10): the decision map's exact relation to the logits, the input gradient as RRR
computes it, the share on a region, the recorded picks and epoch costs, and the live models' configs."""
from __future__ import annotations

import pytest
import torch

from utils import camloss_search as S
from utils import peer, rrr
from utils.models import OrcaLeopardNet


def _net(seed: int = 0) -> OrcaLeopardNet:
    torch.manual_seed(seed)
    net = OrcaLeopardNet(widths=(4, 6, 8), num_classes=10).double().eval()
    for m in net.modules():  # batch-norm statistics away from 0 and 1, so the test is not a special case
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return net


def test_the_decision_map_averages_to_the_margin_over_the_other_classes():
    net, x = _net(), torch.rand(5, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 3, 9, 3, 7])
    d = peer.decision_maps(net, x, y)
    z, b = net(x), net.classifier.bias
    others = lambda v: (v.sum(-1) - v.gather(-1, y.view(-1, 1)).squeeze(-1)) / 9  # mean over c ≠ y
    margin = z.gather(1, y.view(-1, 1)).squeeze(1) - others(z)
    assert d.shape == (5, 8, 8)
    assert torch.allclose(d.mean((1, 2)) + b[y] - others(b.expand(5, -1)), margin, atol=1e-12)
    assert peer.decision_maps(net, x, y, size=(32, 32)).shape == (5, 32, 32)


def test_the_gradient_map_is_rrrs_input_gradient_summed_over_channels():
    net, x = _net(2), torch.rand(3, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    _, g = rrr.input_gradients(net, x)
    assert torch.equal(peer.gradient_maps(net, x), g.sum(1))


def test_the_gradient_penalty_is_rrrs_on_the_region():
    net, x = _net(4), torch.rand(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    region = torch.zeros(2, 32, 32, dtype=torch.bool)
    region[:, :4] = True
    _, g = rrr.input_gradients(net, x)
    assert torch.allclose(peer.gradient_penalty(net, x, region), (g[:, :, :4] ** 2).sum((1, 2, 3)), rtol=1e-12)


def test_share_on_a_region():
    maps = torch.zeros(2, 4, 4)
    maps[0, 0, 0], maps[0, 2, 2] = -3.0, 1.0  # |m|: 3 in the region, 1 outside
    region = torch.zeros(2, 4, 4, dtype=torch.bool)
    region[:, 0, :] = True
    assert peer.share_on(maps, region).tolist() == [0.75, 0.0]  # an all-zero map: share 0, not NaN
    with pytest.raises(ValueError, match="same shape.*upsample"):
        peer.share_on(torch.zeros(2, 2, 2), region)


def test_the_peers_are_the_recorded_picks_and_their_configs_are_the_recorded_ones():
    rows = S.read_results(S.DECOY_FILE)
    v = peer.peer_variants()
    assert peer.peer_variants(rows) == v  # the rows a caller read once, or the file
    assert v["camloss"] == S.choose_decoy(rows, "frame", "cnn", "camloss")
    assert v["rrr"] == S.choose_decoy(rows, "frame", "cnn", "rrr")
    for label, variant in v.items():
        cfg = peer.peer_config(variant, 0)
        recorded = [r for r in rows if r["variant"] == variant and r["seed"] == 0]
        assert recorded and cfg.to_dict() == {**recorded[0]["config"], "device": "cpu"}
        assert cfg.strategy == ("oracle" if label == "oracle" else label)
    # the double backward costs: rrr's epoch is several default epochs, camloss's about one
    assert peer.epoch_seconds(v["rrr"]) > 2 * peer.epoch_seconds(v["default"])
    assert peer.epoch_seconds(v["camloss"]) < 1.5 * peer.epoch_seconds(v["default"])
    assert peer.epoch_seconds(v["rrr"], rows) == peer.epoch_seconds(v["rrr"])
    with pytest.raises(ValueError, match="no native run.*camloss_search run --variants decoy-frame-cnn-rrr-lam10"):
        peer.epoch_seconds("decoy-frame-cnn-rrr-lam10", rows)  # screened on seeds 100-102 only


def test_the_shipped_peers_are_seed_0_of_the_recorded_picks():
    v = peer.peer_variants()
    rows = S.read_results(S.DECOY_FILE)
    for label, (model, meta) in peer.load_peers().items():
        cfg = peer.peer_config(v[label], 0)
        assert cfg.same_model_as(meta["config"]), f"{label}: the shipped model is not seed 0 of {v[label]}"
        recorded = [r["accuracy"]["test"] for r in rows if r["variant"] == v[label] and r["seed"] == 0]
        assert abs(meta["accuracy"]["test"] - recorded[0]) < 0.05  # one thread here, two there: close, not equal


def test_live_peers_train_once_then_are_read(tmp_path, monkeypatch):
    small = {"tiny": "decoy-frame-cnn-default"}
    real = peer.peer_config

    def short(variant, seed=0, device="cpu"):  # the recorded config, cut to one epoch on 64 digits
        import dataclasses
        return dataclasses.replace(real(variant, seed, device), epochs=1, n_train=64)

    monkeypatch.setattr(peer, "peer_config", short)
    first = peer.train_peers(small, models_dir=tmp_path, progress=False)
    assert (tmp_path / "decoy-frame-cnn-default" / "default_seed0.pt").is_file()
    again = peer.train_peers(small, models_dir=tmp_path, progress=False)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(first["tiny"][0](x), again["tiny"][0](x))
    assert again["tiny"][1]["config"]["decoy"] == {"patch": 4, "placement": "frame"}
