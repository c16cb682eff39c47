"""flow's noise floor: speed_noise, speed_signal, above_noise and the FlowNoiseWarning.

Known motion must pass, noise must be flagged: synthetic frames with a moving and a
still part, pure noise, a very short time gap under misregistration, the synthetic cube
(whose truth says which pixels are glacier), and the real Athabasca pairs 24 and 2 days
apart (skipped when ``../shared/data`` is absent).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import dask.array as dsa
import matplotlib
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import ndimage

import xglacier
from xglacier.errors import FlowNoiseWarning, InputError
from xglacier.segmentation.labels import rasterize

ATHABASCA = Path(__file__).resolve().parents[2] / "shared" / "data" / "athabasca"
needs_athabasca = pytest.mark.skipif(
    not ATHABASCA.is_dir(),
    reason=f"real Athabasca crops not found at {ATHABASCA} (../shared/data beside the project)",
)
UTM = "EPSG:32643"
N = 96


def texture(seed: int = 0, n: int = N) -> np.ndarray:
    img = ndimage.gaussian_filter(np.random.default_rng(seed).random((n, n)), 2)
    return (img - img.min()) / (img.max() - img.min())


def frames(images, dates) -> xr.DataArray:
    da = xr.DataArray(np.stack(images).astype(np.float32), dims=("time", "y", "x"),
                      coords={"time": pd.to_datetime(dates), "y": 3.6e6 - 30.0 * np.arange(N),
                              "x": 7.3e5 + 30.0 * np.arange(N)})
    return da.rio.write_crs(UTM)


def glacier(da: xr.DataArray) -> xr.DataArray:
    """The moving part: columns 40-79 (True), the rest stands still."""
    cols = np.zeros(N, bool)
    cols[40:80] = True
    return xr.DataArray(np.broadcast_to(cols, (N, N)), dims=("y", "x"), coords={"y": da.y, "x": da.x})


def moved(img: np.ndarray, shift: tuple[float, float], where: np.ndarray | None = None) -> np.ndarray:
    out = ndimage.shift(img, shift, order=3, mode="reflect")
    return out if where is None else np.where(where, out, img)


def known_motion(dy_px=0.0, dx_px=2.0, misregistration=(0.0, 0.0), days=365, noise=0.0, seed=0):
    """Two frames ``days`` apart: the glacier moves (dy_px, dx_px), the whole second frame is
    then misregistered and gets Gaussian noise (std ``noise``)."""
    img = texture(seed)
    base = frames([img, img], ["2020-01-01", "2020-01-01"])
    ice = glacier(base).values
    second = moved(moved(img, (dy_px, dx_px), ice), misregistration)
    second = second + np.random.default_rng(seed + 1).normal(0, noise, img.shape)
    end = (pd.Timestamp("2020-01-01") + pd.Timedelta(days=days)).strftime("%Y-%m-%d")
    da = frames([img, second], ["2020-01-01", end])
    return da, ~glacier(da)


@pytest.mark.parametrize("with_mask", [True, False])
def test_known_motion_is_above_the_noise_floor(with_mask):
    da, stable = known_motion()  # 2 px (60 m) east in a year over the glacier, nothing elsewhere
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlowNoiseWarning)
        vel = xglacier.flow(da, stable=stable if with_mask else None)
    assert vel.speed_noise.dims == ("pair",) and vel.speed_noise.attrs["units"] == "m yr-1"
    assert vel.speed_signal.attrs["units"] == "m yr-1" and vel.above_noise.dtype == bool
    ice = vel.isel(pair=0).where(~stable)
    truth = 60.0 * 365.25 / 366
    assert float(ice.u.isel(y=slice(10, -10), x=slice(45, 75)).median()) == pytest.approx(truth, rel=0.05)
    noise, signal = float(vel.speed_noise[0]), float(vel.speed_signal[0])
    if with_mask:
        # the still ground: exactly what the flow says there
        still = vel.speed.isel(pair=0).values[stable.values]
        assert noise == pytest.approx(np.median(still[np.isfinite(still)]), rel=1e-6)
        assert noise < 0.1 * truth and signal == pytest.approx(truth, rel=0.1)
    else:
        # the frame is mostly still: the median is near zero, the fastest tenth the glacier
        assert noise < 0.2 * truth and signal == pytest.approx(truth, rel=0.15)
    assert bool(vel.above_noise[0])


@pytest.mark.parametrize("with_mask", [True, False])
def test_pure_noise_is_flagged_and_named(with_mask):
    da = frames([texture(1), texture(2)], ["2020-07-01", "2020-07-17"])
    with pytest.warns(FlowNoiseWarning, match=r"^flow: 1 of 1 pairs have no motion clearly above their "
                      r"noise floor .*2020-07-01T00:00:00 -> 2020-07-17T00:00:00 \(signal [0-9.]+, noise"):
        vel = xglacier.flow(da, stable=~glacier(da) if with_mask else None)
    assert not bool(vel.above_noise[0])
    assert float(vel.speed_signal[0]) < 3 * float(vel.speed_noise[0])


@pytest.mark.parametrize("with_mask", [True, False])
def test_short_time_gap_under_misregistration_is_flagged(with_mask):
    # 100 m/yr of ice over 2 days is 0.018 px; the frames are 0.4 px apart (as on Athabasca)
    da, stable = known_motion(dx_px=100 / 30 * 2 / 365.25, misregistration=(0.4, 0.1), days=2, noise=0.01)
    with pytest.warns(FlowNoiseWarning, match="1 of 1 pairs"):
        vel = xglacier.flow(da, stable=stable if with_mask else None)
    # the floor is the misregistration: about 0.41 px, 2250 m/yr over 2 days
    floor = np.hypot(0.4, 0.1) * 30 * 365.25 / 2
    assert float(vel.speed_noise[0]) == pytest.approx(floor, rel=0.25)
    assert not bool(vel.above_noise[0])
    # the same glacier over a year, well registered, is above
    da, stable = known_motion(dx_px=100 / 30, noise=0.01)
    assert bool(xglacier.flow(da, stable=stable if with_mask else None).above_noise[0])


def test_synthetic_cube_glacier_motion_and_misregistration():
    kw = dict(shape=(128, 128), start="2020-07-01", end="2020-10-15", cloud_scale=0.0, seed=7)
    cube, truth = xglacier.synthetic_cube(max_shift=0.0, ice_speed=1200.0, **kw)
    stable = (truth.glacier_class == 0).all("time").compute()  # never glacier: ground that holds still
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlowNoiseWarning)
        vel = xglacier.flow(cube.nir08, stable=stable).compute()
    assert vel.above_noise.all()
    # the floor is the flow's error where the truth is zero: a small fraction of the ice speed
    fast = truth.speed.values > 600
    assert (vel.speed_noise < 0.2 * np.median(truth.speed.values[fast])).all()
    # up to 1 px of misregistration per scene over 8-16 days: every pair is noise
    shaky, _ = xglacier.synthetic_cube(max_shift=1.0, ice_speed=1200.0, **kw)
    with pytest.warns(FlowNoiseWarning, match=r"9 of 9 pairs"):
        noisy = xglacier.flow(shaky.nir08, stable=stable).compute()
    assert not noisy.above_noise.any()
    assert (noisy.speed_noise > 2 * vel.speed_noise).all()


def test_lazy_chunk_invariant_and_warned_when_computed(no_compute):
    da, stable = known_motion()
    noise = frames([texture(3), texture(4)], ["2021-01-01", "2021-01-17"])
    da = xr.concat([da, noise.assign_coords(time=pd.to_datetime(["2021-01-02", "2021-01-18"]))], "time")
    with pytest.warns(FlowNoiseWarning, match=r"^flow: 2 of 3 pairs .*2020-12-31T00:00:00 -> 2021-01-02"):
        eager = xglacier.flow(da, stable=stable)
    for mask in (stable, stable.chunk({"y": 40})):
        with no_compute():
            lazy = xglacier.flow(da.chunk({"time": 2, "y": 50, "x": 30}), stable=mask)
            for name in ("speed_noise", "speed_signal", "above_noise"):
                assert isinstance(lazy[name].data, dsa.Array)
        assert lazy.speed_noise.chunks == ((1, 1, 1),)  # one task per pair
        with pytest.warns(FlowNoiseWarning, match="2 of 3 pairs"):
            got = lazy.compute()
        for name in ("speed", "speed_noise", "speed_signal", "above_noise"):
            np.testing.assert_array_equal(got[name].values, eager[name].values)
    assert eager.above_noise.values.tolist() == [True, False, False]
    # one pair's floor alone computes without a warning (the flags are not needed for it)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlowNoiseWarning)
        lazy.speed_noise.isel(pair=0).compute()


def test_empty_frame_has_no_floor_and_is_flagged():
    da, stable = known_motion()
    da[1] = np.nan  # an all-NaN scene (a gap, a cloud)
    with pytest.warns(FlowNoiseWarning, match=r"1 of 1 pairs .*signal nan, noise nan"):
        vel = xglacier.flow(da, stable=stable)
    assert np.isnan(vel.speed_noise[0]) and np.isnan(vel.speed_signal[0]) and not vel.above_noise[0]
    # integer frames (DNs) give the same floor as the same values in float
    ints = (known_motion()[0] * 10000).round().astype(np.int16)
    np.testing.assert_allclose(xglacier.flow(ints, stable=stable).speed_noise,
                               xglacier.flow(ints.astype(np.float32), stable=stable).speed_noise)


def test_stable_mask_is_checked():
    da, stable = known_motion()
    with pytest.raises(InputError, match=r"^flow: stable has dtype float64; expected bool"):
        xglacier.flow(da, stable=stable.astype(float))
    with pytest.raises(InputError, match=r"^flow: stable has no True pixel"):
        xglacier.flow(da, stable=stable & False)
    with pytest.raises(InputError, match=r"^flow: stable is a DataArray with dimensions \('x',\)"):
        xglacier.flow(da, stable=stable.isel(y=0))
    with pytest.raises(InputError, match=r"^flow: stable is a ndarray; expected a \(y, x\) DataArray"):
        xglacier.flow(da, stable=stable.values)
    with pytest.raises(InputError, match=r"^flow: stable is not on the grid .*'x' runs 730030 "):
        xglacier.flow(da, stable=stable.assign_coords(x=stable.x + 30.0))  # one pixel east
    # a mask without coordinates of the right shape is taken in the frames' order
    bare = xr.DataArray(stable.values, dims=("y", "x"))
    xr.testing.assert_identical(xglacier.flow(da, stable=bare), xglacier.flow(da, stable=stable))


def test_plot_flow_title_names_the_noise_floor():
    matplotlib.use("Agg")
    da, stable = known_motion()
    vel = xglacier.flow(da, stable=stable)
    ax = xglacier.plot_flow(vel)
    assert f"noise floor {float(vel.speed_noise[0]):.3g}" in ax.get_title()
    matplotlib.pyplot.close(ax.figure)


# -- real pairs: Athabasca ----------------------------------------------------------------------


@needs_athabasca
@pytest.mark.parametrize("with_mask", [True, False])
def test_athabasca_short_pairs_are_noise(with_mask):
    # L30 08-16, S30 09-09 and the 09-11 crop (one pixel off: cut to the others' grid)
    three = xglacier.open_scenes([ATHABASCA, ATHABASCA / "shifted_20200911"], bands=["nir08"],
                                 resampling="nearest").nir08.compute()
    stable = rasterize(ATHABASCA / "athabasca_outline.shp", three.isel(time=0)) == 0 if with_mask else None
    for dates, pair, days in ((["2020-08-16", "2020-09-09"], [0, 1], 24),
                              (["2020-09-09", "2020-09-11"], [1, 2], 2)):
        with pytest.warns(FlowNoiseWarning, match=f"^flow: 1 of 1 pairs .*{dates[0]}T00:00:00 -> {dates[1]}"):
            vel = xglacier.flow(three.isel(time=pair), stable=stable)
        assert not bool(vel.above_noise[0]) and float(vel.dt_days[0]) == days
        # the floor: tenths of a pixel of misregistration, i.e. ~100-300 m/yr over 24 days and
        # ~1000-3000 m/yr over 2 days (an order of magnitude above Athabasca's real speed)
        assert 50 * 24 / days < float(vel.speed_noise[0]) < 400 * 24 / days
        if with_mask:  # the glacier moves no faster than the rock, as far as the flow can tell
            assert float(vel.speed_signal[0]) < float(vel.speed_noise[0])
