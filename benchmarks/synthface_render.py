"""synthface renderer throughput (goal: >= 200 images/s on 2 cores). Not a test.

In one run: images/s of `render_face` in one process, then with one process per core (what
`facegen synthface render --workers 2` does with Ray actors), and the ratio to the goal.

    .venv/bin/python benchmarks/synthface_render.py [--images 800] [--size 64]
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor


def _render_range(args: tuple[int, int, int]) -> int:
    from facegen.synthface.dataset import RenderConfig, spec_from_row, spec_row
    from facegen.synthface.render import render_face

    start, stop, size = args
    config = RenderConfig("bench", stop, 100)
    for i in range(start, stop):
        render_face(spec_from_row(spec_row(i, config)), size)
    return stop - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=800)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    _render_range((0, 20, args.size))  # warm caches (topology, deformation basis)

    t0 = time.perf_counter()
    _render_range((0, args.images, args.size))
    one = args.images / (time.perf_counter() - t0)

    cores = os.cpu_count() or 1
    chunks = [(i * args.images // cores, (i + 1) * args.images // cores, args.size) for i in range(cores)]
    with ProcessPoolExecutor(cores) as pool:
        list(pool.map(_render_range, [(0, 10, args.size)] * cores))  # start + warm the workers
        t0 = time.perf_counter()
        done = sum(pool.map(_render_range, chunks))
        many = done / (time.perf_counter() - t0)
    print(f"render_face {args.size}px, 1 process : {one:7.1f} images/s ({1000 / one:.2f} ms/image)")
    print(f"render_face {args.size}px, {cores} processes: {many:7.1f} images/s")
    print(f"ratio to the 200 images/s goal: {many / 200:.2f}   (scaling {many / one:.2f}x on {cores} cores)")


if __name__ == "__main__":
    main()
