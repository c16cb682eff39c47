"""Full-scene forecasts: patches of the last frames -> model -> blended reassembly."""

from __future__ import annotations

import warnings
from typing import Any, Literal

import dask
import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

from .._attrs import with_history
from .._validate import check_time
from ..errors import DimensionError, InputError, ParameterError
from .kernels import gather_patches
from .patches import NaNInPatchError, assemble, positions


def _future_times(times: pd.DatetimeIndex, steps: int) -> pd.DatetimeIndex:
    """Valid times of the next ``steps`` frames, following the cube's regular frequency."""
    freq = None
    if len(times) >= 3:
        # pandas 3 warns about infer_freq's return type changing; either type works here
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            freq = pd.infer_freq(times)
    if freq is not None:
        return pd.date_range(times[-1], periods=steps + 1, freq=freq)[1:]
    step = pd.Timedelta(np.median(np.diff(times.asi8)), "ns")
    return pd.DatetimeIndex([times[-1] + step * (k + 1) for k in range(steps)])


def _predict_scene(frames: np.ndarray, model: Any, steps: int, stride: int, batch_size: int,
                   weight: str, nan: str, fill_value: float) -> np.ndarray:
    """Eager core: (n_in, y, x) frames -> (steps, y, x) forecast; recursive past n_out."""
    import torch

    p, n_in = model.patch_size, model.n_in
    _, ny, nx = frames.shape
    ys, xs = positions(ny, p, stride), positions(nx, p, stride)
    yx = np.array([(y, x) for y in ys for x in xs], np.int64)
    origins = np.column_stack([np.zeros(len(yx), np.int64), yx])
    history = np.ascontiguousarray(frames, dtype=np.float32)
    if nan == "fill":
        history = np.nan_to_num(history, nan=fill_value)
    elif np.isnan(history).any():
        t, y, x = np.argwhere(np.isnan(history))[0]
        raise NaNInPatchError(
            f"forecast: the last {n_in} input frames contain NaN (first at frame {t}, y={y}, "
            f"x={x}); fill the gaps first (fill_gaps, composite) or pass nan='fill'"
        )
    model.eval()
    out = []
    with torch.no_grad():
        while len(out) < steps:
            inp = history[-n_in:]
            xb = np.empty((len(origins), n_in, p, p), np.float32)
            gather_patches(np.ascontiguousarray(inp), origins, p, n_in, 0, xb,
                           np.empty((len(origins), 0, p, p), np.float32))
            preds = np.concatenate([
                model(torch.from_numpy(xb[k : k + batch_size])).numpy()
                for k in range(0, len(xb), batch_size)
            ])
            frames_out = assemble(preds, yx, like=_grid_like(ny, nx), weight=weight).values
            out.extend(frames_out)
            history = np.concatenate([history, frames_out])
    return np.stack(out[:steps]).astype(np.float32)


def _grid_like(ny: int, nx: int) -> xr.DataArray:
    return xr.DataArray(np.empty((ny, nx), np.float32), dims=("y", "x"))


