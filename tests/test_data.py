"""The synthetic dataset: determinism, consistency, shapes, split rules, bad input, CLI."""
import numpy as np
import pytest
import torch

from utils import data as D
from utils.data import (BACKGROUNDS, CLASSES, LAND, LEOPARD, ORCA, SEA, SPLITS, SyntheticOrcaLeopard, load_split,
                        render_sample)


def test_same_seed_gives_identical_tensors():
    a, b = render_sample("train", 7, seed=3), render_sample("train", 7, seed=3)
    assert torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask)
    assert (a.label, a.background) == (b.label, b.background)


def test_other_seed_index_or_split_gives_other_images():
    ref = render_sample("val", 4, seed=0).image
    for other in (render_sample("val", 4, seed=1), render_sample("val", 6, seed=0),
                  render_sample("test_iid", 4, seed=0)):
        assert (other.image - ref).abs().mean() > 0.02


def test_order_of_generation_does_not_matter():
    ds = SyntheticOrcaLeopard("test_random", n=10)
    forward = [ds.sample(i).image for i in range(10)]
    backward = [ds.sample(i).image for i in reversed(range(10))][::-1]
    assert all(torch.equal(x, y) for x, y in zip(forward, backward))


@pytest.mark.parametrize("size", [32, 48, 64, 100, 192, 224])
def test_shapes_dtypes_ranges(size):
    s = render_sample("test_shifted", 3, image_size=size)
    assert s.image.shape == (3, size, size) and s.image.dtype == torch.float32
    assert 0.0 <= float(s.image.min()) and float(s.image.max()) <= 1.0
    assert s.mask.shape == (size, size) and s.mask.dtype == torch.bool
    assert isinstance(s.label, int) and isinstance(s.background, int)
    # 8-bit like a photo: every value is k/255
    assert torch.equal(torch.round(s.image * 255) / 255, s.image)


def test_same_picture_at_every_resolution():
    """Geometry is resolution-independent: the mask covers the same share of the image."""
    shares = [render_sample("train", 5, image_size=n).mask.float().mean().item() for n in (64, 128, 224)]
    assert max(shares) - min(shares) < 0.01
    assert 0.03 < shares[0] < 0.2


def test_split_rules_tie_background_to_class():
    for split, rule in [("train", "matched"), ("val", "matched"), ("test_iid", "matched"),
                        ("test_shifted", "matched"), ("test_swapped", "swapped")]:
        d = load_split(split, n=40, image_size=32)
        expected = d.labels if rule == "matched" else 1 - d.labels  # ORCA(1) <-> SEA(1)
        assert torch.equal(d.backgrounds, expected), split
    r = load_split("test_random", n=200, image_size=32)
    for label in (LEOPARD, ORCA):
        share_sea = (r.backgrounds[r.labels == label] == SEA).float().mean().item()
        assert 0.35 < share_sea < 0.65
    assert (SEA, LAND) == (1, 0) and CLASSES[ORCA] == "orca" and BACKGROUNDS[SEA] == "sea"


def test_classes_balanced():
    d = load_split("val", n=100, image_size=32)
    assert int(d.labels.sum()) == 50


def test_masks_consistent_with_class_and_image():
    """The mask marks the animal: orcas are dark there, leopards golden; the background differs."""
    d = load_split("test_random", n=60, image_size=64)
    for img, m, y, bg in zip(d.images, d.masks, d.labels, d.backgrounds):
        assert 0.02 < m.float().mean() < 0.25
        inside, outside = img[:, m], img[:, ~m]
        if y == ORCA:
            # black body with white patches: low saturation, darker than most of its background
            assert (inside.max(0).values - inside.min(0).values).median() < 0.12
        else:
            r, g, b = inside.median(1).values
            assert r > g > b and r > 0.5  # golden coat
        bg_r, bg_g, bg_b = outside.mean(1)
        assert (bg_b > bg_r) == (bg == SEA)  # sea is blue, land is not


def test_centred_vs_shifted_placement():
    def centre_offset(split):
        d = load_split(split, n=40, image_size=64)
        ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
        off = []
        for m in d.masks:
            w = m.float()
            cy, cx = (ys * w).sum() / w.sum(), (xs * w).sum() / w.sum()
            off.append(torch.hypot(cx - 31.5, cy - 31.5) / 64)
        return torch.stack(off)
    assert centre_offset("train").max() < 0.12
    assert centre_offset("test_shifted").min() > 0.12


def test_oracle_backgrounds_keep_the_same_animals():
    a = render_sample("train", 11)
    b = render_sample("train", 11, backgrounds="random")
    assert a.label == b.label and torch.equal(a.mask, b.mask)


