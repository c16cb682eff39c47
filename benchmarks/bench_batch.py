"""Many glaciers: ``run_glaciers`` on 1 and 2 workers against a plain loop of ``process_glacier``.

Eight synthetic glaciers (64x64 px, one year of scenes, UTM 43N and 44N) are written as
Landsat-named COGs, one folder per glacier, and processed from these local scenes (no
server: the figures are the orchestration's and the pipeline's, not a network's). Three
configurations, interleaved, each repeated ``--repeat`` times into a fresh output folder:

- ``loop``: ``process_glacier`` called on each glacier in a plain loop, in this process;
- ``1 worker`` / ``2 workers``: ``run_glaciers`` on a warm LocalCluster (started once,
  with run_glaciers' own settings, and warmed by an untimed run).

Printed: the median wall time of each, its CPU/wall ratio (driver and workers together;
a ratio far below the worker count means the machine was busy with something else), the
load average, the speed-up of 2 workers over 1 (target >= 1.8) and the overhead of
1 worker over the loop (target <= 1.1).

``--malloc`` instead measures one glacier in a worker whose Nanny sets
``MALLOC_TRIM_THRESHOLD_=65536`` (distributed's default) against one where it is unset
(run_glaciers' choice) and in-process: the median of the pipeline's own seconds.

Run (from the project root): ``python benchmarks/bench_batch.py [--glaciers 16 --repeat 3]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

CODES = {"green": "SR_B3", "swir16": "SR_B6", "nir08": "SR_B5", "qa_pixel": "QA_PIXEL"}
ZONES = ((32643, 734460.0, 3568110.0), (32644, 220020.0, 3568110.0))


def write_glaciers(root: Path, n: int, size: int):
    """Scenes of ``n`` glaciers as COGs named like USGS files; return their outlines."""
    import geopandas as gpd
    import rasterio
    import shapely
    from pyproj import Transformer

    import xglacier
    from xglacier.landsat import SR_OFFSET, SR_SCALE

    ids, geoms = [], []
    for k in range(n):
        epsg, x0, y0 = ZONES[k % 2]
        x0, y0 = x0 + 30 * 200 * (k // 2), y0 - 30 * 150 * (k // 2)
        cube, _ = xglacier.synthetic_cube(shape=(size, size), start="2020-01-01", end="2021-01-01",
                                          seed=100 + k, crs=f"EPSG:{epsg}", origin=(x0, y0))
        cube = cube[list(CODES)].compute()
        folder = root / "scenes" / f"B{k:02d}"
        folder.mkdir(parents=True)
        for t in range(cube.sizes["time"]):
            scene = cube.isel(time=t)
            day = np.datetime_as_string(scene.time.values, unit="D").replace("-", "")
            for band, code in CODES.items():
                v = scene[band].values
                data = v.astype(np.uint16) if band == "qa_pixel" else np.where(
                    np.isnan(v), 0, np.round((v - SR_OFFSET) / SR_SCALE)).astype(np.uint16)
                with rasterio.open(folder / f"LC08_L2SP_147038_{day}_20210101_02_T1_{code}.TIF", "w",
                                   driver="COG", height=size, width=size, count=1, dtype="uint16",
                                   crs=f"EPSG:{epsg}", transform=cube.rio.transform(recalc=True),
                                   nodata=1 if band == "qa_pixel" else 0, compress="deflate") as dst:
                    dst.write(data, 1)
        half = size // 3 - k % 3  # sizes differ: the order is known
        cx, cy = x0 + 15 * size, y0 - 15 * size
        lon, lat = Transformer.from_crs(epsg, 4326, always_xy=True).transform(
            [cx - 30 * half, cx + 30 * half, cx + 30 * half, cx - 30 * half],
            [cy - 30 * half, cy - 30 * half, cy + 30 * half, cy + 30 * half])
        ids.append(f"B{k:02d}")
        geoms.append(shapely.Polygon(zip(lon, lat, strict=True)))
    return gpd.GeoDataFrame({"RGIId": ids}, geometry=geoms, crs=4326)


def cluster(n_workers: int, **config):
    import dask
    from distributed import Client, LocalCluster

    from xglacier.batch.run import CLUSTER_CONFIG

    with dask.config.set({**CLUSTER_CONFIG, **config}):
        lc = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=":0")
    return lc, Client(lc)


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


def timed(fn, pids: list[int]) -> tuple[float, float]:
    c0, t0 = cpu_seconds(pids), time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    return wall, (cpu_seconds(pids) - c0) / wall


def bench_scaling(root: Path, outlines, config, repeat: int) -> None:
    from xglacier.batch import process_glacier, read_outlines, run_glaciers

    glaciers = read_outlines(outlines)
    clusters = {name: cluster(n) for name, n in (("1 worker", 1), ("2 workers", 2))}
    pids = {name: [os.getpid(), *c.run(os.getpid).values()] for name, (_, c) in clusters.items()}
    pids["loop"] = [os.getpid()]
    for name, (_, c) in clusters.items():  # warm: imports, caches, first-call costs
        run_glaciers(outlines, root / f"warm-{name}", config=config, client=c, progress=False)
    for g in glaciers[:1]:
        process_glacier(g, root / "warm-loop" / g.id, config)
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in ("loop", "1 worker", "2 workers")}
    for rep in range(repeat):
        for name in runs:
            out = root / f"out-{rep}-{name.replace(' ', '')}"

            def go(name=name, out=out):
                if name == "loop":
                    for g in sorted(glaciers, key=lambda g: -g.area_km2):
                        process_glacier(g, out / g.id, config)
                else:
                    table = run_glaciers(outlines, out, config=config, client=clusters[name][1],
                                         progress=False)
                    assert table["status"].eq("done").all(), table[["id", "status", "error_message"]]

            runs[name].append(timed(go, pids[name]))
            print(f"  repeat {rep + 1} {name:>9}: {runs[name][-1][0]:6.2f} s wall, CPU/wall "
                  f"{runs[name][-1][1]:.2f}, load {os.getloadavg()[0]:.2f}", flush=True)
            shutil.rmtree(out)
    for _, c in clusters.values():
        c.close()
    for lc, _ in clusters.values():
        lc.close()
    med = {k: statistics.median(w for w, _ in v) for k, v in runs.items()}
    print(f"\n{len(glaciers)} glaciers, median of {repeat} (wall s, CPU/wall):")
    for k, v in runs.items():
        print(f"  {k:>9}: {med[k]:6.2f} s   CPU/wall {statistics.median(r for _, r in v):.2f}")
    print(f"  speed-up 2 workers vs 1: {med['1 worker'] / med['2 workers']:.2f}x (target >= 1.8)")
    print(f"  overhead 1 worker vs plain loop: {med['1 worker'] / med['loop']:.2f}x (target <= 1.1)")


def measured_glacier(glacier, out: str, config) -> tuple[float, float, int]:
    """Process one glacier here; return its wall seconds, CPU seconds and minor page faults.

    CPU time and page faults depend little on other load on the machine, wall time a lot.
    """
    import resource

    from xglacier.batch import process_glacier

    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    process_glacier(glacier, Path(out) / glacier.id, config)
    r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
    return wall, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime), r1.ru_minflt - r0.ru_minflt


def bench_malloc(root: Path, outlines, config, repeat: int) -> None:
    from xglacier.batch import read_outlines

    glacier = max(read_outlines(outlines), key=lambda g: g.area_km2)
    env = "distributed.nanny.pre-spawn-environ"
    # unset first: a Nanny copies its variables into this process's environment, which
    # later workers inherit
    settings = {"unset (glibc default)": {f"{env}.MALLOC_TRIM_THRESHOLD_": None},
                "MALLOC_TRIM_THRESHOLD_=65536": {f"{env}.MALLOC_TRIM_THRESHOLD_": 65536},
                "MMAP 32 MiB, TRIM 128 MiB": {f"{env}.MALLOC_TRIM_THRESHOLD_": 1 << 27,
                                              f"{env}.MALLOC_MMAP_THRESHOLD_": 1 << 25}}
    os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    clusters = {k: cluster(1, **v) for k, v in settings.items()}
    runs: dict[str, list[tuple[float, float, int]]] = {k: [] for k in [*settings, "in-process"]}
    for rep in range(repeat + 1):  # the first round warms up
        for name in runs:
            out = str(root / f"m-{rep}-{len(runs[name])}-{name[:5]}")
            if name == "in-process":
                got = measured_glacier(glacier, out, config)
            else:
                got = clusters[name][1].submit(measured_glacier, glacier, out, config, pure=False).result()
            if rep:
                runs[name].append(got)
                print(f"  repeat {rep} {name:>29}: {got[0]:.2f} s wall, {got[1]:.2f} s CPU, "
                      f"{got[2]} minor faults, load {os.getloadavg()[0]:.2f}", flush=True)
    for lc, c in clusters.values():
        c.close()
        lc.close()
    print(f"\none glacier ({glacier.id}), median of {repeat}:")
    for k, v in runs.items():
        print(f"  {k:>29}: {statistics.median(r[0] for r in v):.2f} s wall, "
              f"{statistics.median(r[1] for r in v):.2f} s CPU, {statistics.median(r[2] for r in v):.0f} "
              "minor page faults")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # 16: with 8 unequal glaciers on 2 workers the ratio is mostly the tail
    parser.add_argument("--glaciers", type=int, default=16)
    parser.add_argument("--size", type=int, default=64, help="pixels per side of each glacier's scenes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--malloc", action="store_true", help="measure MALLOC_TRIM_THRESHOLD_ instead")
    args = parser.parse_args()
    from xglacier.batch import BatchConfig

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        outlines = write_glaciers(root, args.glaciers, args.size)
        config = BatchConfig(local_scenes=str(root / "scenes" / "{id}"), buffer_m=150.0, products=("flow",),
                             max_cloud=None, platforms=None)
        if args.malloc:
            bench_malloc(root, outlines, config, args.repeat)
        else:
            bench_scaling(root, outlines, config, args.repeat)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
