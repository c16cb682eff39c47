"""``apply_warps`` (resample every band of every scene with its warp) and ``align_ecc``
(estimate, then apply): the Dask/xarray wiring around :mod:`.frames`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import dask.array as dsa
import numpy as np
import xarray as xr

from ..._attrs import with_history
from ..._validate import check_choice, check_reflectance_band, renamed_keywords
from ...errors import DimensionError, InputError, MissingBandError, TimeAxisError
from .estimate import as_dask, estimate
from .frames import INTERP, warp_block
from .options import ECCOptions, resolve_options

_WARP_DIMS = ("time", "warp_row", "warp_col")


def _warp_array(func: str, obj: xr.Dataset | xr.DataArray, warps: Any) -> xr.DataArray:
    """The (time, 3, 3) warps of ``warps``, checked against the scenes of ``obj``."""
    if not isinstance(obj, (xr.Dataset, xr.DataArray)):
        raise InputError(f"{func}: expected a Dataset or DataArray cube, got {type(obj).__name__}")
    if "time" not in obj.dims:
        raise DimensionError(
            f"{func}: the cube has dimensions {tuple(obj.dims)}; expected a 'time' dimension"
        )
    if isinstance(warps, xr.Dataset):
        if "ecc_warp" not in warps.variables:
            raise MissingBandError(
                f"{func}: warps has no 'ecc_warp' variable (variables present: "
                f"{sorted(map(str, warps.variables))}); expected the output of estimate_ecc"
            )
        w = warps["ecc_warp"]
    elif isinstance(warps, xr.DataArray):
        w = warps
    else:
        raise InputError(f"{func}: warps is a {type(warps).__name__}; expected the Dataset of "
                         "estimate_ecc or a (time, warp_row, warp_col) DataArray")
    if w.dims != _WARP_DIMS or w.shape[1:] != (3, 3) or w.sizes["time"] != obj.sizes["time"]:
        raise DimensionError(
            f"{func}: warps have dims {w.dims}, shape {w.shape}; expected {_WARP_DIMS} with "
            f"shape ({obj.sizes['time']}, 3, 3), one 3x3 warp per scene of the cube"
        )
    if not (np.issubdtype(w.dtype, np.floating) or np.issubdtype(w.dtype, np.integer)):
        raise InputError(f"{func}: warps have dtype {w.dtype}; expected real numbers")
    if "time" in w.coords and "time" in obj.coords:
        mine, theirs = obj.indexes["time"], w.indexes["time"]
        if not mine.equals(theirs):
            k = int(np.argmax(np.asarray(mine != theirs)))
            raise TimeAxisError(
                f"{func}: the warps' time coordinate differs from the cube's (first at scene {k}: "
                f"{theirs[k]} for the warps, {mine[k]} in the cube); expected the warps "
                "estimated on these scenes"
            )
    return w


def _warp_variable(func: str, da: xr.DataArray, params: dsa.Array, interpolation: str,
                   eager: bool) -> xr.DataArray:
    # integer DN bands would be resampled by nearest neighbour with 0 outside the frame, a
    # valid-looking value; a nodata value in float data would be interpolated into its
    # neighbours
    da = check_reflectance_band(func, da)
    is_float = np.issubdtype(da.dtype, np.floating)
    interp = INTERP[interpolation] if is_float else INTERP["nearest"]
    fill = np.nan if is_float else (1 if da.name == "qa_pixel" else 0)
    data = as_dask(da).rechunk({0: 1, 1: -1, 2: -1})
    out = dsa.map_blocks(warp_block, data, params, interp, fill, dtype=da.dtype)
    if eager:
        out = out.compute(scheduler="synchronous")
    return da.copy(data=out)


def _apply(func: str, obj: xr.Dataset | xr.DataArray, warps: Any, interpolation: str
           ) -> xr.Dataset | xr.DataArray:
    interpolation = check_choice(func, "interpolation", interpolation, INTERP)
    w = _warp_array(func, obj, warps)
    params = as_dask(w).reshape((-1, 1, 9)).rechunk({0: 1, 1: -1, 2: -1})
    # NumPy in, NumPy out: computed at once when neither the cube nor the warps are lazy
    lazy_w = isinstance(w.data, dsa.Array)
    variables = {obj.name: obj} if isinstance(obj, xr.DataArray) else obj.data_vars
    names = [n for n, v in variables.items() if {"time", "y", "x"} <= set(v.dims)]
    for name in names:
        if variables[name].dims != ("time", "y", "x"):
            raise DimensionError(f"{func}: variable {name!r} has dimensions {variables[name].dims}; "
                                 "expected ('time', 'y', 'x')")
    if not names:
        raise DimensionError(f"{func}: no variable with dimensions ('time', 'y', 'x') to warp "
                             f"(dimensions {tuple(obj.dims)})")
    warped = {n: _warp_variable(func, variables[n], params, interpolation,
                                not lazy_w and not isinstance(variables[n].data, dsa.Array))
              for n in names}
    if isinstance(obj, xr.DataArray):
        return warped[obj.name]
    out = obj.copy()
    for name, da in warped.items():
        out[name] = da
    return out


def apply_warps(
    obj: xr.Dataset | xr.DataArray,
    warps: xr.Dataset | xr.DataArray,
    *,
    interpolation: Literal["nearest", "linear", "cubic"] = "cubic",
) -> xr.Dataset | xr.DataArray:
    """Resample every (time, y, x) variable of ``obj`` with one warp per scene.

    Float variables are interpolated (``interpolation``) and are NaN exactly where the
    footprint of a pixel's source position leaves the frame or touches a gap: the source
    pixel for ``"nearest"``, the 2x2 pixels around it for ``"linear"`` and ``"cubic"`` (a
    gap reaches 0 or 1 pixel, whatever the kernel). Integer variables (``qa_pixel``) use
    nearest neighbour and get the Landsat fill value 1 (``qa_pixel``) or 0 outside the
    frame. Variables without ``time``, ``y`` and ``x`` are kept as they are. Frames are
    processed whole in y/x (rechunked internally, one task per scene); lazy for Dask input.

    Parameters
    ----------
    obj
        Cube ``(time, y, x)``: a Dataset or a DataArray. Reflectance bands (``blue`` ...
        ``swir22``) must be scaled reflectance with nodata as NaN: integer digital numbers
        raise :class:`ReflectanceRangeError` at once, float values outside the reflectance
        range (digital numbers, -9999) at compute time for Dask input.
    warps
        The output of :func:`estimate_ecc` (its ``ecc_warp``; an aligned cube's
        ``ecc_warp`` coordinate works too), or a ``(time, warp_row, warp_col)`` DataArray of
        3x3 warps mapping template pixel ``(col, row, 1)`` to scene pixel, one per scene of
        ``obj`` (same time stamps where both have a ``time`` coordinate).
    interpolation
        ``"nearest"``, ``"linear"`` or ``"cubic"`` for float variables.

    Examples
    --------
    >>> import xglacier
    >>> cube, _ = xglacier.synthetic_cube(shape=(64, 64), end="2020-03-01")
    >>> est = xglacier.estimate_ecc(cube)
    >>> apply_warps(cube, est, interpolation="linear").green.dims
    ('time', 'y', 'x')
    """
    return _apply("apply_warps", obj, warps, interpolation)


@renamed_keywords(band="bands")
def align_ecc(
    obj: xr.Dataset | xr.DataArray,
    *,
    bands: str | Sequence[str] | None = None,
    reference: str | int | Any = "median",
    interpolation: Literal["nearest", "linear", "cubic"] = "cubic",
    options: ECCOptions | None = None,
    **overrides: Any,
) -> xr.Dataset | xr.DataArray:
    """Co-register every scene to a reference with ECC maximisation (OpenCV).

    For each scene, the warp that maximises the enhanced correlation coefficient between
    the scene and a template is estimated over pixels valid in both (NaN and cloud pixels
    are masked out, not treated as data); all bands of the scene are then resampled with
    that warp, and pixels that come from outside the frame become NaN. This is
    :func:`estimate_ecc` followed by :func:`apply_warps`.

    Parameters
    ----------
    obj
        Cube ``(time, y, x)``: a Dataset (all its ``(time, y, x)`` variables are warped) or
        a DataArray. Mask clouds first so that they do not steer the estimate.
        Reflectance bands must be scaled reflectance with nodata as NaN, as for
        :func:`apply_warps` (the frames are normalised, but a nodata value would be taken
        for texture).
    bands
        Dataset band(s) used for the estimate: one name, or up to three estimated jointly.
        Default: the first three of nir08, swir16, red, green, blue, swir22 present.
        (``band=`` is the deprecated old name.)
    reference
        Template: ``"median"`` or ``"mean"`` of the stack (lazy reductions), ``"best"``
        (the scene with the most valid pixels), a scene index, a date (nearest scene), or a
        ``(y, x)`` DataArray. With fewer than ``few_scenes`` scenes (see
        :class:`ECCOptions`), ``"median"`` starts from ``"best"`` instead.
    interpolation
        Resampling of float variables (integer ones use nearest neighbour).
    options
        How warps are estimated: an :class:`ECCOptions` (default ``ECCOptions()``: a
        translation, median template rebuilt twice, high-pass 1.5 px, phase-correlation
        first step; its documentation describes every field).
    **overrides
        Any field of :class:`ECCOptions` (``motion="affine"``, ``refine=0``, ...), which
        overrides that field of ``options``.

    Returns
    -------
    xarray.Dataset or xarray.DataArray
        Same type as ``obj``, lazy, with per-scene coordinates ``ecc_correlation``,
        ``ecc_converged``, ``ecc_shift_x`` and ``ecc_shift_y`` (and, on a Dataset, ``ecc_warp``
        with dims ``time, warp_row, warp_col``). A scene that cannot be aligned (OpenCV does not
        converge, too few valid pixels, correlation or shift out of bounds) is kept unwarped
        with ``ecc_converged=False``; an :class:`AlignmentWarning` with the count is issued once
        when the coordinate is computed. Nothing about one scene stops the others.

    Notes
    -----
    Work runs through Dask, one task per scene on whole frames (``y`` and ``x`` are
    rechunked to one chunk internally); the template is a lazy reduction over time. With
    ``refine > 0`` the estimation band(s) are used in every round: persist the cube first if
    its source is expensive to read.

    Examples
    --------
    >>> import xglacier
    >>> cube, truth = xglacier.synthetic_cube(shape=(64, 64), end="2020-03-01", max_shift=2,
    ...                                       cloud_scale=0)
    >>> aligned = cube.glacier.mask_clouds().glacier.align_ecc()
    >>> aligned.ecc_shift_x.dims
    ('time',)
    >>> affine = align_ecc(cube, bands=["nir08", "swir16"], options=ECCOptions(motion="affine"))
    >>> affine.ecc_warp.attrs["motion"]
    'affine'
    """
    opts = resolve_options("align_ecc", options, overrides,
                           ("bands", "reference", "interpolation", "options"))
    interpolation = check_choice("align_ecc", "interpolation", interpolation, INTERP)
    est, used = estimate("align_ecc", obj, bands, reference, opts)
    out = _apply("align_ecc", obj, est, interpolation)
    keep = ["ecc_correlation", "ecc_converged", "ecc_shift_x", "ecc_shift_y"]
    if isinstance(obj, xr.Dataset):
        keep.append("ecc_warp")
    out = out.assign_coords({k: est[k] for k in keep})
    out.attrs = with_history(out.attrs, "align_ecc", source=obj, interpolation=interpolation, **used)
    return out
