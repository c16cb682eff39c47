"""The demo's verdict: which baselines the model's MSE interval lies below, said in its report."""

from __future__ import annotations

import pandas as pd

from xglacier.demo.forecast import format_forecast, verdict


def table():
    rows = [("m", 0.014, 0.011, 0.018), ("seasonal_persistence", 0.038, 0.026, 0.051),
            ("history_climatology", 0.012, 0.009, 0.015), ("persistence", 0.016, 0.013, 0.019)]
    t = pd.DataFrame([{"model": n, "lead": "all", "mse": m, "mse_low": lo, "mse_high": hi, "mae": m}
                      for n, m, lo, hi in rows])
    t.attrs.update(bootstrap="block", n_blocks=25, block=40, n_boot=1000)
    return t


def test_verdict_compares_intervals_and_the_report_names_each_side():
    v = verdict(table(), "m")
    assert v["seasonal_persistence"]["beats"] and not v["history_climatology"]["beats"]
    assert not v["persistence"]["beats"]                 # lower MSE, but the intervals overlap
    assert abs(v["history_climatology"]["delta"] - 0.002) < 1e-12
    everything = table()
    everything["mse_high"] = everything["mse_low"] = everything["mse"]
    everything.loc[everything["model"] == "m", ["mse", "mse_low", "mse_high"]] = 0.001
    rows = table().set_index("model").drop(columns="lead")
    summary = {"patch": 20, "train": 9, "val": 3, "test": 3, "epochs_run": 5, "best_epoch": 2,
               "year": 2021, "year_patches": 361, "year_table": rows, "year_verdict": v,
               "test_windows": 3, "test_targets": ("2020-10", "2021-10"),
               "table": rows, "interval": "block", "verdict": verdict(everything, "m"),
               "skill": {"skill": float("nan")},
               "ceiling": {"years": 7, "oracle": 0.02, "seasonal": 0.021, "ratio": 0.95, "ratio_low": 0.9,
                           "ratio_high": 1.0},
               "forecast_mse": 0.02, "forecast_mae": 0.1, "seasonal_mse": 0.02, "seasonal_mae": 0.1,
               "skill_share": 0.4, "flow_pairs": 3, "flow_above_noise": 3}
    text = "\n".join(format_forecast(summary))
    assert "held-out year 2021 (its four quarters forecast from the four before, 361 patches)" in text
    year = "on the held-out year 2021, SA-LSTM-H"
    assert f"{year} beats seasonal_persistence: its MSE interval lies below" in text
    assert f"{year} does NOT beat history_climatology: MSE +0.0020 (+17%): worse" in text
    assert f"{year} does NOT beat persistence: MSE -0.0020 (-12%), intervals overlap" in text
    assert "own starting point" in text
    assert "all 3 test windows (targets 2020-10 to 2021-10)" in text
    assert ("on the test windows, SA-LSTM-H beats every baseline (seasonal_persistence, history_climatology, "
            "persistence)") in text
    # the climate oracle's ratio interval reaches 1: the year cannot tell a forecaster from
    # seasonal persistence
    assert "no verdict on it can tell a forecaster from seasonal persistence" in text
    summary["ceiling"] = {**summary["ceiling"], "ratio": 0.2, "ratio_low": 0.1, "ratio_high": 0.3}
    assert "so it can tell a forecaster from seasonal persistence" in "\n".join(format_forecast(summary))


def test_held_out_year_is_the_last_window_and_checked():
    """The held-out year's samples are the test windows whose targets are the last four frames."""
    import numpy as np
    import pytest
    import xarray as xr

    import xglacier
    from xglacier.demo.forecast import held_out_year
    from xglacier.errors import InputError

    nt = 24
    da = xr.DataArray(np.random.default_rng(0).random((nt, 24, 24), dtype="f4"), dims=("time", "y", "x"),
                      name="ndsi", coords={"time": pd.date_range("2014-01-01", periods=nt, freq="3MS")})
    _, _, test = xglacier.patches(da, size=8, stride=8, n_in=4, n_out=4).split(by="time", test=0.15, val=0.15)
    year = held_out_year(test, da)
    assert len(year) == 9 and set(year.plan.samples[:, 0]) == {nt - 8}
    assert len(test) > len(year)
    _, targets = year.gather(np.arange(len(year)))
    _, y0, x0 = year.plan.samples[0]
    np.testing.assert_array_equal(targets[0], da.values[-4:, y0:y0 + 8, x0:x0 + 8])
    longer = xr.concat([da, da.isel(time=[-1]).assign_coords(time=[pd.Timestamp("2020-01-01")])], "time")
    with pytest.raises(InputError, match=r"held_out_year: the last test window of 'ndsi' ends at frame 24, "
                                         r"not at the series' end \(25\)"):
        held_out_year(test, longer)
