"""The device-dependent experiment configuration, the seed study, the CAM export and mixed precision."""
import dataclasses
import json
import math

import pytest
import torch

from utils import cams, experiment as E
from utils import train as T

TINY = dict(epochs=1, image_size=32, batch_size=16, n_train=64, n_eval=16, widths=(4, 8, 8, 8))


def test_cpu_config_is_chosen_without_a_gpu_and_is_small():
    cfg = E.choose_config("cpu")
    assert cfg is E.CPU_CONFIG and cfg.dataset == "synthetic" and not cfg.amp and cfg.seeds == (0,)
    if not torch.cuda.is_available():
        assert E.choose_config() is E.CPU_CONFIG
    assert "device cpu" in cfg.describe() and "seeds [0]" in cfg.describe() and "local architecture" in cfg.describe()


def test_cuda_config_is_larger():
    gpu, cpu = E.CUDA_CONFIG, E.CPU_CONFIG
    assert gpu.image_size == 192 and gpu.amp and gpu.batch_size > cpu.batch_size
    assert gpu.n_epochs > cpu.n_epochs and len(gpu.seeds) > len(cpu.seeds) and gpu.n_train > cpu.n_train
    assert gpu.tag != cpu.tag


@pytest.mark.parametrize("fast", [True, False])
def test_on_a_gpu_mixed_precision_is_on_only_where_bfloat16_is_hardware(fast, monkeypatch):
    """A T4 (Colab's free GPU, compute capability 7.5) emulates bfloat16, slower than float32: float32 there."""
    monkeypatch.setattr(E, "pick_device", lambda device="auto": torch.device("cuda"))
    monkeypatch.setattr(E.caltech, "is_available", lambda root=None: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    asked = []
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: asked.append(
        including_emulation) or fast)
    cfg = E.choose_config()
    assert asked == [False], "the emulated bfloat16 of a T4 must not count"
    assert cfg == (E.CUDA_CONFIG if fast else dataclasses.replace(E.CUDA_CONFIG, amp=False))
    assert ("mixed precision on (bfloat16)" if fast else "mixed precision off") in cfg.describe()


def test_the_real_photos_need_a_gpu_and_the_photos_and_say_which_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(E.caltech, "DEFAULT_ROOT", tmp_path / "no photos")
    monkeypatch.setattr(E, "pick_device", lambda device="auto": torch.device("cpu"))
    assert E.photos_config() is None
    said = E.photos_missing()
    assert "no GPU here" in said and "python -m utils.caltech download" in said and said.endswith("Nothing trained.")
    monkeypatch.setattr(E, "pick_device", lambda device="auto": torch.device("cuda"))
    assert E.photos_config() is None and "no GPU" not in E.photos_missing()
    monkeypatch.setattr(E.caltech, "is_available", lambda root=None: True)
    monkeypatch.setattr(E, "has_fast_bfloat16", lambda: False)
    assert E.photos_config() == dataclasses.replace(E.CUDA_CALTECH_CONFIG, amp=False)
    assert E.photos_missing() == "the GPU and the photos are here"
    assert E.choose_config() == dataclasses.replace(E.CUDA_CONFIG, amp=False), "the study itself stays synthetic"


def test_the_photo_table_marks_what_needs_masks_instead_of_printing_a_number():
    rows = [{"run": run, "seed": seed, "train": 1.0, "val": 0.9, "test_iid": 0.8 + 0.1 * seed, "test_swapped": acc}
            for run, acc in (("default", 0.25), ("camloss", 0.75)) for seed in (0, 1)]
    table = E.photos_table(rows).splitlines()
    assert "seeds [0, 1]" in table[0]
    default = next(line for line in table if line.startswith("default"))
    assert "0.850 ± 0.071" in default and default.endswith("0.250 ± 0.000")
    assert any(line.startswith("oracle") and "not available" in line for line in table)
    assert any("not available (no masks)" in line for line in table)
    assert str(E.ORIGINAL_DEFAULT_TEST) in table[-1] and "nan" not in "\n".join(table).lower()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_asking_for_cuda_without_a_gpu_is_an_error():
    with pytest.raises(ValueError, match="no CUDA device"):
        E.choose_config("cuda")


