"""Decoy digits (utils.decoy_digits): the authors' protocol exactly (patch level 255 − 25·label in a corner, random
labels at test time), both sources through one code path (scikit-learn's digits; MNIST from files the test writes in
torchvision's layout), clear failures offline, and training on them (every strategy, the MLP)."""
from __future__ import annotations

import functools
import gzip
import http.server
import json
import socket
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from utils import decoy_digits as dd
from utils import train as T
from utils.models import DigitMLP, build_model, load_checkpoint, save_checkpoint


def test_the_decoy_levels_are_the_authors():
    assert [round(float(dd.decoy_level(c)) * 255) for c in range(10)] == [255 - 25 * c for c in range(10)]
    assert float(dd.decoy_level(9, step=28)) == pytest.approx(3 / 255)


@pytest.mark.parametrize("split", dd.SPLITS)
def test_each_patch_sits_in_a_corner_and_carries_its_code(split: str):
    d = dd.load_decoy_split(split)
    n = len(d)
    assert d.images.shape == (n, 3, dd.CANVAS, dd.CANVAS) and d.masks is None
    assert torch.equal(d.images[:, 0], d.images[:, 1]) and torch.equal(d.images[:, 0], d.images[:, 2])
    assert d.annotation.shape == (n, dd.CANVAS, dd.CANVAS) and (d.annotation.sum((1, 2)) == 16).all()
    corners = d.annotation[:, [0, 0, -1, -1], [0, -1, 0, -1]]  # which corner pixel each patch covers
    assert (corners.sum(1) == 1).all() and (corners.float().mean(0) > 0.15).all()  # one corner each, all four used
    levels = (d.images[:, 0] * d.annotation).sum((1, 2)) / 16
    assert torch.allclose(levels, dd.decoy_level(d.backgrounds))
    assert float(d.images[:, 0][~d.annotation].max()) <= 1.0 and d.labels.unique().tolist() == list(range(10))
    agree = float((d.backgrounds == d.labels).float().mean())
    if split == "test":  # random labels: a tenth agree by chance
        assert 0.03 < agree < 0.2
    else:
        assert agree == 1.0


def test_the_splits_partition_the_digits_and_repeat_exactly():
    sizes = {s: len(dd.load_decoy_split(s)) for s in dd.SPLITS}
    assert sizes == {"train": 1078, "val": 359, "test": 360}
    a, b = dd.load_decoy_split("train", seed=3), dd.load_decoy_split("train", seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.annotation, b.annotation)
    assert not torch.equal(a.labels, dd.load_decoy_split("train", seed=4).labels)
    digits, _ = dd._sklearn_digits()
    flat = {tuple(x.flatten().tolist()) for x in digits}  # some of the 1,797 digits are pixel-for-pixel twins
    seen = [tuple(x.tolist()) for s in dd.SPLITS
            for x in dd.load_decoy_split(s, decoys="none").images[:, 0, 4:28, 4:28].reshape(-1, 576)]
    assert len(seen) == 1797 and set(seen) == flat


def test_the_decoy_free_control_is_the_digit_alone():
    d = dd.load_decoy_split("train", decoys="none", n=50)
    assert len(d) == 50 and not d.annotation.any() and (d.backgrounds == -1).all()
    assert float(d.images[:, :, :4].abs().max()) == 0.0  # the canvas border is black: nothing but the digit


def test_a_protocol_option_changes_the_patch():
    d = dd.load_decoy_split("val", protocol=dd.DecoyProtocol(patch=8, step=20, placement="fixed"), n=20)
    assert (d.annotation[:, :8, :8]).all() and int(d.annotation.sum()) == 20 * 64
    assert torch.allclose(d.images[:, 0, 0, 0], (255 - 20 * d.labels.float()) / 255)


def test_a_frame_decoy_surrounds_the_digit_like_a_background():
    d = dd.load_decoy_split("train", protocol=dd.DecoyProtocol(patch=2, placement="frame"), n=10)
    ring = torch.ones(32, 32, dtype=torch.bool)
    ring[2:30, 2:30] = False
    assert all(torch.equal(a, ring) for a in d.annotation)
    assert torch.allclose(d.images[:, 0, 0, :].mean(1), dd.decoy_level(d.labels))
    assert torch.allclose(d.images[:, 0, 31, :].mean(1), dd.decoy_level(d.labels))


