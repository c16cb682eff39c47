"""Segment real HLS crops of Athabasca Glacier with the demo's U-Net and the NDSI rule.

A smoke test on real data: the U-Net was trained on the synthetic sample only (run
``xglacier demo`` first, which writes ``demo-output/unet_small.json``), so its figure says
how far synthetic training carries, not how good a U-Net trained on real outlines is.

Run (the crops are in ``shared/data/athabasca`` beside the project, not in it)::

    python examples/segment_athabasca.py --data ../shared/data/athabasca \\
        --model demo-output/unet_small
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import rioxarray
import xarray as xr

import xglacier

#: HLS L30 (Landsat 8 OLI) band files by common name; int16, scale 1e-4, nodata -9999.
L30 = {"blue": "B02", "green": "B03", "red": "B04", "nir08": "B05", "swir16": "B06", "swir22": "B07"}


def load_l30(folder: Path, doy: str = "2020229", date: str = "2020-08-16") -> xr.Dataset:
    """One HLS L30 scene as an xglacier scene cube (time, y, x), reflectance, NaN nodata."""
    bands = {}
    ref = None
    for name, code in L30.items():
        raw = rioxarray.open_rasterio(folder / f"athabasca_{doy}_{code}_L30.tif").squeeze("band", drop=True)
        ref = raw if ref is None else ref
        refl = np.where(raw.values == raw.rio.nodata, np.nan, raw.values * 1e-4).astype(np.float32)
        bands[name] = (("time", "y", "x"), refl[None], {"units": "1"})
    assert ref is not None
    cube = xr.Dataset(bands, coords={"time": pd.DatetimeIndex([date]), "y": ref.y.values,
                                     "x": ref.x.values})
    return cube.rio.write_crs(ref.rio.crs).rio.write_transform(ref.rio.transform())


def glacier_iou(truth: np.ndarray, pred: np.ndarray) -> float:
    cm = xglacier.confusion_matrix(truth.astype(np.uint8), pred.astype(np.uint8), 2)
    return float(xglacier.scores(cm, classes=["background", "glacier"]).loc["glacier", "iou"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of the Athabasca crops")
    parser.add_argument("--model", default="demo-output/unet_small", help="U-Net checkpoint")
    args = parser.parse_args()

    cube = xglacier.fill_gaps(load_l30(args.data))
    dem = rioxarray.open_rasterio(args.data / "athabasca_dem.tif", masked=True).squeeze("band", drop=True)
    feats = xglacier.features(cube, dem=dem).compute()
    truth = xglacier.rasterize(args.data / "athabasca_outline.shp", like=feats).values > 0
    print(f"Athabasca HLS L30 2020-08-16: {feats.sizes['y']}x{feats.sizes['x']} px, outline "
          f"{truth.sum() * 900 / 1e6:.1f} km2 rasterized")

    rule = xglacier.ndsi_rule(feats).label.values > 0
    print(f"  NDSI > 0.4 rule, glacier vs background IoU: {glacier_iou(truth, rule):.3f}")

    model = xglacier.load_model(args.model, expect=feats)
    seg = xglacier.segment(feats, model, tile=128, overlap=32).compute()
    unet = seg.label.values > 0   # clean or debris-covered ice
    print(f"  U-Net trained on synthetic scenes only, glacier vs background IoU: "
          f"{glacier_iou(truth, unet):.3f}")


if __name__ == "__main__":
    main()
