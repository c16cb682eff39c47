"""Lazy preprocessing of the Parvati-size synthetic cube: time and peak memory.

The ``preset="parvati"`` cube (800x800 px, about 260 scenes, 4.2 GB of bands if held in
memory) goes through filter -> cloud mask -> gap fill -> NDSI -> 3-month composites, twice
in one process:

1. xglacier, lazily, computed with the threaded Dask scheduler;
2. the eager way research code does it: load the two bands the paper uses into memory,
   then run the same xglacier functions on NumPy arrays.

It prints wall time and the peak resident memory of each step (from the OS, so Dask's
threads and NumPy buffers are all counted) and checks that both give identical composites.

Run: ``python benchmarks/bench_pipeline_parvati.py [--scenes N]``
"""

from __future__ import annotations

import argparse
import resource
import time

import dask
import numpy as np
from _common import PeakRSS

import xglacier


def pipeline(cube):
    kept = xglacier.filter_scenes(cube, max_cloud=20, max_missing=0.5)
    nd = xglacier.ndsi(xglacier.fill_gaps(xglacier.mask_clouds(kept)))
    return xglacier.composite(nd, freq="3MS"), kept.sizes["time"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=None,
                        help="use only the first N scenes (default: all)")
    args = parser.parse_args()
    cube, _ = xglacier.synthetic_cube(preset="parvati")
    cube = cube[["green", "swir16", "qa_pixel"]]
    if args.scenes:
        cube = cube.isel(time=slice(0, args.scenes))
    gb = cube.nbytes / 1e9
    print(f"parvati preset: {cube.sizes['time']} scenes of 800x800, green+swir16+qa_pixel "
          f"= {gb:.2f} GB in memory; {dask.system.CPU_COUNT} cores")

    with dask.config.set(scheduler="threads"), PeakRSS() as mem:
        t0 = time.perf_counter()
        comp, kept = pipeline(cube)
        lazy = comp.compute()
        t_lazy = time.perf_counter() - t0
    print(f"xglacier lazy : {t_lazy:7.1f} s   peak RSS +{(mem.peak - mem.base) / 1e9:5.2f} GB   "
          f"({kept} scenes kept, {lazy.sizes['time']} quarters)")

    with dask.config.set(scheduler="threads"), PeakRSS() as mem:
        t0 = time.perf_counter()
        loaded = cube.compute()
        comp_e, _ = pipeline(loaded)
        eager = comp_e.compute()
        t_eager = time.perf_counter() - t0
    print(f"eager (loaded): {t_eager:7.1f} s   peak RSS +{(mem.peak - mem.base) / 1e9:5.2f} GB")
    same = np.array_equal(lazy.values, eager.values, equal_nan=True)
    print(f"identical composites: {same}")
    print(f"max RSS of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