@pytest.mark.parametrize("bad, says", [(dict(patch=0), "patch must be 1..8"), (dict(patch=9), "patch must be 1..8"),
                                       (dict(step=29), "step must be 1..28"), (dict(placement="middle"), "placement"),
                                       (dict(patch=4.0), "must be an int")])
def test_a_bad_protocol_is_refused_by_name(bad: dict, says: str):
    with pytest.raises((ValueError, TypeError), match=says):
        dd.DecoyProtocol(**bad)


def test_bad_splits_sources_and_rules_are_refused():
    for kwargs, says in ((dict(split="test_swapped"), "unknown decoy-digit split"),
                         (dict(split="train", source="cifar"), "unknown decoy-digit source"),
                         (dict(split="train", decoys="swapped"), "decoys must be one of"),
                         (dict(split="train", n=0), "n must be a positive int")):
        with pytest.raises(ValueError, match=says):
            dd.load_decoy_split(**kwargs)


# --------------------------------------------------------------------------- MNIST, from files the test writes
def _write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file as MNIST ships it (big-endian magic 0x0801/0x0803 + sizes + uint8 data), uncompressed."""
    dims = array.shape
    magic = 0x0800 | len(dims)
    path.write_bytes(struct.pack(">I" + "I" * len(dims), magic, *dims) + array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_root(tmp_path: Path) -> Path:
    """A tiny MNIST in torchvision's layout (``MNIST/raw/``): 60 training and 20 test digits, 28 px."""
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        labels = np.arange(n) % 10
        images = np.zeros((n, 28, 28), np.uint8)
        for i, c in enumerate(labels):  # a bar whose position is the label, so a model can learn it
            images[i, 4:24, 2 + 2 * c:4 + 2 * c] = 200 + rng.integers(0, 55)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return tmp_path / "mnist"


def test_mnist_goes_through_the_same_code_path(mnist_root: Path):
    train = dd.load_decoy_split("train", "mnist", root=mnist_root)
    val = dd.load_decoy_split("val", "mnist", root=mnist_root)
    test = dd.load_decoy_split("test", "mnist", root=mnist_root)
    assert (len(train), len(val), len(test)) == (50, 10, 20)
    assert train.images.shape[1:] == (3, 32, 32) and (train.annotation.sum((1, 2)) == 16).all()
    assert torch.allclose((train.images[:, 0] * train.annotation).sum((1, 2)) / 16, dd.decoy_level(train.labels))
    assert (test.backgrounds != test.labels).any()
    assert float(train.images[:, 0, 2:30, 2:30].max()) > 0.7  # the 28-px digits, centred with a 2-px margin


def test_missing_mnist_names_the_download_and_the_offline_source(tmp_path: Path, monkeypatch, capsys):
    with pytest.raises(dd.MNISTNotFound, match=r"python -m utils\.decoy_digits download.*'digits'"):
        dd.load_decoy_split("train", "mnist", root=tmp_path / "none")
    monkeypatch.setattr(dd, "MNIST_ROOT", tmp_path / "none")
    out = tmp_path / "models"
    with pytest.raises(SystemExit) as stop:
        T.main(["default", "--dataset", "decoy_mnist", "--out", str(out)])
    assert stop.value.code == 2 and not out.exists()  # before any training or any file
    assert "python -m utils.decoy_digits download" in capsys.readouterr().err


def test_an_offline_download_fails_clearly_and_leaves_nothing(tmp_path: Path, monkeypatch):
    from torchvision.datasets import MNIST
    with socket.socket() as s:  # a port nothing listens on: connection refused, like a machine without network
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(MNIST, "mirrors", [f"http://127.0.0.1:{port}/"])
    with pytest.raises(dd.MNISTNotFound, match=r"could not download MNIST.*network.*'digits'"):
        dd.download_mnist(tmp_path / "mnist")
    assert list(tmp_path.iterdir()) == []


def test_a_download_moves_the_files_into_place(tmp_path: Path, mnist_root: Path, monkeypatch):
    """The mirror is a local HTTP server of gzipped files (what torchvision fetches); md5s are the files' own."""
    import hashlib
    from torchvision.datasets import MNIST
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    resources = []
    for f in sorted((mnist_root / "MNIST" / "raw").iterdir()):
        gz = mirror / f"{f.name}.gz"
        gz.write_bytes(gzip.compress(f.read_bytes()))
        resources.append((gz.name, hashlib.md5(gz.read_bytes()).hexdigest()))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mirror))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setattr(MNIST, "mirrors", [f"http://127.0.0.1:{server.server_address[1]}/"])
        monkeypatch.setattr(MNIST, "resources", resources)
        root = dd.download_mnist(tmp_path / "fresh")
    finally:
        server.shutdown()
        server.server_close()
    assert len(dd.load_decoy_split("test", "mnist", root=root)) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "mirror", "mnist"]  # no temporary folder left


