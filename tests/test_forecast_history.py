"""The long-term climatology: ``residual="history"`` models and the ``history_climatology`` baseline.

Each target frame's reference is its season averaged, per pixel, over every frame of that
season before the forecast (not only the model's inputs), interpolated frames left out where
the season has observed ones, NaN pixels left out of each mean. Checked against hand
computations from the cube, through ``PatchSet``, the model, ``fit``, ``evaluate`` and
``forecast`` (NumPy and Dask, y ascending, several rounds), with checkpoints and bad inputs.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import xglacier
from xglacier.errors import InputError, TimeAxisError
from xglacier.forecasting.history import history_means, season_frames
from xglacier.models import SALSTM, ConvLSTM, HistoryClimatology, LSTMEncoderDecoder

LEARNED = [SALSTM, LSTMEncoderDecoder, ConvLSTM]


def small(cls, **kw):
    extra = {"heads": 4} if cls is SALSTM else {}
    return cls(preset="small", patch_size=8, **extra, **{"residual": "history", **kw})


def quarterly(nt=16, ny=16, nx=16, gap=(), seed=0, ascending=False):
    rng = np.random.default_rng(seed)
    y = 3.5e6 - 30 * np.arange(ny)
    return xr.DataArray(rng.random((nt, ny, nx), dtype=np.float32), dims=("time", "y", "x"), name="ndsi",
                        coords={"time": pd.date_range("2015-01-01", periods=nt, freq="3MS"),
                                "interpolated": ("time", np.isin(np.arange(nt), gap)),
                                "y": y[::-1] if ascending else y, "x": 7e5 + 30 * np.arange(nx)})


def by_hand(cube, invented, target, origin, period=4):
    """The season mean of frame ``target`` from frames before ``origin``, in float64, by hand."""
    same = [i for i in range(origin) if i % period == target % period]
    seen = [i for i in same if not invented[i]] or same
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a pixel never seen: NaN
        return np.nanmean(cube[seen].astype(np.float64), axis=0)


# -- the means ------------------------------------------------------------------------------------


def test_history_means_by_hand_with_gaps_nan_and_dask():
    cube = np.random.default_rng(1).random((13, 5, 6)).astype(np.float32)
    cube[4, 2, 3] = np.nan                      # a cloud left in one frame
    cube[[1, 5, 9], 0, 0] = np.nan              # a pixel never seen in its season
    invented = np.isin(np.arange(13), [8, 2])   # one of two seasons' frames interpolated
    got = history_means(cube, invented, 12, range(6), 4)
    for lead in range(6):
        want = by_hand(cube, invented, 12 + lead, 12) if lead != 1 else None
        if lead % 4 == 1:
            assert np.isnan(got[lead, 0, 0]) and np.isfinite(got[lead, 1:]).all()
            continue
        np.testing.assert_allclose(got[lead], want, rtol=1e-6)
    # frame 8 left out of its season (0 and 4 observed), frame 2 kept (its season has none other
    # before 12 but 6 and 10, which are observed: 2 is left out too)
    assert season_frames(12, 12, 4, invented) == [0, 4] and season_frames(14, 12, 4, invented) == [6, 10]
    assert season_frames(6, 6, 4, np.isin(np.arange(8), [2])) == [2]  # only interpolated: kept
    lazy = history_means(xr.DataArray(cube).chunk({"dim_1": 2}).data, invented, 12, range(6), 4)
    np.testing.assert_array_equal(lazy.compute(), got)


# -- the model ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", LEARNED)
def test_an_untrained_history_model_forecasts_the_climate_and_seasonal_persistence_where_nan(cls):
    model = small(cls, statistics=(0.4, 0.3)).eval()
    x = torch.rand(3, 4, 8, 8)
    climate = torch.rand(3, 4, 8, 8)
    climate[1, 2, 3, 4] = float("nan")
    with torch.no_grad():
        out = model(x, climate=climate)
    want = climate.clone()
    want[1, 2, 3, 4] = x[1, 2, 3, 4]          # lead 2's season one year earlier
    torch.testing.assert_close(out, want, rtol=0, atol=1e-6)
    base = HistoryClimatology(patch_size=8)(x, climate=climate)
    torch.testing.assert_close(base, want, rtol=0, atol=0)


def test_the_climate_is_required_and_checked():
    model = small(SALSTM)
    x = torch.rand(2, 4, 8, 8)
    with pytest.raises(InputError, match=r"residual='history' needs climate="):
        model(x)
    with pytest.raises(InputError, match=r"climate of shape \(2, 4, 7, 7\)"):
        model(x, climate=torch.rand(2, 4, 7, 7))
    with pytest.raises(InputError, match="needs climate="):
        HistoryClimatology(patch_size=8)(x)


def test_patchset_gives_each_sample_its_targets_climate():
    da = quarterly(gap=(5,))
    ps = xglacier.patches(da, size=8, stride=4, n_in=4, n_out=3)
    batches = list(ps.to_torch(batch_size=7, climate=True))
    assert all(len(b) == 4 for b in batches)
    climate = torch.cat([b[3] for b in batches]).numpy()
    cube, invented = da.values, da.interpolated.values
    for i, (t0, y0, x0) in enumerate(ps.plan.samples):
        for lead in range(3):
            want = by_hand(cube, invented, t0 + 4 + lead, t0 + 4)[y0:y0 + 8, x0:x0 + 8]
            np.testing.assert_allclose(climate[i, lead], want, rtol=1e-6)


def test_fit_and_evaluate_feed_the_climate_and_augmentation_turns_it_with_the_frames():
    from xglacier.forecasting.train import _augmented

    da = quarterly(nt=20)
    train, val, test = xglacier.patches(da, size=8, stride=8, n_in=4, n_out=2).split(
        by="time", test=0.2, val=0.2)
    model = small(SALSTM, n_out=2)
    history = xglacier.fit(model, train, val, epochs=1, progress=False, augment=True)
    assert len(history) == 1
    table = xglacier.evaluate({"m": model}, test, n_boot=0)
    rows = table[table["lead"].astype(str) == "all"].set_index("model")
    assert np.isfinite(rows.loc["m", "mse"]) and "history_climatology" in rows.index
    torch.manual_seed(3)
    x = torch.rand(2, 4, 8, 8)
    xa, ya, more = _augmented(x, x[:, :2].clone(), {"climate": x[:, 2:].clone(), "missing": torch.ones(2, 4)})
    torch.testing.assert_close(more["climate"], xa[:, 2:])
    torch.testing.assert_close(ya, xa[:, :2])
    assert more["missing"].shape == (2, 4)


# -- forecast ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("ascending", [False, True])
@pytest.mark.parametrize("chunked", [False, True])
def test_forecast_of_an_untrained_model_is_the_climate_of_the_whole_series(ascending, chunked):
    da = quarterly(nt=15, ny=20, nx=18, gap=(6,), ascending=ascending)
    model = small(SALSTM, n_out=2, statistics=(0.5, 0.3))
    src = da.chunk({"y": 7, "x": 5}) if chunked else da
    fc = xglacier.forecast(src, model, steps=5, block=10)   # three rounds of two frames
    cube, invented = da.values, da.interpolated.values
    want = np.stack([by_hand(cube, invented, 15 + k, 15) for k in range(5)])
    np.testing.assert_allclose(fc.values, want, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(fc["y"].values, da["y"].values)


def test_forecast_needs_a_regular_history_and_a_checkpoint_keeps_the_residual(tmp_path):
    from xglacier.nn.checkpoint import load_model, save_model

    da = quarterly(nt=12)
    model = small(SALSTM, statistics=(0.5, 0.3))
    save_model(model, tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert back.residual == "history"
    np.testing.assert_array_equal(xglacier.forecast(da, back).values, xglacier.forecast(da, model).values)
    holed = da.drop_isel(time=2)  # a quarter dropped early on: seasons would shift
    with pytest.raises(TimeAxisError):
        xglacier.forecast(holed, model)
