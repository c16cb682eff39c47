"""Benchmark ``xglacier.forecast``: overhead against a plain eager loop, and tiling at scale.

Two modes (``--mode``): ``overhead`` (the default, below) and ``scale`` (further below).

Overhead task: forecast the next 4 quarters of a whole scene (800x800 px, and 400x400) from its
last 4 of 8 quarterly frames with ``SALSTM(preset="small", patch_size=50)`` (4 -> 4
frames), patches every 25 px, 256 patches per model call, overlapping predictions
blended with a Hann window. The model is the same object (seeded weights, eval mode) in
every method, so the model's own time is the same everywhere; what differs is the
wrapping: patch cutting, batching, blending, xarray/Dask handling.

* ``xglacier numpy``: ``xglacier.forecast(da, model, steps=4, stride=25, batch_size=256)``
  on a NumPy-backed DataArray (eager), ``.values``.
* ``xglacier dask``: the same on a Dask-backed DataArray (chunks ``(1, y, x)``), then
  ``.compute()`` (threaded scheduler).
* ``plain loop``: what a script without xglacier does: the same origins
  (``xglacier.forecasting.patches.positions(n, 50, 25)`` for y and x), patches sliced from the last 4
  frames with NumPy and stacked 256 at a time, the model called under
  ``torch.no_grad()``, each prediction added to a float64 numerator with the weight
  ``np.outer(h, h)``, ``h = np.hanning(52)[1:-1]`` (and the weight to a denominator) by a
  plain Python loop over patches, then divided.

The scene is a smooth random field (fixed pattern + seasonal cycle + low-passed noise,
NDSI-like values in -1..1) on a quarterly time axis. Outputs are compared (max abs diff,
allclose). After one warm-up call of every method, the methods are called in turn
``--repeats`` times (so that changes in the load of a shared machine hit all alike) and
each one's best time is kept; ratio = xglacier time / plain-loop time (target <= 1.2).
Also timed: the model calls alone (on pre-cut patches: the floor of every method), and,
for the Dask input, building the lazy forecast without computing it and
``dask.base.tokenize(model)`` (what wrapping the model in ``dask.delayed(..., pure=True)``
would cost on every call; ``forecast`` passes it with ``pure=False``).

The plain loop is a faithful plain loop: ``forecast`` predicts the same windows and blends
them in the same order with the same float64 sums, and calls the model with batches of a
fixed size (``min(batch_size, windows of the fullest block)``; here 256, the last call of a
block topped up), so that its output is identical bit for bit as long as the model's
result for a window does not depend on the batch size between the plain loop's last,
smaller batch (193 or 225 windows) and 256 (true for torch on this CPU).

Scale task (``--mode scale``): a 1024x1024 scene of 8 quarterly frames held as a Dask
array of ``(1, 256, 256)`` chunks, the same model and options (4 lead times: one round),
computed with the threaded scheduler (``--workers``, default 2). Each case runs in its
own fresh process (so that its peak memory is its own), after a warm-up forecast of a
100x100 scene; peak memory = the process's peak resident set size during the compute
(sampled every 50 ms) minus its size before it; time = best of ``--repeats`` computes;
tasks = the keys of the result's graph. Cases:

* ``tiled (default block)``: ``xglacier.forecast(da, model, ...)``, default blocks (at most
  16 x 16 windows, evened out: 350, 350, 324 px per axis at 1024, 3 x 3 blocks, one
  predict and one blend task each, calls of 14 x 14 = 196 windows);
* ``tiled, block=256``: 4 x 4 blocks at 1024 (at most 11 x 11 windows, so calls of 121);
* ``tiled, block=1024``: at 1024 the tiled code with one block for the scene;
* ``previous forecast (one task)``: the implementation before the tiling (copied below as
  ``previous_forecast_task``): the last 4 frames rechunked to one chunk and the whole-scene
  eager loop (all patches gathered, predicted 256 at a time, ``assemble``d) in one
  ``dask.delayed`` task.

Every output is compared with the plain loop on the same frames (max |diff|, identical).

Torch runs on one intra-op thread by default (``--threads``): on the shared 2-core
machine the model is no faster on 2 threads, and with 2 the calls from the main thread
were intermittently 5-8x slower (OpenMP threads waiting on each other while other
processes hold the cores), which made the timings erratic.

Run from the project root: ``python benchmarks/bench_forecast.py`` (about 2 minutes on 2
cores; ``--quick``: the 400x400 scene only) and ``python benchmarks/bench_forecast.py
--mode scale`` (about 1 minute).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dask
import dask.array as dsa
import numba
import numpy as np
import pandas as pd
import torch
import xarray as xr
from _common import PeakRSS, lowpass

import xglacier
from xglacier.forecasting.blend import assemble
from xglacier.forecasting.kernels import gather_patches
from xglacier.forecasting.patches import positions
from xglacier.models import SALSTM

STEPS, STRIDE, BATCH = 4, 25, 256


# --------------------------------------------------------------------------- data

def scene(nt: int, n: int, seed: int = 0) -> np.ndarray:
    """(nt, n, n) float32 NDSI-like field: fixed pattern + seasonal cycle + smooth noise."""
    rng = np.random.default_rng(seed)
    base = lowpass(rng, (n, n), 40)
    cube = np.empty((nt, n, n), np.float32)
    for t in range(nt):
        frame = 0.35 * base + 0.25 * np.cos(2 * np.pi * t / 4) + 0.1 * lowpass(rng, (n, n), 6)
        cube[t] = np.clip(frame, -1, 1)
    return cube


def as_dataarray(cube: np.ndarray, dask_backed: bool, chunk: int | None = None) -> xr.DataArray:
    nt, ny, nx = cube.shape
    data = dsa.from_array(cube, chunks=(1, chunk or ny, chunk or nx)) if dask_backed else cube
    return xr.DataArray(
        data, dims=("time", "y", "x"), name="ndsi",
        coords={"time": pd.date_range("2020-01-01", periods=nt, freq="3MS"),
                "y": 3568095.0 - 30.0 * np.arange(ny), "x": 734475.0 + 30.0 * np.arange(nx)},
    )


# --------------------------------------------------------------------------- methods
def plain_loop(frames: np.ndarray, model: torch.nn.Module) -> np.ndarray:
    """Full-scene forecast the obvious way: NumPy slicing, batched model calls, Hann blend."""
    p, n_in = model.patch_size, model.n_in
    last = frames[-n_in:]
    _, ny, nx = last.shape
    origins = [(y, x) for y in positions(ny, p, STRIDE) for x in positions(nx, p, STRIDE)]
    h = np.hanning(p + 2)[1:-1]
    w = np.outer(h, h)
    num = np.zeros((STEPS, ny, nx))
    den = np.zeros((ny, nx))
    model.eval()
    with torch.no_grad():
        for k in range(0, len(origins), BATCH):
            chunk = origins[k : k + BATCH]
            xb = np.stack([last[:, y : y + p, x : x + p] for y, x in chunk])
            pred = model(torch.from_numpy(xb)).numpy()
            for (y, x), pr in zip(chunk, pred, strict=True):
                num[:, y : y + p, x : x + p] += w * pr
                den[y : y + p, x : x + p] += w
    return (num / den).astype(np.float32)


def model_only(frames: np.ndarray, model: torch.nn.Module) -> Callable[[], None]:
    """The model calls alone, on patches cut beforehand (the floor of every method)."""
    p, n_in = model.patch_size, model.n_in
    last = frames[-n_in:]
    _, ny, nx = last.shape
    xb = torch.from_numpy(np.stack([last[:, y : y + p, x : x + p]
                                    for y in positions(ny, p, STRIDE)
                                    for x in positions(nx, p, STRIDE)]))

    def run() -> None:
        with torch.no_grad():
            for k in range(0, len(xb), BATCH):
                model(xb[k : k + BATCH])
    return run


def previous_forecast_task(frames: np.ndarray, model: torch.nn.Module) -> np.ndarray:
    """``forecast``'s core before the tiling (whole scene, one task), for ``--mode scale``."""
    p, n_in = model.patch_size, model.n_in
    _, ny, nx = frames.shape
    yx = np.array([(y, x) for y in positions(ny, p, STRIDE) for x in positions(nx, p, STRIDE)], np.int64)
    origins = np.column_stack([np.zeros(len(yx), np.int64), yx])
    history = np.ascontiguousarray(frames, dtype=np.float32)
    like = xr.DataArray(np.empty((ny, nx), np.float32), dims=("y", "x"))
    out = []
    with torch.no_grad():
        while len(out) < STEPS:
            xb = np.empty((len(origins), n_in, p, p), np.float32)
            gather_patches(np.ascontiguousarray(history[-n_in:]), origins, p, n_in, 0, xb,
                           np.empty((len(origins), 0, p, p), np.float32))
            preds = np.concatenate([model(torch.from_numpy(xb[k:k + BATCH])).numpy()
                                    for k in range(0, len(xb), BATCH)])
            new = assemble(preds, yx, like=like, weight="hann").values
            out.extend(new)
            history = np.concatenate([history, new])
    return np.stack(out[:STEPS]).astype(np.float32)


