"""nbval wiring: the sanitize file and the conftest hook (tests/nbval_wiring.ipynb is the end-to-end check)."""
import importlib.util
from pathlib import Path
from types import SimpleNamespace

from nbval.plugin import get_sanitize_patterns

# the repository's root conftest.py (tests/conftest.py holds fixtures and would shadow `import conftest`)
_spec = importlib.util.spec_from_file_location("root_conftest", Path(__file__).resolve().parent.parent / "conftest.py")
conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(conftest)

PATTERNS = get_sanitize_patterns(conftest.SANITIZE.read_text())


def sanitize(text: str) -> str:
    import re
    for regex, replace in PATTERNS:  # applied in file order, as nbval does
        text = re.sub(regex, replace, text)
    return text


def test_progress_bars_at_any_point_look_the_same():
    start = "default seed 0:   0%|          | 0/192 [00:00<?, ?batch/s]"
    middle = "default seed 0:  51%|█████     | 98/192 [00:09<00:07, 11.98batch/s, epoch=4, loss=0.005]"
    done = "work: 100%|██████████| 5/5 [00:00<00:00, 19.49it/s]"
    assert sanitize(start) == sanitize(middle) == sanitize(done) == "PROGRESS-BAR"
    widget = "HBox(children=(HTML(value=''), FloatProgress(value=0.0, max=192.0), HTML(value='')))"
    assert sanitize(widget) == "PROGRESS-WIDGET"


def test_numbers_the_notebooks_compute_are_left_alone():
    text = "{'val': 0.973, 'test_swapped': 0.0}\n[0.7272, 0.6758]\n3 seeds, 400 images, 64 px\n"
    assert sanitize(text) == text
    assert sanitize("trained in 33 s") == "trained in T-SECONDS"
    assert sanitize("<Foo at 0x7f3a2b>") == "<Foo at 0xADDRESS>"


def test_conftest_sets_the_sanitize_file_only_when_none_is_given():
    opt = SimpleNamespace(nbval_sanitize_with=None, sanitize_with=None)
    conftest.pytest_configure(SimpleNamespace(option=opt))
    assert opt.nbval_sanitize_with == str(conftest.SANITIZE) and conftest.SANITIZE.is_file()
    mine = SimpleNamespace(nbval_sanitize_with="other.cfg", sanitize_with=None)
    conftest.pytest_configure(SimpleNamespace(option=mine))
    assert mine.nbval_sanitize_with == "other.cfg"
