"""The forecasting stage on the inputs users produce: no plausible wrong result, a clear error instead.

Expected values are computed here with NumPy from the arrays themselves.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rioxarray  # noqa: F401
import torch
import xarray as xr

import xglacier
from xglacier.errors import GridMismatchError, InputError, NaNInPatchError, ParameterError, TimeAxisError
from xglacier.forecasting.ceiling import held_out_ceiling
from xglacier.forecasting.evaluate import evaluate
from xglacier.forecasting.skill import skill_map
from xglacier.models import SALSTM, LinearTrend, Persistence, SeasonalPersistence


def cube(values: np.ndarray, *, freq: str = "3MS", start: str = "2015-01-01", times=None) -> xr.DataArray:
    """A ``(time, y, x)`` NDSI cube on a y-descending 30 m grid."""
    nt, ny, nx = values.shape
    t = pd.DatetimeIndex(times) if times is not None else pd.date_range(start, periods=nt, freq=freq)
    coords = {"time": t, "y": 3000.0 - 30.0 * np.arange(ny), "x": 500.0 + 30.0 * np.arange(nx)}
    return xr.DataArray(values, dims=("time", "y", "x"), coords=coords, name="ndsi")


def rand(*shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


# -- held_out_ceiling --------------------------------------------------------------------------


def test_ceiling_scores_both_forecasts_on_the_same_pixels():
    """An earlier year with NaN makes the oracle NaN there; seasonal persistence must drop it too."""
    v = rand(12, 10, 10).astype(np.float64)
    v[0, :5] = np.nan  # the oldest year, first quarter: only the oracle reads it
    r = held_out_ceiling(cube(v), period=4, block=5, n_boot=50)
    se, oe = [], []
    for t in range(8, 12):
        seasonal = (v[t] - v[t - 4]) ** 2
        oracle = (v[t] - (v[t - 4] + v[t - 8]) / 2) ** 2
        ok = np.isfinite(seasonal) & np.isfinite(oracle)
        se.append(seasonal[ok])
        oe.append(oracle[ok])
    assert r["seasonal"] == pytest.approx(np.concatenate(se).mean(), rel=1e-12)
    assert r["oracle"] == pytest.approx(np.concatenate(oe).mean(), rel=1e-12)
    assert r["per_frame"][0][1] == pytest.approx(se[0].mean(), rel=1e-12)


@pytest.mark.parametrize("bad", ["int_dn", "nodata", "percent"])
def test_ceiling_refuses_values_that_are_not_ndsi(bad):
    v = rand(12, 6, 6)
    v = {"int_dn": (v * 10000).astype(np.int16), "nodata": np.where(v > 0.9, -9999.0, v),
         "percent": v * 100}[bad]
    with pytest.raises(InputError, match=r"^held_out_ceiling: ndsi holds values in .* expected NDSI"):
        held_out_ceiling(cube(v), period=4)


def test_ceiling_dask_equals_numpy():
    da = cube(rand(12, 9, 7))
    eager = held_out_ceiling(da, period=4, block=4, n_boot=30)
    assert held_out_ceiling(da.chunk({"y": 4, "time": 5}), period=4, block=4, n_boot=30) == eager


# -- the time axis ---------------------------------------------------------------------------


def _gapped():
    return cube(rand(13, 8, 8)).drop_isel(time=9)  # a quarter missing, not even a NaN frame


@pytest.mark.parametrize(("func", "call"), [
    ("patches", lambda da: xglacier.patches(da, size=4, n_in=2, n_out=1)),
    ("forecast", lambda da: xglacier.forecast(da, Persistence(patch_size=4, n_in=2, n_out=1))),
    ("held_out_ceiling", lambda da: held_out_ceiling(da, period=4)),
])
def test_a_missing_period_is_refused(func, call):
    gapped = cube(rand(13, 8, 8)).drop_isel(time=11)  # a quarter missing, not even a NaN frame
    with pytest.raises(TimeAxisError, match=f"^{func}: variable 'ndsi' has no regular time step: "
                                            "2018-01-01 follows 2017-07-01"):
        call(gapped)


def test_forecast_reads_the_step_of_the_frames_it_uses():
    # a gap long before the last frames does not touch the forecast's inputs
    early = cube(rand(13, 8, 8)).drop_isel(time=2)
    fc = xglacier.forecast(early, Persistence(patch_size=4, n_in=2, n_out=1), steps=2)
    assert [str(t)[:10] for t in fc.time.values] == ["2018-04-01", "2018-07-01"]
    with pytest.raises(TimeAxisError, match=r"^forecast: .*2018-01-01 follows 2017-07-01"):
        xglacier.forecast(early.drop_isel(time=10), Persistence(patch_size=4, n_in=2, n_out=1))


@pytest.mark.parametrize("fix", ["unsorted", "duplicated"])
@pytest.mark.parametrize(("func", "call"), [
    ("patches", lambda da: xglacier.patches(da, size=4, n_in=2, n_out=1)),
    ("forecast", lambda da: xglacier.forecast(da, Persistence(patch_size=4, n_in=2, n_out=1))),
    ("held_out_ceiling", lambda da: held_out_ceiling(da, period=4)),
])
def test_time_errors_name_the_function(func, call, fix):
    da = cube(rand(12, 8, 8))
    da = da.isel(time=[0, 2, 1, *range(3, 12)]) if fix == "unsorted" else da.isel(time=[0, *range(11)])
    with pytest.raises(TimeAxisError, match=f"^{func}: coordinate 'time'"):
        call(da)


@pytest.mark.parametrize(("times", "expected"), [
    (pd.date_range("2020-10-01", periods=2, freq="3MS"), ["2021-04-01", "2021-07-01", "2021-10-01"]),
    (pd.date_range("2019-01-01", periods=14, freq="MS"), ["2020-03-01", "2020-04-01", "2020-05-01"]),
    (["2020-02-15", "2020-05-15", "2020-08-15"], ["2020-11-15", "2021-02-15", "2021-05-15"]),
    (pd.date_range("2020-01-01", periods=3, freq="16D"), ["2020-02-18", "2020-03-05", "2020-03-21"]),
    (pd.date_range("2020-01-31", periods=3, freq="ME"), ["2020-04-30", "2020-05-31", "2020-06-30"]),
    (pd.date_range("2020-03-31", periods=4, freq="QE"), ["2021-03-31", "2021-06-30", "2021-09-30"]),
])
def test_forecast_valid_times_follow_the_calendar(times, expected):
    da = cube(rand(len(times), 8, 8), times=times)
    fc = xglacier.forecast(da, Persistence(patch_size=4, n_in=2, n_out=1), steps=3)
    assert [str(t)[:10] for t in fc.time.values] == expected
    assert fc.forecast_reference_time.values == da.time.values[-1]


# -- forecast ----------------------------------------------------------------------------------


def test_forecast_y_ascending_is_the_mirror_and_keeps_grid_and_crs():
    da = cube(rand(6, 13, 11)).rio.write_crs("EPSG:32643")
    up = da.isel(y=slice(None, None, -1))
    model = LinearTrend(patch_size=6, n_in=4, n_out=2)
    down_fc, up_fc = xglacier.forecast(da, model, steps=3), xglacier.forecast(up, model, steps=3)
    np.testing.assert_array_equal(up_fc.y.values, up.y.values)
    assert str(up_fc.rio.crs) == "EPSG:32643"
    np.testing.assert_allclose(up_fc.values, down_fc.values[:, ::-1], rtol=0, atol=1e-6)
    # a per-pixel least-squares line through the last four frames, extrapolated, by hand
    last = da.values[-4:].astype(np.float64)
    slope = np.tensordot(np.arange(4) - 1.5, last - last.mean(0), axes=1) / 5.0
    np.testing.assert_allclose(down_fc.values[0], last.mean(0) + 2.5 * slope, atol=1e-5)


def test_forecast_integer_input_equals_its_float_copy_and_chunks_do_not_matter():
    ints = (rand(6, 12, 12) * 100).astype(np.int16)
    model = LinearTrend(patch_size=5, n_in=4, n_out=2)
    a = xglacier.forecast(cube(ints), model, steps=2)
    b = xglacier.forecast(cube(ints.astype(np.float32)), model, steps=2)
    c = xglacier.forecast(cube(ints).chunk({"y": 5, "x": 7}), model, steps=2).values
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.values, c)


@pytest.mark.parametrize("empty", ["last_frame", "whole_scene"])
def test_forecast_with_nan_frames(empty):
    v = rand(6, 10, 10)
    if empty == "last_frame":
        v[-1] = np.nan
    else:
        v[:] = np.nan
    da = cube(v)
    with pytest.raises(xglacier.errors.NaNInPatchError, match=r"^forecast: variable 'ndsi' has NaN"):
        xglacier.forecast(da, Persistence(patch_size=4, n_in=2, n_out=1))
    fc = xglacier.forecast(da, Persistence(patch_size=4, n_in=2, n_out=1), nan="fill", fill_value=-1.0)
    np.testing.assert_array_equal(fc.values, np.full((4, 10, 10), -1.0, np.float32))


# -- the seasonal period of a model against the data's --------------------------------------


def test_forecast_and_evaluate_refuse_a_seasonal_model_of_another_period():
    monthly = cube(rand(24, 8, 8), freq="MS")
    with pytest.raises(InputError, match=r"^forecast: model 'SeasonalPersistence' .*period=4.* 12 frames"):
        xglacier.forecast(monthly, SeasonalPersistence(patch_size=4, n_in=4, n_out=2, period=4))
    learned = SALSTM(preset="small", patch_size=4, n_in=4, n_out=2, residual="seasonal", period=4)
    with pytest.raises(InputError, match=r"^forecast: model 'SALSTM' reads"):
        xglacier.forecast(monthly, learned)
    ps = xglacier.patches(monthly, size=4, stride=4, n_in=4, n_out=2)
    with pytest.raises(InputError, match=r"^evaluate: model 'm' reads .*period=4.* 12 frames"):
        evaluate({"m": learned}, ps, n_boot=0)
    with pytest.raises(ParameterError, match=r"^evaluate: period=4 .* 12 frames per year"):
        evaluate(None, ps, n_boot=0, period=4)
    # the right period, and models that read no season, are accepted
    right = SeasonalPersistence(patch_size=4, n_in=12, n_out=2, period=12)
    fc = xglacier.forecast(monthly, right, steps=2)
    np.testing.assert_array_equal(fc.values, monthly.values[12:14])
    SALSTM(preset="small", patch_size=4, n_in=4, n_out=2)  # period unused without a residual
    xglacier.forecast(monthly, SALSTM(preset="small", patch_size=4, n_in=4, n_out=2), steps=1)


def test_fit_refuses_training_or_validation_targets_that_nan_fill_invented():
    v = rand(16, 8, 8)
    v[5, 2:6, 1] = np.nan  # frame 5 is a target of training windows, an input of others
    ps = xglacier.patches(cube(v), size=4, stride=4, n_in=4, n_out=1, nan="fill")
    train, val, _ = ps.split(by="time", test=0.2, val=0.2)
    model = SALSTM(preset="small", patch_size=4, heads=4, n_out=1)
    with pytest.raises(InputError, match=r"^fit: the train samples have NaN target pixels, the first in the "
                                         r"sample at time index 1, y0=0, x0=0"):
        xglacier.fit(model, train, val, epochs=1, progress=False)
    w = rand(16, 8, 8)
    late = int(val.plan.samples[:, 0].max()) + 4  # the last validation window's target
    w[late, 0, 0] = np.nan
    train, val, _ = xglacier.patches(cube(w), size=4, stride=4, n_in=4, n_out=1, nan="fill").split(
        by="time", test=0.2, val=0.2)
    with pytest.raises(InputError, match=r"^fit: the val samples have NaN target pixels"):
        xglacier.fit(model, train, val, epochs=1, progress=False)
    # NaN in input frames alone: filled, as a forecast fills them, and trained on
    u = rand(16, 8, 8)
    u[0, 0, 0] = np.nan
    train, val, _ = xglacier.patches(cube(u), size=4, stride=4, n_in=4, n_out=1, nan="fill").split(
        by="time", test=0.2, val=0.2)
    assert len(xglacier.fit(model, train, val, epochs=1, progress=False)) == 1


# -- evaluate ----------------------------------------------------------------------------------


def test_evaluate_refuses_targets_that_nan_fill_invented():
    v = rand(12, 8, 8)
    v[-1, :4] = np.nan  # a target frame of the test windows
    ps = xglacier.patches(cube(v), size=4, stride=4, n_in=4, n_out=1, nan="fill")
    _, _, test = ps.split(by="time", test=0.2, val=0.0)
    with pytest.raises(InputError, match=r"^evaluate: .*test.* NaN target pixel.*nan='fill'"):
        evaluate(None, test, n_boot=0)
    # NaN only in input frames: filling them is what a forecast does; the scores stand
    w = rand(12, 8, 8)
    w[6, :4] = np.nan
    ps = xglacier.patches(cube(w), size=4, stride=4, n_in=4, n_out=1, nan="fill")
    _, _, test = ps.split(by="time", test=0.2, val=0.0)
    assert np.unique(test.plan.samples[:, 0]).tolist() == [6, 7]
    table = evaluate(None, test, n_boot=0)
    mse = table.set_index(["model", "lead"]).loc[("persistence", "all"), "mse"]
    filled = np.nan_to_num(w)
    expected = np.mean([(filled[t + 4] - filled[t + 3]) ** 2 for t in (6, 7)])
    assert mse == pytest.approx(expected, rel=1e-6)


# -- skill_map ---------------------------------------------------------------------------------


def _three(seed=0):
    return tuple(cube(rand(2, 5, 4, seed=seed + k)) for k in range(3))


def test_skill_map_refuses_another_crs():
    pred, truth, ref = _three()
    with pytest.raises(GridMismatchError, match=r"^skill_map: reference has CRS EPSG:32644.*EPSG:32643"):
        skill_map(pred.rio.write_crs("EPSG:32643"), truth, ref.rio.write_crs("EPSG:32644"))
    ok = skill_map(pred.rio.write_crs("EPSG:32643"), truth.rio.write_crs("EPSG:32643"), ref)
    assert str(ok.rio.crs) == "EPSG:32643"


def test_skill_map_refuses_a_bare_array_beside_a_georeferenced_one():
    pred, truth, ref = _three()
    bare = xr.DataArray(ref.values[:, ::-1], dims=("time", "y", "x"))  # which way up? nobody knows
    with pytest.raises(GridMismatchError, match=r"^skill_map: reference has no y coordinate"):
        skill_map(pred, truth, bare)
    # without coordinates anywhere, frames and pixels are matched by position
    p, t, r = (xr.DataArray(a.values.astype(np.float64), dims=a.dims) for a in (pred, truth, ref))
    num = ((p.values - t.values) ** 2).sum(0)
    den = ((r.values - t.values) ** 2).sum(0)
    np.testing.assert_allclose(skill_map(p, t, r).values, 1 - num / den, rtol=1e-12)


@pytest.mark.parametrize("shift", [30.0, 15.0, -30.0])
def test_skill_map_refuses_a_shifted_reference_on_either_axis(shift):
    pred, truth, ref = _three()
    for dim in ("y", "x"):
        with pytest.raises(GridMismatchError, match=f"^skill_map: the {dim} coordinates of reference"):
            skill_map(pred, truth, ref.assign_coords({dim: ref[dim] + shift}))


# -- y ascending: the models see every scene north-up ------------------------------------------


class Southward(Persistence):
    """A model with a direction: the last frame moved one row south (down a north-up patch)."""

    def forward(self, x, n_out=None, targets=None, teacher_forcing=0.0):
        last = x[:, -1:]
        moved = torch.cat([last[:, :, :1], last[:, :, :-1]], dim=2)
        return moved.expand(-1, n_out or self.n_out, -1, -1).clone()


def test_patches_of_a_y_ascending_cube_are_the_north_up_samples_and_reassemble_in_place():
    da = cube(rand(6, 11, 9))
    up = da.isel(y=slice(None, None, -1))
    north, south = (xglacier.patches(a, size=4, stride=3, n_in=2, n_out=1) for a in (da, up))
    np.testing.assert_array_equal(north.gather(range(len(north)))[0], south.gather(range(len(south)))[0])
    first = np.flatnonzero(south.plan.samples[:, 0] == 0)  # the windows starting at frame 0
    x, _ = south.gather(first)
    back = xglacier.assemble(x[:, -1:], south.plan.subset(first), like=up.isel(time=0))
    np.testing.assert_array_equal(back.values[0], up.values[1])
    np.testing.assert_array_equal(back.y.values, up.y.values)


@pytest.mark.parametrize("chunked", [False, True])
def test_forecast_of_a_y_ascending_cube_is_the_mirror_for_a_model_with_a_direction(chunked):
    da = cube(rand(5, 14, 10))
    up = da.isel(y=slice(None, None, -1))
    model = Southward(patch_size=6, n_in=2, n_out=1)
    down_fc = xglacier.forecast(da, model, steps=2, weight="uniform")
    up_fc = xglacier.forecast(up.chunk({"y": 5}) if chunked else up, model, steps=2, weight="uniform")
    np.testing.assert_array_equal(np.asarray(up_fc.values), down_fc.values[:, ::-1])
    # by hand, north-up: every window moves its rows one south, the top row of a window stays
    np.testing.assert_array_equal(down_fc.values[0, 1:][0:2], da.values[-1, :2])


class SouthEast(Persistence):
    """A model with a direction on both axes: the last frame moved one row south and one column
    east (down and right in a north-up, east-right patch)."""

    def forward(self, x, n_out=None, targets=None, teacher_forcing=0.0):
        last = x[:, -1:]
        last = torch.cat([last[:, :, :1], last[:, :, :-1]], dim=2)
        last = torch.cat([last[:, :, :, :1], last[:, :, :, :-1]], dim=3)
        return last.expand(-1, n_out or self.n_out, -1, -1).clone()


FLIPS = [("y",), ("x",), ("y", "x")]


@pytest.mark.parametrize("dims", FLIPS)
def test_patches_of_a_turned_cube_are_the_north_up_east_right_samples_and_reassemble_in_place(dims):
    da = cube(rand(6, 11, 9))
    turned = da.isel({d: slice(None, None, -1) for d in dims})
    ps, ps_turned = (xglacier.patches(a, size=4, stride=3, n_in=2, n_out=1) for a in (da, turned))
    np.testing.assert_array_equal(ps.gather(range(len(ps)))[0], ps_turned.gather(range(len(ps_turned)))[0])
    first = np.flatnonzero(ps_turned.plan.samples[:, 0] == 0)
    x, _ = ps_turned.gather(first)
    back = xglacier.assemble(x[:, -1:], ps_turned.plan.subset(first), like=turned.isel(time=0))
    np.testing.assert_array_equal(back.values[0], turned.values[1])
    np.testing.assert_array_equal(back.x.values, turned.x.values)


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("dims", FLIPS)
def test_forecast_of_a_turned_cube_is_the_mirror_for_a_model_with_a_direction(dims, chunked):
    da = cube(rand(5, 14, 10))
    flip = {d: slice(None, None, -1) for d in dims}
    turned = da.isel(flip)
    model = SouthEast(patch_size=6, n_in=2, n_out=1)
    fc = xglacier.forecast(da, model, steps=2, weight="uniform")
    fc_turned = xglacier.forecast(turned.chunk({"y": 5, "x": 4}) if chunked else turned, model, steps=2,
                                  weight="uniform")
    np.testing.assert_array_equal(np.asarray(fc_turned.values), fc.isel(flip).values)
    np.testing.assert_array_equal(fc_turned.x.values, turned.x.values)
    # by hand, north-up and east-right: the top-left window's frame moved one row down and right
    np.testing.assert_array_equal(fc.values[0, 1, 1:3], da.values[-1, 0, :2])


def test_a_nan_is_named_at_its_place_in_a_turned_input():
    values = rand(5, 8, 8)
    values[-1, 1, 6] = np.nan
    da = cube(values)
    turned = da.assign_coords(y=da.y.values[::-1], x=da.x.values[::-1])  # NaN at row 1, column 6
    with pytest.raises(NaNInPatchError, match=r"y=1, x=6"):
        xglacier.forecast(turned, SouthEast(patch_size=4, n_in=2, n_out=1), steps=1)


def test_ceiling_intervals_do_not_depend_on_the_row_order():
    da = cube(rand(12, 13, 7).astype(np.float64))  # 13 rows: blocks of 5 do not divide them
    up = held_out_ceiling(da.isel(y=slice(None, None, -1)), period=4, block=5, n_boot=200)
    assert up == held_out_ceiling(da, period=4, block=5, n_boot=200)


def test_no_season_is_read_from_frames_without_a_whole_number_per_year():
    five = cube(rand(12, 8, 8), freq="5MS")  # 2.4 frames a year: no season comes back
    with pytest.raises(InputError, match=r"^forecast: model 'SeasonalPersistence' .*no whole number"):
        xglacier.forecast(five, SeasonalPersistence(patch_size=4, n_in=4, n_out=1, period=4))
    ps = xglacier.patches(five, size=4, stride=4, n_in=4, n_out=1)
    table = evaluate(None, ps, n_boot=0)
    assert sorted(table.model.unique()) == ["climatology", "linear_trend", "persistence"]


def test_evaluate_is_the_same_for_y_ascending_dask_and_north_up_numpy():
    da = cube(rand(12, 23, 17))
    tables = [evaluate(None, xglacier.patches(a, size=5, stride=3, n_in=4, n_out=2).split(by="time")[2],
                       n_boot=100, block=5)
              for a in (da, da.isel(y=slice(None, None, -1)).chunk({"y": 7}))]
    pd.testing.assert_frame_equal(*tables)


@pytest.mark.parametrize("chunked", [False, True])
def test_forecast_refuses_values_outside_the_checkpoints_range(tmp_path, chunked):
    model = SALSTM(preset="small", patch_size=4, n_in=2, n_out=1)
    xglacier.save_model(model, tmp_path / "m", variable="ndsi", value_range=(-1, 1))
    loaded = xglacier.load_model(tmp_path / "m")
    dn = cube((rand(4, 8, 8) * 10000).astype(np.int16))
    with pytest.raises(InputError, match=r"^forecast: variable .ndsi. holds values .*value_range=\[-1, 1\]"):
        fc = xglacier.forecast(dn.chunk({"y": 4}) if chunked else dn, loaded)
        fc.compute()
    ok = xglacier.forecast(cube(rand(4, 8, 8)), loaded)  # NDSI: in range
    expected = xglacier.forecast(cube(rand(4, 8, 8)), model)
    np.testing.assert_array_equal(ok.values, expected.values)


def test_fit_refuses_a_seasonal_residual_on_frames_without_a_whole_number_per_year():
    ps = xglacier.patches(cube(rand(12, 8, 8), freq="5MS"), size=4, stride=4, n_in=4, n_out=1)
    model = SALSTM(preset="small", patch_size=4, n_in=4, n_out=1, residual="seasonal", period=4)
    with pytest.raises(InputError, match=r"^fit: model 'SALSTM' .*period=4.*no whole number of frames"):
        xglacier.fit(model, ps, epochs=1, progress=False)


@pytest.mark.parametrize("which", ["truth", "reference"])
def test_skill_map_refuses_frames_out_of_time_order(which):
    pred, truth, ref = _three()
    pred = pred.drop_vars("time")  # e.g. a NumPy-made prediction: no valid times to compare
    arrays = {"truth": truth, "reference": ref}
    arrays[which] = arrays[which].isel(time=[1, 0])
    with pytest.raises(TimeAxisError, match=f"^skill_map: coordinate 'time' of {which} is not sorted"):
        skill_map(pred, arrays["truth"], arrays["reference"])


def test_numpy_arrays_get_an_xglacier_error_naming_the_parameter():
    pred, truth, ref = _three()
    with pytest.raises(InputError, match=r"^skill_map: truth is a ndarray; expected an xarray.DataArray"):
        skill_map(pred, truth.values, ref)
    with pytest.raises(InputError, match=r"^held_out_ceiling: ndsi is a ndarray; expected"):
        held_out_ceiling(rand(12, 4, 4), period=4)


def test_forecast_from_one_frame_has_no_time_step():
    one = cube(rand(1, 8, 8))
    with pytest.raises(TimeAxisError, match=r"^forecast: variable 'ndsi' has 1 frame\(s\); the time step"):
        xglacier.forecast(one, Persistence(patch_size=4, n_in=1, n_out=1), steps=2)
