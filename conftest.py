"""pytest set-up shared by the unit tests and `pytest --nbval` over notebooks/.

nbval compares every stored cell output (strict mode). The sanitize file
`notebooks/nbval_sanitize.cfg` neutralises the only text that legitimately
changes between runs (progress bars, timings, memory addresses); it is applied
here so that `pytest --nbval notebooks/X.ipynb` works from any directory.
"""
import os
import shutil
import tempfile
from pathlib import Path

SANITIZE = Path(__file__).resolve().parent / "notebooks" / "nbval_sanitize.cfg"

# Tests never write tracked files: what notebooks and tests export with utils.viz (figures, tables,
# results JSON) goes to a temporary folder, set here before any test imports utils and inherited by
# the kernels nbval and the browser test start. `python -m utils.notebooks execute` (no pytest) still
# writes figs/, on purpose.
_OWN_FIGS_DIR = None
if not os.environ.get("VEX_FIGS_DIR"):
    _OWN_FIGS_DIR = tempfile.mkdtemp(prefix="vex-figs-")
    os.environ["VEX_FIGS_DIR"] = _OWN_FIGS_DIR


def pytest_configure(config):
    opt = config.option
    if hasattr(opt, "nbval_sanitize_with") and not opt.nbval_sanitize_with and not getattr(opt, "sanitize_with", None):
        opt.nbval_sanitize_with = str(SANITIZE)


def pytest_unconfigure(config):
    if _OWN_FIGS_DIR is not None:
        shutil.rmtree(_OWN_FIGS_DIR, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Run the browser tests (marker ``browser``) last: by then nbval has trained and cached notebook 05's models."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)  # stable: keeps the rest in order
