"""Benchmark ``xglacier.fill_gaps`` against a plain NumPy version of the paper's loop,
GDAL's inverse-distance ``fillnodata`` (through rasterio) and OpenCV's ``inpaint``.

What is compared, all in one process, on the same input:

* ``xglacier eager``: ``xglacier.fill_gaps(DataArray(frame), max_iter=None)``, the Numba
  kernel on a NumPy-backed DataArray (passes until everything is filled).
* ``xglacier dask``: the same function on a ``(1, N, N)`` Dask cube chunked ``512 x 512``,
  with the smallest finite ``max_iter`` that fills every gap (halo ``2 * max_iter``),
  computed with the threaded scheduler on 2 threads.
* ``numpy paper loop`` (the reference): passes until filled; each pass is a Python loop over
  the missing pixels, one NumPy-sliced weighted average of the valid 5x5 neighbours per
  pixel, reading the values from the start of the pass (Jacobi), sums in float64 in
  row-major window order, so its output must be bit-identical to xglacier's.
* ``gdal fillnodata``: ``rasterio.fill.fillnodata(..., smoothing_iterations=0)`` with a search
  distance large enough to fill everything.
* ``cv2 inpaint``: TELEA and NS (Navier-Stokes), on float32 reflectance as is, and TELEA also
  on the reflectance rescaled to uint16 / uint8 and back (TELEA on float32 0..1 data is
  known to give wrong values; the run shows it).

Two cases:

1. a synthetic ``N x N`` float32 reflectance field (Gaussian-filtered noise at four scales,
   0.05..0.95) with about 25 % missing: Landsat-7 SLC-off-like tilted stripes whose width
   grows away from the centre column, plus random ellipses. Truth: the field before the
   holes; RMSE over every punched pixel. The reference loop is timed on the full frame and
   on a representative crop (with the crop's own hole pattern), beside xglacier on the
   same crop.
2. the real HLS L30 green band of Athabasca Glacier (``../shared/data``), with stripes and
   ellipses punched into its valid pixels by a seeded RNG. Its own nodata block stays a
   gap (every method fills it) and is left out of the RMSE.

Times are the best of ``--repeats`` runs (3 by default); the reference loop is run once.
Ratios are ``competitor_time / xglacier_eager_time`` on the same input.

Run from the project root: ``python benchmarks/bench_gapfill.py`` (``--quick``: 1024 frame).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import dask
import dask.array as dsa
import numba
import numpy as np
import rasterio
import xarray as xr
from rasterio.fill import fillnodata
from scipy import ndimage as ndi

import xglacier
from xglacier.preprocess.kernels import paper_weights

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ATHABASCA = DATA / "athabasca" / "athabasca_2020229_B03_L30.tif"
PROFILE = (1, 2, 3, 2, 1)
GDAL_SEARCH = 100  # pixels; far more than the deepest gap in either case (checked below)
CV2_RADIUS = 3


# --------------------------------------------------------------------------- test data
def textured_field(n: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth reflectance-like field: white noise low-passed at four scales, 0.05..0.95."""
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.rfftfreq(n)[None, :]
    k2 = fy**2 + fx**2
    field = np.zeros((n, n))
    for sigma, amp in ((2, 0.1), (8, 0.25), (32, 0.5), (128, 1.0)):
        spec = np.fft.rfft2(rng.standard_normal((n, n)))
        part = np.fft.irfft2(spec * np.exp(-2 * np.pi**2 * sigma**2 * k2), s=(n, n))
        field += amp * part / part.std()
    field = (field - field.min()) / (field.max() - field.min())
    return (0.05 + 0.9 * field).astype(np.float32)


def slc_off_stripes(
    shape: tuple[int, int], period: float, max_width: float, angle_deg: float, offset: float
) -> np.ndarray:
    """Tilted stripes, 1 px wide at the centre column and ``max_width`` at the edges."""
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    ang = np.deg2rad(angle_deg)
    across = yy * np.cos(ang) - xx * np.sin(ang) + offset
    width = 1.0 + (max_width - 1.0) * np.abs(xx - (nx - 1) / 2) / ((nx - 1) / 2)
    return np.mod(across, period) < width


