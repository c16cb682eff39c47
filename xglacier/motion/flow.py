"""Dense optical flow between consecutive frames, as surface velocity in m/yr, with its noise
floor (``speed_noise``) and a warning when the motion is not clearly above it: :func:`flow`."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import cv2
import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

from .._attrs import georeference, with_history
from .._validate import check_choice, check_flag, check_int, check_number, check_spatial
from ..errors import DimensionError, FlowNoiseWarning, InputError, ParameterError, PixelUnitsWarning
from ..preprocess.terrain import pixel_lengths

SECONDS_PER_YEAR = 365.25 * 86400
#: ``above_noise``: speed_signal > NOISE_FACTOR * speed_noise; without ``stable=`` the
#: signal is the SIGNAL_PERCENTILE-th percentile of the speed (see :func:`flow`).
NOISE_FACTOR, SIGNAL_PERCENTILE = 3.0, 90.0


def _farneback_pair(a: np.ndarray, b: np.ndarray, opts: dict[str, Any]) -> np.ndarray:
    """Flow (2, y, x) in pixels from frame ``a`` to frame ``b``; NaN where either is NaN."""
    valid = np.isfinite(a) & np.isfinite(b)
    out = np.full((2, *a.shape), np.nan, np.float32)
    if valid.sum() < 16:
        return out
    frames = []
    for f in (a, b):
        g = np.where(valid, f, np.nan).astype(np.float64)
        if opts["normalize"]:
            # Each frame to zero mean and unit variance over the common valid pixels: a
            # brightness change between dates (sun, gain) is not taken for motion.
            g = (g - np.nanmean(g)) / (np.nanstd(g) + 1e-12)
            lo, hi = -4.0, 4.0
        else:
            lo, hi = opts["value_range"]
        # gaps get the mid value, so that they carry no texture
        g = np.where(valid, g, 0.5 * (lo + hi))
        frames.append(np.clip((g - lo) / (hi - lo) * 255.0, 0, 255).astype(np.float32))
    fl = cv2.calcOpticalFlowFarneback(
        frames[0], frames[1], None, opts["pyr_scale"], opts["levels"], opts["winsize"],
        opts["iterations"], opts["poly_n"], opts["poly_sigma"], opts["flags"],
    )
    out[0] = np.where(valid, fl[..., 0], np.nan)
    out[1] = np.where(valid, fl[..., 1], np.nan)
    return out


def _flow_block(a: np.ndarray, b: np.ndarray, opts: dict[str, Any]) -> np.ndarray:
    out = np.empty((a.shape[0], 2, *a.shape[1:]), np.float32)
    for i in range(a.shape[0]):
        out[i] = _farneback_pair(a[i], b[i], opts)
    return out


def _frame_seconds(obj: Any) -> tuple[str, pd.Index, np.ndarray]:
    """The frame dimension, its labels and the seconds between consecutive frames."""
    if not isinstance(obj, xr.DataArray):
        raise InputError(f"flow: expected a DataArray (one variable), got {type(obj).__name__}")
    check_spatial(obj, what=f"flow: variable {obj.name!r}")
    if obj.ndim != 3:
        raise DimensionError(
            f"flow: variable {obj.name!r} has dimensions {obj.dims}; expected (time or lead_time, y, x)"
        )
    tdim = obj.dims[0]
    if obj.sizes[tdim] < 2:
        raise InputError(f"flow: variable {obj.name!r} has {obj.sizes[tdim]} frame along {tdim!r}; needs two")
    if tdim not in obj.coords:
        raise DimensionError(f"flow: dimension {tdim!r} has no coordinate; expected dates or lead times")
    labels = obj.indexes[tdim]
    if not isinstance(labels, (pd.DatetimeIndex, pd.TimedeltaIndex)):
        raise DimensionError(
            f"flow: coordinate {tdim!r} has dtype {obj[tdim].dtype}; expected datetime64 or timedelta64"
        )
    seconds = np.diff(labels.as_unit("ns").asi8) / 1e9
    if np.any(seconds <= 0):
        raise InputError(f"flow: coordinate {tdim!r} is not strictly increasing")
    return tdim, labels, seconds


def _observed(obj: Any, skip: bool) -> Any:
    """``obj`` without the frames flagged by a 1-D ``interpolated`` coordinate (when ``skip``)."""
    flag = obj.coords.get("interpolated") if skip and isinstance(obj, xr.DataArray) and obj.ndim else None
    if flag is None or flag.dims != obj.dims[:1] or not bool(flag.any()):
        return obj
    kept = obj.isel({obj.dims[0]: ~flag.values.astype(bool)})
    if kept.sizes[obj.dims[0]] < 2:
        raise InputError(f"flow: variable {obj.name!r} has {kept.sizes[obj.dims[0]]} observed frame(s) "
                         f"of {obj.sizes[obj.dims[0]]} (the others interpolated); needs two "
                         "(skip_interpolated=False uses them)")
    return kept


def _value_range(obj: xr.DataArray, normalize: bool, value_range: Any) -> tuple[float, float]:
    """The values mapped to 0..255 for every frame."""
    if normalize:
        return -4.0, 4.0
    if value_range is None:
        if obj.attrs.get("units") != "1":
            raise ParameterError(
                f"flow: with normalize=False give value_range=(low, high) for variable "
                f"{obj.name!r} (units {obj.attrs.get('units')!r}); only unitless indices "
                "default to (-1, 1)"
            )
        return -1.0, 1.0
    if isinstance(value_range, str) or not isinstance(value_range, Sequence) or len(value_range) != 2:
        raise ParameterError(f"flow: value_range={value_range!r}; expected a pair (low, high)")
    lo, hi = (float(check_number("flow", "value_range", v)) for v in value_range)
    if not hi > lo:
        raise ParameterError(f"flow: value_range={value_range!r}; expected low < high")
    return lo, hi


def _metric_pixel(obj: xr.DataArray) -> tuple[np.ndarray, np.ndarray] | None:
    """East-west and north-south metres of one pixel, per row (``None``: no metric CRS)."""
    crs = obj.rio.crs
    if crs is None or not (crs.is_projected or crs.is_geographic):
        return None
    return pixel_lengths(crs, obj["x"].values, obj["y"].values, what=f"flow: variable {obj.name!r}")


def _displacements(obj: xr.DataArray, opts: dict[str, Any]) -> dsa.Array:
    """(pair, 2, y, x) Farneback displacements in pixels, one task per pair of whole frames."""
    data = obj.data if isinstance(obj.data, dsa.Array) else dsa.from_array(np.asarray(obj.data), chunks=-1)
    data = data.astype(np.float32).rechunk({0: 1, 1: -1, 2: -1})
    n = obj.shape[0] - 1
    disp = dsa.map_blocks(
        _flow_block, data[:-1].rechunk({0: 1}), data[1:].rechunk({0: 1}), opts,
        new_axis=1, chunks=((1,) * n, (2,), data.chunks[1], data.chunks[2]), dtype=np.float32,
    )
    return disp if isinstance(obj.data, dsa.Array) else disp.compute(scheduler="threads")


def _axis_sign(obj: xr.DataArray | xr.Dataset, dim: str, func: str = "flow") -> float:
    """+1 when coordinate ``dim`` increases along the array, -1 when it decreases; without
    a coordinate a north-up raster's (columns east, rows south)."""
    if dim not in obj.coords or obj.sizes[dim] < 2:
        return 1.0 if dim == "x" else -1.0
    steps = np.diff(np.asarray(obj[dim].values, np.float64))
    if np.all(steps > 0) or np.all(steps < 0):
        return float(np.sign(steps[0]))
    raise InputError(f"{func}: coordinate {dim!r} is neither increasing nor decreasing; expected a grid")


