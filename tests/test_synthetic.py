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
    t = cube.indexes["time"]
    assert pd.Timestamp("2014-01-01") <= t[0] and t[-1] < pd.Timestamp("2022-01-01")
    assert list(truth.year.values) == list(range(2014, 2022))
    # the demo's time split of 4 + 4-quarter windows over the 32 quarters has several training windows
    plan = xglacier.forecasting.patches.make_plan((32, 200, 200), 20, 10, 4, 4)
    train, _, test = xglacier.forecasting.splits.time_split(plan, 0.15, 0.15)
    assert len(np.unique(plan.samples[train, 0])) >= 8 and test.size
    with pytest.raises(xglacier.errors.ParameterError, match="preset"):
        xglacier.synthetic_cube(preset="nowhere")
    with pytest.raises(xglacier.errors.ParameterError, match="shape"):
        xglacier.synthetic_cube(shape=(4, 4))
    with dask.config.set(scheduler="sync"):
        assert truth.glacier_class.isel(time=0).values.max() == 2


def test_open_sample_overrides():
    """Overrides change what they name and nothing else; the grid and dates cannot change."""
    cube, truth = xglacier.open_sample()
    cube0, truth0 = xglacier.open_sample(snowline_variability=0.0)
    assert np.all(truth0.snowline_anomaly.values == 0)
    assert np.abs(truth.snowline_anomaly.values).max() > 50
    # the same scenes: dates, shifts and clouds do not depend on the snowline anomaly
    np.testing.assert_array_equal(cube0.time.values, cube.time.values)
    np.testing.assert_array_equal(truth0.shift_x.values, truth.shift_x.values)
    np.testing.assert_array_equal(truth0.ice_albedo_factor.values, truth.ice_albedo_factor.values)
    for bad in ({"shape": (64, 64)}, {"end": "2030-01-01"}, {"preset": "parvati"}):
        with pytest.raises(xglacier.errors.ParameterError, match=r"open_sample: .* cannot be changed"):
            xglacier.open_sample(**bad)
    with pytest.raises(xglacier.errors.ParameterError, match=r"unknown keyword.*snowline_sd"):
        xglacier.open_sample(snowline_sd=0)


# -- year-to-year variability, checked against its truth ---------------------------------------

@pytest.fixture(scope="module")
def six_years():
    """Six years (the default period) of a 64x64 glacier retreating by 30 m/yr, unshifted scenes."""
    cube, truth = xglacier.synthetic_cube(shape=(64, 64), seed=3, max_shift=0.0, retreat_rate=30.0)
    with dask.config.set(scheduler="threads"):
        return cube[["green", "swir16", "nir08"]].compute(), truth.compute()


def _snowline_per_scene(cube, truth):
    """Altitude that best splits snow from bare ground, per scene, over clear glacier-free ground.

    Snow as in Landsat snow mapping: NDSI > 0.4 and NIR > 0.11 (which rejects the lake).
    """
    g, s, n = (cube[b].values for b in ("green", "swir16", "nir08"))
    snow = ((g - s) / (g + s) > 0.4) & (n > 0.11)
    usable = truth.clear_sky.values & ~truth.nodata.values & (truth.glacier_class.values == 0)
    z = truth.dem.values
    est = np.full(len(g), np.nan)
    for k in range(len(g)):
        zk, sk = z[usable[k]], snow[k][usable[k]]
        if sk.sum() < 20 or (~sk).sum() < 20:  # snowline outside the visible range of altitudes
            continue
        order = np.argsort(zk)
        zk, sk = zk[order], sk[order]
        # pixels misclassified by a line just below pixel i: snow under it, bare ground above it
        wrong = np.concatenate([[0], np.cumsum(sk)]) + np.concatenate([np.cumsum(~sk[::-1])[::-1], [0]])
        best = np.flatnonzero(wrong == wrong.min())
        est[k] = np.median(zk[np.clip(best, 0, len(zk) - 1)])
    return est


