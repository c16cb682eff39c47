"""Glacier surface motion: dense optical flow between consecutive frames, in m/yr."""

from __future__ import annotations

import warnings
from typing import Any

import cv2
import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

from ._attrs import with_history
from ._validate import check_spatial
from .errors import DimensionError, InputError, ParameterError, PixelUnitsWarning

SECONDS_PER_YEAR = 365.25 * 86400


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


def _pixel_size(obj: xr.DataArray) -> tuple[float, float] | None:
    """(x, y) pixel size in metres, or None where the CRS gives no metric scale."""
    crs = obj.rio.crs
    if crs is None or not crs.is_projected:
        return None
    units = crs.linear_units_factor  # (name, metres per unit)
    factor = float(units[1])
    dx = float(abs(obj.x[1] - obj.x[0])) * factor
    dy = float(abs(obj.y[1] - obj.y[0])) * factor
    return dx, dy


def flow(
    obj: xr.DataArray,
    method: str = "farneback",
    pyr_scale: float = 0.5,
    levels: int = 6,
    winsize: int = 13,
    iterations: int = 10,
    poly_n: int = 5,
    poly_sigma: float = 1.1,
    flags: int = 0,
    normalize: bool = True,
    value_range: tuple[float, float] | None = None,
) -> xr.Dataset:
    """Dense optical flow between consecutive frames, as surface velocity.

    Farneback's algorithm (OpenCV) with the paper's parameters runs on each pair of
    consecutive frames of a ``(time, y, x)`` or ``(lead_time, y, x)`` DataArray (NDSI, a
    snow mask, a band or a forecast). Displacements in pixels are turned into velocities
    with the CRS pixel size and the time between the frames.

    Parameters
    ----------
    obj
        DataArray whose first dimension is ``time`` (datetime64) or ``lead_time``
        (timedelta64), then ``y, x``. NaN pixels are filled with the frame mean for the
        estimate and NaN in the output.
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

    Returns
    -------
    xarray.Dataset
        Dimension ``pair`` with coordinates ``start`` and ``end`` (the frames' labels) and
        ``dt_days``; variables ``u`` (eastward) and ``v`` (northward) velocities in m/yr
        (pixel/yr on a CRS without metric units, with a :class:`PixelUnitsWarning`),
        ``speed`` and ``direction`` (degrees clockwise from north, towards which the
        surface moves), and ``dx``, ``dy`` the raw displacement in pixels per pair
        (``dy`` positive down the rows). Lazy: one task per pair on whole frames.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> rng = np.random.default_rng(0)
    >>> from scipy import ndimage
    >>> img = ndimage.gaussian_filter(rng.random((64, 64)), 2)
    >>> img = (img - img.min()) / (img.max() - img.min())
    >>> a = xr.DataArray(np.stack([img, np.roll(img, 1, axis=1)]), dims=("time", "y", "x"),
    ...                  coords={"time": pd.to_datetime(["2020-01-01", "2021-01-01"]),
    ...                          "y": 30.0 * np.arange(64)[::-1], "x": 30.0 * np.arange(64)})
    >>> f = flow(a.rio.write_crs("EPSG:32643"))  # one pixel east in a year: 30 m/yr
    >>> round(float(f.u.isel(y=slice(16, 48), x=slice(16, 48)).median()))
    30
    """
    if method != "farneback":
        raise ParameterError(f"flow: method={method!r}; expected 'farneback'")
    if not isinstance(obj, xr.DataArray):
        raise InputError(f"flow expects a DataArray (one variable), got {type(obj).__name__}")
    check_spatial(obj)
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
    if isinstance(labels, pd.DatetimeIndex):
        seconds = np.diff(labels.as_unit("ns").asi8) / 1e9
    elif isinstance(labels, pd.TimedeltaIndex):
        seconds = np.diff(labels.as_unit("ns").asi8) / 1e9
    else:
        raise DimensionError(
            f"flow: coordinate {tdim!r} has dtype {obj[tdim].dtype}; expected datetime64 or timedelta64"
        )
    if np.any(seconds <= 0):
        raise InputError(f"flow: coordinate {tdim!r} is not strictly increasing")
    if normalize:
        lo, hi = -4.0, 4.0
    else:
        if value_range is None:
            if obj.attrs.get("units") != "1":
                raise ParameterError(
                    f"flow: with normalize=False give value_range=(low, high) for variable "
                    f"{obj.name!r} (units {obj.attrs.get('units')!r}); only unitless indices "
                    "default to (-1, 1)"
                )
            value_range = (-1.0, 1.0)
        lo, hi = map(float, value_range)
        if not hi > lo:
            raise ParameterError(f"flow: value_range={value_range!r}; expected low < high")
    for label, value in (("levels", levels), ("winsize", winsize), ("iterations", iterations),
                         ("poly_n", poly_n)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ParameterError(f"flow: {label}={value!r}; expected a positive integer")
    if not 0 < pyr_scale < 1:
        raise ParameterError(f"flow: pyr_scale={pyr_scale!r}; expected a value in (0, 1)")

    opts = dict(pyr_scale=float(pyr_scale), levels=int(levels), winsize=int(winsize),
                iterations=int(iterations), poly_n=int(poly_n), poly_sigma=float(poly_sigma),
                flags=int(flags), normalize=bool(normalize), value_range=(lo, hi))
    data = obj.data if isinstance(obj.data, dsa.Array) else dsa.from_array(np.asarray(obj.data), chunks=-1)
    data = data.astype(np.float32).rechunk({0: 1, 1: -1, 2: -1})
    n = obj.sizes[tdim] - 1
    disp = dsa.map_blocks(
        _flow_block, data[:-1].rechunk({0: 1}), data[1:].rechunk({0: 1}), opts,
        new_axis=1, chunks=((1,) * n, (2,), data.chunks[1], data.chunks[2]), dtype=np.float32,
    )
    if not isinstance(obj.data, dsa.Array):
        disp = disp.compute(scheduler="threads")
    dx, dy = disp[:, 0], disp[:, 1]

    size = _pixel_size(obj)
    years = (seconds / SECONDS_PER_YEAR).astype(np.float32)[:, None, None]
    if size is None:
        warnings.warn(
            f"flow: the CRS of {obj.name!r} ({obj.rio.crs}) has no metric pixel size; "
            "velocities are in pixel/yr", PixelUnitsWarning, stacklevel=2,
        )
        size, unit = (1.0, 1.0), "pixel yr-1"
    else:
        unit = "m yr-1"
    u = dx * np.float32(size[0]) / years
    v = -dy * np.float32(size[1]) / years  # rows increase southwards
    speed = (u**2 + v**2) ** 0.5
    direction = (np.degrees(np.arctan2(u, v)) + 360.0) % 360.0

    dims = ("pair", "y", "x")
    coords = {
        "start": ("pair", labels[:-1]),
        "end": ("pair", labels[1:]),
        "dt_days": ("pair", seconds / 86400.0, {"units": "days"}),
        "y": obj["y"], "x": obj["x"],
    }
    if "spatial_ref" in obj.coords:
        coords["spatial_ref"] = obj["spatial_ref"]
    ds = xr.Dataset(
        {
            "u": (dims, u, {"long_name": "eastward surface velocity", "units": unit}),
            "v": (dims, v, {"long_name": "northward surface velocity", "units": unit}),
            "speed": (dims, speed, {"long_name": "surface speed", "units": unit}),
            "direction": (dims, direction, {
                "long_name": "direction of surface motion, clockwise from north", "units": "degree"}),
            "dx": (dims, dx, {"long_name": "displacement along columns", "units": "pixel"}),
            "dy": (dims, dy, {"long_name": "displacement along rows (southward)", "units": "pixel"}),
        },
        coords=coords,
    )
    for name in ds.data_vars:
        ds[name].encoding["grid_mapping"] = "spatial_ref"
    ds.attrs = with_history({"history": obj.attrs["history"]} if "history" in obj.attrs else {},
                            "flow", method=method, **{k: v for k, v in opts.items()})
    return ds


def plot_flow(
    velocity: xr.Dataset,
    pair: int = 0,
    image: xr.DataArray | None = None,
    step: int | None = None,
    ax: Any = None,
    **quiver: Any,
) -> Any:
    """Draw one pair's flow as arrows over an image (matplotlib).

    Parameters
    ----------
    velocity
        Output of :func:`flow`.
    pair
        Which pair to draw.
    image
        Background ``(y, x)`` DataArray, default the speed of that pair.
    step
        Draw one arrow every ``step`` pixels (default: about 30 arrows across).
    ax
        Matplotlib axes; default a new figure.
    **quiver
        Passed to ``ax.quiver`` (colour, scale, ...).

    Returns
    -------
    The matplotlib axes.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> a = xr.DataArray(np.random.default_rng(0).random((2, 32, 32)), dims=("time", "y", "x"),
    ...                  coords={"time": pd.to_datetime(["2020-01-01", "2020-02-01"]),
    ...                          "y": 30.0 * np.arange(32)[::-1], "x": 30.0 * np.arange(32)})
    >>> ax = plot_flow(flow(a.rio.write_crs("EPSG:32643")))
    """
    import matplotlib.pyplot as plt

    sel = velocity.isel(pair=pair)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    bg = sel["speed"] if image is None else image
    ny, nx = sel.sizes["y"], sel.sizes["x"]
    step = step or max(1, max(ny, nx) // 30)
    ax.imshow(np.asarray(bg), cmap="gray" if image is not None else "viridis")
    rows, cols = np.mgrid[step // 2:ny:step, step // 2:nx:step]
    dxs = np.asarray(sel["dx"])[rows, cols]
    dys = np.asarray(sel["dy"])[rows, cols]
    quiver.setdefault("color", "red")
    quiver.setdefault("angles", "xy")
    ax.quiver(cols, rows, dxs, dys, **quiver)  # data coordinates: rows grow downwards
    ax.set_title(f"{sel['start'].values} -> {sel['end'].values} ({sel['speed'].attrs['units']})")
    return ax
