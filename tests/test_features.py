"""Feature cube: channels, laziness, DEM reprojection, and slope against analytic planes."""

from __future__ import annotations

from pathlib import Path

import dask.array as dsa
import numpy as np
import pyproj
import pytest
import rioxarray  # noqa: F401 - registers .rio
import xarray as xr
from rasterio.enums import Resampling
from rasterio.warp import transform_bounds

import xglacier
from xglacier.errors import DimensionError, InputError, MissingBandError, ParameterError
from xglacier.landsat import REFLECTANCE_BANDS
from xglacier.preprocess.terrain import slope
from xglacier.segmentation.features import features

from .conftest import ComputeForbidden, assert_same

OGGM = Path(__file__).resolve().parents[2] / "shared" / "data" / "oggm"

# A plane tilted in metres: 0.3 m/m eastwards and 0.45 m/m southwards, about 28.4 degrees
GX, GY = 0.3, -0.45


def analytic(gx: float, gy: float) -> float:
    return float(np.degrees(np.arctan(np.hypot(gx, gy))))


def grid(x0: float, y0: float, res: float, shape: tuple[int, int], crs: str) -> xr.DataArray:
    """A zero DataArray on a north-up grid with its (west, north) corner at (x0, y0)."""
    ny, nx = shape
    x = x0 + res * (np.arange(nx) + 0.5)
    y = y0 - res * (np.arange(ny) + 0.5)
    da = xr.DataArray(np.zeros(shape), dims=("y", "x"), coords={"y": y, "x": x})
    return da.rio.write_crs(crs)


def cube_on(like: xr.DataArray, bands=("green", "swir16")) -> xr.Dataset:
    """A one-scene reflectance Dataset on the grid of ``like`` (random values)."""
    rng = np.random.default_rng(0)
    ds = xr.Dataset({b: (("y", "x"), rng.uniform(0.05, 0.6, like.shape).astype(np.float32))
                     for b in bands}, coords=like.coords)
    return ds.rio.write_crs(like.rio.crs)


def plane_in_metres(dem: xr.DataArray, gx: float, gy: float, centre: tuple[float, float]) -> xr.DataArray:
    """Fill ``dem`` with ``2500 + gx * east + gy * north`` (metres, local transverse Mercator, k = 1).

    The plane is defined in true metres on the ground whatever the DEM's CRS: each
    node's coordinates are transformed to a transverse Mercator centred on ``centre``
    (lon, lat), whose scale error is below 1e-6 over a few kilometres.
    """
    lon0, lat0 = centre
    local = pyproj.CRS.from_proj4(f"+proj=tmerc +lat_0={lat0} +lon_0={lon0} +k=1 +ellps=WGS84 +units=m")
    to_local = pyproj.Transformer.from_crs(dem.rio.crs, local, always_xy=True)
    xx, yy = np.meshgrid(dem.x.values, dem.y.values)
    east, north = to_local.transform(xx, yy)
    return dem.copy(data=2500.0 + gx * east + gy * north)


UTM = "EPSG:32632"
# a 3 km x 3.6 km cube over the Oetztal Alps (46.8 N, 10.8 E: 140 km from the zone's meridian)
CUBE = grid(637000.0, 5186000.0, 30.0, (100, 120), UTM)
CENTRE = pyproj.Transformer.from_crs(UTM, "EPSG:4326", always_xy=True).transform(638800.0, 5184500.0)


# -- slope ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("gx", "gy"), [(GX, GY), (0.5, 0.0), (0.0, 0.5)])
def test_slope_of_projected_plane_is_exact(gx, gy):
    # a plane in the DEM's own (UTM) metres, on the cube's grid
    xx, yy = np.meshgrid(CUBE.x.values, CUBE.y.values)
    dem = CUBE.copy(data=2500.0 + gx * xx + gy * yy)
    f = features(cube_on(CUBE), indices=(), dem=dem)
    s = f.sel(channel="slope").values
    # one-sided differences at the edges: exact for a plane up to the border
    np.testing.assert_allclose(s, analytic(gx, gy), atol=1e-4)
    np.testing.assert_allclose(f.sel(channel="elevation").values, dem.values, rtol=1e-6)


