"""Patch predictions put back on the grid: :func:`assemble` and its blend weights.

The inverse of :func:`xglacier.patches`: every prediction is added to the pixels its patch
covers, weighted, and divided by the summed weights, by the Numba kernel that
:func:`xglacier.forecast` uses too.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import xarray as xr

from .._orient import view_flips
from .._validate import check_choice
from ..errors import DimensionError, InputError
from .kernels import scatter_patches
from .patches import PatchPlan

__all__ = ["assemble", "patch_weight"]


def patch_weight(size: int, weight: Literal["uniform", "hann"]) -> np.ndarray:
    """``(size, size)`` float64 blending weight of one patch (:func:`assemble`, ``forecast``).

    Examples
    --------
    >>> patch_weight(3, "hann").round(2).tolist()
    [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]]
    """
    if weight == "uniform":
        return np.ones((size, size))
    h = np.hanning(size + 2)[1:-1]  # strictly positive: every covered pixel gets weight
    return np.outer(h, h)


def assemble(
    predictions: np.ndarray,
    origins: np.ndarray | PatchPlan,
    *,
    like: xr.DataArray,
    weight: Literal["uniform", "hann"] = "uniform",
    dim: str = "lead_time",
) -> xr.DataArray:
    """Put patch predictions back on the grid, averaging where patches overlap.

    Parameters
    ----------
    predictions
        ``(k, steps, size, size)`` array (or torch tensor), one per patch.
    origins
        ``(k, 2)`` patch origins ``(y0, x0)`` in ``like`` as it is, or a :class:`PatchPlan`
        (its ``samples`` index the north-up, east-right view: pass the plan itself).
    like
        DataArray with the target grid (``y``, ``x`` coordinates and CRS are copied). With a
        :class:`PatchPlan` (whose origins index the north-up, east-right cube), a ``like``
        with ``y`` ascending or ``x`` descending gets the result in its own order.
    weight
        ``"uniform"`` averages overlapping predictions; ``"hann"`` weights each patch by a
        smooth window that is highest at its centre (its edges are least reliable).
    dim
        Name of the leading output dimension.

    Returns
    -------
    xarray.DataArray
        ``(dim, y, x)``; NaN where no patch reaches.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from xglacier.forecasting.patches import positions
    >>> scene = xr.DataArray(np.arange(100.0).reshape(10, 10), dims=("y", "x"))
    >>> yx = np.array([(y, x) for y in positions(10, 4, 3) for x in positions(10, 4, 3)])
    >>> preds = np.stack([scene.values[y:y + 4, x:x + 4][None] for y, x in yx])
    >>> bool((assemble(preds, yx, like=scene)[0] == scene).all())
    True
    """
    pred = np.asarray(predictions.detach().cpu().numpy() if hasattr(predictions, "detach")
                      else predictions)
    if pred.ndim != 4 or pred.shape[2] != pred.shape[3]:
        raise DimensionError(
            f"assemble: predictions have shape {pred.shape}; expected (k, steps, size, size)"
        )
    yx = origins.samples[:, 1:] if isinstance(origins, PatchPlan) else np.asarray(origins, np.int64)
    if yx.shape != (pred.shape[0], 2):
        raise DimensionError(f"assemble: {yx.shape[0]} origins for {pred.shape[0]} predictions")
    ny, nx = like.sizes["y"], like.sizes["x"]
    size = pred.shape[-1]
    if yx.size and (yx.min() < 0 or yx[:, 0].max() + size > ny or yx[:, 1].max() + size > nx):
        raise InputError(f"assemble: a patch of size {size} reaches outside the {ny} x {nx} grid")
    w = patch_weight(size, check_choice("assemble", "weight", weight, ("uniform", "hann")))
    num = np.zeros((pred.shape[1], ny, nx))
    den = np.zeros((ny, nx))
    scatter_patches(np.ascontiguousarray(pred, dtype=np.float32), yx, w, num, den)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / den, np.nan).astype(np.float32)
    if isinstance(origins, PatchPlan):  # a plan indexes the north-up, east-right cube (PatchSet.da)
        out = out[(slice(None), *(view_flips(like).get(d, slice(None)) for d in ("y", "x")))]
    coords = {k: v for k, v in like.coords.items() if set(v.dims) <= {"y", "x"}}
    res = xr.DataArray(out, dims=(dim, "y", "x"), coords=coords)
    if "grid_mapping" in like.encoding:
        res.encoding["grid_mapping"] = like.encoding["grid_mapping"]
    return res