def add_ellipses(
    holes: np.ndarray,
    allowed: np.ndarray,
    rng: np.random.Generator,
    target: float,
    radii: tuple[float, float],
) -> int:
    """Punch random ellipses (inside ``allowed``) until ``target`` of ``allowed`` is holes."""
    ny, nx = holes.shape
    total = allowed.sum()
    count = 0
    while (holes & allowed).sum() < target * total:
        cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)
        a, b = rng.uniform(*radii, size=2)
        th = rng.uniform(0, np.pi)
        r = int(max(a, b)) + 1
        y0, y1 = max(0, int(cy) - r), min(ny, int(cy) + r + 1)
        x0, x1 = max(0, int(cx) - r), min(nx, int(cx) + r + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        dy, dx = yy - cy, xx - cx
        p = (dx * np.cos(th) + dy * np.sin(th)) / a
        q = (-dx * np.sin(th) + dy * np.cos(th)) / b
        holes[y0:y1, x0:x1] |= (p * p + q * q <= 1) & allowed[y0:y1, x0:x1]
        count += 1
    holes &= allowed
    return count


def passes_needed(missing: np.ndarray) -> int:
    """Passes of the 5x5 filter to fill everything: pass k reaches chessboard distance 2k."""
    depth = ndi.distance_transform_cdt(missing, metric="chessboard")
    return int(np.ceil(depth.max() / 2))


# --------------------------------------------------------------------------- methods
def paper_loop(frame: np.ndarray, profile=PROFILE) -> tuple[np.ndarray, int]:
    """The paper's gap filling written the obvious way: NumPy slicing in a Python loop.

    Each pass visits every missing pixel and averages its valid 5x5 neighbours with the
    weights ``outer(profile, profile)``, reading the frame as it was when the pass began;
    the new values are written once the pass is over. Products and sums are float64 and
    summed left to right in row-major window order (``cumsum`` is strictly sequential,
    unlike ``np.sum``'s pairwise sum), as the Numba kernel does.
    """
    w = paper_weights(tuple(profile))
    r = w.shape[0] // 2
    ny, nx = frame.shape
    out = frame.copy()
    passes = 0
    while True:
        gaps = np.argwhere(np.isnan(out))
        if len(gaps) == 0:
            break
        updates = []
        for i, j in gaps:
            i0, i1 = max(i - r, 0), min(i + r + 1, ny)
            j0, j1 = max(j - r, 0), min(j + r + 1, nx)
            win = out[i0:i1, j0:j1]
            ok = ~np.isnan(win)
            if not ok.any():
                continue
            wts = w[i0 - i + r : i1 - i + r, j0 - j + r : j1 - j + r][ok]
            s = np.cumsum(wts * win[ok].astype(np.float64))[-1]
            updates.append((i, j, s / np.cumsum(wts)[-1]))
        if not updates:
            break
        for i, j, v in updates:
            out[i, j] = v  # cast to the frame's dtype (float32), as the kernel does
        passes += 1
    return out, passes


def xglacier_eager(frame: np.ndarray) -> np.ndarray:
    out = xglacier.fill_gaps(xr.DataArray(frame, dims=("y", "x")), max_iter=None)
    if out.attrs["gaps_unfilled"]:
        raise RuntimeError(f"xglacier eager left {out.attrs['gaps_unfilled']} gaps")
    return out.values


def make_cube(frame: np.ndarray, chunk: int) -> xr.DataArray:
    data = dsa.from_array(frame[None], chunks=(1, chunk, chunk))
    return xr.DataArray(
        data, dims=("time", "y", "x"),
        coords={"time": np.array(["2020-08-16"], dtype="datetime64[ns]")},
    )


def xglacier_dask(cube: xr.DataArray, max_iter: int) -> np.ndarray:
    out = xglacier.fill_gaps(cube, max_iter=max_iter).compute(scheduler="threads", num_workers=2)
    left = int(out["unfilled"].sum())
    if left:
        raise RuntimeError(f"xglacier dask left {left} gaps")
    return out.values[0]


def gdal_fill(frame: np.ndarray) -> np.ndarray:
    # fillnodata writes into its input array: always hand it a copy.
    valid = (~np.isnan(frame)).astype(np.uint8)
    out = fillnodata(frame.copy(), mask=valid, max_search_distance=GDAL_SEARCH,
                     smoothing_iterations=0)
    if np.isnan(out).any():
        raise RuntimeError("gdal fillnodata left gaps: raise GDAL_SEARCH")
    return out


def cv2_fill(frame: np.ndarray, flag: int, mode: str) -> np.ndarray:
    """``cv2.inpaint`` on float32 as is, or rescaled (min..max of valid) to uint16/uint8."""
    missing = np.isnan(frame)
    mask = missing.astype(np.uint8)
    if mode == "float32":
        return cv2.inpaint(np.where(missing, 0, frame).astype(np.float32), mask, CV2_RADIUS, flag)
    top = {"uint16": 65535, "uint8": 255}[mode]
    lo, hi = float(np.nanmin(frame)), float(np.nanmax(frame))
    scaled = np.where(missing, 0, np.round((frame - lo) / (hi - lo) * top))
    out = cv2.inpaint(scaled.astype(mode), mask, CV2_RADIUS, flag)
    return (out.astype(np.float64) / top * (hi - lo) + lo).astype(np.float32)


# --------------------------------------------------------------------------- helpers
def best_of(fn: Callable[[], np.ndarray], repeats: int) -> tuple[float, np.ndarray]:
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def rmse(out: np.ndarray, truth: np.ndarray, where: np.ndarray) -> float:
    diff = out[where].astype(np.float64) - truth[where].astype(np.float64)
    return float(np.sqrt(np.mean(diff**2)))


def same(a: np.ndarray | None, b: np.ndarray | None) -> str:
    if a is None or b is None:
        return "n/a"
    return "yes" if np.array_equal(a, b, equal_nan=True) else "no"


def print_table(title: str, rows: list[tuple[str, float, np.ndarray]], base_time: float,
                truth: np.ndarray, where: np.ndarray, ref: np.ndarray | None) -> None:
    print(f"\n{title}")
    head = f"{'method':<42} {'time (s)':>9} {'ratio':>8} {'RMSE':>9}  identical to ref"
    print(head)
    print("-" * len(head))
    for name, t, out in rows:
        print(f"{name:<42} {t:9.4f} {t / base_time:8.2f} {rmse(out, truth, where):9.5f}  "
              f"{same(out, ref)}")


def competitors(frame: np.ndarray, repeats: int) -> list[tuple[str, float, np.ndarray]]:
    rows = []
    t, out = best_of(lambda: gdal_fill(frame), repeats)
    rows.append((f"gdal fillnodata (dist {GDAL_SEARCH})", t, out))
    for label, flag, mode in (
        ("cv2 TELEA float32", cv2.INPAINT_TELEA, "float32"),
        ("cv2 TELEA uint16 (scaled)", cv2.INPAINT_TELEA, "uint16"),
        ("cv2 TELEA uint8 (scaled)", cv2.INPAINT_TELEA, "uint8"),
        ("cv2 NS float32", cv2.INPAINT_NS, "float32"),
    ):
        t, out = best_of(lambda f=flag, m=mode: cv2_fill(frame, f, m), repeats)
        rows.append((f"{label} (r={CV2_RADIUS})", t, out))
    return rows


def time_methods(frame: np.ndarray, chunk: int, need: int, repeats: int
                 ) -> tuple[list[tuple[str, float, np.ndarray]], int]:
    """Rows (name, seconds, output) of xglacier eager, xglacier on Dask (``chunk`` x ``chunk``
    chunks, ``need`` passes), the numpy paper loop and the competitors on one frame, in
    that order, and the passes of the paper loop."""
    t_x, out_x = best_of(lambda: xglacier_eager(frame), repeats)
    cube = make_cube(frame, chunk)
    t_d, out_d = best_of(lambda: xglacier_dask(cube, need), repeats)
    t0 = time.perf_counter()
    out_ref, ref_passes = paper_loop(frame)
    t_ref = time.perf_counter() - t0
    rows = [("xglacier eager (numba)", t_x, out_x),
            (f"xglacier dask 2 threads (max_iter={need})", t_d, out_d),
            ("numpy paper loop (reference, 1 run)", t_ref, out_ref)]
    return rows + competitors(frame, repeats), ref_passes


def representative_crop(missing: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size`` crop whose missing fraction is closest to the frame's."""
    target = missing.mean()
    n = missing.shape[0]
    starts = range(0, n - size + 1, size // 2)
    return min(
        ((y, x) for y in starts for x in starts),
        key=lambda c: abs(missing[c[0]:c[0] + size, c[1]:c[1] + size].mean() - target),
    )


# --------------------------------------------------------------------------- cases
def synthetic_case(n: int, crop: int, chunk: int, repeats: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    truth = textured_field(n, rng)
    holes = slc_off_stripes((n, n), period=34, max_width=12, angle_deg=12,
                            offset=rng.uniform(0, 34))
    stripe_frac = holes.mean()
    nblobs = add_ellipses(holes, np.ones_like(holes), rng, target=0.25, radii=(4, 24))
    frame = truth.copy()
    frame[holes] = np.nan
    need = passes_needed(holes)
    print(f"\n=== Case 1: synthetic {n}x{n} float32 field, seed {seed} ===")
    print(f"missing {holes.mean():.1%} ({holes.sum()} px): stripes {stripe_frac:.1%} "
          f"(period 34 px, 1..12 px wide, tilted 12 deg) + {nblobs} ellipses (semi-axes 4..24 px)")
    print(f"passes needed to fill everything: {need} (xglacier eager and reference: "
          f"max_iter=None; dask: max_iter={need}, halo {2 * need} px, chunks {chunk}x{chunk})")

    rows, ref_passes = time_methods(frame, chunk, need, repeats)
    (_, t_x, out_x), (_, _, out_d), (_, t_ref, out_ref) = rows[:3]
    print_table(f"Full frame {n}x{n} (ratio = time / xglacier eager time; RMSE over all "
                f"{holes.sum()} punched px; ref = numpy paper loop, {ref_passes} passes)",
                rows, t_x, truth, holes, out_ref)

    y0, x0 = representative_crop(holes, crop)
    sub = np.ascontiguousarray(frame[y0:y0 + crop, x0:x0 + crop])
    sub_truth = truth[y0:y0 + crop, x0:x0 + crop]
    sub_holes = holes[y0:y0 + crop, x0:x0 + crop]
    t_xc, out_xc = best_of(lambda: xglacier_eager(sub), repeats)
    t0 = time.perf_counter()
    out_rc, rc_passes = paper_loop(sub)
    t_rc = time.perf_counter() - t0
    print_table(f"Crop {crop}x{crop} at (y={y0}, x={x0}), same hole pattern, missing "
                f"{sub_holes.mean():.1%}; both filled on the crop alone ({rc_passes} passes); "
                "ratio = time / xglacier-on-crop time",
                [("xglacier eager on crop", t_xc, out_xc),
                 ("numpy paper loop on crop (1 run)", t_rc, out_rc)],
                t_xc, sub_truth, sub_holes, out_rc)
    return {
        "ref_ratio_full": t_ref / t_x, "ref_ratio_crop": t_rc / t_xc,
        "ref_same_full": same(out_ref, out_x) == "yes" and same(out_d, out_x) == "yes",
        "ref_same_crop": same(out_rc, out_xc) == "yes",
        "gdal_ratio": rows[3][1] / t_x,
    }


def athabasca_case(repeats: int, seed: int) -> dict:
    with rasterio.open(ATHABASCA) as src:
        dn = src.read(1)
        nodata = src.nodata
    nodata_block = dn == nodata
    truth = (dn.astype(np.float64) * 1e-4).astype(np.float32)
    valid = ~nodata_block
    rng = np.random.default_rng(seed)
    shape = dn.shape
    stripes = slc_off_stripes(shape, period=17, max_width=5, angle_deg=12,
                              offset=rng.uniform(0, 17)) & valid
    punched = stripes.copy()
    nblobs = add_ellipses(punched, valid, rng, target=0.25, radii=(2, 8))
    frame = truth.copy()
    frame[punched | nodata_block] = np.nan
    need = passes_needed(punched | nodata_block)
    print(f"\n=== Case 2: Athabasca HLS L30 B03 (green), {shape[0]}x{shape[1]}, "
          f"seed {seed} ===")
    print(f"{ATHABASCA.name}: int16 DN * 1e-4, nodata {nodata:g} ({nodata_block.sum()} px, "
          "left as a gap, excluded from RMSE)")
    print(f"punched {punched.sum()} px = {punched.sum() / valid.sum():.1%} of valid pixels: "
          f"stripes {stripes.sum()} px (period 17 px, 1..5 px wide) + {nblobs} ellipses "
          f"(semi-axes 2..8 px); passes needed {need} (dask: max_iter={need}, chunks 128x128)")

    rows, ref_passes = time_methods(frame, 128, need, repeats)
    (_, t_x, out_x), (_, _, out_d), (_, t_ref, out_ref) = rows[:3]
    print_table(f"Athabasca (ratio = time / xglacier eager time; RMSE over the {punched.sum()} "
                f"punched px only; ref = numpy paper loop, {ref_passes} passes)",
                rows, t_x, truth, punched, out_ref)
    return {"ref_ratio": t_ref / t_x, "gdal_ratio": rows[3][1] / t_x,
            "ref_same": same(out_ref, out_x) == "yes" and same(out_d, out_x) == "yes"}


def warm_up() -> None:
    """Compile (or load from cache) the Numba kernel and exercise every code path once."""
    rng = np.random.default_rng(1)
    small = rng.random((64, 64)).astype(np.float32)
    small[20:30, 10:40] = np.nan
    xglacier_eager(small)
    xglacier_dask(make_cube(small, 32), 8)
    gdal_fill(small)
    for flag in (cv2.INPAINT_TELEA, cv2.INPAINT_NS):
        cv2_fill(small, flag, "float32")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="1024x1024 synthetic frame, 256 crop, 256 chunks")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per fast method")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-athabasca", action="store_true",
                        help="run the synthetic case only (no ../shared/data needed)")
    args = parser.parse_args(argv)
    if not args.no_athabasca and not ATHABASCA.exists():
        sys.exit(f"bench_gapfill: {ATHABASCA} not found. The real-data case needs the shared "
                 "data folder beside the project root (../shared/data, not in a plain clone); "
                 "pass --no-athabasca to run the synthetic case only.")
    n, crop, chunk = (1024, 256, 256) if args.quick else (2048, 512, 512)

    print(f"bench_gapfill  {dt.datetime.now().isoformat(timespec='seconds')}  "
          f"{platform.machine()}  {os.cpu_count()} cores  python {platform.python_version()}")
    print(f"xglacier {xglacier.__version__}  numpy {np.__version__}  numba {numba.__version__}  "
          f"dask {dask.__version__}  rasterio {rasterio.__version__} "
          f"(GDAL {rasterio.__gdal_version__})  opencv {cv2.__version__}")
    print(f"timings: best of {args.repeats} (the numpy paper loop: 1 run), after a warm-up "
          "that compiles the Numba kernel")
    warm_up()

    syn = synthetic_case(n, crop, chunk, args.repeats, args.seed)
    ath = None if args.no_athabasca else athabasca_case(args.repeats, args.seed)

    print("\n=== Targets ===")
    ok_a = syn["ref_ratio_crop"] >= 100 and syn["ref_same_crop"]
    print(f">= 100x faster than the numpy paper loop with identical output: "
          f"{'MET' if ok_a else 'NOT MET'} ({syn['ref_ratio_crop']:.0f}x on the {crop} crop, "
          f"{syn['ref_ratio_full']:.0f}x on the full {n} frame"
          + (f", {ath['ref_ratio']:.0f}x on Athabasca" if ath else "")
          + f"; identical: crop {syn['ref_same_crop']}, full frame {syn['ref_same_full']}"
          + (f", Athabasca {ath['ref_same']}" if ath else "") + ")")
    ok_b = syn["gdal_ratio"] >= 2
    verdict = "MET" if ok_b else "NOT MET"
    line = (f">= 2x faster than gdal fillnodata: {verdict} on the {n} frame "
            f"({syn['gdal_ratio']:.2f}x)")
    if ath:
        ok_ath = "met" if ath["gdal_ratio"] >= 2 else "not met"
        line += (f"; on the small Athabasca scene {ok_ath} ({ath['gdal_ratio']:.2f}x, "
                 "millisecond timings dominated by fixed costs)")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
