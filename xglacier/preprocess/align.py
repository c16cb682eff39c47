"""Co-registration of scenes with OpenCV's Enhanced Correlation Coefficient (ECC).

:func:`estimate_ecc` finds one warp per scene against a template, lazily; :func:`apply_warps`
resamples every band of every scene with its warp; :func:`align_ecc` does both.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import cv2
import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

from .._attrs import with_history
from .._validate import check_spatial, check_time, get_band
from ..errors import AlignmentWarning, DimensionError, InputError, MissingBandError, ParameterError
from .kernels import nanmedian_first_axis

MOTIONS = {
    "translation": cv2.MOTION_TRANSLATION,
    "euclidean": cv2.MOTION_EUCLIDEAN,
    "affine": cv2.MOTION_AFFINE,
    "homography": cv2.MOTION_HOMOGRAPHY,
}
_INTERP = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}
#: Bands tried, in order, when ``band`` is not given (texture-rich ones first).
DEFAULT_ALIGN_BANDS = ("nir08", "swir16", "red", "green", "blue", "swir22")
# one row of the per-scene parameter block: 9 warp entries, correlation, converged flag
_NPAR = 11


# -- per-frame numerics (plain NumPy / OpenCV) ---------------------------------------------
def _gauss(a: np.ndarray, sigma: float) -> np.ndarray:
    # OpenCV's separable float32 blur is ~10x faster than scipy's float64 one at 2048²;
    # same reach as scipy's default (4 sigma), edges replicated (scipy's "nearest")
    k = 2 * int(4.0 * sigma + 0.5) + 1
    return cv2.GaussianBlur(a, (k, k), sigma, borderType=cv2.BORDER_REPLICATE)


def _nan_blur(a: np.ndarray, sigma: float) -> np.ndarray:
    valid = np.isfinite(a)
    num = _gauss(np.where(valid, a, 0).astype(np.float32), sigma)
    den = _gauss(valid.astype(np.float32), sigma)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-6, num / den, np.nan)


def _normalise_block(block: np.ndarray, highpass: float | None) -> np.ndarray:
    """(t, c, y, x) frames, each channel high-passed and scaled to zero mean, unit variance.

    High-passing removes what changes with the season at large scales (snow cover,
    illumination) and keeps the terrain texture that co-registration should lock on;
    the scaling gives every frame the same weight in a template built from many frames,
    so one odd frame (noise, a failed scene) cannot dominate it where others are clouded.
    """
    out = np.full(block.shape, np.nan, np.float32)
    for i in range(block.shape[0]):
        for k in range(block.shape[1]):
            a = block[i, k].astype(np.float64)
            b = a - _nan_blur(a, highpass) if highpass else a
            valid = np.isfinite(b)
            if valid.sum() > 1:
                v = b[valid]
                out[i, k][valid] = (v - v.mean()) / (v.std() + 1e-12)
    return out


def _prepare(channels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV image (zero where invalid) and 8-bit mask of pixels valid in every channel."""
    valid = np.all(np.isfinite(channels), axis=0)
    out = np.zeros(channels.shape, np.float32)
    for k, a in enumerate(channels):
        v = a[valid]
        if v.size:
            out[k][valid] = (v - v.mean()) / (v.std() + 1e-12)
    img = out[0] if len(out) == 1 else np.ascontiguousarray(np.moveaxis(out, 0, -1))
    return img, valid.astype(np.uint8) * 255


def _displacement(warp: np.ndarray, shape: tuple[int, int]) -> float:
    """Largest displacement (pixels) the warp gives to the frame's corners and centre."""
    ny, nx = shape
    pts = np.array([[0, 0, 1], [nx - 1, 0, 1], [0, ny - 1, 1], [nx - 1, ny - 1, 1],
                    [(nx - 1) / 2, (ny - 1) / 2, 1]], float)
    moved = pts @ warp.T
    if warp.shape[0] == 3:
        moved = moved[:, :2] / moved[:, 2:3]
    return float(np.max(np.hypot(*(moved[:, :2] - pts[:, :2]).T)))