def _on_grid(func: str, what: str, arr: Any, like: xr.DataArray | xr.Dataset, target: str) -> xr.DataArray:
    """``arr`` as a ``(y, x)`` DataArray in the row and column order of ``like``: the same
    grid sorted the other way is reordered, another grid refused (never resampled)."""
    if not isinstance(arr, xr.DataArray) or set(arr.dims) != {"y", "x"}:
        dims = f" with dimensions {arr.dims}" if isinstance(arr, xr.DataArray) else ""
        raise InputError(f"{func}: {what} is a {type(arr).__name__}{dims}; expected a (y, x) DataArray "
                         f"on the grid of {target}")
    arr = arr.transpose("y", "x")
    for dim in ("y", "x"):
        coords = dim in arr.coords and dim in like.coords
        if coords and _axis_sign(arr, dim, func) != _axis_sign(like, dim, func):
            arr = arr.isel({dim: slice(None, None, -1)})
        a, b = (np.asarray(o[dim].values, np.float64) for o in (arr, like))
        tol = 1e-3 * np.ptp(b) / max(b.size - 1, 1)  # a thousandth of a pixel
        if a.shape != b.shape or (coords and not np.allclose(a, b, rtol=0, atol=tol)):
            raise InputError(f"{func}: {what} is not on the grid of {target}: its {dim!r} runs {a[0]:.6g} .. "
                             f"{a[-1]:.6g} ({a.size} values), expected {b[0]:.6g} .. {b[-1]:.6g} ({b.size})")
    return arr


