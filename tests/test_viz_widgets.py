"""Plots, figure export, metrics on hand-made maps, and the explorers driven like a user would."""
import hashlib

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from utils.metrics import energy_in_mask, mask_area, pointing_game  # noqa: E402
from utils.viz import label_text, save_figure, show_grid, to_display  # noqa: E402
from utils.widgets import occlusion_explorer, render_occlusion, render_saliency, saliency_explorer  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def titles(fig):
    return [ax.get_title() for ax in fig.axes]


# ------------------------------------------------------------------ metrics
def test_energy_in_mask_by_hand():
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[:, :2, :2] = True  # a quarter of the image
    maps = torch.zeros(2, 4, 4)
    maps[0, 0, 0], maps[0, 3, 3] = 3.0, 1.0  # 3 of 4 units inside
    maps[1] = -1.0  # nothing positive
    e = energy_in_mask(maps, masks)
    assert e[0].item() == pytest.approx(0.75) and torch.isnan(e[1])
    assert mask_area(masks).tolist() == [0.25, 0.25]
    assert pointing_game(maps, masks).tolist() == [True, True]  # map 1: first maximum is (0, 0)
    uniform = torch.ones(1, 4, 4)
    assert energy_in_mask(uniform, masks[:1]).item() == pytest.approx(mask_area(masks[:1]).item())


