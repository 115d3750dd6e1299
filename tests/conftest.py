"""Fixtures shared by the tests."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from utils.models import load_shipped


@pytest.fixture(scope="session")
def model():
    """The shipped default course model (models/default_seed0.pt), what notebooks 01-04 explain."""
    return load_shipped()[0]


@pytest.fixture(scope="session")
def resnet():
    """An untrained torchvision ResNet-18 with two classes: a second, standard architecture."""
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=2).eval()


@pytest.fixture(scope="session")
def net():
    """The ImageNet EfficientNet-Lite0 of utils.photos (the real network), loaded once."""
    from utils import photos
    return photos.load_network()


@pytest.fixture(scope="session")
def cat():
    """scikit-image's cat Chelsea at 224 × 224, as a batch of one: [1, 3, 224, 224]."""
    from utils import photos
    return photos.photo("chelsea")[None]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (``item.rep_call``), so fixtures can tell a failed test."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def run_notebook_05(tmp_path):
    """``run(setup)`` executes notebook 05 with the code ``setup`` inserted before the cell that chooses its
    configuration (``choose_config()``), in a child process, and returns the executed notebook. ``setup`` sees
    ``E`` (``utils.experiment``), ``dataclasses``, ``Path`` and ``TMP`` (this test's folder); the models go to
    ``TMP / "models"``, the exports to ``TMP / "figs"``. Every cell must run: the only errors allowed are the
    notebook's own claims (a cell's closing ``assert``, which needs the full training that a scaled-down run does
    not have); a crash, or an assertion inside the package, fails the test."""
    import nbformat

    root = Path(__file__).resolve().parent.parent

    def run(setup: str) -> "nbformat.NotebookNode":
        nb = nbformat.read(root / "notebooks" / "05_camloss.ipynb", as_version=4)
        first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "choose_config()" in c.source)
        nb.cells.insert(first, nbformat.v4.new_code_cell(
            "import dataclasses\nfrom pathlib import Path\nimport utils.experiment as E\n"
            f"TMP = Path({str(tmp_path)!r})\nE.DEFAULT_MODELS_DIR = TMP / 'models'\n{setup}"))
        target = tmp_path / "05_scaled.ipynb"
        nbformat.write(nb, target)
        # In a child process with stdin closed: a kernel started from a process whose stdin is an open pipe (some
        # test runners' and terminals') was seen to die or hang here, and never with /dev/null. With the course's
        # client (no Output-widget mimic): nbclient's own one answers an explorer's output with a message on the
        # shell channel while it waits on that channel for the cell's reply, and the reply can then sit unread
        # until the cell's timeout (nbclient issue #312; seen here: 600 s lost after 05's kernel explorer).
        code = ("import sys, nbformat\nfrom utils.notebooks import NbvalLikeClient\n"
                "nb = nbformat.read(sys.argv[1], as_version=4)\n"
                "NbvalLikeClient(nb, timeout=600, kernel_name='python3', allow_errors=True, "
                "resources={'metadata': {'path': sys.argv[2]}}).execute()\nnbformat.write(nb, sys.argv[1])\n")
        env = {**os.environ, "PYTHONPATH": str(root), "VEX_FIGS_DIR": str(tmp_path / "figs")}
        done = subprocess.run([sys.executable, "-c", code, str(target), str(root / "notebooks")],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        nb = nbformat.read(target, as_version=4)
        errors = [(c, o) for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        crashes = [f"{o.ename}: {o.evalue} in\n{c.source[:200]}" for c, o in errors if o.ename != "AssertionError"]
        assert not crashes, "\n\n".join(crashes)  # the claims' asserts are the notebook's own (no frame in utils/)
        in_package = [f"{c.source[:200]}" for c, o in errors if any("utils/" in line for line in o.traceback)]
        assert not in_package, "an assertion inside the package failed:\n" + "\n\n".join(in_package)
        assert (tmp_path / "figs" / "05_camloss_numbers.tex").is_file(), "the export cell ran to its end"
        return nb

    return run


def _photo(blueness: float, grey: bool = False, size: int = 40) -> "Image.Image":
    """A square 'photo': a border whose blue excess is ``blueness`` around a brown centre."""
    import numpy as np
    from PIL import Image
    base = 0.5
    rgb = np.full((size, size, 3), base, np.float32)
    rgb[..., 2] = base + blueness
    rgb[..., 0] = rgb[..., 1] = base - blueness / 2
    rgb[size // 4:3 * size // 4, size // 4:3 * size // 4] = (0.6, 0.4, 0.2)
    img = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    return img.convert("L") if grey else img


@pytest.fixture
def caltech_tree():
    """``caltech_tree(root, n_leopard, n_orca, corrupt=True, cmyk=False)`` draws a Caltech-256-like tree:
    ``root/256_ObjectCategories/{129.leopards-101,124.killer-whale}`` in the real layout, JPEGs whose border blueness
    differs per file (leopards mostly on land, orcas mostly at sea), the fourth leopard grayscale, with ``cmyk`` the
    fifth one CMYK, with ``corrupt`` one unreadable orca file, and a third category that must be ignored."""
    from utils.caltech import CATEGORIES

    def make(root: Path, n_leopard: int, n_orca: int, corrupt: bool = True, cmyk: bool = False) -> Path:
        base = root / "256_ObjectCategories"
        for label, (cat, n) in enumerate(zip(CATEGORIES, (n_leopard, n_orca))):
            folder = base / cat
            folder.mkdir(parents=True)
            prefix = cat.split(".")[0]
            for i in range(n):
                # file i has blueness rising (leopards) or falling (orcas) with i
                b = (-0.3 + 0.5 * i / n) if label == 0 else (0.3 - 0.5 * i / n)
                img = _photo(b, grey=(label == 0 and i == 3))
                if cmyk and label == 0 and i == 4:
                    img = img.convert("CMYK")
                img.save(folder / f"{prefix}_{i + 1:04d}.jpg", quality=95)
        if corrupt:
            (base / CATEGORIES[1] / "124_9999.jpg").write_bytes(b"not a jpeg at all")
        (base / "257.clutter").mkdir()  # other categories are ignored
        return root

    return make
