"""Static checks of the course notebooks (nbval itself re-runs them and compares outputs)."""
import json
import re
from pathlib import Path

import nbformat
import pytest
from nbval.plugin import find_comment_markers

from utils.notebooks import colab_badge, exported_files, repository_url, setup_cell_source

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def cells(nb_path, kind=None):
    nb = json.loads(nb_path.read_text())
    return [c for c in nb["cells"] if kind is None or c["cell_type"] == kind]


def source(cell):
    return "".join(cell["source"])


def test_the_course_notebooks_are_there():
    names = [p.name for p in NOTEBOOKS]
    assert names == ["01_saliency.ipynb", "02_occlusion.ipynb", "03_cam.ipynb", "04_gradcam.ipynb",
                     "05_camloss.ipynb"], names


def test_repository_url_is_a_github_repository():
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", repository_url())


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_badge_and_setup_cell_derive_from_the_repository_url(nb):
    first, second = cells(nb)[:2]
    assert first["cell_type"] == "markdown" and source(first).startswith(colab_badge(nb.name))
    assert second["cell_type"] == "code" and source(second) == setup_cell_source()


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_nbval_markers_are_recognised_by_nbval(nb):
    """A marker nbval does not parse (e.g. with text after it on the same line) is silently ignored."""
    for cell in cells(nb, "code"):
        src = source(cell)
        mentioned = set(re.findall(r"NBVAL_[A-Z_]+", src))
        parsed = {m for m, _ in find_comment_markers(src)}
        assert len(mentioned) == len(parsed), f"{nb.name}: marker not recognised by nbval in:\n{src}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_with_outputs_in_order_and_without_errors(nb):
    code = [c for c in cells(nb, "code") if source(c).strip()]
    counts = [c["execution_count"] for c in code]
    assert None not in counts, f"{nb.name}: cells never executed"
    assert counts == list(range(1, len(code) + 1)), f"{nb.name}: not executed top to bottom in one fresh kernel"
    assert not any(o["output_type"] == "error" for c in code for o in c["outputs"])
    assert not any(source(c).rstrip().endswith(";") for c in code), "nbval does not honour ';' (use '_ =')"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_exported_figures_are_committed(nb):
    for name in exported_files(nb):
        assert (ROOT / "figs" / name).is_file(), f"{nb.name} exports figs/{name}; it is not committed"


def test_exported_files_are_read_from_the_code(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('_ = save_figure(fig, "a")\nsave_table(rows, "b", caption="c")'),
                nbformat.v4.new_markdown_cell('save_figure(fig, "not_code")'),
                nbformat.v4.new_code_cell('save_macros(NUMBERS, "m")\n(FIGS_DIR / "r.json").write_text(x)')]
    nbformat.write(nb, tmp_path / "x.ipynb")
    assert exported_files(tmp_path / "x.ipynb") == {"a.pdf", "a.png", "b.tex", "m.tex", "r.json"}


def test_notebooks_01_to_04_explain_the_shipped_model_and_train_nothing():
    for nb in NOTEBOOKS[:4]:
        code = "\n".join(source(c) for c in cells(nb, "code"))
        assert "load_shipped()" in code, f"{nb.name} should explain the shipped model"
        assert not re.search(r"\b(load_or_train|train)\(", code), f"{nb.name} trains a model"


@pytest.mark.slow
def test_running_a_notebook_under_pytest_leaves_the_tree_clean():
    """The suite's way of running a notebook (strict nbval) writes no tracked file: exports go to a temporary folder."""
    import os
    import subprocess
    import sys
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")

    def status():
        return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout

    exports = sorted((ROOT / "figs").glob("03_*"))
    assert exports, "notebook 03 exports figs/03_*"
    before, stamps = status(), [p.stat().st_mtime_ns for p in exports]
    env = {k: v for k, v in os.environ.items() if k != "VEX_FIGS_DIR"}  # as a fresh `pytest` starts
    run = subprocess.run([sys.executable, "-m", "pytest", "--nbval", "-q", "notebooks/03_cam.ipynb"], cwd=ROOT,
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert status() == before, "running notebook 03 under pytest changed the checkout"
    assert [p.stat().st_mtime_ns for p in exports] == stamps, "figs/03_* were rewritten (even if with equal bytes)"
