"""The course model and its checkpoints."""
import argparse

import pytest
import torch

from utils.models import (CheckpointError, OrcaLeopardNet, build_model, load_checkpoint, local_kernels,
                          save_checkpoint)


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = OrcaLeopardNet()
    # non-trivial batch-norm statistics, so the round-trip checks buffers too
    m.train()
    with torch.no_grad():
        m(torch.rand(8, 3, 64, 64))
    return m.eval()


@pytest.mark.parametrize("size, fmap", [(32, 4), (64, 8), (192, 24), (224, 28)])
def test_shapes(model, size, fmap):
    x = torch.rand(2, 3, size, size)
    logits, feats = model.forward_with_features(x)
    assert logits.shape == (2, 2)
    assert feats.shape == (2, 128, fmap, fmap)
    assert torch.allclose(model(x), logits)


def test_gap_linear_head_gives_the_cam_identity(model):
    """logit_c = mean_xy(sum_k w_ck f_k) + b_c: the head is exactly GAP + linear."""
    x = torch.rand(3, 3, 64, 64)
    logits, f = model.forward_with_features(x)
    cams = torch.einsum("ck,nkhw->nchw", model.classifier.weight, f)
    assert torch.allclose(cams.mean((2, 3)) + model.classifier.bias, logits, atol=1e-5)


def test_parts_are_reachable(model):
    assert isinstance(model.last_conv, torch.nn.Conv2d) and model.last_conv.out_channels == 128
    assert isinstance(model.features[-1], torch.nn.ReLU)
    assert model.classifier.in_features == 128
    # normalisation lives inside: an all-mean image maps to zero
    mean = model.normalize.mean.view(1, 3, 1, 1).expand(1, 3, 4, 4)
    assert torch.allclose(model.normalize(mean), torch.zeros(1, 3, 4, 4), atol=1e-6)


def test_checkpoint_round_trip(model, tmp_path):
    meta = {"image_size": 64, "classes": ["leopard", "orca"], "accuracy": {"val": 0.99}}
    path = save_checkpoint(model, tmp_path / "sub" / "m.pt", meta)
    loaded, meta2 = load_checkpoint(path)
    assert meta2 == meta and not loaded.training
    sd1, sd2 = model.state_dict(), loaded.state_dict()
    assert sd1.keys() == sd2.keys() and all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(model(x), loaded(x))
    # plain torch.load with weights_only=True reads it (no pickled code)
    assert torch.load(path, weights_only=True)["format"].endswith("checkpoint")
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]  # no temporary file left behind


def test_other_widths_round_trip(tmp_path):
    m = OrcaLeopardNet(widths=(8, 8, 16))
    loaded, _ = load_checkpoint(save_checkpoint(m, tmp_path / "small.pt"))
    assert loaded.widths == (8, 8, 16)


def test_local_architecture_sees_a_10_pixel_patch_and_keeps_the_cam_exact(tmp_path):
    """kernel_sizes (3, 1, 1, 1): a last-layer cell depends on exactly its 10×10 input patch (computed, not assumed)."""
    torch.manual_seed(0)
    m = OrcaLeopardNet(kernel_sizes=local_kernels(4)).eval()
    assert m.receptive_field == 10 and OrcaLeopardNet().receptive_field == 38
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    logits, f = m.forward_with_features(x)
    f[0, :, 3, 3].sum().backward()
    rows, cols = torch.nonzero(x.grad.abs().sum(1)[0], as_tuple=True)
    assert (int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1) == (10, 10)
    assert 24 - 1 <= int(rows.min()) and int(rows.max()) <= 31 + 1  # cell (3, 3) covers pixels 24..31, plus one each side
    cams = torch.einsum("ck,nkhw->nchw", m.classifier.weight, f.detach())
    assert torch.allclose(cams.mean((2, 3)) + m.classifier.bias, logits.detach(), atol=1e-5)
    loaded, _ = load_checkpoint(save_checkpoint(m, tmp_path / "local.pt"))
    assert loaded.kernel_sizes == (3, 1, 1, 1) and torch.equal(loaded(x.detach()), m(x.detach()))
    assert "kernel_sizes" not in OrcaLeopardNet().config  # the course model's checkpoints keep their old form


@pytest.mark.parametrize("kernels", [(3, 1), (3, 2, 1, 1), (3, 0, 1, 1)])
def test_bad_kernel_sizes(kernels):
    with pytest.raises(ValueError, match="kernel_sizes must give one odd size per block"):
        OrcaLeopardNet(kernel_sizes=kernels)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*python -m utils.train"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_file(model, tmp_path):
    path = save_checkpoint(model, tmp_path / "m.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint \\(truncated or corrupt\\?\\).*delete"):
        load_checkpoint(path)


