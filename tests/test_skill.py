"""Skill scores, spatial block-bootstrap intervals and per-pixel skill maps (issue 14, item 3)."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import pandas as pd
import pytest
import rioxarray  # noqa: F401
import torch
import xarray as xr
from scipy import ndimage
from torch import nn

import xglacier
from xglacier.errors import DimensionError, GridMismatchError, ParameterError
from xglacier.forecasting.evaluate import evaluate
from xglacier.forecasting.skill import bootstrap_means, pixel_blocks, skill_map


class Last(nn.Module):
    """Persistence written in the test: every lead is the last input frame."""

    trainable = False

    def __init__(self, patch_size=8, n_in=1, n_out=1):
        super().__init__()
        self.patch_size, self.n_in, self.n_out = patch_size, n_in, n_out

    def forward(self, x, n_out=None, targets=None, teacher_forcing=0.0):
        return x[:, -1:].expand(-1, n_out or self.n_out, -1, -1).clone()


class Extrapolate(Last):
    """Exact for per-pixel linear trends: 2 * last - previous, recursively."""

    def forward(self, x, n_out=None, targets=None, teacher_forcing=0.0):
        a, b, out = x[:, -2], x[:, -1], []
        for _ in range(n_out or self.n_out):
            a, b = b, 2 * b - a
            out.append(b)
        return torch.stack(out, dim=1)


def unit_field(rng, n, sigma):
    """Stationary Gaussian field with exactly unit variance per pixel (periodic smoothing)."""
    raw = ndimage.gaussian_filter(rng.standard_normal((n, n)), sigma, mode="wrap")
    delta = np.zeros((n, n))
    delta[n // 2, n // 2] = 1
    kernel = ndimage.gaussian_filter(delta, sigma, mode="wrap")
    return raw / np.sqrt((kernel**2).sum())


def two_frames(field):
    """Frame 0 is zero, frame 1 the field: persistence's squared error is the field squared."""
    n = field.shape[0]
    data = np.stack([np.zeros((n, n)), field]).astype(np.float32)
    return xr.DataArray(data, dims=("time", "y", "x"),
                        coords={"time": pd.date_range("2020-01-01", periods=2, freq="3MS")})


# -- evaluate: skill columns ---------------------------------------------------------------------


def trend_cube(nt=12, n=16, seed=0):
    rng = np.random.default_rng(seed)
    a, b = rng.random((n, n)), rng.uniform(-0.05, 0.05, (n, n))
    data = (a + b * np.arange(nt)[:, None, None]).astype(np.float32)
    return xr.DataArray(data, dims=("time", "y", "x"),
                        coords={"time": pd.date_range("2015-01-01", periods=nt, freq="3MS")})


def test_skill_is_one_for_a_perfect_forecast_and_zero_for_the_reference():
    ps = xglacier.patches(trend_cube(), size=4, stride=4, n_in=4, n_out=2)
    table = evaluate({"exact": Extrapolate(patch_size=4, n_in=4, n_out=2)}, ps, n_boot=200,
                     reference="persistence", block=4)
    exact = table[table.model == "exact"]
    assert exact.mse.max() < 1e-10
    np.testing.assert_allclose(exact.skill, 1.0, atol=1e-8)
    ref = table[table.model == "persistence"]
    np.testing.assert_array_equal(ref.skill, 0.0)
    np.testing.assert_array_equal(ref.skill_low, 0.0)
    np.testing.assert_array_equal(ref.skill_high, 0.0)
    assert (table.skill_reference == "persistence").all()
    # every other row: 1 - MSE / MSE of persistence at the same lead, computed from the table
    for lead in (1, 2, "all"):
        rows = table[table.lead.astype(str) == str(lead)].set_index("model")
        np.testing.assert_allclose(rows.skill, 1 - rows.mse / rows.loc["persistence", "mse"])
    assert (table.skill_low <= table.skill + 1e-12).all() and (table.skill <= table.skill_high + 1e-12).all()


def test_best_reference_is_the_best_baseline_at_each_lead():
    rng = np.random.default_rng(3)
    cube = trend_cube(nt=14, n=16) + xr.DataArray(rng.normal(0, 0.05, (14, 16, 16)).astype(np.float32),
                                                  dims=("time", "y", "x"))
    ps = xglacier.patches(cube, size=4, stride=4, n_in=4, n_out=3)
    table = evaluate({"last": Last(patch_size=4, n_in=4, n_out=3)}, ps, n_boot=100, block=4)
    baselines = ["persistence", "seasonal_persistence", "climatology", "linear_trend"]
    for lead in (1, 2, 3, "all"):
        rows = table[table.lead.astype(str) == str(lead)].set_index("model")
        best = rows.loc[baselines, "mse"].idxmin()
        assert (rows.skill_reference == best).all()
        assert rows.loc[best, "skill"] == 0
        np.testing.assert_allclose(rows.skill, 1 - rows.mse / rows.loc[best, "mse"])
        # no baseline beats the best one
        assert (rows.loc[baselines, "skill"] <= 0).all()
    assert table.attrs["reference"] == "best"
    # without baselines there is no reference: skill is NaN, not a made-up number
    alone = evaluate({"last": Last(patch_size=4, n_in=4, n_out=3)}, ps, baselines=False, n_boot=10, block=4)
    assert alone.skill.isna().all() and alone.skill_reference.isna().all()