def _velocity(obj: xr.DataArray, disp: dsa.Array, labels: pd.Index, seconds: np.ndarray) -> xr.Dataset:
    """Velocities from the displacements ``disp`` between frames ``seconds`` apart."""
    dx, dy = disp[:, 0], disp[:, 1]
    size = _metric_pixel(obj)
    years = (seconds / SECONDS_PER_YEAR).astype(np.float32)[:, None, None]
    if size is None:
        warnings.warn(
            f"flow: the CRS of {obj.name!r} ({obj.rio.crs}) has no metric pixel size; "
            "velocities are in pixel/yr", PixelUnitsWarning, stacklevel=3,
        )
        size_x = size_y = np.float32(1.0)
        unit = "pixel yr-1"
    else:
        size_x, size_y = (np.asarray(s, np.float32)[None, :, None] for s in size)
        unit = "m yr-1"
    # a column step is eastward when x increases, a row step northward when y increases:
    # dx, dy stay in array order, u and v are true east and north whatever the orientation
    u = dx * (size_x * np.float32(_axis_sign(obj, "x"))) / years
    v = dy * (size_y * np.float32(_axis_sign(obj, "y"))) / years
    speed = (u**2 + v**2) ** 0.5
    direction = (np.degrees(np.arctan2(u, v)) + 360.0) % 360.0
    variables = {
        "u": (u, "eastward surface velocity", unit), "v": (v, "northward surface velocity", unit),
        "speed": (speed, "surface speed", unit),
        "direction": (direction, "direction of surface motion, clockwise from north", "degree"),
        "dx": (dx, "displacement along columns (increasing column index)", "pixel"),
        "dy": (dy, "displacement along rows (increasing row index)", "pixel"),
    }
    ds = xr.Dataset(
        {k: (("pair", "y", "x"), a, {"long_name": n, "units": un}) for k, (a, n, un) in variables.items()},
        coords={"start": ("pair", labels[:-1]), "end": ("pair", labels[1:]),
                "dt_days": ("pair", seconds / 86400.0, {"units": "days"}), "y": obj["y"], "x": obj["x"]},
    )
    return georeference(ds, obj)


def _stable_mask(obj: xr.DataArray, stable: Any) -> np.ndarray | dsa.Array | None:
    """``stable`` as a ``(y, x)`` boolean array in the order of ``obj``'s rows and columns."""
    if stable is None:
        return None
    stable = _on_grid("flow", "stable", stable, obj, f"variable {obj.name!r}")
    if stable.dtype != bool:
        raise InputError(f"flow: stable has dtype {stable.dtype}; expected bool (True: still ground)")
    if isinstance(stable.data, dsa.Array):
        return stable.data.rechunk(-1)
    if not stable.values.any():
        raise InputError("flow: stable has no True pixel; expected some ground that does not move")
    return stable.values


def _noise_block(speed: np.ndarray, stable: np.ndarray | None = None) -> np.ndarray:
    """(pair, 2): the noise floor and the signal speed of each whole-frame pair in ``speed``."""
    out = np.full((speed.shape[0], 2), np.nan, np.float32)
    for i, s in enumerate(speed):
        ok = np.isfinite(s)
        still, moving = (s[ok], s[ok]) if stable is None else (s[ok & stable], s[ok & ~stable])
        if still.size:
            out[i, 0] = np.median(still)
        if moving.size:
            out[i, 1] = np.median(moving) if stable is not None else np.percentile(moving, SIGNAL_PERCENTILE)
    return out


