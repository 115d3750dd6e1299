"""The LaTeX report uses only what the notebooks export, and its build enforces the page limit."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from utils.notebooks import exported_files

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "report" / "report.tex"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def used_files() -> set[str]:
    """figs/ files the report reads: \\includegraphics{x} (x.pdf) and \\input{../figs/x.tex}."""
    tex = re.sub(r"(?<!\\)%.*", "", REPORT.read_text())  # drop comments
    graphics = {f"{name}.pdf" if not Path(name).suffix else name
                for name in re.findall(r"\\includegraphics(?:\[[^\]]*\])?\{([^}]+)\}", tex)}
    inputs = {Path(p).name for p in re.findall(r"\\input\{\.\./figs/([^}]+)\}", tex)}
    return graphics | inputs


def test_the_report_reads_figures_and_tables():
    used = used_files()
    assert any(u.endswith(".pdf") for u in used) and any(u.endswith(".tex") for u in used)


def test_every_file_the_report_uses_is_written_by_a_notebook():
    writers = {name: nb.name for nb in NOTEBOOKS for name in exported_files(nb)}
    orphans = sorted(u for u in used_files() if u not in writers)
    assert not orphans, f"report/report.tex uses figs/ files no notebook writes: {orphans}"
    for u in used_files():
        assert (ROOT / "figs" / u).is_file(), f"figs/{u} (written by {writers[u]}) is not committed"


def test_every_file_a_notebook_exports_is_in_figs():
    for nb in NOTEBOOKS:
        for name in exported_files(nb):
            assert (ROOT / "figs" / name).is_file(), f"{nb.name} writes figs/{name}, which is missing"


def test_tables_are_input_not_retyped():
    tex = REPORT.read_text()
    assert "\\begin{tabular}" not in tex, "tables come from figs/*.tex via \\input, not typed into the report"


needs_latex = pytest.mark.skipif(shutil.which("latexmk") is None,
                                 reason="latexmk not installed (see README: the report's Debian packages)")


def _build(folder: Path, max_pages: int | None = None) -> subprocess.CompletedProcess:
    args = ["make", "-C", str(folder)] + ([f"MAX_PAGES={max_pages}"] if max_pages else [])
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


def _copy(tmp_path: Path) -> Path:
    """The report and figs in a temporary tree (the build writes aux files; the checkout stays clean)."""
    shutil.copytree(ROOT / "report", tmp_path / "report", ignore=shutil.ignore_patterns(
        "*.pdf", "*.aux", "*.log", "*.bbl", "*.blg", "*.fls", "*.fdb_latexmk", "*.out"))
    shutil.copytree(ROOT / "figs", tmp_path / "figs")
    return tmp_path / "report"


@needs_latex
def test_report_builds_within_the_page_limit_and_fails_beyond_it(tmp_path):
    folder = _copy(tmp_path)
    ok = _build(folder)
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-2000:]
    pages = int(re.search(r"report\.pdf: (\d+) pages", ok.stdout).group(1))
    assert 1 <= pages <= 5 and (folder / "report.pdf").is_file()
    (folder / "report.pdf").unlink()
    too_many = _build(folder, max_pages=pages - 1)
    assert too_many.returncode != 0 and "the limit is" in too_many.stdout
    assert not (folder / "report.pdf").exists()  # no over-long report is left behind


@needs_latex
def test_report_build_fails_on_a_missing_figure(tmp_path):
    folder = _copy(tmp_path)
    (tmp_path / "figs" / "05_kernel.pdf").unlink()
    result = _build(folder)
    assert result.returncode != 0 and "05_kernel" in result.stdout + result.stderr