def _coarse_init(template, tmask, img, fmask, warp, motion, crit, opts) -> np.ndarray:
    """Initial warp for scenes displaced by more than ECC's capture range (1-2 pixels).

    ``coarse="phase"``: the translation found by phase correlation of the (normalised,
    gap-zeroed) images, a global and cheap estimate. ``coarse="opencv"``: OpenCV's
    ``findTransformECCMultiScale`` pyramid (in OpenCV 5.0 it failed on zero-mean input and
    ignored the masks in our tests, hence not the default). A failed coarse step leaves
    the warp as it was; the full-resolution masked estimate always has the last word.
    """
    if opts["coarse"] == "phase":
        t = template if template.ndim == 2 else template.mean(axis=2)
        f = img if img.ndim == 2 else img.mean(axis=2)
        win = cv2.createHanningWindow(t.shape[::-1], cv2.CV_32F)
        (dx, dy), _ = cv2.phaseCorrelate(np.ascontiguousarray(t), np.ascontiguousarray(f), win)
        if np.hypot(dx, dy) <= opts["max_shift"]:
            warp = warp.copy()
            warp[0, 2] += dx
            warp[1, 2] += dy
        return warp
    params = cv2.ECCParameters()
    params.motionType, params.criteria = motion, crit
    params.gaussFiltSize, params.nlevels = opts["gauss_size"], opts["pyramid_levels"]
    try:
        _, coarse = cv2.findTransformECCMultiScale(
            template - template.min() + 1, img - img.min() + 1, warp.copy(), params, tmask, fmask
        )
    except cv2.error:
        return warp
    return coarse.astype(np.float32) if np.all(np.isfinite(coarse)) else warp


def _ecc_one(template, tmask, frame, init, opts) -> tuple[np.ndarray, float, bool]:
    """Estimate one warp; never raises for a scene that cannot be aligned."""
    img, fmask = _prepare(frame)
    ident = np.eye(3)
    if np.count_nonzero(fmask) < opts["min_valid"] or not np.any(img):
        return ident, np.nan, False
    motion = MOTIONS[opts["motion"]]
    rows = 3 if motion == cv2.MOTION_HOMOGRAPHY else 2
    warp = np.ascontiguousarray(init[:rows], dtype=np.float32)
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, opts["iterations"], opts["eps"])
    if opts["coarse"] and np.allclose(init, np.eye(3)):
        warp = _coarse_init(template, tmask, img, fmask, warp, motion, crit, opts)
    try:
        cc, out = cv2.findTransformECCWithMask(
            template, img, tmask, fmask, warp.copy(), motion, crit, opts["gauss_size"]
        )
    except cv2.error:
        return ident, np.nan, False
    full = np.eye(3)
    full[:rows] = out
    ok = (np.all(np.isfinite(full)) and np.isfinite(cc) and cc >= opts["min_correlation"]
          and _displacement(full, frame.shape[-2:]) <= opts["max_shift"])
    return (full, float(cc), True) if ok else (ident, float(cc), False)


#: ECC iterations of the rounds on block-averaged frames: there, with masks, the correlation
#: can creep up by ~1e-4 per iteration for hundreds of iterations after the warp has
#: settled to a hundredth of a pixel, and those rounds only need to bring the last one close.
_COARSE_ITERATIONS = 30


def _level(factor: int) -> np.ndarray:
    """Map from pixel (col, row, 1) of a grid block-averaged by ``factor`` to full resolution.

    A coarse pixel's centre sits at the centre of the ``factor`` x ``factor`` fine pixels it
    averages: ``x_full = factor * x + (factor - 1) / 2``.
    """
    c = (factor - 1) / 2
    return np.array([[factor, 0, c], [0, factor, c], [0, 0, 1]], float)


def _to_level(warp: np.ndarray, factor: int) -> np.ndarray:
    """A full-resolution warp expressed on the grid block-averaged by ``factor``."""
    if factor == 1:
        return warp
    s = _level(factor)
    return np.linalg.solve(s, warp @ s)


def _from_level(warp: np.ndarray, factor: int) -> np.ndarray:
    """A warp found on the grid block-averaged by ``factor``, at full resolution."""
    if factor == 1:
        return warp
    s = _level(factor)
    out = s @ warp @ np.linalg.inv(s)
    return out / out[2, 2]


