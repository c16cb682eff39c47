"""Input checks shared by every operation: bands, dimensions, time axis, value range.

The checks never compute Dask-backed data: structural checks (names, dims, dtype,
coordinates) are eager because they only read metadata, while value checks on a Dask
array are added to the graph and raise when the data is computed.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

from .errors import (
    DimensionError,
    InputError,
    MissingBandError,
    ReflectanceRangeError,
    TimeAxisError,
)
from .landsat import REFLECTANCE_RANGE

# A little slack around the C2 L2 range: resampling and noise can overshoot slightly,
# while raw DNs (thousands) or percent reflectance (tens) are far outside.
_RANGE_SLACK = 0.05


def get_band(ds: xr.Dataset | xr.DataArray, name: Hashable, role: str = "band") -> xr.DataArray:
    """Return variable ``name`` of a Dataset, or raise :class:`MissingBandError`."""
    if isinstance(ds, xr.DataArray):
        raise InputError(
            f"this operation needs a Dataset with one variable per band (looking for {role} "
            f"{name!r}), got a DataArray named {ds.name!r}"
        )
    if name not in ds.data_vars:
        raise MissingBandError(
            f"{role} {name!r} is not a variable of the Dataset; variables present: "
            f"{sorted(map(str, ds.data_vars))}"
        )
    return ds[name]


def check_dims(da: xr.DataArray, required: Sequence[str], what: str | None = None) -> None:
    """Raise :class:`DimensionError` unless ``da`` has exactly the ``required`` dimensions."""
    label = what or f"variable {da.name!r}"
    if set(da.dims) != set(required):
        raise DimensionError(
            f"{label} has dimensions {da.dims}; expected {tuple(required)}"
        )


def check_spatial(da: xr.DataArray, what: str | None = None) -> None:
    """Raise :class:`DimensionError` unless the last two dimensions are ``(y, x)``."""
    label = what or f"variable {da.name!r}"
    if da.ndim < 2 or da.dims[-2:] != ("y", "x"):
        raise DimensionError(
            f"{label} has dimensions {da.dims}; expected the last two to be ('y', 'x')"
        )


def check_time(obj: xr.Dataset | xr.DataArray, required: bool = True) -> None:
    """Check that ``time`` is a strictly increasing datetime64 coordinate."""
    if "time" not in obj.dims:
        if required:
            raise DimensionError(f"expected a 'time' dimension, found dimensions {tuple(obj.dims)}")
        return
    if "time" not in obj.coords:
        raise TimeAxisError("dimension 'time' has no coordinate; expected datetime64 values")
    t = obj.indexes["time"]
    if not isinstance(t, pd.DatetimeIndex):
        raise TimeAxisError(f"coordinate 'time' has dtype {obj['time'].dtype}; expected datetime64")
    if t.tz is not None:
        raise TimeAxisError("coordinate 'time' is timezone-aware; expected tz-naive UTC")
    if t.has_duplicates:
        dup = t[t.duplicated()].unique()
        raise TimeAxisError(
            f"coordinate 'time' has duplicate values {[str(v) for v in dup[:5]]}; "
            "expected one scene per time stamp"
        )
    if not t.is_monotonic_increasing:
        bad = int(np.argmax(np.diff(t.asi8) < 0)) + 1
        raise TimeAxisError(
            f"coordinate 'time' is not sorted: {t[bad]} follows {t[bad - 1]}; "
            "call .sortby('time') first"
        )


def _range_check_block(block: np.ndarray, name: str, lo: float, hi: float) -> np.ndarray:
    if block.size and np.isfinite(block).any():
        bmin, bmax = np.nanmin(block), np.nanmax(block)
        if bmin < lo or bmax > hi:
            raise ReflectanceRangeError(
                f"variable {name!r} holds values in [{bmin:g}, {bmax:g}]; expected scaled "
                f"surface reflectance in [{lo:g}, {hi:g}] (raw Landsat C2 L2 DNs must be "
                f"scaled: DN * 0.0000275 - 0.2)"
            )
    return block


def check_reflectance(da: xr.DataArray) -> xr.DataArray:
    """Reject data that is not scaled reflectance; return ``da`` (checked lazily on Dask).

    Integer dtypes fail at once. Float values outside the Collection 2 range are found
    eagerly for NumPy data and at compute time for Dask data, so a lazy pipeline stays lazy.
    """
    name = str(da.name)
    if not np.issubdtype(da.dtype, np.floating):
        raise ReflectanceRangeError(
            f"variable {name!r} has dtype {da.dtype}; expected float reflectance "
            "(integer DNs must be scaled: DN * 0.0000275 - 0.2, nodata as NaN)"
        )
    lo, hi = REFLECTANCE_RANGE[0] - _RANGE_SLACK, REFLECTANCE_RANGE[1] + _RANGE_SLACK
    if isinstance(da.data, dsa.Array):
        checked = da.data.map_blocks(_range_check_block, name, lo, hi, dtype=da.dtype)
        return da.copy(data=checked)
    _range_check_block(np.asarray(da.data), name, lo, hi)
    return da
