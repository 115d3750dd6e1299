"""Static checks of the course notebooks (nbval itself re-runs them and compares outputs)."""
import json
import re
from pathlib import Path

import nbformat
import pytest
from nbval.plugin import find_comment_markers

from utils.notebooks import cell_names, colab_badge, exported_files, repository_url, setup_cell_source, slice_notebook

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


@pytest.mark.parametrize("source, binds, reads", [
    ("x = 1", {"x"}, set()),
    ("def f(a, k=default):\n    c = a + b\n    return c", {"f"}, {"default", "b"}),
    ("y = [i * z for i in range(3)]", {"y"}, {"z", "range"}),
    ("g = lambda q: q + w", {"g"}, {"w"}),
    ("model.eval()\nm.x = 2\nd[k] += v", {"m", "d"}, {"model", "m", "d", "k", "v"}),
    ("%matplotlib inline\nimport numpy as np, os.path\nfrom a.b import c as e", {"np", "os", "e"}, {"get_ipython"}),
    ("for i, (j, n) in enumerate(rows):\n    total = i", {"i", "j", "n", "total"}, {"enumerate", "rows", "i"}),
    ("class C(Base):\n    attr = value", {"C", "attr"}, {"Base", "value"}),
])
def test_cell_names_are_what_the_cell_binds_and_reads(source, binds, reads):
    assert cell_names(source) == (binds, reads)


def test_a_slice_keeps_the_chosen_cells_the_setup_and_what_they_need_in_order():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in [
        "# setup", "import torch", "a = torch.ones(2)", "b = 2", "heavy = train(a)", "a.mul_(3)\nc = a + 1",
        "show(c)", "d = b"]] + [nbformat.v4.new_markdown_cell("text")])
    cut = slice_notebook(nb, lambda cell: cell.source.startswith("show("))
    assert [c.source for c in cut.cells] == ["# setup", "import torch", "a = torch.ones(2)", "a.mul_(3)\nc = a + 1",
                                            "show(c)"]
    assert len(nb.cells) == 9, "the notebook itself is left as it was"
    with pytest.raises(ValueError, match="no code cell"):
        slice_notebook(nbformat.v4.new_notebook(), lambda cell: True)


def test_a_slice_of_each_notebook_to_its_explorers_is_a_few_cells():
    """What the browser test runs: the explorers' cells are cheap (models from models/), nothing that trains."""
    for path in [p for p in NOTEBOOKS if re.match(r"0[1-5]_", p.name)]:
        cut = slice_notebook(nbformat.read(path, as_version=4), lambda c: "_explorer(" in c.source)
        assert 2 <= len(cut.cells) <= 5, (path.name, [c.source[:40] for c in cut.cells])
        assert "_explorer(" in cut.cells[-1].source and "save_figure" not in "".join(c.source for c in cut.cells)


def test_the_course_client_sends_the_kernel_nothing_but_the_cells():
    """``NbvalLikeClient`` (``python -m utils.notebooks execute`` and the tests that run notebook 05) answers no
    explorer: nbclient's own client mimics the ``Output`` widget of an ``interactive`` explorer and sends its state
    back on the shell channel while it awaits the cell's reply on that channel, and that reply can then stay unread
    until the cell's timeout (nbclient issue #312: 600 s of a whole-suite run in CI's setting lost after notebook
    05's kernel explorer).
    Both clients run the same explorer cell; only nbclient's own sends anything but execute requests."""
    from nbclient import NotebookClient
    from utils.notebooks import NbvalLikeClient

    def shell_messages(client_class: type) -> list[str]:
        sent: list[str] = []

        class Recording(client_class):
            async def async_start_new_kernel_client(self):
                kc = await super().async_start_new_kernel_client()
                send = kc.shell_channel.send
                kc.shell_channel.send = lambda msg: sent.append(msg["header"]["msg_type"]) or send(msg)
                return kc

        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("from ipywidgets import interactive\n"
                                              "interactive(lambda x: print('drawn', x), x=1)"),
                    nbformat.v4.new_code_cell("print('next cell')")]
        Recording(nb, timeout=60, kernel_name="python3").execute()
        assert nb.cells[1].outputs[0]["text"] == "next cell\n"
        return sent

    assert set(shell_messages(NbvalLikeClient)) <= {"execute_request", "kernel_info_request"}
    assert "comm_msg" in shell_messages(NotebookClient), "nbclient's Output-widget mimic no longer answers: " \
                                                          "this test no longer shows what it guards against"
