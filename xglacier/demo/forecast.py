"""Forecasting part of ``xglacier demo``: train the small SA-LSTM-H, score it, forecast.

The model predicts the change over the long-term climatology of the place (``residual=
"history"``: each quarter's mean over every earlier year, leaving out the quarters that had
no scene) and is trained with :func:`xglacier.fit`'s default recipe. It is scored on the
held-out windows beside every naive baseline, its own reference (``history_climatology``)
among them, and the demo says whether its MSE interval lies below each baseline's, or by
how much it does not.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import FlowNoiseWarning

#: Patch side of the small presets, and the strides of the training and test patches.
PATCH, TRAIN_STRIDE, TEST_STRIDE = 20, 20, 10


def demo_patches(ndsi: xr.DataArray, *, n_in: int = 4) -> tuple[Any, Any, Any]:
    """The demo's (train, val, test) samples: 20x20 patches, ``n_in`` quarters in (the paper's
    4), 4 out, split by time.

    ``split(by="time", test=0.15, val=0.15)``: the last windows (the held-out year among
    them) are the test targets, no training window reaches a validation target, no
    validation window a test target. Training and validation patches lie every 20 px (side
    by side: twice as fast to train as every 10 px, and as good on this sample, see
    docs/forecasting.md), test patches every 10 px. ``benchmarks/bench_skill.py`` uses the
    same samples.
    """
    from ..forecasting.patches import patches

    kw = dict(size=PATCH, n_in=n_in, n_out=4)
    train, val, _ = patches(ndsi, stride=TRAIN_STRIDE, **kw).split(by="time", test=0.15, val=0.15)
    _, _, test = patches(ndsi, stride=TEST_STRIDE, **kw).split(by="time", test=0.15, val=0.15)
    return train, val, test


def held_out_year(test: Any, ndsi: xr.DataArray) -> Any:
    """The test samples whose targets are the held-out year: the last window, whose four
    targets are the series' last four quarters (forecast from the four before)."""
    from ..errors import InputError

    t0 = test.plan.samples[:, 0]
    last = int(t0.max()) if len(test) else -1
    if last + test.n_in + test.n_out != ndsi.sizes["time"]:
        raise InputError(f"held_out_year: the last test window of {ndsi.name!r} ends at frame "
                         f"{last + test.n_in + test.n_out}, not at the series' end ({ndsi.sizes['time']})")
    return test.subset(t0 == last)


def verdict(table: pd.DataFrame, model: str) -> dict[str, dict[str, float | bool]]:
    """Per baseline of ``evaluate``'s table (all lead times): does ``model``'s MSE interval lie
    below the baseline's (``beats``), and the MSE difference (``delta``, model - baseline)."""
    overall = table[table["lead"].astype(str) == "all"].set_index("model")
    mine = overall.loc[model]
    return {name: {"beats": bool(mine["mse_high"] < row["mse_low"]),
                   "delta": float(mine["mse"] - row["mse"]),
                   "ratio": float(mine["mse"] / row["mse"]) if row["mse"] > 0 else float("nan")}
            for name, row in overall.iterrows() if name != model}


def interval_label(table: pd.DataFrame) -> str:
    """How ``evaluate``'s intervals were drawn, from the table's ``attrs``."""
    a = table.attrs
    if a.get("bootstrap") == "block":
        return (f"block bootstrap over {a.get('n_blocks')} spatial blocks of {a.get('block')} px, "
                f"{a.get('n_boot')} resamples")
    return f"{a.get('bootstrap', 'sample')} bootstrap, {a.get('n_boot')} resamples"


