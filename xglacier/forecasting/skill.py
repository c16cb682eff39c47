"""Skill against a reference forecast, and bootstrap intervals that respect spatial correlation.

:func:`skill_map` gives, per pixel, ``1 - MSE / MSE_reference`` over the forecast frames
(where a model beats seasonal persistence, say). :func:`bootstrap_means` resamples whole
groups (the spatial blocks of :func:`pixel_blocks`), which
:func:`~xglacier.forecasting.evaluate.evaluate` uses for its confidence intervals:
overlapping patches share pixels, so resampling them one by one treats correlated
samples as independent and gives intervals that are too narrow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .._attrs import georeference, with_history
from .._validate import check_int, check_spatial
from ..errors import DimensionError, GridMismatchError, InputError, TimeAxisError

__all__ = ["bootstrap_means", "pixel_blocks", "skill_map"]


def pixel_blocks(shape: tuple[int, int], block: int) -> tuple[np.ndarray, int]:
    """Block number of every pixel of a ``shape`` grid cut into ``block`` x ``block`` squares.

    Returns the ``(rows, cols)`` array of block numbers (row-major over the blocks) and the
    number of blocks; blocks at the right and bottom edges may be smaller.

    Examples
    --------
    >>> cells, k = pixel_blocks((3, 5), 2)
    >>> cells.tolist(), k
    ([[0, 0, 1, 1, 2], [0, 0, 1, 1, 2], [3, 3, 4, 4, 5]], 6)
    """
    ny, nx = shape
    per_row = -(-nx // block)
    rows, cols = np.mgrid[0:ny, 0:nx]
    return (rows // block) * per_row + cols // block, (-(-ny // block)) * per_row


def bootstrap_means(sums: np.ndarray, sizes: np.ndarray, n_boot: int, seed: int,
                    chunk_elems: int = 1 << 22) -> np.ndarray:
    """Means of ``n_boot`` bootstrap resamples of groups given by their sums and sizes.

    ``sums`` is ``(K, C)``: for each of K groups (spatial blocks, or single samples) the
    sum of the values of its members, in C columns; ``sizes`` ``(K,)`` the number (or
    weight) of its members. A resample draws K groups with replacement; its mean is the
    sum of the drawn groups' sums over the sum of their sizes. Every column is resampled
    with the same draws (paired: models and leads compared on the same resamples). Draws
    become per-group counts in chunks, so a resample is one matrix product and memory
    stays bounded. With groups of one member each this is the ordinary bootstrap.

    Examples
    --------
    >>> boot = bootstrap_means(np.array([[1.0], [5.0]]), np.array([1.0, 1.0]), 1000, seed=0)
    >>> sorted(np.unique(boot).tolist())
    [1.0, 3.0, 5.0]
    """
    k = sums.shape[0]
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, sums.shape[1]))
    step = max(1, chunk_elems // k)
    for start in range(0, n_boot, step):
        b = min(step, n_boot - start)
        draws = rng.integers(0, k, size=(b, k))
        counts = np.bincount((draws + k * np.arange(b)[:, None]).ravel(), minlength=b * k)
        counts = counts.reshape(b, k).astype(np.float64)
        out[start:start + b] = (counts @ sums) / (counts @ sizes)[:, None]
    return out


def _on_grid(func: str, name: str, da: xr.DataArray, like: xr.DataArray) -> xr.DataArray:
    """``da`` with the rows and columns of ``like`` in ``like``'s order, or a clear error."""
    check_spatial(da, f"{func}: {name}")
    for dim in ("y", "x"):
        if (dim in da.coords) != (dim in like.coords):
            # which way up is the bare one? matching by position could mirror it silently
            has, lacks = (name, "the prediction") if dim in da.coords else ("the prediction", name)
            raise GridMismatchError(f"{func}: {lacks} has no {dim} coordinate but {has} has one; its pixels "
                                    f"cannot be matched; assign the same {dim} coordinate to every input")
        if dim not in da.coords:
            if da.sizes[dim] != like.sizes[dim]:
                raise GridMismatchError(f"{func}: {name} has {da.sizes[dim]} {dim} pixels, the prediction "
                                        f"{like.sizes[dim]}")
            continue
        a, b = da[dim].values, like[dim].values
        if a.shape != b.shape or not np.array_equal(np.sort(a), np.sort(b)):
            raise GridMismatchError(
                f"{func}: the {dim} coordinates of {name} ({a[0]!r}..{a[-1]!r}, {a.size}) are not those "
                f"of the prediction ({b[0]!r}..{b[-1]!r}, {b.size}); put both on one grid first")
        if not np.array_equal(a, b):  # same pixels in the other order (y ascending/descending)
            da = da.sel({dim: b})
    return da


