"""Lazy, chunk-invariant full-scene forecasts: patches of the last frames -> model -> blended frames.

:func:`forecast` cuts the last ``n_in`` frames into ``patch_size`` windows, predicts each
window once and blends the overlapping predictions back onto the grid exactly as
:func:`~xglacier.assemble` does, block by block over Dask.

Tiling (it depends only on the scene's shape and the options, never on the input's chunks):

* windows start at :func:`~xglacier._windows.window_starts` ``(n, patch, stride,
  end="flush")`` along y and x (every ``stride`` pixels, plus one flush with the far edge),
  as for :func:`~xglacier.patches`; no window reaches outside the scene, so nothing is padded.
* y and x are cut into blocks of ``block`` pixels from the origin (a last block narrower
  than a patch joins the one before, so every block is at least a patch wide). A window
  belongs to the block its origin lies in. By default each axis is cut into as few
  blocks of at most ``round(sqrt(batch_size))`` windows as it needs, as even as the
  stride allows: a block then holds about one batch, and the calls are nearly full.
* Pass 1 (``map_overlap``, a halo of ``patch - 1`` pixels after each block): the windows
  of a block are gathered and predicted, ``M`` per model call, where ``M = min(batch_size,
  windows of the fullest block)``; a block's last call is topped up to ``M`` with copies of
  its last window. Every call holds the same number of windows because torch's CPU kernels
  may round a window's result differently for another batch size. The result of a block is
  its windows' predictions (one chunk; the halo is read, never predicted again).
* Pass 2 (one task per block): the predictions of the windows that reach a block (from the
  block itself and the blocks above and to the left of it: a block is at least a patch
  wide) are added to it in the order of the whole scene's windows (row-major origins),
  with the weight of :func:`~xglacier.assemble`, in float64, and divided.

Every window is predicted once in a batch fixed by the tiling, and every pixel sums the
same terms in the same order as the whole-scene loop: the result is bit-for-bit the same
for any chunking of the input, and equal to :func:`~xglacier.assemble` of the per-window
predictions. Beyond ``n_out`` frames the forecast recurses round by round: a round's
windows read the blended frames of the round before (through the same halo).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import dask
import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

from .._attrs import georeference, with_history
from .._orient import view_flips
from .._validate import check_choice, check_int, check_number, check_time, frames_per_year
from ..errors import DimensionError, InputError, NaNInPatchError, ParameterError
from ..nn.frozen import frozen_copy
from .axes import north_up, time_step
from .blend import patch_weight
from .blocks import BlockAxis
from .checks import uses_climate, uses_gaps
from .gaps import series_gaps
from .history import history_means, invented_frames
from .kernels import gather_patches, scatter_patches


def _future_times(times: pd.DatetimeIndex, step: Any, steps: int) -> pd.DatetimeIndex:
    """Valid times of the next ``steps`` frames, one ``step`` (:func:`time_step`) apart."""
    # whole months: calendar arithmetic, not a mean length (MonthEnd is a DateOffset too)
    if isinstance(step, pd.offsets.MonthEnd):
        return pd.DatetimeIndex([times[-1] + pd.offsets.MonthEnd(step.n * (k + 1)) for k in range(steps)])
    if isinstance(step, pd.DateOffset):
        return pd.DatetimeIndex([times[-1] + pd.DateOffset(months=step.months * (k + 1))
                                 for k in range(steps)])
    return pd.DatetimeIndex([times[-1] + step * (k + 1) for k in range(steps)])


def _predict_windows(model: Any, frames: np.ndarray, ys: np.ndarray, xs: np.ndarray, p: int,
                     m: int, n_out: int, gaps: tuple[bool, ...] | None = None,
                     climate: np.ndarray | None = None) -> np.ndarray:
    """``(k, n_out, p, p)`` predictions of the windows at ``ys x xs`` (row-major), ``m`` per call.

    ``gaps``: which of the ``n_in`` frames were never observed, passed to a model that reads
    them; ``climate``: the ``(n_out, y, x)`` season means of the targets over the history, on
    the grid of ``frames``, passed to a model that reads them.
    """
    import torch

    n_in = frames.shape[0]
    yx = np.stack(np.meshgrid(ys, xs, indexing="ij"), -1).reshape(-1, 2)
    samples = np.column_stack([np.zeros(len(yx), np.int64), yx])
    xb = np.empty((m, n_in, p, p), np.float32)
    cb = np.empty((m, n_out, p, p), np.float32) if climate is not None else None
    out = np.empty((len(yx), n_out, p, p), np.float32)
    more = {}
    if gaps is not None and any(gaps) and uses_gaps(model):
        more["missing"] = torch.tensor(gaps, dtype=torch.bool).expand(m, n_in)
    for k in range(0, len(yx), m):
        rows = samples[k:k + m]
        gather_patches(frames, rows, p, n_in, 0, xb, np.empty((m, 0, p, p), np.float32))
        xb[len(rows):] = xb[len(rows) - 1]  # top up: every call holds m windows
        if cb is not None:
            gather_patches(climate, rows, p, n_out, 0, cb, np.empty((m, 0, p, p), np.float32))
            cb[len(rows):] = cb[len(rows) - 1]
            more["climate"] = torch.from_numpy(cb)
        with torch.no_grad():
            pred = model(torch.from_numpy(xb), **more)
        if tuple(pred.shape) != (m, n_out, p, p):
            raise InputError(f"forecast: model {type(model).__name__} returned shape {tuple(pred.shape)} "
                             f"for input {xb.shape}; expected {(m, n_out, p, p)}")
        out[k:k + len(rows)] = pred.numpy()[:len(rows)]
    return out


def _nan_error(block: np.ndarray, where: dict[str, Any], y0: int, x0: int) -> NaNInPatchError:
    t, y, x = np.argwhere(np.isnan(block))[0]
    times = where["times"]
    # in the input's order
    row = y0 + y if "y" not in where["flips"] else where["shape"][0] - 1 - (y0 + y)
    col = x0 + x if "x" not in where["flips"] else where["shape"][1] - 1 - (x0 + x)
    return NaNInPatchError(
        f"forecast: variable {where['name']!r} has NaN in the last {len(times)} input frames, first "
        f"found at time index {where['offset'] + t} ({times[t]}), y={row}, x={col}; fill the gaps "
        "first (fill_gaps, composite) or pass nan='fill'"
    )


def _range_error(frames: np.ndarray, where: dict[str, Any]) -> InputError | None:
    """An error when ``frames`` hold values far outside the ``value_range`` of the model's checkpoint."""
    if where["range"] is None or not np.isfinite(frames).any():
        return None
    lo, hi = where["range"]
    slack = 0.5 * (hi - lo)  # noise and interpolation overshoot a little; units are far off
    fmin, fmax = float(np.nanmin(frames)), float(np.nanmax(frames))
    if lo - slack <= fmin and fmax <= hi + slack:
        return None
    return InputError(
        f"forecast: variable {where['name']!r} holds values in [{fmin:g}, {fmax:g}] in its last "
        f"{len(where['times'])} frames; the model's checkpoint names value_range=[{lo:g}, {hi:g}] "
        "(digital numbers, percent, or a nodata value such as -9999 left in?)")


