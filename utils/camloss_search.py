"""The search for a CAMLoss formulation that works on every seed (docs/design.md, section 4).

Trains named variants (strategy, architecture, penalty mass, schedule, epochs, λ, σ)
at the command line's configuration (2,000 synthetic images, 64 px) and appends one
JSON line per finished run to a tracked results file: the variant and its full
training config, the seed, the arithmetic it ran under, the per-epoch history
(cross-entropy, penalty, accuracy on ``val`` and ``test_swapped``), the final
accuracy on every split (``accuracy``) and on the off-centre views of
:data:`utils.data.OFF_CENTRE_VIEWS` (``views``; runs recorded before 2026-12-01
19:30 lack it) and the seconds it took. Runs already in the file (same
variant config, seed and arithmetic) are skipped, so a search can stop and resume.

Protocol: screen every variant on three sweep seeds (100-102); run the finalists
(within 0.02 of the best ``mean − std`` of ``test_swapped`` there) on all ten
sweep seeds (100-109), where a collapse that hits one seed in five shows; the
rule in :func:`choose` picks the default among them; then report the pick on
seeds 0-4, natively and under another CPU's arithmetic
(``ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41``), never choosing there::

    python -m utils.camloss_search run --seeds 100 101 102                 # every variant (the default seeds)
    python -m utils.camloss_search run --variants local-abs-alt8 --seeds 103 104 105 106 107 108 109
    python -m utils.camloss_search run --variants local-abs-alt8 --seeds 0 1 2 3 4
    python -m utils.camloss_search summary [--seeds 0 1 2 3 4]
    python -m utils.camloss_search table                                   # the README's table

The off-centre study (notebook 05, section 8) is the study variants on seeds 0-4 again, recorded with their views
in their own file (``OFF_CENTRE_FILE``), natively and under the portable arithmetic::

    python -m utils.camloss_search run --variants default-local10 local-abs-alt10 oracle-local10 --seeds 0 1 2 3 4 \
        --results results/off_centre.jsonl
    python -m utils.camloss_search views                                   # its table (README, notebook 05)

Right for the Right Reasons (issue 36): its λ screened on the screening seeds, the pick (``choose_rrr``) on seeds
0-4, natively and under the portable arithmetic, in ``RRR_FILE``::

    python -m utils.camloss_search run --variants rrr-local10-lam1 rrr-local10-lam10 rrr-local10-lam100 \\
        rrr-local10-lam1000 --seeds 100 101 102 --results results/rrr.jsonl
    python -m utils.camloss_search run --variants rrr-local10-lam100 --seeds 0 1 2 3 4 --results results/rrr.jsonl
    python -m utils.camloss_search rrr                                     # its table (README)

Decoy digits (issue 36; ``DECOY_PROTOCOLS``, ``DECOY_STUDY``): every default and control on seeds 0-4, λ (and
camloss's schedule and σ) screened on the screening seeds, the picks (``choose_decoy``) on seeds 0-4, natively, in
``DECOY_FILE``::

    R="--results results/decoy_digits.jsonl"
    python -m utils.camloss_search run $R --seeds 0 1 2 3 4 --variants decoy-corner-mlp-default decoy-corner-mlp-oracle \
        decoy-frame-mlp-default decoy-frame-mlp-oracle decoy-corner-cnn-default decoy-corner-cnn-oracle \
        decoy-frame-cnn-default decoy-frame-cnn-oracle
    python -m utils.camloss_search run $R --seeds 100 101 102 --variants decoy-corner-mlp-rrr-lam10 \
        decoy-corner-mlp-rrr-lam100 decoy-corner-mlp-rrr-lam1000 decoy-frame-mlp-rrr-lam10 decoy-frame-mlp-rrr-lam100 \
        decoy-frame-mlp-rrr-lam1000 decoy-frame-cnn-rrr-lam10 decoy-frame-cnn-rrr-lam100 decoy-frame-cnn-rrr-lam1000 \
        decoy-frame-cnn-camloss-alternate-lam10 decoy-frame-cnn-camloss-joint-lam10 decoy-frame-cnn-camloss-joint-lam3 \
        decoy-frame-cnn-camloss-joint-lam1 decoy-frame-cnn-camloss-alternate-lam10-sigma0.5 \
        decoy-frame-cnn-camloss-joint-lam3-sigma0.5 decoy-frame-cnn-camloss-joint-lam10-sigma0.5
    python -m utils.camloss_search run $R --seeds 0 1 2 3 4 --variants decoy-corner-mlp-rrr-lam10 \
        decoy-frame-mlp-rrr-lam10 decoy-frame-cnn-camloss-joint-lam3-sigma0.5 decoy-frame-cnn-rrr-lam100   # the picks
    # (decoy-frame-cnn-camloss-joint-lam1 ran on seeds 0-4 too: the pick before the σ 0.5 variants were screened)
    # the same picks and controls under the portable arithmetic (the table's SSE4.1 column):
    ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 python -m utils.camloss_search run $R --seeds 0 1 2 3 4 \
        --variants decoy-frame-cnn-default decoy-frame-cnn-oracle decoy-frame-cnn-camloss-joint-lam3-sigma0.5 \
        decoy-frame-cnn-rrr-lam100 decoy-frame-mlp-default decoy-frame-mlp-oracle decoy-frame-mlp-rrr-lam10 \
        decoy-corner-mlp-default decoy-corner-mlp-oracle decoy-corner-mlp-rrr-lam10 decoy-corner-cnn-default \
        decoy-corner-cnn-oracle
    python -m utils.camloss_search decoys                                  # its table (README)

No checkpoint is written: the results file is the evidence.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import torch

from .experiment import mean_std
from .train import TrainConfig, evaluate_views, train

__all__ = ["VARIANTS", "RESULTS_FILE", "SWEEP_SEEDS", "STUDY_SEEDS", "SCREEN_SEEDS", "variant_config", "arithmetic", "run_search",
           "read_results", "summarise_results", "choose", "format_summary", "markdown_table", "STUDY_VARIANTS",
           "recorded_rows", "OFF_CENTRE_FILE", "RRR_FILE", "PORTABLE", "LIVE_TOLERANCE", "check_live_run", "check_live_runs", "native", "seed_table", "mean_table",
           "OFF_CENTRE_COLUMNS", "off_centre_table", "choose_rrr", "rrr_table", "DECOY_FILE", "DECOY_PROTOCOLS",
           "DECOY_STUDY", "PUBLISHED_DECOY_MNIST", "choose_decoy", "summarise_decoys", "decoy_table"]

#: The tracked results file (one JSON object per line, appended as runs finish).
RESULTS_FILE = Path(__file__).resolve().parent.parent / "results" / "camloss_search.jsonl"
#: The off-centre study: the study variants on the study seeds, every row with its ``views``.
OFF_CENTRE_FILE = RESULTS_FILE.with_name("off_centre.jsonl")
#: Right for the Right Reasons (issue 36): its λ screened on ``SCREEN_SEEDS``, the pick on the study seeds.
RRR_FILE = RESULTS_FILE.with_name("rrr.jsonl")
#: Decoy digits (issue 36, ``DECOY_PROTOCOLS``): λ screened on ``SCREEN_SEEDS``, every method on the study seeds.
DECOY_FILE = RESULTS_FILE.with_name("decoy_digits.jsonl")
#: Seeds every variant is screened on; seeds the finalists run on and the rule chooses on; seeds the choice is
#: then reported on (never used to choose).
SCREEN_SEEDS = (100, 101, 102)
SWEEP_SEEDS = tuple(range(100, 110))
STUDY_SEEDS = (0, 1, 2, 3, 4)

#: name → (strategy, TrainConfig fields besides strategy/seed; ``extra`` holds the camloss options).
#: Abbreviations: course/local = architecture (3×3 everywhere / 1×1 after block 1), sq/abs = mass d²/|d|,
#: joint/alt/hybrid/alt2 = schedule (alt2xN: alternate2 over N epochs), the number = epochs.
def _camloss(arch: str, epochs: int, **options: Any) -> tuple[str, dict[str, Any]]:
    """A camloss variant with every option spelled out, so that it does not drift when the strategy's defaults do."""
    return "camloss", dict(arch=arch, epochs=epochs, extra={"lam": 10.0, "sigma": 0.3, "map": "decision", **options})


VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "first": _camloss("course", 6, mass="squared", schedule="joint"),
    "course-abs-alt8": _camloss("course", 8, mass="abs", schedule="alternate"),
    "course-sq-alt12": _camloss("course", 12, mass="squared", schedule="alternate"),
    "local-sq-joint6": _camloss("local", 6, mass="squared", schedule="joint"),
    "local-abs-joint8": _camloss("local", 8, mass="abs", schedule="joint"),
    "local-sq-alt8": _camloss("local", 8, mass="squared", schedule="alternate"),
    "local-abs-alt6": _camloss("local", 6, mass="abs", schedule="alternate"),
    "local-abs-alt8": _camloss("local", 8, mass="abs", schedule="alternate"),
    "local-abs-alt10": _camloss("local", 10, mass="abs", schedule="alternate"),
    "local-abs-alt12": _camloss("local", 12, mass="abs", schedule="alternate"),
    "local-abs-alt2x9": _camloss("local", 9, mass="abs", schedule="alternate2"),
    "local-abs-alt2x12": _camloss("local", 12, mass="abs", schedule="alternate2"),
    "local-abs-hybrid10": _camloss("local", 10, mass="abs", schedule="hybrid"),
    "local-abs-alt8-sigma0.2": _camloss("local", 8, mass="abs", schedule="alternate", sigma=0.2),
    "local-abs-alt8-lam3": _camloss("local", 8, mass="abs", schedule="alternate", lam=3.0),
    "local-abs-alt8-lam30": _camloss("local", 8, mass="abs", schedule="alternate", lam=30.0),
    "local-positive-alt8": _camloss("local", 8, map="positive_cam", schedule="alternate", mass="squared"),
    # the same architecture and length without the penalty: the shortcut, and the ceiling
    "default-local8": ("default", dict(arch="local", epochs=8)),
    "oracle-local8": ("oracle", dict(arch="local", epochs=8)),
    "default-local10": ("default", dict(arch="local", epochs=10)),
    "oracle-local10": ("oracle", dict(arch="local", epochs=10)),
    # Right for the Right Reasons (issue 36) on the same network and length, λ swept (results/rrr.jsonl)
    "rrr-local10-lam1": ("rrr", dict(arch="local", epochs=10, extra={"lam": 1.0})),
    "rrr-local10-lam10": ("rrr", dict(arch="local", epochs=10, extra={"lam": 10.0})),
    "rrr-local10-lam100": ("rrr", dict(arch="local", epochs=10, extra={"lam": 100.0})),
    "rrr-local10-lam1000": ("rrr", dict(arch="local", epochs=10, extra={"lam": 1000.0})),
}


