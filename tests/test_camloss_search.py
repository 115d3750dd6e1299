"""The CAMLoss search script: runs appended one line each, resumed without repeats, summarised; and the committed
results file is the evidence for the camloss strategy's defaults."""
import json
import math

import pytest

from utils import camloss_search as S
from utils import train as T

TINY = dict(epochs=2, n_train=64, n_eval=16, image_size=32, widths=(4, 8), batch_size=32)


@pytest.fixture
def tiny_variants(monkeypatch):
    monkeypatch.setattr(S, "VARIANTS", {
        "tiny-local-abs": ("camloss", dict(arch="local", **TINY, extra=dict(mass="abs", schedule="alternate"))),
        "tiny-default": ("default", dict(arch="local", **TINY)),
    })


def test_runs_are_appended_then_skipped_and_summarised(tiny_variants, tmp_path, monkeypatch):
    results, said = tmp_path / "r.jsonl", []
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    new = S.run_search(["tiny-local-abs", "tiny-default"], [3, 4], results, log=said.append)
    rows = S.read_results(results)
    assert len(new) == 4 and rows == json.loads(json.dumps(new)) and len(results.read_text().splitlines()) == 4
    first = rows[0]
    assert (first["variant"], first["seed"], first["strategy"]) == ("tiny-local-abs", 3, "camloss")
    assert first["arithmetic"].startswith("native (") and first["config"]["arch"] == "local"
    assert [h["epoch"] for h in first["history"]] == [1, 2] and {"ce", "penalty", "val", "test_swapped"} <= set(
        first["history"][0])
    assert first["accuracy"]["test_swapped"] == first["history"][-1]["test_swapped"]
    # a second call trains nothing; another arithmetic is another run
    assert S.run_search(["tiny-local-abs"], [3], results, log=said.append) == [] and "skipped" in said[-1]
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    assert S.arithmetic() == "ATEN_CPU_CAPABILITY=default"
    assert len(S.run_search(["tiny-local-abs"], [3], results, log=said.append)) == 1
    summary = {(s["variant"], s["arithmetic"]): s for s in S.summarise_results(S.read_results(results), seeds=[3, 4])}
    s = summary[("tiny-default", first["arithmetic"])]
    values = [r["accuracy"]["test_swapped"] for r in rows if r["variant"] == "tiny-default"]
    assert s["seeds"] == [3, 4] and s["test_swapped"] == values and math.isclose(s["mean"], sum(values) / 2)
    assert math.isclose(s["std"], abs(values[0] - values[1]) / math.sqrt(2))
    assert "tiny-default" in S.format_summary(list(summary.values()))


def test_bad_names_and_a_damaged_results_file_are_clear_errors(tiny_variants, tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown variant 'nope'; choose from tiny-local-abs, tiny-default"):
        S.run_search(["tiny-default", "nope"], [0], tmp_path / "r.jsonl")
    assert not (tmp_path / "r.jsonl").exists()  # refused before any training
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"variant": "x"}\n{"variant": \n')
    with pytest.raises(ValueError, match="bad.jsonl, line 2, is not JSON"):
        S.read_results(bad)
    with pytest.raises(SystemExit):
        S.main(["summary", "--results", str(bad)])
    assert "line 2, is not JSON" in capsys.readouterr().err
