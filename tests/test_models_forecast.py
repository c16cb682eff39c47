"""Forecast models (shapes, paper parameter counts, baselines by hand) and full-scene forecasts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import xglacier
from xglacier.errors import DimensionError, InputError, NaNInPatchError, ParameterError
from xglacier.models import (
    SALSTM,
    Climatology,
    ConvLSTM,
    LinearTrend,
    LSTMEncoderDecoder,
    Persistence,
    SeasonalPersistence,
)


@pytest.mark.parametrize("cls, count", [(SALSTM, 200_072_500), (LSTMEncoderDecoder, 300_120_000),
                                        (ConvLSTM, 842_233)])
def test_paper_presets_have_table_2_parameter_counts(cls, count):
    model = cls(preset="paper")
    assert model.n_parameters() == count
    assert cls(preset="paper", gaps=True).n_parameters() == count + 50 * 50  # the missing frame
    assert model.patch_size == 50 and model.n_in == model.n_out == 4


@pytest.mark.parametrize("cls", [SALSTM, LSTMEncoderDecoder, ConvLSTM])
@pytest.mark.parametrize("size", [7, 12])
def test_small_models_shapes_and_recursion(cls, size):
    torch.manual_seed(0)
    model = cls(preset="small", patch_size=size, n_in=3, n_out=2)
    x = torch.randn(5, 3, size, size)
    assert model(x).shape == (5, 2, size, size)
    assert model(x, n_out=6).shape == (5, 6, size, size)  # recursive beyond n_out
    with pytest.raises(InputError, match=r"input of shape \(5, 4, .*expected \(batch, 3"):
        model(torch.randn(5, 4, size, size))
    rebuilt = cls(**model.config)
    assert rebuilt.n_parameters() == model.n_parameters()


ALL_MODELS = [SALSTM, LSTMEncoderDecoder, ConvLSTM, Persistence, SeasonalPersistence, Climatology,
              LinearTrend]


@pytest.mark.parametrize("cls", ALL_MODELS)
def test_constructors_accept_numpy_integers_and_refuse_bools(cls):
    """Regression: Persistence(patch_size=np.int64(8)) raised although patches() accepts it."""
    extra = {"heads": 4} if cls is SALSTM else {}  # 5 heads do not divide 8 * 8
    model = cls(patch_size=np.int64(8), n_in=np.int32(4), n_out=np.int64(2), **extra)
    assert (model.patch_size, model.n_in, model.n_out) == (8, 4, 2)
    assert all(type(model.config[k]) is int for k in ("patch_size", "n_in", "n_out"))
    assert model(torch.zeros(1, 4, 8, 8)).shape == (1, 2, 8, 8)
    for label in ("patch_size", "n_in", "n_out"):
        with pytest.raises(ParameterError, match=rf"{cls.__name__}: {label}=True; expected an integer"):
            cls(**{label: True})
        with pytest.raises(ParameterError, match=rf"{cls.__name__}: {label}=0; expected an integer >= 1"):
            cls(**{label: 0})  # SALSTM, LSTM and ConvLSTM used to take 0 as "the default"
    with pytest.raises(TypeError):
        cls(8)  # options are keyword-only


def test_model_hyperparameters_are_checked():
    with pytest.raises(ParameterError, match=r"SALSTM: heads=2\.5"):
        SALSTM(preset="small", heads=2.5)
    with pytest.raises(ParameterError, match=r"SALSTM: preset='tiny'; expected one of 'paper', 'small'"):
        SALSTM(preset="tiny")
    with pytest.raises(ParameterError, match=r"LSTMEncoderDecoder: dropout=1\.5"):
        LSTMEncoderDecoder(preset="small", dropout=1.5)
    with pytest.raises(ParameterError, match=r"ConvLSTM: encoder\[1\]=True"):
        ConvLSTM(preset="small", encoder=(4, True))
    with pytest.raises(ParameterError, match="ConvLSTM: decoder=8; expected a non-empty sequence"):
        ConvLSTM(preset="small", decoder=8)
    with pytest.raises(ParameterError, match="SeasonalPersistence: period=5"):
        SeasonalPersistence(patch_size=2, n_in=4, period=5)
    assert SeasonalPersistence(patch_size=2, n_in=4, period=np.int64(2)).period == 2
    assert SALSTM(preset="small", patch_size=np.int64(4), hidden=np.int64(16)).config["hidden"] == 16


def test_teacher_forcing_feeds_the_truth_in_training_only():
    torch.manual_seed(0)
    model = SALSTM(preset="small", patch_size=6, n_in=3, n_out=3, dropout=0.0)
    x, y = torch.randn(2, 3, 6, 6), torch.randn(2, 3, 6, 6)
    model.train()
    free = model(x, targets=y, teacher_forcing=0.0)
    forced = model(x, targets=y, teacher_forcing=1.0)
    assert torch.equal(free[:, 0], forced[:, 0])  # the first step never sees a target
    assert not torch.allclose(free[:, 1:], forced[:, 1:])
    model.eval()
    assert torch.equal(model(x, targets=y, teacher_forcing=1.0), model(x))


def test_baselines_by_hand():
    a = torch.tensor([1.0, 2, 4, 8])
    b = torch.tensor([5.0, 5, 5, 5])
    kw = dict(patch_size=1, n_in=4, n_out=3)
    x = a.reshape(1, 4, 1, 1)
    assert Persistence(**kw)(x)[0, :, 0, 0].tolist() == [8.0, 8.0, 8.0]
    assert SeasonalPersistence(**kw)(x)[0, :, 0, 0].tolist() == [1.0, 2.0, 4.0]
    assert Climatology(**kw)(x)[0, :, 0, 0].tolist() == [3.75, 3.75, 3.75]
    # least squares through (0,1) (1,2) (2,4) (3,8): slope 11.5 / 5 = 2.3, intercept 0.3
    np.testing.assert_allclose(LinearTrend(**kw)(x)[0, :, 0, 0].numpy(), [9.5, 11.8, 14.1],
                               rtol=1e-6)
    flat = b.reshape(1, 4, 1, 1)
    for cls in (Persistence, SeasonalPersistence, Climatology, LinearTrend):
        assert torch.allclose(cls(**kw)(flat), torch.full((1, 3, 1, 1), 5.0))
        assert cls(**kw).n_parameters() == 0 and not cls.trainable
    with pytest.raises(ParameterError, match="period"):
        SeasonalPersistence(patch_size=1, n_in=2, n_out=2, period=4)


def composites(nt=10, ny=30, nx=26, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.random((nt, ny, nx)).astype(np.float32)
    return xr.DataArray(data, dims=("time", "y", "x"), name="ndsi", attrs={"units": "1"},
                        coords={"time": pd.date_range("2015-01-01", periods=nt, freq="3MS"),
                                "y": 3.5e6 - 30 * np.arange(ny), "x": 7e5 + 30 * np.arange(nx)},
                        ).rio.write_crs("EPSG:32643")


def test_forecast_lazy_chunk_invariant_and_equal_to_eager(no_compute):
    torch.manual_seed(1)
    model = SALSTM(preset="small", patch_size=8, n_in=4, n_out=2)
    da = composites()
    eager = xglacier.forecast(da, model, steps=5, stride=3)
    assert eager.dims == ("lead_time", "y", "x") and eager.sizes["lead_time"] == 5
    for chunks in ({"time": 1}, {"time": 3, "y": 7, "x": 20}):
        with no_compute():
            lazy = da.chunk(chunks).glacier.forecast(model, steps=5, stride=3)
        np.testing.assert_array_equal(lazy.values, eager.values)
    assert not np.isnan(eager.values).any()  # edges included
    assert eager.rio.crs.to_epsg() == 32643
    assert str(eager.forecast_reference_time.values)[:10] == "2017-04-01"
    assert [str(t)[:10] for t in eager.time.values[:2]] == ["2017-07-01", "2017-10-01"]
    assert eager.lead_time.attrs["standard_name"] == "forecast_period"


def test_forecast_equals_a_plain_patch_loop():
    """One patch position per model call, averaged by hand, gives the same scene."""
    model = Climatology(patch_size=10, n_in=3, n_out=1)
    da = composites(nt=5, ny=20, nx=20)
    fc = xglacier.forecast(da, model, steps=1, stride=10, weight="uniform")
    expected = da.values[-3:].mean(axis=0)
    np.testing.assert_allclose(fc.values[0], expected, rtol=1e-6)


def test_forecast_bad_input():
    model = Persistence(patch_size=8, n_in=4, n_out=1)
    da = composites(nt=6)
    with pytest.raises(InputError, match="n_in=4"):
        xglacier.forecast(da.isel(time=slice(0, 3)), model)
    with pytest.raises(InputError, match="larger than the scene"):
        xglacier.forecast(da.isel(y=slice(0, 5)), model)
    with pytest.raises(DimensionError, match="time, y, x"):
        xglacier.forecast(da.transpose("y", "x", "time"), model)
    gappy = da.copy()
    gappy[-1, 3, 3] = np.nan
    with pytest.raises(NaNInPatchError, match="fill the gaps first"):
        xglacier.forecast(gappy, model).values  # noqa: B018
    filled = xglacier.forecast(gappy, model, nan="fill", fill_value=0.0)
    assert filled.values[0, 3, 3] == 0.0