def _predict_block(block: np.ndarray, *, model: Any, ay: BlockAxis, ax: BlockAxis, m: int, n_out: int,
                   nan: str | None, fill_value: float, where: dict[str, Any],
                   gaps: tuple[bool, ...] | None = None, climate: bool = False,
                   block_id: tuple[int, ...] | None = None) -> np.ndarray:
    """Pass 1: ``(n_in, By + halo, Bx + halo)`` frames (followed by the ``n_out`` climate
    frames with ``climate``) -> the predictions of the block's windows.

    They are ``(ny_w * nx_w, n_out, p, p)`` (row-major windows) held, without a copy, in a
    chunk of shape ``(n_out, ny_w * p, nx_w * p)`` (what the Dask array's chunks say).
    ``nan`` is None after the first round (the frames are the model's own).
    """
    _, i, j = block_id
    history = np.ascontiguousarray(block[-n_out:], dtype=np.float32) if climate else None
    frames = np.ascontiguousarray(block[:-n_out] if climate else block, dtype=np.float32)
    if nan is not None and (err := _range_error(frames, where)) is not None:
        raise err
    if nan == "fill":
        frames = np.nan_to_num(frames, nan=fill_value)
    elif nan == "raise" and np.isnan(frames).any():
        raise _nan_error(frames, where, ay.edges[i], ax.edges[j])
    ys, xs = ay.windows(i), ax.windows(j)
    p = ay.size
    pred = _predict_windows(model, frames, ys - ay.edges[i], xs - ax.edges[j], p, m, n_out, gaps, history)
    return pred.reshape(n_out, len(ys) * p, len(xs) * p)


