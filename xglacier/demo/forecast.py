"""Forecasting part of ``xglacier demo``: train the small SA-LSTM-H, score it, forecast."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import FlowNoiseWarning


def run_forecast_demo(ndsi: xr.DataArray, out: Path, *, epochs: int = 15, seed: int = 0,
                      progress: bool = True) -> dict[str, Any]:
    """Train on quarterly NDSI composites with a time split, evaluate, forecast the held-out year.

    The last four quarters are the test targets: the model never sees them in training;
    it forecasts them from the four quarters before, and the forecast is compared with them.
    """
    import torch

    from ..forecasting.forecast import forecast
    from ..forecasting.models import SALSTM
    from ..forecasting.patches import patches
    from ..forecasting.train import evaluate, fit
    from ..io.store import to_zarr
    from ..motion import flow
    from ..nn.checkpoint import save_model

    torch.manual_seed(seed)
    model = SALSTM(preset="small")
    model_patch = model.patch_size
    # the small preset works on 20x20 patches (the paper: 50x50, with a 2500-wide LSTM)
    ps = patches(ndsi, size=model_patch, stride=10, n_in=4, n_out=4)
    train, val, test = ps.split(by="time", test=0.15, val=0.15)
    history = fit(model, train, val, epochs=epochs, batch_size=100, lr=1e-3, patience=5,
                  seed=seed, progress=progress)
    # overlapping patches are correlated: the intervals are narrower than for independent samples
    table = evaluate({"SA-LSTM-H": model}, test, n_boot=1000, seed=seed)
    ckpt = save_model(model, out / "salstm_small", variable=str(ndsi.name),
                      value_range=(-1.0, 1.0), metrics=table)

    history_frames, future = ndsi.isel(time=slice(0, -4)), ndsi.isel(time=slice(-4, None))
    fc = forecast(history_frames, model, steps=4).compute()
    err = np.abs(fc.values - future.values)
    persistence = np.abs(history_frames.values[-4:] - future.values)  # one year earlier
    with warnings.catch_warnings():
        # the noise floor of each pair is reported in the summary instead
        warnings.simplefilter("ignore", FlowNoiseWarning)
        vel = flow(fc)
    ds = xr.Dataset({"ndsi_forecast": fc, "abs_error": (fc.dims, err.astype(np.float32),
                                                        {"long_name": "absolute error", "units": "1"})})
    zarr_path = to_zarr(ds, out / "forecast.zarr", mode="w")
    png = _forecast_png(out, history_frames.isel(time=slice(-4, None)), fc, future, err)
    flow_png = _forecast_flow_png(out, vel, fc)
    overall = table[table["lead"].astype(str) == "all"].set_index("model")
    return {
        "patch": model_patch, "train": len(train), "val": len(val), "test": len(test),
        "epochs_run": int(history["epoch"].max()),
        "table": overall[["mse", "mse_low", "mse_high", "mae"]],
        "forecast_mae": float(np.nanmean(err)),
        "seasonal_mae": float(np.nanmean(persistence)),
        "flow_pairs": int(vel.sizes["pair"]),
        "flow_above_noise": int(vel.above_noise.sum()),
        "files": [str(ckpt), str(zarr_path), str(png), str(flow_png)],
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


def format_forecast(s: dict[str, Any]) -> list[str]:
    """Report lines of the forecasting demo."""
    lines = [
        f"  forecasting: small SA-LSTM-H on {s['patch']}x{s['patch']} NDSI patches, time split "
        f"{s['train']} train / {s['val']} val / {s['test']} test samples, {s['epochs_run']} epochs",
        "    test MSE (95 % bootstrap interval), all lead times:",
    ]
    for name, row in s["table"].iterrows():
        lines.append(f"      {name:<22} {row['mse']:.4f} ({row['mse_low']:.4f}-{row['mse_high']:.4f})"
                     f"  MAE {row['mae']:.4f}")
    lines.append(f"    forecast of the held-out year: MAE {s['forecast_mae']:.3f} against the truth "
                 f"(same quarter one year earlier: {s['seasonal_mae']:.3f}); flow over "
                 f"{s['flow_pairs']} forecast pairs ({s['flow_above_noise']} above their noise floor)")
    return lines
