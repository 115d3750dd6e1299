"""Check the two properties that define the scenario (docs/design.md, section 3), with the real training code.

1. *Shortcut taken*: the ``default`` model reaches >= 0.97 on ``val`` and
   ``test_iid`` and <= 0.70 on ``test_swapped`` (mean over the seeds).
2. *Object learnable*: the ``oracle`` (same architecture and loss,
   class-independent backgrounds) reaches >= 0.90 on ``test_swapped``.

``python -m utils.scenario [--seeds 0 1 2] [--epochs E]`` trains both strategies
for every seed (about 35 s each on 2 CPU cores), prints a table and exits with
status 1 if a property fails. The generator may be tuned against these
properties only — never against the CAMLoss result.
"""
from __future__ import annotations

import argparse
import statistics
import sys

from .data import SPLITS
from .train import TrainConfig, train

SHORTCUT_MIN_IID, SHORTCUT_MAX_SWAPPED, ORACLE_MIN_SWAPPED = 0.97, 0.70, 0.90


def check_scenario(seeds: tuple[int, ...] = (0, 1, 2), progress: bool = False, **config) -> dict:
    """Train default and oracle for each seed; return accuracies, means and the verdict per property."""
    runs: dict[str, list[dict[str, float]]] = {"default": [], "oracle": []}
    for strategy in runs:
        for seed in seeds:
            runs[strategy].append(train(TrainConfig(strategy=strategy, seed=seed, **config), progress=progress).accuracy)
    mean = {s: {k: statistics.fmean(r[k] for r in runs[s]) for k in ("train",) + SPLITS[1:]} for s in runs}
    d, o = mean["default"], mean["oracle"]
    checks = {
        f"default val >= {SHORTCUT_MIN_IID}": d["val"] >= SHORTCUT_MIN_IID,
        f"default test_iid >= {SHORTCUT_MIN_IID}": d["test_iid"] >= SHORTCUT_MIN_IID,
        f"default test_swapped <= {SHORTCUT_MAX_SWAPPED}": d["test_swapped"] <= SHORTCUT_MAX_SWAPPED,
        f"oracle test_swapped >= {ORACLE_MIN_SWAPPED}": o["test_swapped"] >= ORACLE_MIN_SWAPPED,
    }
    return {"seeds": list(seeds), "runs": runs, "mean": mean, "checks": checks}


def accuracy_table(rows: list[tuple[str, object, dict[str, float]]]) -> list[str]:
    """Lines of a table: one row per ``(model, seed, accuracy per split)``, a column per split."""
    cols = ("train",) + SPLITS[1:]
    lines = [f"{'model':<10}{'seed':>6}" + "".join(f"{c:>14}" for c in cols)]
    return lines + [f"{name:<10}{seed:>6}" + "".join(f"{acc[c]:>14.3f}" for c in cols) for name, seed, acc in rows]


def format_report(report: dict) -> str:
    rows = []
    for strategy, runs in report["runs"].items():
        rows += [(strategy, seed, acc) for seed, acc in zip(report["seeds"], runs)]
        rows.append((strategy, "mean", report["mean"][strategy]))
    lines = accuracy_table(rows) + [""]
    lines += [f"[{'ok' if ok else 'FAIL'}] {name} (mean of {len(report['seeds'])} seeds)"
              for name, ok in report["checks"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m utils.scenario", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    args = p.parse_args(argv)
    report = check_scenario(tuple(args.seeds), progress=False, epochs=args.epochs)
    print(format_report(report))
    return 0 if all(report["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