def test_garbage_file(tmp_path):
    path = tmp_path / "m.pt"
    path.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_foreign_checkpoint(tmp_path):
    path = tmp_path / "m.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="not a checkpoint of this course"):
        load_checkpoint(path)


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "m.pt"
    torch.save(argparse.Namespace(a=1), path)  # an arbitrary object: weights_only=True refuses to unpickle it
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_mismatched_architecture(model, tmp_path):
    path = save_checkpoint(model, tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["model"]["widths"] = [16, 32, 64, 64]  # says one thing, weights say another
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="does not match the architecture"):
        load_checkpoint(path)
    payload["model"] = {"arch": "ResNet50"}
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="unknown architecture 'ResNet50'"):
        load_checkpoint(path)


def test_failed_save_leaves_nothing(model, tmp_path):
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save_checkpoint(model, tmp_path / "m.pt", {"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_save_does_not_replace_a_good_file_on_failure(model, tmp_path, monkeypatch):
    path = save_checkpoint(model, tmp_path / "m.pt", {"v": 1})

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, path, {"v": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)[1] == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_bad_model_config():
    with pytest.raises(ValueError, match="widths"):
        OrcaLeopardNet(widths=())
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model({"arch": "vgg"})


def test_atomic_write_leaves_the_old_file_and_no_temporary_on_failure(tmp_path):
    from utils.models import atomic_write
    target = atomic_write(tmp_path / "x.json", lambda f: f.write(b'{"v": 1}\n'))
    assert target.read_bytes() == b'{"v": 1}\n'

    def half_then_fail(f):
        f.write(b'{"v": ')
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_fail)

    def reject(tmp):
        raise ValueError("does not verify")
    with pytest.raises(ValueError, match="does not verify"):
        atomic_write(target, lambda f: f.write(b"new"), reject)
    assert target.read_bytes() == b'{"v": 1}\n' and [p.name for p in tmp_path.iterdir()] == ["x.json"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_the_umask_mode_not_the_temporary_files(model, tmp_path, umask, mode):
    """A checkpoint or JSON is as readable as any file the user creates (mkstemp alone would leave 0600)."""
    import os
    import stat
    from utils.models import atomic_write
    old = os.umask(umask)
    try:
        pt = save_checkpoint(model, tmp_path / "m.pt")
        js = atomic_write(tmp_path / "m.json", lambda f: f.write(b"{}"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(pt.stat().st_mode) == mode and stat.S_IMODE(js.stat().st_mode) == mode


# --------------------------------------------------------------------------- the shipped model
def test_shipped_model_loads_and_its_json_vouches_for_it():
    from utils.models import SHIPPED_DEFAULT, SHIPPED_DIR, load_shipped, sha256_of
    model, meta = load_shipped()
    assert isinstance(model, OrcaLeopardNet) and not model.training
    assert meta["checkpoint_sha256"] == sha256_of(SHIPPED_DIR / f"{SHIPPED_DEFAULT}.pt")
    assert meta["strategy"] == "default" and meta["config"]["seed"] == 0
    from utils.train import TrainConfig  # what `python -m utils.train default --seed 0` trains
    assert TrainConfig().same_model_as(meta["config"]), "the shipped model is not the documented call's model"


def test_the_shipped_oracle_is_the_default_but_for_its_backgrounds():
    """The positive control of notebooks 01-04: the default's network, data, epochs and seed, trained on
    class-independent backgrounds; right on test_swapped where the default is wrong."""
    from utils.models import SHIPPED_MODELS, SHIPPED_ORACLE, load_shipped
    from utils.train import TrainConfig
    assert SHIPPED_ORACLE in SHIPPED_MODELS
    _, default = load_shipped()
    _, oracle = load_shipped(SHIPPED_ORACLE)
    assert oracle["strategy"] == "oracle"
    assert TrainConfig(strategy="oracle").same_model_as(oracle["config"])
    differ = {k for k in default["config"] if default["config"][k] != oracle["config"].get(k)}
    assert differ == {"strategy"}, differ
    assert oracle["accuracy"]["test_swapped"] >= 0.95 and default["accuracy"]["test_swapped"] <= 0.05


@pytest.mark.parametrize("name", ["default_seed0", "oracle_seed0", "positive_cam_seed0", "positive_cam_course_joint_seed0",
                                  "decoy_frame_camloss_seed0", "decoy_frame_rrr_seed0"])
def test_every_shipped_model_is_what_its_command_trains(name, tmp_path, monkeypatch):
    """SHIPPED_MODELS' command, parsed by the training CLI, asks for exactly the training the checkpoint's JSON records
    (and the JSON vouches for the bytes), so the command in an error message or the README retrains that model."""
    import shlex

    from utils import train as T
    from utils.models import SHIPPED_MODELS, load_shipped
    model, meta = load_shipped(name)
    env, argv = [], shlex.split(SHIPPED_MODELS[name])
    while "=" in argv[0]:
        env.append(argv.pop(0))
    assert argv[:3] == ["python", "-m", "utils.train"] and argv[argv.index("--out") + 1] == "models"
    asked = []

    class Stop(Exception):
        pass

    monkeypatch.setattr(T, "train", lambda cfg, progress=True: asked.append(cfg) or (_ for _ in ()).throw(Stop()))
    with pytest.raises(Stop):
        T.main([a if a != "models" else str(tmp_path) for a in argv[3:]])
    assert asked[0].same_model_as(meta["config"]), f"{name}: the command trains another model than the checkpoint's"
    if name != "default_seed0":  # trained with one thread, and the JSON says so
        assert env == ["OMP_NUM_THREADS=1"] and meta["arithmetic"]["threads"] == 1
        missing = str(pytest.raises(FileNotFoundError, load_shipped, name, folder=tmp_path).value)
        assert SHIPPED_MODELS[name].replace("--out models", f"--out {tmp_path}") in missing, missing


def _shipped_copy(tmp_path):
    import shutil
    from utils.models import SHIPPED_DEFAULT, SHIPPED_DIR
    for suffix in (".pt", ".json"):
        shutil.copy(SHIPPED_DIR / f"{SHIPPED_DEFAULT}{suffix}", tmp_path / f"{SHIPPED_DEFAULT}{suffix}")
    return tmp_path / f"{SHIPPED_DEFAULT}.pt", tmp_path / f"{SHIPPED_DEFAULT}.json"


def test_shipped_model_with_other_bytes_is_refused(tmp_path):
    from utils.models import load_shipped
    pt, _ = _shipped_copy(tmp_path)
    load_shipped(folder=tmp_path)  # the copy is fine
    # what a clone without Git LFS would hold: a pointer file
    pt.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 403343\n")
    with pytest.raises(CheckpointError, match=r"SHA-256.*git checkout -- .*default_seed0.pt.*"
                                              r"python -m utils.train default --seed 0 --out"):
        load_shipped(folder=tmp_path)
    # a valid checkpoint of other weights: readable, but not the shipped model
    save_checkpoint(OrcaLeopardNet(), pt, {})
    with pytest.raises(CheckpointError, match="not the shipped model"):
        load_shipped(folder=tmp_path)


def test_shipped_model_missing_or_without_hash(tmp_path):
    import json
    from utils.models import load_shipped
    with pytest.raises(FileNotFoundError, match="shipped model default_seed0 is missing"):
        load_shipped(folder=tmp_path)
    _, js = _shipped_copy(tmp_path)
    meta = json.loads(js.read_text())
    del meta["checkpoint_sha256"]
    js.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="no checkpoint_sha256"):
        load_shipped(folder=tmp_path)


@pytest.mark.parametrize("kernels", [None, (3, 1, 1, 1)])
@pytest.mark.parametrize("cell", [(0, 0), (3, 4), (7, 7)])
def test_receptive_box_is_what_the_cell_depends_on(kernels, cell):
    """receptive_box (the box notebook 05 draws): changing every pixel outside it leaves the cell's features exactly
    as they were; raising one edge row or column inside it (clipped to the image) changes them (all-positive weights,
    so no ReLU hides a dependence; a raised pixel wins its max-pools)."""
    m = OrcaLeopardNet(kernel_sizes=kernels).eval()
    with torch.no_grad():
        for p in m.features.parameters():
            p.copy_(p.abs() + 0.1)
    top, left, side = m.receptive_box(*cell)
    assert side == m.receptive_field
    r0, r1, c0, c1 = max(top, 0), min(top + side, 64), max(left, 0), min(left + side, 64)
    x = torch.rand(1, 3, 64, 64) * 0.5
    feats = lambda img: m.forward_features(img)[0, :, cell[0], cell[1]]
    with torch.no_grad():
        base = feats(x)
        outside = torch.rand_like(x)
        outside[..., r0:r1, c0:c1] = x[..., r0:r1, c0:c1]
        assert torch.equal(feats(outside), base)
        for edge in ((slice(r0, r0 + 1), slice(c0, c1)), (slice(r1 - 1, r1), slice(c0, c1)),
                     (slice(r0, r1), slice(c0, c0 + 1)), (slice(r0, r1), slice(c1 - 1, c1))):
            raised = x.clone()
            raised[..., edge[0], edge[1]] = 1.0
            assert not torch.allclose(feats(raised), base), f"cell {cell} should depend on its box's edge {edge}"
