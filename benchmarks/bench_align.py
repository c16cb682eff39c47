"""Benchmark ``xglacier.estimate_ecc`` (the warp estimate behind ``align_ecc``) against the
paper's co-registration setup: single-scale ``cv2.findTransformECC``, homography, up to
10000 iterations, eps 1e-4, template = mean of the unaligned frames.

Two cases, both cloud-masked with ``mask_clouds`` (NaN where clouded or nodata) and
computed into memory before anything is timed, so that rendering the synthetic scenes is
not counted:

1. ``synthetic_cube(preset="parvati", max_shift=3.0)`` (800x800 frames, 2013-2022):
   ``--scenes`` scenes (24 by default) spread over the period among those that pass
   ``filter_scenes(mask_clouds(cube), max_cloud=20, max_missing=0.5)``. To avoid rendering
   all 254 scenes, ``filter_scenes`` runs on ``n + max(2, n // 4)`` candidates spread
   evenly over the scenes whose ``cloud_cover`` metadata is <= 20 % (its own ``max_cloud``
   test), and ``n`` of those it keeps are taken, spread evenly.
2. ``synthetic_cube(shape=(2048, 2048), start="2020-01-01", end="2020-12-31",
   max_shift=3.0)``: ``--big-scenes`` scenes (6 by default, to keep the run near 8 minutes
   on 2 cores: rendering one such scene takes about 7 s) picked the same way.

Methods, all on the same band (``nir08``) unless said otherwise:

* ``paper setup``: template = ``nanmean`` over time of the unaligned band, NaN (pixels
  never valid) replaced by the template's mean; each frame's NaN replaced by the frame's
  mean, and the frame's valid pixels passed as ``inputMask`` (plain ``findTransformECC``
  has no NaN support; the mask keeps clouds and fill out of the estimate, which can only
  help it). Then ``cv2.findTransformECC(template, frame, eye(3), MOTION_HOMOGRAPHY,
  (EPS | COUNT, 10000, 1e-4), inputMask, 5)`` per scene, in a plain loop; ``cv2.error``
  counts as a failure. Time per scene = (template + loop) / scenes. OpenCV parallelises
  parts of ECC internally over its own threads (``cv2.getNumThreads()``, printed). With
  ``--threaded-paper`` the same calls are also run ``--workers`` scenes at a time in a
  thread pool (OpenCV releases the GIL), as a second baseline using both cores; it must
  give the same warps.
* ``xglacier default``: ``estimate_ecc(cube, bands="nir08")`` with its defaults
  (translation, median template, ``refine=2``, 200 iterations, eps 1e-5, high-pass
  sigma 1.5, masks), computed with the threaded scheduler on ``--workers`` threads. Time
  per scene = total time / scenes (template and refinement rounds included). Failures =
  scenes with ``ecc_converged == False`` (kept unwarped).
* ``xglacier homography``: the same with ``motion="homography"``.
* ``xglacier bands=None``: the default multi-band estimate (nir08, swir16, red jointly).
  The large case runs only the variants named by ``--big-variants`` (by default the
  default estimate alone; ``default,homography,bands`` runs all three, which takes several
  more minutes there).
* ``unaligned``: the identity warp, for scale.

Shift error: each warp W (template pixel -> scene pixel) gives the displacement field
d(p) = W(p) - p at every pixel p of the frame (homogeneous divide for the homography).
The truth is the per-scene rigid shift (``shift_x``, ``shift_y``) of ``synthetic_cube``.
The template of every method sits at some unknown common offset from the ground grid, so
for each method and pixel the median over its successful scenes of d - truth is subtracted
first. Reported: mean over scenes of the per-scene mean error magnitude (pixels), its
median over scenes (robust to one diverged homography) and the largest per-scene mean
error. Failed scenes are counted separately, not as zero error.

Target (issue): xglacier default >= 3x faster per scene than the paper setup with equal or
better accuracy; the verdict requires mean error <= the paper's and no more failures.

Run from the project root: ``python benchmarks/bench_align.py`` (``--quick``: 8 Parvati
scenes and 4 scenes of 2048x2048; ``--paper-scenes K`` caps the paper setup to K scenes).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import platform
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import dask
import numpy as np
import xarray as xr

import xglacier
from xglacier.errors import AlignmentWarning
from xglacier.preprocess import align
from xglacier.preprocess.align import ECCOptions, estimate_ecc

BANDS = ["nir08", "swir16", "red"]  # what the default multi-band estimate uses
PAPER_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10000, 1e-4)
PAPER_GAUSS = 5


@dataclass
class Result:
    name: str
    seconds_per_scene: float
    warps: list[np.ndarray | None]  # None = failed scene
    scenes: list[int] = field(default_factory=list)  # indices into the case's scenes
    errors: np.ndarray | None = None  # per successful scene, pixels

    @property
    def failures(self) -> int:
        return sum(w is None for w in self.warps)


# --------------------------------------------------------------------------- data
def spread(n_total: int, k: int) -> np.ndarray:
    """``k`` indices spread evenly over ``range(n_total)`` (all of them if k >= n_total)."""
    if k >= n_total:
        return np.arange(n_total)
    return np.unique(np.round(np.linspace(0, n_total - 1, k)).astype(int))


def build_case(cube: xr.Dataset, truth: xr.Dataset, n: int, workers: int):
    """Cloud-masked, filtered, in-memory (nir08, swir16, red) cube of ``n`` scenes + shifts."""
    by_meta = np.flatnonzero(cube["cloud_cover"].values <= 20)
    cand = by_meta[spread(len(by_meta), n + max(2, n // 4))]
    sub = cube[[*BANDS, "qa_pixel"]].isel(time=cand)
    with dask.config.set(scheduler="threads", num_workers=workers):
        masked = xglacier.mask_clouds(sub).compute()
        kept = xglacier.filter_scenes(masked, max_cloud=20, max_missing=0.5)
    pick = spread(kept.sizes["time"], n)
    data = kept.isel(time=pick)
    shifts = truth[["shift_x", "shift_y"]].sel(time=data["time"])
    sx, sy = shifts["shift_x"].values, shifts["shift_y"].values
    missing = float(np.isnan(data["nir08"].values).mean())
    info = (f"{cube.sizes['time']} scenes in the cube, {len(by_meta)} with cloud_cover <= 20, "
            f"{len(cand)} candidates, {kept.sizes['time']} pass filter_scenes, "
            f"{data.sizes['time']} used ({str(data.time.values[0])[:10]} .. "
            f"{str(data.time.values[-1])[:10]}); nir08 NaN {missing:.1%}; "
            f"|shift| up to {max(np.abs(sx).max(), np.abs(sy).max()):.2f} px")
    return data.drop_vars("qa_pixel"), np.stack([sx, sy], axis=1), info


# --------------------------------------------------------------------------- methods
def paper_template(frames: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pixels never valid
        tmpl = np.nanmean(frames, axis=0)
    return np.where(np.isfinite(tmpl), tmpl, np.nanmean(tmpl)).astype(np.float32)


def paper_one(template: np.ndarray, frame: np.ndarray) -> np.ndarray | None:
    valid = np.isfinite(frame)
    if not valid.any():
        return None
    img = np.where(valid, frame, frame[valid].mean()).astype(np.float32)
    mask = valid.astype(np.uint8) * 255
    try:
        _, warp = cv2.findTransformECC(template, img, np.eye(3, dtype=np.float32),
                                       cv2.MOTION_HOMOGRAPHY, PAPER_CRITERIA, mask, PAPER_GAUSS)
    except cv2.error:
        return None
    return warp.astype(np.float64) if np.all(np.isfinite(warp)) else None


def paper_setup(frames: np.ndarray, scenes: np.ndarray, threads: int) -> Result:
    t0 = time.perf_counter()
    tmpl = paper_template(frames)
    t_tmpl = time.perf_counter() - t0
    t0 = time.perf_counter()
    if threads == 1:
        warps = [paper_one(tmpl, frames[i]) for i in scenes]
    else:
        with ThreadPoolExecutor(threads) as pool:
            warps = list(pool.map(lambda i: paper_one(tmpl, frames[i]), scenes))
    t_loop = time.perf_counter() - t0
    label = ("paper setup (cv2 homography, loop)" if threads == 1
             else f"paper setup, {threads} scenes at a time")
    return Result(label, t_tmpl / len(frames) + t_loop / len(scenes), warps, list(scenes))


def xglacier_run(name: str, data: xr.Dataset, workers: int, **kwargs) -> Result:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AlignmentWarning)
        est = estimate_ecc(data, **kwargs).compute(scheduler="threads", num_workers=workers)
    dt_ = time.perf_counter() - t0
    n = data.sizes["time"]
    ok = est["ecc_converged"].values
    warps = [est["ecc_warp"].values[i] if ok[i] else None for i in range(n)]
    return Result(name, dt_ / n, warps, list(range(n)))


# --------------------------------------------------------------------------- errors
def shift_errors(res: Result, shifts: np.ndarray, shape: tuple[int, int]) -> None:
    """Per-scene mean |d(p) - truth - common offset(p)| over all pixels (successes only)."""
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    resid = []
    for k, w in zip(res.scenes, res.warps, strict=True):
        if w is None:
            continue
        den = w[2, 0] * xx + w[2, 1] * yy + w[2, 2]
        u = (w[0, 0] * xx + w[0, 1] * yy + w[0, 2]) / den - xx - shifts[k, 0]
        v = (w[1, 0] * xx + w[1, 1] * yy + w[1, 2]) / den - yy - shifts[k, 1]
        resid.append(np.stack([u, v]).astype(np.float32))
    if not resid:
        res.errors = np.array([])
        return
    r = np.stack(resid)  # (scene, 2, y, x)
    r -= np.median(r, axis=0)
    res.errors = np.hypot(r[:, 0], r[:, 1]).mean(axis=(1, 2), dtype=np.float64)


def identity(n: int) -> Result:
    return Result("unaligned (identity warp)", float("nan"), [np.eye(3)] * n, list(range(n)))


# --------------------------------------------------------------------------- report
def print_table(title: str, rows: list[Result], base: float) -> None:
    print(f"\n{title}")
    head = (f"{'method':<44} {'s/scene':>8} {'ratio':>7} {'mean err':>9} {'median':>8} "
            f"{'max err':>9} {'failures':>9}")
    print(head)
    print("-" * len(head))
    for r in rows:
        t = "" if np.isnan(r.seconds_per_scene) else f"{r.seconds_per_scene:8.3f}"
        q = "" if np.isnan(r.seconds_per_scene) else f"{base / r.seconds_per_scene:7.2f}"
        e = r.errors
        have = e is not None and e.size
        me, md, mx = ((f"{e.mean():.4f}", f"{np.median(e):.4f}", f"{e.max():.4f}") if have
                      else ("n/a",) * 3)
        print(f"{r.name:<44} {t:>8} {q:>7} {me:>9} {md:>8} {mx:>9} "
              f"{r.failures:>5} / {len(r.warps):<3}")


def run_case(label: str, data: xr.Dataset, shifts: np.ndarray, args,
             variants: tuple[str, ...]) -> dict:
    n = data.sizes["time"]
    shape = (data.sizes["y"], data.sizes["x"])
    frames = np.ascontiguousarray(data[args.band].values)
    paper_idx = spread(n, args.paper_scenes) if args.paper_scenes else np.arange(n)
    band = args.band
    rows = [paper_setup(frames, paper_idx, 1)]
    if args.threaded_paper:
        rows.append(paper_setup(frames, paper_idx, args.workers))
        same = all((a is None and b is None) or (a is not None and b is not None
                                                 and np.array_equal(a, b))
                   for a, b in zip(rows[0].warps, rows[1].warps, strict=True))
        rows[1].name += "" if same else " (warps differ!)"
    rows.append(xglacier_run(f"xglacier default (translation, {band})", data, args.workers,
                             bands=band))
    if "homography" in variants:
        rows.append(xglacier_run(f"xglacier motion=homography ({band})", data, args.workers,
                                 bands=band, motion="homography"))
    if "bands" in variants:
        rows.append(xglacier_run("xglacier bands=None (nir08+swir16+red)", data,
                                 args.workers))
    rows.append(identity(n))
    for r in rows:
        shift_errors(r, shifts, shape)
    paper = rows[0]
    cap = (f"; paper setup on {len(paper_idx)} of {n} scenes (--paper-scenes)"
           if len(paper_idx) < n else "")
    print_table(f"{label}: {n} scenes of {shape[0]}x{shape[1]}, band {band}, {args.workers} "
                f"threads (ratio = paper-loop time / method time; errors in px over all "
                f"pixels, after removing each method's common offset{cap})", rows,
                paper.seconds_per_scene)
    xg = next(r for r in rows if r.name.startswith("xglacier default"))
    return {"label": label, "ratio": paper.seconds_per_scene / xg.seconds_per_scene,
            "err_xg": xg.errors.mean() if xg.errors.size else np.inf,
            "err_paper": paper.errors.mean() if paper.errors.size else np.inf,
            "fail_xg": xg.failures, "fail_paper": paper.failures,
            "n_xg": len(xg.warps), "n_paper": len(paper.warps)}


def fingerprint() -> str:
    """Latest modification time and hash of the align package's modules (being worked on)."""
    paths = sorted(Path(align.__file__).parent.glob("*.py"))
    mtime = dt.datetime.fromtimestamp(max(p.stat().st_mtime for p in paths), dt.timezone.utc)
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in paths)).hexdigest()[:12]
    return f"modified {mtime:%Y-%m-%d %H:%M:%S} UTC, sha256 {digest}"


