"""Numba kernels of the preprocessing stage, on plain NumPy blocks.

The rule, applied in every stage folder: a stage's Numba kernels live in its own
``kernels.py`` and take and return plain NumPy arrays; the xarray/Dask wiring around them
(``map_blocks``, ``map_overlap`` with the halo each kernel needs) lives in the module
named after the operation. Kernels are compiled once per machine (``cache=True``) and
release the GIL (``nogil=True``) so that Dask threads run them in parallel.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def _gap_distance(img, far):  # pragma: no cover - compiled
    """Chessboard distance of every pixel to the nearest valid one (two-pass chamfer).

    0 on valid pixels, ``far`` where the frame holds no valid pixel at all.
    """
    ny, nx = img.shape
    d = np.empty((ny, nx), np.int32)
    for i in range(ny):
        for j in range(nx):
            if not np.isnan(img[i, j]):
                d[i, j] = 0
                continue
            v = far
            if i > 0:
                v = min(v, d[i - 1, j] + 1)
                if j > 0:
                    v = min(v, d[i - 1, j - 1] + 1)
                if j < nx - 1:
                    v = min(v, d[i - 1, j + 1] + 1)
            if j > 0:
                v = min(v, d[i, j - 1] + 1)
            d[i, j] = v
    for i in range(ny - 1, -1, -1):
        for j in range(nx - 1, -1, -1):
            v = d[i, j]
            if v == 0:
                continue
            if i < ny - 1:
                v = min(v, d[i + 1, j] + 1)
                if j > 0:
                    v = min(v, d[i + 1, j - 1] + 1)
                if j < nx - 1:
                    v = min(v, d[i + 1, j + 1] + 1)
            if j < nx - 1:
                v = min(v, d[i, j + 1] + 1)
            d[i, j] = min(v, far)
    return d


@njit(nogil=True, cache=True)
def _fill_frame(img, weights, max_iter, out):  # pragma: no cover - compiled
    ny, nx = img.shape
    r = weights.shape[0] // 2
    size = 2 * r + 1
    far = np.int32(ny + nx + 2 * r + 2)
    # A gap at chessboard distance d from the nearest valid pixel gets its first valid
    # neighbour in pass ceil(d / r), and not before: so the passes are known in advance
    # and each gap is evaluated exactly once, in the pass that fills it, instead of
    # being revisited every pass. The result equals the pass-by-pass definition.
    d = _gap_distance(img, far)
    last = (far + r - 1) // r
    if max_iter >= 0:
        last = min(last, max_iter)
    start = np.zeros(last + 2, np.int64)
    for i in range(ny):
        for j in range(nx):
            v = d[i, j]
            if 0 < v < far:
                p = (v + r - 1) // r
                if p <= last:
                    start[p + 1] += 1
    for p in range(1, last + 2):
        start[p] += start[p - 1]
    fill = start.copy()
    order = np.empty(start[last + 1], np.int64)
    for i in range(ny):
        for j in range(nx):
            v = d[i, j]
            if 0 < v < far:
                p = (v + r - 1) // r
                if p <= last:
                    order[fill[p]] = i * nx + j
                    fill[p] += 1
    # NaN-padded working copy: window reads need no bounds checks
    pad = np.full((ny + 2 * r, nx + 2 * r), np.nan, img.dtype)
    for i in range(ny):
        for j in range(nx):
            pad[i + r, j + r] = img[i, j]
    vals = np.empty(order.size, img.dtype)
    for p in range(1, last + 1):
        # Jacobi pass: compute the whole pass from the values before it, then write.
        for k in range(start[p], start[p + 1]):
            q = order[k]
            i = q // nx
            j = q - i * nx
            s = 0.0
            w = 0.0
            for di in range(size):
                for dj in range(size):
                    x = np.float64(pad[i + di, j + dj])
                    if x == x:
                        wt = weights[di, dj]
                        s += wt * x
                        w += wt
            vals[k] = s / w
        for k in range(start[p], start[p + 1]):
            q = order[k]
            i = q // nx
            pad[i + r, q - i * nx + r] = vals[k]
    left = 0
    for i in range(ny):
        for j in range(nx):
            v = pad[i + r, j + r]
            out[i, j] = v
            if np.isnan(v):
                left += 1
    return left


@njit(nogil=True, cache=True)
def fill_gaps_stack(stack, weights, max_iter):  # pragma: no cover - compiled
    """Fill NaN gaps of every frame of a ``(n, y, x)`` stack by weighted-average passes.

    Each pass replaces every NaN pixel that has at least one valid pixel in the
    ``weights`` window by the weighted mean of those valid pixels (sums in float64,
    window in row-major order), using the values from before the pass. Passes repeat
    until nothing changes or ``max_iter`` passes (negative: no limit). Returns the
    filled stack and the gaps left per frame.
    """
    out = np.empty_like(stack)
    left = np.zeros(stack.shape[0], np.int64)
    for t in range(stack.shape[0]):
        left[t] = _fill_frame(stack[t], weights, max_iter, out[t])
    return out, left


def paper_weights(profile: tuple[float, ...] = (1, 2, 3, 2, 1)) -> np.ndarray:
    """Outer product of a 1-D profile: the paper's 5x5 gap-filling weights by default."""
    p = np.asarray(profile, dtype=np.float64)
    return np.outer(p, p)


