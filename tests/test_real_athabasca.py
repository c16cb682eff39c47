"""Tests on real HLS v2 crops of Athabasca Glacier (``../shared/data/athabasca``).

The data live beside the project, never inside it; the whole module is skipped when
the folder is absent (a user's clone has no ``../shared``). Known facts about the files
are listed in ``shared/data/README.md``. The scenes are opened with ``open_scenes``, whose
reads are checked here against rasterio; ``tests/test_open_scenes.py`` covers the same
behaviour on GeoTIFFs it writes itself.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import dask.array as dsa
import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
import rasterio
import rioxarray
import xarray as xr
from affine import Affine
from rasterio import features
from scipy import ndimage

import xglacier
from xglacier.errors import GridMismatchError
from xglacier.io.local import open_scenes

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "athabasca"
if not DATA.is_dir():
    pytest.skip(
        f"real Athabasca HLS crops not found at {DATA} (they live in ../shared/data, "
        "beside the project, and are not part of a clone)",
        allow_module_level=True,
    )

SCALE = 1e-4
NODATA = -9999
L30_BANDS = {
    "blue": "B02", "green": "B03", "red": "B04",
    "nir08": "B05", "swir16": "B06", "swir22": "B07",
}
S30_BANDS = {
    "blue": "B02", "green": "B03", "red": "B04",
    "nir08": "B8A", "swir16": "B11", "swir22": "B12",
}
L30_GAP_PIXELS = 897
SQUARE = np.ones((3, 3), dtype=bool)
SHIFTED = DATA / "shifted_20200911"
TIMES = pd.to_datetime(["2020-08-16", "2020-09-09", "2020-09-11"]).as_unit("ns")


def direct(path: Path) -> np.ndarray:
    """A band file read with rasterio and scaled by hand: HLS DN * 1e-4, -9999 as NaN."""
    with rasterio.open(path) as src:
        dn = src.read(1)
    assert dn.dtype == np.int16 and src.nodata == NODATA, path.name
    return np.where(dn == NODATA, np.nan, dn * SCALE).astype(np.float32)


@pytest.fixture(scope="module")
def l30() -> xr.Dataset:
    return open_scenes(sorted(DATA.glob("athabasca_2020229_B0*_L30.tif"))).load()


@pytest.fixture(scope="module")
def s30() -> xr.Dataset:
    return open_scenes(sorted(DATA.glob("athabasca_2020253_*_S30.tif"))).load()


@pytest.fixture(scope="module")
def three() -> xr.Dataset:
    """The three dates in one call; 2020-09-11 is one pixel off, so it is resampled (exactly)."""
    return open_scenes([DATA, SHIFTED], resampling="nearest")


def test_three_dates_refused_without_resampling() -> None:
    with pytest.raises(GridMismatchError) as err:
        open_scenes([DATA, SHIFTED])
    msg = str(err.value)
    assert "shifted_20200911/athabasca_B02_20200911.tif is not on the grid" in msg
    assert "207x216 pixels of 30 m, origin (477840, 5784510)" in msg
    assert "205x215 pixels of 30 m, origin (477870, 5784480)" in msg


def test_three_dates_in_one_call(three: xr.Dataset, no_compute) -> None:
    assert list(three.data_vars) == list(L30_BANDS)  # the DEM and shadow mask are not bands
    assert three.sizes == {"time": 3, "y": 205, "x": 215}
    assert three.time.values.tolist() == TIMES.values.tolist()
    assert list(three.platform.values) == ["hls-l30", "hls-s30", "sentinel-2"]
    assert three.rio.transform() == Affine(30, 0, 477870, 0, -30, 5784480)
    # the L30 WKT has no EPSG code; the cube's CRS is the same projection as EPSG:32611
    assert three.rio.crs.to_epsg() is None
    to_utm = pyproj.Transformer.from_crs(pyproj.CRS.from_wkt(three.rio.crs.to_wkt()), "EPSG:32611",
                                         always_xy=True)
    assert np.allclose(to_utm.transform(477870.0, 5784480.0), (477870.0, 5784480.0), atol=1e-6)
    with no_compute():
        open_scenes([DATA, SHIFTED], resampling="nearest")  # lazy: headers only


def test_three_dates_values_against_rasterio(three: xr.Dataset) -> None:
    values = three.compute()
    for band in L30_BANDS:  # L30 nir08 is B05, S30 nir08 is B8A; swir16 B06 vs B11
        l30 = direct(DATA / f"athabasca_2020229_{L30_BANDS[band]}_L30.tif")
        s30 = direct(DATA / f"athabasca_2020253_{S30_BANDS[band]}_S30.tif")
        shifted = direct(SHIFTED / f"athabasca_{S30_BANDS[band]}_20200911.tif")
        np.testing.assert_array_equal(values[band][0].values, l30, err_msg=band)
        np.testing.assert_array_equal(values[band][1].values, s30, err_msg=band)
        # origin (477840, 5784510) is one pixel west and north: row 1, column 1 is the grid's first
        np.testing.assert_array_equal(values[band][2].values, shifted[1:206, 1:216], err_msg=band)
        assert int(np.isnan(values[band][0]).sum()) == L30_GAP_PIXELS


def test_three_dates_on_the_shifted_grid(three: xr.Dataset) -> None:
    like = rioxarray.open_rasterio(SHIFTED / "athabasca_B03_20200911.tif").squeeze("band", drop=True)
    cube = open_scenes([DATA, SHIFTED], like=like, bands=["green"], resampling="nearest")
    assert cube.sizes == {"time": 3, "y": 207, "x": 216} and cube.rio.transform() == like.rio.transform()
    green = cube.green.values
    np.testing.assert_array_equal(green[2], direct(SHIFTED / "athabasca_B03_20200911.tif"))
    np.testing.assert_array_equal(green[:2, 1:206, 1:216], three.green[:2].values)
    padding = [green[:2, 0], green[:2, 206:], green[:2, :, 0]]  # first row, last row, first column
    assert all(np.isnan(p).all() for p in padding)


@pytest.fixture(scope="module")
def l30_filled(l30: xr.Dataset) -> xr.Dataset:
    return xglacier.fill_gaps(l30)


@pytest.fixture(scope="module")
def outline_mask(l30: xr.Dataset) -> np.ndarray:
    """The glacier outline rasterized onto the cube grid (True inside)."""
    outline = gpd.read_file(DATA / "athabasca_outline.shp").to_crs(l30.rio.crs)
    mask = features.rasterize(
        ((geom, 1) for geom in outline.geometry),
        out_shape=(l30.sizes["y"], l30.sizes["x"]),
        transform=l30.rio.transform(),
        fill=0,
        dtype="uint8",
    ).astype(bool)
    return mask


def test_loader_follows_data_model(l30: xr.Dataset) -> None:
    assert l30["green"].dims == ("time", "y", "x")
    assert set(l30.data_vars) == set(L30_BANDS)
    assert all(v.dtype == np.float32 for v in l30.data_vars.values())
    assert l30["time"].dtype == np.dtype("datetime64[ns]")
    assert l30.sizes["y"] == 205 and l30.sizes["x"] == 215
    assert l30.rio.crs is not None
    # x, y are pixel centres: origin (477870, 5784480) at 30 m.
    assert float(l30.x[0]) == 477870 + 15 and float(l30.y[0]) == 5784480 - 15
    assert np.nanmax(l30["green"].values) < 1.5 and np.nanmin(l30["green"].values) > -0.2


def test_outline_covers_the_glacier(outline_mask: np.ndarray) -> None:
    # 16.1 km2 outline; 30 m pixels are 900 m2.
    area_km2 = outline_mask.sum() * 900 / 1e6
    assert 15.5 < area_km2 < 16.7


def test_l30_gap_is_897_pixels_in_every_band(l30: xr.Dataset) -> None:
    gap = np.isnan(l30["green"].values)
    assert int(gap.sum()) == L30_GAP_PIXELS
    for name in L30_BANDS:
        np.testing.assert_array_equal(np.isnan(l30[name].values), gap, err_msg=name)


def test_fill_gaps_fills_the_l30_gap(l30: xr.Dataset, l30_filled: xr.Dataset) -> None:
    gap = np.isnan(l30["green"].values)
    for name in L30_BANDS:
        filled = l30_filled[name].values
        assert not np.isnan(filled).any(), name
        assert l30_filled[f"unfilled_{name}"].values.tolist() == [0]
        # Valid pixels never change.
        np.testing.assert_array_equal(filled[~gap], l30[name].values[~gap], err_msg=name)
        assert l30_filled[name].dtype == np.float32
    assert l30_filled.attrs["gaps_unfilled"] == 0
    # The input is left as it was.
    assert int(np.isnan(l30["green"].values).sum()) == L30_GAP_PIXELS
    assert l30_filled.rio.crs == l30.rio.crs


def test_filled_values_lie_within_their_surroundings(
    l30: xr.Dataset, l30_filled: xr.Dataset
) -> None:
    """Each filled pixel is a weighted mean of pixels within 2 px of the gap (5x5 kernel),
    so it lies within the min..max of the valid pixels in a 5-pixel ring around it.

    The gap has several pieces; pieces closer than 5 px can feed each other, so they are
    grouped first (connected components of the gap dilated by 2 px).
    """
    gap = np.isnan(l30["green"].values[0])
    groups, ngroups = ndimage.label(ndimage.binary_dilation(gap, SQUARE, iterations=2), SQUARE)
    assert ngroups >= 1
    for name in L30_BANDS:
        orig = l30[name].values[0]
        filled = l30_filled[name].values[0]
        for label in range(1, ngroups + 1):
            pieces = gap & (groups == label)
            ring = ndimage.binary_dilation(pieces, SQUARE, iterations=5) & ~gap
            lo, hi = orig[ring].min(), orig[ring].max()
            vals = filled[pieces]
            assert vals.min() >= lo and vals.max() <= hi, (name, label, lo, hi)


def test_ndsi_inside_and_outside_the_outline(
    l30_filled: xr.Dataset, outline_mask: np.ndarray
) -> None:
    ndsi = xglacier.ndsi(l30_filled)
    assert ndsi.name == "ndsi"
    values = ndsi.isel(time=0).values
    # NaN only where green + swir16 is exactly 0 (a handful of dark pixels), as documented.
    total = (l30_filled["green"] + l30_filled["swir16"]).isel(time=0).values
    np.testing.assert_array_equal(np.isnan(values), total == 0)
    assert np.isnan(values).sum() < 20
    inside, outside = np.nanmean(values[outline_mask]), np.nanmean(values[~outline_mask])
    assert inside > 0.85, inside
    assert outside < 0.6, outside
    assert inside - outside > 0.3


def test_dask_chunked_pipeline_equals_numpy(
    l30: xr.Dataset, l30_filled: xr.Dataset
) -> None:
    chunked = l30.chunk({"time": 1, "y": 64, "x": 64})
    lazy_filled = xglacier.fill_gaps(chunked)
    lazy_ndsi = xglacier.ndsi(lazy_filled)
    # Still lazy: nothing has been computed.
    assert isinstance(lazy_filled["green"].data, dsa.Array)
    assert isinstance(lazy_ndsi.data, dsa.Array)
    filled = lazy_filled.compute()
    for name in L30_BANDS:
        np.testing.assert_array_equal(filled[name].values, l30_filled[name].values, err_msg=name)
        np.testing.assert_array_equal(
            filled[f"unfilled_{name}"].values, l30_filled[f"unfilled_{name}"].values
        )
    np.testing.assert_array_equal(
        lazy_ndsi.compute().values, xglacier.ndsi(l30_filled).values
    )


def test_s30_scene_loads_and_shows_the_glacier(
    s30: xr.Dataset, l30: xr.Dataset, outline_mask: np.ndarray
) -> None:
    assert s30.rio.transform() == l30.rio.transform()  # same grid: the outline mask applies
    assert set(s30.data_vars) == set(S30_BANDS)
    assert s30["green"].dims == ("time", "y", "x")
    assert s30["time"].values[0] == np.datetime64("2020-09-09", "ns")
    assert s30.rio.crs is not None
    ndsi = xglacier.ndsi(s30).isel(time=0).values
    assert np.nanmean(ndsi[outline_mask]) > 0.85
    assert np.nanmean(ndsi[~outline_mask]) < 0.6


def test_example_open_local_scenes_on_the_crops(tmp_path, capsys) -> None:
    path = Path(__file__).resolve().parents[1] / "examples" / "open_local_scenes.py"
    spec = importlib.util.spec_from_file_location("open_local_scenes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--out", str(tmp_path / "scenes.zarr")]) == 0
    out = capsys.readouterr().out
    assert "207x216 pixels of 30 m, origin (477840, 5784510)" in out
    assert f"{L30_GAP_PIXELS} pixels without data" in out and "transform matches: True" in out