def _downsample_block(block: np.ndarray, factor: int) -> np.ndarray:
    """(..., y, x) block averaged over ``factor`` x ``factor`` pixels, ignoring NaN.

    Rows and columns beyond the last whole block are dropped; a coarse pixel is NaN only
    where all of its fine pixels are.
    """
    ny, nx = block.shape[-2] // factor * factor, block.shape[-1] // factor * factor
    a = block[..., :ny, :nx].reshape(*block.shape[:-2], ny // factor, factor, nx // factor, factor)
    valid = np.isfinite(a)
    n = valid.sum(axis=(-3, -1))
    total = np.where(valid, a, 0).sum(axis=(-3, -1), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / n, np.nan).astype(block.dtype)


def _estimate_block(frames, template, init, opts):
    """(t, c, y, x) frames, (1, c, y, x) template, (t, 1, 1, 11) start -> (t, 1, 1, 11).

    Frames and template may be on a grid block-averaged by ``opts["factor"]``; the start
    and the result are full-resolution warps.
    """
    factor = opts["factor"]
    tmpl, tmask = _prepare(template[0])
    out = np.empty((frames.shape[0], 1, 1, _NPAR))
    for i in range(frames.shape[0]):
        start = _to_level(init[i, 0, 0, :9].reshape(3, 3), factor) if init is not None else np.eye(3)
        warp, cc, ok = _ecc_one(tmpl, tmask, frames[i], start, opts)
        if not ok and not np.allclose(start, np.eye(3)):
            # the previous warp may have been a wrong lock: start afresh (coarse step
            # included) against the better template, else keep the previous estimate
            warp, cc, ok = _ecc_one(tmpl, tmask, frames[i], np.eye(3), opts)
            if not ok and init[i, 0, 0, 10]:
                warp, cc, ok = start, float(init[i, 0, 0, 9]), True
        out[i, 0, 0, :9] = _from_level(warp, factor).ravel()
        out[i, 0, 0, 9], out[i, 0, 0, 10] = cc, ok
    return out


def _cv_warp(src: np.ndarray, warp: np.ndarray, interp: int, fill: float) -> np.ndarray:
    ny, nx = src.shape
    flags = interp | cv2.WARP_INVERSE_MAP
    if np.allclose(warp[2], (0, 0, 1)):
        return cv2.warpAffine(src, warp[:2], (nx, ny), flags=flags,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
    return cv2.warpPerspective(src, warp, (nx, ny), flags=flags,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=fill)


def _warp_frame(frame: np.ndarray, warp: np.ndarray, interp: int, fill: float) -> np.ndarray:
    if np.allclose(warp, np.eye(3)):
        return frame
    if not np.issubdtype(frame.dtype, np.floating):
        src = frame if frame.dtype in (np.uint8, np.uint16) else frame.astype(np.float64)
        return _cv_warp(src, warp, interp, fill).astype(frame.dtype, copy=False)
    valid = np.isfinite(frame)
    if valid.all():
        return _cv_warp(frame, warp, interp, np.nan)
    # Interpolating across NaN would spread every gap by the kernel's reach (2 px for
    # cubic). Gaps are filled with a local mean for the interpolation instead, and a pixel
    # is NaN only where the bilinear footprint of its source position touches a gap.
    filled = np.where(valid, frame, _nan_blur(frame, 2.0)) if valid.any() else frame
    filled = np.where(np.isfinite(filled), filled, 0).astype(frame.dtype)
    out = _cv_warp(filled, warp, interp, np.nan)
    reach = _cv_warp(valid.astype(np.float32), warp, cv2.INTER_LINEAR, 0.0)
    out[reach < 0.999] = np.nan
    return out


def _warp_block(block, params, interp, fill):
    out = np.empty_like(block)
    for i in range(block.shape[0]):
        out[i] = _warp_frame(block[i], params[i, 0, :9].reshape(3, 3), interp, fill)
    return out


def _warn_block(converged, times):
    bad = np.flatnonzero(~converged.astype(bool))
    if bad.size:
        warnings.warn(
            f"align_ecc: {bad.size} of {converged.size} scenes could not be aligned (no "
            f"convergence, too few valid pixels, correlation or shift out of bounds) and were "
            f"kept unwarped; see ecc_converged. First: {[str(times[i])[:19] for i in bad[:5]]}",
            AlignmentWarning, stacklevel=2,
        )
    return converged.astype(bool)


# -- xarray / dask wiring --------------------------------------------------------------
def _channels(obj: xr.Dataset | xr.DataArray, band) -> tuple[xr.DataArray, list[str]]:
    """The (time, channel, y, x) stack used to estimate warps."""
    if isinstance(obj, xr.DataArray):
        if band is not None:
            raise ParameterError("align_ecc: band= is for Datasets; a DataArray is its own band")
        names, arrays = [str(obj.name)], [obj]
    else:
        if band is None:
            names = [b for b in DEFAULT_ALIGN_BANDS if b in obj.data_vars][:3]
            if not names:
                raise MissingBandError(
                    f"align_ecc: none of the bands {list(DEFAULT_ALIGN_BANDS)} is in the Dataset "
                    f"(variables: {sorted(map(str, obj.data_vars))}); pass band=..."
                )
        else:
            names = [band] if isinstance(band, str) else list(band)
        if not 1 <= len(names) <= 3:
            raise ParameterError(f"align_ecc: band={band!r}; expected one to three band names")
        arrays = [get_band(obj, n) for n in names]
    for a in arrays:
        check_spatial(a)
        if a.dims != ("time", "y", "x"):
            raise DimensionError(
                f"align_ecc: variable {a.name!r} has dimensions {a.dims}; expected ('time', 'y', 'x')"
            )
    if len(names) == 2:
        names.append(names[1])  # OpenCV takes 1 or 3 channels
        arrays.append(arrays[1])
    stack = xr.concat([a.astype(np.float32) for a in arrays], dim="channel", coords="minimal",
                      compat="override", join="override").transpose("time", "channel", "y", "x")
    return stack, names


def _as_dask(a: xr.DataArray) -> dsa.Array:
    return a.data if isinstance(a.data, dsa.Array) else dsa.from_array(np.asarray(a.data), chunks=-1)


def _nanreduce_block(block: np.ndarray, how: str) -> np.ndarray:
    # Reduce only pixels with a value: never-valid pixels stay NaN without the all-NaN
    # warning (silencing it with catch_warnings is not thread-safe under Dask).
    out = np.full(block.shape[1:], np.nan, block.dtype)
    if how == "median":
        flat = np.ascontiguousarray(block.reshape(block.shape[0], -1))
        nanmedian_first_axis(flat, out.reshape(-1))
        return out
    valid = np.isfinite(block).any(axis=0)
    if valid.any():
        out[valid] = np.nanmean(block[:, valid], axis=0)
    return out


def _best_frame(block: np.ndarray) -> np.ndarray:
    """The frame with the most valid pixels (ties: the earliest)."""
    return block[int(np.argmax(np.isfinite(block).sum(axis=(1, 2, 3))))]


def _reduce_time(data: dsa.Array, how: str) -> dsa.Array:
    """Lazy NaN-ignoring median/mean over time, as one whole-frame (channel, y, x) chunk."""
    byp = data.rechunk({0: -1, 1: 1, 2: "auto", 3: "auto"})
    return byp.map_blocks(_nanreduce_block, how, drop_axis=0, dtype=data.dtype).rechunk(-1)


def _template(stack: xr.DataArray, data: dsa.Array, reference, highpass, factor: int = 1) -> dsa.Array:
    """Lazy (channel, y, x) template from normalised frames ``data`` (block-averaged by
    ``factor``, as a reference DataArray is too)."""
    if isinstance(reference, xr.DataArray):
        ref = reference
        if ref.dims != ("y", "x") or ref.shape != stack.shape[-2:]:
            raise DimensionError(
                f"align_ecc: reference DataArray has dims {ref.dims} and shape {ref.shape}; "
                f"expected ('y', 'x') and {stack.shape[-2:]}"
            )
        one = _as_dask(ref.astype(np.float32))
        both = dsa.stack([one] * stack.sizes["channel"])[None].rechunk(-1)
        if factor > 1:
            _, c, ny, nx = both.shape
            both = both.map_blocks(_downsample_block, factor, dtype=both.dtype,
                                   chunks=((1,), (c,), (ny // factor,), (nx // factor,)))
        return both.map_blocks(_normalise_block, highpass, dtype=np.float32)[0]
    if isinstance(reference, str) and reference == "best":
        frames = data.rechunk({0: -1})
        return frames.map_blocks(_best_frame, drop_axis=0, dtype=data.dtype).rechunk(-1)
    if isinstance(reference, str) and reference in ("median", "mean"):
        return _reduce_time(data, reference)
    if isinstance(reference, (int, np.integer)) and not isinstance(reference, bool):
        n = stack.sizes["time"]
        if not -n <= reference < n:
            raise ParameterError(f"align_ecc: reference={reference}; the cube has {n} scenes")
        return data[int(reference)].rechunk(-1)
    try:
        when = pd.Timestamp(reference)
    except (TypeError, ValueError) as err:
        raise ParameterError(
            f"align_ecc: reference={reference!r}; expected 'median', 'mean', 'best', a scene index, "
            "a date or a (y, x) DataArray"
        ) from err
    k = int(stack.indexes["time"].get_indexer([when], method="nearest")[0])
    return data[k].rechunk(-1)


def estimate_ecc(
    obj: xr.Dataset | xr.DataArray,
    band: str | Sequence[str] | None = None,
    reference: str | int | Any = "median",
    motion: Literal["translation", "euclidean", "affine", "homography"] = "translation",
    refine: int = 2,
    downsample: int = 2,
    iterations: int = 200,
    eps: float = 1e-5,
    highpass: float | None = 1.5,
    gauss_size: int = 1,
    coarse: Literal["phase", "opencv"] | None = "phase",
    pyramid_levels: int = 3,
    max_shift: float = 10.0,
    min_correlation: float = 0.2,
    min_valid: float = 0.1,
    few_scenes: int = 10,
) -> xr.Dataset:
    """Estimate one ECC warp per scene against a template, lazily.

    Returns a Dataset along ``time`` with ``ecc_warp`` (time, 3, 3; for the non-homography
    motions the last row is (0, 0, 1)), ``ecc_correlation``, ``ecc_converged`` and, for
    convenience, ``ecc_shift_x`` / ``ecc_shift_y`` (the warp's translation in pixels: a scene
    whose content is displaced by +dx columns and +dy rows gets +dx, +dy). See
    :func:`align_ecc` for the parameters.

    Examples
    --------
    >>> import xglacier
    >>> cube, truth = xglacier.synthetic_cube(shape=(64, 64), end="2020-03-01", max_shift=2,
    ...                                       cloud_scale=0)
    >>> est = estimate_ecc(cube, band="nir08").compute()
    >>> sorted(est.data_vars)[:2]
    ['ecc_converged', 'ecc_correlation']
    """
    if motion not in MOTIONS:
        raise ParameterError(f"align_ecc: motion={motion!r}; expected one of {sorted(MOTIONS)}")
    if coarse not in ("phase", "opencv", None):
        raise ParameterError(f"align_ecc: coarse={coarse!r}; expected 'phase', 'opencv' or None")
    for label, value, lo in (("iterations", iterations, 1), ("pyramid_levels", pyramid_levels, 1),
                             ("gauss_size", gauss_size, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < lo:
            raise ParameterError(f"align_ecc: {label}={value!r}; expected an integer >= {lo}")
    if gauss_size % 2 == 0 and gauss_size != 0:
        raise ParameterError(f"align_ecc: gauss_size={gauss_size}; expected an odd size (or 0)")
    if not isinstance(refine, (int, np.integer)) or refine < 0:
        raise ParameterError(f"align_ecc: refine={refine!r}; expected True/False or a count >= 0")
    if not isinstance(downsample, (int, np.integer)) or isinstance(downsample, bool) or downsample < 1:
        raise ParameterError(f"align_ecc: downsample={downsample!r}; expected an integer >= 1")
    if not (eps > 0 and max_shift > 0 and 0 < min_valid <= 1 and min_correlation <= 1):
        raise ParameterError(
            "align_ecc: expected eps > 0, max_shift > 0, 0 < min_valid <= 1, min_correlation <= 1"
        )
    if highpass is not None and not highpass > 0:
        raise ParameterError(f"align_ecc: highpass={highpass!r}; expected a sigma > 0 or None")
    check_time(obj)
    stack, names = _channels(obj, band)
    if stack.sizes["time"] < 2 and not isinstance(reference, xr.DataArray):
        raise InputError(
            f"align_ecc: the cube has {stack.sizes['time']} scene; aligning needs at least two "
            "(or a reference DataArray)"
        )
    if isinstance(reference, str) and reference == "median" and stack.sizes["time"] < few_scenes:
        # a median of a few misregistered frames keeps no common fine texture: every scene
        # would lock onto its own share of it; start from the clearest scene instead
        reference = "best"
    ny, nx = stack.shape[-2:]
    opts = dict(motion=motion, iterations=int(iterations), eps=float(eps), highpass=highpass,
                gauss_size=int(gauss_size), coarse=coarse, pyramid_levels=int(pyramid_levels),
                max_shift=float(max_shift), min_correlation=float(min_correlation),
                min_valid=int(np.ceil(min_valid * ny * nx)))
    # Each scene is aligned whole: one task per scene, frames not split in y/x.
    raw = _as_dask(stack).rechunk({0: 1, 1: -1, 2: -1, 3: -1})
    data = raw.map_blocks(_normalise_block, highpass, dtype=np.float32)
    times = stack["time"].values
    # Rounds before the last run on block-averaged frames (a quarter of the pixels for
    # factor 2): they only have to bring each scene and the template within a fraction of
    # a pixel; the last round, at full resolution, has the last word.
    factor = int(downsample) if refine and min(ny, nx) >= 128 * downsample else 1
    coarse_data = data
    if factor > 1:
        # averaged before the high-pass: averaging a high-passed frame would remove the
        # very texture the estimate locks on
        coarse_data = raw.map_blocks(
            _downsample_block, factor, dtype=raw.dtype,
            chunks=(*raw.chunks[:2], (ny // factor,), (nx // factor,)),
        ).map_blocks(_normalise_block, highpass, dtype=np.float32)
    lo_opts = dict(opts, factor=1)
    if factor > 1:
        lo_opts.update(factor=factor, max_shift=opts["max_shift"] / factor,
                       iterations=min(opts["iterations"], _COARSE_ITERATIONS),
                       min_valid=int(np.ceil(opts["min_valid"] / factor**2)))
    rounds = [(coarse_data, lo_opts)] * int(refine) + [(data, dict(opts, factor=1))]
    template = _template(stack, coarse_data, reference, highpass, factor)
    out_chunks = (data.chunks[0], (1,), (1,), (_NPAR,))
    params = None
    for rnd, (frames, o) in enumerate(rounds):
        params = dsa.map_blocks(
            _estimate_block, frames, template[None], params, o, chunks=out_chunks, dtype=np.float64,
        )
        if rnd < refine:
            nxt, nxt_opts = rounds[rnd + 1]
            warped = dsa.map_blocks(_warp_stack_block, nxt, params, _INTERP["cubic"],
                                    nxt_opts["factor"], dtype=data.dtype)
            template = _reduce_time(warped, "median")
    params = params[:, 0, 0, :]
    warp = params[:, :9].reshape((-1, 3, 3))
    converged = params[:, 10].rechunk(-1).map_blocks(_warn_block, times, dtype=bool)
    coords = {"time": stack["time"]}
    ds = xr.Dataset(
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
        coords=coords,
    )
    ref_label = "DataArray" if isinstance(reference, xr.DataArray) else str(reference)
    ds.attrs = with_history({}, "estimate_ecc", band=names, reference=ref_label, refine=int(refine),
                            downsample=int(downsample),
                            **opts)
    return ds


def _warp_stack_block(block, params, interp, factor=1):
    """(t, c, y, x) block warped frame by frame (NaN from outside the frame).

    ``params`` hold full-resolution warps; ``factor`` > 1 says the block is on the grid
    block-averaged by that factor.
    """
    out = np.empty_like(block)
    for i in range(block.shape[0]):
        warp = _to_level(params[i, 0, 0, :9].reshape(3, 3), factor)
        for c in range(block.shape[1]):
            out[i, c] = _warp_frame(block[i, c], warp, interp, np.nan)
    return out


def apply_warps(
    obj: xr.Dataset | xr.DataArray,
    warps: xr.Dataset | xr.DataArray,
    interpolation: Literal["nearest", "linear", "cubic"] = "cubic",
) -> xr.Dataset | xr.DataArray:
    """Resample every (time, y, x) variable of ``obj`` with one warp per scene.

    Float variables are interpolated (``interpolation``) and get NaN where the warped frame
    reaches outside the scene; integer variables (``qa_pixel``) use nearest neighbour and
    get the Landsat fill value 1 (``qa_pixel``) or 0 there. Frames are processed whole in y/x
    (rechunked internally, one task per scene); lazy for Dask input.

    Examples
    --------
    >>> import xglacier
    >>> cube, _ = xglacier.synthetic_cube(shape=(64, 64), end="2020-03-01")
    >>> est = estimate_ecc(cube)
    >>> apply_warps(cube, est).green.dims
    ('time', 'y', 'x')
    """
    if interpolation not in _INTERP:
        raise ParameterError(
            f"apply_warps: interpolation={interpolation!r}; expected one of {sorted(_INTERP)}"
        )
    w = warps["ecc_warp"] if isinstance(warps, xr.Dataset) else warps
    if w.dims != ("time", "warp_row", "warp_col") or w.sizes["time"] != obj.sizes.get("time"):
        raise DimensionError(
            f"apply_warps: warps have dims {w.dims} and {w.sizes.get('time')} scenes; expected "
            f"('time', 'warp_row', 'warp_col') and {obj.sizes.get('time')} scenes"
        )
    params = _as_dask(w).reshape((-1, 1, 9)).rechunk({0: 1, 1: -1, 2: -1})

    def one(da: xr.DataArray) -> xr.DataArray:
        if da.dims != ("time", "y", "x"):
            return da
        is_float = np.issubdtype(da.dtype, np.floating)
        interp = _INTERP[interpolation] if is_float else cv2.INTER_NEAREST
        fill = np.nan if is_float else (1 if da.name == "qa_pixel" else 0)
        data = _as_dask(da).rechunk({0: 1, 1: -1, 2: -1})
        out = dsa.map_blocks(_warp_block, data, params, interp, fill, dtype=da.dtype)
        if not isinstance(da.data, dsa.Array) and not isinstance(w.data, dsa.Array):
            out = out.compute(scheduler="synchronous")
        return da.copy(data=out)

    if isinstance(obj, xr.DataArray):
        return one(obj)
    out = obj.copy()
    for name in obj.data_vars:
        out[name] = one(obj[name])
    return out


def align_ecc(
    obj: xr.Dataset | xr.DataArray,
    band: str | Sequence[str] | None = None,
    reference: str | int | Any = "median",
    motion: Literal["translation", "euclidean", "affine", "homography"] = "translation",
    refine: int = 2,
    downsample: int = 2,
    iterations: int = 200,
    eps: float = 1e-5,
    highpass: float | None = 1.5,
    gauss_size: int = 1,
    coarse: Literal["phase", "opencv"] | None = "phase",
    pyramid_levels: int = 3,
    max_shift: float = 10.0,
    min_correlation: float = 0.2,
    min_valid: float = 0.1,
    few_scenes: int = 10,
    interpolation: Literal["nearest", "linear", "cubic"] = "cubic",
) -> xr.Dataset | xr.DataArray:
    """Co-register every scene to a reference with ECC maximisation (OpenCV).

    For each scene, the warp that maximises the enhanced correlation coefficient between
    the scene and a template is estimated over pixels valid in both (NaN and cloud pixels
    are masked out, not treated as data); all bands of the scene are then resampled with
    that warp, and pixels that come from outside the frame become NaN.

    Parameters
    ----------
    obj
        Cube ``(time, y, x)``: a Dataset (all its ``(time, y, x)`` variables are warped) or
        a DataArray. Mask clouds first so that they do not steer the estimate.
    band
        Dataset band(s) used for the estimate: one name, or up to three estimated jointly.
        Default: the first three of nir08, swir16, red, green, blue, swir22 present.
    reference
        Template: ``"median"`` or ``"mean"`` of the stack (lazy reductions), ``"best"``
        (the scene with the most valid pixels), a scene index, a date (nearest scene), or a
        ``(y, x)`` DataArray. With fewer than ``few_scenes`` scenes, ``"median"`` starts
        from ``"best"`` instead: the median of a few misregistered frames keeps no common
        fine texture, and each scene would lock onto its own share of it.
    motion
        ``"translation"`` (right for co-registration), ``"euclidean"``, ``"affine"`` or
        ``"homography"`` (the paper's choice).
    refine
        How many times the template is rebuilt as the median of the aligned frames and the
        frames aligned again, starting from their previous warps (``True`` = once). The
        paper's template (mean of unaligned frames) is blurred by the misregistration
        itself; two rebuilds bring the error to a few hundredths of a pixel. ``0`` keeps
        the first estimate.
    downsample
        The rounds before the last (the first estimate and all but the last refinement)
        run on frames block-averaged by this factor, which cuts their cost by its square;
        the last round, at full resolution, starts from their warps and has the last word.
        ``1`` runs every round at full resolution. Ignored without refinement or on frames
        smaller than 128 times the factor. The block-averaged rounds stop after at most 30
        ECC iterations.
    iterations, eps
        ECC termination: at most ``iterations`` per estimate, or a correlation increment
        below ``eps``.
    highpass
        Sigma (pixels) of a NaN-aware Gaussian high-pass applied to template and scenes
        before the estimate, so that seasonal snow and illumination do not pull the
        alignment; ``None`` uses raw values.
    gauss_size
        OpenCV's Gaussian pre-filter size (odd; 1 = none; OpenCV's default is 5).
    coarse, pyramid_levels
        First estimate for each scene, which widens ECC's capture range (1-2 pixels) to
        large shifts: ``"phase"`` (phase correlation, a translation), ``"opencv"``
        (``cv2.findTransformECCMultiScale`` with ``pyramid_levels`` levels; in OpenCV 5.0
        it failed on zero-mean input and ignored masks in our tests) or ``None``. The
        full-resolution masked estimate always has the last word; refinement rounds start
        from the previous round's warps instead.
    max_shift
        Largest plausible displacement (pixels) of the frame corners or centre; a larger
        solution is rejected like a non-converged one.
    min_correlation
        Solutions with a lower correlation are rejected (pure noise, wrong lock).
    min_valid
        Smallest fraction of valid pixels for a scene to be aligned at all.
    interpolation
        Resampling of float variables (integer ones use nearest neighbour).

    Returns
    -------
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
    """
    est = estimate_ecc(
        obj, band=band, reference=reference, motion=motion, refine=refine, downsample=downsample,
        iterations=iterations,
        eps=eps, highpass=highpass, gauss_size=gauss_size, pyramid_levels=pyramid_levels,
        coarse=coarse,
        max_shift=max_shift, min_correlation=min_correlation, min_valid=min_valid,
        few_scenes=few_scenes,
    )
    out = apply_warps(obj, est, interpolation=interpolation)
    keep = ["ecc_correlation", "ecc_converged", "ecc_shift_x", "ecc_shift_y"]
    if isinstance(obj, xr.Dataset):
        keep.append("ecc_warp")
    out = out.assign_coords({k: est[k] for k in keep})
    history = est.attrs["history"].replace("estimate_ecc", "align_ecc", 1)
    prev = out.attrs.get("history")
    out.attrs = dict(out.attrs)
    out.attrs["history"] = f"{prev}\n{history}" if prev else history
    return out