def warm_up(workers: int) -> None:
    """First calls into OpenCV, Dask and the synthetic renderer, outside any timing."""
    cube, _ = xglacier.synthetic_cube(shape=(64, 64), end="2020-03-01", max_shift=2)
    with dask.config.set(scheduler="threads", num_workers=workers):
        small = xglacier.mask_clouds(cube[[*BANDS, "qa_pixel"]]).compute()
    xglacier_run("warm-up", small.drop_vars("qa_pixel"), workers, bands="nir08")
    paper_setup(small["nir08"].values, np.arange(2), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=24, help="Parvati scenes (800x800)")
    parser.add_argument("--big-scenes", type=int, default=6, help="2048x2048 scenes")
    parser.add_argument("--big-size", type=int, default=2048, help="side of the large frames")
    parser.add_argument("--paper-scenes", type=int, default=None,
                        help="run the paper setup on at most this many (spread) scenes")
    parser.add_argument("--band", default="nir08")
    parser.add_argument("--workers", type=int, default=2, help="Dask threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threaded-paper", action="store_true",
                        help="also run the paper setup --workers scenes at a time")
    parser.add_argument("--big-variants", default="default",
                        help="xglacier variants on the large case: default,homography,bands")
    parser.add_argument("--quick", action="store_true", help="8 Parvati and 4 large scenes")
    args = parser.parse_args(argv)
    if args.quick:
        args.scenes, args.big_scenes = min(args.scenes, 8), min(args.big_scenes, 4)

    t_start = time.perf_counter()
    stamp = fingerprint()
    print(f"bench_align  {dt.datetime.now().isoformat(timespec='seconds')}  "
          f"{platform.machine()}  {os.cpu_count()} cores  python {platform.python_version()}")
    print(f"xglacier {xglacier.__version__}  numpy {np.__version__}  dask {dask.__version__}  "
          f"xarray {xr.__version__}  opencv {cv2.__version__} ({cv2.getNumThreads()} threads)")
    print(f"paper setup: findTransformECC, MOTION_HOMOGRAPHY, {PAPER_CRITERIA[1]} iterations, "
          f"eps {PAPER_CRITERIA[2]:g}, gaussFiltSize {PAPER_GAUSS}, template = nanmean of the "
          "unaligned band, frame validity as inputMask")
    d = ECCOptions()
    print(f"xglacier: estimate_ecc defaults (motion {d.motion}, reference median, "
          f"refine={d.refine}, {d.iterations} iterations, eps {d.eps:g}, highpass "
          f"{d.highpass}), threaded scheduler; 1 timed run per method")
    print(f"xglacier/preprocess/align/: {stamp}")
    warm_up(args.workers)

    outcomes = []
    t0 = time.perf_counter()
    cube, truth = xglacier.synthetic_cube(preset="parvati", max_shift=3.0, seed=args.seed)
    data, shifts, info = build_case(cube, truth, args.scenes, args.workers)
    print(f"\n=== Case 1: Parvati preset (800x800), max_shift 3 px, seed {args.seed} ===")
    print(f"{info}; rendered + masked in {time.perf_counter() - t0:.1f} s (not timed below)")
    outcomes.append(run_case("Parvati 800x800", data, shifts, args,
                             ("default", "homography", "bands")))
    del data

    n = args.big_size
    t0 = time.perf_counter()
    cube, truth = xglacier.synthetic_cube(shape=(n, n), start="2020-01-01", end="2020-12-31",
                                          max_shift=3.0, seed=args.seed)
    data, shifts, info = build_case(cube, truth, args.big_scenes, args.workers)
    print(f"\n=== Case 2: synthetic {n}x{n}, 2020, max_shift 3 px, seed {args.seed} ===")
    print(f"{info}; rendered + masked in {time.perf_counter() - t0:.1f} s (not timed below)")
    outcomes.append(run_case(f"{n}x{n}", data, shifts, args,
                             tuple(args.big_variants.split(","))))

    print("\n=== Target: xglacier default >= 3x faster per scene than the paper setup, mean "
          "error <= the paper's, no more failures ===")
    for o in outcomes:
        fast = o["ratio"] >= 3
        acc = o["err_xg"] <= o["err_paper"]
        fails = o["fail_xg"] / o["n_xg"] <= o["fail_paper"] / o["n_paper"]
        verdict = "MET" if fast and acc and fails else "NOT MET"
        print(f"{o['label']}: {verdict}  speed {o['ratio']:.2f}x ({'ok' if fast else 'short'}), "
              f"mean error {o['err_xg']:.4f} vs {o['err_paper']:.4f} px "
              f"({'ok' if acc else 'worse'}), failures {o['fail_xg']}/{o['n_xg']} vs "
              f"{o['fail_paper']}/{o['n_paper']} ({'ok' if fails else 'more'})")
    print(f"\ntotal run time {time.perf_counter() - t_start:.0f} s")
    if fingerprint() != stamp:
        print(f"WARNING: the align package changed during the run (now {fingerprint()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
