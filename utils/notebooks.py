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
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

__all__ = ["NbvalLikeClient", "execute_notebook"]


class NbvalLikeClient(NotebookClient):
    """An nbclient that, like nbval, neither redirects output into Output widgets nor honours clear_output."""

    def register_output_hook(self, msg_id: str, hook: Any) -> None:  # noqa: D102
        pass

    def remove_output_hook(self, msg_id: str, hook: Any) -> None:  # noqa: D102
        pass

    def clear_output(self, outs: list, msg: dict, cell_index: int) -> None:  # noqa: D102
        pass


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