def discard(_: object) -> None:
    return None


def round_robin(fns: dict[str, Callable[[], np.ndarray | None]], repeats: int
                ) -> dict[str, tuple[float, np.ndarray | None]]:
    """One warm-up call of every method, then ``repeats`` rounds calling each in turn (so a
    change in the machine's load hits all methods alike); the best time of each."""
    out = {k: fn() for k, fn in fns.items()}
    best = dict.fromkeys(fns, np.inf)
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            res = fn()
            best[k] = min(best[k], time.perf_counter() - t0)
            out[k] = res if res is not None else out[k]
    return {k: (best[k], out[k]) for k in fns}


def case(n: int, model: torch.nn.Module, repeats: int, seed: int) -> dict:
    frames = scene(8, n, seed)
    da_np = as_dataarray(frames, dask_backed=False)
    da_dk = as_dataarray(frames, dask_backed=True)
    npatch = len(positions(n, model.patch_size, STRIDE)) ** 2
    kw = dict(steps=STEPS, stride=STRIDE, batch_size=BATCH)
    res = round_robin({
        "plain": lambda: plain_loop(frames, model),
        "np": lambda: xglacier.forecast(da_np, model, **kw).values,
        "dask": lambda: xglacier.forecast(da_dk, model, **kw).compute().values,
        "model": model_only(frames, model),
        "graph": lambda: discard(xglacier.forecast(da_dk, model, **kw)),
        "token": lambda: discard(dask.base.tokenize(model)),
    }, repeats)
    t_plain, out_plain = res["plain"]
    t_np, out_np = res["np"]
    t_dk, out_dk = res["dask"]
    rows = [("plain eager loop (reference)", t_plain, out_plain),
            ("xglacier.forecast, NumPy input", t_np, out_np),
            ("xglacier.forecast, Dask input (.compute())", t_dk, out_dk)]
    print(f"\n=== Scene {n}x{n}: {npatch} patches of {model.patch_size}x{model.patch_size} "
          f"(stride {STRIDE}), {-(-npatch // BATCH)} model calls of <= {BATCH}, {STEPS} lead times ===")
    head = (f"{'method':<44} {'time (s)':>9} {'ratio':>7} {'max |diff|':>11}  allclose  "
            f"{'identical':>9}")
    print(head)
    print("-" * len(head))
    for name, t, out in rows:
        diff = float(np.nanmax(np.abs(out.astype(np.float64) - out_plain)))
        print(f"{name:<44} {t:9.3f} {t / t_plain:7.3f} {diff:11.2e}  "
              f"{np.allclose(out, out_plain, rtol=1e-5, atol=1e-6)!s:>8}  "
              f"{np.array_equal(out, out_plain)!s:>9}")
    for key, name in (("model", "model calls alone (patches pre-cut)"),
                      ("graph", "  Dask input: forecast() alone, not computed"),
                      ("token", "  of which dask.base.tokenize(model)")):
        print(f"{name:<44} {res[key][0]:9.3f} {res[key][0] / t_plain:7.3f}")
    t_model = res["model"][0]
    print(f"overhead over the model calls: plain {t_plain - t_model:+.3f} s, xglacier NumPy "
          f"{t_np - t_model:+.3f} s, xglacier Dask {t_dk - t_model:+.3f} s; output "
          f"{out_np.shape} {out_np.dtype}, NaN: {int(np.isnan(out_np).sum())}")
    ok = all(np.allclose(out, out_plain, rtol=1e-5, atol=1e-6) for _, _, out in rows)
    return {"n": n, "ratio_np": t_np / t_plain, "ratio_dk": t_dk / t_plain, "ok": ok,
            "graph": res["graph"][0], "token": res["token"][0]}


