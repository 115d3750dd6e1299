"""The interactive explorers, tested as a learner uses them: JupyterLab in headless Chromium.

nbval skips widget output, so a slider that renders nothing, stacks figures or
breaks with a new ipywidgets release would pass it. This test starts a real
JupyterLab server, opens every course notebook in Debian's Chromium through
Playwright, runs the cells its explorers need (the setup cell, the explorer
cells and the earlier cells that define what they use; nbval runs the rest),
and then moves a slider of every explorer and
checks that its figure changed and that it is the only one shown; in 01-04 it then picks the photos in the
explorer's image dropdown and checks the same.

Needs ``apt-get install chromium`` and ``pip install playwright`` (no browser
download: Playwright drives ``/usr/bin/chromium``). Without them the test is
skipped, unless ``VEX_REQUIRE_BROWSER=1`` (CI sets it) turns the skip into a
failure. Run it alone with ``python -m pytest -m browser -s``; the before/after
screenshots go to a temporary folder whose path is printed (and named in every
failure message).

The notebooks are copied, outputs stripped, to a temporary folder that the
server serves, so the committed notebooks are never touched; the server and the
browser run in their own process groups and are killed by PID at the end, also
when a check fails.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from utils.notebooks import slice_notebook

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHROMIUM = Path(os.environ.get("VEX_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]
RUN_ALL_TIMEOUT_S = 10 * 60  # the explorers' cells of a notebook: seconds (models are read from models/, not trained)
SLIDER_TIMEOUT_S = 120
#: JupyterLab user settings for the test server: no news or update checks, every cell in the DOM, no autosave.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                       "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}
TRACEBACK = "Traceback (most recent call last)"


def _requirements() -> str | None:
    """Why the browser test cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (pip install -e '.[test]')"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found: install Debian's Chromium (apt-get install chromium) or set VEX_CHROMIUM"
    return None


@pytest.fixture(scope="module")
def requirements() -> None:
    missing = _requirements()
    if missing:
        if os.environ.get("VEX_REQUIRE_BROWSER") == "1":
            pytest.fail(f"VEX_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """Kill ``proc``'s whole process group (its kernels, Chromium's helpers) by PID: TERM, then KILL."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}; its log: {log}\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout} s; log: {log}")


def _is_explorer(cell: nbformat.NotebookNode) -> bool:
    return cell.cell_type == "code" and "_explorer(" in cell.source


def _strip(src: Path, dst: Path) -> None:
    """Copy the cells of a notebook that its explorers need (``utils.notebooks.slice_notebook``: the setup cell, the
    explorer cells and the earlier cells that bind a name they read) without outputs, so a numbered prompt means 'ran
    in this browser session'. The other cells are nbval's to run (``pytest --nbval notebooks``); running them here too
    made this test as long as the notebooks themselves (05 trained its models a second time)."""
    nb = slice_notebook(nbformat.read(src, as_version=4), _is_explorer)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, dst)


