"""The course's headline in one command: does CAMLoss take the model off the background shortcut?

Trains (or loads from ``data/models/headline/``, if trained with the same config) the
``default`` model, the ``camloss`` model with its default options, and the
``oracle`` (same network, class-independent backgrounds: the ceiling) on one
seed, and prints their accuracy on every split. All three share the camloss
strategy's architecture and number of epochs, so only the loss and the training
backgrounds differ. ``test_swapped`` (leopards at
sea, orcas on land) is the split that tells: the default model fails it, the
oracle passes it; notebook 05 studies camloss over several seeds.

    python -m utils.headline [--seed 0] [--strategies default camloss oracle]

About 25 s per model on 2 CPU cores (the README's install command runs it).
The models notebooks 01-04 explain are not touched: they ship in ``models/``.
"""
from __future__ import annotations

import argparse
import sys

from .scenario import accuracy_table
from .train import DEFAULT_MODELS_DIR, STRATEGIES, TrainConfig, load_or_train, pick_device

__all__ = ["headline", "shared_config", "HEADLINE_STRATEGIES", "HEADLINE_DIR"]

#: The models the headline compares: the shortcut, the method, the ceiling.
HEADLINE_STRATEGIES = ("default", "camloss", "oracle")
#: Where its models are kept (not ``data/models/`` itself, where ``python -m utils.train`` writes the same names).
HEADLINE_DIR = DEFAULT_MODELS_DIR / "headline"


def headline(seed: int = 0, strategies: tuple[str, ...] = HEADLINE_STRATEGIES,
             progress: bool = False) -> dict[str, dict[str, float]]:
    """Accuracy per split of each strategy's model at ``seed`` (CPU configuration, 64 px).

    Every strategy trains on the camloss default's architecture and epochs (:func:`shared_config`).
    An unknown strategy is refused by :class:`~utils.train.TrainConfig` with the list of valid ones.
    """
    return {s: load_or_train(s, seed=seed, models_dir=HEADLINE_DIR, progress=progress, **shared_config())[1]["accuracy"]
            for s in strategies}


def shared_config() -> dict[str, object]:
    """The fields the three models share: the camloss strategy's architecture and epochs."""
    camloss = TrainConfig(strategy="camloss")
    return {"arch": camloss.arch, "epochs": camloss.epochs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m utils.headline", description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument("--strategies", nargs="+", default=list(HEADLINE_STRATEGIES), choices=list(STRATEGIES))
    p.add_argument("--quiet", action="store_true", help="no progress bars or lines")
    args = p.parse_args(argv)
    shared = shared_config()
    print(f"training (or loading from {HEADLINE_DIR}) {', '.join(args.strategies)} at seed {args.seed} "
          f"on {pick_device()}, {shared['arch']} architecture, {shared['epochs']} epochs ...", file=sys.stderr, flush=True)
    results = headline(args.seed, tuple(args.strategies), progress=not args.quiet)
    print("\n".join(accuracy_table([(s, args.seed, acc) for s, acc in results.items()])))
    print("\ntest_swapped = leopards at sea, orcas on land: the background misleads; 0.5 is chance.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