def dem_grid(crs: str, res: float) -> xr.DataArray:
    """A grid in ``crs`` covering the cube with a margin of three cells."""
    left, bottom, right, top = transform_bounds(UTM, crs, *CUBE.rio.bounds(), densify_pts=21)
    west, north = left - 3 * res, top + 3 * res
    shape = (int(np.ceil((north - bottom) / res)) + 3, int(np.ceil((right - west) / res)) + 3)
    return grid(west, north, res, shape, crs)


@pytest.mark.parametrize(("gx", "gy"), [(GX, GY), (0.5, 0.0), (0.0, 0.5)])
@pytest.mark.parametrize(("crs", "res"), [("EPSG:4326", 0.0008), ("EPSG:32633", 45.0),
                                          ("EPSG:3035", 50.0)])
def test_slope_of_dem_in_other_crs_matches_plane(crs, res, gx, gy):
    # a DEM holding a plane tilted in true metres: geographic (61 m x 89 m cells), UTM of
    # the next zone at 45 m, or LAEA Europe at 50 m
    dem = plane_in_metres(dem_grid(crs, res), gx, gy, CENTRE)
    if crs == "EPSG:4326":
        # on the DEM's own grid: degree lengths at each row's latitude on the WGS 84 ellipsoid
        np.testing.assert_allclose(slope(dem).values, analytic(gx, gy), atol=1e-3)  # measured: 2e-5
    # reprojected onto a 30 m UTM cube (elevations resampled bilinearly, slope on the
    # cube's grid), up to the border thanks to one-sided differences there. UTM's scale
    # error here (k = 0.99984: a grid metre is 1.00016 true metres) is not corrected and
    # accounts for most of the measured 0.004-0.007 degree
    f = features(cube_on(CUBE), indices=(), dem=dem)
    s = f.sel(channel="slope").values
    assert np.isfinite(s).all()
    np.testing.assert_allclose(s, analytic(gx, gy), atol=0.02)
    # and elevation is the plane at each cube pixel
    truth = plane_in_metres(CUBE, gx, gy, CENTRE).values
    np.testing.assert_allclose(f.sel(channel="elevation").values, truth, atol=0.5)


def test_slope_handles_voids_and_is_chunk_invariant():
    xx, yy = np.meshgrid(CUBE.x.values, CUBE.y.values)
    z = 2500.0 + GX * xx + GY * yy
    z[40:44, 50:53] = np.nan
    z[0, :3] = np.nan
    dem = CUBE.copy(data=z)
    s = slope(dem)
    assert s.dtype == np.float32 and s.name == "slope" and s.attrs["units"] == "degree"
    np.testing.assert_array_equal(np.isnan(s.values), np.isnan(z))
    np.testing.assert_allclose(s.values[~np.isnan(z)], analytic(GX, GY), atol=1e-4)
    rng = np.random.default_rng(3)
    rough = dem.copy(data=np.where(np.isnan(z), np.nan, rng.normal(3000, 50, z.shape)))
    eager = slope(rough)
    for chunks in ({"y": 7, "x": 9}, {"y": 1, "x": 120}, {"y": 100, "x": 1}, {"y": 33, "x": 50}):
        lazy = slope(rough.chunk(chunks))
        assert isinstance(lazy.data, dsa.Array)
        assert_same(lazy, eager)


# -- feature cube -----------------------------------------------------------------------------