def test_train_config_carries_every_field():
    tc = E.CPU_CONFIG.train_config("camloss", 3, lam=1.0)
    assert (tc.seed, tc.epochs, tc.n_train, tc.image_size, tc.extra["lam"], tc.arch) == (3, 10, 2000, 64, 1.0, "local")


@pytest.mark.slow
def test_seed_study_trains_once_then_reads_and_summarises(tmp_path, monkeypatch):
    cfg = dataclasses.replace(E.CPU_CONFIG, seeds=(0, 1), **{k: v for k, v in TINY.items() if k != "widths"})
    calls = []
    real = T.train
    monkeypatch.setattr(T, "train", lambda c, progress=True: calls.append(c) or real(c, progress=False))
    runs = {"default": ("default", {}), "oracle": ("oracle", {}), "camloss λ=1": ("camloss", {"lam": 1.0})}
    rows, models = E.seed_study(cfg, runs, models_dir=tmp_path, progress=False)
    assert len(rows) == 6 and len(calls) == 6 and set(models) == {(r["run"], r["seed"]) for r in rows}
    again, models2 = E.seed_study(cfg, runs, models_dir=tmp_path, progress=False)
    assert len(calls) == 6 and again == rows  # read back, not retrained
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(models[("oracle", 1)](x), models2[("oracle", 1)](x))
    assert (tmp_path / cfg.tag / "camloss_lam_1").is_dir()
    summary = E.summarise(rows, cfg.splits)
    vals = [r["val"] for r in rows if r["run"] == "oracle"]
    assert summary["oracle"]["val"][0] == pytest.approx(sum(vals) / 2)
    assert summary["oracle"]["val"][1] == pytest.approx(abs(vals[0] - vals[1]) / math.sqrt(2))


def test_summarise_and_gap_closed_on_known_numbers():
    rows = [{"run": "default", "seed": s, "test_swapped": 0.0} for s in range(2)]
    rows += [{"run": "oracle", "seed": s, "test_swapped": 1.0} for s in range(2)]
    rows += [{"run": "camloss", "seed": 0, "test_swapped": 0.2}, {"run": "camloss", "seed": 1, "test_swapped": 0.6}]
    summary = E.summarise(rows, ("test_swapped",))
    assert summary["camloss"]["test_swapped"] == pytest.approx((0.4, math.sqrt(0.08)))
    assert E.gap_closed(summary) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="no gap"):
        E.gap_closed({"default": {"test_swapped": (1.0, 0)}, "oracle": {"test_swapped": (1.0, 0)},
                      "camloss": {"test_swapped": (1.0, 0)}})
    with pytest.raises(ValueError, match="runs is empty"):
        E.seed_study(E.CPU_CONFIG, {})


def test_mixed_precision_path_trains_and_keeps_float32_weights():
    # bfloat16 autocast also runs on CPU: the CUDA configuration's code path, exercised here
    r = T.train(T.TrainConfig(strategy="camloss", amp=True, **TINY), progress=False)
    assert all(p.dtype == torch.float32 for p in r.model.parameters())
    assert all(math.isfinite(h["loss"]) for h in r.history)
    with pytest.raises(TypeError, match="amp"):
        T.TrainConfig(amp="yes")


def test_checkpoints_from_before_new_fields_still_match():
    cfg = T.TrainConfig()
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("dataset", "amp")}
    assert cfg.same_model_as(old)
    assert not T.TrainConfig(amp=True).same_model_as(old)


def test_export_cams_writes_overlays_atomically(tmp_path):
    r = T.train(T.TrainConfig(**TINY), progress=False)
    T.save_result(r, tmp_path / "models", "tiny")
    out = cams.export_cams("tiny", "test_swapped", 4, tmp_path / "cams", tmp_path / "models")
    assert out == tmp_path / "cams" / "tiny"
    pngs = sorted(p.name for p in out.glob("0*.png"))
    assert len(pngs) == 4 and pngs[0].startswith("0000_leopard_pred-")
    index = json.loads((out / "index.json").read_text())
    assert [row["file"] for row in index["images"]] == pngs
    assert all(e is None or 0 <= e <= 1 for e in (row["cam_energy_in_mask"] for row in index["images"]))
    cams.export_cams("tiny", "val", 2, tmp_path / "cams", tmp_path / "models")  # replaces the older export
    assert len(list(out.glob("0*.png"))) == 2
    assert sorted(p.name for p in (tmp_path / "cams").iterdir()) == ["tiny"]  # no temporary folders left