def _noise_flags(stats: np.ndarray, start: np.ndarray, end: np.ndarray, unit: str,
                 stacklevel: int = 2) -> np.ndarray:
    """Whether each pair's signal is clearly above its noise floor; one warning naming those that are not."""
    noise, signal = stats[:, 0], stats[:, 1]
    above = signal > NOISE_FACTOR * noise  # False where either is NaN
    bad = np.flatnonzero(~above)
    if bad.size:
        named = ", ".join(f"{str(start[i])[:19]} -> {str(end[i])[:19]} (signal {signal[i]:.4g}, "
                          f"noise {noise[i]:.4g} {unit})" for i in bad[:5])
        warnings.warn(
            f"flow: {bad.size} of {above.size} pairs have no motion clearly above their noise floor "
            f"(signal speed under {NOISE_FACTOR:g} x speed_noise, or either unknown): {named}"
            f"{' ...' if bad.size > 5 else ''}; their velocities are mostly noise (misregistration, "
            "too short a time gap, clouds); see speed_noise, speed_signal and above_noise",
            FlowNoiseWarning, stacklevel=stacklevel,
        )
    return above


def _add_noise(ds: xr.Dataset, stable: np.ndarray | dsa.Array | None) -> xr.Dataset:
    """``speed_noise``, ``speed_signal`` and ``above_noise`` along ``pair`` (lazy on Dask)."""
    speed = ds["speed"].data
    unit = ds["speed"].attrs["units"]
    start, end = ds["start"].values, ds["end"].values
    if isinstance(speed, dsa.Array):
        args = [] if stable is None else [stable]
        stats = dsa.map_blocks(_noise_block, speed, *args, drop_axis=[1, 2], new_axis=1,
                               chunks=(speed.chunks[0], (2,)), dtype=np.float32)
        above = stats.rechunk(-1).map_blocks(_noise_flags, start, end, unit, drop_axis=1, dtype=bool)
    else:
        stats = _noise_block(np.asarray(speed), None if stable is None else np.asarray(stable))
        above = _noise_flags(stats, start, end, unit, stacklevel=4)  # the caller of flow
    where = "the stable= pixels" if stable is not None else "every valid pixel"
    ds["speed_noise"] = ("pair", stats[:, 0], {"long_name": f"median speed over {where}", "units": unit})
    ds["speed_signal"] = ("pair", stats[:, 1], {"units": unit, "long_name": (
        "median speed outside stable=" if stable is not None else "90th percentile of the speed")})
    ds["above_noise"] = ("pair", above, {"long_name": f"speed_signal > {NOISE_FACTOR:g} x speed_noise"})
    return ds


#: Farneback's averaging window (pixels), the paper's: motion of ice narrower than this is
#: averaged with the ground beside it.
WINSIZE = 13


