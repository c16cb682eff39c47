"""Regular temporal composites with linear interpolation of empty periods."""

from __future__ import annotations

import warnings
from typing import Literal

import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

from .._attrs import with_history
from .._validate import (
    check_choice,
    check_flag,
    check_reflectance_band,
    check_spatial,
    check_time,
    is_reflectance_band,
)
from ..errors import ParameterError
from .kernels import interp_time

_REDUCERS = {
    "mean": np.nanmean,
    "median": np.nanmedian,
    "min": np.nanmin,
    "max": np.nanmax,
}


def _offset(freq: str | pd.DateOffset) -> pd.DateOffset:
    """``freq`` as a pandas offset, or :class:`ParameterError`."""
    if not isinstance(freq, str | pd.DateOffset):
        raise ParameterError(f"composite: freq={freq!r}; expected a pandas frequency string")
    # pandas warns before it fails on an unknown lower-case alias ("'bogus' is deprecated,
    # use 'BOGUS'"), which would precede our error with bad advice. Its warnings are held
    # back and repeated only for a valid string (deprecated aliases keep their notice).
    # This runs in the calling thread while the graph is built, never inside Dask tasks.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            offset = pd.tseries.frequencies.to_offset(freq)
        except (TypeError, ValueError) as err:
            raise ParameterError(f"composite: freq={freq!r} is not a pandas frequency") from err
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=4)
    return offset


def period_starts(times: pd.DatetimeIndex, freq: str) -> pd.DatetimeIndex:
    """Regular period starts covering ``times``, anchored on 1 January of the first year.

    Anchoring on the calendar year makes ``"3MS"`` give the quarters Jan/Apr/Jul/Oct
    whatever the first acquisition date is (pandas would start at the first month).

    Examples
    --------
    >>> t = pd.DatetimeIndex(["2020-02-10", "2020-08-01"])
    >>> [str(d.date()) for d in period_starts(t, "3MS")]
    ['2020-01-01', '2020-04-01', '2020-07-01']
    """
    offset = _offset(freq)
    times = times.as_unit("ns")
    origin = pd.Timestamp(year=times[0].year, month=1, day=1)
    starts = pd.date_range(origin, times[-1], freq=offset, unit="ns")
    if len(starts) == 0 or starts[0] != origin:
        raise ParameterError(
            f"composite: freq={freq!r} does not give periods starting on {origin.date()}; "
            "use a start-anchored frequency such as '3MS', 'MS', 'YS' or '16D'"
        )
    first = np.searchsorted(starts.asi8, times[0].value, side="right") - 1
    return starts[first:]


def _reduce_block(block: np.ndarray, how: str) -> np.ndarray:
    # Only pixels with a clear value are reduced: the others stay NaN without numpy's
    # all-NaN warning (catch_warnings would not be thread-safe under Dask).
    valid = np.isfinite(block).any(axis=0)
    out = np.full((1, *block.shape[1:]), np.nan, block.dtype)
    if valid.any():
        out[0][valid] = _REDUCERS[how](block[:, valid].astype(np.float64), axis=0)
    return out


def _interp_block(block: np.ndarray, t: np.ndarray) -> np.ndarray:
    shape = block.shape
    flat = np.ascontiguousarray(block.reshape((shape[0], -1, shape[-1])))
    return interp_time(flat, t).reshape(shape)


def _composite_array(
    da: xr.DataArray, labels: np.ndarray, nper: int, how: str, tnum: np.ndarray,
    interpolate: bool,
) -> np.ndarray | dsa.Array:
    check_spatial(da, what=f"composite: variable {da.name!r}")
    # a nodata value left in the data (-9999) would be averaged as a value, and integer
    # DN bands would be dropped from a Dataset without a word
    da = check_reflectance_band("composite", da)
    axis = da.get_axis_num("time")
    if axis != 0:
        da = da.transpose("time", ...)
    counts = np.bincount(labels, minlength=nper)
    present = np.flatnonzero(counts)
    data = da.data
    lazy = isinstance(data, dsa.Array)
    if not lazy:
        data = dsa.from_array(np.asarray(data), chunks=-1)
    # One time chunk per period: every period is reduced in one block, in a fixed
    # order, so the result does not depend on how the input was chunked in time.
    data = data.rechunk({0: tuple(int(c) for c in counts[present])})
    reduced = data.map_blocks(
        _reduce_block, how, chunks=((1,) * len(present), *data.chunks[1:]), dtype=data.dtype
    )
    empty = dsa.full((1, *data.shape[1:]), np.nan, dtype=data.dtype, chunks=(1, *data.chunks[1:]))
    frames, k = [], 0
    for p in range(nper):
        if counts[p]:
            frames.append(reduced[k : k + 1])
            k += 1
        else:
            frames.append(empty)
    full = dsa.concatenate(frames, axis=0)
    if interpolate:
        full = full.rechunk({0: -1}).map_blocks(_interp_block, tnum, dtype=full.dtype)
    return full if lazy else full.compute(scheduler="synchronous")


