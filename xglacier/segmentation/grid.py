"""The grid of a scene cube as segmentation needs it: its y/x Dask chunks, its bounds in messages."""

from __future__ import annotations

from collections.abc import Sequence

import dask.array as dsa
import numpy as np
import xarray as xr

__all__ = ["format_bounds", "pixel_step", "yx_chunks"]


def yx_chunks(obj: xr.DataArray | xr.Dataset) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The ``(y, x)`` chunks of the first Dask-backed ``(..., y, x)`` array of ``obj``; None if none is.

    Products computed on the grid of ``obj`` (a DEM, a label map) take these chunks so
    that they line up block for block with it.

    Examples
    --------
    >>> da = xr.DataArray(np.zeros((4, 6)), dims=("y", "x"))
    >>> yx_chunks(da) is None, yx_chunks(da.chunk({"x": 4}))
    (True, ((4,), (4, 2)))
    """
    arrays = [obj] if isinstance(obj, xr.DataArray) else list(obj.data_vars.values())
    for a in arrays:
        if isinstance(a.data, dsa.Array) and "y" in a.dims and "x" in a.dims:
            return a.chunks[a.get_axis_num("y")], a.chunks[a.get_axis_num("x")]
    return None


def pixel_step(coord: np.ndarray) -> float:
    """Mean pixel spacing of a coordinate, signed (1 for a single pixel).

    Examples
    --------
    >>> pixel_step(np.array([45.0, 15.0, -15.0]))
    -30.0
    """
    return float(coord[-1] - coord[0]) / (coord.size - 1) if coord.size > 1 else 1.0


def format_bounds(bounds: Sequence[float]) -> str:
    """Bounds as ``(left, bottom, right, top)`` with six significant digits, for messages.

    Examples
    --------
    >>> format_bounds((500000.0, 5199600.0, 500600.0, 5200000.0))
    '(500000, 5.1996e+06, 500600, 5.2e+06)'
    """
    return "(" + ", ".join(f"{b:.6g}" for b in bounds) + ")"
