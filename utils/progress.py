"""Progress reports: a bar where someone watches it, plain lines where the output goes to a file.

tqdm redraws its bar with carriage returns, one update per step; written to a log (CI, ``python -m utils.headline >
log.txt 2>&1``) the three headline models came to about 1,900 of them. So a bar appears only where a person watches
(standard error is a terminal, or the code runs in a Jupyter kernel, where tqdm draws a widget), and everywhere else
:func:`report` writes one line per finished unit instead: a model, an epoch, a tenth of a download.

A few long units (the models of a seed study) get a :class:`Status` line instead of a bar: a widget bar saved in a
notebook shows, wherever widgets are not rendered (GitHub, nbviewer, a closed kernel), the text it had when it was
first drawn ("0/5"); a status line is a plain display updated in place, so the saved notebook keeps its last text.
"""
from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm

__all__ = ["interactive", "bar", "report", "Status"]


def _in_kernel() -> bool:
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def interactive() -> bool:
    """Whether a person is watching: this is a Jupyter kernel, or standard error is a terminal."""
    if _in_kernel():
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without it, or closed
        return False


def bar(total: int | None, desc: str, unit: str, enabled: bool = True, **options: Any) -> tqdm:
    """A tqdm bar, drawn only where :func:`interactive` (``enabled=False``: never); otherwise a silent one."""
    return tqdm(total=total, desc=desc, unit=unit, disable=not (enabled and interactive()), **options)


def report(message: str, enabled: bool = True) -> None:
    """One line on standard error in place of a bar: only where no bar is drawn (``enabled`` and not interactive)."""
    if enabled and not interactive():
        print(message, file=sys.stderr, flush=True)


class Status:
    """One line that says where a long job is. In a Jupyter kernel: a plain-text display replaced at each call (the
    saved notebook keeps the last line); elsewhere each ``final`` call writes its line to standard error, and the
    others (what is running now) only matter where someone watches the display. ``enabled=False``: silent."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._handle = None
        if enabled and _in_kernel():
            from IPython.display import display
            self._handle = display({"text/plain": ""}, raw=True, display_id=True)

    def __call__(self, text: str, final: bool = True) -> None:
        if not self.enabled:
            return
        if self._handle is not None:
            self._handle.update({"text/plain": text}, raw=True)
        elif final:
            print(text, file=sys.stderr, flush=True)
