"""The Caltech-256 loader on a small fake folder tree the tests draw (no network, no real data)."""
from __future__ import annotations

import hashlib
import json
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from utils import caltech
from utils.caltech import CATEGORIES, CaltechNotFound, DownloadError
from utils.data import LAND, SEA
from utils.train import TrainConfig, evaluate_splits, train

N_LEOPARD, N_ORCA = 20, 10


@pytest.fixture
def tree(caltech_tree, tmp_path: Path) -> Path:
    return caltech_tree(tmp_path / "caltech", N_LEOPARD, N_ORCA, cmyk=True)


def _load(split: str, root: Path, **kw):
    with pytest.warns(UserWarning, match="124_9999.jpg"):
        return caltech.load_caltech_split(split, 32, root, **kw)


def test_splits_are_disjoint_complete_and_deterministic(tree: Path) -> None:
    paths, labels = caltech._scan(tree)
    assert len(paths) == N_LEOPARD + N_ORCA + 1  # the corrupt file is listed, then skipped when read
    names = [f"{l}/{p.name}" for p, l in zip(paths, labels)][:-1]
    rng = np.random.default_rng(1)
    blue = list(rng.uniform(-1, 1, len(names)))
    a = caltech.assign_splits(names, labels[:-1], blue, seed=0)
    assert a == caltech.assign_splits(names, labels[:-1], blue, seed=0)
    assert a != caltech.assign_splits(names, labels[:-1], blue, seed=1)
    every = sorted(i for v in a.values() for i in v)
    assert every == list(range(len(names)))  # each image in exactly one split
    # the misleading split does not move with the seed: it is chosen by the rule, not drawn
    assert a["test_swapped"] == caltech.assign_splits(names, labels[:-1], blue, seed=1)["test_swapped"]


def test_misleading_rule_takes_bluest_leopards_and_least_blue_orcas() -> None:
    names = [f"{i:02d}" for i in range(40)]
    labels = [0] * 20 + [1] * 20
    blue = [i / 20 for i in range(20)] + [i / 20 for i in range(20)]
    swapped = caltech.assign_splits(names, labels, blue, swapped_fraction=0.15)["test_swapped"]
    assert swapped == [17, 18, 19, 20, 21, 22]  # 3 bluest leopards, 3 least blue orcas


def test_loaded_split_rgb_sizes_backgrounds_and_balance(tree: Path) -> None:
    test = _load("test_swapped", tree)
    assert test.images.shape[1:] == (3, 32, 32) and test.images.dtype == torch.float32
    assert test.masks is None
    # the bluest leopards sit on "sea", the least blue orcas on "land": the misleading test
    assert set(test.backgrounds[test.labels == 0].tolist()) == {SEA}
    assert set(test.backgrounds[test.labels == 1].tolist()) == {LAND}
    train_split = _load("train", tree)
    counts = torch.bincount(train_split.labels, minlength=2)
    assert counts[0] == counts[1] > 0  # orcas topped up with augmented copies
    unbalanced = _load("train", tree, balance=False)
    assert torch.bincount(unbalanced.labels, minlength=2)[1] < counts[1]
    assert torch.equal(train_split.images[:len(unbalanced)], unbalanced.images)
    again = _load("train", tree)
    assert torch.equal(again.images, train_split.images)  # augmentation is seeded


def test_grayscale_and_cmyk_images_become_rgb(tree: Path) -> None:
    grey = tree / "256_ObjectCategories" / CATEGORIES[0] / "129_0004.jpg"
    assert Image.open(grey).mode == "L"
    assert Image.open(grey.with_name("129_0005.jpg")).mode == "CMYK"  # read as RGB like the grey one
    with pytest.warns(UserWarning):
        splits = {s: caltech.load_caltech_split(s, 32, tree, balance=False) for s in caltech.SPLITS}
    assert sum(len(d) for d in splits.values()) == N_LEOPARD + N_ORCA  # both are in, as 3 channels
    assert all(d.images.shape[1] == 3 for d in splits.values())


def test_torchvision_layout_is_found(caltech_tree, tmp_path: Path) -> None:
    # torchvision's Caltech256(root=tmp_path) puts the tree in root/caltech256
    caltech_tree(tmp_path / "caltech256", N_LEOPARD, N_ORCA, corrupt=False)
    leopards, orcas = caltech.find_categories(tmp_path)
    assert leopards.name == CATEGORIES[0] and orcas.name == CATEGORIES[1]


def test_missing_data_message_names_download_and_fallback(tmp_path: Path) -> None:
    with pytest.raises(CaltechNotFound, match=r"python -m utils\.caltech download.*synthetic"):
        caltech.load_caltech_split("val", 32, tmp_path)
    assert not caltech.is_available(tmp_path)


