"""Benchmark the patch engine (``xglacier.patches(...).to_torch``) against xbatcher.

Task: iterate every training sample of a Parvati-size cube (36 quarterly composites of
800x800 px; 50x50 patches every 10 px; 4 input frames -> 4 target frames, i.e. 29 time
windows x 76 x 76 positions = 167,504 samples) as float32 torch batches of 100: inputs
``(100, 4, 50, 50)`` and targets ``(100, 4, 50, 50)``.

The cube is a smooth random field (a fixed spatial pattern, a seasonal cycle and
low-passed noise per frame, NDSI-like values in -1..1) on a quarterly time axis, held as
a Dask array of in-memory ``(1, 800, 800)`` chunks, as a persisted preprocessing pipeline
gives it. (The NDSI composites of ``synthetic_cube(preset="parvati")`` take minutes to
compute and give 35 quarters; gathering speed does not depend on the values.)

What is compared, in one process, on the same cube:

* ``xglacier``: ``ps = xglacier.patches(da, size=50, stride=10, n_in=4, n_out=4)`` on the
  Dask-backed DataArray, then ``for x, y in ps.to_torch(batch_size=100)`` over every sample.
  Run 1 starts from a fresh PatchSet, so it includes the one-time load of the cube into
  memory (also timed on its own); runs 2-3 reuse the loaded cube. The peak resident memory
  of the process is sampled every 10 ms in a thread (psutil) during run 1, and the Python
  allocations of a pass over 300 batches are traced with ``tracemalloc``.
* ``xbatcher`` 0.4.0: ``BatchGenerator(da, input_dims={"time": 8, "y": 50, "x": 50},
  input_overlap={"time": 7, "y": 40, "x": 40})`` (windows step 1 frame in time and 10 px in
  space, the same 167,504 windows in the same order), one 8-frame window per generator
  item; 100 consecutive windows are stacked, split into 4 inputs + 4 targets and turned
  into torch tensors. On the Dask-backed cube each window is a small Dask computation
  (about 1 ms or more each), so only a subset is timed (``--xb-samples``, two equal blocks:
  from the first sample and from the middle of the set) and the per-sample time is
  extrapolated to the full set; on the NumPy-backed (loaded) cube the full set is timed.
  Also reported, on subsets: xbatcher's own torch adapter (``xbatcher.loaders.torch
  .MapDataset`` in a ``torch.utils.data.DataLoader(batch_size=100)``) on the NumPy cube, and
  ``concat_input_dims=True`` (100 windows per generator item; on a Dask-backed *DataArray*
  xbatcher 0.4.0 raises "truth value of an Array is ambiguous", so the DataArray is wrapped
  in a Dataset, as the workaround is).

Samples are checked to be equal: windows of xbatcher (Dask and NumPy cube) are matched to
xglacier samples by their origin ``(t0, y0, x0)`` (read from the window's coordinates)
and compared exactly.

Ratio = xbatcher seconds per sample / xglacier seconds per sample, both over the full set
including one-time costs (xglacier: building the plan and loading the cube; xbatcher:
building the generator); ``iter ratio`` compares the iteration alone.

Run from the project root: ``python benchmarks/bench_patches.py`` (about 4 minutes on 2
cores; ``--quick``: a 400x400 cube and 1,000 xbatcher samples, well under a minute).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from importlib.metadata import version

import dask
import dask.array as dsa
import numba
import numpy as np
import pandas as pd
import psutil
import torch
import xarray as xr
import xbatcher
from _common import PeakRSS, lowpass
from xbatcher.loaders.torch import MapDataset

import xglacier

SIZE, STRIDE, N_IN, N_OUT, BATCH = 50, 10, 4, 4, 100
XB_DIMS = {"time": N_IN + N_OUT, "y": SIZE, "x": SIZE}
XB_OVERLAP = {"time": N_IN + N_OUT - 1, "y": SIZE - STRIDE, "x": SIZE - STRIDE}
# glibc: keep freed memory in the process instead of returning it to the OS (which makes
# every fresh batch buffer page-fault again); only for the informational child run
MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": "2000000000", "MALLOC_MMAP_THRESHOLD_": "2000000000"}


# --------------------------------------------------------------------------- helpers

def smooth_cube(nt: int, n: int, seed: int = 0) -> np.ndarray:
    """(nt, n, n) float32 NDSI-like field: fixed pattern + seasonal cycle + smooth noise."""
    rng = np.random.default_rng(seed)
    base = lowpass(rng, (n, n), 40)
    cube = np.empty((nt, n, n), np.float32)
    for t in range(nt):
        season = np.cos(2 * np.pi * t / 4)  # quarterly frames: one cycle every 4
        frame = 0.35 * base + 0.25 * season + 0.1 * lowpass(rng, (n, n), 6)
        cube[t] = np.clip(frame, -1, 1)
    return cube


def as_dataarray(cube: np.ndarray, dask_backed: bool) -> xr.DataArray:
    nt, ny, nx = cube.shape
    data = dsa.from_array(cube, chunks=(1, ny, nx)) if dask_backed else cube
    return xr.DataArray(
        data, dims=("time", "y", "x"), name="ndsi",
        coords={"time": pd.date_range("2013-01-01", periods=nt, freq="3MS"),
                "y": 3568095.0 - 30.0 * np.arange(ny), "x": 734475.0 + 30.0 * np.arange(nx)},
    )


def window_origin(win: xr.DataArray | xr.Dataset, like: xr.DataArray) -> tuple[int, int, int]:
    """(t0, y0, x0) of an xbatcher window, from its first time / y / x coordinates."""
    return tuple(int(like.indexes[d].get_loc(win[d].values[0])) for d in ("time", "y", "x"))


# --------------------------------------------------------------------------- methods
def run_xglacier(da: xr.DataArray, ps: xglacier.PatchSet | None = None) -> dict:
    """Iterate every sample as torch batches; a fresh PatchSet includes the cube load."""
    t0 = time.perf_counter()
    fresh = ps is None
    if fresh:
        ps = xglacier.patches(da, size=SIZE, stride=STRIDE, n_in=N_IN, n_out=N_OUT)
        ps.load()
    t_setup = time.perf_counter() - t0
    n = 0
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t1 = time.perf_counter()
    for x, y in ps.to_torch(batch_size=BATCH):
        assert x.dtype == torch.float32 and x.shape[1:] == (N_IN, SIZE, SIZE)
        assert y.shape[1:] == (N_OUT, SIZE, SIZE)
        n += x.shape[0]
    t_iter = time.perf_counter() - t1
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    assert n == len(ps)
    return {"ps": ps, "setup": t_setup, "iter": t_iter, "n": n,
            "user": ru1.ru_utime - ru0.ru_utime, "sys": ru1.ru_stime - ru0.ru_stime,
            "minflt": ru1.ru_minflt - ru0.ru_minflt}


def xb_batches(gen: xbatcher.BatchGenerator, index: range):
    """Torch batches of ``BATCH`` consecutive xbatcher windows, split into inputs/targets."""
    for k in range(index.start, index.stop, BATCH):
        stop = min(k + BATCH, index.stop)
        arr = np.stack([np.asarray(gen[i].values, np.float32) for i in range(k, stop)])
        yield (torch.from_numpy(np.ascontiguousarray(arr[:, :N_IN])),
               torch.from_numpy(np.ascontiguousarray(arr[:, N_IN:])))


def run_xbatcher(da: xr.DataArray, blocks: list[range]) -> dict:
    """Build the generator, then iterate the windows of ``blocks`` as torch batches."""
    t0 = time.perf_counter()
    gen = xbatcher.BatchGenerator(da, input_dims=XB_DIMS, input_overlap=XB_OVERLAP)
    t_setup = time.perf_counter() - t0
    n, per_block = 0, []
    for block in blocks:
        t1 = time.perf_counter()
        m = 0
        for x, y in xb_batches(gen, block):
            assert x.shape[1:] == (N_IN, SIZE, SIZE) and y.shape[1:] == (N_OUT, SIZE, SIZE)
            m += x.shape[0]
        per_block.append((block, time.perf_counter() - t1))
        n += m
    return {"gen": gen, "setup": t_setup, "iter": sum(t for _, t in per_block), "n": n,
            "blocks": per_block, "total_windows": len(gen)}


def run_mapdataset(gen: xbatcher.BatchGenerator, n: int) -> tuple[float, int]:
    """xbatcher's own torch adapter in a DataLoader: seconds for the first ``n`` windows."""
    loader = torch.utils.data.DataLoader(MapDataset(gen), batch_size=BATCH, shuffle=False)
    t0 = time.perf_counter()
    seen = 0
    for b in loader:
        x, y = b[:, :N_IN].contiguous(), b[:, N_IN:].contiguous()
        assert y.shape[1] == N_OUT
        seen += x.shape[0]
        if seen >= n:
            break
    return time.perf_counter() - t0, seen