def forecast(
    da: xr.DataArray,
    model: Any,
    steps: int = 4,
    stride: int | None = None,
    batch_size: int = 256,
    weight: Literal["uniform", "hann"] = "hann",
    nan: Literal["raise", "fill"] = "raise",
    fill_value: float = 0.0,
) -> xr.DataArray:
    """Forecast the next ``steps`` frames of a whole scene from its last ``n_in`` frames.

    The last ``model.n_in`` frames are cut into ``model.patch_size`` patches (every
    ``stride`` pixels, plus edge patches so that every pixel is predicted), the model
    predicts each patch, and the predictions are blended back onto the grid
    (:func:`xglacier.assemble`, a smooth Hann weight by default so that patch borders do
    not show). Beyond ``model.n_out`` frames the forecast feeds itself back recursively.

    Parameters
    ----------
    da
        ``(time, y, x)`` DataArray on a regular time step (e.g. 3-month NDSI composites).
    model
        A forecasting model of :mod:`xglacier.models` (or any module with the same
        interface: ``patch_size``, ``n_in``, ``n_out``, ``model(x)``).
    steps
        Frames to predict.
    stride
        Step between patches; default half the patch size.
    batch_size
        Patches per model call.
    weight
        Blending of overlapping patches: ``"hann"`` or ``"uniform"``.
    nan, fill_value
        NaN in the input frames: ``"raise"`` a clear error, or ``"fill"`` with ``fill_value``.

    Returns
    -------
    xarray.DataArray
        ``(lead_time, y, x)``, lazy (one task for the scene: chunking of the input does not
        change the result), with coordinates ``forecast_reference_time`` (the last input
        time), ``lead_time`` (CF ``forecast_period``) and ``time`` (valid time), the input's
        ``x``/``y``/CRS, and the model in ``attrs``.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> from xglacier.models import Persistence
    >>> cube = xr.DataArray(np.random.default_rng(0).random((6, 20, 20), dtype="f4"),
    ...     dims=("time", "y", "x"), name="ndsi",
    ...     coords={"time": pd.date_range("2020-01-01", periods=6, freq="3MS")})
    >>> fc = forecast(cube, Persistence(patch_size=8), steps=2)
    >>> fc.dims, bool((fc.isel(lead_time=1) == cube.isel(time=-1)).all())
    (('lead_time', 'y', 'x'), True)
    """
    if not isinstance(da, xr.DataArray) or da.dims != ("time", "y", "x"):
        raise DimensionError(
            f"forecast expects a (time, y, x) DataArray, got {type(da).__name__} with dims "
            f"{getattr(da, 'dims', None)}"
        )
    check_time(da)
    for attr in ("patch_size", "n_in", "n_out"):
        if not hasattr(model, attr):
            raise ParameterError(f"forecast: model {type(model).__name__} has no {attr!r}; "
                                 "expected an xglacier.models model")
    p, n_in = model.patch_size, model.n_in
    nt, ny, nx = da.shape
    if nt < n_in:
        raise InputError(f"forecast: variable {da.name!r} has {nt} frames; the model needs n_in={n_in}")
    if p > min(ny, nx):
        raise InputError(f"forecast: patch size {p} of the model is larger than the scene ({ny} x {nx})")
    stride = stride or max(1, p // 2)
    if not isinstance(steps, int) or steps < 1 or stride > p or stride < 1 or batch_size < 1:
        raise ParameterError(
            f"forecast: steps={steps}, stride={stride}, batch_size={batch_size}; expected "
            "steps >= 1, 1 <= stride <= patch size, batch_size >= 1"
        )
    if nan not in ("raise", "fill") or weight not in ("uniform", "hann"):
        raise ParameterError(f"forecast: nan={nan!r}, weight={weight!r}; expected 'raise'/'fill' "
                             "and 'uniform'/'hann'")
    last = da.isel(time=slice(nt - n_in, nt))
    args = (model, steps, stride, batch_size, weight, nan, fill_value)
    if isinstance(last.data, dsa.Array):
        frames = last.data.rechunk(-1)
        # not pure: hashing the model's weights for a deterministic key would cost seconds
        # for large models (11 s for the paper's SA-LSTM-H), before anything is computed
        task = dask.delayed(_predict_scene, pure=False)(frames, *args)
        data = dsa.from_delayed(task, (steps, ny, nx), dtype=np.float32)
    else:
        data = _predict_scene(np.asarray(last.data), *args)

    times = da.indexes["time"]
    valid = _future_times(times, steps)
    ref = times[-1]
    coords = {
        "lead_time": ("lead_time", (valid - ref).as_unit("ns"),
                      {"standard_name": "forecast_period", "long_name": "lead time"}),
        "time": ("lead_time", valid.as_unit("ns"), {"long_name": "valid time"}),
        "forecast_reference_time": ((), np.datetime64(ref.as_unit("ns").asm8),
                                    {"standard_name": "forecast_reference_time"}),
        "y": da["y"], "x": da["x"],
    }
    if "spatial_ref" in da.coords:
        coords["spatial_ref"] = da["spatial_ref"]
    name = f"{da.name}_forecast" if da.name else "forecast"
    attrs = {
        "long_name": f"forecast of {da.attrs.get('long_name', da.name or 'the input')}",
        "units": da.attrs.get("units", "1"),
        "model": type(model).__name__,
        "model_config": str(getattr(model, "config", {})),
    }
    attrs = with_history({**attrs, "history": da.attrs["history"]} if "history" in da.attrs else attrs,
                         "forecast", model=type(model).__name__, steps=steps, stride=stride,
                         weight=weight, nan=nan)
    out = xr.DataArray(data, dims=("lead_time", "y", "x"), coords=coords, name=name, attrs=attrs)
    out.encoding["grid_mapping"] = "spatial_ref"
    return out