# -- evaluate: block bootstrap --------------------------------------------------------------------


def test_block_intervals_are_wider_on_spatially_correlated_errors():
    field = unit_field(np.random.default_rng(0), 96, 3.0)
    ps = xglacier.patches(two_frames(field), size=8, stride=4, n_in=1, n_out=1)
    block = evaluate({"last": Last()}, ps, baselines=False, n_boot=1000)
    sample = evaluate({"last": Last()}, ps, baselines=False, n_boot=1000, bootstrap="sample")
    pd.testing.assert_series_equal(block.mse, sample.mse)  # same point estimates
    width = (block.mse_high - block.mse_low).iloc[-1]
    narrow = (sample.mse_high - sample.mse_low).iloc[-1]
    assert width > 1.5 * narrow
    assert block.attrs["bootstrap"] == "block" and block.attrs["block"] == 16
    assert block.attrs["n_blocks"] == 36 and block.attrs["n_boot"] == 1000 and block.attrs["seed"] == 0
    assert sample.attrs["bootstrap"] == "sample" and sample.attrs["block"] is None


def test_block_intervals_cover_the_known_mse_at_about_the_nominal_rate():
    """Persistence MSE on a unit-variance field has expectation 1 exactly.

    The field is correlated over a few pixels (sigma 1), less than the 16-pixel default
    blocks; patches of 8 pixels overlap by half. Over 120 fields the 90 % block intervals
    should cover 1 about 90 % of the time (binomial standard error 2.7 %), while the
    per-sample bootstrap, blind to the overlap, covers far less often.
    """
    hits = {"block": 0, "sample": 0}
    reps = 120
    for rep in range(reps):
        field = unit_field(np.random.default_rng(rep + 100), 96, 1.0)
        ps = xglacier.patches(two_frames(field), size=8, stride=4, n_in=1, n_out=1)
        for kind in hits:
            row = evaluate({"last": Last()}, ps, baselines=False, n_boot=300, ci=0.9, seed=rep,
                           bootstrap=kind).iloc[-1]
            hits[kind] += row.mse_low <= 1.0 <= row.mse_high
    assert 0.8 <= hits["block"] / reps <= 0.97
    assert hits["sample"] / reps < 0.75


def test_bootstrap_means_by_hand():
    sums = np.array([[2.0, 0.0], [9.0, 3.0]])
    sizes = np.array([1.0, 3.0])
    boot = bootstrap_means(sums, sizes, 400, seed=0)
    # each resample draws two groups: (0, 0), (1, 1) or one of each
    expected = {(2.0, 0.0), (3.0, 1.0), (11 / 4, 3 / 4)}
    assert {tuple(np.round(r, 12)) for r in boot} == {tuple(np.round(e, 12)) for e in expected}
    cells, k = pixel_blocks((5, 4), 2)
    assert k == 6 and cells[4, 3] == 5 and cells[0, 1] == 0 and cells[2, 2] == 3


def test_evaluate_bootstrap_errors():
    ps = xglacier.patches(trend_cube(), size=4, stride=4, n_in=4, n_out=2)
    with pytest.raises(ParameterError, match="block"):
        evaluate(None, ps, block=3)  # smaller than the patch
    with pytest.raises(ParameterError, match="bootstrap"):
        evaluate(None, ps, bootstrap="pairs")
    with pytest.raises(ParameterError, match="reference='nowcast'"):
        evaluate(None, ps, reference="nowcast")


# -- skill_map ------------------------------------------------------------------------------------


def grid(data, y=None, crs="EPSG:32643"):
    nt, ny, nx = data.shape
    y = np.arange(ny)[::-1] * 30.0 + 15 if y is None else y
    da = xr.DataArray(data, dims=("time", "y", "x"),
                      coords={"time": pd.date_range("2021-01-01", periods=nt, freq="3MS"),
                              "y": y, "x": np.arange(nx) * 30.0 + 15})
    return da.rio.write_crs(crs)


