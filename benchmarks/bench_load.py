"""Load and reduce a 24-scene, 1024x1024, 3-band cube from local COGs: xglacier.load vs rasterio.

The same pixels are read three ways, each in a fresh Python process (so peak memory is
the method's own), after one untimed pass that warms the OS file cache:

1. ``xglacier.load`` (stackstac, then odc-stac) from STAC items, then a lazy reduction
   computed with Dask's threaded scheduler on 2 threads;
2. plain rasterio: one windowed read per file, serially, with the same scaling,
   nodata handling and reduction in NumPy (what a script without xarray does);
3. the same rasterio reads spread over a 2-thread pool (the same parallelism as Dask).

Two reductions of scaled reflectance (C2 scaling ``DN * 0.0000275 - 0.2``, nodata -> NaN):
per-scene means over the image (and the cloudy fraction from QA_PIXEL bit 3), and the
per-pixel time mean (and the number of cloudy scenes). All methods must give the same
result. Times are the best of ``--repeat`` runs (wall clock, and the CPU time of that run,
which other load on the machine disturbs less); memory is the peak resident set size
above the process's size after its imports.

Run (from the project root): ``python benchmarks/bench_load.py [--scenes 24 --size 1024]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

SCALE, OFFSET, CLOUD_BIT = 0.0000275, -0.2, 3
BANDS = {"green": "SR_B3", "swir16": "SR_B6", "qa_pixel": "QA_PIXEL"}


# ---------------------------------------------------------------------------- the data
def make_data(folder: Path, scenes: int, size: int, seed: int = 0) -> list[dict]:
    """Write the COGs (deflate, 512-px tiles, like Landsat C2 on the cloud) and STAC items."""
    import rasterio
    from rasterio.transform import from_origin
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    transform = from_origin(399585.0, 3600015.0, 30, 30)  # a Landsat-like 30 m + 15 m lattice
    base = ndimage.gaussian_filter(rng.standard_normal((size, size)), 8)
    base = (base - base.min()) / np.ptp(base)
    items = []
    for k in range(scenes):
        noise = rng.normal(0, 0.01, (size, size))
        green = np.clip(0.1 + 0.7 * base + noise, 0, 1.5)
        swir = np.clip(0.3 - 0.25 * base + noise, 0, 1.5)
        nodata = np.zeros((size, size), bool)
        nodata[:, : int(rng.integers(0, size // 8))] = True  # a scene edge
        qa = np.full((size, size), 1 << 6, np.uint16)
        qa[np.roll(base, k * 37, axis=1) > 0.8] |= 1 << CLOUD_BIT
        qa[nodata] = 1
        arrays = {}
        for name, refl in (("green", green), ("swir16", swir)):
            dn = np.round((refl - OFFSET) / SCALE).astype(np.uint16)
            dn[nodata] = 0
            arrays[name] = dn
        arrays["qa_pixel"] = qa
        assets = {}
        for band, key in BANDS.items():
            path = folder / f"scene{k:02d}_{key}.tif"
            with rasterio.open(path, "w", driver="COG", width=size, height=size, count=1, dtype="uint16",
                               crs="EPSG:32643", transform=transform, nodata=1 if band == "qa_pixel" else 0,
                               compress="deflate", blocksize=512) as dst:
                dst.write(arrays[band], 1)
            raster = {"nodata": 1 if band == "qa_pixel" else 0, "data_type": "uint16"}
            if band != "qa_pixel":
                raster.update(scale=SCALE, offset=OFFSET)
            assets[key] = {"href": str(path), "type": "image/tiff; application=geotiff",
                           "roles": ["data"], "raster:bands": [raster],
                           "eo:bands": [{"name": key, "common_name": band}] if band != "qa_pixel" else []}
        items.append({
            "type": "Feature", "stac_version": "1.1.0", "id": f"scene{k:02d}", "links": [],
            "geometry": None, "properties": {
                "datetime": f"2020-{1 + k // 28:02d}-{1 + k % 28:02d}T05:30:00Z", "platform": "landsat-8",
                "eo:cloud_cover": 10.0, "proj:code": "EPSG:32643", "proj:shape": [size, size],
                "proj:transform": list(transform)[:6]},
            "assets": assets,
        })
    return items


# ----------------------------------------------------------------------------- methods
def reduce_xglacier(
    items: list[dict], engine: str, case: str, time_chunk: int | None,
) -> dict[str, np.ndarray]:
    import dask

    from xglacier.io.stac import load  # exported as xglacier.load

    chunks = None if time_chunk is None else {"time": time_chunk}  # None: xglacier's default
    ds = load(items, bands=list(BANDS), resolution=30, engine=engine, chunks=chunks)
    cloud = (ds.qa_pixel & (1 << CLOUD_BIT)) > 0
    dims = ("y", "x") if case == "scenes" else "time"
    # float64 sums, as the NumPy loop does, so that both give the same numbers
    green = ds.green.mean(dims, dtype="float64")
    swir = ds.swir16.mean(dims, dtype="float64")
    cloudy = cloud.mean(dims) if case == "scenes" else cloud.sum(dims)
    with dask.config.set(scheduler="threads", num_workers=2):
        g, s, c = dask.compute(green.data, swir.data, cloudy.data)
    return {"green": g.astype(np.float32), "swir16": s.astype(np.float32), "cloudy": c}


def _read_scene(item: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import rasterio
    from rasterio.windows import Window

    out = []
    for band, key in BANDS.items():
        with rasterio.open(item["assets"][key]["href"]) as src:
            dn = src.read(1, window=Window(0, 0, src.width, src.height))
        if band == "qa_pixel":
            out.append((dn & (1 << CLOUD_BIT)) > 0)
        else:
            refl = (dn * SCALE + OFFSET).astype(np.float32)
            refl[dn == 0] = np.nan
            out.append(refl)
    return tuple(out)


def reduce_rasterio(items: list[dict], threads: int, case: str) -> dict[str, np.ndarray]:
    size = items[0]["properties"]["proj:shape"]
    if case == "scenes":
        def scene(item: dict) -> tuple[float, float, float]:
            green, swir, cloud = _read_scene(item)
            return (np.nanmean(green, dtype=np.float64), np.nanmean(swir, dtype=np.float64),
                    cloud.mean())

        if threads == 1:
            rows = [scene(i) for i in items]
        else:
            with ThreadPoolExecutor(threads) as pool:
                rows = list(pool.map(scene, items))
        arr = np.array(rows)
        return {"green": arr[:, 0].astype(np.float32), "swir16": arr[:, 1].astype(np.float32),
                "cloudy": arr[:, 2]}
    sums = {b: np.zeros(size) for b in ("green", "swir16")}
    counts = {b: np.zeros(size, np.int32) for b in ("green", "swir16")}
    cloudy = np.zeros(size, np.int64)
    lock = threading.Lock()

    def add(item: dict) -> None:
        green, swir, cloud = _read_scene(item)
        with lock:
            for name, refl in (("green", green), ("swir16", swir)):
                ok = ~np.isnan(refl)
                sums[name][ok] += refl[ok]
                counts[name] += ok
            cloudy[...] += cloud

    if threads == 1:
        for item in items:
            add(item)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(add, items))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = {b: (sums[b] / counts[b]).astype(np.float32) for b in sums}
    return {**means, "cloudy": cloudy}


def run_one(method: str, items_path: Path, out_path: Path) -> None:
    """In a child process: time one method, sample its peak RSS, save its result."""
    import psutil

    items = json.loads(items_path.read_text())
    import dask  # noqa: F401  (imports are not part of the timing)
    import distributed  # noqa: F401  (dask imports it at the first compute)
    import rasterio  # noqa: F401

    import xglacier.io._engines  # noqa: F401  (stackstac and odc-stac, imported by load)

    proc = psutil.Process()
    base = peak = proc.memory_info().rss
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.01)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    kind, option, case = method.split(":")
    if kind == "xglacier":
        engine, chunk = option.split("/")
        result = reduce_xglacier(items, engine, case, None if chunk == "default" else int(chunk))
    else:
        result = reduce_rasterio(items, int(option), case)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    stop.set()
    thread.join()
    peak = max(peak, proc.memory_info().rss)
    np.savez(out_path, **result, elapsed=elapsed, cpu=cpu, peak=peak - base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the COGs there (default: a temp dir)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_one(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return

    import dask
    import odc.stac
    import rasterio
    import stackstac

    import xglacier

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.workdir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        items = make_data(folder, args.scenes, args.size)
        items_path = folder / "items.json"
        items_path.write_text(json.dumps(items))
        nbytes = sum(os.path.getsize(a["href"]) for i in items for a in i["assets"].values())
        print(f"bench_load  {datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%S}Z  {platform.machine()}  "
              f"{os.cpu_count()} cores  python {platform.python_version()}")
        print(f"xglacier {xglacier.__version__}  stackstac {stackstac.__version__}  "
              f"odc-stac {odc.stac.__version__}  dask {dask.__version__}  rasterio {rasterio.__version__} "
              f"(GDAL {rasterio.__gdal_version__})")
        print(f"data: {args.scenes} scenes x 3 bands (green, swir16, qa_pixel) of {args.size}x{args.size} "
              f"uint16 COGs, deflate, 512-px tiles: {nbytes / 1e6:.0f} MB on disk, "
              f"{args.scenes * 3 * args.size**2 * 2 / 1e6:.0f} MB of pixels "
              f"(written in {time.perf_counter() - t0:.1f} s)")
        print("reductions of scaled green and swir16 (nodata -> NaN) and of the QA cloud bit; default "
              "chunks: 1024x1024 px x 4 scenes")
        for i in items:  # warm the OS file cache for every method alike
            for a in i["assets"].values():
                Path(a["href"]).read_bytes()
        cases = {"scenes": "per-scene means (mean over y, x of each scene: 24 values per band)",
                 "composite": "time-mean composite (mean over time of each pixel: 1024x1024 per band)"}
        methods = ["rasterio:1", "rasterio:2", "xglacier:stackstac/default", "xglacier:odc/default",
                   "xglacier:stackstac/1"]
        labels = {"rasterio:1": "rasterio windowed reads, 1 thread",
                  "rasterio:2": "rasterio windowed reads, 2 threads",
                  "xglacier:stackstac/default": "xglacier.load stackstac (default chunks)",
                  "xglacier:odc/default": "xglacier.load odc-stac (default chunks)",
                  "xglacier:stackstac/1": "xglacier.load stackstac, 1 scene/chunk"}
        print(f"times: best of {args.repeat} runs, each in a fresh process "
              "(wall; cpu = user+sys of that run);")
        print("peak = max RSS above the process after its imports; xglacier computes with Dask's threaded "
              "scheduler, 2 threads")
        verdicts = []
        for case, title in cases.items():
            best: dict[str, tuple[float, float, float]] = {}
            results = {}
            for method in methods:
                runs = []
                for r in range(args.repeat):
                    out = folder / f"{method.replace(':', '-').replace('/', '-')}-{case}-{r}.npz"
                    subprocess.run([sys.executable, __file__, "--child", f"{method}:{case}", str(items_path),
                                    str(out)], check=True)
                    with np.load(out) as z:
                        runs.append((float(z["elapsed"]), float(z["cpu"]), float(z["peak"])))
                        results[method] = {k: z[k] for k in ("green", "swir16", "cloudy")}
                fastest = min(runs)
                best[method] = (fastest[0], fastest[1], max(r[2] for r in runs))
            ref = results["rasterio:1"]
            print(f"\n=== {title} ===")
            print(f"{'method':40s} {'wall (s)':>8s} {'cpu (s)':>8s} {'/ rio 1 thr':>11s} "
                  f"{'/ rio 2 thr':>11s} {'peak MB':>8s}  same result")
            print("-" * 104)
            for method in methods:
                t, c, p = best[method]
                same = all(np.array_equal(results[method][k], ref[k], equal_nan=True) for k in ref)
                close = all(np.allclose(results[method][k], ref[k], equal_nan=True, rtol=1e-6, atol=1e-7)
                            for k in ref)
                print(f"{labels[method]:40s} {t:8.3f} {c:8.3f} {t / best['rasterio:1'][0]:11.2f} "
                      f"{t / best['rasterio:2'][0]:11.2f} {p / 1e6:8.0f}  "
                      f"{'identical' if same else 'allclose' if close else 'DIFFERENT'}")
            ratio1 = best["xglacier:stackstac/default"][0] / best["rasterio:1"][0]
            ratio2 = best["xglacier:stackstac/default"][0] / best["rasterio:2"][0]
            verdict = "MET" if ratio1 <= 1.3 else "NOT MET"
            verdicts.append(f"{case}: {verdict} ({ratio1:.2f}x the 1-thread reads, "
                            f"{ratio2:.2f}x the 2-thread reads)")
        print("\ntarget: xglacier.load (stackstac, default chunks) <= 1.3x plain rasterio time")
        for v in verdicts:
            print("  " + v)


if __name__ == "__main__":
    main()