# --------------------------------------------------------------------------- scale
SCALE_CASES = {
    "tiled": ("tiled (default block)", {}),
    "tiled256": ("tiled, block=256", {"block": 256}),
    "block1024": ("tiled, block=1024", {"block": 1024}),
    "previous": ("previous forecast (one task)", None),
}


def scale_case(key: str, n: int, chunk: int, model: torch.nn.Module, repeats: int, workers: int,
               seed: int, out: Path) -> dict:
    """One case of ``--mode scale``, in this (fresh) process: tasks, best time, peak memory."""
    _, kw = SCALE_CASES[key]
    xglacier.forecast(as_dataarray(scene(8, 100, seed), dask_backed=True), model, steps=STEPS,
                      stride=STRIDE, batch_size=BATCH).compute()  # warm-up: torch, Numba cache
    da = as_dataarray(scene(8, n, seed), dask_backed=True, chunk=chunk)
    if kw is None:
        frames = da.data[-model.n_in:].rechunk(-1)
        task = dask.delayed(previous_forecast_task, pure=False)(frames, model)
        lazy = dsa.from_delayed(task, (STEPS, n, n), dtype=np.float32)
    else:
        lazy = xglacier.forecast(da, model, steps=STEPS, stride=STRIDE, batch_size=BATCH, **kw).data
    graph = dict(lazy.__dask_graph__())
    tasks = len(graph)
    # tasks that run the model: the tiled pass 1, or the one delayed task
    model_tasks = sum(str(k[0] if isinstance(k, tuple) else k).startswith(("forecast-predict",
                                                                          "previous_forecast_task"))
                      for k in graph)
    best, peak = np.inf, 0
    with dask.config.set(scheduler="threads", num_workers=workers):
        for _ in range(repeats):
            result = None  # the previous result is freed before the next compute
            with PeakRSS() as mem:
                t0 = time.perf_counter()
                result = lazy.compute()
                best = min(best, time.perf_counter() - t0)
            peak = max(peak, mem.peak - mem.base)
    np.save(out, result)
    return {"tasks": tasks, "model_tasks": model_tasks, "seconds": best, "peak_mb": peak / 2**20,
            "blocks": [len(c) for c in lazy.chunks[1:]], "load": os.getloadavg()[0]}


