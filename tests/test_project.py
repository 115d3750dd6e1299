"""The project's promises about itself: README commands, CI script, pinned environments."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> dict[str, str]:
    """The two commands in the README, found by the HTML comments that label their code blocks."""
    text = (ROOT / "README.md").read_text()
    found = {}
    for label in ("install", "test"):
        m = re.search(rf"<!-- {label}-command -->\s*```(?:bash|sh)?\n(.+?)\n```", text, re.S)
        assert m, f"README has no code block labelled <!-- {label}-command -->"
        lines = [ln for ln in m.group(1).splitlines() if ln.strip()]
        assert len(lines) == 1, f"the README {label} command must be one line, got {lines}"
        found[label] = lines[0].strip()
    return found


def test_readme_has_exactly_two_commands_and_ci_runs_them_in_order():
    cmds = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    ci_lines = [ln.strip() for ln in ci.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    i, t = ci_lines.index(cmds["install"]), ci_lines.index(cmds["test"])
    assert i < t, ".ci/run must install before it tests"
    assert "set -euo pipefail" in ci  # any failure fails CI
    assert "--nbval" in cmds["test"] and "--nbval-lax" not in cmds["test"]


def test_ci_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(ROOT / ".ci" / "run")], check=True)


def _pyproject_pins() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        pins |= set(extra)
    return pins


def _environment_pins() -> set[str]:
    # environment.yml is simple enough to read without a YAML library: the pip: list.
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip() == "- pip:")
    pins = set()
    for ln in lines[start + 1:]:
        m = re.match(r"\s+-\s+(\S+)\s*$", ln)
        if not m:
            break
        pins.add(m.group(1))
    return pins


def test_environment_yml_agrees_with_pyproject():
    assert _environment_pins() == _pyproject_pins()


def test_every_dependency_is_pinned_exactly_and_torch_as_required():
    pins = _pyproject_pins()
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.+-]*", p) for p in pins), pins
    assert {"torch==2.14.1", "torchvision==0.29.1"} <= pins
    names = {p.split("==")[0] for p in pins}
    assert {"grad-cam", "matplotlib", "ipywidgets", "jupyterlab", "nbval", "tqdm", "pytest", "captum"} <= names


def test_installed_versions_match_the_pins():
    from importlib.metadata import version
    mismatched = {p for p in _pyproject_pins() if version(p.split("==")[0]) != p.split("==")[1]}
    assert not mismatched, f"installed versions differ from the pins: {mismatched}; run the README install command"


def test_python_is_one_the_project_supports():
    assert sys.version_info >= (3, 10)


def test_ci_runs_the_tests_under_another_cpus_arithmetic():
    """The committed notebook outputs are made natively; CI must fail a notebook whose digits depend on that CPU."""
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    export = ci.index("export ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41")
    assert export < ci.index(readme_commands()["test"]), "the setting must be exported before the test command"
    assert ci.index(readme_commands()["install"]) < export, "the install command runs natively, as a learner's would"


def test_ci_runs_notebook_05_again_from_scratch_with_one_thread():
    """Notebook 05 trains: a second run in another summation order (one thread) must retrain, not read the models."""
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    again = ci.index("OMP_NUM_THREADS=1 python -m pytest --nbval notebooks/05_camloss.ipynb")
    assert ci.index(readme_commands()["test"]) < ci.index("rm -rf data/models/study") < again


def test_readme_quick_tier_is_the_unit_tests_without_notebooks_or_browser():
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- quick-command -->\s*```(?:bash|sh)?\n(.+?)\n```", text, re.S)
    assert m, "README has no code block labelled <!-- quick-command -->"
    quick = m.group(1).strip()
    assert quick.startswith("python -m pytest tests ") and "--nbval" not in quick and "notebooks" not in quick
    assert "not browser" in quick and "not slow" in quick


def test_the_repository_stands_alone():
    """What a reader needs of the design is in the repository (docs/design.md), not in a team folder beside it."""
    assert (ROOT / "docs" / "design.md").is_file()
    assert "docs/design.md" in (ROOT / "README.md").read_text()
    texts = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "utils").rglob("*.py")]
    outside = [p.relative_to(ROOT) for p in texts if "../shared" in p.read_text() or "DESIGN.md" in p.read_text()]
    assert not outside, f"these point to a design document outside the repository: {outside}"
