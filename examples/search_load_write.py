"""Search -> load -> preprocess -> write: Landsat over a glacier, from any STAC API.

By default it asks Microsoft Planetary Computer (``--url``) for Landsat Collection 2
Level-2 scenes over the Parvati glacier, India. Planetary Computer serves the metadata
freely, but its asset URLs must be signed before they can be read: install
``planetary-computer`` (``pip install planetary-computer``; not an xglacier dependency)
and the script passes ``planetary_computer.sign_inplace`` as the search ``modifier``.
Any other STAC API works the same, e.g. a local ``rustac serve`` on loopback::

    python examples/search_load_write.py --url http://127.0.0.1:7822 --sign no \\
        --bbox 77.489 32.215 77.505 32.224 --start 2020-01-01 --end 2020-12-31 --out out/

Writes ``<out>/scenes.zarr`` (the loaded cube, appended to on later runs with new
scenes) and ``<out>/ndsi_quarterly.nc`` (cloud-masked, gap-filled NDSI composites).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import xglacier
from xglacier.errors import StoreError
from xglacier.io.stac import PLANETARY_COMPUTER, load, search  # xglacier.search, xglacier.load
from xglacier.io.store import to_netcdf, to_zarr


def signer(url: str, sign: str):
    """``planetary_computer.sign_inplace`` for Planetary Computer (or with --sign yes)."""
    if sign == "no" or (sign == "auto" and "planetarycomputer" not in url):
        return None
    try:
        import planetary_computer
    except ImportError as err:
        raise SystemExit(
            f"{url} needs signed asset URLs: pip install planetary-computer (or pass --sign no)"
        ) from err
    return planetary_computer.sign_inplace


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default=PLANETARY_COMPUTER, help="STAC API root (default: Planetary Computer)")
    p.add_argument("--collection", default="landsat-c2-l2")
    p.add_argument("--bbox", type=float, nargs=4, default=(77.488, 31.993, 77.821, 32.225),
                   metavar=("WEST", "SOUTH", "EAST", "NORTH"), help="degrees (default: Parvati glacier)")
    p.add_argument("--start", default="2021-01-01")
    p.add_argument("--end", default="2021-12-31")
    p.add_argument("--max-cloud", type=float, default=20.0, help="scene cloud cover limit, percent")
    p.add_argument("--sign", choices=("auto", "yes", "no"), default="auto",
                   help="sign asset URLs with planetary_computer (auto: for Planetary Computer only)")
    p.add_argument("--out", type=Path, default=Path("glacier-output"))
    args = p.parse_args(argv)

    # 1. search: validated bbox, retries on transient HTTP errors, cloud limit server- or client-side
    items = search(args.bbox, args.start, args.end, max_cloud=args.max_cloud, collection=args.collection,
                   url=args.url, modifier=signer(args.url, args.sign))
    print(f"{len(items)} scenes from {items[0].datetime:%Y-%m-%d} to {items[-1].datetime:%Y-%m-%d}")

    # 2. load: a lazy (time, y, x) cube on one UTM grid, reflectance scaled, nodata -> NaN
    cube = load(items, bands=["green", "swir16", "qa_pixel"], resolution=30, bbox=args.bbox)
    print(f"cube: {dict(cube.sizes)} in {cube.rio.crs}, chunks {cube.green.data.chunksize}")

    # 3. preprocess: still lazy until written
    kept = xglacier.filter_scenes(cube, max_cloud=args.max_cloud, max_missing=0.5)
    ndsi = xglacier.ndsi(xglacier.fill_gaps(xglacier.mask_clouds(kept), empty="keep"))
    quarterly = xglacier.composite(ndsi, freq="3MS")

    # 4. write, atomically: a store is either complete or absent, never half written
    args.out.mkdir(parents=True, exist_ok=True)
    scenes = args.out / "scenes.zarr"
    try:
        # creates it (Zarr v2, which GDAL and QGIS open), or appends newer scenes in its format
        to_zarr(cube, scenes, append_dim="time")
    except StoreError as err:  # e.g. the same scenes again, or another grid
        print(f"not appended: {err}")
    out = to_netcdf(quarterly, args.out / "ndsi_quarterly.nc")
    print(f"wrote {scenes} and {out} ({quarterly.sizes['time']} quarters, {kept.sizes['time']} scenes used)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