def _blend_block(*mosaics: np.ndarray, sources: tuple[tuple[int, int], ...], i: int, j: int,
                 ay: BlockAxis, ax: BlockAxis, weight: str) -> np.ndarray:
    """Pass 2: blend the windows of ``mosaics`` (of blocks ``sources``) that reach block ``(i, j)``.

    Contributions are added in the order of the whole scene's windows, as
    :func:`~xglacier.assemble` adds them.
    """
    p, n_out = ay.size, mosaics[0].shape[0]
    y0, y1, x0, x1 = ay.edges[i], ay.edges[i + 1], ax.edges[j], ax.edges[j + 1]
    windows, views = [], []  # (y0, x0, source, a, b) of every window reaching the block
    for s, ((bi, bj), mosaic) in enumerate(zip(sources, mosaics, strict=True)):
        ys, xs = ay.windows(bi), ax.windows(bj)
        views.append(mosaic.reshape(len(ys), len(xs), n_out, p, p))
        windows += [(ys[a], xs[b], s, a, b) for a in np.flatnonzero((ys + p > y0) & (ys < y1))
                    for b in np.flatnonzero((xs + p > x0) & (xs < x1))]
    windows.sort()  # the whole scene's order: row-major origins
    pred = np.empty((len(windows), n_out, p, p), np.float32)
    for k, (_, _, s, a, b) in enumerate(windows):
        pred[k] = views[s][a, b]
    yx = np.array([w[:2] for w in windows], np.int64) - np.array([y0, x0])
    num = np.zeros((n_out, y1 - y0, x1 - x0))
    den = np.zeros((y1 - y0, x1 - x0))
    scatter_patches(pred, yx, patch_weight(p, weight), num, den)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan).astype(np.float32)


def _forecast_round(frames: dsa.Array, model: Any, ay: BlockAxis, ax: BlockAxis, m: int, n_out: int,
                    weight: str, nan: str | None, fill_value: float, where: dict[str, Any],
                    gaps: tuple[bool, ...], climate: dsa.Array | None) -> dsa.Array:
    """One round: ``(n_in, y, x)`` frames on the block grid -> ``(n_out, y, x)`` blended frames."""
    p = ay.size
    if climate is not None:  # one array: the climate frames after the inputs
        frames = dsa.concatenate([frames, climate]).rechunk((-1, ay.chunks, ax.chunks))
    mosaic = dsa.map_overlap(
        _predict_block, frames, depth={0: 0, 1: (0, p - 1), 2: (0, p - 1)}, boundary="none",
        trim=False, model=model, ay=ay, ax=ax, m=m, n_out=n_out, nan=nan, fill_value=fill_value,
        where=where, gaps=gaps, climate=climate is not None, token="forecast-predict",
        chunks=((n_out,), tuple(c * p for c in ay.counts), tuple(c * p for c in ax.counts)),
        dtype=np.float32, meta=np.empty((0, 0, 0), np.float32),
    )
    parts = mosaic.to_delayed(optimize_graph=False)[0]
    rows = []
    for i, cy in enumerate(ay.chunks):
        row = []
        for j, cx in enumerate(ax.chunks):
            sources = tuple((bi, bj) for bi in (i - 1, i) if bi >= 0 for bj in (j - 1, j) if bj >= 0)
            task = dask.delayed(_blend_block, pure=True)(
                *(parts[s] for s in sources), sources=sources, i=i, j=j, ay=ay, ax=ax, weight=weight,
                dask_key_name=f"forecast-blend-{mosaic.name}-{i}-{j}")
            row.append(dsa.from_delayed(task, (n_out, cy, cx), dtype=np.float32,
                                        meta=np.empty((0, 0, 0), np.float32)))
        rows.append(row)
    return dsa.block([rows])


