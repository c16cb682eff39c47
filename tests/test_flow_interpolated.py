"""flow pairs observed frames only: composites' interpolated periods are skipped."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import ndimage

import xglacier
from xglacier.errors import InputError, ParameterError


def frames(flags: list[int], y_ascending: bool = False) -> xr.DataArray:
    """Quarterly frames whose eastern half moves a pixel east per quarter (the western half is
    still: the noise floor's ground), with an ``interpolated`` flag."""
    img = ndimage.gaussian_filter(np.random.default_rng(0).random((48, 48)), 2)
    stack = np.stack([np.concatenate([img[:, :24], np.roll(img, k, axis=1)[:, 24:]], axis=1)
                      for k in range(len(flags))]).astype("f4")
    y = 30.0 * np.arange(48)[::-1]
    da = xr.DataArray(stack, dims=("time", "y", "x"), name="nir08",
                      coords={"time": pd.date_range("2020-01-01", periods=len(flags), freq="3MS"),
                              "y": y, "x": 30.0 * np.arange(48),
                              "interpolated": ("time", np.array(flags, bool))},
                      attrs={"units": "1"})
    da = da.rio.write_crs("EPSG:32643")
    return da.isel(y=slice(None, None, -1)) if y_ascending else da


def west(da: xr.DataArray) -> xr.DataArray:
    """The still western half: stable ground."""
    return (da.x < 24 * 30.0 - 60).broadcast_like(da.isel(time=0, drop=True)).reset_coords(drop=True)


@pytest.mark.parametrize("y_ascending", [False, True])
def test_pairs_join_observed_frames_over_the_time_between_them(y_ascending):
    da = frames([0, 1, 1, 0, 0, 1, 0], y_ascending)
    got = xglacier.flow(da, stable=west(da)).compute()
    observed = da.time.values[~da.interpolated.values]
    assert got.sizes["pair"] == 3
    np.testing.assert_array_equal(got.start.values, observed[:-1])
    np.testing.assert_array_equal(got.end.values, observed[1:])
    np.testing.assert_array_equal(got.dt_days.values, np.diff(observed) / np.timedelta64(1, "D"))
    # the same as the flow of the observed frames alone
    alone = xglacier.flow(da.isel(time=~da.interpolated.values).drop_vars("interpolated"),
                          stable=west(da)).compute()
    xr.testing.assert_identical(got.drop_attrs(), alone.drop_attrs())


def test_keeping_interpolated_frames_is_one_keyword_away():
    da = frames([0, 1, 1, 0])
    assert xglacier.flow(da, stable=west(da), skip_interpolated=False).sizes["pair"] == 3
    assert xglacier.flow(da.drop_vars("interpolated"), stable=west(da)).sizes["pair"] == 3


def test_fewer_than_two_observed_frames_is_an_error():
    with pytest.raises(InputError, match=r"flow: variable 'nir08' has 1 observed frame\(s\) of 4"):
        xglacier.flow(frames([1, 0, 1, 1]))
    with pytest.raises(ParameterError, match="skip_interpolated"):
        xglacier.flow(frames([0, 0]), skip_interpolated=1)