def run_forecast_demo(ndsi: xr.DataArray, out: Path, *, epochs: int | None = None, seed: int = 0,
                      progress: bool = True) -> dict[str, Any]:
    """Train on quarterly NDSI composites with a time split, evaluate, forecast the held-out year.

    The last four quarters are test targets: the model never sees them in training; it
    forecasts them from the four quarters before, and the forecast is compared with them
    and with seasonal persistence (the same quarters one year earlier). ``epochs=None``
    trains for the default recipe's epochs (early stopping decides).
    """
    import torch

    from ..forecasting.ceiling import held_out_ceiling
    from ..forecasting.forecast import forecast
    from ..forecasting.models import SALSTM
    from ..forecasting.train import evaluate, fit
    from ..io.store import to_zarr
    from ..motion import flow
    from ..nn.checkpoint import save_model

    torch.manual_seed(seed)
    model = SALSTM(preset="small", residual="history")
    train, val, test = demo_patches(ndsi)
    history = fit(model, train, val, epochs=epochs, seed=seed, progress=progress)
    table = evaluate({"SA-LSTM-H": model}, test, n_boot=1000, seed=seed)
    year = held_out_year(test, ndsi)
    year_table = evaluate({"SA-LSTM-H": model}, year, n_boot=1000, seed=seed)
    ckpt = save_model(model, out / "salstm_small", variable=str(ndsi.name), value_range=(-1.0, 1.0),
                      metrics=table, extra={"recipe": history.attrs["recipe"]})

    history_frames, future = ndsi.isel(time=slice(0, -4)), ndsi.isel(time=slice(-4, None))
    fc = forecast(history_frames, model, steps=4).compute()
    seasonal = history_frames.isel(time=slice(-4, None))  # the same quarters one year earlier
    err = np.abs(fc.values - future.values)
    with warnings.catch_warnings():
        # the noise floor of each pair is reported in the summary instead
        warnings.simplefilter("ignore", FlowNoiseWarning)
        vel = flow(fc)
    ds = xr.Dataset({"ndsi_forecast": fc, "abs_error": (fc.dims, err.astype(np.float32),
                                                        {"long_name": "absolute error", "units": "1"})})
    zarr_path = to_zarr(ds, out / "forecast.zarr", mode="w")
    png = _forecast_png(out, seasonal, fc, future, err)
    flow_png = _forecast_flow_png(out, vel, fc)
    skill_png, skill_share = _skill_png(out, fc, future, seasonal)
    overall = table[table["lead"].astype(str) == "all"].set_index("model")
    year_overall = year_table[year_table["lead"].astype(str) == "all"].set_index("model")
    ceiling = held_out_ceiling(ndsi, block=int(table.attrs.get("block") or 40), seed=seed)
    times = pd.DatetimeIndex(ndsi["time"].values)
    t0 = test.plan.samples[:, 0]
    return {
        "patch": PATCH, "train": len(train), "val": len(val), "test": len(test),
        "epochs_run": int(history["epoch"].max()), "best_epoch": int(history.attrs["best_epoch"]),
        "year": int(times[-1].year), "year_patches": len(year),
        "year_table": year_overall[["mse", "mse_low", "mse_high", "mae"]],
        "year_verdict": verdict(year_table, "SA-LSTM-H"),
        "test_windows": int(np.unique(t0).size),
        "test_targets": (f"{times[t0.min() + test.n_in]:%Y-%m}", f"{times[-1]:%Y-%m}"),
        "table": overall[["mse", "mse_low", "mse_high", "mae"]],
        "verdict": verdict(table, "SA-LSTM-H"),
        "skill": overall.loc["SA-LSTM-H", ["skill", "skill_low", "skill_high", "skill_reference"]].to_dict(),
        "interval": interval_label(table),
        "forecast_mse": float(np.mean((fc.values - future.values) ** 2)),
        "seasonal_mse": float(np.mean((seasonal.values - future.values) ** 2)),
        "forecast_mae": float(np.nanmean(err)),
        "seasonal_mae": float(np.nanmean(np.abs(seasonal.values - future.values))),
        "skill_share": skill_share,
        "ceiling": {k: v for k, v in ceiling.items() if k != "per_frame"},
        "flow_pairs": int(vel.sizes["pair"]),
        "flow_above_noise": int(vel.above_noise.sum()),
        "files": [str(ckpt), str(zarr_path), str(png), str(flow_png), str(skill_png)],
    }


def _forecast_png(out: Path, inputs: xr.DataArray, fc: xr.DataArray, truth: xr.DataArray,
                  err: np.ndarray) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("input", inputs.values, "RdBu", -1, 1), ("forecast", fc.values, "RdBu", -1, 1),
            ("truth", truth.values, "RdBu", -1, 1), ("|error|", err, "magma", 0, 1)]
    fig, axes = plt.subplots(4, 4, figsize=(8, 8.4), constrained_layout=True)
    for r, (label, frames, cmap, lo, hi) in enumerate(rows):
        for k in range(4):
            ax = axes[r, k]
            ax.imshow(frames[k], cmap=cmap, vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            when = inputs.time.values[k] if r == 0 else truth.time.values[k]
            ax.set_title(f"{label} {pd.Timestamp(when):%Y-%m}", fontsize=8)
    path = out / "forecast.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _skill_png(out: Path, fc: xr.DataArray, truth: xr.DataArray, seasonal: xr.DataArray
               ) -> tuple[Path, float]:
    """Per-pixel skill of the forecast against seasonal persistence over the held-out year;
    returns the PNG and the share of pixels where the model is better (skill > 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..forecasting.skill import skill_map

    skill = skill_map(fc, truth, seasonal)
    values = skill.values
    share = float(np.mean(values[np.isfinite(values)] > 0)) if np.isfinite(values).any() else float("nan")
    fig, ax = plt.subplots(figsize=(5.4, 4.6), constrained_layout=True)
    im = ax.imshow(np.clip(values, -1, 1), cmap="PuOr", vmin=-1, vmax=1)
    fig.colorbar(im, ax=ax, label="skill 1 - MSE / MSE of seasonal persistence")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"SA-LSTM-H vs seasonal persistence, held-out year\n(better on {share:.0%} of the pixels)",
                 fontsize=9)
    path = out / "skill_map.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path, share


def _forecast_flow_png(out: Path, vel: xr.Dataset, fc: xr.DataArray) -> Path:
    """Flow arrows between consecutive forecast frames, over the later frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..motion import plot_flow

    n = vel.sizes["pair"]
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 4.2), constrained_layout=True, squeeze=False)
    for k in range(n):
        plot_flow(vel, pair=k, image=fc.isel(lead_time=k + 1), ax=axes[0, k], step=10)
        axes[0, k].set_title(f"forecast flow, lead {k + 1} -> {k + 2}", fontsize=9)
    path = out / "forecast_flow.png"
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return path


