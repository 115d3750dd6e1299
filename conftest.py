"""pytest set-up shared by the unit tests and `pytest --nbval` over notebooks/.

nbval compares every stored cell output (strict mode). The sanitize file
`notebooks/nbval_sanitize.cfg` neutralises the only text that legitimately
changes between runs (progress bars, timings, memory addresses); it is applied
here so that `pytest --nbval notebooks/X.ipynb` works from any directory.
"""
from pathlib import Path

SANITIZE = Path(__file__).resolve().parent / "notebooks" / "nbval_sanitize.cfg"


def pytest_configure(config):
    opt = config.option
    if hasattr(opt, "nbval_sanitize_with") and not opt.nbval_sanitize_with and not getattr(opt, "sanitize_with", None):
        opt.nbval_sanitize_with = str(SANITIZE)


def pytest_collection_modifyitems(config, items):
    """Run the browser tests (marker ``browser``) last: by then nbval has trained and cached notebook 05's models."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)  # stable: keeps the rest in order
