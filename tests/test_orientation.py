"""Both grid orientations: every spatial function on a flipped grid gives the flipped result.

A cube sorted with ``y`` increasing (``sortby("y")``, many writers) or ``x`` decreasing
holds the same map as the usual north-up one. Each test runs a function on the usual
grid and on flipped copies (and copies whose stored GeoTransform went stale with the
flip, as ``sortby`` leaves it), and compares the result with the flipped usual one;
also a grid one pixel off, and inputs in another CRS.
"""

from __future__ import annotations

import warnings

import geopandas as gpd
import matplotlib
import numpy as np
import pandas as pd
import pytest
import rioxarray  # noqa: F401 - registers .rio
import shapely
import xarray as xr
from rasterio.enums import Resampling
from scipy import ndimage
from shapely.geometry import box

import xglacier
from xglacier.errors import FlowNoiseWarning, InputError
from xglacier.preprocess.terrain import pixel_lengths, slope
from xglacier.segmentation.features import features
from xglacier.segmentation.labels import polygonize, rasterize

UTM = "EPSG:32632"
X0, Y0, RES = 500000.0, 5200000.0, 30.0

# name -> how a north-up object is flipped; applying it twice gives the north-up order back
FLIPS = {
    "y_ascending": lambda o: o.sortby("y"),
    "x_descending": lambda o: o.sortby("x", ascending=False),
    "both": lambda o: o.sortby("y").sortby("x", ascending=False),
}


def north_up(o):
    """Back to y decreasing, x increasing."""
    return o.sortby("y", ascending=False).sortby("x")


def grid(shape=(48, 56), x0=X0, y0=Y0, res=RES, crs=UTM) -> xr.DataArray:
    """Zeros on a north-up grid with its (west, north) corner at (x0, y0), GeoTransform stored."""
    ny, nx = shape
    da = xr.DataArray(np.zeros(shape, np.float32), dims=("y", "x"),
                      coords={"y": y0 - res * (np.arange(ny) + 0.5), "x": x0 + res * (np.arange(nx) + 0.5)})
    return da.rio.write_crs(crs).rio.write_transform()


def texture(shape=(64, 64), seed=0) -> np.ndarray:
    img = ndimage.gaussian_filter(np.random.default_rng(seed).random(shape), 2)
    return ((img - img.min()) / (img.max() - img.min())).astype(np.float32)


def pair(shift=(-1, 1), crs=UTM) -> xr.DataArray:
    """Two frames a year apart on a north-up grid; the content moves ``shift`` (rows, columns):
    (-1, 1) is one pixel north and one east."""
    img = texture()
    like = grid(img.shape)
    da = xr.DataArray(np.stack([img, np.roll(img, shift, axis=(0, 1))]), dims=("time", "y", "x"),
                      coords={"time": pd.to_datetime(["2020-01-01", "2021-01-01"]),
                              "y": like.y.values, "x": like.x.values})
    return da.rio.write_crs(crs).rio.write_transform(like.rio.transform())