@pytest.fixture(scope="module", autouse=True)
def _cleanup_on_sigterm():
    """``timeout`` and CI runners stop with SIGTERM, which skips ``finally``: raise KeyboardInterrupt instead,
    so that the fixtures below still kill the server and the browser."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="module")
def workdir(requirements) -> Path:
    path = Path(tempfile.mkdtemp(prefix="vex-browser-"))
    (path / "shots").mkdir()
    print(f"\nbrowser test: screenshots and logs in {path}")
    return path  # left in place for a look after a failure; the OS cleans /tmp


@pytest.fixture(scope="module")
def lab(workdir: Path):
    """A JupyterLab server on 127.0.0.1 (free port, no token) serving stripped copies of the notebooks."""
    root = workdir / "notebooks"
    root.mkdir()
    for nb in NOTEBOOKS:
        _strip(nb, root / nb.name)
    settings = workdir / "lab-settings"
    for rel, value in LAB_SETTINGS.items():
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(json.dumps(value))
    port = _free_port()
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(workdir / "workspaces"),
               JUPYTER_CONFIG_DIR=str(workdir / "jupyter-config"), JUPYTER_RUNTIME_DIR=str(workdir / "jupyter-runtime"))
    log = workdir / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", "--IdentityProvider.token=", "--ServerApp.password=",
           f"--ServerApp.root_dir={root}", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    with open(log, "w") as out:
        server = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/api/status", server, log)
        yield {"url": base, "root": root, "pid": server.pid}
    finally:
        _stop(server)


@pytest.fixture(scope="module")
def browser(workdir: Path, lab):
    """Headless Debian Chromium, started by us (so we own its PID) and driven over CDP by Playwright."""
    from playwright.sync_api import sync_playwright

    port = _free_port()
    log = workdir / "chromium.log"
    cmd = [str(CHROMIUM), "--headless=new", f"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1",
           f"--user-data-dir={workdir / 'chromium-profile'}", "--window-size=1400,1000", *CHROMIUM_FLAGS,
           "about:blank"]
    with open(log, "w") as out:
        browser_proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_http(f"http://127.0.0.1:{port}/json/version", browser_proc, log)
        with sync_playwright() as p:
            browser = p.chromium.connect_over_cdp(f"http://127.0.0.1:{port}")
            yield browser.contexts[0] if browser.contexts else browser.new_context()
            browser.close()
    finally:
        _stop(browser_proc)


_SHUT_DOWN_KERNELS_JS = """async () => {
    const xsrf = (document.cookie.match(/_xsrf=([^;]+)/) || [])[1] || '';
    const kernels = await (await fetch('/api/kernels')).json();
    for (const k of kernels) await fetch('/api/kernels/' + k.id, {method: 'DELETE', headers: {'X-XSRFToken': xsrf}});
}"""


@pytest.fixture
def page(browser, workdir: Path, request):
    """A fresh tab per test (closed without 'leave page?' prompts); a full-page screenshot when the test fails."""
    pg = browser.new_page()
    pg.set_viewport_size({"width": 1400, "height": 1000})
    yield pg
    try:
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            pg.screenshot(path=str(workdir / "shots" / f"{request.node.name}-page.png"), full_page=True)
        pg.evaluate(_SHUT_DOWN_KERNELS_JS)  # each notebook's kernel holds its models: free them before the next
    finally:
        pg.close(run_before_unload=False)


# --------------------------------------------------------------------------- what the test does in the page
_PROMPTS_JS = """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')]
                         .map(e => e.textContent.trim())"""
_ERRORS_JS = f"""() => [...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output')]
                        .map(e => e.innerText).filter(t => t.includes({TRACEBACK!r}))"""
_EXPLORER = ".jp-Notebook .widget-interact"
_IDLE = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status='idle']"


def _explorer_images(page, i: int) -> list[str]:
    """The ``src`` of every image in explorer ``i``'s output area."""
    return page.locator(_EXPLORER).nth(i).locator(".widget-output img").evaluate_all("els => els.map(e => e.src)")


def _explorer_errors(page, i: int) -> list[str]:
    texts = page.locator(_EXPLORER).nth(i).locator(".widget-output").evaluate_all("els => els.map(e => e.innerText)")
    return [t for t in texts if TRACEBACK in t]


def run_notebook(page, lab: dict, name: str) -> None:
    """Open ``name``, run all cells, wait until every code cell has run and the kernel is idle; no cell may fail."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(f"{lab['url']}/lab/tree/{name}?reset")  # reset: a fresh workspace, only this notebook open
    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=90_000)
    page.wait_for_selector(".jp-StatusBar-TextItem:has-text('| Idle')", timeout=90_000)  # the kernel has started
    started = f"() => ({_PROMPTS_JS})().some(t => /\\[(\\*|\\d+)\\]/.test(t))"
    for _ in range(3):  # a Run All sent while the kernel's websocket is still connecting runs nothing: retry
        page.click(".lm-MenuBar-item:has-text('Run')")
        page.click(".lm-Menu-item:has-text('Run All Cells')")
        try:
            page.wait_for_function(started, timeout=30_000, polling=250)
            break
        except PlaywrightTimeout:
            continue
    else:
        raise AssertionError(f"{name}: Run All Cells started no cell in 3 tries (kernel not connected?)")
    done_or_failed = f"""() => {{
        const prompts = ({_PROMPTS_JS})();
        const busy = prompts.some(t => t.includes('*'));
        const failed = ({_ERRORS_JS})().length > 0;
        return (prompts.length > 0 && prompts.every(t => /\\[\\d+\\]/.test(t))) || (failed && !busy);
    }}"""
    page.wait_for_function(done_or_failed, timeout=RUN_ALL_TIMEOUT_S * 1000, polling=1000)
    page.wait_for_selector(_IDLE, timeout=120_000)
    errors = page.evaluate(_ERRORS_JS)
    assert not errors, f"{name}: a cell failed in JupyterLab:\n{errors[0][-3000:]}"
    prompts = page.evaluate(_PROMPTS_JS)
    assert all(p[:1] == "[" and p[1:-2].strip().isdigit() for p in prompts), f"{name}: not every cell ran: {prompts}"


#: The last entry of the image dropdown of the explorers of 01-04 (utils.widgets.PHOTO_SET).
PHOTO_SET = "photos (ImageNet network)"


def _expect_new_figure(page, i: int, before: str, where: str, what: str, shot: Path) -> str:
    """After ``what`` was done to explorer ``i``: its figure must change from ``before``, stay single and raise
    nothing; returns the new figure's ``src``."""
    explorer = page.locator(_EXPLORER).nth(i)
    changed = f"""() => {{
        const out = document.querySelectorAll({_EXPLORER!r})[{i}].querySelector('.widget-output');
        const srcs = [...out.querySelectorAll('img')].map(e => e.src);
        return out.innerText.includes({TRACEBACK!r}) || (srcs.length > 0 && srcs.join() !== {json.dumps(before)});
    }}"""
    try:
        page.wait_for_function(changed, timeout=SLIDER_TIMEOUT_S * 1000, polling=250)
    except Exception as err:  # playwright's TimeoutError: say what the learner would have seen
        explorer.screenshot(path=str(shot))
        raise AssertionError(f"{where}: {what} did not change the figure within {SLIDER_TIMEOUT_S} s") from err
    page.wait_for_selector(_IDLE, timeout=120_000)
    page.wait_for_timeout(300)  # let the output area settle, so stacked figures would show up
    explorer.screenshot(path=str(shot))
    errors = _explorer_errors(page, i)
    assert not errors, f"{where}: {what} raised:\n{errors[0][-3000:]}"
    after = _explorer_images(page, i)
    assert len(after) == 1, f"{where}: {len(after)} figures after {what}, expected 1 (stacked?)"
    assert after[0] != before, f"{where}: {what} left the figure unchanged"
    return after[0]


def check_explorers(page, name: str, shots: Path) -> tuple[int, int]:
    """Move the first slider of every explorer, then pick the photos in its image dropdown where it has one: each
    time its figure must change, stay single and raise nothing. Returns (explorers, explorers switched to photos)."""
    n, switched = page.locator(_EXPLORER).count(), 0
    for i in range(n):
        explorer = page.locator(_EXPLORER).nth(i)
        explorer.scroll_into_view_if_needed()
        where = f"{name}, explorer {i + 1} of {n} (screenshots in {shots})"
        stem = f"{Path(name).stem}-explorer{i + 1}"
        before = _explorer_images(page, i)
        assert len(before) == 1, f"{where}: {len(before)} figures before moving a slider, expected 1"
        explorer.screenshot(path=str(shots / f"{stem}-before.png"))
        handles = explorer.locator(".widget-slider .noUi-handle")
        assert handles.count() > 0, f"{where}: no slider found"
        label = explorer.locator(".widget-slider .widget-label").first.inner_text()
        handles.first.focus()
        handles.first.press("ArrowRight")  # one step, as a learner's keyboard or a short drag does
        after = _expect_new_figure(page, i, before[0], where, f"moving slider {label!r}", shots / f"{stem}-after.png")
        selects = explorer.locator("select")  # ipywidgets writes an option's spaces as no-break spaces
        options = [selects.nth(k).evaluate("s => [...s.options].map(o => o.text.replace(/\\u00a0/g, ' ').trim())")
                   for k in range(selects.count())]
        images = next((k for k, o in enumerate(options) if PHOTO_SET in o), None)
        if images is not None:
            selects.nth(images).select_option(index=options[images].index(PHOTO_SET))  # as a learner picks it
            _expect_new_figure(page, i, after, where, f"choosing {PHOTO_SET!r} in the image dropdown",
                               shots / f"{stem}-photos.png")
            switched += 1
    return n, switched


def _expected_explorers(nb_path: Path) -> int:
    """How many explorers the notebook builds: code cells calling ``*_explorer(``."""
    return sum(map(_is_explorer, nbformat.read(nb_path, as_version=4).cells))


# --------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_explorers_in_jupyterlab(page, lab, workdir, nb: Path):
    expected = _expected_explorers(nb)
    assert expected >= 1, f"{nb.name} builds no explorer; every course notebook has one"
    run_notebook(page, lab, nb.name)
    found, switched = check_explorers(page, nb.name, workdir / "shots")
    assert found == expected, f"{nb.name}: {found} explorers rendered in JupyterLab, the notebook builds {expected}"
    if nb.name[:2] in ("01", "02", "03", "04"):  # their explorers show the course's images or the photos
        assert switched == found, f"{nb.name}: {found - switched} explorers have no {PHOTO_SET!r} in a dropdown"


BROKEN = '''import utils.widgets as W
from utils.models import build_model

_render, calls = W.render_kernel, []

def render_kernel(*args, **kwargs):  # renders once, then raises: as a render function broken by an edit
    calls.append(1)
    if len(calls) > 1:
        raise RuntimeError("deliberately broken render function")
    return _render(*args, **kwargs)

W.render_kernel = render_kernel  # kernel_explorer looks the function up when it is called
W.kernel_explorer(build_model())'''


def test_a_raising_render_function_fails_the_check(page, lab, workdir):
    """The check itself can fail: an explorer whose render function raises on a slider move is caught."""
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(BROKEN)],
                                            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                     "language": "python"}}),
                   lab["root"] / "broken_explorer.ipynb")
    run_notebook(page, lab, "broken_explorer.ipynb")
    with pytest.raises(AssertionError, match="deliberately broken render function"):
        check_explorers(page, "broken_explorer.ipynb", workdir / "shots")