def _history(da: xr.DataArray, model: Any, first: int, n_out: int, axes: tuple[BlockAxis, BlockAxis]
             ) -> dsa.Array:
    """``(n_out, y, x)`` north-up season means, over all of ``da``, of the frames ``first``,
    ``first + 1``, ... after its last (a model's own forecasts never count in them)."""
    time_step("forecast", da)  # seasons are counted in frames: the whole history must be regular
    series = north_up(da)
    data = series.data if isinstance(series.data, dsa.Array) else np.asarray(series.data)
    means = history_means(data, invented_frames(series), da.sizes["time"], range(first, first + n_out),
                          model.period)
    if not isinstance(means, dsa.Array):
        means = dsa.from_array(means, chunks=-1, name=False)
    return means.rechunk((-1, axes[0].chunks, axes[1].chunks))


def _check_model(model: Any) -> tuple[int, int, int]:
    for attr in ("patch_size", "n_in", "n_out"):
        if not hasattr(model, attr):
            raise ParameterError(f"forecast: model {type(model).__name__} has no {attr!r}; "
                                 "expected an xglacier.models model")
    return tuple(check_int("forecast", f"model.{attr}", getattr(model, attr), low=1)
                 for attr in ("patch_size", "n_in", "n_out"))


def _output(data: Any, da: xr.DataArray, model: Any, steps: int, step: Any,
            attrs: dict[str, Any]) -> xr.DataArray:
    """Wrap ``(steps, y, x)`` forecast data with lead/valid/reference times and the input's grid."""
    times = da.indexes["time"]
    valid = _future_times(times, step, steps)
    ref = times[-1]
    coords = {
        "lead_time": ("lead_time", (valid - ref).as_unit("ns"),
                      {"standard_name": "forecast_period", "long_name": "lead time"}),
        "time": ("lead_time", valid.as_unit("ns"), {"long_name": "valid time"}),
        "forecast_reference_time": ((), np.datetime64(ref.as_unit("ns").asm8),
                                    {"standard_name": "forecast_reference_time"}),
        "y": da["y"], "x": da["x"],
    }
    name = f"{da.name}_forecast" if da.name else "forecast"
    base = {
        "long_name": f"forecast of {da.attrs.get('long_name', da.name or 'the input')}",
        "units": da.attrs.get("units", "1"),
        "model": type(model).__name__,
        "model_config": str(getattr(model, "config", {})),
    }
    out = xr.DataArray(data, dims=("lead_time", "y", "x"), coords=coords, name=name,
                       attrs=with_history(base, "forecast", source=da, **attrs))
    return georeference(out, da)