def _verdict_lines(v: dict[str, dict[str, float | bool]], where: str) -> list[str]:
    """Which baselines the model's MSE interval lies below ``where``, and by how much it
    misses the others."""
    won = [n for n, x in v.items() if x["beats"]]
    lost = {n: x for n, x in v.items() if not x["beats"]}
    if not lost:
        return [f"    {where}, SA-LSTM-H beats every baseline ({', '.join(won)}): its MSE interval lies "
                "below each one's"]
    lines = ([f"    {where}, SA-LSTM-H beats {', '.join(won)}: its MSE interval lies below each one's"]
             if won else [])
    for name, x in lost.items():
        how = (f"MSE {x['delta']:+.4f} ({x['ratio'] - 1:+.0%}), intervals overlap" if x["delta"] < 0
               else f"MSE {x['delta']:+.4f} ({x['ratio'] - 1:+.0%}): worse")
        lines.append(f"    {where}, SA-LSTM-H does NOT beat {name}: {how}")
    return lines


def _table_lines(table: pd.DataFrame) -> list[str]:
    return [f"      {name:<22} {row['mse']:.4f} ({row['mse_low']:.4f}-{row['mse_high']:.4f})  "
            f"MAE {row['mae']:.4f}" for name, row in table.iterrows()]


def format_forecast(s: dict[str, Any]) -> list[str]:
    """Report lines of the forecasting demo: the held-out year's table and verdict against
    every baseline, then the test windows', the climate oracle and the whole-scene forecast."""
    year = f"on the held-out year {s['year']}"
    lines = [
        f"  forecasting: small SA-LSTM-H (change over each quarter's mean over the earlier years) on "
        f"{s['patch']}x{s['patch']} NDSI patches, time split {s['train']} train / {s['val']} val / "
        f"{s['test']} test samples, {s['epochs_run']} epochs (best {s['best_epoch']})",
        f"    held-out year {s['year']} (its four quarters forecast from the four before, "
        f"{s['year_patches']} patches), MSE with 95 % intervals ({s['interval']}):",
        *_table_lines(s["year_table"]),
        *_verdict_lines(s["year_verdict"], year),
    ]
    if not s["year_verdict"].get("history_climatology", {"beats": True})["beats"]:
        lines.append("      (history_climatology is the model's own starting point: what training added "
                     "did not carry over to the test years; the sample draws each year's snowline "
                     "anomaly at random, so earlier years do not foretell the next)")
    first, last = s["test_targets"]
    lines += [f"    all {s['test_windows']} test windows (targets {first} to {last}), MSE:",
              *_table_lines(s["table"]),
              *_verdict_lines(s["verdict"], "on the test windows")]
    sk = s["skill"]
    if sk["skill"] == sk["skill"]:  # NaN without a reference
        lines.append(f"    skill on the test windows against {sk['skill_reference']} (1 - MSE ratio, paired "
                     f"over the same blocks): {sk['skill']:+.3f} ({sk['skill_low']:+.3f} to "
                     f"{sk['skill_high']:+.3f})")
    c = s["ceiling"]
    helps = ("the year differs from the one before more than from the place's climate, so it can tell "
             "a forecaster from seasonal persistence" if c["ratio_high"] < 1 else
             "the year is as close to the one before as to the place's climate, so no verdict on it "
             "can tell a forecaster from seasonal persistence (docs/forecasting.md)")
    lines.append(
        f"    {year}, each quarter's mean over the {c['years']} earlier years scores MSE {c['oracle']:.4f} "
        f"against seasonal persistence's {c['seasonal']:.4f}, ratio {c['ratio']:.2f} (paired 95 %: "
        f"{c['ratio_low']:.2f}-{c['ratio_high']:.2f}): {helps}")
    lines += [
        f"    whole-scene forecast of the held-out year: MSE {s['forecast_mse']:.4f}, "
        f"MAE {s['forecast_mae']:.3f} (same quarter one year earlier: MSE {s['seasonal_mse']:.4f}, "
        f"MAE {s['seasonal_mae']:.3f});",
        f"      better than it on {s['skill_share']:.0%} of the pixels (skill_map.png); flow over "
        f"{s['flow_pairs']} forecast pairs ({s['flow_above_noise']} above their noise floor)"]
    return lines