def test_yearly_snowline_anomaly_recovered_from_the_scenes(six_years):
    cube, truth = six_years
    est = _snowline_per_scene(cube, truth)
    ok = np.isfinite(est)
    assert ok.sum() > 0.7 * len(est)
    # one season harmonic (estimated, not taken from the generator) plus one level per year
    doy = cube.time.dt.dayofyear.values[ok]
    years = cube.time.dt.year.values[ok]
    uy = np.unique(years)
    design = np.column_stack([np.cos(2 * np.pi * doy / 365.25), np.sin(2 * np.pi * doy / 365.25)]
                             + [(years == y).astype(float) for y in uy])
    coef = np.linalg.lstsq(design, est[ok], rcond=None)[0]
    found = coef[2:] - coef[2:].mean()
    want = truth.snowline_anomaly.sel(year=uy).values
    want = want - want.mean()
    assert want.std() > 50  # the default spread (150 m) shows in six draws
    # Patchy snow (an 80 m random texture) and the 60 m wide snow-to-ground transition make
    # one scene's estimate err by some 40 m; ~25 scenes a year bring a year's level to
    # within about 10 m. 25 m is 2.5 times that and a sixth of the spread of the anomalies.
    np.testing.assert_array_less(np.abs(found - want), 25.0)
    assert np.corrcoef(found, want)[0, 1] > 0.98
    # the per-scene truth is the seasonal cycle plus the year's anomaly
    per_scene = truth.snowline_altitude.values[ok] - truth.snowline_anomaly.to_series()[years].values
    assert np.ptp(per_scene) > 1000  # late-August line some 1600 m above the late-February one


def test_terminus_retreat_measured_on_the_glacier_mask(six_years):
    _, truth = six_years
    ice = truth.glacier_class.values > 0
    rows = np.arange(ice.shape[1])
    last = np.array([rows[frame.any(axis=1)].max() for frame in ice])  # down-valley end of the ice
    measured_y = truth.y.values[last]
    # The last ice row is above the true terminus and within 1.1 pixels of it: the tongue
    # tapers to zero width there, and a pixel is ice once the tongue's half-width passes
    # the pixel centre (at most 0.5 px off the centreline), some 0.05 px above the terminus.
    diff = measured_y - truth.terminus_y.values
    assert np.all((diff >= 0) & (diff <= 1.1 * 30.0))
    years = (truth.time - truth.time[0]).values / np.timedelta64(1, "D") / 365.25
    rate = np.polyfit(years, measured_y, 1)[0]
    # the mask moves in whole pixels: over 6 years a fitted rate is off by at most a pixel (5 m/yr)
    assert abs(rate - truth.attrs["terminus_retreat_rate_m_per_yr"]) < 5.0
    assert ice[-1].sum() < ice[0].sum()


def test_zero_spreads_change_nothing_else():
    """The yearly spreads have their own random stream: dates, shifts and snowlines stay."""
    kw = dict(shape=(24, 24), start="2019-06-01", end="2021-06-01", seed=9)
    a, ta = xglacier.synthetic_cube(**kw)
    b, tb = xglacier.synthetic_cube(albedo_variability=0, debris_variability=0, cloud_variability=0, **kw)
    np.testing.assert_array_equal(a.time.values, b.time.values)
    for v in ("shift_x", "shift_y", "snowline_anomaly", "terminus_y"):
        np.testing.assert_array_equal(ta[v].values, tb[v].values)
    assert np.all(tb.ice_albedo_factor == 1) and np.all(tb.cloud_factor == 1)
    assert np.all(tb.debris_line_shift == 0)
    assert ta.ice_albedo_factor.std() > 0 and ta.cloud_factor.std() > 0
    # no yearly snowline anomaly: the snowline of a day of year is the same every year
    _, flat = xglacier.synthetic_cube(snowline_variability=0, **kw)
    assert np.all(flat.snowline_anomaly == 0)
    doy = flat.time.dt.dayofyear.values
    line = flat.snowline_altitude.values
    for d in np.intersect1d(doy[flat.time.dt.year == 2019], doy[flat.time.dt.year == 2020]):
        assert np.ptp(line[doy == d]) == 0


def _twins(**kw):
    """The same cube twice, with the default spreads and with those of ``kw`` set to 0."""
    base = dict(shape=(64, 64), start="2019-01-01", end="2023-01-01", seed=5, max_shift=0.0)
    on = xglacier.synthetic_cube(**base, **kw)
    off = xglacier.synthetic_cube(**base, **{k: 0.0 for k in kw if k.endswith("variability")},
                                  **{k: v for k, v in kw.items() if not k.endswith("variability")})
    return on, off