def run_concat(da_dask: xr.DataArray, nbatch: int) -> tuple[float, int, str]:
    """``concat_input_dims=True``: one generator item = 10 x 10 windows of one time window."""
    span = SIZE + 9 * STRIDE  # 10 window positions per axis: 100 windows per item
    tiny = da_dask.isel(time=slice(0, N_IN + N_OUT), y=slice(0, span), x=slice(0, span))
    try:
        xbatcher.BatchGenerator(tiny, input_dims=XB_DIMS, input_overlap=XB_OVERLAP,
                                concat_input_dims=True)[0]
        err = "no error"
    except ValueError as e:
        err = f"{type(e).__name__}: {e}"
    t0 = time.perf_counter()
    n = 0
    ny = da_dask.sizes["y"]
    for b in range(nbatch):
        t, y0 = b % 29, (b * span) % (ny - span + 1)
        sub = da_dask.isel(time=slice(t, t + N_IN + N_OUT), y=slice(y0, y0 + span),
                           x=slice(0, span)).to_dataset()
        gen = xbatcher.BatchGenerator(sub, input_dims=XB_DIMS, input_overlap=XB_OVERLAP,
                                      concat_input_dims=True)
        item = gen[0]["ndsi"].values  # (input_batch, time_input, y_input, x_input)
        x = torch.from_numpy(np.ascontiguousarray(item[:, :N_IN]))
        y = torch.from_numpy(np.ascontiguousarray(item[:, N_IN:]))
        n += x.shape[0] if y.shape[0] == x.shape[0] else 0
    return time.perf_counter() - t0, n, err