def test_channels_named_in_order_with_values(small_loaded):
    cube, truth = small_loaded
    dem = truth.dem.rio.write_crs(cube.rio.crs)
    k = 3
    f = features(cube, dem=dem, time=k)
    names = [*REFLECTANCE_BANDS, "ndsi", "ndwi", "ndvi", "elevation", "slope"]
    assert f.dims == ("channel", "y", "x") and f.name == "features" and f.dtype == np.float32
    assert f.channel.values.tolist() == names
    assert f.channel_units.values.tolist() == ["1"] * 9 + ["m", "degree"]
    assert f.rio.crs == cube.rio.crs
    np.testing.assert_array_equal(f.x.values, cube.x.values)
    np.testing.assert_array_equal(f.y.values, cube.y.values)
    assert f.time.values == cube.time.values[k]
    scene = cube.isel(time=k)
    np.testing.assert_array_equal(f.sel(channel="swir16").values, scene.swir16.values)
    np.testing.assert_array_equal(f.sel(channel="ndsi").values, xglacier.ndsi(scene).values)
    np.testing.assert_array_equal(f.sel(channel="ndwi").values, xglacier.ndwi(scene).values)
    # a DEM already on the cube's grid comes through the bilinear reprojection unchanged
    np.testing.assert_allclose(f.sel(channel="elevation").values, truth.dem.values, rtol=1e-6)
    np.testing.assert_array_equal(f.sel(channel="slope").values, slope(dem).values)
    assert '"channels"' in f.attrs["history"]

    g = features(cube, bands=["swir16", "green"], indices=("ndvi", "ndwi_mcfeeters"), time=k)
    assert g.channel.values.tolist() == ["swir16", "green", "ndvi", "ndwi_mcfeeters"]
    h = features(cube, bands=(), dem=dem, slope=False, time=k)
    assert h.channel.values.tolist() == ["ndsi", "ndwi", "ndvi", "elevation"]


def test_time_selection(small_loaded):
    cube, _ = small_loaded
    with pytest.raises(DimensionError, match=r"scenes along 'time'.*time="):
        features(cube)
    label = str(cube.time.values[2])[:10]
    by_label = features(cube, indices=(), time=label)
    assert_same(by_label, features(cube, indices=(), time=2))
    assert_same(features(cube.isel(time=[2]), indices=()), by_label)
    assert_same(features(cube.isel(time=2), indices=()), by_label)
    with pytest.raises(ParameterError, match="matches no scene"):
        features(cube, time="1999-01-01")
    with pytest.raises(ParameterError, match="out of range"):
        features(cube, time=10_000)
    with pytest.raises(ParameterError, match="no 'time' dimension"):
        features(cube.isel(time=0), time=0)


@pytest.mark.parametrize("chunks", [{"time": 1}, {"time": 2, "y": 13, "x": 7}, {"y": 64, "x": 5}])
def test_lazy_and_chunk_invariant(small, small_loaded, no_compute, chunks):
    cube, _ = small
    loaded, truth_loaded = small_loaded
    dem = truth_loaded.dem.rio.write_crs(cube.rio.crs)
    with no_compute():
        lazy = features(cube.chunk(chunks), dem=dem, time=5)
        assert isinstance(lazy.data, dsa.Array)
        with pytest.raises(ComputeForbidden):
            lazy.values  # noqa: B018 - the guard really is active
    assert lazy.chunks[1:] == cube.chunk(chunks).green.chunks[1:]
    assert_same(lazy, features(loaded, dem=dem, time=5))


@pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning")  # rasterio, in rio.reproject
def test_dem_in_other_crs_and_resolution_from_file(small_loaded, tmp_path):
    cube, _ = small_loaded
    # the terrain of a larger synthetic scene whose pixels [32:96] are the cube's grid
    _, big = xglacier.synthetic_cube(shape=(128, 128), end="2020-02-01",
                                     origin=(734460.0 - 32 * 30, 3568110.0 + 32 * 30))
    dem = big.dem.rio.write_crs(cube.rio.crs)
    ref = dem.isel(y=slice(32, 96), x=slice(32, 96))
    np.testing.assert_array_equal(ref.x.values, cube.x.values)
    # a coarser (about 45 m x 55 m) geographic copy, written as int16 GeoTIFF with a nodata value
    geo = dem.rio.reproject("EPSG:4326", resolution=0.0005, nodata=np.nan)
    geo = geo.fillna(-32768).round().astype(np.int16).rio.write_nodata(-32768)
    path = tmp_path / "dem_4326.tif"
    geo.rio.to_raster(path)
    f = features(cube, bands=(), indices=(), dem=path, time=0)
    elev, s = f.sel(channel="elevation").values, f.sel(channel="slope").values
    assert np.isfinite(elev).all() and np.isfinite(s).all()
    # what rioxarray gives for the masked file: the int16 nodata never leaks into the values
    direct = geo.astype(np.float64).where(geo != -32768).rio.write_nodata(np.nan)
    direct = direct.rio.reproject_match(cube, resampling=Resampling.bilinear)
    np.testing.assert_allclose(elev, direct.values, atol=1e-3)
    # steep terrain (median slope 47 degrees) resampled twice (to ~50 m, back to 30 m) and
    # rounded: a few metres off, where a one-pixel misregistration would be 15-25 m off
    diff = np.median(np.abs(elev - ref.values))
    assert diff < 8.0
    assert np.median(np.abs(elev[:, 1:] - ref.values[:, :-1])) > 2 * diff
    assert np.median(np.abs(elev[1:] - ref.values[:-1])) > 2 * diff
    assert np.median(np.abs(s - slope(ref).values)) < 4.0


