"""Benchmark ``xglacier.segment`` on a 4096x4096, 8-channel scene: peak memory and overhead.

Task: class probabilities (3 classes) of a 4096x4096 float32 feature cube with 8 channels
(512 MiB if held in memory) with 512x512 windows overlapping by 64 px (stride 448: 10 x 10
= 100 windows), 4 windows per model call, probabilities blended with the cosine ramps of
:func:`xglacier.segmentation.segment.blend_weight` and accumulated in float64.

Model (``--model``): ``unet-small`` (default) is ``xglacier.models.UNet(depth=3,
base_channels=8)`` (a real U-Net, 121k parameters), chosen so that one pass over the
scene takes about 45 s on one core; ``paper`` is the paper's preset (``depth=5,
base_channels=16``, 7.8M parameters, about 100 s per pass on one core, so the whole
benchmark takes about 10 minutes); ``conv`` is a 3-layer 3x3 convolution net (for when no
U-Net is available). Seeded weights, eval mode.

Methods, in one process (the model object is shared):

1. ``xglacier lazy input``: ``segment`` on a Dask-backed cube generated chunk by chunk
   (uniform random values, 512x512 chunks), computed with the threaded scheduler (2
   workers, torch 1 intra-op thread each). The input is never in memory as a whole: this
   is the peak-memory figure (target < 2 GB), including the computed output (probability
   200 MB + label 16 MB).
2. ``eager loop``: what a script does: the cube in memory as one NumPy array, a plain
   Python loop over the same 100 windows (NaN-padded at the right/bottom edges) in
   raster order, 4 windows stacked per model call under ``torch.inference_mode()``, each
   probability window multiplied by the same 2-D weight and added to float64 numerator
   and denominator arrays, then divided and argmax-ed.
3. ``xglacier in-memory``: ``segment`` on the same NumPy-backed DataArray (it builds the
   same Dask graph over the array and computes it).

Methods 2 and 3 are timed in two settings: ``1 core`` (torch 1 thread, Dask 1 worker: the
pure overhead of xglacier's wrapping) and ``2 cores`` (eager: torch 2 intra-op threads,
its only way to use the second core; xglacier: Dask 2 workers x torch 1 thread).
ratio = xglacier time / eager time (target <= 1.2); with ``--repeats N`` the two alternate
N times and each keeps its best time (the machine is shared: single timings vary by up to
2x). Peak memory is the process's resident set size sampled every 50 ms (the ``PeakRSS``
sampler of ``bench_pipeline_parvati.py``), above the RSS at the start of the step. Outputs
are compared (max abs difference of the probabilities; the batches differ, so float32
rounding may differ).

Run from the project root: ``python benchmarks/bench_segment.py`` (about 4 minutes on 2
cores with the default model; ``--size 1024`` for a quick check; ``--model paper
--lazy-only``: the paper's U-Net, lazy-input run only, about 2 minutes).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import time
from typing import Any

import dask
import dask.array as dsa
import numpy as np
import torch
import xarray as xr
from _common import PeakRSS
from torch import nn

import xglacier
from xglacier.segmentation.models import SegmentationModel
from xglacier.segmentation.segment import blend_weight, segment

CHANNELS = ["blue", "green", "red", "nir08", "swir16", "swir22", "ndsi", "dem"]
CLASSES = ["background", "clean_ice", "debris_covered_ice"]
TILE, OVERLAP, BATCH = 512, 64, 4


class SmallConv(SegmentationModel):
    """Fallback model: three 3x3 convolutions (8 -> 16 -> 16 -> classes)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.net = nn.Sequential(nn.Conv2d(len(self.channels), 16, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(16, len(self.classes), 3, padding=1))

    def forward(self, x):
        return self.net(x)


def make_model(kind: str) -> tuple[SegmentationModel, str]:
    torch.manual_seed(0)
    kw = {"channels": CHANNELS, "classes": CLASSES, "mean": [0.5] * 8, "std": [0.29] * 8}
    if kind == "conv":
        return SmallConv(**kw).eval(), "SmallConv (3 x 3x3 conv, 16 channels)"
    from xglacier.models import unet

    depth, base = (5, 16) if kind == "paper" else (3, 8)
    model = unet.UNet(depth=depth, base_channels=base, **kw).eval()
    return model, f"UNet(depth={depth}, base_channels={base})"


def eager_loop(arr: np.ndarray, model: SegmentationModel, tile: int, overlap: int,
               batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The competitor: a plain loop over the windows of an in-memory cube, same blend."""
    c, ny, nx = arr.shape
    k = len(model.classes)
    stride = tile - overlap
    starts = [(y0, x0) for y0 in range(0, ny, stride) for x0 in range(0, nx, stride)]
    w1 = blend_weight(tile, overlap)
    weight = np.outer(w1, w1)
    num = np.zeros((k, ny, nx), np.float64)
    den = np.zeros((ny, nx), np.float64)
    for i in range(0, len(starts), batch_size):
        group = starts[i:i + batch_size]
        batch = np.full((len(group), c, tile, tile), np.nan, np.float32)
        for j, (y0, x0) in enumerate(group):
            win = arr[:, y0:y0 + tile, x0:x0 + tile]
            batch[j, :, :win.shape[1], :win.shape[2]] = win
        with torch.inference_mode():
            prob = model.predict_proba(torch.from_numpy(batch)).numpy()
        for (y0, x0), p in zip(group, prob, strict=True):
            h, w = min(tile, ny - y0), min(tile, nx - x0)
            num[:, y0:y0 + h, x0:x0 + w] += p[:, :h, :w] * weight[:h, :w]
            den[y0:y0 + h, x0:x0 + w] += weight[:h, :w]
    prob = (num / den).astype(np.float32)
    return prob, prob.argmax(0).astype(np.uint8)


def lazy_cube(n: int) -> xr.DataArray:
    data = dsa.random.default_rng(0).random((len(CHANNELS), n, n), dtype=np.float32,
                                            chunks=(len(CHANNELS), 512, 512))
    return xr.DataArray(data, dims=("channel", "y", "x"), name="features",
                        coords={"channel": CHANNELS, "y": 3.5e6 - 30.0 * np.arange(n),
                                "x": 4.0e5 + 30.0 * np.arange(n)})


def run_xglacier(features: xr.DataArray, model: SegmentationModel, workers: int) -> tuple[float, float, Any]:
    torch.set_num_threads(1)
    with dask.config.set(scheduler="threads", num_workers=workers), PeakRSS() as mem:
        t0 = time.perf_counter()
        out = segment(features, model, tile=TILE, overlap=OVERLAP, batch_size=BATCH)
        prob, label = dask.compute(out.probability.data, out.label.data)
        elapsed = time.perf_counter() - t0
    return elapsed, (mem.peak - mem.base) / 1e9, (prob, label)


def run_eager(arr: np.ndarray, model: SegmentationModel, threads: int) -> tuple[float, float, Any]:
    torch.set_num_threads(threads)
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        result = eager_loop(arr, model, TILE, OVERLAP, BATCH)
        elapsed = time.perf_counter() - t0
    return elapsed, (mem.peak - mem.base) / 1e9, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="scene size in pixels (default 4096)")
    parser.add_argument("--model", choices=["unet-small", "paper", "conv"], default="unet-small")
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds of eager / in-memory xglacier per setting; best time kept")
    parser.add_argument("--lazy-only", action="store_true",
                        help="only the lazy-input xglacier run (peak memory), no eager comparison")
    args = parser.parse_args()
    n = args.size
    model, desc = make_model(args.model)
    print(f"bench_segment  {dt.datetime.now().isoformat(timespec='seconds')}  {platform.machine()}  "
          f"{os.cpu_count()} cores  python {platform.python_version()}  load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"xglacier {xglacier.__version__}  numpy {np.__version__}  dask {dask.__version__}  "
          f"xarray {xr.__version__}  torch {torch.__version__}")
    n_win = len(range(0, n, TILE - OVERLAP)) ** 2
    print(f"scene {n}x{n}, {len(CHANNELS)} channels float32 ({len(CHANNELS) * n * n * 4 / 2**20:.0f} MiB); "
          f"model {desc}, {model.n_parameters():,} parameters; tile {TILE}, overlap {OVERLAP}, "
          f"batch_size {BATCH}: {n_win} windows")

    # warm-up (torch kernels, imports) on a small scene, not timed
    small = lazy_cube(1024).compute()
    run_xglacier(small, model, 2)
    run_eager(small.values, model, 1)
    del small

    cube = lazy_cube(n)
    t_lazy, m_lazy, (p_lazy, _) = run_xglacier(cube, model, 2)
    print(f"\nxglacier lazy input (2 workers x 1 torch thread): {t_lazy:7.1f} s   peak RSS "
          f"+{m_lazy:5.2f} GB (input generated chunk by chunk, output computed into memory)")
    if args.lazy_only:
        print(f"peak memory < 2 GB with a lazy input: {'MET' if m_lazy < 2 else 'NOT MET'}")
        return

    t0 = time.perf_counter()
    arr = cube.values
    in_memory = cube.copy(data=arr)
    print(f"(input materialised in memory: {arr.nbytes / 2**20:.0f} MiB in {time.perf_counter() - t0:.1f} s, "
          "not timed below)")

    rows = []
    diff_lazy = float("nan")
    for setting, eager_threads, workers in (("1 core", 1, 1), ("2 cores", 2, 2)):
        best = None
        for _ in range(args.repeats):  # alternate, keep each method's best time
            t_e, m_e, (p_e, l_e) = run_eager(arr, model, eager_threads)
            t_x, m_x, (p_x, l_x) = run_xglacier(in_memory, model, workers)
            diff = float(np.abs(p_x - p_e).max())
            agree = float((l_x == l_e).mean())
            if p_lazy is not None:
                diff_lazy = float(np.abs(p_lazy - p_e).max())
                p_lazy = None
            del p_e, l_e, p_x, l_x
            run = (setting, t_e, m_e, t_x, m_x, diff, agree)
            best = run if best is None else (setting, min(best[1], t_e), max(best[2], m_e), min(best[3], t_x),
                                            max(best[4], m_x), max(best[5], diff), min(best[6], agree))
        rows.append(best)

    print(f"\n{'setting':<9} {'eager s':>8} {'eager GB':>9} {'xglacier s':>11} {'xglacier GB':>12} "
          f"{'ratio':>6} {'max |dp|':>9} {'labels equal':>12}")
    for setting, t_e, m_e, t_x, m_x, diff, agree in rows:
        print(f"{setting:<9} {t_e:8.1f} {m_e:9.2f} {t_x:11.1f} {m_x:12.2f} {t_x / t_e:6.3f} {diff:9.2e} "
              f"{agree:12.6f}")
    print(f"(lazy-input xglacier run vs eager loop: max |dp| {diff_lazy:.2e})")
    ratio_1 = rows[0][3] / rows[0][1]
    ratio_2 = rows[1][3] / rows[1][1]
    print(f"\n=== Targets: peak memory < 2 GB with a lazy input; xglacier / eager time <= 1.2 ===\n"
          f"peak memory, lazy input: {'MET' if m_lazy < 2 else 'NOT MET'} ({m_lazy:.2f} GB above the "
          f"process's RSS before the step)\n"
          f"time ratio, 1 core: {'MET' if ratio_1 <= 1.2 else 'NOT MET'} ({ratio_1:.3f}); "
          f"2 cores: {'MET' if ratio_2 <= 1.2 else 'NOT MET'} ({ratio_2:.3f})")
    print(f"max RSS of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
