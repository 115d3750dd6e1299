"""Progress: a bar where someone watches, one line per finished unit where the output goes to a file."""
import pytest

from utils import progress as P
from utils import train as T

TINY = dict(epochs=2, image_size=32, batch_size=16, n_train=64, n_eval=16, widths=(4, 8, 8, 8))


def test_output_to_a_file_gets_one_line_per_epoch_and_no_carriage_returns(capsys):
    assert not P.interactive()  # pytest captures standard error: not a terminal, not a kernel
    T.train(T.TrainConfig(**TINY), progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    assert err.splitlines() == [l for l in err.splitlines() if l.startswith("default seed 0: epoch ")]
    assert [l.split(",")[0] for l in err.splitlines()] == ["default seed 0: epoch 1/2", "default seed 0: epoch 2/2"]
    T.train(T.TrainConfig(**TINY), progress=False)
    assert capsys.readouterr().err == ""


def test_a_watched_run_gets_the_bar_and_no_lines(capsys, monkeypatch):
    monkeypatch.setattr(P, "interactive", lambda: True)
    T.train(T.TrainConfig(**TINY), progress=True)
    err = capsys.readouterr().err
    assert "\r" in err and "epoch 1/2," not in err  # tqdm's redraws, not the lines


def test_the_seed_study_reports_each_model_once(tmp_path, capsys):
    import dataclasses

    from utils import experiment as E
    cfg = dataclasses.replace(E.CPU_CONFIG, seeds=(0, 1), **{k: v for k, v in TINY.items() if k != "widths"})
    E.seed_study(cfg, {"default": ("default", {})}, models_dir=tmp_path, progress=True)
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("models: ")]
    assert lines == ["models: 1/2 (default, seed 0: trained)", "models: 2/2 (default, seed 1: trained)"]


@pytest.mark.parametrize("tty", [True, False])
def test_interactive_follows_the_terminal(monkeypatch, tty):
    class Stream:
        def isatty(self):
            return tty

    monkeypatch.setattr(P.sys, "stderr", Stream())
    assert P.interactive() is tty


def test_a_status_line_in_a_notebook_keeps_its_last_text(tmp_path):
    """In a kernel, the seed study's status is one display replaced in place: the saved output is the last line
    (a tqdm widget saved in a notebook shows the text it was first drawn with, "0/5", wherever widgets are not
    rendered). Outside a kernel, only the final lines are written."""
    import nbformat
    from pathlib import Path
    from utils.notebooks import NbvalLikeClient  # how the course executes notebooks (docs/design.md, section 5)
    root = Path(__file__).resolve().parent.parent
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        f"import sys\nsys.path.insert(0, {str(root)!r})\nfrom utils.progress import Status\n"
        "s = Status()\ns('models: 0/2; now a', final=False)\ns('models: 1/2 (a)')\ns('models: 2/2 ready', final=False)")]
    NbvalLikeClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = nb.cells[0].outputs
    assert [o["output_type"] for o in outputs] == ["display_data"]
    assert outputs[0]["data"] == {"text/plain": "models: 2/2 ready"}


def test_a_status_line_outside_a_notebook_writes_only_its_final_lines(capsys):
    s = P.Status()
    s("now a", final=False)
    s("done a")
    P.Status(enabled=False)("never")
    assert capsys.readouterr().err == "done a\n"