def test_dem_not_covering_the_cube(small_loaded, tmp_path):
    cube, truth = small_loaded
    dem = truth.dem.rio.write_crs(cube.rio.crs).rename("dem")
    with pytest.raises(InputError, match=r"DEM 'dem' does not cover the cube: 50\.0% .*cube covers"):
        features(cube, dem=dem.isel(x=slice(0, 32)), time=0)
    far = dem.assign_coords(x=dem.x + 1e6)
    with pytest.raises(InputError, match=r"DEM 'dem' does not overlap the cube: .* covers \(") as err:
        features(cube, dem=far, time=0)
    assert "the cube covers (734460, 3.56619e+06, 736380, 3.56811e+06)" in str(err.value)
    holes = dem.where(dem.x > dem.x[1])  # 2 of 64 columns of voids: 3 %
    with pytest.raises(InputError, match=r"3\.1% of the cube's pixels have no elevation"):
        features(cube, dem=holes, time=0)
    assert features(cube, dem=holes, time=0, dem_max_missing=0.05).sizes["channel"] == 11
    path = tmp_path / "far.tif"
    far.rio.to_raster(path)
    with pytest.raises(InputError, match=r"DEM file '.*far\.tif' does not overlap the cube"):
        features(cube, dem=path, time=0)
    with pytest.raises(InputError, match="does not exist"):
        features(cube, dem=tmp_path / "missing.tif", time=0)
    with pytest.raises(InputError, match="has no CRS"):
        features(cube, dem=truth.dem.drop_vars("spatial_ref"), time=0)


def test_missing_band_and_bad_parameters(small_loaded):
    cube, truth = small_loaded
    with pytest.raises(MissingBandError, match=r"band 'nir09' is not a variable"):
        features(cube, bands=["green", "nir09"], time=0)
    with pytest.raises(MissingBandError, match=r"index 'ndsi' needs .*'swir16'"):
        features(cube.drop_vars("swir16"), bands=["green"], time=0)
    with pytest.raises(MissingBandError, match="none of the reflectance bands"):
        features(cube[["qa_pixel"]], indices=(), time=0)
    with pytest.raises(ParameterError, match=r"unknown indices \['ndbi'\]"):
        features(cube, indices=("ndsi", "ndbi"), time=0)
    with pytest.raises(ParameterError, match=r"\['green'\] are requested twice"):
        features(cube, bands=["green", "green"], time=0)
    with pytest.raises(ParameterError, match="no channel"):
        features(cube, bands=(), indices=(), time=0)
    with pytest.raises(InputError, match="expected a Dataset"):
        features(cube.green, time=0)
    with pytest.raises(InputError, match="has no CRS"):
        features(cube.drop_vars("spatial_ref"), dem=truth.dem.rio.write_crs(cube.rio.crs), time=0)


@pytest.mark.skipif(not OGGM.is_dir(), reason=f"OGGM sample data not found at {OGGM} (../shared/data)")
def test_real_srtm_onto_utm_cube():
    # SRTM, EPSG:4326, about 90 m, int16; a 30 m UTM cube over Hintereisferner
    f = features(cube_on(grid(634000.0, 5189000.0, 30.0, (120, 150), UTM)), bands=(), indices=(),
                 dem=OGGM / "srtm_oetztal.tif")
    elev, s = f.sel(channel="elevation").values, f.sel(channel="slope").values
    assert np.isfinite(elev).all() and np.isfinite(s).all()
    assert 2000 < elev.min() < elev.max() < 3800
    assert 0 <= s.min() and s.max() < 80 and 15 < np.median(s) < 40
