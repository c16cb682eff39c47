"""The synthetic ground-truth cube follows the data model and its truth is consistent."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

import xglacier
from xglacier.landsat import QA_BITS, REFLECTANCE_BANDS


def test_data_model(small):
    cube, truth = small
    assert cube.green.dims == ("time", "y", "x")
    for b in REFLECTANCE_BANDS:
        assert cube[b].dtype == np.float32
        assert cube[b].encoding["grid_mapping"] == "spatial_ref"
    assert cube.qa_pixel.dtype == np.uint16
    t = cube.indexes["time"]
    assert t.is_monotonic_increasing and t.is_unique and t.tz is None
    assert cube.time.dtype == np.dtype("datetime64[ns]")
    assert cube.rio.crs.to_epsg() == 32643 and cube.rio.crs.is_projected
    # pixel-centre coordinates: the transform's origin is half a pixel outside the first centre
    tr = cube.rio.transform()
    assert tr.a == 30 and tr.e == -30
    assert cube.x.values[0] == tr.c + 15 and cube.y.values[0] == tr.f - 15
    assert {"id", "platform", "cloud_cover"} <= set(cube.coords)
    assert truth.rio.crs == cube.rio.crs


def test_deterministic_and_seeded():
    a, ta = xglacier.synthetic_cube(shape=(32, 32), end="2020-04-01", seed=5)
    b, tb = xglacier.synthetic_cube(shape=(32, 32), end="2020-04-01", seed=5)
    c, _ = xglacier.synthetic_cube(shape=(32, 32), end="2020-04-01", seed=6)
    xglacier_equal = a.compute().identical(b.compute()) and ta.compute().identical(tb.compute())
    assert xglacier_equal
    assert not np.array_equal(a.green.values[:2], c.green.values[:2], equal_nan=True) or (
        a.sizes["time"] != c.sizes["time"]
    )


def test_lazy_one_task_per_scene(no_compute):
    with no_compute():
        cube, _ = xglacier.synthetic_cube(preset="parvati")
        assert cube.sizes["y"] == cube.sizes["x"] == 800
        assert 240 <= cube.sizes["time"] <= 300
        assert cube.green.chunks[0] == (1,) * cube.sizes["time"]
        assert str(cube.time.values[0])[:4] == "2013" and str(cube.time.values[-1])[:4] == "2021"
        # the empty quarter of the preset has no acquisition
        t = cube.indexes["time"]
        assert not ((t >= "2016-04-01") & (t < "2016-07-01")).any()


def test_revisit_and_gaps():
    cube, _ = xglacier.synthetic_cube(shape=(16, 16), start="2019-01-01", end="2021-01-01",
                                      gaps=(("2019-07-01", "2019-10-01"),))
    days = np.diff(cube.indexes["time"].normalize().asi8) / 86400e9
    assert days.min() >= 8 and np.all(days % 8 == 0)
    assert {8, 16} <= set(days.astype(int)) and days.max() > 16  # irregular, with losses
    t = cube.indexes["time"]
    assert not ((t >= "2019-07-01") & (t < "2019-10-01")).any()


def test_nodata_and_fill_bits(small_loaded):
    cube, truth = small_loaded
    nan = np.isnan(cube.green.values)
    assert truth.nodata.values.any()
    np.testing.assert_array_equal(nan, truth.nodata.values)
    assert np.all(cube.qa_pixel.values[nan] == 1)
    # the values hidden under nodata are kept in the truth, equal elsewhere
    hidden = truth.true_green.values[nan]
    assert np.isfinite(hidden).all()
    np.testing.assert_array_equal(truth.true_green.values[~nan], cube.green.values[~nan])


def test_qa_flags_match_truth(small_loaded):
    cube, truth = small_loaded
    qa = cube.qa_pixel.values
    clear = truth.clear_sky.values
    cloud = (qa & (1 << QA_BITS["cloud"])) != 0
    shadow = (qa & (1 << QA_BITS["cloud_shadow"])) != 0
    assert cloud.any() and shadow.any()
    assert not (cloud & clear).any()
    # shadows are flagged with a dilation, as Fmask does: most flagged pixels are shaded
    assert (~clear[shadow]).mean() > 0.5
    # the "clear" bit is set exactly where neither cloud nor dilated-cloud is
    dilated = (qa & (1 << QA_BITS["dilated_cloud"])) != 0
    fill = qa == 1
    clear_bit = (qa & (1 << QA_BITS["clear"])) != 0
    np.testing.assert_array_equal(clear_bit[~fill], ~(cloud | dilated)[~fill])
    # clouds are bright in SWIR: NDSI of cloud pixels is far below snow's
    swir, green = cube.swir16.values, cube.green.values
    assert np.nanmean(swir[cloud]) > 0.3
    snow = ((qa & (1 << QA_BITS["snow"])) != 0) & ~fill
    ndsi = (green - swir) / (green + swir)
    assert np.nanmean(ndsi[snow]) > 0.6


def test_seasonal_snow(small_loaded):
    cube, truth = small_loaded
    ndsi = xglacier.ndsi(cube).where(truth.clear_sky).mean(("y", "x"))
    month = cube.indexes["time"].month
    winter = ndsi.values[np.isin(month, [1, 2, 3])]
    summer = ndsi.values[np.isin(month, [8, 9])]
    assert np.nanmean(winter) > np.nanmean(summer) + 0.2


def test_glacier_truth():
    _, truth = xglacier.synthetic_cube(shape=(96, 96), start="2013-01-01", end="2022-01-01",
                                          retreat_rate=30.0, seed=2)
    cls = truth.glacier_class.isel(time=[0, -1]).values
    assert {0, 1, 2} <= set(np.unique(cls[0]))
    area = (cls > 0).sum(axis=(1, 2))
    assert area[1] < area[0]  # the terminus retreats
    dem = truth.dem.values
    assert dem[cls[0] == 2].mean() < dem[cls[0] == 1].mean()  # debris on the lower tongue
    speed = truth.speed.values
    on = cls[0] > 0
    assert speed[~on].max() == 0
    assert 0.8 * 120 <= speed.max() <= 120
    # ice flows downhill: velocity points against the elevation gradient
    gy, gx = np.gradient(dem)  # per row (south), per column (east)
    downhill = -(truth.velocity_x.values * gx - truth.velocity_y.values * gy)
    fast = speed > 20
    assert (downhill[fast] > 0).mean() > 0.9


def test_shift_truth_is_a_pure_translation():
    kw = dict(shape=(64, 64), start="2020-07-15", end="2020-09-01", seed=4, noise=0.0,
              cloud_scale=0.0)
    ref, _ = xglacier.synthetic_cube(max_shift=0.0, **kw)
    moved, truth = xglacier.synthetic_cube(max_shift=2.0, **kw)
    for k in range(moved.sizes["time"]):
        dx, dy = float(truth.shift_x[k]), float(truth.shift_y[k])
        a = ref.swir16.isel(time=k).values.astype(float)
        b = moved.swir16.isel(time=k).values.astype(float)
        if np.isnan(a).any() or np.isnan(b).any():
            continue
        back = ndimage.shift(a, (dy, dx), order=3, mode="nearest")
        inner = (slice(6, -6), slice(6, -6))
        err = np.abs(back - b)[inner].mean()
        unshifted = np.abs(a - b)[inner].mean()
        assert err < 0.2 * unshifted + 1e-3


def test_texture_is_advected_by_the_velocity():
    """Between two summer scenes the debris texture moves by velocity * dt."""
    kw = dict(shape=(96, 96), start="2020-08-01", end="2020-10-01", seed=7, noise=0.0,
              cloud_scale=0.0, max_shift=0.0, ice_speed=400.0)
    cube, truth = xglacier.synthetic_cube(**kw)
    cube = cube.compute()
    i, j = 0, cube.sizes["time"] - 1
    dt = (cube.time[j] - cube.time[i]).values / np.timedelta64(1, "D") / 365.25
    a, b = cube.red.values[i].astype(float), cube.red.values[j].astype(float)
    rows, cols = np.mgrid[0:96, 0:96].astype(float)
    vr = -truth.velocity_y.values / 30 * dt
    vc = truth.velocity_x.values / 30 * dt
    warped = ndimage.map_coordinates(a, [rows - vr, cols - vc], order=3, mode="nearest")
    deb = (truth.glacier_class.values[j] == 2) & (truth.speed.values > 150)
    deb = ndimage.binary_erosion(deb, iterations=2)
    assert deb.sum() > 20
    # illumination changes with the season, so compare patterns by correlation
    moved = np.corrcoef(warped[deb], b[deb])[0, 1]
    still = np.corrcoef(a[deb], b[deb])[0, 1]
    assert moved > 0.95 and moved > still + 0.05


def test_open_sample_and_errors():
    cube, truth = xglacier.open_sample()
    assert (cube.sizes["y"], cube.sizes["x"]) == (200, 200)
    assert cube.indexes["time"][0] >= pd.Timestamp("2016-01-01")
    with pytest.raises(xglacier.errors.ParameterError, match="preset"):
        xglacier.synthetic_cube(preset="nowhere")
    with pytest.raises(xglacier.errors.ParameterError, match="shape"):
        xglacier.synthetic_cube(shape=(4, 4))
    with dask.config.set(scheduler="sync"):
        assert truth.glacier_class.isel(time=0).values.max() == 2