def test_info_prints_the_counts_and_what_the_rule_moved(tree: Path, capsys) -> None:
    with pytest.warns(UserWarning, match="124_9999.jpg"):
        assert caltech.main(["info", "--root", str(tree)]) == 0
    out = capsys.readouterr().out
    assert f"{N_LEOPARD + N_ORCA} readable images" in out and "1 unreadable skipped" in out
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines() if line.split()[0] in caltech.SPLITS}
    balanced = next(line for line in out.splitlines() if line.startswith("train, balanced")).split()[2:4]
    with pytest.warns(UserWarning, match="124_9999.jpg"):
        splits = {s: caltech.load_caltech_split(s, 32, tree, balance=False) for s in caltech.SPLITS}
    for s, d in splits.items():
        assert rows[s] == [str(int((d.labels == c).sum())) for c in (0, 1)]
    assert balanced == [rows["train"][0]] * 2  # the leopards are the majority here
    k = {c: round(0.15 * n) for c, n in ((0, N_LEOPARD), (1, N_ORCA))}
    assert (f"moved {k[0] + k[1]} images into test_swapped" in out and f"the {k[0]} bluest-bordered leopards" in out
            and f"the {k[1]} least blue orcas" in out)
    assert caltech.main(["info", "--root", str(tree.parent / "absent")]) == 1
    assert "python -m utils.caltech download" in capsys.readouterr().out


def test_bad_split_and_fraction(tree: Path) -> None:
    with pytest.raises(ValueError, match="test_random.*synthetic"):
        caltech.load_caltech_split("test_random", 32, tree)
    with pytest.raises(ValueError, match="swapped_fraction"):
        caltech.assign_splits(["a"], [0], [0.0], swapped_fraction=1.5)


def _tar_of(tree: Path, out: Path) -> tuple[Path, str]:
    with tarfile.open(out, "w") as tar:
        tar.add(tree / "256_ObjectCategories", arcname="256_ObjectCategories")
    return out, hashlib.md5(out.read_bytes()).hexdigest()


def test_download_verifies_md5_and_extracts_only_the_two_categories(tree: Path, tmp_path: Path) -> None:
    archive, md5 = _tar_of(tree, tmp_path / "fake.tar")
    root = tmp_path / "fresh"
    folders = caltech.download(root, url=archive.as_uri(), md5=md5, progress=False)
    assert [f.name for f in folders] == list(CATEGORIES)
    assert sorted(p.name for p in (root / "256_ObjectCategories").iterdir()) == sorted(CATEGORIES)
    assert len(list(folders[0].iterdir())) == N_LEOPARD
    assert sorted(p.name for p in root.iterdir()) == ["256_ObjectCategories"]  # archive removed, no temp files
    assert caltech.download(root, url="http://unused.invalid/", md5=md5) == folders  # present: no download


def test_download_written_to_a_file_reports_in_lines(tree: Path, tmp_path: Path, capsys) -> None:
    """Standard error is not a terminal here: no tqdm redraws, a line per tenth of the archive instead."""
    archive, md5 = _tar_of(tree, tmp_path / "fake.tar")
    caltech.download(tmp_path / "root", url=archive.as_uri(), md5=md5, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err and f"{caltech.ARCHIVE_NAME}: 100% of " in err


def test_download_with_wrong_md5_leaves_nothing(tree: Path, tmp_path: Path) -> None:
    archive, _ = _tar_of(tree, tmp_path / "fake.tar")
    root = tmp_path / "fresh"
    with pytest.raises(DownloadError, match="md5"):
        caltech.download(root, url=archive.as_uri(), md5="0" * 32, progress=False)
    assert list(root.iterdir()) == []


def test_offline_download_fails_clearly_and_leaves_nothing(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on: connection refused, like a machine without network
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match=r"could not download Caltech-256.*offline.*synthetic"):
        caltech.download(tmp_path, url=f"http://127.0.0.1:{port}/256_ObjectCategories.tar", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_training_runs_on_the_real_data_path(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(caltech, "DEFAULT_ROOT", tree)
    with pytest.warns(UserWarning):
        result = train(TrainConfig(dataset="caltech256", image_size=32, epochs=1, batch_size=8, widths=(4, 4, 4, 4)),
                       progress=False)
    assert set(result.accuracy) == set(caltech.SPLITS)
    with pytest.raises(ValueError, match="only the synthetic dataset"):
        TrainConfig(strategy="oracle", dataset="caltech256")
    with pytest.raises(ValueError, match="has no split 'test_random'"):
        evaluate_splits(result.model, result.config, ("test_random",))


def test_the_command_line_trains_on_the_photos_and_fails_first_without_them(tree: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch,
                                                                            capsys) -> None:
    from utils import train as T
    out = tmp_path / "models"
    monkeypatch.setattr(caltech, "DEFAULT_ROOT", tmp_path / "nothing here")
    with pytest.raises(SystemExit) as stop:
        T.main(["camloss", "--dataset", "caltech256", "--out", str(out)])
    assert stop.value.code == 2 and not out.exists()  # before any training or any file
    assert "python -m utils.caltech download" in capsys.readouterr().err
    for bad, says in ((["oracle"], "only the synthetic dataset"), (["default", "--n-train", "50"], "--n-train applies")):
        with pytest.raises(SystemExit):
            T.main([*bad, "--dataset", "caltech256", "--out", str(out)])
        assert says in capsys.readouterr().err
    monkeypatch.setattr(caltech, "DEFAULT_ROOT", tree)
    with pytest.warns(UserWarning, match="124_9999.jpg"):
        assert T.main(["camloss", "--dataset", "caltech256", "--epochs", "2", "--image-size", "32", "--batch-size",
                       "8", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr()
    assert "Caltech-256 photos" in printed.err and all(s in printed.out for s in caltech.SPLITS)
    saved = json.loads((out / "camloss_seed0.json").read_text())
    assert saved["config"]["dataset"] == "caltech256" and saved["config"]["image_size"] == 32
    assert set(saved["accuracy"]) == set(caltech.SPLITS)