def forecast(
    da: xr.DataArray,
    model: Any,
    *,
    steps: int = 4,
    stride: int | None = None,
    batch_size: int = 256,
    weight: Literal["uniform", "hann"] = "hann",
    nan: Literal["raise", "fill"] = "raise",
    fill_value: float = 0.0,
    block: int | None = None,
) -> xr.DataArray:
    """Forecast the next ``steps`` frames of a whole scene from its last ``n_in`` frames.

    The last ``model.n_in`` frames are cut into ``model.patch_size`` patches (every
    ``stride`` pixels, plus edge patches so that every pixel is predicted), the model
    predicts each patch once, and the predictions are blended back onto the grid as
    :func:`xglacier.assemble` does (a smooth Hann weight by default so that patch borders do
    not show). Beyond ``model.n_out`` frames the forecast feeds itself back, round by round.
    It runs lazily over blocks of the scene (two Dask tasks per block and round), so
    memory is bounded by the block size and blocks run in parallel; the tiling depends
    only on the scene's shape and the options, never on the input's chunks, and the
    result is the same bit for bit for any chunking. See ``docs/forecasting.md``.

    Parameters
    ----------
    da
        ``(time, y, x)`` DataArray on a regular time step (e.g. 3-month NDSI composites; a
        missing period among the frames it reads raises
        :class:`~xglacier.errors.TimeAxisError`). A scene with ``y`` ascending or ``x``
        descending is forecast north-up and east-right, as :func:`~xglacier.patches` shows a
        model its training samples, and turned back: its forecast is the mirror of that scene's.
    model
        A forecasting model of :mod:`xglacier.models` (or any module with the same
        interface: ``patch_size``, ``n_in``, ``n_out``, ``model(x)``). A copy of it as it is
        now, in eval mode, enters the graph once, unhashed: the model itself keeps its mode,
        and training it further does not change a lazy forecast.
    steps
        Frames to predict.
    stride
        Step between patches; default half the patch size.
    batch_size
        Patches per model call (at most: see ``block``).
    weight
        Blending of overlapping patches: ``"hann"`` or ``"uniform"``.
    nan, fill_value
        NaN in the input frames: ``"raise"`` a clear error (at once for a NumPy-backed
        input, when computed for a Dask one), or ``"fill"`` with ``fill_value``. Input
        frames that ``composite`` interpolated (its ``interpolated`` coordinate) are passed
        as missing to a model that reads gaps (learned models with ``gaps=True``); any other
        model uses them, with an :class:`~xglacier.errors.InterpolatedInputWarning` naming
        their dates. A model loaded from a checkpoint with a ``value_range`` refuses input
        frames far outside it (:class:`~xglacier.errors.InputError`: digital numbers for an
        NDSI model).  A model with ``residual="history"`` also reads, for each forecast frame,
        the mean of its season over every earlier year of ``da`` (interpolated frames left
        out where the season has observed ones; see :mod:`xglacier.forecasting.history`):
        the whole series must then be on one regular time step.
    block
        Side of the square blocks in pixels, at least the patch size; memory per task grows
        with it. Default: per axis, blocks of at most ``round(sqrt(batch_size))`` windows
        (16 for 256, i.e. 400 px at stride 25), evened out over the axis (a 1024 px axis at
        stride 25: 350, 350, 324 px), so that a block holds about one batch. Each call holds
        ``min(batch_size, windows of the fullest block)`` windows, a block's last call topped
        up with copies (a window's result may change with the batch size on CPU), so
        blocks of very unequal fill waste model time.

    Returns
    -------
    xarray.DataArray
        ``(lead_time, y, x)`` float32, lazy (Dask) for a Dask-backed input and computed for
        a NumPy-backed one, with coordinates ``forecast_reference_time`` (the last input
        time), ``lead_time`` (CF ``forecast_period``) and ``time`` (valid time), the input's
        ``x``/``y`` and CRS, and the model in ``attrs``.

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
    >>> lazy = forecast(cube.chunk({"y": 7}), Persistence(patch_size=8), steps=6, stride=3, block=10)
    >>> bool((lazy.values == forecast(cube, Persistence(patch_size=8), steps=6, stride=3).values).all())
    True
    """
    if not isinstance(da, xr.DataArray) or da.dims != ("time", "y", "x"):
        raise DimensionError(
            f"forecast: expected a (time, y, x) DataArray, got {type(da).__name__} with dims "
            f"{getattr(da, 'dims', None)}"
        )
    check_time(da, func="forecast")
    p, n_in, n_out = _check_model(model)
    nt, ny, nx = da.shape
    if nt < n_in:
        raise InputError(f"forecast: variable {da.name!r} has {nt} frames; the model needs n_in={n_in}")
    # the frames the model reads must be consecutive (an earlier gap does not matter), and
    # their step dates the forecast; one frame more, so that a gap shows against a step
    step = time_step("forecast", da.isel(time=slice(-max(n_in + 1, 3), None)))
    from .checks import check_period  # late: torch loads when a forecast runs

    check_period("forecast", type(model).__name__, model, frames_per_year(da["time"].values),
                 f"variable {da.name!r} has")
    if p > min(ny, nx):
        raise InputError(f"forecast: patch size {p} of the model is larger than the scene ({ny} x {nx})")
    steps = check_int("forecast", "steps", steps, low=1)
    stride = check_int("forecast", "stride", stride, low=1, high=p, allow_none=True) or max(1, p // 2)
    batch_size = check_int("forecast", "batch_size", batch_size, low=1)
    block = check_int("forecast", "block", block, low=p, allow_none=True)
    check_choice("forecast", "weight", weight, ("uniform", "hann"))
    check_choice("forecast", "nan", nan, ("raise", "fill"))
    fill_value = check_number("forecast", "fill_value", fill_value)

    per_block = max(1, round(math.sqrt(batch_size)))
    ay, ax = BlockAxis.plan(ny, p, stride, block, per_block), BlockAxis.plan(nx, p, stride, block, per_block)
    m = min(batch_size, max(ay.counts) * max(ax.counts))
    recent = da.isel(time=slice(nt - n_in, nt))
    flips = view_flips(recent)
    last = recent.isel(flips)  # north-up, east-right: as patches() showed the model its samples
    gaps = series_gaps(last, model)
    where = {"name": da.name, "offset": nt - n_in, "times": [str(t)[:19] for t in last["time"].values],
             "flips": flips, "shape": (ny, nx),
             "range": (getattr(model, "checkpoint_meta", None) or {}).get("value_range")}
    eager = not isinstance(last.data, dsa.Array)
    if eager:
        frames = np.asarray(last.data)
        if nan == "raise" and np.isnan(frames).any():
            raise _nan_error(frames, where, 0, 0)  # at once, naming the scene's first NaN
        if (err := _range_error(frames, where)) is not None:
            raise err
        # name=False: a random key instead of hashing the whole array
        data = dsa.from_array(frames, chunks=(-1, ay.chunks, ax.chunks), name=False)
    else:
        data = last.data.rechunk((-1, ay.chunks, ax.chunks))
    data = data.astype(np.float32)
    # not pure: tokenizing would hash every weight of the model (seconds for large models)
    lazy_model = dask.delayed(frozen_copy(model), pure=False)
    rounds: list[dsa.Array] = []
    check = None if eager and nan == "raise" else nan  # NumPy input: checked above
    while len(rounds) * n_out < steps:
        if rounds:  # the next round reads the last n_in frames, blended ones included
            data = dsa.concatenate([data, rounds[-1]])[-n_in:].rechunk((-1, ay.chunks, ax.chunks))
            gaps = (*gaps, *(False,) * n_out)[-n_in:]  # the model's own frames are not gaps
        climate = _history(da, model, len(rounds) * n_out, n_out, (ay, ax)) if uses_climate(model) else None
        rounds.append(_forecast_round(data, lazy_model, ay, ax, m, n_out, weight,
                                      None if rounds else check, fill_value, where, gaps, climate))
    result = dsa.concatenate(rounds)[:steps]
    if eager:
        result = result.compute()
    result = result[(slice(None), *(flips.get(d, slice(None)) for d in ("y", "x")))]  # the input's order
    return _output(result, da, model, steps, step, dict(
        model=type(model).__name__, steps=steps, stride=stride, weight=weight, nan=nan, block=block))