def test_export_cams_errors(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="No models are trained yet"):
        cams.export_cams("nope", models_dir=tmp_path)
    r = T.train(T.TrainConfig(**TINY), progress=False)
    T.save_result(r, tmp_path, "tiny")
    with pytest.raises(FileNotFoundError, match="Trained models: tiny"):
        cams.export_cams("nope", models_dir=tmp_path)
    with pytest.raises(ValueError, match="has no split 'test_nope'"):
        cams.export_cams("tiny", "test_nope", 2, tmp_path / "cams", tmp_path)
    assert not (tmp_path / "cams" / "tiny").exists()
    with pytest.raises(SystemExit):
        cams.main(["tiny", "--n", "0", "--models-dir", str(tmp_path), "--out", str(tmp_path / "c")])
    assert "n must be a positive int" in capsys.readouterr().err


def test_the_live_study_trains_what_the_results_file_records():
    """Notebook 05 trains seed 0 live and reads seeds 0-4 from the results file: the same trainings, so its check of
    one against the other means something. Every strategy trains on the camloss default's architecture and epochs."""
    from utils import camloss_search as S
    camloss = T.TrainConfig(strategy="camloss")
    for strategy, variant in S.STUDY_VARIANTS.items():
        mine = E.CPU_CONFIG.train_config(strategy, 0)
        assert (mine.arch, mine.epochs) == (camloss.arch, camloss.epochs)
        assert mine.same_model_as(S.variant_config(variant, 0).to_dict()), f"{strategy}: the study and {variant} differ"
    assert E.CPU_CONFIG.train_config("camloss", 0).extra == T.STRATEGIES["camloss"].defaults
    first = E.CPU_CONFIG.train_config("camloss", 0, arch="course", epochs=6, schedule="joint")
    assert (first.arch, first.epochs, first.extra["schedule"], first.n_train) == ("course", 6, "joint", 2000)


def test_seed_study_reads_a_shipped_model_for_its_config_and_trains_any_other(tmp_path, monkeypatch):
    """Notebook 05's positive-CAM models ship with the course: the study reads one where the run's training config is
    the checkpoint's (no training, the same weights), and trains any other configuration (a GPU's) as before."""
    from utils.models import load_shipped
    calls = []
    real = T.train
    monkeypatch.setattr(T, "train", lambda c, progress=True: calls.append(c) or real(c, progress=False))
    runs = {"positive CAM": ("camloss", {"map": "positive_cam"})}
    rows, models = E.seed_study(E.CPU_CONFIG, runs, models_dir=tmp_path, progress=False,
                                shipped={"positive CAM": "positive_cam_seed0"})
    assert not calls and rows[0]["source"] == "models/positive_cam_seed0.pt"
    shipped, meta = load_shipped("positive_cam_seed0")
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(models[("positive CAM", 0)](x), shipped(x)) and rows[0]["test_swapped"] == meta["accuracy"]["test_swapped"]
    tiny = dataclasses.replace(E.CPU_CONFIG, **{k: v for k, v in TINY.items() if k != "widths"})
    rows, _ = E.seed_study(tiny, runs, models_dir=tmp_path, progress=False, shipped={"positive CAM": "positive_cam_seed0"})
    assert len(calls) == 1 and rows[0]["source"] == "trained"
    with pytest.raises(ValueError, match="shipped names label.*'oracle'.*runs does not have"):
        E.seed_study(E.CPU_CONFIG, runs, shipped={"oracle": "positive_cam_seed0"})