def scale(args: argparse.Namespace, model: torch.nn.Module) -> int:
    n, chunk = args.scale_size, args.chunk
    frames = scene(8, n, args.seed)
    t0 = time.perf_counter()
    reference = plain_loop(frames, model)
    t_plain = time.perf_counter() - t0
    print(f"\n=== Scale: {n}x{n} scene, Dask chunks (1, {chunk}, {chunk}), "
          f"{len(positions(n, model.patch_size, STRIDE)) ** 2} patches, {STEPS} lead times, threaded "
          f"scheduler with {args.workers} workers; each case in a fresh process, best of {args.repeats} ===")
    print(f"plain eager loop (reference, in this process, one run): {t_plain:.3f} s")
    head = (f"{'case':<32} {'blocks':>7} {'tasks':>6} {'model':>6} {'time (s)':>9} {'peak MB':>8} "
            f"{'max |diff|':>11} {'identical':>9} {'load':>5}")
    print(head)
    print("-" * len(head))
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, (label, _) in SCALE_CASES.items():
            out = Path(tmp) / f"{key}.npy"
            cmd = [sys.executable, __file__, "--case", key, "--out", str(out), "--scale-size", str(n),
                   "--chunk", str(chunk), "--repeats", str(args.repeats), "--workers", str(args.workers),
                   "--seed", str(args.seed), "--threads", str(args.threads)]
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                             .strip().splitlines()[-1])
            got = np.load(out)
            diff = float(np.abs(got.astype(np.float64) - reference).max())
            rows[key] = res
            blocks = "x".join(map(str, res["blocks"]))
            print(f"{label:<32} {blocks:>7} {res['tasks']:>6} {res['model_tasks']:>6} {res['seconds']:9.3f} "
                  f"{res['peak_mb']:8.1f} "
                  f"{diff:11.2e} {np.array_equal(got, reference)!s:>9} {res['load']:5.1f}")
    prev = rows["previous"]
    for key in ("tiled", "tiled256"):
        r = rows[key]
        print(f"{SCALE_CASES[key][0]} / previous one task: model tasks {r['model_tasks']} / "
              f"{prev['model_tasks']}, all tasks {r['tasks'] / prev['tasks']:.2f}, time "
              f"{r['seconds'] / prev['seconds']:.2f}, peak memory {r['peak_mb'] / prev['peak_mb']:.2f}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("overhead", "scale"), default="overhead")
    parser.add_argument("--quick", action="store_true", help="the 400x400 scene only")
    parser.add_argument("--sizes", type=int, nargs="+", default=[800, 400], help="scene sides")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after a warm-up")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (0: torch's default, 2 here)")
    parser.add_argument("--scale-size", type=int, default=1024, help="scene side of --mode scale")
    parser.add_argument("--chunk", type=int, default=256, help="Dask chunk side of --mode scale")
    parser.add_argument("--workers", type=int, default=2, help="threads of the Dask scheduler (scale)")
    parser.add_argument("--case", choices=tuple(SCALE_CASES), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = [400] if args.quick else args.sizes
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(args.seed)
    model = SALSTM(preset="small", patch_size=50).eval()  # the paper's 50x50 patches
    if args.case:  # one case of --mode scale, in a fresh process
        print(json.dumps(scale_case(args.case, args.scale_size, args.chunk, model, args.repeats,
                                    args.workers, args.seed, args.out)))
        return 0
    print(f"bench_forecast  {dt.datetime.now().isoformat(timespec='seconds')}  "
          f"{platform.machine()}  {os.cpu_count()} cores  python {platform.python_version()}  "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"xglacier {xglacier.__version__} ({Path(xglacier.__file__).parent})  numpy {np.__version__}  "
          f"numba {numba.__version__}  dask {dask.__version__}  xarray {xr.__version__}  "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    if args.mode == "scale":
        print(f"model: SALSTM(preset='small', patch_size=50), {model.n_parameters():,} parameters, seed "
              f"{args.seed}, eval mode; forecast(steps={STEPS}, stride={STRIDE}, batch_size={BATCH})")
        return scale(args, model)
    print(f"model: SALSTM(preset='small', patch_size=50), {model.n_parameters():,} parameters, "
          f"seed {args.seed}, "
          f"eval mode; forecast(steps={STEPS}, stride={STRIDE}, batch_size={BATCH}, weight='hann'); "
          f"8 quarterly frames; times: best of {args.repeats} rounds after a warm-up round")

    results = [case(n, model, args.repeats, args.seed) for n in sizes]

    print("\n=== Target: xglacier / plain loop time <= 1.2 ===")
    for r in results:
        ok = max(r["ratio_np"], r["ratio_dk"]) <= 1.2
        print(f"{r['n']}x{r['n']}: {'MET' if ok else 'NOT MET'} (NumPy input {r['ratio_np']:.3f}, "
              f"Dask input {r['ratio_dk']:.3f}); outputs allclose to the plain loop: {r['ok']}")
    big = SALSTM(preset="paper")
    t0 = time.perf_counter()
    dask.base.tokenize(big)
    print(f"(dask.base.tokenize of SALSTM(preset='paper'), {big.n_parameters():,} parameters, which "
          f"forecast() avoids with dask.delayed(model, pure=False): {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
