"""Open local Landsat / HLS files as one scene cube: three dates of Athabasca Glacier.

The real crops (HLS L30 2020-08-16, HLS S30 2020-09-09, a Sentinel-2 scene of 2020-09-11
on a grid one pixel off) live in ``../shared/data/athabasca`` beside the project, not in a
clone. Run from the repository root::

    python examples/open_local_scenes.py
    python examples/open_local_scenes.py --data my_scenes/ "more/*_SR_B*.TIF" --out cube.zarr

Without the crops, point ``--data`` at folders or glob patterns of your own single-band
GeoTIFFs named as USGS and NASA distribute them (``LC08_L2SP_..._SR_B3.TIF``,
``HLS.L30.T11UNU.2020229T183919.v2.0.B03.tif``); files named otherwise need
``band_names=`` (see ``docs/io.md``). The script prints each scene, the glacier's NDSI per
date, writes the cube as Zarr v2 and opens it again with GDAL.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import rasterio

import xglacier
from xglacier.errors import GridMismatchError
from xglacier.io.local import open_scenes  # xglacier.open_scenes

ATHABASCA = Path(__file__).resolve().parents[2] / "shared" / "data" / "athabasca"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", default=[str(ATHABASCA), str(ATHABASCA / "shifted_20200911")],
                   help="folders, files or glob patterns (default: the Athabasca crops)")
    p.add_argument("--out", type=Path, default=Path("athabasca-output") / "scenes.zarr")
    args = p.parse_args(argv)
    missing = [d for d in args.data if not any(c in d for c in "*?[") and not Path(d).exists()]
    if missing:
        print(f"not found: {', '.join(missing)}\nThe Athabasca crops are not part of a clone: pass --data "
              "with folders of your own Landsat Collection 2 L2 or HLS GeoTIFFs.")
        return 1

    # 1. open: bands and times from the file names, one grid, checked; lazy
    try:
        cube = open_scenes(args.data)
    except GridMismatchError as err:
        print(f"the scenes are not on one grid:\n  {err}\n-> resampled by nearest neighbour (for a "
              "whole-pixel offset that is an exact crop)")
        cube = open_scenes(args.data, resampling="nearest")
    t = cube.rio.transform()
    print(f"cube {dict(cube.sizes)}, bands {list(cube.data_vars)}, {abs(t.a):g} m pixels, "
          f"origin ({t.c:.0f}, {t.f:.0f})")

    # 2. look: per scene, missing pixels and NDSI (snow and ice > 0.4)
    if {"green", "swir16"} <= set(cube.data_vars):
        ndsi = xglacier.ndsi(cube).compute()
        for i in range(cube.sizes["time"]):
            missing_px = int(np.isnan(cube.green[i]).sum())
            snowy = float((ndsi[i] > 0.4).mean())
            print(f"  {str(cube.time.values[i])[:10]} {cube.platform.values[i]:<11} "
                  f"{cube.id.values[i]:<26} {missing_px:4d} pixels without data, NDSI > 0.4 on "
                  f"{snowy:.0%} of the scene")

    # 3. write: Zarr v2 by default, which GDAL (3.4 and later) reads with its CRS and transform
    args.out.parent.mkdir(parents=True, exist_ok=True)
    xglacier.to_zarr(cube, args.out, mode="w")
    band = next(iter(cube.data_vars))
    with rasterio.open(f'ZARR:"{args.out}":/{band}') as src:
        print(f"GDAL reads {args.out}/{band}: {src.count} scenes of {src.height}x{src.width}, "
              f"transform matches: {src.transform == t}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