def check_same(ps: xglacier.PatchSet, gens: dict[str, xbatcher.BatchGenerator],
               like: xr.DataArray, k: int, seed: int) -> dict:
    """Compare ``k`` windows (random, plus first and last) of each generator with xglacier."""
    n = len(ps)
    rng = np.random.default_rng(seed)
    picks = np.unique(np.concatenate([[0, n - 1], rng.choice(n, k, replace=False)]))
    lookup = {tuple(s): i for i, s in enumerate(ps.plan.samples.tolist())}
    out = {}
    for name, gen in gens.items():
        equal = same_order = True
        for i in picks.tolist():
            win = gen[i]
            origin = window_origin(win, like)
            j = lookup[origin]
            same_order &= j == i
            x, y = ps.gather([j])
            arr = np.asarray(win.values, np.float32)
            equal &= np.array_equal(arr[:N_IN], x[0]) and np.array_equal(arr[N_IN:], y[0])
        out[name] = (equal, same_order)
    return {"picks": len(picks), "results": out}


def traced_peak(ps: xglacier.PatchSet, nbatch: int) -> float:
    """Peak of Python-traced allocations (MB) while iterating ``nbatch`` batches."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    for k, (x, y) in enumerate(ps.to_torch(batch_size=BATCH)):
        del x, y
        if k + 1 >= nbatch:
            break
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1e6


def child(args: argparse.Namespace) -> int:
    """xglacier (and xbatcher on the NumPy cube, a subset) in a process started with
    glibc's malloc trim / mmap thresholds raised (see ``MALLOC_ENV``): prints one JSON line."""
    da = as_dataarray(smooth_cube(args.frames, args.n, args.seed), dask_backed=True)
    run_xglacier(as_dataarray(smooth_cube(N_IN + N_OUT, 64, 1), dask_backed=True))
    r1 = run_xglacier(da)
    best = min([r1["iter"]] + [run_xglacier(da, r1["ps"])["iter"] for _ in range(2)])
    m = min(r1["n"], args.xb_numpy_samples or 20000)
    xn = run_xbatcher(da.compute(), [range(0, m)])
    print(json.dumps({"full": r1["setup"] + r1["iter"], "iter": best, "n": r1["n"],
                      "minflt": r1["minflt"], "user": r1["user"], "sys": r1["sys"],
                      "xn_setup": xn["setup"], "xn_iter": xn["iter"], "xn_n": xn["n"]}))
    return 0