# --------------------------------------------------------------------------- training on them
def test_every_strategy_trains_on_decoy_digits_and_rrr_sees_the_patch(monkeypatch):
    seen = {}
    real = T.rrr.check_annotation

    def spy(images, annotation):
        seen.setdefault("annotation", annotation.clone())
        return real(images, annotation)

    monkeypatch.setattr(T.rrr, "check_annotation", spy)
    common = dict(dataset="decoy_digits", image_size=32, epochs=1, n_train=64, batch_size=32, widths=(4, 4, 4),
                  device="cpu")
    for strategy in T.STRATEGIES:
        r = T.train(T.TrainConfig(strategy=strategy, **common), progress=False)
        assert set(r.accuracy) == set(dd.SPLITS) and r.model.classifier.out_features == 10
    train = T.split_data(T.TrainConfig(strategy="rrr", **common), "train")
    batch = seen["annotation"].cpu().flatten(1)  # a shuffled batch of the training patches: each row is one of them
    assert batch.shape[0] == 32 and (batch.sum(1) == 16).all()
    rows = {tuple(r.tolist()) for r in train.annotation.flatten(1)}
    assert all(tuple(r.tolist()) in rows for r in batch)
    oracle = T.split_data(T.TrainConfig(strategy="oracle", **common), "train")
    assert (oracle.annotation.sum((1, 2)) == 16).all()  # the control sees patches, of random labels
    assert 0.03 < float((oracle.backgrounds == oracle.labels).float().mean()) < 0.3


def test_the_mlp_trains_saves_and_loads(tmp_path: Path):
    r = T.train(T.TrainConfig(strategy="rrr", arch="mlp", dataset="decoy_digits", image_size=32, epochs=2,
                              n_train=128, device="cpu"), progress=False)
    assert isinstance(r.model, DigitMLP) and [h["epoch"] for h in r.history] == [1, 2]
    assert all("penalty" in h and "ce" in h for h in r.history)
    pt, js = T.save_result(r, tmp_path)
    model, meta = load_checkpoint(pt)
    assert meta["classes"] == list(dd.CLASSES) and json.loads(js.read_text())["config"]["arch"] == "mlp"
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(model(x), r.model.eval()(x))
    assert isinstance(build_model(model.config), DigitMLP)
    save_checkpoint(model, tmp_path / "again.pt")
    with pytest.raises(ValueError, match="built for 1024 pixels"):
        model(torch.rand(1, 3, 28, 28))


@pytest.mark.parametrize("kwargs, says", [
    (dict(arch="mlp"), "decoy digits' reproduction model"),
    (dict(arch="mlp", dataset="decoy_digits", image_size=32, strategy="camloss"), "has none"),
    (dict(dataset="decoy_digits"), "decoy digits are 32 px"),
    (dict(decoy={"patch": 8}), "apply to the decoy-digit datasets only"),
    (dict(dataset="decoy_digits", image_size=32, decoy={"size": 8}), "bad decoy option"),
    (dict(dataset="decoy_digits", image_size=32, decoy={"patch": 20}), "patch must be 1..8"),
])
def test_bad_decoy_configs_are_refused_by_name(kwargs: dict, says: str):
    with pytest.raises((ValueError, TypeError), match=says):
        T.TrainConfig(**kwargs)


def test_old_checkpoints_still_describe_the_same_training():
    """A config saved before the ``decoy`` field existed is the same training as today's (decoy ``{}``)."""
    cfg = T.TrainConfig()
    assert "decoy" not in cfg.to_dict() and cfg.same_model_as(cfg.to_dict())
    decoys = T.TrainConfig(dataset="decoy_digits", image_size=32, decoy={"patch": 4, "placement": "frame"})
    assert decoys.to_dict()["decoy"] == {"patch": 4, "placement": "frame"} and decoys.same_model_as(decoys.to_dict())
    assert not decoys.same_model_as({**decoys.to_dict(), "decoy": {}})