#: Decoy digits (issue 36; ``utils.decoy_digits``, results in ``DECOY_FILE``): two protocols on scikit-learn's digits.
#: ``corner`` is the authors' (a 4×4 patch in a random corner, grey step 25); ``frame`` paints the code as a 4-px frame
#: around the digit, a background as the sea and the savannah are. ``cnn``: the course network with three 3×3 blocks
#: (16-32-64, an 8×8 CAM at 32 px), 20 epochs; ``mlp``: the paper's MLP (50-30), 30 epochs.
DECOY_PROTOCOLS: dict[str, dict[str, Any]] = {"corner": {"patch": 4, "placement": "corner"},
                                              "frame": {"patch": 4, "placement": "frame"}}
_CNN = dict(arch="course", widths=(16, 32, 64), epochs=20)
_MLP = dict(arch="mlp", epochs=30)


def _decoy(protocol: str, strategy: str, net: dict[str, Any], **extra: Any) -> tuple[str, dict[str, Any]]:
    return strategy, dict(dataset="decoy_digits", image_size=32, decoy=DECOY_PROTOCOLS[protocol], **net,
                          **({"extra": extra} if extra else {}))


for _p in DECOY_PROTOCOLS:
    VARIANTS.update({
        f"decoy-{_p}-mlp-default": _decoy(_p, "default", _MLP),
        f"decoy-{_p}-mlp-oracle": _decoy(_p, "oracle", _MLP),
        **{f"decoy-{_p}-mlp-rrr-lam{lam:g}": _decoy(_p, "rrr", _MLP, lam=float(lam)) for lam in (10, 100, 1000)},
        f"decoy-{_p}-cnn-default": _decoy(_p, "default", _CNN),
        f"decoy-{_p}-cnn-oracle": _decoy(_p, "oracle", _CNN),
        **{f"decoy-{_p}-cnn-rrr-lam{lam:g}": _decoy(_p, "rrr", _CNN, lam=float(lam)) for lam in (10, 100, 1000)},
        **{f"decoy-{_p}-cnn-camloss-{sched}-lam{lam:g}" + ("" if sigma == 0.3 else f"-sigma{sigma:g}"):
           _decoy(_p, "camloss", _CNN, lam=float(lam), sigma=sigma, map="decision", schedule=sched, mass="abs")
           for sched, lam, sigma in (("alternate", 10, 0.3), ("joint", 10, 0.3), ("joint", 3, 0.3), ("joint", 1, 0.3),
                                     ("alternate", 10, 0.5), ("joint", 3, 0.5), ("joint", 10, 0.5))},
    })


#: The study notebook 05 presents: each model type's variant (the camloss default and, without the penalty, the same
#: architecture and epochs), run on ``STUDY_SEEDS`` natively and under ``PORTABLE``. A test keeps these configs equal
#: to what ``utils.experiment.CPU_CONFIG`` trains live.
STUDY_VARIANTS = {"default": "default-local10", "camloss": "local-abs-alt10", "oracle": "oracle-local10"}
#: Another CPU's arithmetic, as the portable test suite sets it.
PORTABLE = "ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41"


def variant_config(name: str, seed: int) -> TrainConfig:
    """The :class:`TrainConfig` of variant ``name`` at ``seed`` (CPU, the CLI's data and image size)."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    strategy, fields = VARIANTS[name]
    return TrainConfig(strategy=strategy, seed=seed, device="cpu", **fields)


def arithmetic() -> str:
    """Which CPU arithmetic this process computes with: ``native (AVX2)`` or the portable settings in force."""
    forced = [f"{k}={os.environ[k]}" for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if os.environ.get(k)]
    return " ".join(forced) if forced else f"native ({torch.backends.cpu.get_cpu_capability()})"


def read_results(path: str | os.PathLike = RESULTS_FILE) -> list[dict[str, Any]]:
    """Every run in the results file (an absent file: none). A line that is not JSON is an error naming it."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {n}, is not JSON ({e.msg}); remove that line and run again") from None
    return rows


