"""Windows whose targets were interpolated by ``composite`` are left out of patch samples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xglacier
from xglacier.errors import InputError, ParameterError


def scenes_with_a_gap(gap: tuple[str, str] = ("2016-07-01", "2016-10-01")) -> xr.DataArray:
    """Monthly scenes 2015-2018 with no scene in ``gap``: composite interpolates that quarter."""
    time = pd.date_range("2015-01-15", "2018-12-15", freq="MS") + pd.Timedelta(14, "D")
    time = time[(time < gap[0]) | (time >= gap[1])]
    rng = np.random.default_rng(0)
    return xr.DataArray(rng.random((time.size, 12, 12)).astype("f4"), dims=("time", "y", "x"),
                        coords={"time": time, "y": 500.0 - 30 * np.arange(12), "x": 30.0 * np.arange(12)},
                        name="ndsi")


@pytest.fixture
def quarters() -> xr.DataArray:
    q = xglacier.composite(scenes_with_a_gap(), freq="3MS")
    # the gap is the one invented quarter: a fact of the input, not of the code under test
    assert q.interpolated.values.nonzero()[0].tolist() == [6]
    return q


@pytest.mark.parametrize("y_ascending", [False, True])
@pytest.mark.parametrize("chunked", [False, True])
def test_windows_with_an_interpolated_target_are_dropped(quarters, y_ascending, chunked):
    q = quarters.isel(y=slice(None, None, -1)) if y_ascending else quarters
    q = q.chunk({"time": 3}) if chunked else q
    ps = xglacier.patches(q, size=6, stride=6, n_in=2, n_out=2)
    starts = np.unique(ps.plan.samples[:, 0]).tolist()
    # 16 quarters, windows of 4 frames: starts 0..12; targets t0+2, t0+3 must not be quarter 6
    assert starts == [t for t in range(13) if 6 not in (t + 2, t + 3)]
    # an interpolated input frame is fine: the model will see such frames when it forecasts
    assert 5 in starts and 6 in starts
    assert len(ps) == len(starts) * 4
    x, y = ps.gather(np.arange(len(ps)))
    assert np.isfinite(x).all() and np.isfinite(y).all()


def test_keeping_them_is_one_keyword_away(quarters):
    ps = xglacier.patches(quarters, size=6, stride=6, n_in=2, n_out=2, drop_interpolated=False)
    assert np.unique(ps.plan.samples[:, 0]).tolist() == list(range(13))
    # without the coordinate (not a composite) every window is kept too
    bare = xglacier.patches(quarters.drop_vars("interpolated"), size=6, stride=6, n_in=2, n_out=2)
    assert len(bare) == len(ps)


def test_time_split_counts_the_windows_that_are_left(quarters):
    ps = xglacier.patches(quarters, size=6, stride=6, n_in=2, n_out=2)
    train, val, test = ps.split(by="time", test=0.2, val=0.2)
    assert len(train) and len(val) and len(test)
    test_targets, val_targets = test.plan.footprint("targets"), val.plan.footprint("targets")
    assert not (train.plan.footprint("all") & (test_targets | val_targets)).any()
    assert not (val.plan.footprint("all") & test_targets).any()
    # the invented quarter is nobody's target
    for part in (train, val, test):
        assert not part.plan.footprint("targets")[6].any()
    # val windows are the latest ones whose targets end before the first test target
    first_test = np.unique(test.plan.samples[:, 0]).min() + 2
    val_starts = np.unique(val.plan.samples[:, 0])
    assert (val_starts + 4 <= first_test).all() and val_starts.size == round(0.2 * 11)


def test_every_window_interpolated_is_an_error():
    q = xglacier.composite(scenes_with_a_gap(("2015-04-01", "2018-10-01")), freq="3MS")
    with pytest.raises(InputError, match=r"patches: every window .* interpolated target"):
        xglacier.patches(q, size=6, stride=6, n_in=2, n_out=2)


def test_bad_flag(quarters):
    with pytest.raises(ParameterError, match="drop_interpolated"):
        xglacier.patches(quarters, size=6, drop_interpolated="yes")
