"""Benchmarks: measured here, never asserted in the test suite (timings depend on the machine).

``python -m utils.benchmark [--only SECTION ...] [--repeats R]`` prints one table per
section with the median of ``R`` runs after a warm-up and whether each target is met.

Sections:
  * ``data`` — drawing the embedded dataset: 3,000 images at 64 px (target: ≤ 10 s
    on 2 cores, DESIGN.md section 3), and the same per image at 192 px.

The explanation methods (ratios against grad-cam/Captum and against one
forward+backward pass) are added here as sections of their own.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

from .data import load_split

Row = tuple[str, str, str]  # what, measured, target verdict


def _median_seconds(fn: Callable[[], object], repeats: int, warmup: Callable[[], object] | None = None) -> float:
    (warmup or fn)()  # warm-up (imports, allocator, caches)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_data(repeats: int) -> list[Row]:
    def draw(n: int, size: int) -> Callable[[], object]:
        return lambda: load_split("train", n, size)

    total = _median_seconds(draw(3000, 64), repeats, warmup=draw(50, 64))  # the real thing, stacked tensors
    per_image_64 = total / 3000
    per_image_192 = _median_seconds(draw(100, 192), repeats) / 100
    return [
        ("3,000 images at 64 px (load_split)", f"{total:.1f} s", f"≤ 10 s: {'met' if total <= 10 else 'NOT met'}"),
        ("one image at 64 px", f"{1000 * per_image_64:.2f} ms", ""),
        ("one image at 192 px", f"{1000 * per_image_192:.2f} ms",
         f"{per_image_192 / per_image_64:.1f}× the 64 px cost (9× the pixels)"),
    ]


SECTIONS: dict[str, Callable[[int], list[Row]]] = {"data": bench_data}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m utils.benchmark", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    for name in args.only:
        rows = SECTIONS[name](args.repeats)
        w = [max(len(r[i]) for r in rows) for i in range(3)]
        print(f"\n[{name}] median of {args.repeats} runs after a warm-up")
        for r in rows:
            print(f"  {r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
