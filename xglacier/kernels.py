"""Numba kernels, called on plain NumPy blocks; the xarray/Dask wiring lives elsewhere."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def _fill_frame(img, weights, max_iter, out):  # pragma: no cover - compiled
    ny, nx = img.shape
    r = weights.shape[0] // 2
    for i in range(ny):
        for j in range(nx):
            out[i, j] = img[i, j]
    # Work only on the list of gap pixels: each pass touches what is still missing.
    gaps = np.empty(ny * nx, np.int64)
    n = 0
    for i in range(ny):
        for j in range(nx):
            if np.isnan(img[i, j]):
                gaps[n] = i * nx + j
                n += 1
    vals = np.empty(n, np.float64)
    ok = np.zeros(n, np.bool_)
    passes = 0
    while n > 0 and (max_iter < 0 or passes < max_iter):
        filled = 0
        # Jacobi pass: every estimate reads the values as they were when the pass began,
        # so the result does not depend on the order of the gap list (hence on chunking).
        for k in range(n):
            p = gaps[k]
            i = p // nx
            j = p - i * nx
            s = 0.0
            w = 0.0
            for di in range(-r, r + 1):
                ii = i + di
                if ii < 0 or ii >= ny:
                    continue
                for dj in range(-r, r + 1):
                    jj = j + dj
                    if jj < 0 or jj >= nx:
                        continue
                    v = out[ii, jj]
                    if not np.isnan(v):
                        wt = weights[di + r, dj + r]
                        s += wt * v
                        w += wt
            if w > 0.0:
                vals[k] = s / w
                ok[k] = True
                filled += 1
            else:
                ok[k] = False
        if filled == 0:
            break  # a fixed point: further passes cannot change anything
        m = 0
        for k in range(n):
            p = gaps[k]
            if ok[k]:
                i = p // nx
                out[i, p - i * nx] = vals[k]
            else:
                gaps[m] = p
                m += 1
        n = m
        passes += 1
    return n


@njit(nogil=True, cache=True)
def fill_gaps_stack(stack, weights, max_iter):  # pragma: no cover - compiled
    """Fill NaN gaps of every frame of a ``(n, y, x)`` stack by weighted-average passes.

    Each pass replaces every NaN pixel that has at least one valid pixel in the
    ``weights`` window by the weighted mean of those valid pixels, using the values
    from before the pass. Passes repeat until nothing changes or ``max_iter`` passes
    (negative: no limit). Returns the filled stack and the gaps left per frame.
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
