"""Per-frame numerics of ECC co-registration: plain NumPy and OpenCV, no Dask or xarray.

Every function here works on one frame or one Dask block of frames held in memory:
normalisation, the ECC estimate of one scene (with its coarse first step), the maps
between full-resolution and block-averaged grids, and the resampling of frames with a
warp. The Dask/xarray wiring around them is in :mod:`.estimate` and :mod:`.warp`.

Warps are 3x3 matrices mapping template pixel ``(col, row, 1)`` to scene pixel.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ..kernels import nanmedian_first_axis

MOTIONS = {
    "translation": cv2.MOTION_TRANSLATION,
    "euclidean": cv2.MOTION_EUCLIDEAN,
    "affine": cv2.MOTION_AFFINE,
    "homography": cv2.MOTION_HOMOGRAPHY,
}
INTERP = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}
#: One row of the per-scene parameter block: 9 warp entries, correlation, converged flag.
NPAR = 11


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


def normalise_block(block: np.ndarray, highpass: float | None) -> np.ndarray:
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


def _coarse_init(template, tmask, img, fmask, warp, motion, crit, opts: dict[str, Any]) -> np.ndarray:
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


def _ecc_one(template, tmask, frame, init, opts: dict[str, Any]) -> tuple[np.ndarray, float, bool]:
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
COARSE_ITERATIONS = 30


def _level(factor: int) -> np.ndarray:
    """Map from pixel (col, row, 1) of a grid block-averaged by ``factor`` to full resolution.

    A coarse pixel's centre sits at the centre of the ``factor`` x ``factor`` fine pixels it
    averages: ``x_full = factor * x + (factor - 1) / 2``.
    """
    c = (factor - 1) / 2
    return np.array([[factor, 0, c], [0, factor, c], [0, 0, 1]], float)


def to_level(warp: np.ndarray, factor: int) -> np.ndarray:
    """A full-resolution warp expressed on the grid block-averaged by ``factor``."""
    if factor == 1:
        return warp
    s = _level(factor)
    return np.linalg.solve(s, warp @ s)


def from_level(warp: np.ndarray, factor: int) -> np.ndarray:
    """A warp found on the grid block-averaged by ``factor``, at full resolution."""
    if factor == 1:
        return warp
    s = _level(factor)
    out = s @ warp @ np.linalg.inv(s)
    return out / out[2, 2]


def downsample_block(block: np.ndarray, factor: int) -> np.ndarray:
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


def estimate_block(frames: np.ndarray, template: np.ndarray, init: np.ndarray | None,
                   opts: dict[str, Any]) -> np.ndarray:
    """(t, c, y, x) frames, (1, c, y, x) template, (t, 1, 1, 11) start -> (t, 1, 1, 11).

    Frames and template may be on a grid block-averaged by ``opts["factor"]``; the start
    and the result are full-resolution warps. ``opts`` holds ``motion``, ``iterations``,
    ``eps``, ``gauss_size``, ``coarse``, ``pyramid_levels``, ``max_shift`` (pixels of this
    grid), ``min_correlation``, ``min_valid`` (a pixel count) and ``factor``.
    """
    factor = opts["factor"]
    tmpl, tmask = _prepare(template[0])
    out = np.empty((frames.shape[0], 1, 1, NPAR))
    for i in range(frames.shape[0]):
        start = to_level(init[i, 0, 0, :9].reshape(3, 3), factor) if init is not None else np.eye(3)
        warp, cc, ok = _ecc_one(tmpl, tmask, frames[i], start, opts)
        if not ok and not np.allclose(start, np.eye(3)):
            # the previous warp may have been a wrong lock: start afresh (coarse step
            # included) against the better template, else keep the previous estimate
            warp, cc, ok = _ecc_one(tmpl, tmask, frames[i], np.eye(3), opts)
            if not ok and init[i, 0, 0, 10]:
                warp, cc, ok = start, float(init[i, 0, 0, 9]), True
        out[i, 0, 0, :9] = from_level(warp, factor).ravel()
        out[i, 0, 0, 9], out[i, 0, 0, 10] = cc, ok
    return out


def _cv_warp(src: np.ndarray, warp: np.ndarray, interp: int, fill: float | None) -> np.ndarray:
    """``src`` resampled with ``warp``; outside the frame ``fill``, or the nearest edge pixel
    (``BORDER_REPLICATE``) when ``fill`` is None."""
    ny, nx = src.shape
    flags = interp | cv2.WARP_INVERSE_MAP
    border = dict(borderMode=cv2.BORDER_REPLICATE) if fill is None else dict(
        borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
    if np.allclose(warp[2], (0, 0, 1)):
        return cv2.warpAffine(src, warp[:2], (nx, ny), flags=flags, **border)
    return cv2.warpPerspective(src, warp, (nx, ny), flags=flags, **border)


def _warp_frame(frame: np.ndarray, warp: np.ndarray, interp: int, fill: float) -> np.ndarray:
    """One frame resampled with ``warp``.

    Float frames are NaN exactly where the footprint of a pixel's source position leaves
    the frame or touches a gap: the source pixel itself for nearest neighbour, the 2x2
    pixels around it (weights above 0.001) for linear and cubic interpolation.
    """
    if np.allclose(warp, np.eye(3)):
        return frame
    if not np.issubdtype(frame.dtype, np.floating):
        src = frame if frame.dtype in (np.uint8, np.uint16) else frame.astype(np.float64)
        return _cv_warp(src, warp, interp, fill).astype(frame.dtype, copy=False)
    if interp == cv2.INTER_NEAREST:
        # one source pixel per output pixel: NaN comes only from a gap or the outside
        return _cv_warp(frame, warp, interp, np.nan)
    # NaN must never reach OpenCV's kernels: its cubic warp computes the pixels near the
    # border (a SIMD block of 8 columns, several rows) with the border value at zero
    # weight, and 0 * NaN blanked them all; interpolating across a gap would spread it by
    # the kernel's reach (2 px for cubic).
    # The outside takes the edge pixels' values and gaps a local mean, for the kernel's
    # outer taps only; the footprint below decides which pixels are NaN.
    valid = np.isfinite(frame)
    filled = frame
    if not valid.all():
        filled = np.where(valid, frame, _nan_blur(frame, 2.0)) if valid.any() else frame
        filled = np.where(np.isfinite(filled), filled, 0).astype(frame.dtype)
    out = _cv_warp(filled, warp, interp, None)
    reach = _cv_warp(valid.astype(np.float32), warp, cv2.INTER_LINEAR, 0.0)
    out[reach < 0.999] = np.nan
    return out


def warp_block(block: np.ndarray, params: np.ndarray, interp: int, fill: float) -> np.ndarray:
    """(t, y, x) block of one variable, each frame resampled with its warp in ``params``
    (t, 1, 9); ``fill`` outside the frame (NaN for floats)."""
    out = np.empty_like(block)
    for i in range(block.shape[0]):
        out[i] = _warp_frame(block[i], params[i, 0, :9].reshape(3, 3), interp, fill)
    return out


def warp_stack_block(block: np.ndarray, params: np.ndarray, interp: int, factor: int = 1) -> np.ndarray:
    """(t, c, y, x) block warped frame by frame (NaN from outside the frame).

    ``params`` hold full-resolution warps; ``factor`` > 1 says the block is on the grid
    block-averaged by that factor.
    """
    out = np.empty_like(block)
    for i in range(block.shape[0]):
        warp = to_level(params[i, 0, 0, :9].reshape(3, 3), factor)
        for c in range(block.shape[1]):
            out[i, c] = _warp_frame(block[i, c], warp, interp, np.nan)
    return out


def nanreduce_block(block: np.ndarray, how: str) -> np.ndarray:
    """NaN-ignoring ``how`` (``"median"`` or ``"mean"``) over the first axis of a block."""
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


def best_frame(block: np.ndarray) -> np.ndarray:
    """The frame with the most valid pixels (ties: the earliest)."""
    return block[int(np.argmax(np.isfinite(block).sum(axis=(1, 2, 3))))]