def test_skill_map_by_hand():
    rng = np.random.default_rng(0)
    truth = rng.random((3, 2, 3))
    pred = truth + rng.normal(0, 0.1, truth.shape)
    ref = truth + rng.normal(0, 0.3, truth.shape)
    out = skill_map(grid(pred), grid(truth), grid(ref))
    for i in range(2):
        for j in range(3):
            se = sum((pred[k, i, j] - truth[k, i, j]) ** 2 for k in range(3))
            se_ref = sum((ref[k, i, j] - truth[k, i, j]) ** 2 for k in range(3))
            assert out.values[i, j] == pytest.approx(1 - se / se_ref, rel=1e-12)
    assert out.dims == ("y", "x") and out.name == "skill"
    assert out.rio.crs.to_epsg() == 32643
    np.testing.assert_array_equal(out.y, grid(pred).y)
    np.testing.assert_array_equal(out.frames, 3)
    # the reference itself scores 0, a perfect forecast 1
    np.testing.assert_array_equal(skill_map(grid(ref), grid(truth), grid(ref)).values, 0.0)
    np.testing.assert_array_equal(skill_map(grid(truth), grid(truth), grid(ref)).values, 1.0)


def test_skill_map_y_ascending_or_descending():
    rng = np.random.default_rng(1)
    truth, pred, ref = (rng.random((2, 4, 3)) for _ in range(3))
    down = skill_map(grid(pred), grid(truth), grid(ref))
    y_up = grid(truth).y.values[::-1]
    # the truth stored south-up: matched pixel by pixel through the coordinates
    mixed = skill_map(grid(pred), grid(truth[:, ::-1], y=y_up), grid(ref))
    xr.testing.assert_identical(mixed, down)
    # a prediction stored south-up gives its own order, same values per coordinate
    up = skill_map(grid(pred[:, ::-1], y=y_up), grid(truth[:, ::-1], y=y_up), grid(ref[:, ::-1], y=y_up))
    np.testing.assert_array_equal(up.y, y_up)
    xr.testing.assert_allclose(up.sortby("y"), down.sortby("y"))


def test_skill_map_nan_and_undefined():
    truth = np.zeros((3, 1, 4))
    pred = np.full((3, 1, 4), 0.1)
    ref = np.full((3, 1, 4), 0.2)
    pred[0, 0, 0] = np.nan          # pixel 0: frames 1 and 2 only, same skill
    truth[:, 0, 1] = np.nan         # pixel 1: no frame at all
    ref[:, 0, 2] = 0.0              # pixel 2: the reference is perfect, the ratio undefined
    out = skill_map(grid(pred), grid(truth), grid(ref))
    np.testing.assert_allclose(out.values[0], [0.75, np.nan, np.nan, 0.75])
    np.testing.assert_array_equal(out.frames.values[0], [2, 0, 3, 3])
    strict = skill_map(grid(pred), grid(truth), grid(ref), min_frames=3)
    assert np.isnan(strict.values[0, 0]) and strict.values[0, 3] == pytest.approx(0.75)


def test_skill_map_lazy_and_forecast_like_inputs():
    rng = np.random.default_rng(2)
    truth, pred, ref = (grid(rng.random((4, 6, 5))) for _ in range(3))
    lazy = skill_map(pred.chunk({"y": 3}), truth.chunk({"y": 2}), ref)
    assert isinstance(lazy.data, dsa.Array)
    xr.testing.assert_allclose(lazy.compute(), skill_map(pred, truth, ref))
    # a forecast's frames are lead times, with the valid time as a coordinate
    fc = pred.rename(time="lead_time").assign_coords(time=("lead_time", truth.time.values))
    xr.testing.assert_allclose(skill_map(fc, truth, ref), skill_map(pred, truth, ref))


def test_skill_map_errors():
    rng = np.random.default_rng(3)
    truth, pred, ref = (grid(rng.random((2, 4, 3))) for _ in range(3))
    shifted = truth.assign_coords(x=truth.x + 30.0)  # one pixel to the east
    with pytest.raises(GridMismatchError, match="x coordinates of truth"):
        skill_map(pred, shifted, ref)
    with pytest.raises(DimensionError, match="frames"):
        skill_map(pred, truth, ref.isel(time=[0]))
    later = truth.assign_coords(time=truth.time + pd.Timedelta(days=365))
    with pytest.raises(GridMismatchError, match="valid times"):
        skill_map(pred, later, ref)
    with pytest.raises(DimensionError, match="reference"):
        skill_map(pred, truth, ref.transpose("time", "x", "y"))
    with pytest.raises(ParameterError, match="min_frames"):
        skill_map(pred, truth, ref, min_frames=0)
    # the reference's own times (a year earlier, for seasonal persistence) are allowed
    earlier = ref.assign_coords(time=ref.time - pd.Timedelta(days=365))
    xr.testing.assert_identical(skill_map(pred, truth, earlier), skill_map(pred, truth, ref))