def composite(
    obj: xr.Dataset | xr.DataArray,
    *,
    freq: str = "3MS",
    how: Literal["mean", "median", "min", "max"] = "mean",
    interpolate: bool = True,
) -> xr.Dataset | xr.DataArray:
    """Composite scenes over regular periods (3 months by default), ignoring NaN.

    Periods are anchored on 1 January (``"3MS"``: Jan-Mar, Apr-Jun, Jul-Sep, Oct-Dec)
    and labelled by their start. Each pixel is the ``how`` reduction of its clear
    (non-NaN) values within the period. Periods without any scene, and pixels without
    a clear value in their period, are then linearly interpolated in time per pixel
    between the nearest valued periods (the paper's treatment of empty months); values
    before the first or after the last valued period stay NaN.

    Parameters
    ----------
    obj
        Cube with a sorted ``time`` dimension: DataArray, or Dataset (float variables
        are composited, integer ones such as ``qa_pixel`` and per-scene coordinates
        are dropped, variables without ``time`` are kept as they are). Reflectance bands
        (``blue`` ... ``swir22``) must be scaled reflectance with nodata as NaN: integer
        digital numbers raise :class:`ReflectanceRangeError` at once, float values outside
        the reflectance range (digital numbers, -9999) at compute time for Dask input.
    freq
        Start-anchored pandas frequency.
    how
        Reduction within a period.
    interpolate
        Fill empty periods and pixels by linear interpolation in time.

    Returns
    -------
    xarray.Dataset or xarray.DataArray
        Same type, ``time`` = period starts, with coordinates ``n_scenes`` (scenes per
        period) and ``interpolated`` (True where the period had no scene). Lazy for Dask
        input; each output chunk spans all periods.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> t = pd.to_datetime(["2020-01-10", "2020-02-10", "2020-07-05"])
    >>> a = xr.DataArray(np.array([1.0, 3.0, 8.0])[:, None, None], dims=("time", "y", "x"),
    ...                  coords={"time": t})
    >>> composite(a).values.ravel().tolist()
    [2.0, 5.0, 8.0]
    """
    how = check_choice("composite", "how", how, _REDUCERS)
    interpolate = check_flag("composite", "interpolate", interpolate)
    check_time(obj)
    times = obj.indexes["time"].as_unit("ns")
    starts = period_starts(times, freq)
    labels = np.searchsorted(starts.asi8, times.asi8, side="right") - 1
    nper = len(starts)
    counts = np.bincount(labels, minlength=nper)
    tnum = (starts.asi8 - starts.asi8[0]).astype(np.float64)
    coords = {
        "time": starts,
        "n_scenes": ("time", counts.astype(np.int32)),
        "interpolated": ("time", counts == 0),
    }
    params = dict(freq=freq, how=how, interpolate=interpolate)

    def one(da: xr.DataArray) -> xr.DataArray:
        data = _composite_array(da, labels, nper, how, tnum, interpolate)
        dims = ("time", *[d for d in da.dims if d != "time"])
        keep = {k: v for k, v in da.coords.items() if "time" not in v.dims}
        out = xr.DataArray(data, dims=dims, coords={**keep, **coords}, name=da.name)
        out.attrs = dict(da.attrs)
        out.encoding = {k: v for k, v in da.encoding.items() if k == "grid_mapping"}
        return out

    if isinstance(obj, xr.DataArray):
        out = one(obj)
        out.attrs = with_history(out.attrs, "composite", **params)
        return out
    names = [
        n for n, v in obj.data_vars.items()
        if "time" in v.dims and (np.issubdtype(v.dtype, np.floating) or is_reflectance_band(v))
    ]
    static = {n: v for n, v in obj.data_vars.items() if "time" not in v.dims}
    return xr.Dataset(
        {**{n: one(obj[n]) for n in names}, **static},
        attrs=with_history(obj.attrs, "composite", **params),
    )
