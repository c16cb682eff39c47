"""Input checks shared by every operation: bands, dimensions, time axis, value range.

The checks never compute Dask-backed data: structural checks (names, dims, dtype,
coordinates) are eager because they only read metadata, while value checks on a Dask
array are added to the graph and raise when the data is computed.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, TypeVar

import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

from .errors import (
    DimensionError,
    InputError,
    MissingBandError,
    ParameterError,
    ReflectanceRangeError,
    TimeAxisError,
    XGlacierDeprecationWarning,
)
from .landsat import REFLECTANCE_BANDS, REFLECTANCE_RANGE, dn_hint

# A little slack around the C2 L2 range: resampling and noise can overshoot slightly,
# while raw DNs (thousands) or percent reflectance (tens) are far outside.
_RANGE_SLACK = 0.05

F = TypeVar("F", bound=Callable[..., Any])


def get_band(ds: xr.Dataset | xr.DataArray, name: Hashable, role: str = "band", *,
             func: str | None = None) -> xr.DataArray:
    """Return variable ``name`` of a Dataset, or raise :class:`MissingBandError`.

    ``func`` names the public function asking, so that the message starts with it.
    """
    where = f"{func}: " if func else ""
    if isinstance(ds, xr.DataArray):
        raise InputError(
            f"{where}this operation needs a Dataset with one variable per band (looking for {role} "
            f"{name!r}), got a DataArray named {ds.name!r}"
        )
    if name not in ds.data_vars:
        raise MissingBandError(
            f"{where}{role} {name!r} is not a variable of the Dataset; variables present: "
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


def check_time(obj: xr.Dataset | xr.DataArray, required: bool = True, *, func: str | None = None) -> None:
    """Check that ``time`` is a strictly increasing datetime64 coordinate.

    ``func`` names the public function asking, so that the message starts with it.
    """
    where = f"{func}: " if func else ""
    if "time" not in obj.dims:
        if required:
            raise DimensionError(f"{where}expected a 'time' dimension, found dimensions {tuple(obj.dims)}")
        return
    if "time" not in obj.coords:
        raise TimeAxisError(f"{where}dimension 'time' has no coordinate; expected datetime64 values")
    t = obj.indexes["time"]
    if not isinstance(t, pd.DatetimeIndex):
        raise TimeAxisError(f"{where}coordinate 'time' has dtype {obj['time'].dtype}; expected datetime64")
    if t.tz is not None:
        raise TimeAxisError(f"{where}coordinate 'time' is timezone-aware; expected tz-naive UTC")
    if t.has_duplicates:
        dup = t[t.duplicated()].unique()
        raise TimeAxisError(
            f"{where}coordinate 'time' has duplicate values {[str(v) for v in dup[:5]]}; "
            "expected one scene per time stamp"
        )
    if not t.is_monotonic_increasing:
        bad = int(np.argmax(np.diff(t.asi8) < 0)) + 1
        raise TimeAxisError(
            f"{where}coordinate 'time' is not sorted: {t[bad]} follows {t[bad - 1]}; "
            "call .sortby('time') first"
        )


def frames_per_year(times: Any) -> int | None:
    """Frames per year of a regular, increasing datetime axis (4 for quarterly composites), or
    None when it has fewer than two frames or no whole number of frames per year.

    Examples
    --------
    >>> frames_per_year(pd.date_range("2020-01-01", periods=8, freq="3MS"))
    4
    >>> frames_per_year(pd.date_range("2020-01-01", periods=8, freq="5MS")) is None
    True
    """
    t = np.asarray(times, dtype="datetime64[s]")
    if t.size < 2:
        return None
    step = float(np.median(np.diff(t).astype(np.float64))) / 86400.0
    if step <= 0:
        return None
    per_year = 365.25 / step
    # monthly steps vary from 28 to 31 days: accept a few percent off a whole number
    return round(per_year) if abs(per_year - round(per_year)) < 0.05 * per_year else None


def _raw_attrs(da: xr.DataArray) -> str:
    """What the attributes of an unscaled variable say about its scaling and nodata."""
    said = [f"{k}={da.attrs[k]!r}" for k in ("scale_factor", "add_offset", "_FillValue", "nodata")
            if k in da.attrs]
    return f"; its attrs say {', '.join(said)}" if said else ""


def _range_check_block(block: np.ndarray, where: str, name: str, lo: float, hi: float,
                       raw: str) -> np.ndarray:
    if block.size and np.isfinite(block).any():
        bmin, bmax = np.nanmin(block), np.nanmax(block)
        if bmin < lo or bmax > hi:
            # a number far below any reflectance is a nodata marker left in the data
            sentinel = (f"; {bmin:g} is no reflectance but a nodata value, which must be NaN"
                        if bmin < -1 else "")
            raise ReflectanceRangeError(
                f"{where}variable {name!r} holds values in [{bmin:g}, {bmax:g}]; expected scaled "
                f"surface reflectance in [{lo:g}, {hi:g}]{sentinel}{raw} ({dn_hint()})"
            )
    return block


def check_reflectance(da: xr.DataArray, *, func: str | None = None) -> xr.DataArray:
    """Reject data that is not scaled reflectance; return ``da`` (checked lazily on Dask).

    Integer dtypes (digital numbers, whose nodata cannot be NaN) fail at once. Float values
    outside the Collection 2 range (digital numbers in the thousands, percent, a nodata
    value such as -9999 left in the data) are found eagerly for NumPy data and at compute
    time for Dask data, so a lazy pipeline stays lazy. ``func`` names the public function
    asking, so that the message starts with it; the message says how each product's
    digital numbers are scaled (:func:`xglacier.landsat.dn_hint`).

    Examples
    --------
    >>> da = xr.DataArray(np.array([812, 4071], np.int16), dims="x", name="green")
    >>> check_reflectance(da, func="ndsi")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    xglacier.errors.ReflectanceRangeError: ndsi: variable 'green' has dtype int16; ... HLS L30/S30: ...
    """
    name = str(da.name)
    where = f"{func}: " if func else ""
    raw = _raw_attrs(da)
    if not np.issubdtype(da.dtype, np.floating):
        raise ReflectanceRangeError(
            f"{where}variable {name!r} has dtype {da.dtype}; expected float surface reflectance, "
            f"not digital numbers{raw} ({dn_hint()})"
        )
    lo, hi = REFLECTANCE_RANGE[0] - _RANGE_SLACK, REFLECTANCE_RANGE[1] + _RANGE_SLACK
    if isinstance(da.data, dsa.Array):
        checked = da.data.map_blocks(_range_check_block, where, name, lo, hi, raw, dtype=da.dtype)
        return da.copy(data=checked)
    _range_check_block(np.asarray(da.data), where, name, lo, hi, raw)
    return da


def is_reflectance_band(da: xr.DataArray) -> bool:
    """Whether ``da`` is named as a reflectance band of the data model (``REFLECTANCE_BANDS``)."""
    return isinstance(da.name, str) and da.name in REFLECTANCE_BANDS


def check_reflectance_band(func: str, da: xr.DataArray) -> xr.DataArray:
    """:func:`check_reflectance` for a variable named as a reflectance band; any other as it is.

    Functions that work on any variable (``fill_gaps``, ``composite``, ``apply_warps``)
    check the reflectance bands among them, and only those: an NDSI or an elevation has
    its own range.
    """
    return check_reflectance(da, func=func) if is_reflectance_band(da) else da


# -- keyword values -------------------------------------------------------------------------
# One set of checks for every public function, so that the same kind of keyword is
# accepted and refused the same way everywhere: integers accept NumPy integers and refuse
# bools and floats; numbers refuse bools, NaN and infinity; flags accept only bools.


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"> {low}" if low_open else f">= {low}")
    if high is not None:
        parts.append(f"< {high}" if high_open else f"<= {high}")
    return " and ".join(parts)


def _in_range(value: float, low: float | None, high: float | None, low_open: bool,
              high_open: bool) -> bool:
    if low is not None and (value <= low if low_open else value < low):
        return False
    return not (high is not None and (value >= high if high_open else value > high))


def check_int(func: str, label: str, value: Any, *, low: int | None = None, high: int | None = None,
              allow_none: bool = False) -> int | None:
    """Return ``value`` as a Python ``int``, or raise :class:`ParameterError`.

    Python and NumPy integers are accepted; ``bool`` (``True`` is not 1 pixel), floats and
    strings are refused, and so are values outside ``[low, high]``.

    Examples
    --------
    >>> check_int("patches", "size", np.int64(8), low=1)
    8
    >>> check_int("flow", "levels", True, low=1)
    Traceback (most recent call last):
    ...
    xglacier.errors.ParameterError: flow: levels=True; expected an integer >= 1
    """
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or not _in_range(value, low, high, False, False):
        bound = _bounds(low, high, False, False)
        raise ParameterError(f"{func}: {label}={value!r}; expected an integer{' ' + bound if bound else ''}"
                             + (" or None" if allow_none else ""))
    return int(value)


def check_number(func: str, label: str, value: Any, *, low: float | None = None,
                 high: float | None = None, low_open: bool = False, high_open: bool = False,
                 integer: bool = False, allow_none: bool = False) -> float | int | None:
    """Return ``value`` as a finite Python number in range, or raise :class:`ParameterError`.

    With ``integer=True`` this is :func:`check_int` (open bounds are made closed by one).

    Examples
    --------
    >>> check_number("fit", "lr", np.float32(0.5), low=0, low_open=True)
    0.5
    >>> check_number("fit", "lr", float("nan"), low=0)
    Traceback (most recent call last):
    ...
    xglacier.errors.ParameterError: fit: lr=nan; expected a finite number >= 0
    """
    if integer:
        lo = None if low is None else (math.floor(low) + 1 if low_open else math.ceil(low))
        hi = None if high is None else (math.ceil(high) - 1 if high_open else math.floor(high))
        return check_int(func, label, value, low=lo, high=hi, allow_none=allow_none)
    if value is None and allow_none:
        return None
    ok = (isinstance(value, (int, float, np.integer, np.floating))
          and not isinstance(value, (bool, np.bool_)) and math.isfinite(value))
    if not ok or not _in_range(value, low, high, low_open, high_open):
        bound = _bounds(low, high, low_open, high_open)
        raise ParameterError(f"{func}: {label}={value!r}; expected a finite number"
                             f"{' ' + bound if bound else ''}" + (" or None" if allow_none else ""))
    return float(value) if isinstance(value, (float, np.floating)) else int(value)


def check_flag(func: str, label: str, value: Any) -> bool:
    """Return ``value`` if it is a bool (Python or NumPy), else raise :class:`ParameterError`.

    Examples
    --------
    >>> check_flag("ndsi", "clip", 1)
    Traceback (most recent call last):
    ...
    xglacier.errors.ParameterError: ndsi: clip=1; expected True or False
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ParameterError(f"{func}: {label}={value!r}; expected True or False")
    return bool(value)