def test_notebook_05_reads_its_positive_cam_models_from_the_shipped_checkpoints():
    """The notebook's RUNS and SHIPPED literals: every shipped label's CPU training config is its checkpoint's, so
    under the CPU configuration those two models are read, never trained on this CPU's arithmetic."""
    import ast
    from pathlib import Path

    import nbformat
    from utils import camloss_search as S
    from utils.models import SHIPPED_MODELS, load_shipped
    nb = nbformat.read(Path(__file__).resolve().parent.parent / "notebooks" / "05_camloss.ipynb", as_version=4)
    cell = next(c.source for c in nb.cells if c.cell_type == "code" and "seed_study(" in c.source)
    found = {t.id: ast.literal_eval(node.value) for node in ast.parse(cell).body if isinstance(node, ast.Assign)
             for t in node.targets if isinstance(t, ast.Name) and t.id in ("RUNS", "SHIPPED")}
    runs, shipped = found["RUNS"], found["SHIPPED"]
    assert set(shipped) == {"positive CAM", "positive CAM (course, joint)"} and set(shipped.values()) <= set(SHIPPED_MODELS)
    for label, name in shipped.items():
        strategy, options = runs[label]
        meta = load_shipped(name)[1]
        assert E.CPU_CONFIG.train_config(strategy, 0, **options).same_model_as(meta["config"]), label
        assert meta["arithmetic"]["cpu_capability"] and "threads" in meta["arithmetic"], f"{name}: arithmetic not recorded"
    live = set(runs) - set(shipped)
    assert live == set(S.STUDY_VARIANTS), "only the study's three train live"


def test_constant_predictions():
    preds = {"one class": torch.zeros(6, dtype=torch.long), "both": torch.tensor([0, 1, 0]),
             "other class": torch.ones(2, dtype=torch.long)}
    assert E.constant_predictions(preds) == ["one class", "other class"]


def test_headline_trains_all_three_on_one_architecture(monkeypatch):
    from utils import headline as H
    calls = []
    monkeypatch.setattr(H, "load_or_train", lambda s, **kw: calls.append((s, kw)) or (None, {"accuracy": {"val": 1.0}}))
    assert H.headline(seed=3) == {s: {"val": 1.0} for s in H.HEADLINE_STRATEGIES}
    camloss = T.TrainConfig(strategy="camloss")
    for s, kw in calls:
        assert (kw["seed"], kw["arch"], kw["epochs"], kw["models_dir"]) == (3, camloss.arch, camloss.epochs,
                                                                             H.HEADLINE_DIR)


@pytest.mark.slow
def test_notebook_05_runs_on_a_gpu_with_the_photos(run_notebook_05, caltech_tree, tmp_path):
    """On a Colab GPU with the Caltech-256 photos downloaded, notebook 05 runs ``CUDA_CONFIG`` (192 px, a 24×24
    feature grid, several seeds, bfloat16 autocast) and its section on the photos (``CUDA_CALTECH_CONFIG``). No GPU
    and no photos here: both configurations, scaled down in data and epochs, run on the CPU, on a Caltech-like tree
    (the real layout, a few dozen JPEGs per class, grey, CMYK and corrupt files), models and figures in
    ``tmp_path``: every cell runs, only the claims may fail (``run_notebook_05``)."""
    tree = caltech_tree(tmp_path / "caltech", 36, 30, cmyk=True)
    nb = run_notebook_05("E.choose_config = lambda device='auto': dataclasses.replace(E.CUDA_CONFIG, device='cpu', "
                         "n_train=32, n_eval=16, epochs=1, seeds=(0, 1))\n"
                         f"E.caltech.DEFAULT_ROOT = Path({str(tree)!r})\n"
                         "E.photos_config = lambda device='auto': dataclasses.replace(E.CUDA_CALTECH_CONFIG, "
                         "device='cpu', epochs=1, seeds=(0, 1))")

    def printed(marker: str) -> str:
        return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" and marker in c.source
                       for o in c.outputs)

    details = printed("print(cfg.describe())")  # the run details, in the checks cell at the end
    assert "192 px" in details and "seeds [0, 1]" in details and "mixed precision on (bfloat16)" in details, details
    photos = printed("photos_config()")
    assert "data: Caltech-256" in photos and "test_swapped" in photos and "readable images" in photos, photos
    table = photos[photos.index("accuracy on the Caltech-256 photos"):]
    assert "not available (no masks)" in table and "0.5938" in table and "nan" not in table.lower(), table
    maps = [c for c in nb.cells if c.cell_type == "code" and "decision_maps(m, x, truth" in c.source][0]
    assert any("image/png" in o.get("data", {}) for o in maps.outputs), "the photo figure was drawn"
    assert printed("decision_maps(m, x, truth").count("not available (no masks)") == 2
    assert any((tmp_path / "models" / "study").glob("caltech256-192px-*/camloss")), "the photo models were trained"
    assert any((tmp_path / "models").rglob("*.pt")), "the models were trained into tmp_path"