@njit(nogil=True, cache=True)
def nanmedian_first_axis(stack, out):  # pragma: no cover - compiled
    """Median over axis 0 of a (n, m) array ignoring NaN (mean of the two middle values
    for an even count, as ``numpy.nanmedian``); ``out[j]`` stays as given where column
    ``j`` holds no finite value."""
    n = stack.shape[0]
    buf = np.empty(n, np.float64)
    for j in range(stack.shape[1]):
        k = 0
        for i in range(n):
            v = stack[i, j]
            if np.isfinite(v):
                buf[k] = v
                k += 1
        if k == 0:
            continue
        if k <= 48:
            # insertion sort in place: no allocation per pixel for the usual short stacks
            for a in range(1, k):
                v = buf[a]
                b = a - 1
                while b >= 0 and buf[b] > v:
                    buf[b + 1] = buf[b]
                    b -= 1
                buf[b + 1] = v
            s = buf
        else:
            s = np.sort(buf[:k])
        h = k // 2
        out[j] = s[h] if k % 2 else 0.5 * (s[h - 1] + s[h])


@njit(nogil=True, cache=True)
def interp_time(stack, t):  # pragma: no cover - compiled
    """Linear interpolation in time of the NaN frames between two valid ones, per pixel.

    ``stack`` is (time, rows, cols), ``t`` the frame times as numbers; leading and
    trailing NaN stay NaN (no extrapolation)."""
    nt, ny, nx = stack.shape
    out = stack.copy()
    for i in range(ny):
        for j in range(nx):
            prev = -1
            for k in range(nt):
                if np.isnan(stack[k, i, j]):
                    continue
                if prev >= 0 and k - prev > 1:
                    a = stack[prev, i, j]
                    b = stack[k, i, j]
                    for m in range(prev + 1, k):
                        f = (t[m] - t[prev]) / (t[k] - t[prev])
                        out[m, i, j] = a + f * (b - a)
                prev = k
    return out


@njit(nogil=True, cache=True)
def _diff(a, b, c, step):  # pragma: no cover - compiled
    """Derivative at ``b`` from its neighbours ``a`` (before) and ``c`` (after), NaN-aware."""
    if not (np.isnan(a) or np.isnan(c)):
        return (c - a) / (2.0 * step)
    if not (np.isnan(b) or np.isnan(c)):
        return (c - b) / step
    if not (np.isnan(a) or np.isnan(b)):
        return (b - a) / step
    return np.nan


@njit(nogil=True, cache=True)
def slope_kernel(z, dx, dy):  # pragma: no cover - compiled
    """Slope in degrees of a 2-D elevation block.

    ``dx[i]`` and ``dy[i]`` are the east-west and north-south lengths in metres of one
    grid step at row ``i``. Pixels outside the block count as missing (NaN).
    """
    ny, nx = z.shape
    out = np.empty((ny, nx), np.float32)
    w = (1.0, 2.0, 1.0)
    for i in range(ny):
        for j in range(nx):
            if np.isnan(z[i, j]):
                out[i, j] = np.nan
                continue
            gx = 0.0
            wx = 0.0
            gy = 0.0
            wy = 0.0
            for k in range(3):
                r = i + k - 1
                if 0 <= r < ny:
                    a = z[r, j - 1] if j > 0 else np.nan
                    c = z[r, j + 1] if j < nx - 1 else np.nan
                    d = _diff(a, z[r, j], c, dx[r])
                    if not np.isnan(d):
                        gx += w[k] * d
                        wx += w[k]
                c_ = j + k - 1
                if 0 <= c_ < nx:
                    a = z[i - 1, c_] if i > 0 else np.nan
                    c = z[i + 1, c_] if i < ny - 1 else np.nan
                    d = _diff(a, z[i, c_], c, dy[i])
                    if not np.isnan(d):
                        gy += w[k] * d
                        wy += w[k]
            if wx == 0.0 or wy == 0.0:
                out[i, j] = np.nan
            else:
                gx /= wx
                gy /= wy
                out[i, j] = math.degrees(math.atan(math.sqrt(gx * gx + gy * gy)))
    return out
