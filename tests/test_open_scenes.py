"""open_scenes on GeoTIFFs written here: names, bands, scaling, nodata, times, grids, laziness.

Every expected value is computed from the DN arrays the test writes, independently of the
reader; grid cases (a one-pixel offset, another CRS, an equivalent CRS without EPSG code,
south-up files) either give the right pixels or a clear error.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import dask.array as dsa
import numpy as np
import pandas as pd
import pyproj
import pytest
import rasterio
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

import xglacier
from xglacier.errors import (
    AssetError,
    GridMismatchError,
    MetadataError,
    MissingBandError,
    ParameterError,
    TimeAxisError,
)
from xglacier.io.local import open_scenes

H, W = 40, 48
T0 = Affine(30.0, 0.0, 477870.0, 0.0, -30.0, 5784480.0)
UTM11 = "EPSG:32611"
#: the CRS the real HLS L30 files carry: UTM 11N on an unnamed WGS 84 datum, no EPSG code
HLS_WKT = (
    'PROJCS["UTM Zone 11, Northern Hemisphere",GEOGCS["Unknown datum based upon the WGS 84 ellipsoid",'
    'DATUM["Not specified (based on WGS 84 spheroid)",SPHEROID["WGS 84",6378137,298.257223563,'
    'AUTHORITY["EPSG","7030"]]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433,'
    'AUTHORITY["EPSG","9122"]]],PROJECTION["Transverse_Mercator"],PARAMETER["latitude_of_origin",0],'
    'PARAMETER["central_meridian",-117],PARAMETER["scale_factor",0.9996],PARAMETER["false_easting",500000],'
    'PARAMETER["false_northing",0],UNIT["metre",1,AUTHORITY["EPSG","9001"]],AXIS["Easting",EAST],'
    'AXIS["Northing",NORTH]]'
)
L30_CODES = {"blue": "B02", "green": "B03", "red": "B04", "nir08": "B05", "swir16": "B06", "swir22": "B07"}
S30_CODES = {"blue": "B02", "green": "B03", "red": "B04", "nir08": "B8A", "swir16": "B11", "swir22": "B12",
             "rededge071": "B05"}


def write(path: Path, dn: np.ndarray, *, transform: Affine = T0, crs: str = UTM11,
          nodata: float | None = -9999, dtype: str = "int16", scale: float | None = None,
          offset: float = 0.0, tags: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=dn.shape[1], height=dn.shape[0], count=1,
                       dtype=dtype, nodata=nodata, crs=crs, transform=transform, tiled=True,
                       blockxsize=16, blockysize=16) as f:
        f.write(dn[np.newaxis].astype(dtype))
        if scale is not None:
            f.scales, f.offsets = (scale,), (offset,)
        if tags:
            f.update_tags(**tags)
    return path


def dns(seed: int, shape: tuple[int, int] = (H, W), low: int = -100, high: int = 12000,
        gap: bool = True) -> np.ndarray:
    """int16 HLS-like DNs with a rectangular block of nodata."""
    out = np.random.default_rng(seed).integers(low, high, shape).astype(np.int16)
    if gap:
        out[5:9, 10:17] = -9999
    return out


def hls(dn: np.ndarray) -> np.ndarray:
    return np.where(dn == -9999, np.nan, dn * 1e-4).astype(np.float32)


def landsat(dn: np.ndarray) -> np.ndarray:
    return np.where(dn == 0, np.nan, dn * 0.0000275 - 0.2).astype(np.float32)


@pytest.fixture
def hls_folder(tmp_path) -> tuple[Path, dict]:
    """An L30 and an S30 scene named like the Athabasca crops, with Fmask."""
    raw = {}
    for doy, sensor, codes in (("2020229", "L30", L30_CODES), ("2020253", "S30", S30_CODES)):
        for i, (band, code) in enumerate(codes.items()):
            raw[sensor, band] = dns(hash((sensor, band)) % 1000 + i)
            write(tmp_path / f"glacier_{doy}_{code}_{sensor}.tif", raw[sensor, band])
        raw[sensor, "fmask"] = np.random.default_rng(len(sensor)).integers(0, 256, (H, W)).astype(np.uint8)
        write(tmp_path / f"glacier_{doy}_Fmask_{sensor}.tif", raw[sensor, "fmask"], dtype="uint8", nodata=255)
    write(tmp_path / "glacier_dem.tif", dns(99), nodata=-32768)  # not a band: left out of the folder
    (tmp_path / "glacier_2020229_B03_L30.tif.aux.xml").write_text("<PAMDataset/>")  # a GDAL sidecar
    return tmp_path, raw


def test_hls_bands_follow_each_sensor_table(hls_folder):
    folder, raw = hls_folder
    cube = open_scenes(folder)
    assert list(cube.data_vars) == ["blue", "green", "red", "nir08", "swir16", "swir22", "fmask"]
    assert cube.green.dims == ("time", "y", "x") and cube.green.dtype == np.float32
    assert list(cube.time.values) == list(pd.to_datetime(["2020-08-16", "2020-09-09"]).as_unit("ns"))
    assert list(cube.platform.values) == ["hls-l30", "hls-s30"]
    assert list(cube.id.values) == ["glacier_2020229_L30", "glacier_2020253_S30"]
    values = cube.compute()
    for t, sensor in enumerate(("L30", "S30")):
        for band in L30_CODES:  # S30 nir08 is B8A, swir16 B11: never B05/B06 as in L30
            np.testing.assert_array_equal(values[band][t].values, hls(raw[sensor, band]), err_msg=band)
        assert values.fmask.dtype == np.uint8
        np.testing.assert_array_equal(values.fmask[t].values, raw[sensor, "fmask"])
    assert int(np.isnan(values.green[0]).sum()) == 28  # the 4x7 nodata block
    assert np.array_equal(values.x, T0.c + 15 + 30 * np.arange(W)) and values.y[0] == T0.f - 15
    assert cube.rio.transform() == T0 and cube.rio.crs == CRS.from_string(UTM11)
    assert cube.green.encoding["grid_mapping"] == "spatial_ref"


def test_bands_and_missing_band(hls_folder):
    folder, raw = hls_folder
    cube = open_scenes(folder, bands=["swir16", "green"])
    assert list(cube.data_vars) == ["swir16", "green"]
    only_s30 = open_scenes(sorted(folder.glob("*_S30.tif")), bands="rededge071")
    np.testing.assert_array_equal(only_s30.rededge071[0].values, hls(raw["S30", "rededge071"]))
    with pytest.raises(MissingBandError, match=r"open_scenes: scene 'glacier_2020229_L30' .*rededge071"):
        open_scenes(folder, bands=["green", "rededge071"])


def test_hls_official_names(tmp_path):
    dn = {c: dns(i) for i, c in enumerate(("B05", "B8A", "B11"))}
    write(tmp_path / "HLS.L30.T11UNU.2020229T183919.v2.0.B05.tif", dn["B05"])
    write(tmp_path / "HLS.S30.T11UNU.2020253T184921.v2.0.B8A.tif", dn["B8A"])
    cube = open_scenes(tmp_path)
    assert list(cube.data_vars) == ["nir08"]
    assert [str(t) for t in cube.time.values.astype("datetime64[s]")] == ["2020-08-16T18:39:19",
                                                                           "2020-09-09T18:49:21"]
    assert list(cube.id.values) == ["HLS.L30.T11UNU.2020229T183919.v2.0",
                                    "HLS.S30.T11UNU.2020253T184921.v2.0"]
    np.testing.assert_array_equal(cube.nir08[1].values, hls(dn["B8A"]))


def test_landsat_collection2_names(tmp_path):
    rng = np.random.default_rng(3)
    raw = {}
    scenes = {
        "LC08_L2SP_043024_20200816_20200920_02_T1": {"green": "SR_B3", "nir08": "SR_B5", "swir16": "SR_B6"},
        "LE07_L2SP_043024_20200824_20200919_02_T1": {"green": "SR_B2", "nir08": "SR_B4", "swir16": "SR_B5"},
    }
    for scene, codes in scenes.items():
        for band, code in codes.items():
            raw[scene, band] = rng.integers(7273, 43636, (H, W)).astype(np.uint16)
            raw[scene, band][0, :5] = 0
            write(tmp_path / f"{scene}_{code}.TIF", raw[scene, band], dtype="uint16", nodata=0)
        raw[scene, "qa"] = rng.integers(0, 2**16, (H, W)).astype(np.uint16)
        write(tmp_path / f"{scene}_QA_PIXEL.TIF", raw[scene, "qa"], dtype="uint16", nodata=1)
        # surface temperature has another scaling: not a band open_scenes recognises
        write(tmp_path / f"{scene}_ST_B10.TIF", raw[scene, "qa"], dtype="uint16", nodata=0)
    cube = open_scenes(tmp_path).compute()
    assert list(cube.data_vars) == ["green", "nir08", "swir16", "qa_pixel"]
    # acquisition dates (the first date of the name), not processing dates
    assert list(cube.time.values) == list(pd.to_datetime(["2020-08-16", "2020-08-24"]).as_unit("ns"))
    assert list(cube.platform.values) == ["landsat-8", "landsat-7"]
    for t, scene in enumerate(scenes):
        for band in ("green", "nir08", "swir16"):  # LE07 SR_B4 is nir08, LC08 SR_B5 is
            np.testing.assert_array_equal(cube[band][t].values, landsat(raw[scene, band]), err_msg=band)
        assert cube.qa_pixel.dtype == np.uint16
        np.testing.assert_array_equal(cube.qa_pixel[t].values, raw[scene, "qa"])
    assert cube.green.attrs["units"] == "1"


def test_sentinel2_codes_without_product_token(tmp_path):
    dn = {c: dns(i) for i, c in enumerate(("B03", "B8A", "B11", "B05"))}
    for code in ("B03", "B8A", "B11"):
        write(tmp_path / "s2" / f"glacier_{code}_20200911.tif", dn[code], scale=1e-4)
    cube = open_scenes(tmp_path / "s2")
    assert list(cube.data_vars) == ["green", "nir08", "swir16"] and cube.platform.values[0] == "sentinel-2"
    np.testing.assert_array_equal(cube.swir16[0].values, hls(dn["B11"]))  # B11 is swir16 in Sentinel-2
    for code in ("B03", "B05"):  # B05: HLS L30 nir08, or Sentinel-2 red edge? Refused
        write(tmp_path / "odd" / f"glacier_{code}_20200911.tif", dn[code], scale=1e-4)
    with pytest.raises(MetadataError, match=r"open_scenes: scene 'glacier_20200911' .*\['B05'\].*L30"):
        open_scenes(tmp_path / "odd")
    write(tmp_path / "bare" / "glacier_B03_20200911.tif", dn["B03"])  # no scale tag, no product
    with pytest.raises(MetadataError, match=r"integer DNs .* pass scale= and offset="):
        open_scenes(tmp_path / "bare")
    cube = open_scenes(tmp_path / "bare", scale=1e-4, offset=0.0)
    np.testing.assert_array_equal(cube.green[0].values, hls(dn["B03"]))


def test_scaling_from_tags_floats_and_contradictions(tmp_path):
    dn = dns(5)
    write(tmp_path / "a" / "x_2020229_B03_L30.tif", dn, scale=1e-4)  # agrees with HLS
    np.testing.assert_array_equal(open_scenes(tmp_path / "a").green[0].values, hls(dn))
    write(tmp_path / "b" / "x_2020229_B03_L30.tif", dn, scale=0.0000275, offset=-0.2)
    with pytest.raises(MetadataError, match=r"scale 2\.75e-05 and offset -0\.2, but hls reflectance is DN"):
        open_scenes(tmp_path / "b")
    over = open_scenes(tmp_path / "b", scale=2e-4, offset=0.01).green[0].values
    np.testing.assert_array_equal(over, np.where(dn == -9999, np.nan, dn * 2e-4 + 0.01).astype(np.float32))
    refl = hls(dn)
    write(tmp_path / "c" / "x_2020229_B03_L30.tif", refl, dtype="float32", nodata=None)
    np.testing.assert_array_equal(open_scenes(tmp_path / "c").green[0].values, refl)  # floats: as they are


def test_band_names_mapping(tmp_path):
    red, nir = dns(1).astype(np.float32) * 1e-4, dns(2).astype(np.float32) * 1e-4
    write(tmp_path / "red_20200816.tif", red, dtype="float32", nodata=None)
    write(tmp_path / "nir_20200816.tif", nir, dtype="float32", nodata=None)
    with pytest.raises(MetadataError, match="none of the 2 files has a recognised band name"):
        open_scenes(tmp_path)
    (tmp_path / "red_20200816.tif.aux.xml").write_text("<PAMDataset/>")  # matches red_*, not a raster
    cube = open_scenes(tmp_path, band_names={"red_*": "red", "nir_*.tif": "nir08"})
    assert list(cube.data_vars) == ["red", "nir08"] and cube.id.values[0] == "20200816"
    np.testing.assert_array_equal(cube.nir08[0].values, nir)
    with pytest.raises(MetadataError, match="matches band_names patterns for several bands"):
        open_scenes(tmp_path, band_names={"*_20200816.tif": "red", "nir_*": "nir08"})
    with pytest.raises(MetadataError, match=r"cannot tell which band .*red_20200816\.tif holds"):
        open_scenes(tmp_path / "red_20200816.tif")


def offset_scene(tmp_path: Path, rows: int, cols: int, shape: tuple[int, int]) -> tuple[Path, np.ndarray]:
    """A second scene on a grid shifted by whole pixels (``rows`` up, ``cols`` left)."""
    dn = dns(11, shape, gap=False)
    transform = T0 @ Affine.translation(-cols, -rows)
    return write(tmp_path / "x_2020253_B03_S30.tif", dn, transform=transform), dn


def test_one_pixel_offset_is_refused_then_resampled_exactly(tmp_path):
    ref = dns(10)
    write(tmp_path / "x_2020229_B03_L30.tif", ref)
    path, dn = offset_scene(tmp_path, 1, 1, (H + 2, W + 1))  # the Athabasca 2020-09-11 case
    with pytest.raises(GridMismatchError) as err:
        open_scenes(tmp_path)
    msg = str(err.value)
    assert msg.startswith(f"open_scenes: {path} is not on the grid")
    assert f"{H + 2}x{W + 1} pixels of 30 m, origin (477840, 5784510)" in msg
    assert f"{H}x{W} pixels of 30 m, origin (477870, 5784480)" in msg and "resampling=" in msg
    cube = open_scenes(tmp_path, resampling="nearest")
    assert cube.rio.transform() == T0 and cube.sizes == {"time": 2, "y": H, "x": W}
    np.testing.assert_array_equal(cube.green[1].values, hls(dn)[1:H + 1, 1:W + 1])  # an exact crop
    np.testing.assert_array_equal(cube.green[0].values, hls(ref))
    # the other way round: the shifted scene's grid, the first scene padded with NaN
    like = xr.DataArray(np.zeros((H + 2, W + 1)), dims=("y", "x"), coords={
        "y": 5784510 - 15 - 30.0 * np.arange(H + 2), "x": 477840 + 15 + 30.0 * np.arange(W + 1)}
    ).rio.write_crs(UTM11)
    padded = open_scenes(tmp_path, like=like, resampling="nearest").green.values
    assert np.isnan(padded[0, 0]).all() and np.isnan(padded[0, :, 0]).all() and np.isnan(padded[0, -1]).all()
    np.testing.assert_array_equal(padded[0, 1:H + 1, 1:W + 1], hls(ref))
    np.testing.assert_array_equal(padded[1], hls(dn))


def test_another_crs_is_refused_then_warped(tmp_path):
    ref = dns(20)
    write(tmp_path / "x_2020229_B03_L30.tif", ref)
    to12 = pyproj.Transformer.from_crs(UTM11, "EPSG:32612", always_xy=True)
    x0, y0 = to12.transform(T0.c, T0.f)
    t12 = Affine(30.0, 0.0, round(x0 / 30) * 30 - 300, 0.0, -30.0, round(y0 / 30) * 30 + 300)
    rows, cols = np.mgrid[0:H + 40, 0:W + 40]
    ramp = (1000 + 7 * cols + 3 * rows).astype(np.int16)  # linear: bilinear reproduces it exactly
    write(tmp_path / "x_2020253_B03_S30.tif", ramp, crs="EPSG:32612", transform=t12)
    with pytest.raises(GridMismatchError, match=r"EPSG:32612, the grid is .* EPSG:32611"):
        open_scenes(tmp_path)
    # ground truth: where each pixel centre of the grid falls in the other file
    xs, ys = T0 @ np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    col, row = ~t12 @ to12.transform(xs, ys)
    near = open_scenes(tmp_path, resampling="nearest").green[1].values
    np.testing.assert_array_equal(near, hls(ramp[np.floor(row).astype(int), np.floor(col).astype(int)]))
    bil = open_scenes(tmp_path, resampling="bilinear").green[1].values
    np.testing.assert_allclose(bil, 1e-4 * (1000 + 7 * (col - 0.5) + 3 * (row - 0.5)), rtol=0, atol=2e-6)
    chunked = open_scenes(tmp_path, resampling="cubic", chunks=16).green[1].values  # a warp per chunk
    np.testing.assert_array_equal(chunked, open_scenes(tmp_path, resampling="cubic").green[1].values)


def test_crs_compared_by_equivalence_not_epsg(tmp_path):
    assert CRS.from_wkt(HLS_WKT).to_epsg() is None  # as in the real L30 files
    a, b = dns(30), dns(31)
    write(tmp_path / "x_2020229_B03_L30.tif", a, crs=HLS_WKT)
    write(tmp_path / "x_2020253_B03_S30.tif", b)
    cube = open_scenes(tmp_path).compute()  # no resampling needed: the same CRS in effect
    np.testing.assert_array_equal(cube.green.values, np.stack([hls(a), hls(b)]))
    assert list(cube.source_crs.values) == ["UTM Zone 11, Northern Hemisphere", "EPSG:32611"]
    write(tmp_path / "x_2020253_B03_S30.tif", b, crs="EPSG:26711")  # NAD27 / UTM 11N: ~100 m away
    with pytest.raises(GridMismatchError, match="EPSG:26711"):
        open_scenes(tmp_path)


def test_south_up_files_and_ascending_like(tmp_path):
    a, b = dns(40), dns(41)
    write(tmp_path / "x_2020229_B03_L30.tif", a[::-1], transform=Affine(30, 0, T0.c, 0, 30, T0.f - 30 * H))
    write(tmp_path / "x_2020253_B03_S30.tif", b)
    cube = open_scenes(tmp_path)  # the first scene is south-up: the grid is its north-up twin
    assert cube.rio.transform() == T0 and (np.diff(cube.y) < 0).all()
    np.testing.assert_array_equal(cube.green.values, np.stack([hls(a), hls(b)]))
    asc = open_scenes(tmp_path, like=cube.sortby("y"))
    assert (np.diff(asc.y) > 0).all()
    xr.testing.assert_equal(asc.green.compute(), cube.green.sortby("y").compute())
    warped = open_scenes(tmp_path, like=cube.sortby("y").isel(x=slice(1, None)), resampling="nearest")
    np.testing.assert_array_equal(warped.green.values, np.stack([hls(a), hls(b)])[:, ::-1, 1:])


def test_crs_and_resolution_grid(tmp_path):
    a = dns(50, gap=False)
    write(tmp_path / "x_2020229_B03_L30.tif", a)
    with pytest.raises(GridMismatchError):
        open_scenes(tmp_path, resolution=60)
    cube = open_scenes(tmp_path, resolution=60, resampling="average")
    # pixel edges on multiples of 60 m (as load does), so the first column starts 30 m west
    assert cube.rio.transform() == Affine(60, 0, T0.c - 30, 0, -60, T0.f)
    assert cube.sizes["y"] == H // 2 and cube.sizes["x"] == W // 2 + 1
    padded = np.pad(hls(a).astype(np.float64), ((0, 0), (1, 1)), constant_values=np.nan)
    expected = np.nanmean(padded.reshape(H // 2, 2, W // 2 + 1, 2), axis=(1, 3))
    np.testing.assert_allclose(cube.green[0].values, expected, rtol=0, atol=1e-6)
    with pytest.raises(ParameterError, match="pass resolution="):
        open_scenes(tmp_path, crs="EPSG:32612", resampling="nearest")


def test_all_nodata_scene(tmp_path):
    a = dns(60)
    write(tmp_path / "x_2020229_B03_L30.tif", a)
    write(tmp_path / "x_2020253_B03_S30.tif", np.full((H, W), -9999, np.int16))
    cube = open_scenes(tmp_path).compute()
    assert np.isnan(cube.green[1]).all()
    np.testing.assert_array_equal(cube.green[0].values, hls(a))


def test_lazy_chunked_and_read_only_when_computed(tmp_path, no_compute):
    a, b = dns(70), dns(71)
    write(tmp_path / "x_2020229_B03_L30.tif", a)
    write(tmp_path / "x_2020253_B03_S30.tif", b)
    with no_compute():
        cube = open_scenes(tmp_path)
        chunked = open_scenes(tmp_path, chunks={"y": 16, "x": 32})
    assert isinstance(cube.green.data, dsa.Array) and cube.green.data.chunks == ((1, 1), (H,), (W,))
    assert chunked.green.data.chunks == ((1, 1), (16, 16, 8), (32, 16))
    xr.testing.assert_identical(chunked.compute(), cube.compute())
    moved = tmp_path / "moved"
    moved.mkdir()
    for p in tmp_path.glob("*.tif"):
        shutil.copy(p, moved / p.name)
    later = open_scenes(moved, chunks=16)
    os.remove(moved / "x_2020253_B03_S30.tif")  # nothing was read yet: the failure comes at compute
    assert later.green.data.name != cube.green.data.name
    later.green[0].compute()
    with pytest.raises(AssetError, match=r"open_scenes: cannot read band 'green' from .*x_2020253_B03_S30"):
        later.green.compute()


def test_bad_input(tmp_path):
    write(tmp_path / "x_2020229_B03_L30.tif", dns(80))
    write(tmp_path / "y_2020229_B03_S30.tif", dns(81))
    with pytest.raises(TimeAxisError, match="'x_2020229_L30' and 'y_2020229_S30' have the same time"):
        open_scenes(tmp_path)
    os.remove(tmp_path / "y_2020229_B03_S30.tif")
    write(tmp_path / "sub" / "x_2020229_B03_L30.tif", dns(82))
    with pytest.raises(MetadataError, match="two files give band 'green' of scene 'x_2020229_L30'"):
        open_scenes([tmp_path, tmp_path / "sub"])
    with pytest.raises(ParameterError, match="neither a file nor a folder"):
        open_scenes(tmp_path / "nothing")
    with pytest.raises(ParameterError, match="matches no file"):
        open_scenes(str(tmp_path / "*.jp2"))
    for kwargs, match in (({"resampling": "blurry"}, "resampling='blurry'"),
                          ({"chunks": {"time": 2}}, "chunks="), ({"chunks": 0}, r"chunks\['y'\]=0"),
                          ({"offset": 0.1}, "offset= needs scale="), ({"band_names": ["x"]}, "band_names="),
                          ({"like": xr.DataArray(np.zeros((2, 2)), dims=("y", "x"))}, "needs x and y"),
                          ({"resolution": -30}, "resolution=-30"), ({"bands": ["green", "green"]}, "bands=")):
        with pytest.raises(ParameterError, match=match):
            open_scenes(tmp_path, **kwargs)
    with pytest.raises(ParameterError, match="paths="):
        open_scenes([])
    with pytest.raises(ParameterError, match="x decreasing"):
        open_scenes(tmp_path, like=open_scenes(tmp_path).isel(x=slice(None, None, -1)))
    assert open_scenes(tmp_path.glob("x_*.tif")).sizes["time"] == 1  # any iterable of paths


def test_written_cube_reads_back(tmp_path):
    write(tmp_path / "x_2020229_B03_L30.tif", dns(90))
    cube = open_scenes(tmp_path)
    back = xr.open_zarr(xglacier.to_zarr(cube, tmp_path / "c.zarr"))
    xr.testing.assert_equal(back.green.compute(), cube.green.compute())
    assert back.rio.crs == cube.rio.crs and list(back.id.values) == ["x_2020229_L30"]


def test_example_open_local_scenes(hls_folder, tmp_path, capsys):
    """examples/open_local_scenes.py on the synthetic folder (the real crops are tested elsewhere)."""
    folder, _ = hls_folder
    path = Path(__file__).resolve().parents[1] / "examples" / "open_local_scenes.py"
    spec = importlib.util.spec_from_file_location("open_local_scenes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--data", str(folder), "--out", str(tmp_path / "out" / "c.zarr")]) == 0
    out = capsys.readouterr().out
    assert "cube {'time': 2, 'y': 40, 'x': 48}" in out and "hls-s30" in out
    assert "transform matches: True" in out
    assert module.main(["--data", str(tmp_path / "absent")]) == 1
    assert "not part of a clone" in capsys.readouterr().out