def check_choice(func: str, label: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise :class:`ParameterError`.

    Examples
    --------
    >>> check_choice("forecast", "nan", "drop", ("raise", "fill"))
    Traceback (most recent call last):
    ...
    xglacier.errors.ParameterError: forecast: nan='drop'; expected one of 'raise', 'fill'
    """
    options = tuple(choices)
    if isinstance(value, Hashable) and not isinstance(value, (bool, np.bool_)) and value in options:
        return value
    raise ParameterError(f"{func}: {label}={value!r}; expected one of "
                         + ", ".join(repr(c) for c in options))


def check_samples(func: str, label: str, samples: Any, kind: type, what: str,
                  allow_none: bool = False) -> None:
    """:class:`InputError` unless ``samples`` is a non-empty ``kind`` (``what`` names it)."""
    if samples is None and allow_none:
        return
    if not isinstance(samples, kind):
        raise InputError(f"{func}: {label} is a {type(samples).__name__}; expected {what}")
    if len(samples) == 0:
        raise InputError(f"{func}: {label} has no samples" + (
            "; pass val=None to train without validation" if label == "val" else ""))


def check_bands(func: str, ds: Any, bands: Any, *, default: Sequence[Hashable] | None = None,
                role: str = "band") -> list[Hashable]:
    """The ``bands=`` keyword of Dataset functions, as a list of variables present in ``ds``.

    ``bands`` is one name or a sequence of names; ``None`` means ``default`` (or every
    data variable when there is no default). Missing names raise
    :class:`MissingBandError`, naming the function and the variables present.

    Examples
    --------
    >>> ds = xr.Dataset({"green": ("x", [1.0]), "swir16": ("x", [2.0])})
    >>> check_bands("mask_clouds", ds, "green")
    ['green']
    >>> check_bands("mask_clouds", ds, ["red"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    xglacier.errors.MissingBandError: mask_clouds: band 'red' is not a variable ... ['green', 'swir16']
    """
    if not isinstance(ds, xr.Dataset):
        raise InputError(f"{func}: expected a Dataset with one variable per band, got "
                         f"{type(ds).__name__}" + (f" named {ds.name!r}" if hasattr(ds, "name") else ""))
    if bands is None:
        names = list(default) if default is not None else list(ds.data_vars)
    elif isinstance(bands, str) or not isinstance(bands, Iterable):
        names = [bands]
    else:
        names = list(bands)
    if not names:
        raise ParameterError(f"{func}: bands={bands!r}; expected at least one band")
    for name in names:
        if not isinstance(name, Hashable) or name not in ds.data_vars:
            raise MissingBandError(
                f"{func}: {role} {name!r} is not a variable of the Dataset; variables present: "
                f"{sorted(map(str, ds.data_vars))}"
            )
    return names


def renamed_keywords(**renames: str) -> Callable[[F], F]:
    """Decorator: accept old keyword names with a :class:`XGlacierDeprecationWarning`.

    ``@renamed_keywords(band="bands")`` lets ``f(ds, band="nir08")`` work as
    ``f(ds, bands="nir08")`` for one more release; passing both raises.

    Examples
    --------
    >>> import warnings
    >>> @renamed_keywords(band="bands")
    ... def f(ds, *, bands=None):
    ...     return bands
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     f(None, band="nir08"), w[0].category.__name__
    ('nir08', 'XGlacierDeprecationWarning')
    """
    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise ParameterError(f"{func.__name__}: {old}= and {new}= given together; "
                                             f"{old}= is the old name of {new}=, pass only {new}=")
                    warnings.warn(f"{func.__name__}: {old}= is deprecated, use {new}= "
                                  "(the old name will be removed in xglacier 0.3)",
                                  XGlacierDeprecationWarning, stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