def flow(
    obj: xr.DataArray, *, method: str = "farneback", pyr_scale: float = 0.5, levels: int = 6,
    winsize: int = WINSIZE, iterations: int = 10, poly_n: int = 5, poly_sigma: float = 1.1, flags: int = 0,
    normalize: bool = True, value_range: tuple[float, float] | None = None,
    stable: xr.DataArray | None = None, skip_interpolated: bool = True,
) -> xr.Dataset:
    """Dense optical flow between consecutive frames, as surface velocity, with its noise floor.

    Farneback's algorithm (OpenCV) with the paper's parameters runs on each pair of
    consecutive frames of a ``(time, y, x)`` or ``(lead_time, y, x)`` DataArray (NDSI, a
    snow mask, a band or a forecast). Displacements in pixels are turned into velocities
    with the metric pixel size, the grid's orientation and the time between the frames.

    Parameters
    ----------
    obj
        DataArray whose first dimension is ``time`` (datetime64) or ``lead_time``
        (timedelta64), then ``y, x`` (each increasing or decreasing). NaN pixels are
        filled with the frame mean for the estimate and NaN in the output.
    method
        Only ``"farneback"``.
    pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags
        ``cv2.calcOpticalFlowFarneback`` parameters; the defaults are the paper's.
    normalize
        Scale each frame to zero mean and unit variance (over the pixels valid in both
        frames) before the estimate, so that a brightness change between dates (sun
        elevation, sensor gain, a drifting forecast) is not taken for motion.
    value_range
        With ``normalize=False``: the values mapped to 0..255, the same for every pair.
        Default (-1, 1) for unitless indices (``units == "1"``: NDSI, snow masks, forecasts
        of them); other variables must give it.
    stable
        Boolean ``(y, x)`` DataArray on the frames' grid, True on ground that does not
        move (e.g. ``rasterize(outlines, like=cube) == 0``), for the noise floor (Notes).
    skip_interpolated
        Leave out the frames that :func:`xglacier.composite` interpolated (its
        ``interpolated`` coordinate: no scene in that period), so that each pair joins two
        observed frames, over the time between them. An interpolated frame is a blend of its
        neighbours, not a moved image: a pair with one is no measurement of motion.

    Returns
    -------
    xarray.Dataset
        Dimension ``pair`` with coordinates ``start`` and ``end`` (the frames' labels) and
        ``dt_days``; variables ``u`` (eastward) and ``v`` (northward) velocities in m/yr,
        ``speed`` and ``direction`` (degrees clockwise from north, towards which the
        surface moves), ``dx``, ``dy`` the raw displacement in pixels along the array's
        columns and rows (``dy > 0``: towards higher rows, southward when ``y`` decreases),
        and along ``pair`` ``speed_noise``, ``speed_signal`` and ``above_noise`` (Notes).
        Lazy: one task per pair on whole frames.

    Warns
    -----
    FlowNoiseWarning
        Naming the pairs whose ``above_noise`` is False, when that is computed (at once
        on NumPy input; on Dask input with ``above_noise`` or the whole Dataset).

    Notes
    -----
    Noise floor (measurements in ``docs/alignment-motion.md``): ``speed_noise`` is the
    median speed over the ``stable`` pixels valid in the pair, what the flow reports where
    nothing moves (misregistration, noise, changed snow or shadows); without ``stable``,
    over every valid pixel: the same when nothing moves (the case to catch), higher when
    ice faster than the noise covers part of the frame. ``speed_signal`` is the median
    speed outside ``stable``, or without it the 90th percentile of the frame's speeds
    (its fastest tenth, e.g. a glacier tongue). ``above_noise`` is ``speed_signal > 3 *
    speed_noise``. Ice covering under a tenth or over half of the frame needs ``stable=``.

    Pixel sizes in metres come from :func:`~xglacier.preprocess.terrain.pixel_lengths`
    (in a geographic CRS each row's own). Without a CRS, or with one neither projected
    nor geographic, velocities stay in pixel/yr with a :class:`PixelUnitsWarning`; an
    irregular grid raises :class:`InputError`.

    Examples
    --------
    The eastern half of a textured frame moves one pixel (30 m) east in a year:

    >>> import numpy as np, pandas as pd, xarray as xr
    >>> from scipy import ndimage
    >>> img = ndimage.gaussian_filter(np.random.default_rng(0).random((64, 64)), 2)
    >>> moved = img.copy()
    >>> moved[:, 32:] = np.roll(img, 1, axis=1)[:, 32:]
    >>> a = xr.DataArray(np.stack([img, moved]), dims=("time", "y", "x"),
    ...                  coords={"time": pd.to_datetime(["2020-01-01", "2021-01-01"]),
    ...                          "y": 30.0 * np.arange(64)[::-1], "x": 30.0 * np.arange(64)})
    >>> stable = (a.x < 900).broadcast_like(a.isel(time=0, drop=True))  # the western part
    >>> f = flow(a.rio.write_crs("EPSG:32643"), stable=stable).isel(pair=0)
    >>> round(float(f.u.isel(y=slice(16, 48), x=slice(40, 56)).median()))
    30
    >>> bool(f.above_noise), bool(f.speed_noise < 3)
    (True, True)
    """
    check_choice("flow", "method", method, ("farneback",))
    obj = _observed(obj, check_flag("flow", "skip_interpolated", skip_interpolated))
    _, labels, seconds = _frame_seconds(obj)
    normalize = check_flag("flow", "normalize", normalize)
    lo, hi = _value_range(obj, normalize, value_range)
    opts = dict(pyr_scale=float(check_number("flow", "pyr_scale", pyr_scale, low=0, high=1,
                                             low_open=True, high_open=True)),
                levels=check_int("flow", "levels", levels, low=1),
                winsize=check_int("flow", "winsize", winsize, low=1),
                iterations=check_int("flow", "iterations", iterations, low=1),
                poly_n=check_int("flow", "poly_n", poly_n, low=1),
                poly_sigma=float(check_number("flow", "poly_sigma", poly_sigma, low=0, low_open=True)),
                flags=check_int("flow", "flags", flags, low=0), normalize=normalize,
                value_range=(lo, hi))
    mask = _stable_mask(obj, stable)  # checked before any work
    ds = _add_noise(_velocity(obj, _displacements(obj, opts), labels, seconds), mask)
    ds.attrs = with_history({}, "flow", source=obj, method=method, stable=stable is not None, **opts)
    return ds
