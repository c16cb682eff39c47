"""Tiled, lazy full-scene forecasts: chunk invariance, laziness, graph size, blending, NaN policy."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import xglacier
from xglacier.errors import InputError, NaNInPatchError, ParameterError
from xglacier.forecasting.patches import positions
from xglacier.models import SALSTM, Persistence


def cube(nt=7, ny=30, nx=26, seed=0, dyadic=False):
    """Random (time, y, x) frames; ``dyadic``: multiples of 1/16, so that patch sums are exact."""
    rng = np.random.default_rng(seed)
    data = (rng.integers(0, 16, (nt, ny, nx)) / 16 if dyadic else rng.random((nt, ny, nx))).astype("f4")
    return xr.DataArray(data, dims=("time", "y", "x"), name="ndsi",
                        coords={"time": pd.date_range("2015-01-01", periods=nt, freq="3MS"),
                                "y": 3.5e6 - 30 * np.arange(ny), "x": 7e5 + 30 * np.arange(nx)})


class Whole(torch.nn.Module):
    """Every output pixel depends on the whole patch (its mean and its mirror image), so a
    window cut or blended anywhere else than where it should be changes the result."""

    def __init__(self, patch_size=8, n_in=3, n_out=2):
        super().__init__()
        self.patch_size, self.n_in, self.n_out = patch_size, n_in, n_out

    def forward(self, x):
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        mirror = torch.flip(x[:, :1], dims=(2, 3))
        return torch.cat([0.5 * x[:, -1:] + 0.25 * mirror + 0.25 * mean + 0.125 * k
                          for k in range(self.n_out)], dim=1)


def by_hand(da, model, steps, stride, weight):
    """Forecast the plain way: every window of the scene predicted on its own, then
    ``assemble``; recursion on the assembled frames."""
    p = model.patch_size
    ys, xs = positions(da.sizes["y"], p, stride), positions(da.sizes["x"], p, stride)
    yx = np.array([(y, x) for y in ys for x in xs])
    history, out = da.values[-model.n_in:], []
    with torch.no_grad():
        while len(out) < steps:
            frames = history[-model.n_in:]
            preds = np.concatenate([model(torch.from_numpy(np.ascontiguousarray(
                frames[None, :, y:y + p, x:x + p]))).numpy() for y, x in yx])
            new = xglacier.assemble(preds, yx, like=da.isel(time=0), weight=weight).values
            out.extend(new)
            history = np.concatenate([history, new])
    return np.stack(out[:steps])


@pytest.fixture(scope="module")
def salstm():
    torch.manual_seed(3)
    return SALSTM(preset="small", patch_size=8, n_in=4, n_out=2).eval()


def test_chunk_invariant_with_a_recursive_model_across_block_borders(salstm, no_compute):
    """Several chunkings (chunks not multiples of the stride, one chunk), stride < patch,
    steps > n_out over 3 x 2 blocks: the same values bit for bit, and those of the NumPy input."""
    da = cube()
    kw = dict(steps=5, stride=3, block=10)
    eager = xglacier.forecast(da, salstm, **kw)
    assert isinstance(eager.data, np.ndarray) and eager.dtype == np.float32
    assert not np.isnan(eager.values).any()
    chunkings = [{"time": 1}, {"y": 7, "x": 20}, {"time": 3, "y": 5, "x": 11}, {"time": -1, "y": -1, "x": -1}]
    for chunks in chunkings:
        with no_compute():
            lazy = xglacier.forecast(da.chunk(chunks), salstm, **kw)
        assert isinstance(lazy.data, dask.array.Array)
        diff = np.abs(lazy.values - eager.values).max()
        assert diff == 0, f"chunks {chunks}: max |diff| {diff}"
    # recursion really crosses blocks: lead 3 differs from a forecast of lead 1's frames alone
    assert not np.array_equal(eager.values[2], eager.values[0])


@pytest.mark.parametrize("weight", ["hann", "uniform"])
def test_equals_assemble_of_per_window_predictions(weight):
    model = Whole()
    da = cube(dyadic=True)
    x = torch.from_numpy(da.values[None, -3:, :8, :8] + np.arange(5, dtype="f4")[:, None, None, None])
    # the premise of exact equality: a window's prediction does not depend on its batch
    assert torch.equal(model(x), torch.cat([model(x[k:k + 1]) for k in range(5)]))
    expected = by_hand(da, model, steps=5, stride=3, weight=weight)
    for block in (None, 8, 11, 30):
        fc = xglacier.forecast(da.chunk({"y": 9}), model, steps=5, stride=3, weight=weight, block=block)
        np.testing.assert_array_equal(fc.values, expected, err_msg=f"block={block}")


def test_lazy_and_many_tasks(no_compute):
    model = Whole(n_in=3, n_out=2)
    da = cube(nt=5, ny=64, nx=64).chunk({"time": 1, "y": 16, "x": 16})
    with no_compute():
        fc = da.glacier.forecast(model, steps=4, stride=4, block=16)
        graph = dict(fc.data.__dask_graph__())
    predict = [k for k in graph if isinstance(k, tuple) and str(k[0]).startswith("forecast-predict")]
    blend = [k for k in graph if str(k).startswith("forecast-blend")]
    assert len(predict) == len(blend) == 2 * 16  # 4 x 4 blocks, 2 rounds
    assert len(graph) > 100 and fc.data.numblocks[1:] == (4, 4)
    # memory per task: a block's frames and predictions, never the scene
    assert max(fc.data.chunks[1]) == max(fc.data.chunks[2]) == 16
    single = xglacier.forecast(da.compute(), model, steps=4, stride=4, block=64)
    np.testing.assert_array_equal(fc.values, single.values)


def test_nan_raise_names_the_frame_and_fill_fills():
    da = cube(nt=6)
    da[4, 12, 5] = np.nan
    model = Persistence(patch_size=8, n_in=3, n_out=2)
    with pytest.raises(NaNInPatchError, match=r"time index 4 \(2016-01-01T00:00:00\), y=12, x=5.*nan='fill'"):
        xglacier.forecast(da, model)
    lazy = xglacier.forecast(da.chunk({"y": 10}), model)  # builds: values are not read yet
    with pytest.raises(NaNInPatchError, match=r"time index 4 \(2016-01-01T00:00:00\), y=12, x=5"):
        lazy.compute()
    filled = xglacier.forecast(da.chunk({"y": 10}), Whole(), nan="fill", fill_value=0.5, steps=3)
    np.testing.assert_array_equal(filled.values, xglacier.forecast(da.fillna(0.5), Whole(), steps=3).values)
    assert not np.isnan(filled.values).any()


def test_metadata_crs_only_when_there_is_one_and_history():
    da = cube()
    da.attrs["history"] = "earlier step"
    fc = xglacier.forecast(da, Whole(), steps=3)
    assert "spatial_ref" not in fc.coords and "grid_mapping" not in fc.encoding
    assert fc.attrs["history"].splitlines()[0] == "earlier step"
    assert fc.attrs["history"].splitlines()[1].split()[2] == "forecast"
    assert fc.lead_time.attrs["standard_name"] == "forecast_period" and fc.name == "ndsi_forecast"
    assert str(fc.forecast_reference_time.values)[:10] == "2016-07-01"
    geo = xglacier.forecast(da.rio.write_crs("EPSG:32643"), Whole(), steps=3)
    assert geo.rio.crs.to_epsg() == 32643 and geo.encoding["grid_mapping"] == "spatial_ref"


def test_bad_options_and_models():
    da = cube()
    model = Persistence(patch_size=8, n_in=3, n_out=2)
    for kw, name in (({"block": 7}, "block"), ({"stride": 9}, "stride"), ({"stride": 0}, "stride"),
                     ({"steps": True}, "steps"), ({"batch_size": 0}, "batch_size"),
                     ({"weight": "gauss"}, "weight"), ({"nan": "drop"}, "nan"),
                     ({"fill_value": float("nan")}, "fill_value")):
        with pytest.raises(ParameterError, match=f"forecast: {name}="):
            xglacier.forecast(da, model, **kw)
    with pytest.raises(TypeError):
        xglacier.forecast(da, model, 3)  # options are keyword-only
    ok = xglacier.forecast(da, model, steps=np.int64(3), stride=np.int32(4), block=np.int64(8))
    assert ok.sizes["lead_time"] == 3

    class Wrong(Whole):
        def forward(self, x):
            return x[:, :1]

    with pytest.raises(InputError, match=r"forecast: model Wrong returned shape \(\d+, 1, 8, 8\)"):
        xglacier.forecast(da, Wrong())


@pytest.mark.parametrize("chunked", [False, True])
def test_interpolated_input_frames_warn_with_their_dates(chunked):
    import warnings

    from xglacier.errors import InterpolatedInputWarning
    from xglacier.models import SeasonalPersistence

    rng = np.random.default_rng(1)
    cube = xr.DataArray(rng.random((8, 12, 12), dtype="f4"), dims=("time", "y", "x"), name="ndsi",
                        coords={"time": pd.date_range("2019-01-01", periods=8, freq="3MS"),
                                "interpolated": ("time", np.arange(8) == 2)})
    cube = cube.chunk({"y": 5}) if chunked else cube
    model = SeasonalPersistence(patch_size=6)
    # frame 2 (2019-07-01) is among the last four of the first six frames: warned, with its date
    warned = r"forecast: input frame\(s\) \['2019-07-01'\] of variable 'ndsi'"
    with pytest.warns(InterpolatedInputWarning, match=warned):
        fc = xglacier.forecast(cube.isel(time=slice(0, 6)), model, steps=4)
    # and the value is what seasonal persistence gives: the interpolated frame carried forward
    np.testing.assert_array_equal(np.asarray(fc.isel(lead_time=0)), cube.values[2])
    with warnings.catch_warnings():
        warnings.simplefilter("error", InterpolatedInputWarning)
        xglacier.forecast(cube, model, steps=2)  # the last four frames are all observed: no warning
        xglacier.forecast(cube.drop_vars("interpolated"), model, steps=2)


def test_model_keeps_its_mode_and_a_lazy_result_its_weights():
    """``forecast`` runs an eval-mode copy of the model as it is at the call: the user's model
    stays in training mode, and changing it before the compute changes nothing."""
    torch.manual_seed(0)
    model = SALSTM(preset="small", patch_size=8, n_in=4, n_out=2)  # dropout: mode matters
    assert model.training
    da = cube(nt=6, ny=24, nx=24)
    lazy = xglacier.forecast(da.chunk({"y": 12}), model, steps=2, stride=4)
    expected = xglacier.forecast(da, model, steps=2, stride=4).values  # computed now
    assert model.training
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(0.5)
    np.testing.assert_array_equal(lazy.values, expected)
    assert not np.array_equal(xglacier.forecast(da, model, steps=2, stride=4).values, expected)
