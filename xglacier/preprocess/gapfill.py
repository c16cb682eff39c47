"""Gap filling with the paper's 5x5 weighted average, in passes, lazily over Dask."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Literal

import dask.array as dsa
import numpy as np
import xarray as xr

from .._attrs import with_history
from .._validate import (
    check_bands,
    check_choice,
    check_int,
    check_reflectance_band,
    check_spatial,
    check_time,
    is_reflectance_band,
    renamed_keywords,
)
from ..errors import EmptySceneError, InputError, ParameterError
from .kernels import fill_gaps_stack, paper_weights


def _fill_block(block: np.ndarray, weights: np.ndarray, max_iter: int) -> np.ndarray:
    shape = block.shape
    flat = np.ascontiguousarray(block.reshape((-1, *shape[-2:])))
    out, _ = fill_gaps_stack(flat, weights, max_iter)
    return out.reshape(shape)


def _raise_if_empty(block, valid, labels, name, block_info=None):
    if np.any(valid == 0):
        loc = block_info[0]["array-location"][0] if block.ndim > 2 else (0, 1)
        idx = np.flatnonzero(valid.reshape(-1) == 0)
        raise EmptySceneError(_empty_message(name, [labels[loc[0] + i] for i in idx]))
    return block


def _empty_message(name, which) -> str:
    return (
        f"fill_gaps: variable {name!r} has scenes with no valid pixel at "
        f"{[str(w) for w in which[:5]]}; drop them first (filter_scenes) "
        "or pass empty='keep' to leave them NaN"
    )


def _fill_array(
    da: xr.DataArray, weights: np.ndarray, max_iter: int | None, empty: str
) -> tuple[np.ndarray | dsa.Array, xr.Variable]:
    """Filled data of ``da`` and the gaps left per frame (Dask in, Dask out)."""
    check_spatial(da, what=f"fill_gaps: variable {da.name!r}")
    # integer DNs cannot hold NaN, so there would be nothing to fill, and a nodata value
    # left in float data (-9999) would be averaged into the gap as if it were a value
    da = check_reflectance_band("fill_gaps", da)
    if not np.issubdtype(da.dtype, np.floating):
        raise InputError(f"fill_gaps: variable {da.name!r} has dtype {da.dtype}; expected float")
    radius = weights.shape[0] // 2
    ny, nx = da.shape[-2:]
    unlimited = max_iter is None
    iters = -1 if unlimited else int(max_iter)
    depth = None if unlimited else radius * iters
    frames = da.shape[0] if da.ndim > 2 else 1
    labels = da["time"].values if "time" in da.dims else np.arange(frames)

    data = da.data
    if isinstance(data, dsa.Array):
        ay, ax = da.ndim - 2, da.ndim - 1
        # Pass k reads pixels up to k * radius away, so `depth` is exactly enough. An
        # axis the passes can cross entirely is processed whole instead of overlapped.
        whole = {a: depth is None or depth >= n for a, n in ((ay, ny), (ax, nx))}
        data = data.rechunk({a: -1 for a, w in whole.items() if w})
        if all(whole.values()):
            filled = data.map_blocks(_fill_block, weights, iters, dtype=data.dtype)
        else:
            # no padding at the frame edges, where the kernel has no neighbours either
            filled = data.map_overlap(
                partial(_fill_block, weights=weights, max_iter=iters),
                depth={**{i: 0 for i in range(ay)}, **{a: 0 if w else depth for a, w in whole.items()}},
                boundary="none", dtype=data.dtype, allow_rechunk=True,
            )
        # counted before the empty-scene check is attached: counting after it made dask
        # 2026.8 drop keys of the check when a DataArray with both was computed
        left = dsa.isnan(filled).sum(axis=(-2, -1))
        if empty == "raise":
            valid = (~dsa.isnan(data)).sum(axis=(-2, -1), keepdims=True)
            filled = filled.map_blocks(
                _raise_if_empty, valid, labels, da.name, dtype=filled.dtype
            )
    else:
        arr = np.asarray(data)
        if empty == "raise":
            valid = (~np.isnan(arr)).reshape(frames, -1).sum(axis=1)
            if np.any(valid == 0):
                raise EmptySceneError(
                    _empty_message(da.name, [labels[i] for i in np.flatnonzero(valid == 0)])
                )
        filled_flat, left = fill_gaps_stack(
            np.ascontiguousarray(arr.reshape(frames, ny, nx)), weights, iters
        )
        filled = filled_flat.reshape(arr.shape)
        left = left.reshape(arr.shape[:-2])
    return filled, xr.Variable(da.dims[:-2], left)


@renamed_keywords(variables="bands")
def fill_gaps(
    obj: xr.Dataset | xr.DataArray,
    *,
    max_iter: int | None = 16,
    weights: Sequence[float] = (1, 2, 3, 2, 1),
    bands: str | Sequence[str] | None = None,
    empty: Literal["raise", "keep"] = "raise",
) -> xr.Dataset | xr.DataArray:
    """Fill NaN gaps with the paper's 5x5 weighted average, applied in passes.

    Each pass replaces every NaN pixel that has at least one valid neighbour in the
    5x5 window by the mean of the valid neighbours weighted by the outer product of
    ``weights`` (1, 2, 3, 2, 1); pixels that were valid never change. Passes repeat
    until no gap is left or ``max_iter`` passes are done. Gaps deeper than
    ``2 * max_iter`` pixels from any valid pixel stay NaN.

    On Dask input this is a Numba kernel run through :func:`dask.array.map_overlap`
    with a halo of exactly ``2 * max_iter`` pixels (``max_iter=None``: whole frames),
    so the result does not depend on the chunking.

    Parameters
    ----------
    obj
        Dataset (every float variable with ``y, x`` dims is filled) or DataArray.
        Reflectance bands (``blue`` ... ``swir22``) must be scaled reflectance with nodata
        as NaN: integer digital numbers raise :class:`ReflectanceRangeError` at once (they
        cannot hold a gap), float values outside the reflectance range (digital numbers, a
        nodata value such as -9999) at compute time for Dask input.
    max_iter
        Largest number of passes; ``None`` for no limit (frames are processed whole).
    weights
        1-D profile whose outer product gives the window weights (odd length).
    bands
        Dataset variables to fill (one name or several); default every float variable
        with ``y, x`` dims, and every reflectance band (so that integer ones are refused).
        (``variables=`` is the deprecated old name.)
    empty
        ``"raise"``: a scene with no valid pixel raises :class:`EmptySceneError`
        (at compute time for Dask input); ``"keep"``: it stays NaN.

    Returns
    -------
    xarray.Dataset or xarray.DataArray
        Same type as ``obj``. The gaps left per scene are in a coordinate ``unfilled``
        (``unfilled_<name>`` per Dataset variable), lazy for Dask input; for NumPy input
        the totals are also in ``attrs["gaps_unfilled"]``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> a = xr.DataArray(np.array([[1.0, np.nan, 3.0]]), dims=("y", "x"))
    >>> fill_gaps(a).values.tolist()
    [[1.0, 2.0, 3.0]]
    """
    if not isinstance(obj, (xr.Dataset, xr.DataArray)):
        raise InputError(f"fill_gaps: expected a Dataset or DataArray, got {type(obj).__name__}")
    max_iter = check_int("fill_gaps", "max_iter", max_iter, low=1, allow_none=True)
    empty = check_choice("fill_gaps", "empty", empty, ("raise", "keep"))
    try:
        prof = np.asarray(weights, dtype=float)
    except (TypeError, ValueError) as err:
        raise ParameterError(f"fill_gaps: weights={weights!r} are not numbers") from err
    if (prof.ndim != 1 or prof.size % 2 == 0 or not np.all(np.isfinite(prof))
            or np.any(prof < 0) or prof.sum() <= 0):
        raise ParameterError(
            f"fill_gaps: weights={weights!r}; expected an odd-length 1-D profile of "
            "non-negative numbers"
        )
    w = paper_weights(tuple(prof))
    check_time(obj, required=False)
    params = dict(max_iter=max_iter, weights=prof.tolist(), empty=empty)

    if isinstance(obj, xr.DataArray):
        if bands is not None:
            raise ParameterError("fill_gaps: bands= is for Datasets; a DataArray is filled whole")
        filled, left = _fill_array(obj, w, max_iter, empty)
        attrs = with_history(obj.attrs, "fill_gaps", **params)
        if not isinstance(left.data, dsa.Array):
            attrs["gaps_unfilled"] = int(left.values.sum())
        # direct construction: assign_coords costs more than the kernel on small frames
        out = xr.DataArray(filled, dims=obj.dims, coords={**obj.coords, "unfilled": left},
                           name=obj.name, attrs=attrs)
        out.encoding = dict(obj.encoding)
        return out

    default = [
        n for n, v in getattr(obj, "data_vars", {}).items()
        if {"y", "x"} <= set(v.dims) and (np.issubdtype(v.dtype, np.floating) or is_reflectance_band(v))
    ]
    # a Dataset without float (y, x) variables has nothing to fill, which is not an error
    names = check_bands("fill_gaps", obj, bands, default=default) if bands is not None or default else []
    out = obj.copy()
    totals = {}
    for name in names:
        filled, left = _fill_array(obj[name], w, max_iter, empty)
        out[name] = obj[name].copy(data=filled)
        out.coords[f"unfilled_{name}"] = left
        if not isinstance(left.data, dsa.Array):
            totals[name] = int(left.values.sum())
    if totals:
        out.attrs["gaps_unfilled"] = int(sum(totals.values()))
    out.attrs = with_history(out.attrs, "fill_gaps", **params)
    return out
