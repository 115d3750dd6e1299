"""The exercise checkers: each accepts its solution, says "not attempted" to a stub, and names each typical mistake;
the notebooks run as shipped (stubs) and with the solutions swapped in."""
import importlib.util
from pathlib import Path

import pytest
import torch

from utils import exercises as X

ROOT = Path(__file__).resolve().parent.parent


def _solutions(name: str):
    spec = importlib.util.spec_from_file_location(f"solutions_{name}", ROOT / "solutions" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


S = _solutions("saliency")


@pytest.fixture(scope="module")
def cases():
    return X.default_cases()


def _input_grad(model, images, target, score="logit"):
    x = images.detach().clone().requires_grad_(True)
    out = model(x)
    if score == "probability":
        out = out.softmax(1)
    (g,) = torch.autograd.grad(out[torch.arange(len(x)), target].sum(), x)
    return g


# ------------------------------------------------------------------ saliency
def _backward_leaves_grads(model, images, target):
    x = images.detach().clone().requires_grad_(True)
    model(x)[torch.arange(len(x)), target].sum().backward()
    return x.grad.abs().amax(1)


def _train_mode(model, images, target):
    model.train()
    return S.saliency_map(model, images, target)


def _freezes_weights(model, images, target):
    for p in model.parameters():
        p.requires_grad_(False)
    return S.saliency_map(model, images, target)


def _leaves_hook(model, images, target):
    model.register_forward_hook(lambda *a: None)
    return S.saliency_map(model, images, target)


def _modifies_input(model, images, target):
    images.requires_grad_(True)
    (g,) = torch.autograd.grad(model(images)[torch.arange(len(images)), target].sum(), images)
    return g.abs().amax(1)


SALIENCY_MISTAKES = {
    "forgot |·|": (lambda m, x, t: _input_grad(m, x, t).amax(1), "forgot the absolute value"),
    "mean over channels": (lambda m, x, t: _input_grad(m, x, t).abs().mean(1), "mean over the colour channels"),
    "sum over channels": (lambda m, x, t: _input_grad(m, x, t).abs().sum(1), "summed over the colour channels"),
    "no channel reduction": (lambda m, x, t: _input_grad(m, x, t).abs(), "reduce the 3 colour channels with the max"),
    "probability": (lambda m, x, t: _input_grad(m, x, t, "probability").abs().amax(1), "softmax probability"),
    "predicted class": (lambda m, x, t: _input_grad(m, x, m(x).argmax(1)).abs().amax(1), "predicted class instead"),
    "other class": (lambda m, x, t: _input_grad(m, x, 1 - t).abs().amax(1), "explained the other class"),
    "sum of logits": (lambda m, x, t: _input_grad(m, x, torch.zeros_like(t)).add(_input_grad(m, x, torch.ones_like(t)))
                      .abs().amax(1), "sum of all logits"),
    "backward() leaves .grad": (_backward_leaves_grads, "gradients were left behind"),
    "train mode": (_train_mode, "training mode"),
    "requires_grad changed": (_freezes_weights, "changed requires_grad"),
    "hook left": (_leaves_hook, "left hooks registered"),
    "input changed": (_modifies_input, "changed the images it was given"),
    "still attached": (lambda m, x, t: S.saliency_map(m, x, t).requires_grad_(True), "still requires grad"),
    "float64": (lambda m, x, t: S.saliency_map(m, x, t).double(), "wrong dtype torch.float64"),
    "other device": (lambda m, x, t: torch.empty(S.saliency_map(m, x, t).shape, device="meta"), "is on meta"),
    "not a tensor": (lambda m, x, t: S.saliency_map(m, x, t).tolist(), "got list"),
    "NaN": (lambda m, x, t: S.saliency_map(m, x, t) * float("nan"), "NaN or infinite"),
    "raises": (lambda m, x, t: m(x)[0, 5], "raised IndexError"),
    "one pixel off": (lambda m, x, t: S.saliency_map(m, x, t).index_put_((torch.tensor(1), torch.tensor(2), torch.tensor(3)),
                                                                         torch.tensor(9.0)),
                      "image 1, pixel (row 2, column 3)"),
}


def test_saliency_solution_is_accepted(cases):
    result = X.check_saliency(S.saliency_map, cases=cases, verbose=False)
    assert result and result.status == "correct" and "2 models" in result.message


def test_saliency_stub_is_not_attempted(cases):
    def stub(model, images, target):
        raise NotImplementedError("write your code here")
    result = X.check_saliency(stub, cases=cases)
    assert not result and result.status == "not attempted"
    assert repr(result).startswith("· vanilla saliency: not attempted yet")
    assert "carries on with the reference (utils.explain.saliency)" in repr(result)


@pytest.mark.parametrize("name", list(SALIENCY_MISTAKES))
def test_saliency_mistakes_get_their_own_message(name):
    fn, expected = SALIENCY_MISTAKES[name]
    result = X.check_saliency(fn, cases=X.default_cases(), verbose=False)  # fresh models: a mistake may change them
    assert result.status == "wrong" and expected in result.message, result.message


def test_every_saliency_mistake_message_is_distinct():
    messages = [m.message for m in X.SALIENCY_MISTAKES] + [m.message for m in X.SMOOTHGRAD_MISTAKES]
    assert len(set(messages)) == len(messages)


# ------------------------------------------------------------------ SmoothGrad
def _noisy(m, x, t, noise, per_copy):
    return torch.stack([per_copy(m, x + eps, t) for eps in noise])


SMOOTHGRAD_MISTAKES = {
    "max before mean": (lambda m, x, t, n: _noisy(m, x, t, n, lambda *a: _input_grad(*a).abs().amax(1)).mean(0),
                        "max over channels before averaging"),
    "abs after mean": (lambda m, x, t, n: _noisy(m, x, t, n, _input_grad).mean(0).abs().amax(1),
                       "averaged the signed gradients"),
    "forgot |·|": (lambda m, x, t, n: _noisy(m, x, t, n, _input_grad).mean(0).amax(1), "forgot the absolute value"),
    "sum": (lambda m, x, t, n: _noisy(m, x, t, n, _input_grad).abs().sum(0).amax(1), "summed over the noisy copies"),
    "first copy only": (lambda m, x, t, n: _input_grad(m, x + n[0], t).abs().amax(1), "only the first noisy copy"),
    "clean image": (lambda m, x, t, n: _input_grad(m, x, t).abs().amax(1), "saliency of the clean image"),
    "prediction per copy": (lambda m, x, t, n: _noisy(m, x, t, n, lambda m_, xx, t_: _input_grad(m_, xx, m_(xx).argmax(1)))
                            .abs().mean(0).amax(1), "prediction on each noisy copy"),
}


def test_smoothgrad_solution_is_accepted_and_its_reference_is_the_course_smoothgrad():
    assert X.check_smoothgrad(S.smoothgrad_map, verbose=False)
    # the checker's reference = utils.explain.smoothgrad given the same noise (drawn as it draws it)
    from utils.explain import smoothgrad
    case = X.default_cases(n=2)[0]
    k, sigma = 3, 0.1
    std = torch.full((2 * k,) + tuple(case.images.shape[1:]), sigma)
    eps = torch.normal(0.0, std, generator=torch.Generator().manual_seed(5))  # copies of one image adjacent
    noise = eps.view(2, k, *case.images.shape[1:]).transpose(0, 1)
    ours = S.smoothgrad_map(case.model, case.images, case.target, noise)
    course = smoothgrad(case.model, case.images, case.target, n_samples=k, batch_size=k, noise=sigma,
                        generator=torch.Generator().manual_seed(5))
    assert torch.allclose(ours, course, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", list(SMOOTHGRAD_MISTAKES))
def test_smoothgrad_mistakes_get_their_own_message(name, cases):
    fn, expected = SMOOTHGRAD_MISTAKES[name]
    result = X.check_smoothgrad(fn, cases=cases, verbose=False)
    assert result.status == "wrong" and expected in result.message, result.message


# ------------------------------------------------------------------ occlusion
O = _solutions("occlusion")


def _occ(**knobs):
    return lambda m, x, t, **opts: X._occlusion(X.Case("learner", m, x, t, opts), **knobs)


OCCLUSION_MISTAKES = {
    "wrong sign": (_occ(sign=-1.0), "wrong sign"),
    "sum over windows": (_occ(reduce="sum"), "summed the drops"),
    "assigned, not accumulated": (_occ(reduce="last"), "only the last window's drop"),
    "windows stop before the border": (_occ(clip_last=False), "stop before the border"),
    "black fill": (_occ(fill=0.0), "filled the windows with 0"),
    "probability": (_occ(score="probability"), "softmax probability"),
    "predicted class": (lambda m, x, t, **o: X._occlusion(X.Case("l", m, x, X._predicted(X.Case("l", m, x, t, o)), o)),
                        "predicted class's score"),
    "other class": (lambda m, x, t, **o: X._occlusion(X.Case("l", m, x, 1 - t, o)), "other class's score"),
}


def test_occlusion_solutions_are_accepted():
    assert X.check_occlusion(O.occlusion_map)
    assert X.check_occlusion_batched(O.occlusion_map_batched)
    assert X.check_occlusion(O.occlusion_map_batched)  # batching is allowed in the first exercise too


def test_the_unbatched_loop_is_right_but_not_batched():
    result = X.check_occlusion_batched(O.occlusion_map)
    assert result.status == "wrong" and "the values are right, but not batched" in result.message, result.message


def test_the_checkers_plain_occlusion_is_the_course_occlusion():
    """The mistakes are knobs on one plain implementation; with every knob at its default it is the reference."""
    for case in X._occlusion_cases(None):
        assert torch.allclose(X._occlusion(case), X._occlusion_reference(case), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(OCCLUSION_MISTAKES))
def test_occlusion_mistakes_get_their_own_message(name):
    fn, expected = OCCLUSION_MISTAKES[name]
    result = X.check_occlusion(fn)
    assert result.status == "wrong" and expected in result.message, result.message


def _drops(**knobs):
    return lambda m, x, t: X._drops(X.Case("learner", m, x, t, {}), **knobs)


LARGEST_DROPS_MISTAKES = {
    "rows swapped": (_drops(fills=("blur", 0.5)), "wrong way round"),
    "smallest value": (_drops(reduce="min"), "smallest value"),
    "mean of the map": (_drops(reduce="mean"), "averaged each map"),
    "mean-colour fill": (_drops(fills=(0.5, "mean")), "mean colour"),
    "other window": (_drops(patch=8, stride=4), "patch 16, stride 8"),
    "transposed": (lambda m, x, t: X._drops(X.Case("l", m, x, t, {})).T, "one row per fill"),
}


def test_largest_drops_solution_is_accepted():
    assert X.check_largest_drops(O.largest_drops)


@pytest.mark.parametrize("name", list(LARGEST_DROPS_MISTAKES))
def test_largest_drops_mistakes_get_their_own_message(name):
    fn, expected = LARGEST_DROPS_MISTAKES[name]
    result = X.check_largest_drops(fn)
    assert result.status == "wrong" and expected in result.message, result.message


# ------------------------------------------------------------------ the notebooks, as shipped and solved
import inspect  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import nbformat  # noqa: E402

STUB = "# YOUR CODE HERE"
CHECK_CELL = re.compile(r"^(check_\w+)\((\w+)\)$")


def swapped(path: Path, answers: dict[str, str]) -> nbformat.NotebookNode:
    """Notebook ``path`` with each stub whose function is in ``answers`` replaced by that source, and the checker
    cells' stored results set to what the checker answers for it (so strict nbval compares the real verdicts)."""
    nb = nbformat.read(path, as_version=4)
    functions, namespace = {}, {"torch": torch}  # one namespace, as in the notebook's kernel
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith(STUB):
            name = re.search(r"^def (\w+)\(", cell.source, re.M).group(1)
            if name in answers:
                prefix = cell.source[:cell.source.index(f"def {name}(")]  # the stub's imports stay
                cell.source = prefix + answers[name]
                exec(cell.source, namespace)
                functions[name] = namespace[name]
    for cell in nb.cells:
        match = CHECK_CELL.match(cell.source.strip()) if cell.cell_type == "code" else None
        if match and match.group(2) in functions:
            verdict = getattr(X, match.group(1))(functions[match.group(2)])
            cell.outputs[0]["data"] = {"text/plain": repr(verdict)}
    assert set(functions) == set(answers), f"stubs not found for {set(answers) - set(functions)}"
    return nb


def _strict_nbval(nb: nbformat.NotebookNode, tmp_path: Path) -> subprocess.CompletedProcess:
    target = tmp_path / "notebook.ipynb"
    nbformat.write(nb, target)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VEX_FIGS_DIR": str(tmp_path / "figs")}
    return subprocess.run([sys.executable, "-m", "pytest", "--nbval", "-q", "-p", "no:cacheprovider",
                           "--nbval-current-env", "--nbval-sanitize-with", str(ROOT / "notebooks" / "nbval_sanitize.cfg"),
                           "--rootdir", str(tmp_path), str(target)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)


NOTEBOOK_SOLUTIONS = {"01_saliency.ipynb": "saliency", "02_occlusion.ipynb": "occlusion"}


def test_every_stub_has_a_checker_after_it_and_a_tested_solution():
    for notebook, module in NOTEBOOK_SOLUTIONS.items():
        nb = nbformat.read(ROOT / "notebooks" / notebook, as_version=4)
        cells = [c for c in nb.cells if c.cell_type == "code"]
        stubs = [i for i, c in enumerate(cells) if c.source.startswith(STUB)]
        assert stubs, notebook
        solutions = _solutions(module)
        for i in stubs:
            name = re.search(r"^def (\w+)\(", cells[i].source, re.M).group(1)
            assert "raise NotImplementedError" in cells[i].source and hasattr(solutions, name)
            assert CHECK_CELL.match(cells[i + 1].source.strip()).group(2) == name, "the checker follows the stub"
            assert "not attempted yet" in cells[i + 1].outputs[0]["data"]["text/plain"]


@pytest.mark.slow
@pytest.mark.parametrize("notebook", list(NOTEBOOK_SOLUTIONS))
def test_the_notebook_passes_strict_nbval_with_the_solutions_swapped_in(notebook, tmp_path):
    solutions = _solutions(NOTEBOOK_SOLUTIONS[notebook])
    names = [n for n, f in inspect.getmembers(solutions, inspect.isfunction) if f.__module__ == solutions.__name__]
    nb = swapped(ROOT / "notebooks" / notebook, {n: inspect.getsource(getattr(solutions, n)) for n in names})
    assert sum("✓" in c.outputs[0]["data"]["text/plain"] for c in nb.cells
               if c.cell_type == "code" and CHECK_CELL.match(c.source.strip())) == len(names)
    run = _strict_nbval(nb, tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


@pytest.mark.slow
def test_a_wrong_answer_gets_its_message_and_the_notebook_goes_on(tmp_path):
    wrong = '''def saliency_map(model, images, target):
    x = images.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x)[torch.arange(len(x)), target].sum(), x)
    return g.amax(1)
'''
    nb = swapped(ROOT / "notebooks" / "01_saliency.ipynb", {"saliency_map": wrong})
    shown = [c.outputs[0]["data"]["text/plain"] for c in nb.cells if c.cell_type == "code" and "check_saliency(" in c.source
             and CHECK_CELL.match(c.source.strip())]
    assert shown[0].startswith("✗ vanilla saliency: you forgot the absolute value")
    run = _strict_nbval(nb, tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
