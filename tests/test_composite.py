"""composite: regular periods, NaN-aware reduction, linear interpolation of empty periods."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xglacier


def series(dates, values, shape=(2, 3)):
    t = pd.to_datetime(dates)
    data = np.asarray(values, np.float32)[:, None, None] * np.ones(shape, np.float32)
    return xr.DataArray(data, dims=("time", "y", "x"), coords={"time": t}, name="ndsi")


def test_hand_checkable_quarters():
    # Q1: 1 and 3 -> 2; Q2: empty; Q3: 8; Q4: 20 and NaN -> 20
    da = series(["2021-01-05", "2021-03-20", "2021-08-01", "2021-11-11", "2021-12-24"],
                [1, 3, 8, 20, np.nan])
    out = xglacier.composite(da)
    assert [str(t)[:10] for t in out.time.values] == [
        "2021-01-01", "2021-04-01", "2021-07-01", "2021-10-01"]
    assert out.interpolated.values.tolist() == [False, True, False, False]
    assert out.n_scenes.values.tolist() == [2, 0, 1, 2]
    # Q2 is interpolated linearly in time between 1 Jan (2) and 1 Jul (8): 90 of 181 days
    expected_q2 = 2 + (8 - 2) * 90 / 181
    np.testing.assert_allclose(out.values[:, 0, 0], [2, expected_q2, 8, 20], rtol=1e-6)


def test_pixel_without_clear_value_is_interpolated_edges_stay_nan():
    da = series(["2021-02-01", "2021-05-01", "2021-08-01", "2021-11-01"], [0.0, 1.0, 2.0, 3.0])
    da[1, 0, 0] = np.nan  # clouded in its only Q2 scene
    da[0, 1, 1] = np.nan  # no value before Q2 for this pixel
    out = xglacier.composite(da)
    assert out.values[1, 0, 0] == pytest.approx(0 + 2 * 90 / 181)
    assert np.isnan(out.values[0, 1, 1])
    assert out.interpolated.values.tolist() == [False] * 4
    raw = xglacier.composite(da, interpolate=False)
    assert np.isnan(raw.values[1, 0, 0])


def test_how_and_freq():
    da = series(["2021-01-05", "2021-01-20", "2021-02-10"], [1, 2, 9])
    assert xglacier.composite(da, how="median").values[0, 0, 0] == 2
    assert xglacier.composite(da, how="max").values[0, 0, 0] == 9
    monthly = xglacier.composite(da, freq="MS")
    np.testing.assert_allclose(monthly.values[:, 0, 0], [1.5, 9])


def test_dataset_drops_qa_and_scene_coords(small_loaded):
    cube, _ = small_loaded
    out = xglacier.composite(cube)
    assert "qa_pixel" not in out and "green" in out
    assert "cloud_cover" not in out.coords and "interpolated" in out.coords
    assert out.rio.crs == cube.rio.crs
    assert out.sizes["time"] == 4


@pytest.mark.parametrize("chunks", [{"time": 1}, {"time": 7, "y": 20, "x": 33},
                                    {"time": -1, "y": 8, "x": 8}])
@pytest.mark.parametrize("how", ["mean", "median"])
def test_chunk_invariant(small_loaded, chunks, how):
    cube, _ = small_loaded
    nd = xglacier.ndsi(xglacier.mask_clouds(cube))
    eager = xglacier.composite(nd, how=how)
    lazy = xglacier.composite(nd.chunk(chunks), how=how)
    assert lazy.chunks is not None
    np.testing.assert_array_equal(lazy.values, eager.values)
