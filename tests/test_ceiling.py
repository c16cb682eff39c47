"""The held-out year's ceiling: seasonal persistence against the climate oracle."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from xglacier.errors import DimensionError, InputError, TimeAxisError
from xglacier.forecasting.ceiling import held_out_ceiling


def frames(values: np.ndarray, *, freq: str = "6MS", interpolated=None, ny: int = 8, nx: int = 8
           ) -> xr.DataArray:
    """One constant frame per value (or the given stack), on a y-descending grid."""
    v = np.asarray(values, dtype=float)
    if v.ndim == 1:
        v = v[:, None, None] * np.ones((v.size, ny, nx))
    t = xr.date_range("2015-01-01", periods=v.shape[0], freq=freq)
    coords = {"time": t, "y": np.arange(v.shape[1])[::-1] * 30.0, "x": np.arange(v.shape[2]) * 30.0}
    da = xr.DataArray(v, dims=("time", "y", "x"), coords=coords)
    if interpolated is not None:
        da = da.assign_coords(interpolated=("time", np.asarray(interpolated, bool)))
    return da


def test_values_by_hand():
    # two seasons a year; held-out year (0.2, 0.2); a year earlier (0.4, 0.4); before (0.0, 0.0)
    da = frames([0.0, 0.0, 0.4, 0.4, 0.2, 0.2])
    r = held_out_ceiling(da, period=2)
    assert r["seasonal"] == pytest.approx(0.04) and r["oracle"] == pytest.approx(0.0)
    assert r["ratio"] == pytest.approx(0.0) and r["years"] == 2
    assert [f[0] for f in r["per_frame"]] == ["2017-01-01", "2017-07-01"]
    # an interpolated frame is left out of the oracle's mean: season 1 falls back on 0.4
    r = held_out_ceiling(frames([0.0, 0.0, 0.4, 0.4, 0.2, 0.2], interpolated=[1, 0, 0, 0, 0, 0]), period=2)
    assert r["oracle"] == pytest.approx(0.02)
    assert [f[2] for f in r["per_frame"]] == pytest.approx([0.04, 0.0])
    # an interpolated frame of the held-out year is not scored (nothing was observed then)
    da = frames([0.0, 0.0, 0.4, 0.4, 0.2, 0.6], interpolated=[0, 0, 0, 0, 1, 0])
    r = held_out_ceiling(da, period=2)
    assert [f[0] for f in r["per_frame"]] == ["2017-07-01"]
    assert r["seasonal"] == pytest.approx(0.04) and r["oracle"] == pytest.approx(0.16)


def test_noise_ratio_matches_theory_and_variants():
    """A fixed pattern plus independent noise each year: seasonal persistence's MSE is 2 s^2, the
    oracle's over k earlier years s^2 (1 + 1/k)."""
    rng = np.random.default_rng(3)
    k, period, s = 5, 4, 0.1
    pattern = rng.uniform(-1, 1, (period, 60, 60))
    v = np.concatenate([pattern + s * rng.standard_normal(pattern.shape) for _ in range(k + 1)])
    da = frames(v, freq="3MS")
    r = held_out_ceiling(da, block=10, seed=1)
    assert r["years"] == k
    assert r["seasonal"] == pytest.approx(2 * s**2, rel=0.05)
    assert r["oracle"] == pytest.approx(s**2 * (1 + 1 / k), rel=0.05)
    # 14,400 pixels of independent noise: a few per cent of sampling error at most
    assert r["ratio"] == pytest.approx((1 + 1 / k) / 2, rel=0.05)
    for name in ("seasonal", "oracle", "ratio"):
        assert r[f"{name}_low"] <= r[name] <= r[f"{name}_high"]
    # y ascending gives the same figures; NaN pixels are left out, not counted as zeros
    flipped = held_out_ceiling(da.isel(y=slice(None, None, -1)), block=10, seed=1)
    assert flipped["seasonal"] == pytest.approx(r["seasonal"])
    assert flipped["oracle"] == pytest.approx(r["oracle"])
    holes = da.copy()
    holes[-1, :30] = np.nan
    h = held_out_ceiling(holes, block=10, seed=1)
    last = v[-1, 30:] - v[-1 - period, 30:]
    expected = np.mean([np.mean(last**2)] + [np.mean((v[t] - v[t - period]) ** 2) for t in range(-4, -1)])
    per_frame_seasonal = [f[1] for f in h["per_frame"]]
    assert np.mean(per_frame_seasonal) == pytest.approx(expected)
    assert np.isfinite(h["seasonal"]) and np.isfinite(h["oracle"])