def skill_map(prediction: xr.DataArray, truth: xr.DataArray, reference: xr.DataArray, *,
              min_frames: int = 1) -> xr.DataArray:
    """Per-pixel skill ``1 - MSE(prediction) / MSE(reference)`` over the forecast frames.

    1 is a perfect forecast, 0 one as good as the reference, below 0 a worse one. Each
    input is ``(frame, y, x)``: frame ``k`` of the prediction, of the truth and of the
    reference are compared with one another (the frame dimension may be named
    differently, e.g. ``lead_time`` of a forecast and ``time`` of the observations).
    When both the prediction and the truth carry a ``time`` coordinate (a forecast's
    valid time), their times must be equal. The reference's times are its own: for
    seasonal persistence they are a year before the truth's.

    Rows and columns are matched by their coordinates, so inputs with ``y`` in opposite
    orders are compared pixel by pixel; the map has the prediction's grid and CRS.
    Frames where any input is NaN are left out of a pixel's sums; the skill is NaN
    where fewer than ``min_frames`` frames remain and where the reference has no error
    (the ratio is undefined there).

    Parameters
    ----------
    prediction, truth, reference
        ``(frame, y, x)`` DataArrays with the same number of frames, or ``(y, x)`` for
        one frame.
    min_frames
        Frames a pixel needs for a skill value.

    Returns
    -------
    xarray.DataArray
        ``skill`` on ``(y, x)``, float64, with ``frames`` (the frames used per pixel) as
        a coordinate.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> truth = xr.DataArray(np.ones((2, 1, 2)), dims=("time", "y", "x"),
    ...                      coords={"y": [0.0], "x": [0.0, 1.0]})
    >>> pred = truth + xr.DataArray([[[0.0, 1.0]], [[0.0, 1.0]]], dims=("time", "y", "x"))
    >>> ref = truth + 2.0
    >>> skill_map(pred, truth, ref).values.tolist()
    [[1.0, 0.75]]
    """
    func = "skill_map"
    min_frames = check_int(func, "min_frames", min_frames, low=1)
    arrays = {"prediction": prediction, "truth": truth, "reference": reference}
    for name, da in arrays.items():
        if not isinstance(da, xr.DataArray):
            raise InputError(f"{func}: {name} is a {type(da).__name__}; expected an xarray.DataArray")
        if da.ndim not in (2, 3):
            raise DimensionError(f"{func}: {name} has dims {da.dims}; expected (frame, y, x) or (y, x)")
        t = da.coords.get("time")
        order = pd.Index(t.values) if t is not None and t.ndim == 1 else None
        if da.ndim == 3 and order is not None and t.dims == da.dims[:1] and not (
                order.is_monotonic_increasing and order.is_unique):
            # frames are matched by position: one input out of order compares other dates
            raise TimeAxisError(f"{func}: coordinate 'time' of {name} is not sorted (or repeats a time); "
                                "call .sortby('time') first")
    frames = {name: da.sizes[da.dims[0]] if da.ndim == 3 else 1 for name, da in arrays.items()}
    if len(set(frames.values())) != 1:
        raise DimensionError(f"{func}: the inputs have {frames} frames; expected as many in each")
    p_time, t_time = prediction.coords.get("time"), truth.coords.get("time")
    if p_time is not None and t_time is not None and not np.array_equal(
            np.atleast_1d(p_time.values), np.atleast_1d(t_time.values)):
        raise GridMismatchError(f"{func}: the prediction's valid times {np.atleast_1d(p_time.values)} are "
                                f"not the truth's {np.atleast_1d(t_time.values)}")
    like = prediction
    crs = {name: da.rio.crs for name, da in arrays.items() if da.rio.crs is not None}
    for name, c in crs.items():
        first, c0 = next(iter(crs.items()))
        if c != c0:
            raise GridMismatchError(f"{func}: {name} has CRS {c}, {first} {c0}; put every input on one grid "
                                    "first (the same coordinates in another CRS are another place)")
    data = []
    for name, da in arrays.items():
        da = _on_grid(func, name, da, like)
        if da.ndim == 2:
            da = da.expand_dims("frame")
        # positional frames: drop the frame coordinates so that xarray does not align them
        data.append(xr.DataArray(da.data, dims=("frame", "y", "x")).astype(np.float64))
    p, t, r = data
    valid = p.notnull() & t.notnull() & r.notnull()
    n = valid.sum("frame")
    err = ((p - t) ** 2).where(valid).sum("frame")
    err_ref = ((r - t) ** 2).where(valid).sum("frame")
    skill = (1 - err / err_ref.where(err_ref > 0)).where(n >= min_frames)
    out = skill.assign_coords({d: like[d] for d in ("y", "x") if d in like.coords})
    out = out.assign_coords(frames=n.astype(np.int32)).rename("skill")
    out.attrs = with_history({"long_name": "skill score 1 - MSE / MSE of the reference, per pixel",
                              "units": "1"}, "skill_map", source=prediction, min_frames=min_frames)
    return georeference(out, like)