def test_metric_input_errors():
    with pytest.raises(ValueError, match="same shape"):
        energy_in_mask(torch.zeros(1, 4, 4), torch.zeros(1, 4, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        pointing_game(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4))


# ------------------------------------------------------------------ viz
def test_to_display_scales_each_map_by_its_peak():
    m = torch.tensor([[0.0, -4.0], [2.0, 1.0]])
    assert to_display(m).tolist() == [[0.0, 0.0], [1.0, 0.5]]  # the positive part ÷ its maximum
    assert to_display(m, signed=True).tolist() == [[0.0, -1.0], [0.5, 0.25]]
    assert to_display(torch.zeros(2, 2)).tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_label_text():
    assert label_text(1, 0, 0.987) == "true orca\npred leopard 0.99 ✗"
    assert label_text(0, 0) == "true leopard\npred leopard"


def test_save_figure_is_byte_reproducible(tmp_path):
    def make():
        torch.manual_seed(0)
        imgs, maps = torch.rand(3, 3, 16, 16), torch.rand(3, 16, 16)
        return show_grid(imgs, [maps, -maps], labels=[0, 1, 1], preds=[0, 0, 1], probs=[0.9, 0.6, 0.8],
                         row_titles=["a", "b"])
    digests = []
    for run in range(2):
        pdf, png = save_figure(make(), "grid", tmp_path / str(run))
        assert pdf.read_bytes().startswith(b"%PDF") and png.read_bytes()[1:4] == b"PNG"
        assert b"CreationDate" not in pdf.read_bytes()
        digests.append([hashlib.md5(p.read_bytes()).hexdigest() for p in (pdf, png)])
    assert digests[0] == digests[1]


@pytest.mark.parametrize("name", ["", "a/b", "x.png"])
def test_save_figure_rejects_bad_names(tmp_path, name):
    with pytest.raises(ValueError, match="plain file stem"):
        save_figure(plt.figure(), name, tmp_path)


def test_show_grid_layouts():
    imgs = torch.rand(5, 3, 8, 8)
    assert len(show_grid(imgs, columns=3).axes) == 6  # 2 rows × 3, the 6th hidden
    fig = show_grid(imgs, torch.rand(5, 8, 8), labels=[0] * 5)
    assert len(fig.axes) == 10 and fig.axes[0].get_title() == "true leopard"


# ------------------------------------------------------------------ explorers
def test_render_functions(model):
    f = render_saliency(model, "test_swapped", 0)
    assert "saliency for" in titles(f)[1] and "on the animal" in titles(f)[2]
    f = render_occlusion(model, "test_iid", 3, "leopard", patch=16, stride=8, fill="blur")
    assert titles(f)[1] == "occlusion 16px / 8px for 'leopard'"
    assert "50 forward passes" in titles(f)[2]  # 1 + 7×7 windows
    with pytest.raises(ValueError, match="method must be"):
        render_saliency(model, method="gradcam")
    with pytest.raises(ValueError, match="target must be one of"):
        render_saliency(model, target="zebra")


def test_saliency_explorer_reacts_to_its_controls(model):
    ui = saliency_explorer(model)
    split, index, target, method, noise, alpha = ui.children[:6]
    assert "saliency for" in titles(ui.figure)[1]
    first = ui.figure
    target.value = "leopard"
    assert titles(ui.figure)[1] == "saliency for 'leopard'" and ui.figure is not first
    method.value = "smoothgrad"
    noise.value = 0.3
    assert titles(ui.figure)[1] == "SmoothGrad σ=0.30 for 'leopard'"
    split.value, index.value = "test_iid", 1  # test_iid image 1 is an orca on sea
    assert titles(ui.figure)[0].startswith("true orca")


def test_occlusion_explorer_caps_stride_at_patch(model):
    ui = occlusion_explorer(model)
    patch, stride, fill = ui.children[3:6]
    patch.value, stride.value = 8, 16
    assert titles(ui.figure)[1] == "occlusion 8px / 8px for 'orca'"
    fill.value = "image mean"
    assert "65 forward passes" in titles(ui.figure)[2]  # 1 + 8×8


def test_save_table_writes_stable_latex(tmp_path):
    from utils.viz import save_table
    rows = [{"method": "grad_cam", "pointing": 0.5, "cost": "1F+1B"}, {"method": "50%", "pointing": 1.0, "cost": "0"}]
    p = save_table(rows, "t", tmp_path)
    text = p.read_text()
    assert text.splitlines()[0] == r"\begin{tabular}{lrr}" and r"grad\_cam & 0.500 & 1F+1B \\" in text
    assert r"50\%" in text and save_table(rows, "t", tmp_path).read_text() == text
    with pytest.raises(ValueError, match="plain file stem"):
        save_table(rows, "t.tex", tmp_path)


def test_cam_and_gradcam_explorers(model):
    from utils.widgets import cam_explorer, conv_layers, gradcam_explorer
    assert conv_layers(model) == ["features.2", "features.6", "features.10", "features.14"]
    ui = cam_explorer(model)
    assert titles(ui.figure)[1] == "CAM for 'orca'"  # test_swapped image 0: a leopard at sea, called an orca
    ui.children[2].value = "leopard"
    assert titles(ui.figure)[1] == "CAM for 'leopard'"
    ui = gradcam_explorer(model)
    method, layer = ui.children[3:5]
    layer.value = "features.6"
    method.value = "HiResCAM"
    assert titles(ui.figure)[1] == "HiResCAM @ features.6 for 'orca'"


def test_every_explorer_switches_to_the_photos_and_back(model):
    """The image dropdown's last entry: the bundled photos, explained by the ImageNet network with each method's
    options carried over (occlusion's patch scaled to 224 px, Grad-CAM's layer to the network's stage)."""
    from utils.widgets import PHOTO_SET, cam_explorer, conv_layers, gradcam_explorer, render_cam
    ui = saliency_explorer(model)
    assert ui.children[0].options[-1] == PHOTO_SET
    ui.children[0].value = PHOTO_SET
    assert titles(ui.figure)[0] == "chelsea: Egyptian cat 0.38"
    assert titles(ui.figure)[1] == "saliency (clipped at p99)\nfor 'Egyptian cat' (p = 0.38)"
    assert "EfficientNetLite0, 224 px" in titles(ui.figure)[2] and "no object mask" in titles(ui.figure)[2]
    ui.children[1].value = 1  # the image slider picks the photo
    assert titles(ui.figure)[0] == "coffee: espresso 0.94"
    ui.children[2].value = "orca"  # ImageNet's 'killer whale'
    assert titles(ui.figure)[1].startswith("saliency (clipped at p99)\nfor 'killer whale' (p = 0.00")
    ui.children[0].value = "test_iid"
    assert titles(ui.figure)[0].startswith("true") and "on the animal" in titles(ui.figure)[2]

    ui = occlusion_explorer(model)
    ui.children[3].value, ui.children[4].value = 16, 16  # patch, stride: 56 px at 224 px
    ui.children[0].value = PHOTO_SET
    assert titles(ui.figure)[1] == "occlusion 56px / 56px\nfor 'Egyptian cat' (p = 0.38)"
    assert "17 forward passes" in titles(ui.figure)[2]  # 1 + 4×4
    ui = cam_explorer(model)
    ui.children[0].value = PHOTO_SET
    assert titles(ui.figure)[1] == "CAM\nfor 'Egyptian cat' (p = 0.38)"
    ui = gradcam_explorer(model)
    ui.children[0].value = PHOTO_SET
    assert titles(ui.figure)[1] == "Grad-CAM @ features.head\nfor 'Egyptian cat' (p = 0.38)"
    ui.children[4].value = conv_layers(model)[0]
    assert titles(ui.figure)[1] == "Grad-CAM @ features.stage3\nfor 'Egyptian cat' (p = 0.38)"
    f = render_cam(model, PHOTO_SET, 4, method="Grad-CAM", layer="features.6")  # the second of four blocks
    assert titles(f)[1].startswith("Grad-CAM @ features.stage5\nfor 'moped'")
    plt.close("all")


def test_save_macros_writes_latex_commands(tmp_path):
    from utils.viz import save_macros
    path = save_macros({"gapClosed": "41%", "acc": 0.41234, "n": 5, "name": "a_b"}, "numbers", tmp_path)
    lines = path.read_text().splitlines()
    assert lines[1:] == [r"\newcommand{\gapClosed}{41\%}", r"\newcommand{\acc}{0.412}", r"\newcommand{\n}{5}",
                         r"\newcommand{\name}{a\_b}"]
    with pytest.raises(ValueError, match="ASCII letters"):
        save_macros({"gap_closed": 1}, "numbers", tmp_path)
    with pytest.raises(ValueError, match="plain file stem"):
        save_macros({"a": 1}, "numbers.tex", tmp_path)


def test_kernel_explorer_follows_sigma(model):
    from utils.camloss import inverted_gaussian_kernel
    from utils.widgets import kernel_explorer, render_kernel
    fig = render_kernel(model, sigma=0.3)
    grid = fig.axes[0].images[0].get_array()
    assert grid.shape == (8, 8)  # the model's last feature map at 64 px
    assert torch.allclose(torch.as_tensor(grid.data), inverted_gaussian_kernel(8, 8, 0.3))
    plt.close(fig)
    ui = kernel_explorer(model)
    before = ui.figure.axes[0].images[0].get_array().copy()
    ui.children[0].value = 0.1
    after = ui.figure.axes[0].images[0].get_array()
    assert torch.allclose(torch.as_tensor(after.data), inverted_gaussian_kernel(8, 8, 0.1))
    assert not (before == after).all()


def test_map_table_scales_and_layout():
    from utils.viz import map_table
    imgs = [torch.rand(3, 8, 8) for _ in range(3)]
    small, big = torch.full((8, 8), 0.5), torch.full((8, 8), 2.0)
    fig = map_table(imgs, [[small, big, -big], [None, small, big]], row_titles=["a", "b"], col_titles=["x", "y", "z"],
                    cell_titles=[["1", "2", "3"], ["4", "5", "6"]], signed=True, scale="row", image_row="images")
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"][:9]
    assert axes[0].get_ylabel() == "images" and axes[3].get_ylabel() == "a" and axes[3].get_title() == "1"
    shown = axes[3].images[1].get_array()  # row "a": divided by the row's largest magnitude (2)
    assert float(shown.max()) == pytest.approx(0.25) and float(axes[5].images[1].get_array().min()) == pytest.approx(-1)
    assert len(axes[6].images) == 1  # None: the image alone
    column = map_table(imgs, [[small, small, small], [big, small, -big]], row_titles=["a", "b"], scale="column",
                       signed=True)  # each image's maps on one scale: column 0 ÷ 2, column 1 ÷ 0.5
    assert float(column.axes[0].images[1].get_array().max()) == pytest.approx(0.25)
    assert float(column.axes[1].images[1].get_array().max()) == pytest.approx(1.0)
    assert float(column.axes[5].images[1].get_array().min()) == pytest.approx(-1.0)
    cell = map_table(imgs, [[small, big, big]], row_titles=["a"], scale="cell")
    assert float(cell.axes[0].images[1].get_array().max()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="scale must be"):
        map_table(imgs, [[small, big, big]], row_titles=["a"], scale="image")
    with pytest.raises(ValueError, match="one column per image"):
        map_table(imgs, [[small, big]], row_titles=["a"])


def test_map_table_rows_follow_the_images_aspect():
    """A 224 × 448 composite gets rows half as tall as square images (no empty band between the rows)."""
    from utils.viz import map_table
    square = map_table([torch.rand(3, 8, 8)], [[torch.rand(8, 8)]] * 2, row_titles=["a", "b"], size=2.0)
    wide = map_table([torch.rand(3, 8, 16)], [[torch.rand(8, 16)]] * 2, row_titles=["a", "b"], size=2.0)
    assert square.get_figheight() == pytest.approx(2 * 2.0 + 0.35)
    assert wide.get_figheight() == pytest.approx(2 * 1.0 + 0.35) and wide.get_figwidth() == square.get_figwidth()
    plt.close("all")


def test_clip_quantile_caps_the_few_largest_values_for_display():
    from utils.viz import clip_quantile
    m = torch.zeros(2, 10, 10)
    m[0, 0, 0], m[0, 1:5] = 100.0, 1.0  # one outlier pixel among 40 ones
    m[1] = -1.0  # never positive: left as it is
    c = clip_quantile(m, 0.9)
    assert float(c[0].max()) == 1.0 and torch.equal(c[0, 1:5], m[0, 1:5]) and torch.equal(c[1], m[1])
    assert clip_quantile(m[0]).shape == (10, 10)
    s = torch.zeros(10, 10)
    s[0, 0], s[0, 1], s[1:5] = 100.0, -80.0, torch.tensor([1.0, -1.0] * 5)  # signed: both outliers capped alike
    cs = clip_quantile(s, 0.9, signed=True)
    assert float(cs.max()) == 1.0 and float(cs.min()) == -1.0 and torch.equal(cs[1:5], s[1:5])
    with pytest.raises(ValueError, match=r"q must be a quantile in \(0, 1\]"):
        clip_quantile(m, 99)


def test_an_overlay_is_transparent_where_the_map_is_zero_and_opaque_where_it_peaks():
    """The drawing rule: opacity grows with magnitude (0 transparent, ``alpha`` at the peak), a one-sided scale for
    maps that are never negative, the diverging scale centred at 0 for signed ones."""
    import numpy as np
    from utils.viz import overlay
    m = torch.tensor([[0.0, -4.0], [2.0, 1.0]])
    fig, ax = plt.subplots()
    shown = overlay(ax, torch.rand(3, 2, 2), m, alpha=0.8)
    assert np.allclose(shown.get_alpha(), [[0.0, 0.0], [0.8, 0.4]]) and shown.get_cmap().name == "inferno"
    assert shown.get_clim() == (0.0, 1.0)
    signed = overlay(ax, torch.rand(3, 2, 2), m, alpha=0.8, signed=True)
    assert np.allclose(signed.get_alpha(), [[0.0, 0.8], [0.4, 0.2]]) and signed.get_cmap().name == "bwr"
    assert signed.get_clim() == (-1.0, 1.0)
    assert overlay(ax, torch.rand(3, 2, 2)) is None
    fig2, ax2 = plt.subplots()
    alone = overlay(ax2, torch.rand(3, 4, 4), torch.randn(4, 4), signed=True, underlay=False,
                    outline=torch.eye(4, dtype=torch.bool))
    assert alone.get_alpha() is None and len(ax2.images) == 1 and ax2.collections, "the map alone, opaque, outlined"
    plt.close(fig)
    plt.close(fig2)



def test_one_scale_in_the_maps_units_draws_weak_maps_faint():
    """scale="all": every map on the figure's largest magnitude, in its own units, so a map of small drops looks
    small beside a strong one (per-image scaling makes both look equally strong)."""
    import matplotlib.pyplot as plt
    import numpy as np
    from utils.viz import overlay
    strong, weak = torch.tensor([[0.0, 2.0], [-2.0, 1.0]]), torch.tensor([[0.0, 0.2], [-0.1, 0.1]])
    fig = show_grid(torch.rand(2, 3, 2, 2), [torch.stack([strong, weak])], signed=True, scale="all",
                    colorbar="logit drop")
    strong_im, weak_im = fig.axes[2].images[-1], fig.axes[3].images[-1]
    assert strong_im.get_clim() == weak_im.get_clim() == (-2.0, 2.0)
    assert np.allclose(weak_im.get_alpha(), 0.75 * np.array([[0.0, 0.1], [0.05, 0.05]]))
    assert fig.axes[-1].get_ylabel() == "logit drop" and fig.axes[-1].get_ylim() == (-2.0, 2.0)
    plt.close(fig)
    fig = show_grid(torch.rand(2, 3, 2, 2), [torch.stack([strong, strong]), torch.stack([weak, weak])], signed=True,
                    scale="row", colorbar="logit drop")
    bars = fig.axes[6:]
    assert np.allclose([b.get_ylim() for b in bars], [(-2.0, 2.0), (-0.2, 0.2)]), "one bar per row, in its units"
    assert np.allclose(fig.axes[4].images[-1].get_clim(), (-0.2, 0.2))
    plt.close(fig)
    with pytest.raises(ValueError, match="scale must be 'each'"):
        show_grid(torch.rand(1, 3, 2, 2), [strong[None]], scale="cell")
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="vmax must be a positive number"):
        overlay(ax, torch.rand(3, 2, 2), strong, vmax=0)
    plt.close(fig)


def test_an_explorers_overlay_is_drawn_on_its_maps_scale_in_units(model):
    """The explorers' drawing rule: the middle panel is the raw map in its units (named by its colour bar), and the
    overlay draws the positive part on that same scale, not ÷ its own maximum (a CAM whose positive part is small
    next to its negatives must stay faint over the image)."""
    from utils.widgets import render_cam
    for fig, units in [(render_cam(model, "test_swapped", 0), "logit contribution per cell"),
                       (render_occlusion(model, "test_swapped", 0), "drop of the logit when covered"),
                       (render_saliency(model, "test_iid", 1), "|∂ logit / ∂ pixel|")]:
        raw, shown = fig.axes[1].images[0], fig.axes[2].images[-1]
        assert shown.norm.vmax == pytest.approx(raw.norm.vmax), "the overlay must use the middle panel's scale"
        assert raw.norm.vmax == pytest.approx(float(abs(raw.get_array()).max()))  # the map's own units, not 1
        assert units in fig.axes[-1].get_ylabel(), [ax.get_ylabel() for ax in fig.axes]
        assert fig.axes[1].collections, "the animal's outline is drawn on the raw map"