def test_bad_input_is_refused():
    with pytest.raises(InputError, match="held_out_ceiling: ndsi has 4 frames"):
        held_out_ceiling(frames([0.0, 0.1, 0.2, 0.3]), period=2)
    with pytest.raises(InputError, match="ndsi has 12 frames per year, not period=4"):
        held_out_ceiling(frames(np.zeros(12), freq="MS"), period=4)
    with pytest.raises(DimensionError, match="expected \\(time, y, x\\)"):
        held_out_ceiling(frames(np.zeros(6)).isel(x=0), period=2)
    backwards = frames(np.zeros(6)).isel(time=slice(None, None, -1))
    with pytest.raises(TimeAxisError):
        held_out_ceiling(backwards, period=2)
    empty = frames([0.0, 0.0, 0.4, 0.4, np.nan, np.nan])
    with pytest.raises(InputError, match="no finite pixel"):
        held_out_ceiling(empty, period=2)
    with pytest.raises(InputError, match="every frame of the held-out year is interpolated"):
        held_out_ceiling(frames(np.zeros(6), interpolated=[0, 0, 0, 0, 1, 1]), period=2)
    with pytest.raises(InputError, match="every earlier frame of the season"):
        held_out_ceiling(frames(np.zeros(6), interpolated=[1, 0, 1, 0, 0, 0]), period=2)


@pytest.mark.parametrize("ascending", [False, True])
def test_windows_ceiling_by_hand(ascending):
    import xglacier
    from xglacier.forecasting.ceiling import windows_ceiling

    # two seasons a year, 1-frame windows: targets are frames 2..5 (x is the season, y the year)
    values = [0.0, 1.0, 0.2, 0.8, 0.4, 0.6]
    da = frames(values, interpolated=[0, 0, 0, 1, 0, 0])
    da = da.isel(y=slice(None, None, -1)) if ascending else da
    ps = xglacier.patches(da, size=8, stride=8, n_in=2, n_out=1, drop_interpolated=True)
    c = windows_ceiling(ps, period=2)
    # targets 2, 4, 5 (3 is interpolated: its window is dropped); seasonal = the frame 2 back
    sp = [(0.2 - 0.0) ** 2, (0.4 - 0.2) ** 2, (0.6 - 0.8) ** 2]
    # oracle: mean of the observed frames of the season before (3 left out)
    orc = [(0.2 - 0.0) ** 2, (0.4 - 0.1) ** 2, (0.6 - 1.0) ** 2]
    assert c["seasonal"] == pytest.approx(np.mean(sp)) and c["oracle"] == pytest.approx(np.mean(orc))
    assert c["ratio"] == pytest.approx(np.mean(orc) / np.mean(sp))
    assert c["gap_share"] == pytest.approx(sp[2] / sum(sp))  # target 5's year-earlier frame is 3
    with pytest.raises(InputError, match="windows_ceiling: test is a DataArray"):
        windows_ceiling(da)


def test_windows_ceiling_nan_dns_and_empty():
    import xglacier
    from xglacier.forecasting.ceiling import windows_ceiling

    values = np.array([0.0, 1.0, 0.2, 0.8, 0.4, 0.6])
    stack = values[:, None, None] * np.ones((6, 8, 8))
    stack[0, 0, 0] = np.nan  # the oracle's mean is NaN there for every even-season target
    ps = xglacier.patches(frames(stack), size=8, stride=8, n_in=2, n_out=1, nan="fill")
    c = windows_ceiling(ps, period=2)
    # targets 2..5, every pixel alike except (0, 0), which is left out of both for targets 2 and 4
    sp = [(0.2 - 0.0) ** 2, (0.8 - 1.0) ** 2, (0.4 - 0.2) ** 2, (0.6 - 0.8) ** 2]
    orc = [(0.2 - 0.0) ** 2, (0.8 - 1.0) ** 2, (0.4 - 0.1) ** 2, (0.6 - 0.9) ** 2]
    weights = [63, 64, 63, 64]
    assert c["seasonal"] == pytest.approx(np.average(sp, weights=weights))
    assert c["oracle"] == pytest.approx(np.average(orc, weights=weights))
    dns = xglacier.patches(frames(values * 10000), size=8, stride=8, n_in=2, n_out=1)
    with pytest.raises(InputError, match=r"windows_ceiling: test's variable holds values in \[0, 10000\]"):
        windows_ceiling(dns, period=2)
    empty = xglacier.patches(frames(np.full(6, np.nan)), size=8, stride=8, n_in=2, n_out=1, nan="fill")
    with pytest.raises(InputError, match="windows_ceiling: no finite pixel"):
        windows_ceiling(empty, period=2)