def test_yearly_ice_albedo_against_its_truth():
    (cube, truth), (_, flat_truth) = _twins(albedo_variability=0.05, debris_variability=0.0,
                                      cloud_scale=0.0, noise=0.0)
    late = (cube.time.dt.month >= 8) & (cube.time.dt.month <= 9)
    ratio = (truth.true_green / flat_truth.true_green).where(late, drop=True)
    ice = (truth.glacier_class == 1).where(late, drop=True).astype(bool)
    factor = truth.ice_albedo_factor.sel(year=ratio.time.dt.year).broadcast_like(ratio)
    r, f = ratio.values[ice.values], factor.values[ice.values]
    # snow-covered ice keeps its reflectance, bare ice takes the year's factor, partly snowy
    # pixels lie in between (quantised DNs: 1e-3 leeway)
    assert np.all((r >= np.minimum(f, 1) - 1e-3) & (r <= np.maximum(f, 1) + 1e-3))
    for year in np.unique(ratio.time.dt.year):
        sel = ratio.time.dt.year.values == year
        on_ice = ice.values[sel]
        exact = np.abs(ratio.values[sel][on_ice] - float(truth.ice_albedo_factor.sel(year=year))) < 1e-3
        assert exact.mean() > 0.1  # late summer: part of the clean ice is bare


def test_yearly_debris_line_against_its_truth():
    (_, truth), (_, flat) = _twins(debris_variability=60.0, cloud_scale=0.0)
    on, off = truth.glacier_class.values, flat.glacier_class.values
    shifts = truth.debris_line_shift.sel(year=truth.time.dt.year).values / 30.0  # pixels
    assert np.abs(shifts).max() > 1
    for k in range(on.shape[0]):
        # the centre pixel of each ice row is never lateral moraine: its class changes at the line
        tops = []
        for cls in (on[k], off[k]):
            centre = [int(np.median(np.flatnonzero(row > 0))) if (row > 0).any() else -1 for row in cls]
            debris_rows = [r for r, c in enumerate(centre) if c >= 0 and cls[r, c] == 2]
            tops.append(min(debris_rows))
        # up-glacier shift: the debris starts higher; pixel rows round it to the nearest row
        assert abs((tops[1] - tops[0]) - shifts[k]) <= 1.0


def test_yearly_cloudiness_against_its_truth():
    (_, truth), (_, flat) = _twins(cloud_variability=0.3)
    year = truth.time.dt.year
    cloudy = (1 - truth.clear_sky.mean(("y", "x"))).groupby(year).mean().values
    cloudy0 = (1 - flat.clear_sky.mean(("y", "x"))).groupby(year).mean().values
    factor = truth.cloud_factor.sel(year=np.unique(year)).values
    assert np.ptp(np.log(factor)) > 0.3
    # cloud fractions scale with the year's factor (clipped at 95 %, with their shadows)
    assert np.corrcoef(np.log(cloudy / cloudy0), np.log(factor))[0, 1] > 0.9
    assert np.all(np.sign(cloudy - cloudy0) == np.sign(factor - 1))


def test_chunked_equals_unchunked_and_seeded():
    kw = dict(shape=(24, 24), start="2020-05-01", end="2021-03-01", seed=11)
    cube, truth = xglacier.synthetic_cube(**kw)
    whole = cube.compute()
    with dask.config.set(scheduler="sync"):
        rechunked = cube.chunk({"time": 5, "y": 10}).compute()
        one = cube.isel(time=7).compute()
    assert whole.identical(rechunked)
    assert whole.isel(time=7).identical(one)
    _, truth2 = xglacier.synthetic_cube(**kw)
    assert truth.compute().identical(truth2.compute())
    _, other = xglacier.synthetic_cube(**{**kw, "seed": 12})
    assert not np.array_equal(truth.ice_albedo_factor.values, other.ice_albedo_factor.values)


def test_default_period_gives_a_time_split():
    cube, truth = xglacier.synthetic_cube(shape=(32, 32))
    t = cube.indexes["time"]
    assert t[0] >= pd.Timestamp("2020-01-01") and t[-1] < pd.Timestamp("2026-01-01")
    assert list(truth.year.values) == list(range(2020, 2026))
    quarters = xglacier.composite(xglacier.ndsi(cube), freq="3MS").compute()
    ps = xglacier.patches(quarters, size=16, stride=16, n_in=4, n_out=4)
    train, _, test = ps.split(by="time")  # the README tour's split
    assert len(np.unique(train.plan.samples[:, 0])) >= 3 and len(test) > 0
