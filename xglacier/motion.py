"""Glacier surface motion: dense optical flow between consecutive frames, in m/yr."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import cv2
import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

from ._attrs import georeference, with_history
from ._validate import check_choice, check_flag, check_int, check_number, check_spatial
from .errors import DimensionError, InputError, ParameterError, PixelUnitsWarning
from .preprocess.terrain import pixel_lengths

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
    """East-west and north-south length in metres of one pixel, per row (``None``: no
    metric scale, the CRS is missing or neither projected nor geographic).

    Geographic grids get the true length of a grid step at each row's latitude on the
    CRS's ellipsoid (:func:`~xglacier.preprocess.terrain.pixel_lengths`): a degree of
    longitude is shorter away from the equator, so one size for the whole frame would be
    wrong by up to the ratio of the cosines of its extreme latitudes.
    """
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
    u = dx * size_x / years
    v = -dy * size_y / years  # rows increase southwards
    speed = (u**2 + v**2) ** 0.5
    direction = (np.degrees(np.arctan2(u, v)) + 360.0) % 360.0
    dims = ("pair", "y", "x")
    coords = {
        "start": ("pair", labels[:-1]),
        "end": ("pair", labels[1:]),
        "dt_days": ("pair", seconds / 86400.0, {"units": "days"}),
        "y": obj["y"], "x": obj["x"],
    }
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
    return georeference(ds, obj)


def flow(
    obj: xr.DataArray,
    *,
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
    with the metric pixel size and the time between the frames.

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
        ``dt_days``; variables ``u`` (eastward) and ``v`` (northward) velocities in m/yr,
        ``speed`` and ``direction`` (degrees clockwise from north, towards which the
        surface moves), and ``dx``, ``dy`` the raw displacement in pixels per pair
        (``dy`` positive down the rows). Lazy: one task per pair on whole frames.

    Notes
    -----
    Pixel sizes in metres come from :func:`~xglacier.preprocess.terrain.pixel_lengths`:
    the grid spacing times the linear unit in a projected CRS; in a geographic CRS the
    true length of one grid step at each row's latitude on the CRS's ellipsoid (so ``u``
    and ``v`` are in m/yr there too, row by row). Without a CRS, or with one that is
    neither projected nor geographic, velocities stay in pixel/yr with a
    :class:`PixelUnitsWarning`. A grid that is not regularly spaced raises
    :class:`InputError`: it has no single pixel size.

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
    check_choice("flow", "method", method, ("farneback",))
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
    ds = _velocity(obj, _displacements(obj, opts), labels, seconds)
    ds.attrs = with_history({}, "flow", source=obj, method=method, **opts)
    return ds


def plot_flow(
    velocity: xr.Dataset,
    *,
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

    if not isinstance(velocity, xr.Dataset) or "pair" not in velocity.dims:
        raise InputError(f"plot_flow: velocity is a {type(velocity).__name__} without a 'pair' "
                         "dimension; expected the Dataset returned by flow")
    n = velocity.sizes["pair"]
    pair = check_int("plot_flow", "pair", pair, low=-n, high=n - 1)
    step = check_int("plot_flow", "step", step, low=1, allow_none=True)
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
