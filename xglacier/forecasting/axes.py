"""The time and row order the forecasting stage works in: one regular step, rows north to south.

:func:`time_step` finds the step between frames (or refuses a series with a missing period);
:func:`north_up` turns a scene north-up and east-right. :func:`~xglacier.patches`,
:func:`~xglacier.forecast` and :func:`~xglacier.forecasting.ceiling.held_out_ceiling` use them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .._orient import view_flips
from ..errors import TimeAxisError

__all__ = ["north_up", "time_step"]


def time_step(func: str, da: xr.DataArray) -> pd.DateOffset | pd.offsets.MonthEnd | pd.Timedelta:
    """The one step between the frames of ``da``, or :class:`TimeAxisError` naming ``func``.

    Frames on the same day of the month (composites labelled by their start: ``MS``, ``3MS``,
    ``YS``) or all on month ends (``ME``, ``QE``) are a whole number of months apart, returned as
    a ``DateOffset`` or ``MonthEnd``; others must be a near-constant number of days apart
    (at most 20 % over the shortest step; the median step is returned). A missing period
    breaks the step: a window across it would read two frames a step apart that are not, and
    a forecast would be labelled and seasoned wrongly.

    Examples
    --------
    >>> t = pd.date_range("2020-01-01", periods=5, freq="3MS")
    >>> time_step("forecast", xr.DataArray(np.zeros(5), dims="time", coords={"time": t}))
    <DateOffset: months=3>
    """
    times = da.indexes["time"]
    name = da.name
    if len(times) < 2:
        raise TimeAxisError(f"{func}: variable {name!r} has {len(times)} frame(s); the time step needs two")
    months = np.diff(times.year * 12 + times.month)
    clock = times - times.normalize()
    if (clock == clock[0]).all() and months[0] > 0 and (months == months[0]).all():
        if (times.day == times[0].day).all():
            return pd.DateOffset(months=int(months[0]))
        if times.is_month_end.all():  # labelled by the period's end: 'ME', 'QE', 'YE'
            return pd.offsets.MonthEnd(int(months[0]))
    days = np.diff(times.asi8)
    # a missing period is a step of two or more: measured against the shortest, it shows even
    # among three frames (against a median of two steps both would look wrong)
    shortest = float(days.min())
    bad = np.flatnonzero(days > 1.2 * shortest)
    if bad.size:
        i = int(bad[0]) + 1
        raise TimeAxisError(
            f"{func}: variable {name!r} has no regular time step: {times[i].date()} follows "
            f"{times[i - 1].date()} ({days[i - 1] / 86400e9:g} days), while the shortest step is "
            f"{shortest / 86400e9:g} days; expected consecutive frames one step apart (a period without "
            "a scene must still be a frame: composite(interpolate=...) or NaN)")
    return pd.Timedelta(round(float(np.median(days))), "ns")


def north_up(da: xr.DataArray) -> xr.DataArray:
    """``da`` with rows from north to south (``y`` descending) and columns from west to east
    (``x`` ascending), lazily; unchanged when it is so already or has no such coordinates. The
    forecasting models have a direction (glaciers flow and are lit one way on the ground), so
    :func:`patches` and :func:`~xglacier.forecast` show them every scene this way.

    Examples
    --------
    >>> da = xr.DataArray(np.arange(3.0), dims="y", coords={"y": [0.0, 30.0, 60.0]})
    >>> north_up(da).y.values.tolist()
    [60.0, 30.0, 0.0]
    """
    flips = view_flips(da)
    return da.isel(flips) if flips else da