def angle_diff(a, b):
    return np.abs((np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0)


# -- flow ---------------------------------------------------------------------------------------


def _flow(da, **kw):
    with warnings.catch_warnings():
        # the whole frame moves: nothing tells it from misregistration (tested in test_flow_noise)
        warnings.simplefilter("ignore", FlowNoiseWarning)
        return xglacier.flow(da, **kw)


@pytest.mark.parametrize("flip", FLIPS)
def test_flow_on_flipped_grid_is_the_flipped_flow(flip):
    da = pair()
    ref = _flow(da)
    inner = {"y": slice(12, -12), "x": slice(12, -12)}
    # one pixel (30 m) north and east in a (leap) year
    assert float(ref.v.isel(inner).median()) == pytest.approx(30 * 365.25 / 366, rel=0.02)
    assert float(ref.u.isel(inner).median()) == pytest.approx(30 * 365.25 / 366, rel=0.02)
    got = _flow(FLIPS[flip](da))
    back = north_up(got)
    for name in ("u", "v", "speed", "speed_noise", "speed_signal"):
        np.testing.assert_allclose(back[name].values, ref[name].values, atol=1e-2, err_msg=name)
    assert angle_diff(back.direction.values, ref.direction.values).max() < 1e-2
    # dx, dy stay along the array: a flipped axis flips their sign
    sx = -1 if flip in ("x_descending", "both") else 1
    sy = -1 if flip in ("y_ascending", "both") else 1
    np.testing.assert_allclose(back.dx.values, sx * ref.dx.values, atol=1e-4)
    np.testing.assert_allclose(back.dy.values, sy * ref.dy.values, atol=1e-4)
    np.testing.assert_array_equal(got.y.values, FLIPS[flip](da).y.values)


def test_flow_geographic_ascending_latitude():
    # per-row metric lengths must follow the rows when they run south to north
    da = pair()
    lon = 10.0 + 0.0005 * np.arange(64)
    lat = 60.0 - 0.0005 * np.arange(64)
    geo = da.assign_coords(x=lon, y=lat).drop_vars("spatial_ref").rio.write_crs("EPSG:4326")
    ref = _flow(geo)
    back = north_up(_flow(geo.sortby("y")))
    np.testing.assert_allclose(back.u.values, ref.u.values, atol=1e-2)
    np.testing.assert_allclose(back.v.values, ref.v.values, atol=1e-2)
    assert float(ref.v.median()) > 0 and float(ref.u.median()) > 0


def _half_moving():
    """The eastern half moves one pixel north; the western half stands still (the mask)."""
    img = texture()
    moved = img.copy()
    moved[:, 32:] = np.roll(img, -1, axis=0)[:, 32:]
    like = grid(img.shape)
    da = xr.DataArray(np.stack([img, moved]), dims=("time", "y", "x"),
                      coords={"time": pd.to_datetime(["2020-01-01", "2021-01-01"]),
                              "y": like.y.values, "x": like.x.values}).rio.write_crs(UTM)
    stable = (da.x < X0 + 26 * RES).broadcast_like(da.isel(time=0, drop=True))
    return da, stable


def test_flow_stable_mask_in_either_order_and_refused_off_grid():
    da, stable = _half_moving()
    ref = xglacier.flow(da, stable=stable)
    assert bool(ref.above_noise)
    for flip in FLIPS.values():  # a mask sorted the other way is the same mask
        got = xglacier.flow(da, stable=flip(stable))
        np.testing.assert_array_equal(got.speed_noise.values, ref.speed_noise.values)
        np.testing.assert_array_equal(got.speed_signal.values, ref.speed_signal.values)
    flipped = xglacier.flow(da.sortby("y"), stable=stable)  # frames flipped, mask not
    # the still half reads about 0.05 m/yr against 30 m/yr of motion: equal to a thousandth of that
    np.testing.assert_allclose(flipped.speed_noise.values, ref.speed_noise.values, atol=0.03)
    np.testing.assert_allclose(flipped.speed_signal.values, ref.speed_signal.values, atol=0.03)
    off = stable.assign_coords(y=stable.y + RES)  # one pixel north
    with pytest.raises(InputError, match=r"^flow: stable is not on the grid of variable None: its 'y' runs"):
        xglacier.flow(da, stable=off)
    with pytest.raises(InputError, match=r"^flow: stable is not on the grid .*'x'"):
        xglacier.flow(da, stable=stable.isel(x=slice(1, None)))


@pytest.mark.parametrize("flip", [None, *FLIPS])
def test_plot_flow_draws_north_up_and_east_right(flip):
    matplotlib.use("Agg")
    da = pair()
    if flip:
        da = FLIPS[flip](da)
    vel = _flow(da)
    background = da.isel(time=1)
    ax = xglacier.plot_flow(vel, image=background.sortby("y", ascending=flip != "y_ascending"), step=8)
    q = ax.collections[0]
    # where the arrows point on the screen: the content moved north-east, so up and right
    start = ax.transData.transform(q.get_offsets())
    end = ax.transData.transform(q.get_offsets() + np.column_stack([q.U, q.V]))
    screen = np.median(end - start, axis=0)
    assert screen[0] > 0 and screen[1] > 0, screen
    # and the image under them is the map, north up: its first displayed row is the northernmost
    shown = ax.images[0].get_array()
    top_row = shown[0] if ax.images[0].origin == "upper" else shown[-1]
    northern = background.isel(y=int(np.argmax(background.y.values)))
    left_first = ax.get_xlim()[0] < ax.get_xlim()[1]
    expect = northern.values if left_first else northern.values[::-1]
    np.testing.assert_array_equal(top_row if left_first else top_row[::-1], expect)
    matplotlib.pyplot.close(ax.figure)


# -- terrain ------------------------------------------------------------------------------------


@pytest.mark.parametrize("crs", [UTM, "EPSG:4326"])
@pytest.mark.parametrize("flip", FLIPS)
def test_slope_and_pixel_lengths_on_flipped_grid(flip, crs):
    like = grid()
    if crs != UTM:
        like = like.assign_coords(x=10.0 + 0.0003 * np.arange(56), y=60.0 - 0.0003 * np.arange(48))
        like = like.drop_vars("spatial_ref").rio.write_crs(crs)
    xx, yy = np.meshgrid(np.arange(56), np.arange(48))
    dem = like.copy(data=(2000 + 3.0 * xx - 5.0 * yy + 2 * texture((48, 56))).astype(np.float32))
    ref = slope(dem)
    np.testing.assert_array_equal(north_up(slope(FLIPS[flip](dem))).values, ref.values)
    dx, dy = pixel_lengths(crs, dem.x.values, dem.y.values)
    fdem = FLIPS[flip](dem)
    fdx, fdy = pixel_lengths(crs, fdem.x.values, fdem.y.values)
    rows = slice(None, None, -1) if flip in ("y_ascending", "both") else slice(None)
    np.testing.assert_array_equal(fdx, dx[rows])
    np.testing.assert_array_equal(fdy, dy[rows])


# -- features -----------------------------------------------------------------------------------


def _cube(like: xr.DataArray) -> xr.Dataset:
    rng = np.random.default_rng(1)
    ds = xr.Dataset({b: (("y", "x"), rng.uniform(0.05, 0.6, like.shape).astype(np.float32))
                     for b in ("green", "swir16")}, coords=like.coords)
    return ds.rio.write_crs(like.rio.crs).rio.write_transform(like.rio.transform())


def _plane(like: xr.DataArray, gx=0.3, gy=-0.45) -> xr.DataArray:
    xx, yy = np.meshgrid(like.x.values, like.y.values)
    return like.copy(data=2500.0 + gx * (xx - X0) + gy * (yy - Y0))


@pytest.mark.parametrize("flip", FLIPS)
def test_features_on_flipped_cube_and_dem(flip):
    like = grid()
    dem = _plane(grid((60, 70), x0=X0 - 5 * RES, y0=Y0 + 5 * RES))  # larger than the cube
    cube = _cube(like)
    ref = features(cube, dem=dem, indices=("ndsi",))
    assert np.isfinite(ref.values).all() and ref.sizes["channel"] == 5
    f = FLIPS[flip]
    for c, d in ((f(cube), dem), (f(cube), f(dem)), (cube, f(dem))):
        got = features(c, dem=d, indices=("ndsi",))
        np.testing.assert_allclose(north_up(got).values, ref.values, rtol=1e-6, atol=1e-4)
        assert got.rio.crs == cube.rio.crs


@pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning")  # rasterio, in rio.reproject
def test_features_dem_one_pixel_off_and_in_another_crs(tmp_path):
    like = grid()
    cube = _cube(like)
    # a DEM one pixel west and north of the cube's lattice, and one half a pixel off: a plane,
    # so bilinear resampling is exact at the cube's pixel centres
    for dx, dy in ((RES, RES), (RES / 2, -RES / 2)):
        dem = _plane(grid((60, 70), x0=X0 - 5 * RES + dx, y0=Y0 + 5 * RES + dy))
        f = features(cube, dem=dem, indices=(), bands=(), slope=False)
        np.testing.assert_allclose(f.sel(channel="elevation").values, _plane(like).values, atol=1e-3)
    # the DEM in UTM 33N, stored south-up (y increasing), onto the cube in UTM 32N, either order
    dem = _plane(grid((60, 70), x0=X0 - 5 * RES, y0=Y0 + 5 * RES)).rio.reproject(
        "EPSG:32633", resolution=5.0, resampling=Resampling.bilinear).sortby("y")
    path = tmp_path / "dem_33n.tif"
    dem.rio.to_raster(path)
    ref = features(cube, dem=path, indices=(), bands=())
    got = north_up(features(cube.sortby("y"), dem=dem, indices=(), bands=()))
    np.testing.assert_allclose(got.values, ref.values, rtol=1e-6, atol=1e-3)
    # two bilinear resamplings of a plane (bent by 0.04 % between the zones): within 5 cm
    inner = ref.sel(channel="elevation").values[1:-1, 1:-1]
    np.testing.assert_allclose(inner, _plane(like).values[1:-1, 1:-1], atol=0.05)


# -- rasterize, polygonize, areas ---------------------------------------------------------------


@pytest.fixture
def outlines() -> gpd.GeoDataFrame:
    """A glacier with a nunatak (hole) and a debris lobe, in UTM 32N."""
    ice = box(X0 + 60, Y0 - 1200, X0 + 1300, Y0 - 90).difference(box(X0 + 400, Y0 - 700, X0 + 600, Y0 - 500))
    debris = box(X0 + 1000, Y0 - 1400, X0 + 1600, Y0 - 1000)
    return gpd.GeoDataFrame({"code": [1, 2]}, geometry=[ice, debris], crs=UTM)


@pytest.mark.parametrize("flip", FLIPS)
def test_rasterize_and_polygonize_on_flipped_grid(outlines, flip):
    like = grid()
    ref = rasterize(outlines, like, column="code")
    assert set(np.unique(ref.values)) == {0, 1, 2}
    flipped_like = FLIPS[flip](like)  # stored GeoTransform now stale
    got = rasterize(outlines, flipped_like, column="code")
    np.testing.assert_array_equal(got.y.values, flipped_like.y.values)
    np.testing.assert_array_equal(north_up(got).values, ref.values)
    polys = polygonize(ref)
    back = polygonize(FLIPS[flip](ref))
    assert len(back) == len(polys) == 2 and len(polys.geometry[0].interiors) == 1  # the nunatak
    for a, b in zip(polys.geometry, back.geometry, strict=True):
        assert shapely.normalize(a).equals_exact(shapely.normalize(b), 1e-6)
    np.testing.assert_allclose(back.area_m2.values, polys.area_m2.values, rtol=1e-12)
    # the polygons are where the outlines are: the clipped outlines' pixel-centre areas
    assert polys.geometry.union_all().within(outlines.geometry.union_all().buffer(RES))


def test_rasterize_outlines_in_another_crs_and_grid_one_pixel_off(outlines):
    like = grid()
    ref = rasterize(outlines, like, column="code")
    # the same outlines in geographic coordinates: (densified so that the straight edges
    # stay straight in UTM) the same pixels, but those whose centre is within 1 cm of an edge
    geo = outlines.set_geometry(outlines.geometry.segmentize(5.0)).to_crs("EPSG:4326")
    got = rasterize(geo, like, column="code")
    assert (got.values != ref.values).sum() == 0
    # a grid one pixel west and north: the same map, one row down and one column right
    off = rasterize(outlines, grid(x0=X0 - RES, y0=Y0 + RES), column="code")
    np.testing.assert_array_equal(off.values[1:, 1:], ref.values[:-1, :-1])
    np.testing.assert_array_equal(north_up(rasterize(outlines, grid(x0=X0 - RES, y0=Y0 + RES).sortby("y"),
                                                     column="code")).values, off.values)


def test_outputs_of_a_sorted_cube_carry_its_own_transform():
    """sortby("y") keeps the source's GeoTransform; every output must describe its own grid."""

    cube, _ = xglacier.synthetic_cube(shape=(32, 32), end="2020-03-01", seed=4)
    asc = cube.sortby("y")
    assert asc.spatial_ref.attrs["GeoTransform"] == cube.spatial_ref.attrs["GeoTransform"]  # stale
    nd = xglacier.ndsi(asc)
    gt = [float(v) for v in nd.spatial_ref.attrs["GeoTransform"].split()]
    assert gt[5] > 0 and gt[3] == float(asc.y[0]) - gt[5] / 2  # north-up no more: y grows with rows
    assert nd.rio.transform() == asc.rio.transform(recalc=True)