def test_off_centre_views_are_the_shifted_animals_on_other_backgrounds():
    shifted = load_split("test_shifted", n=40, image_size=48)
    swapped, rand = D.load_view("test_shifted_swapped", n=40, image_size=48), D.load_view("test_shifted_random", n=40,
                                                                                          image_size=48)
    assert (swapped.split, rand.split) == ("test_shifted_swapped", "test_shifted_random")
    for view in (swapped, rand):  # the same animals, the same poses: only the background differs
        assert torch.equal(view.masks, shifted.masks) and torch.equal(view.labels, shifted.labels)
    assert torch.equal(shifted.backgrounds, shifted.labels)          # matched: sea (1) under orcas (1)
    assert torch.equal(swapped.backgrounds, 1 - shifted.labels)      # swapped: every background misleads
    agree = float((rand.backgrounds == rand.labels).float().mean())  # random: independent of the class
    assert 0.25 < agree < 0.75
    with pytest.raises(ValueError, match=r"unknown view 'test_swapped'.*test_shifted_swapped.*load_split"):
        D.load_view("test_swapped")


def test_dataset_protocol():
    ds = SyntheticOrcaLeopard("val", n=5, image_size=32)
    assert len(ds) == 5
    img, label = ds[2]
    assert img.shape == (3, 32, 32) and label in (0, 1)
    assert torch.equal(ds[-1][0], ds[4][0])
    assert len(list(ds)) == 5
    loader = torch.utils.data.DataLoader(ds, batch_size=2)
    x, y = next(iter(loader))
    assert x.shape == (2, 3, 32, 32) and y.dtype == torch.int64


def test_default_split_sizes():
    assert SyntheticOrcaLeopard("train").n == D.SPLIT_SIZES["train"] == 2000
    assert set(D.SPLIT_SIZES) == set(SPLITS)


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(split="tets_iid"), ValueError, "unknown split 'tets_iid'"),
    (dict(split=3), TypeError, "split must be a string"),
    (dict(image_size=16), ValueError, "image_size=16 is out of range"),
    (dict(image_size=512), ValueError, "32..224"),
    (dict(image_size=64.0), TypeError, "image_size must be an int"),
    (dict(n=0), ValueError, "n must be >= 1"),
    (dict(seed=-1), ValueError, "seed must be >= 0"),
    (dict(backgrounds="mixed"), ValueError, "unknown backgrounds rule"),
])
def test_bad_arguments_are_named(kwargs, exc, words):
    args = dict(split="train", n=4, image_size=32)
    args.update(kwargs)
    with pytest.raises(exc, match=words):
        SyntheticOrcaLeopard(**args)


def test_index_out_of_range():
    ds = SyntheticOrcaLeopard("val", n=5)
    with pytest.raises(ValueError, match="index 5 is out of range for split 'val' with 5 images"):
        ds.sample(5)
    with pytest.raises(IndexError):
        ds[-6]
    with pytest.raises(TypeError, match="index must be an int"):
        ds.sample(1.5)
    with pytest.raises(ValueError, match="index must be >= 0"):
        render_sample("val", -1)


def test_preview_cli(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert D.main(["preview", "--split", "test_swapped", "--out", str(out), "--n", "8"]) == 0
    from PIL import Image
    with Image.open(out) as im:
        assert im.size[0] > 400 and im.size[1] > 100
    assert "wrote" in capsys.readouterr().out


def test_preview_cli_rejects_bad_size(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        D.main(["preview", "--out", str(tmp_path / "x.png"), "--image-size", "8"])
    assert e.value.code == 2
    assert "image_size=8 is out of range" in capsys.readouterr().err


def test_the_same_image_without_its_animal_differs_only_where_the_animal_was():
    for split, index in (("test_swapped", 3), ("test_shifted", 8), ("train", 1)):
        a, b = render_sample(split, index), render_sample(split, index, animal=False)
        assert a.label == b.label and a.background == b.background and torch.equal(a.mask, b.mask)
        changed = (a.image != b.image).any(0)
        assert changed[a.mask].float().mean() > 0.9, "the animal is gone"
        near = torch.nn.functional.max_pool2d(a.mask[None, None].float(), 7, 1, 3)[0, 0].bool()  # soft edges: 3 px
        assert not changed[~near].any(), "every pixel away from the animal is identical"
    split = load_split("test_iid", n=4, animal=False)
    assert torch.equal(split.images[2], render_sample("test_iid", 2, animal=False).image)
    for bad in (0, "no", None):
        with pytest.raises(TypeError, match="animal must be True or False"):
            render_sample("val", 0, animal=bad)
        with pytest.raises(TypeError, match="animal must be True or False"):
            load_split("val", n=2, animal=bad)
