"""Benchmark the review page: open a 2048x2048 scene with 500 polygons, edit, save.

Task: a 2048x2048 RGB scene (float32 reflectance, smooth random texture, 30 m pixels in
UTM 11N) and 500 predicted polygons (a 25 x 20 grid of 48-vertex rings, one in ten with a
hole), served by ``xglacier.review`` on 127.0.0.1 and opened in headless Chromium (the
system's ``chromium`` through Playwright).

Figures:

- ``start``: ``review()`` until it returns (reading and coarsening the scene to 1024 px,
  cutting the polygons into parts, starting the Bokeh server);
- ``page open`` (target < 5 s): ``page.goto`` until the map's Bokeh view reports that it
  has finished rendering (picture and polygons drawn), in a fresh browser page; best of
  ``--repeats`` (the machine is shared);
- ``save`` (target < 1 s): the Save button: the time from the click until the page says
  "Saved", with 10 polygons edited, 1 added and 5 deleted (through the page's widgets and
  mouse like ``tests/test_review_browser.py``); and the same save as the pure functions
  it runs (:func:`~xglacier.review.save.corrected` + ``write_corrected``), best of
  ``--repeats``.

Run from the project root: ``python benchmarks/bench_review.py`` (about 30 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import xarray as xr
from shapely.geometry import Point, Polygon

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests._browser import MapPage
from xglacier.review import review
from xglacier.review.save import Edits, corrected, prepare, write_corrected

X0, Y0, RES, N = 480000.0, 5700000.0, 30.0, 2048


def scene(rng: np.random.Generator) -> xr.Dataset:
    from scipy.ndimage import gaussian_filter

    bands = {}
    for name in ("red", "green", "blue"):
        noise = gaussian_filter(rng.standard_normal((N, N)).astype(np.float32), 6)
        bands[name] = (("y", "x"), (0.4 + noise * 2).astype(np.float32))
    coords = {"y": Y0 + RES * N - RES / 2 - RES * np.arange(N), "x": X0 + RES / 2 + RES * np.arange(N)}
    return xr.Dataset(bands, coords=coords).rio.write_crs("EPSG:32611")


def polygons(n_x: int = 25, n_y: int = 20) -> gpd.GeoDataFrame:
    geoms, names = [], []
    step_x, step_y = N * RES / n_x, N * RES / n_y
    for j in range(n_y):
        for i in range(n_x):
            c = Point(X0 + (i + 0.5) * step_x, Y0 + (j + 0.5) * step_y)
            ring = c.buffer(0.35 * min(step_x, step_y), quad_segs=12)
            k = len(geoms)
            hole = [c.buffer(0.1 * min(step_x, step_y), quad_segs=4).exterior] if k % 10 == 0 else []
            geoms.append(Polygon(ring.exterior, hole))
            names.append("debris_covered_ice" if k % 3 == 0 else "clean_ice")
    return gpd.GeoDataFrame({"class_name": names, "class": [2 if n[0] == "d" else 1 for n in names]},
                            geometry=geoms, crs="EPSG:32611")


def pure_save(gdf: gpd.GeoDataFrame, folder: Path, repeats: int) -> float:
    prep = prepare(gdf, resolution=RES)
    e = Edits.unedited(prep)
    for i in range(10):
        e.xs[i * 7][0] += 45.0
    for i in sorted(range(5), reverse=True):
        for col in (e.xs, e.ys, e.labels, e.pids):
            del col[100 + i]
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        kept, deleted = corrected(prep, e)
        write_corrected(kept, deleted, folder / "pure.gpkg")
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    from playwright.sync_api import sync_playwright

    rng = np.random.default_rng(0)
    ds, gdf = scene(rng), polygons()
    folder = Path(tempfile.mkdtemp(prefix="bench-review-"))
    t = time.perf_counter()
    server = review(gdf, ds, out=folder / "corrected.gpkg")
    start = time.perf_counter() - t
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), headless=True)
            opens = []
            for _ in range(args.repeats):
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                m = MapPage(page)
                opens.append(m.open(server.url, timeout=60))
                if len(opens) < args.repeats:
                    page.close()
            m.tool("Tap")
            for k in range(5):  # delete 5 polygons through the page
                cx, cy = gdf.geometry[100 + k * 3].exterior.coords[0]
                m.click(cx - 100, cy)
                m.wait_for(lambda d: len(d["selected"]) == 1, "a selected polygon")
                page.locator("button", has_text="Delete selected polygon").click()
            t = time.perf_counter()
            page.locator("button", has_text="Save to").click()
            while "Saved" not in (m.text("#message") if page.locator("#message").count() else ""):
                time.sleep(0.01)
            button_save = time.perf_counter() - t
            browser.close()
    finally:
        server.stop()
    saved = gpd.read_file(folder / "corrected.gpkg", layer="deleted")
    pure = pure_save(gdf, folder, args.repeats)
    vertices = sum(len(g.exterior.coords) for g in gdf.geometry)
    print(f"scene {N}x{N} RGB float32, {len(gdf)} polygons ({vertices} vertices), Chromium headless")
    print(f"start (review() until serving):         {start:6.2f} s")
    print(f"page open (goto -> map rendered), best: {min(opens):6.2f} s  (all: "
          f"{', '.join(f'{o:.2f}' for o in opens)}; target < 5 s)")
    print(f"save button -> 'Saved' ({len(saved)} deleted):   {button_save:6.2f} s  (target < 1 s)")
    print(f"save, pure functions (10 edited, 5 deleted), best: {pure:6.2f} s")
    print(f"load average at end: {os.getloadavg()}")
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
