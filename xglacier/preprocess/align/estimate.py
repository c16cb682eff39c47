"""``estimate_ecc``: one ECC warp per scene against a template, lazily.

The Dask/xarray wiring: which bands, the template, the rounds of estimates on whole
frames (one task per scene) and the per-scene result. The numerics are in :mod:`.frames`.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from typing import Any

import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

from ..._attrs import with_history
from ..._validate import (
    check_bands,
    check_int,
    check_reflectance_band,
    check_spatial,
    check_time,
    renamed_keywords,
)
from ...errors import AlignmentWarning, DimensionError, InputError, MissingBandError, ParameterError
from .frames import (
    COARSE_ITERATIONS,
    INTERP,
    NPAR,
    best_frame,
    downsample_block,
    estimate_block,
    nanreduce_block,
    normalise_block,
    warp_stack_block,
)
from .options import ECCOptions, as_dict, resolve_options

#: Bands tried, in order, when ``bands`` is not given (texture-rich ones first).
DEFAULT_ALIGN_BANDS = ("nir08", "swir16", "red", "green", "blue", "swir22")


def as_dask(a: xr.DataArray) -> dsa.Array:
    """The data of ``a`` as a Dask array (one chunk when it was in memory)."""
    return a.data if isinstance(a.data, dsa.Array) else dsa.from_array(np.asarray(a.data), chunks=-1)


def _band_names(func: str, obj: xr.Dataset, bands: Any) -> list[Hashable]:
    if bands is None:
        names = [b for b in DEFAULT_ALIGN_BANDS if b in obj.data_vars][:3]
        if not names:
            raise MissingBandError(
                f"{func}: none of the bands {list(DEFAULT_ALIGN_BANDS)} is in the Dataset "
                f"(variables: {sorted(map(str, obj.data_vars))}); pass bands=..."
            )
        return names
    names = check_bands(func, obj, bands)
    if not 1 <= len(names) <= 3:
        raise ParameterError(f"{func}: bands={bands!r}; expected one to three band names")
    return names


def _channels(func: str, obj: xr.Dataset | xr.DataArray, bands: Any) -> tuple[xr.DataArray, list]:
    """The (time, channel, y, x) stack used to estimate warps, and its band names."""
    if isinstance(obj, xr.DataArray):
        if bands is not None:
            raise ParameterError(f"{func}: bands= is for Datasets; a DataArray is its own band")
        names, arrays = [str(obj.name)], [obj]
    else:
        names = _band_names(func, obj, bands)
        arrays = [obj[n] for n in names]
    for a in arrays:
        check_spatial(a, what=f"{func}: variable {a.name!r}")
        if a.dims != ("time", "y", "x"):
            raise DimensionError(
                f"{func}: variable {a.name!r} has dimensions {a.dims}; expected ('time', 'y', 'x')"
            )
    # Frames are normalised, so the scale of a band does not matter, but a nodata value
    # left in the data (-9999, or 0 in integer DNs) would be taken for terrain texture.
    arrays = [check_reflectance_band(func, a) for a in arrays]
    if len(names) == 2:
        names.append(names[1])  # OpenCV takes 1 or 3 channels
        arrays.append(arrays[1])
    stack = xr.concat([a.astype(np.float32) for a in arrays], dim="channel", coords="minimal",
                      compat="override", join="override").transpose("time", "channel", "y", "x")
    return stack, names


def _reduce_time(data: dsa.Array, how: str) -> dsa.Array:
    """Lazy NaN-ignoring median/mean over time, as one whole-frame (channel, y, x) chunk."""
    byp = data.rechunk({0: -1, 1: 1, 2: "auto", 3: "auto"})
    return byp.map_blocks(nanreduce_block, how, drop_axis=0, dtype=data.dtype).rechunk(-1)


def _downsampled(data: dsa.Array, factor: int) -> dsa.Array:
    _, _, ny, nx = data.shape
    return data.map_blocks(downsample_block, factor, dtype=data.dtype,
                           chunks=(*data.chunks[:2], (ny // factor,), (nx // factor,)))


def _template(func: str, stack: xr.DataArray, data: dsa.Array, reference: Any,
              highpass: float | None, factor: int = 1) -> dsa.Array:
    """Lazy (channel, y, x) template from normalised frames ``data`` (block-averaged by
    ``factor``, as a reference DataArray is too)."""
    if isinstance(reference, xr.DataArray):
        ref = reference
        if ref.dims != ("y", "x") or ref.shape != stack.shape[-2:]:
            raise DimensionError(
                f"{func}: reference DataArray has dims {ref.dims} and shape {ref.shape}; "
                f"expected ('y', 'x') and {stack.shape[-2:]}"
            )
        one = as_dask(ref.astype(np.float32))
        both = dsa.stack([one] * stack.sizes["channel"])[None].rechunk(-1)
        if factor > 1:
            both = _downsampled(both, factor)
        return both.map_blocks(normalise_block, highpass, dtype=np.float32)[0]
    if isinstance(reference, str) and reference == "best":
        frames = data.rechunk({0: -1})
        return frames.map_blocks(best_frame, drop_axis=0, dtype=data.dtype).rechunk(-1)
    if isinstance(reference, str) and reference in ("median", "mean"):
        return _reduce_time(data, reference)
    if isinstance(reference, (int, np.integer)) and not isinstance(reference, (bool, np.bool_)):
        n = stack.sizes["time"]  # a scene index, from the end when negative
        return data[check_int(func, "reference", reference, low=-n, high=n - 1)].rechunk(-1)
    try:
        when = pd.Timestamp(reference)
    except (TypeError, ValueError) as err:
        raise ParameterError(
            f"{func}: reference={reference!r}; expected 'median', 'mean', 'best', a scene index, "
            "a date or a (y, x) DataArray"
        ) from err
    k = int(stack.indexes["time"].get_indexer([when], method="nearest")[0])
    return data[k].rechunk(-1)


def _frame_opts(opts: ECCOptions, ny: int, nx: int) -> dict[str, Any]:
    """The options of one full-resolution estimate, as :func:`.frames.estimate_block` takes them."""
    return dict(motion=opts.motion, iterations=opts.iterations, eps=opts.eps,
                gauss_size=opts.gauss_size, coarse=opts.coarse, pyramid_levels=opts.pyramid_levels,
                max_shift=opts.max_shift, min_correlation=opts.min_correlation,
                min_valid=int(np.ceil(opts.min_valid * ny * nx)), factor=1)


def _rounds(data: dsa.Array, coarse_data: dsa.Array, template: dsa.Array, full: dict[str, Any],
            refine: int, factor: int) -> dsa.Array:
    """(time, 1, 1, NPAR) parameters after ``refine`` rounds on ``coarse_data`` and the last on
    ``data``, the template rebuilt from the aligned frames after each round but the last."""
    coarse = dict(full)
    if factor > 1:
        coarse.update(factor=factor, max_shift=full["max_shift"] / factor,
                      iterations=min(full["iterations"], COARSE_ITERATIONS),
                      min_valid=int(np.ceil(full["min_valid"] / factor**2)))
    rounds = [(coarse_data, coarse)] * refine + [(data, full)]
    out_chunks = (data.chunks[0], (1,), (1,), (NPAR,))
    params = None
    for rnd, (frames, opts) in enumerate(rounds):
        params = dsa.map_blocks(
            estimate_block, frames, template[None], params, opts, chunks=out_chunks, dtype=np.float64,
        )
        if rnd < refine:
            nxt, nxt_opts = rounds[rnd + 1]
            warped = dsa.map_blocks(warp_stack_block, nxt, params, INTERP["cubic"],
                                    nxt_opts["factor"], dtype=data.dtype)
            template = _reduce_time(warped, "median")
    return params


def _warn_block(converged: np.ndarray, times: np.ndarray, func: str) -> np.ndarray:
    bad = np.flatnonzero(~converged.astype(bool))
    if bad.size:
        warnings.warn(
            f"{func}: {bad.size} of {converged.size} scenes could not be aligned (no "
            f"convergence, too few valid pixels, correlation or shift out of bounds) and were "
            f"kept unwarped; see ecc_converged. First: {[str(times[i])[:19] for i in bad[:5]]}",
            AlignmentWarning, stacklevel=2,
        )
    return converged.astype(bool)


def _result(func: str, params: dsa.Array, time: xr.DataArray, motion: str) -> xr.Dataset:
    params = params[:, 0, 0, :]
    warp = params[:, :9].reshape((-1, 3, 3))
    converged = params[:, 10].rechunk(-1).map_blocks(_warn_block, time.values, func, dtype=bool)
    return xr.Dataset(
        {
            "ecc_warp": (("time", "warp_row", "warp_col"), warp, {
                "long_name": "ECC warp mapping template pixel (col, row, 1) to scene pixel",
                "motion": motion}),
            "ecc_correlation": ("time", params[:, 9], {
                "long_name": "enhanced correlation coefficient after alignment", "units": "1"}),
            "ecc_converged": ("time", converged, {
                "long_name": "scene aligned (False: kept unwarped)"}),
            "ecc_shift_x": ("time", params[:, 2], {
                "long_name": "scene displacement along columns", "units": "pixel"}),
            "ecc_shift_y": ("time", params[:, 5], {
                "long_name": "scene displacement along rows (southward)", "units": "pixel"}),
        },
        coords={"time": time},
    )


def estimate(func: str, obj: xr.Dataset | xr.DataArray, bands: Any, reference: Any,
             opts: ECCOptions) -> tuple[xr.Dataset, dict[str, Any]]:
    """The work of :func:`estimate_ecc` for ``func``: the warps, and the parameters that
    went into them (for the history line)."""
    if not isinstance(obj, (xr.Dataset, xr.DataArray)):
        raise InputError(f"{func}: expected a Dataset or DataArray cube, got {type(obj).__name__}")
    check_time(obj)
    stack, names = _channels(func, obj, bands)
    n = stack.sizes["time"]
    if n < 2 and not isinstance(reference, xr.DataArray):
        raise InputError(
            f"{func}: the cube has {n} scene; aligning needs at least two (or a reference DataArray)"
        )
    if isinstance(reference, str) and reference == "median" and n < opts.few_scenes:
        # a median of a few misregistered frames keeps no common fine texture: every scene
        # would lock onto its own share of it; start from the clearest scene instead
        reference = "best"
    ny, nx = stack.shape[-2:]
    # Each scene is aligned whole: one task per scene, frames not split in y/x.
    raw = as_dask(stack).rechunk({0: 1, 1: -1, 2: -1, 3: -1})
    data = raw.map_blocks(normalise_block, opts.highpass, dtype=np.float32)
    # Rounds before the last run on block-averaged frames (a quarter of the pixels for
    # factor 2): they only have to bring each scene and the template within a fraction of
    # a pixel; the last round, at full resolution, has the last word.
    factor = opts.downsample if opts.refine and min(ny, nx) >= 128 * opts.downsample else 1
    # averaged before the high-pass: averaging a high-passed frame would remove the very
    # texture the estimate locks on
    coarse_data = (data if factor == 1
                   else _downsampled(raw, factor).map_blocks(normalise_block, opts.highpass,
                                                             dtype=np.float32))
    template = _template(func, stack, coarse_data, reference, opts.highpass, factor)
    params = _rounds(data, coarse_data, template, _frame_opts(opts, ny, nx), opts.refine, factor)
    ref_label = "DataArray" if isinstance(reference, xr.DataArray) else str(reference)
    used = dict(bands=names, reference=ref_label, **as_dict(opts))
    return _result(func, params, stack["time"], opts.motion), used


@renamed_keywords(band="bands")
def estimate_ecc(
    obj: xr.Dataset | xr.DataArray,
    *,
    bands: str | Sequence[str] | None = None,
    reference: str | int | Any = "median",
    options: ECCOptions | None = None,
    **overrides: Any,
) -> xr.Dataset:
    """Estimate one ECC warp per scene against a template, lazily.

    Parameters
    ----------
    obj, bands, reference
        As for :func:`align_ecc`.
    options, **overrides
        An :class:`ECCOptions` (default ``ECCOptions()``) and any of its fields as
        keywords, which override those of ``options``.

    Returns
    -------
    xarray.Dataset
        Along ``time``: ``ecc_warp`` (time, 3, 3; for the non-homography motions the last
        row is (0, 0, 1)), ``ecc_correlation``, ``ecc_converged`` and, for convenience,
        ``ecc_shift_x`` / ``ecc_shift_y`` (the warp's translation in pixels: a scene whose
        content is displaced by +dx columns and +dy rows gets +dx, +dy). Lazy. A scene that
        cannot be aligned gets the identity warp and ``ecc_converged=False``, with one
        :class:`AlignmentWarning` when ``ecc_converged`` is computed.

    Examples
    --------
    >>> import xglacier
    >>> cube, truth = xglacier.synthetic_cube(shape=(64, 64), end="2020-03-01", max_shift=2,
    ...                                       cloud_scale=0)
    >>> est = estimate_ecc(cube, bands="nir08").compute()
    >>> sorted(est.data_vars)[:2]
    ['ecc_converged', 'ecc_correlation']
    >>> estimate_ecc(cube, refine=1, options=ECCOptions(motion="affine")).ecc_warp.attrs["motion"]
    'affine'
    """
    opts = resolve_options("estimate_ecc", options, overrides, ("bands", "reference", "options"))
    ds, used = estimate("estimate_ecc", obj, bands, reference, opts)
    ds.attrs = with_history({}, "estimate_ecc", source=obj, **used)
    return ds