def _append(path: Path, row: dict[str, Any]) -> None:
    """Append one line with a single write on an O_APPEND descriptor, flushed to disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(row, sort_keys=False) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        if os.write(fd, data) != len(data):
            raise OSError(f"short write to {path}")
        os.fsync(fd)
    finally:
        os.close(fd)


def _config_key(config: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in config.items() if k != "device"}, sort_keys=True)


def run_search(variants: Iterable[str], seeds: Iterable[int], results: str | os.PathLike = RESULTS_FILE,
               log=print) -> list[dict[str, Any]]:
    """Train each variant × seed not yet in ``results`` (same config, seed and arithmetic), appending as each ends."""
    variants, seeds = list(variants), [int(s) for s in seeds]
    for v in variants:
        variant_config(v, 0)  # an unknown name fails before any training
    path, here = Path(results), arithmetic()
    done = {(r["variant"], _config_key(r["config"]), r["arithmetic"]) for r in read_results(path)}
    new = []
    for name in variants:
        for seed in seeds:
            cfg = variant_config(name, seed)
            if (name, _config_key(cfg.to_dict()), here) in done:
                log(f"{name} seed {seed}: already in {path.name}, skipped")
                continue
            start = time.perf_counter()
            result = train(cfg, progress=False)
            seconds = round(time.perf_counter() - start, 1)  # the training and its evaluation, as before views
            row = {"variant": name, "seed": seed, "strategy": cfg.strategy, "arithmetic": here,
                   "accuracy": result.accuracy, "views": evaluate_views(result.model, cfg), "seconds": seconds,
                   "history": result.history, "config": cfg.to_dict(),
                   "torch": torch.__version__, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                   "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
            _append(path, row)
            new.append(row)
            log(f"{name} seed {seed}: " + " ".join(f"{k} {v:.3f}" for k, v in result.accuracy.items() if k != "train")
                + f" ({row['seconds']:.0f} s)")
    return new


#: How far notebook 05's live run may land from its recorded row (accuracy, any split it checks), on any CPU. The
#: arithmetic's name does not pin the digits: the core count and the CPU model change the order of sums as well. Seed 1
#: of camloss, "native (AVX512)" on two machines: 0.948 (recorded) and 0.9625 on `test_swapped` (2026-12-01). 0.05 is
#: above every difference measured between two trainings of one seed (0.015) and far below the gaps the notebook's
#: claims rest on (default 0.000, camloss at least 0.945, oracle 1.000 on `test_swapped`).
LIVE_TOLERANCE = 0.05
LIVE_SPLITS = ("val", "test_swapped", "test_random")


def check_live_run(live: dict[str, Any], recorded: list[dict[str, Any]], tolerance: float = LIVE_TOLERANCE) -> float:
    """Check a live run (a :func:`utils.experiment.seed_study` row) against the recorded rows of its run and seed (any
    arithmetic): returns the largest accuracy difference from the closest one, and raises ``AssertionError`` naming
    the split, both values and the tolerance when even the closest differs by more (``ValueError`` if none is recorded)."""
    mine = [r for r in recorded if r["run"] == live["run"] and r["seed"] == live["seed"]]
    if not mine:
        raise ValueError(f"no recorded row of {live['run']!r} at seed {live['seed']}: record it with "
                         f"`python -m utils.camloss_search run --variants {STUDY_VARIANTS.get(live['run'], '...')} "
                         f"--seeds {live['seed']}`")
    gaps = [(max(abs(r[s] - live[s]) for s in LIVE_SPLITS), r) for r in mine]
    gap, closest = min(gaps, key=lambda g: g[0])
    if gap > tolerance:
        split = max(LIVE_SPLITS, key=lambda s: abs(closest[s] - live[s]))
        raise AssertionError(f"{live['run']}, seed {live['seed']}: the live run differs from its recorded row "
                             f"({closest['arithmetic']}) by {gap:.3f} on {split} ({live[split]:.3f} here, "
                             f"{closest[split]:.3f} recorded), more than {tolerance}")
    return gap


def recorded_rows(labels: dict[str, str] | None = None, seeds: Iterable[int] = STUDY_SEEDS, arith: str | None = None,
                  results: str | os.PathLike = RESULTS_FILE) -> list[dict[str, Any]]:
    """Rows like :func:`utils.experiment.seed_study`'s (``run``, ``seed``, accuracy per split and per recorded view,
    ``history``, plus ``arithmetic``) for each ``label → variant`` of ``labels`` (default ``STUDY_VARIANTS``) and seed, read from the
    results file. ``arith``: that arithmetic only (default: every one recorded). A missing run is an error that
    names the command which records it."""
    labels = STUDY_VARIANTS if labels is None else labels
    seeds = [int(s) for s in seeds]
    out = []
    found = read_results(results)
    for label, variant in labels.items():
        mine = [r for r in found if r["variant"] == variant and r["seed"] in seeds
                and (arith is None or r["arithmetic"] == arith)]
        got = {(r["seed"], r["arithmetic"]) for r in mine}
        for a in sorted({a for _, a in got} or {arith or arithmetic()}):
            missing = [sd for sd in seeds if (sd, a) not in got]
            if missing:
                env = "" if a.startswith("native") else a + " "
                where = "" if Path(results).resolve() == RESULTS_FILE else f" --results {results}"
                raise ValueError(f"{results} has no run of {variant!r} at seed(s) {missing} under {a}; record them "
                                 f"with `{env}python -m utils.camloss_search run --variants {variant} --seeds "
                                 f"{' '.join(map(str, missing))}{where}`")
        out += [{"run": label, "seed": r["seed"], "arithmetic": r["arithmetic"], **r["accuracy"],
                 **r.get("views", {}), "history": r["history"]} for r in sorted(mine, key=lambda r: (r["arithmetic"], r["seed"]))]
    return out


def native(recorded: list[dict[str, Any]]) -> str:
    """The native arithmetic among the recorded rows (what a learner's default CPU computes like; the notebook shows
    these and states the other arithmetic's mean beside them)."""
    found = sorted({r["arithmetic"] for r in recorded if r["arithmetic"].startswith("native")})
    if not found:
        raise ValueError("no native run among the recorded rows: record one with `python -m utils.camloss_search run`")
    return found[0]


def seed_table(recorded: list[dict[str, Any]], split: str = "test_swapped") -> str:
    """The per-seed table notebook 05 prints: one row per run, ``split`` per seed under the native arithmetic, its
    mean ± std, and the mean ± std of the same seeds under every other recorded arithmetic (another CPU)."""
    home = native(recorded)
    others = sorted({r["arithmetic"] for r in recorded} - {home})
    seeds = sorted({r["seed"] for r in recorded})
    lines = [f"{'':<10}" + "".join(f"{'seed ' + str(s):>9}" for s in seeds) + "   mean ± std"
             + "".join(f"   {'another CPU':>13}" for _ in others)]
    for label in dict.fromkeys(r["run"] for r in recorded):
        accs = [r[split] for r in sorted(recorded, key=lambda r: r["seed"]) if r["run"] == label and r["arithmetic"] == home]
        cells = "".join(f"{v:>9.3f}" for v in accs) + "   {:.3f} ± {:.3f}".format(*mean_std(accs))
        for a in others:
            cells += "   {:.3f} ± {:.3f}".format(*mean_std([r[split] for r in recorded if r["run"] == label
                                                              and r["arithmetic"] == a]))
        lines.append(f"{label:<10}{cells}")
    return "\n".join(lines)


def mean_table(recorded: list[dict[str, Any]], splits: Iterable[str]) -> str:
    """Mean ± std over the recorded seeds of each run on each of ``splits`` (a split or a recorded view): a line under
    the native arithmetic, and one per other recorded arithmetic ("another CPU") below it."""
    splits = list(splits)
    home = native(recorded)
    ariths = [home] + sorted({r["arithmetic"] for r in recorded} - {home})
    width = max(16, *(len(s) + 2 for s in splits))
    lines = [f"{'':<16}" + "".join(f"{s:>{width}}" for s in splits)]
    for label in dict.fromkeys(r["run"] for r in recorded):
        for a in ariths:
            mine = [r for r in recorded if r["run"] == label and r["arithmetic"] == a]
            missing = [s for s in splits if any(s not in r for r in mine)]
            if missing:
                raise ValueError(f"the recorded runs of {label!r} under {a} have no {', '.join(missing)}: they were "
                                 f"recorded before it was; record them again (a new --results file)")
            cells = "".join(f"{'{:.3f} ± {:.3f}'.format(*mean_std([r[s] for r in mine])):>{width}}" for s in splits)
            lines.append(f"{label if a == home else '  another CPU':<16}{cells}")
    return "\n".join(lines)


#: The off-centre study's columns: split or view → what its images are (placement, background).
OFF_CENTRE_COLUMNS = {"test_swapped": "centred, misleading", "test_shifted": "off-centre, matched",
                      "test_shifted_swapped": "off-centre, misleading", "test_shifted_random": "off-centre, random"}


def off_centre_table(results: str | os.PathLike = OFF_CENTRE_FILE) -> str:
    """The off-centre study as notebook 05 and the README show it (``python -m utils.camloss_search views``): the
    study runs' mean ± std over seeds 0-4 on :data:`OFF_CENTRE_COLUMNS`, each arithmetic, with a legend."""
    legend = ";  ".join(f"{k}: {v}" for k, v in OFF_CENTRE_COLUMNS.items())
    return (f"accuracy, mean ± std over seeds {STUDY_SEEDS[0]}-{STUDY_SEEDS[-1]} (0.5 = chance), from "
            f"{Path(results).name}\n  {legend}\n\n" + mean_table(recorded_rows(results=results), OFF_CENTRE_COLUMNS))


def check_live_runs(rows: list[dict[str, Any]], recorded: list[dict[str, Any]], labels: Iterable[str] | None = None,
                    tolerance: float = LIVE_TOLERANCE) -> dict[str, float]:
    """:func:`check_live_run` for each live row whose run is one of ``labels`` (default: the recorded runs):
    ``{run: largest difference}``; the first run further than ``tolerance`` raises ``AssertionError``."""
    labels = set(labels if labels is not None else (r["run"] for r in recorded))
    return {r["run"]: check_live_run(r, recorded, tolerance) for r in rows if r["run"] in labels}


def summarise_results(rows: list[dict[str, Any]], seeds: Iterable[int] | None = None) -> list[dict[str, Any]]:
    """Per (variant, arithmetic): seeds, test_swapped mean ± std (sample) and per seed, worst val and test_random."""
    seeds = None if seeds is None else {int(s) for s in seeds}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if seeds is None or r["seed"] in seeds:
            groups.setdefault((r["variant"], r["arithmetic"]), []).append(r)
    out = []
    for (variant, arith), runs in groups.items():
        runs = sorted(runs, key=lambda r: r["seed"])
        swapped = [r["accuracy"]["test_swapped"] for r in runs]
        mean, std = mean_std(swapped)
        out.append({"variant": variant, "arithmetic": arith, "seeds": [r["seed"] for r in runs],
                    "test_swapped": swapped, "mean": mean, "std": std,
                    "min_val": min(r["accuracy"]["val"] for r in runs),
                    "min_test_random": min(r["accuracy"]["test_random"] for r in runs),
                    "seconds": sum(r["seconds"] for r in runs) / len(runs)})
    return out


#: The bar a variant must hold on every sweep seed to be chosen at all.
MIN_VAL, MIN_TEST_RANDOM = 0.97, 0.95


def choose(rows: list[dict[str, Any]], seeds: Iterable[int] = SWEEP_SEEDS, arith: str | None = None,
           strategy: str = "camloss") -> str:
    """The rule that picks the default formulation, on the sweep seeds only (never on the study seeds).

    Among ``strategy``'s variants (camloss; rrr: its λ) run on every one of ``seeds`` (under ``arith``; default: native) whose validation
    accuracy stays ≥ ``MIN_VAL`` and ``test_random`` ≥ ``MIN_TEST_RANDOM`` on each seed, take the best
    ``mean − std`` of ``test_swapped``: the goal is a formulation that works on *every* seed, so its spread
    counts against it as much as its mean counts for it. Exact ties: fewer epochs, then the name.
    """
    seeds = sorted(int(s) for s in seeds)
    summary = [s for s in summarise_results([r for r in rows if r["strategy"] == strategy], seeds)
               if s["seeds"] == seeds and (s["arithmetic"].startswith("native") if arith is None else s["arithmetic"] == arith)
               and s["min_val"] >= MIN_VAL and s["min_test_random"] >= MIN_TEST_RANDOM]
    if not summary:
        raise ValueError(f"no {strategy} variant has run on all of seeds {seeds} and held val >= {MIN_VAL} and "
                         f"test_random >= {MIN_TEST_RANDOM}; run `python -m utils.camloss_search run` first")
    epochs = {r["variant"]: r["config"]["epochs"] for r in rows}
    return min((-(s["mean"] - s["std"]), epochs[s["variant"]], s["variant"]) for s in summary)[2]


def choose_rrr(rows: list[dict[str, Any]], seeds: Iterable[int] = SCREEN_SEEDS) -> str:
    """RRR's λ, on the screening seeds: :func:`choose`'s rule; where no λ holds its bars (on the orcas none does:
    small λ keep the shortcut, large ones break the task), the *strongest penalty that still learns the task*: the
    largest λ whose validation accuracy stays ≥ ``MIN_VAL`` on every seed (natively)."""
    try:
        return choose(rows, seeds, strategy="rrr")
    except ValueError:
        pass
    seeds = sorted(int(s) for s in seeds)
    learns = [s["variant"] for s in summarise_results([r for r in rows if r["strategy"] == "rrr"], seeds)
              if s["seeds"] == seeds and s["arithmetic"].startswith("native") and s["min_val"] >= MIN_VAL]
    if not learns:
        raise ValueError(f"no rrr variant has run on all of seeds {seeds} with val >= {MIN_VAL}; run "
                         f"`python -m utils.camloss_search run --variants rrr-... --seeds {' '.join(map(str, seeds))} "
                         f"--results {RRR_FILE.name}` first")
    return max(learns, key=lambda v: VARIANTS[v][1]["extra"]["lam"])


def rrr_table(rrr_results: str | os.PathLike = RRR_FILE, results: str | os.PathLike = RESULTS_FILE) -> str:
    """RRR beside CAMLoss (``python -m utils.camloss_search rrr``; README, notebook 05): the λ screen on the
    screening seeds (native), the pick, and the study seeds of default / camloss / rrr / oracle under every
    recorded arithmetic, with the share of the default → oracle gap each method closes on ``test_swapped``."""
    rows = read_results(rrr_results)
    screen = [s for s in summarise_results(rows, SCREEN_SEEDS) if s["arithmetic"].startswith("native")]
    screen.sort(key=lambda s: VARIANTS[s["variant"]][1]["extra"]["lam"])
    lines = [f"RRR's λ on seeds {SCREEN_SEEDS[0]}-{SCREEN_SEEDS[-1]} ({Path(rrr_results).name}, native): "
             f"test_swapped mean ± std, worst val, worst test_random"]
    lines += [f"  λ {VARIANTS[s['variant']][1]['extra']['lam']:>6g}   {s['mean']:.3f} ± {s['std']:.3f}   "
              f"val ≥ {s['min_val']:.3f}   test_random ≥ {s['min_test_random']:.3f}" for s in screen]
    pick = choose_rrr(rows)
    lines.append(f"pick ({choose_rrr.__name__}): {pick}\n")
    study = recorded_rows(results=results) + recorded_rows({"rrr": pick}, results=rrr_results)
    order = {"default": 0, "camloss": 1, "rrr": 2, "oracle": 3}
    study.sort(key=lambda r: order[r["run"]])
    lines.append(f"seeds {STUDY_SEEDS[0]}-{STUDY_SEEDS[-1]}, accuracy mean ± std (0.5 = chance on test_swapped and "
                 f"test_random)")
    lines.append(mean_table(study, ["val", "test_swapped", "test_random"]))
    home = native(study)
    m = {label: mean_std([r["test_swapped"] for r in study if r["run"] == label and r["arithmetic"] == home])[0]
         for label in order}
    gap = m["oracle"] - m["default"]
    lines.append("share of the default → oracle gap on test_swapped closed (native): " + ", ".join(
        f"{label} {(m[label] - m['default']) / gap:.0%}" for label in ("camloss", "rrr")))
    return "\n".join(lines)


#: Right for the Right Reasons' DecoyMNIST numbers, as the authors' experiment notebook reports them: *their* MLP on
#: *MNIST* (28 px, 60,000 training digits), test accuracy on random-label decoys. Quoted, not computed here.
PUBLISHED_DECOY_MNIST = {"default": 0.516, "rrr": 0.961, "clean": 0.961}
#: The bar a decoy-digit variant holds on every screening seed to be picked: it learns the task (validation digits
#: carry the training decoys, so a shortcut passes it too; the pick is then the best ``mean − std`` on ``test``).
DECOY_MIN_VAL = 0.9
DECOY_CHANCE = 0.1


def _decoy_variants(protocol: str, net: str, strategy: str) -> list[str]:
    return [v for v in VARIANTS if v.startswith(f"decoy-{protocol}-{net}-{strategy}")]


def choose_decoy(rows: list[dict[str, Any]], protocol: str, net: str, strategy: str,
                 seeds: Iterable[int] = SCREEN_SEEDS) -> str:
    """The picked variant of ``strategy`` (rrr's λ, camloss's schedule and λ) for ``protocol`` and ``net``, on the
    screening seeds (native): val ≥ ``DECOY_MIN_VAL`` on every seed, then the best ``mean − std`` of ``test``."""
    seeds = sorted(int(s) for s in seeds)
    names = _decoy_variants(protocol, net, strategy)
    if len(names) == 1:
        return names[0]
    scored = [(-(m - sd), v) for v, m, sd, worst_val in summarise_decoys(rows, names, seeds) if worst_val >= DECOY_MIN_VAL]
    if not scored:
        raise ValueError(f"no {strategy} variant of decoy-{protocol}-{net} has run on all of seeds {seeds} with val >= "
                         f"{DECOY_MIN_VAL}; run `python -m utils.camloss_search run --variants "
                         f"{' '.join(names)} --seeds {' '.join(map(str, seeds))} --results results/{DECOY_FILE.name}`")
    return min(scored)[1]


#: The decoy study: protocol → network → the strategies shown, in order (``oracle``: random-label decoys in training).
DECOY_STUDY = {"corner": {"mlp": ("default", "rrr", "oracle"), "cnn": ("default", "oracle")},
               "frame": {"mlp": ("default", "rrr", "oracle"), "cnn": ("default", "camloss", "rrr", "oracle")}}


def decoy_table(results: str | os.PathLike = DECOY_FILE, screen: bool = True) -> str:
    """Decoy digits (``python -m utils.camloss_search decoys``; README, notebook 05): for each protocol and network,
    the screen of λ (and camloss's schedule) on the screening seeds (``screen=False``: left out), the picks, then val
    and test (random-label decoys) mean ± std over the study seeds, natively and test under the portable arithmetic
    (``PORTABLE``; "–" where not recorded), beside the published DecoyMNIST numbers (theirs: MLP, MNIST)."""
    rows = read_results(results)
    lines = [f"decoy digits (scikit-learn's 8x8 digits at 24 px on a 32-px canvas), from {Path(results).name}; "
             f"test = random-label decoys, chance {DECOY_CHANCE}"]
    for protocol, nets in DECOY_STUDY.items():
        lines.append(f"\n{protocol}: {DECOY_PROTOCOLS[protocol]}")
        for net, strategies in nets.items():
            picks = {}
            for strategy in strategies:
                names = _decoy_variants(protocol, net, strategy)
                if len(names) > 1 and screen:
                    lines += [f"  screen {v}: test {m:.3f} ± {sd:.3f}, val ≥ {lo:.3f} (seeds "
                              f"{SCREEN_SEEDS[0]}-{SCREEN_SEEDS[-1]})"
                              for v, m, sd, lo in summarise_decoys(rows, names, SCREEN_SEEDS)]
                picks[strategy] = choose_decoy(rows, protocol, net, strategy)
            lines.append(f"  {net}: seeds {STUDY_SEEDS[0]}-{STUDY_SEEDS[-1]}, mean ± std")
            means = {}
            for strategy, v in picks.items():
                study = summarise_decoys(rows, [v], STUDY_SEEDS)
                if not study:
                    raise ValueError(f"{results} lacks {v!r} on seeds {list(STUDY_SEEDS)}; record them with `python -m "
                                     f"utils.camloss_search run --variants {v} --seeds 0 1 2 3 4 --results "
                                     f"results/{DECOY_FILE.name}`")
                _, m, sd, lo = study[0]
                val = mean_std([r["accuracy"]["val"] for r in rows if r["variant"] == v and r["seed"] in STUDY_SEEDS
                                and r["arithmetic"].startswith("native")])
                portable = summarise_decoys(rows, [v], STUDY_SEEDS, native=False)
                other = f"{portable[0][1]:.3f} ± {portable[0][2]:.3f}" if portable else f"{'–':<13}"
                lines.append(f"    {strategy:<8} val {val[0]:.3f} ± {val[1]:.3f}   test {m:.3f} ± {sd:.3f}   "
                             f"SSE4.1 test {other}   ({v})")
                means[strategy] = m
            gap = means["oracle"] - means["default"]
            methods = [k for k in means if k not in ("default", "oracle")]
            if methods and gap > 0.1:  # a gap worth closing: the default took the shortcut
                lines.append("    share of the default → oracle gap on test closed: " + ", ".join(
                    f"{k} {(means[k] - means['default']) / gap:.0%}" for k in methods))
    lines.append(f"\npublished (Ross et al. 2017, their MLP on DecoyMNIST, not computed here): test "
                 + ", ".join(f"{k} {v:.3f}" for k, v in PUBLISHED_DECOY_MNIST.items()))
    return "\n".join(lines)


def summarise_decoys(rows: list[dict[str, Any]], variants: Iterable[str], seeds: Iterable[int], native: bool = True
                     ) -> list[tuple[str, float, float, float]]:
    """``(variant, test mean, test std, worst val)`` over ``seeds`` for each variant run on all of them, natively
    (``native=False``: under the portable arithmetic, ``PORTABLE``)."""
    seeds = sorted(int(s) for s in seeds)
    out = []
    for v in variants:
        mine = {r["seed"]: r for r in rows if r["variant"] == v and r["seed"] in seeds
                and (r["arithmetic"].startswith("native") if native else r["arithmetic"] == PORTABLE)}
        if sorted(mine) != seeds:
            continue
        m, sd = mean_std([mine[s]["accuracy"]["test"] for s in seeds])
        out.append((v, m, sd, min(r["accuracy"]["val"] for r in mine.values())))
    return out


def format_summary(summary: list[dict[str, Any]]) -> str:
    lines = [f"{'variant':<26}{'arithmetic':<22}{'seeds':<18}{'test_swapped':>15}  {'per seed':<36}"
             f"{'min val':>8}{'min rand':>9}{'s/run':>7}"]
    for s in summary:
        lines.append(f"{s['variant']:<26}{s['arithmetic'][:21]:<22}{','.join(map(str, s['seeds'])):<18}"
                     f"{s['mean']:>8.3f} ± {s['std']:.3f}  {' '.join(f'{v:.3f}' for v in s['test_swapped']):<36}"
                     f"{s['min_val']:>8.3f}{s['min_test_random']:>9.3f}{s['seconds']:>7.0f}")
    return "\n".join(lines)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The README's table: each variant with runs, its ``test_swapped`` mean ± std (n) on the sweep
    seeds and on seeds 0-4, natively and under the portable arithmetic (``python -m utils.camloss_search table``)."""
    def cell(variant: str, seeds: Iterable[int], native: bool) -> str:
        seeds = set(seeds)
        mine = [r for r in rows if r["variant"] == variant and r["seed"] in seeds
                and r["arithmetic"].startswith("native") == native]
        if not mine:
            return ""
        s = summarise_results(mine)[0]
        return f"{s['mean']:.3f} ± {s['std']:.3f} ({len(s['seeds'])})"

    symbol, usual = {"lam": "λ", "sigma": "σ"}, {"lam": 10.0, "sigma": 0.3}
    lines = [f"| variant | architecture, map or mass, schedule, epochs (λ 10, σ 0.3 unless said) | sweep seeds {SWEEP_SEEDS[0]}–{SWEEP_SEEDS[-1]} (n) "
             f"| seeds 0–4, native | seeds 0–4, SSE4.1 |", "|---|---|---|---|---|"]
    for name, (strategy, fields) in VARIANTS.items():
        if not any(r["variant"] == name for r in rows):
            continue
        sweep = cell(name, SWEEP_SEEDS, True)
        extra = fields.get("extra", {})
        if strategy != "camloss":
            what = f"*{strategy}*: {fields['arch']}, {fields['epochs']}"
        else:
            mass = "positive CAM" if extra.get("map") == "positive_cam" else (
                "\\|d\\|" if extra.get("mass") == "abs" else "d²")
            what = f"{fields['arch']}, {mass}, {extra.get('schedule')}, {fields['epochs']}" + "".join(
                f", {symbol[k]} {extra[k]:g}" for k in ("lam", "sigma") if extra[k] != usual[k])
        lines.append(f"| `{name}` | {what} | {sweep} | {cell(name, STUDY_SEEDS, True)} | {cell(name, STUDY_SEEDS, False)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m utils.camloss_search", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train variants × seeds not yet in the results file, appending each")
    r.add_argument("--variants", nargs="+", default=list(VARIANTS), help=f"default: all ({', '.join(VARIANTS)})")
    r.add_argument("--seeds", nargs="+", type=int, default=list(SCREEN_SEEDS), help="default: the screening seeds")
    r.add_argument("--results", default=str(RESULTS_FILE))
    s = sub.add_parser("summary", help="mean ± std per variant and arithmetic, and the variant the rule chooses")
    s.add_argument("--seeds", nargs="+", type=int, default=None, help="only these seeds (default: all)")
    s.add_argument("--results", default=str(RESULTS_FILE))
    t = sub.add_parser("table", help="the README's markdown table of the search")
    t.add_argument("--results", default=str(RESULTS_FILE))
    v = sub.add_parser("views", help="the off-centre study: the study runs on the off-centre views (README, 05)")
    v.add_argument("--results", default=str(OFF_CENTRE_FILE))
    q = sub.add_parser("rrr", help="Right for the Right Reasons beside CAMLoss: its λ screen and the study seeds")
    q.add_argument("--results", default=str(RRR_FILE))
    dz = sub.add_parser("decoys", help="decoy digits: default, camloss, rrr and the control, beside the paper's")
    dz.add_argument("--results", default=str(DECOY_FILE))
    args = p.parse_args(argv)
    try:
        if args.command == "table":
            print(markdown_table(read_results(args.results)))
        elif args.command == "views":
            print(off_centre_table(args.results))
        elif args.command == "rrr":
            print(rrr_table(args.results))
        elif args.command == "decoys":
            print(decoy_table(args.results))
        elif args.command == "run":
            print(f"arithmetic: {arithmetic()}; appending to {args.results}", file=sys.stderr, flush=True)
            run_search(args.variants, args.seeds, args.results, log=lambda m: print(m, flush=True))
        else:
            rows = read_results(args.results)
            print(format_summary(summarise_results(rows, args.seeds)))
            print(f"\nchosen on the sweep seeds {SWEEP_SEEDS[0]}-{SWEEP_SEEDS[-1]} (natively) by the rule in `choose`: "
                  f"{choose(rows)}")
    except ValueError as e:
        p.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
