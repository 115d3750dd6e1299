"""The Colab path of every notebook's setup cell, run for real against a local stand-in for GitHub.

The setup cell (``utils.notebooks.setup_cell_source``) acts only when ``google.colab``
is importable. Here a stand-in module makes it act; the repository URL points to a
bare clone of this checkout and ``/content/course`` to a temporary folder; the cell
runs in a virtual environment that sees this environment's packages (so ``pip
install -e`` lands in the venv, not in the developer's environment, and nothing is
downloaded).
"""
import os
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest

from utils.notebooks import repository_url, setup_cell_source

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

RUNNER = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, sys.argv[1])           # the stand-in google.colab package
    import google.colab                       # noqa: F401  (what Colab has imported before any cell runs)
    exec(open(sys.argv[2]).read())            # the setup cell
    import utils.models                       # what the next cells do
    print("UTILS", utils.models.__file__)
    print("CWD", os.getcwd())
    model, meta = utils.models.load_shipped() # and the course's files are there (the SHA-256 is checked)
    print("SHIPPED", meta["strategy"])
""")


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    base = tmp_path_factory.mktemp("colab")
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    good = base / "good.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(ROOT), str(good)], check=True)
    # a repository that clones but does not install (no pyproject.toml): an install that fails half-way
    broken_src, broken = base / "broken-src", base / "broken.git"
    broken_src.mkdir()
    (broken_src / "README.md").write_text("not a Python project\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(broken_src)]
    subprocess.run(["git", "init", "-q"], cwd=broken_src, check=True)
    subprocess.run(git + ["add", "README.md"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "x"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(broken_src), str(broken)], check=True)
    fake = base / "fake"
    (fake / "google" / "colab").mkdir(parents=True)
    (fake / "google" / "__init__.py").write_text("")
    (fake / "google" / "colab" / "__init__.py").write_text("")
    env_dir = base / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(env_dir)
    runner = base / "runner.py"
    runner.write_text(RUNNER)
    return {"base": base, "good": good, "broken": broken, "fake": fake, "runner": runner,
            "python": env_dir / "bin" / "python"}


def run_cell(colab, url: Path, course: Path) -> subprocess.CompletedProcess:
    source = setup_cell_source()
    assert f"{repository_url()}.git" in source and "/content/course" in source
    cell = colab["base"] / "cell.py"
    cell.write_text(source.replace(f"{repository_url()}.git", url.as_uri()).replace("/content/course", str(course)))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(colab["python"]), str(colab["runner"]), str(colab["fake"]), str(cell)],
                          cwd=colab["base"], env=env, capture_output=True, text=True, timeout=600)


def test_setup_cell_clones_installs_and_the_next_cells_import_the_clone(colab):
    course = colab["base"] / "content-a" / "course"
    run = run_cell(colab, colab["good"], course)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in run.stdout.splitlines() if line.split(" ")[0] in
                 ("UTILS", "CWD", "SHIPPED"))
    assert Path(lines["UTILS"]).is_relative_to(course), lines
    assert Path(lines["CWD"]) == course / "notebooks" and lines["SHIPPED"] == "default"
    # the editable install went into the venv: its pip sees the package at the clone
    show = subprocess.run([str(colab["python"]), "-m", "pip", "show", "-f", "visual-explanations-cnn"],
                          capture_output=True, text=True)
    assert str(course) in show.stdout, show.stdout
    again = run_cell(colab, colab["good"], course)  # a second run in the same session: nothing to do, still fine
    assert again.returncode == 0, again.stderr[-3000:]


def test_setup_cell_retries_after_a_failed_install(colab):
    course = colab["base"] / "content-b" / "course"
    first = run_cell(colab, colab["broken"], course)  # clones, then the install fails
    assert first.returncode != 0 and course.is_dir(), "the first try should fail after cloning"
    second = run_cell(colab, colab["good"], course)
    assert second.returncode == 0, ("a second run after a failed install must retry, not skip:\n"
                                    + second.stdout[-2000:] + second.stderr[-3000:])
    assert f"UTILS {course}" in second.stdout