def run_child(args: argparse.Namespace) -> dict | None:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--n", str(args.n),
           "--frames", str(args.frames), "--seed", str(args.seed),
           "--xb-numpy-samples", str(args.child_xb_samples)]
    res = subprocess.run(cmd, env={**os.environ, **MALLOC_ENV}, capture_output=True, text=True,
                         check=False)
    if res.returncode:
        print(f"(malloc-tuned child failed: {res.stderr.strip().splitlines()[-1:]})")
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="400x400 cube, 1,000 xbatcher samples (Dask), 20,000 (NumPy)")
    parser.add_argument("--n", type=int, default=800, help="cube side (pixels)")
    parser.add_argument("--frames", type=int, default=36, help="quarterly composites")
    parser.add_argument("--xb-samples", type=int, default=5000,
                        help="xbatcher windows timed on the Dask cube (two equal blocks)")
    parser.add_argument("--xb-numpy-samples", type=int, default=0,
                        help="xbatcher windows timed on the NumPy cube (0: all)")
    parser.add_argument("--check", type=int, default=64, help="random windows compared")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child-xb-samples", type=int, default=20000,
                        help="xbatcher windows (NumPy cube) timed in the malloc-tuned child")
    parser.add_argument("--no-child", action="store_true", help="skip the malloc-tuned child run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    if args.quick:
        args.n, args.xb_samples = 400, 1000
        args.xb_numpy_samples = args.xb_numpy_samples or 20000

    print(f"bench_patches  {dt.datetime.now().isoformat(timespec='seconds')}  "
          f"{platform.machine()}  {os.cpu_count()} cores  python {platform.python_version()}  "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"xglacier {xglacier.__version__}  xbatcher {version('xbatcher')}  numpy {np.__version__}"
          f"  numba {numba.__version__}  dask {dask.__version__}  xarray {xr.__version__}  "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)")

    t0 = time.perf_counter()
    cube = smooth_cube(args.frames, args.n, args.seed)
    t_make = time.perf_counter() - t0
    da = as_dataarray(cube, dask_backed=True)
    print(f"\n=== Cube ===\nsmooth random field {cube.shape} float32 ({cube.nbytes / 1e6:.0f} MB), "
          f"quarterly {da.time.dt.strftime('%Y-%m').values[0]} .. "
          f"{da.time.dt.strftime('%Y-%m').values[-1]}, made in {t_make:.1f} s (not timed below);")
    print(f"Dask-backed DataArray of in-memory chunks {da.data.chunksize} "
          f"({da.data.npartitions} chunks), like a persisted pipeline output")

    # warm-up: compile / load the Numba kernel, import torch paths, on a tiny cube
    tiny = as_dataarray(smooth_cube(N_IN + N_OUT, 64, 1), dask_backed=True)
    run_xglacier(tiny)

    # --- xglacier: run 1 from a fresh PatchSet (includes the load), then 2 more
    base_rss = psutil.Process().memory_info().rss
    with PeakRSS(interval=0.01) as mem:
        r1 = run_xglacier(da)
    ps = r1["ps"]
    runs = [run_xglacier(da, ps) for _ in range(2)]
    t_iter_best = min([r1["iter"]] + [r["iter"] for r in runs])
    n = r1["n"]
    tm_peak = traced_peak(ps, 300)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB -> GB
    windows = n // (len(np.unique(ps.plan.samples[:, 1])) ** 2)
    npos = len(np.unique(ps.plan.samples[:, 1]))
    print(f"samples: {n} ({windows} time windows x {npos} x {npos} positions), "
          f"{-(-n // BATCH)} torch batches of {BATCH}")

    # --- xbatcher, Dask-backed: a subset of two blocks
    half = max(BATCH, args.xb_samples // 2 // BATCH * BATCH)
    mid = n // 2 // BATCH * BATCH
    blocks = [range(0, half), range(mid, mid + half)]
    with PeakRSS(interval=0.01) as mem_xd:
        xd = run_xbatcher(da, blocks)
    assert xd["total_windows"] == n, (xd["total_windows"], n)

    # --- xbatcher, NumPy-backed (the cube loaded first; load not counted)
    da_np = da.compute()
    n_np = n if args.xb_numpy_samples in (0, None) else min(n, args.xb_numpy_samples)
    with PeakRSS(interval=0.01) as mem_xn:
        xn = run_xbatcher(da_np, [range(0, n_np)])
    t_md, n_md = run_mapdataset(xn["gen"], min(2000, n_np))
    t_cc, n_cc, cc_err = run_concat(da, 10 if not args.quick else 4)

    # --- same samples?
    chk = check_same(ps, {"xbatcher (Dask cube)": xd["gen"], "xbatcher (NumPy cube)": xn["gen"]},
                     da, args.check, args.seed)

    kid = None if args.no_child else run_child(args)

    # --- tables
    x_full = r1["setup"] + r1["iter"]  # fresh PatchSet: plan + load + iteration
    x_it = t_iter_best / n
    rows = []
    # (name, samples timed, setup, iter per sample, full set seconds, extrapolated, peak)
    rows.append(("xglacier to_torch, run 1 (incl. load)", n, r1["setup"], r1["iter"] / n, x_full,
                 False, mem.peak))
    rows.append(("xglacier to_torch, cube loaded (best of 3)", n, 0.0, x_it, t_iter_best, False,
                 None))
    xd_it = xd["iter"] / xd["n"]
    rows.append(("xbatcher, Dask cube", xd["n"], xd["setup"], xd_it, xd["setup"] + xd_it * n, True,
                 mem_xd.peak))
    xn_it = xn["iter"] / xn["n"]
    rows.append(("xbatcher, NumPy cube (loaded)", xn["n"], xn["setup"], xn_it,
                 xn["setup"] + xn_it * n, xn["n"] < n, mem_xn.peak))
    rows.append(("xbatcher MapDataset+DataLoader, NumPy", n_md, xn["setup"], t_md / n_md,
                 xn["setup"] + t_md / n_md * n, True, None))
    rows.append(("xbatcher concat_input_dims, Dask Dataset", n_cc, 0.0, t_cc / n_cc,
                 t_cc / n_cc * n, True, None))

    print(f"\n=== Iterating all {n} samples as torch batches of {BATCH} "
          f"(inputs ({BATCH}, {N_IN}, {SIZE}, {SIZE}), targets ({BATCH}, {N_OUT}, {SIZE}, {SIZE}), "
          "float32) ===")
    print("setup = one-time cost (xglacier: plan + cube load; xbatcher: generator); "
          "full set = setup + iteration of every sample (* = extrapolated from the samples timed);")
    print("ratio = full-set time / xglacier run-1 full-set time; iter ratio = iteration per "
          "sample / xglacier best iteration per sample")
    head = (f"{'method':<42} {'timed':>7} {'setup s':>8} {'us/sample':>10} {'full set s':>11} "
            f"{'ratio':>8} {'iter ratio':>10} {'peak RSS GB':>11}")
    print(head)
    print("-" * len(head))
    for name, m, setup, per, full, extra, peak in rows:
        star = "*" if extra else " "
        pk = f"{peak / 1e9:11.2f}" if peak else f"{'':>11}"
        print(f"{name:<42} {m:7d} {setup:8.2f} {per * 1e6:10.1f} {full:10.1f}{star} "
              f"{full / x_full:8.1f} {per / x_it:10.1f} {pk}")
    print("\nxbatcher Dask blocks (us/sample): " + ", ".join(
        f"samples {b.start}..{b.stop - 1}: {t / len(b) * 1e6:.0f}" for b, t in xd["blocks"]))
    print(f"xglacier run 1 split: plan + load {r1['setup']:.2f} s (cube load alone: "
          f"{time_load(da):.2f} s), iteration {r1['iter']:.2f} s; runs 2-3 iteration "
          + ", ".join(f"{r['iter']:.2f}" for r in runs) + " s")
    print(f"xglacier memory: process peak RSS {mem.peak / 1e9:.2f} GB during run 1 "
          f"(+{(mem.peak - base_rss) / 1e9:.2f} GB over the {base_rss / 1e9:.2f} GB before it, "
          f"which holds torch, the source cube and the Dask array); traced Python allocations "
          f"over 300 batches: peak {tm_peak:.0f} MB; ru_maxrss before xbatcher ran: {maxrss:.2f} GB")
    nb = -(-n // BATCH)
    print(f"xglacier run 1 CPU: user {r1['user'] / n * 1e6:.1f} + system {r1['sys'] / n * 1e6:.1f} "
          f"us/sample, {r1['minflt'] / nb:.0f} minor page faults per batch of {BATCH} "
          f"(a batch is {2 * BATCH * N_IN * SIZE * SIZE * 4 / 2**20:.1f} MiB: "
          f"{2 * BATCH * N_IN * SIZE * SIZE * 4 / 4096:.0f} pages)")
    print(f"concat_input_dims=True on the Dask-backed DataArray: {cc_err}")
    if kid:
        kb = -(-kid["n"] // BATCH)
        print(f"\nSame, in a child process with glibc {' '.join(f'{k}={v}' for k, v in MALLOC_ENV.items())}"
              " (freed batch buffers stay in the process; informational, not the result):")
        print(f"  xglacier run 1 incl. load {kid['full']:.1f} s = {kid['full'] / kid['n'] * 1e6:.1f} "
              f"us/sample, best iteration {kid['iter'] / kid['n'] * 1e6:.1f} us/sample; CPU user "
              f"{kid['user'] / kid['n'] * 1e6:.1f} + system {kid['sys'] / kid['n'] * 1e6:.1f} "
              f"us/sample, {kid['minflt'] / kb:.0f} page faults per batch")
        kxn = kid["xn_iter"] / kid["xn_n"]
        print(f"  xbatcher, NumPy cube: {kxn * 1e6:.1f} us/sample over {kid['xn_n']} samples -> "
              f"ratio {(kid['xn_setup'] + kxn * kid['n']) / kid['full']:.1f}x incl. one-time costs, "
              f"{kxn / (kid['iter'] / kid['n']):.1f}x iteration alone; xbatcher, Dask cube "
              f"(per-sample time of the main run): {(xd['setup'] + xd_it * n) / kid['full']:.0f}x")

    print(f"\n=== Same samples? ({chk['picks']} windows: first, last and {args.check} random; "
          "matched to xglacier by origin (t0, y0, x0), compared exactly) ===")
    for name, (equal, order) in chk["results"].items():
        print(f"{name:<24} identical to xglacier: {equal}   same index order: {order}")

    print("\n=== Targets ===")
    r_dask = rows[2][4] / x_full
    r_np = rows[3][4] / x_full
    ok = r_dask >= 20
    print(f">= 20x faster than xbatcher producing the same samples (Dask-backed cube, the pipeline's "
          f"output): {'MET' if ok else 'NOT MET'} ({r_dask:.0f}x per sample incl. one-time costs, "
          f"{xd_it / x_it:.0f}x iteration alone; xbatcher extrapolated from {xd['n']} samples)")
    print(f"   on the NumPy-backed (pre-loaded) cube: {'met' if r_np >= 20 else 'not met'} "
          f"({r_np:.1f}x incl. one-time costs, {xn_it / x_it:.1f}x iteration alone)")
    okm = mem.peak < 1.5e9
    print(f"xglacier peak memory < 1.5 GB: {'MET' if okm else 'NOT MET'} "
          f"(process peak RSS {mem.peak / 1e9:.2f} GB)")
    print(f"samples identical: {all(e for e, _ in chk['results'].values())}")
    return 0


def time_load(da: xr.DataArray) -> float:
    """The one-time load of the cube alone, on a fresh PatchSet."""
    ps = xglacier.patches(da, size=SIZE, stride=STRIDE, n_in=N_IN, n_out=N_OUT)
    t0 = time.perf_counter()
    ps.load()
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main())
