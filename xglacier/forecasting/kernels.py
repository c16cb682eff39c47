"""Numba kernels of the forecasting stage: gathering patches and blending them back.

See :mod:`xglacier.preprocess.kernels` for the rule on where kernels live.
"""

from __future__ import annotations

from numba import njit


@njit(nogil=True, cache=True)
def gather_patches(cube, samples, size, n_in, n_out, x, y):  # pragma: no cover - compiled
    """Copy sample ``k`` = (t0, y0, x0) of a (time, y, x) cube into ``x[k]`` and ``y[k]``."""
    for k in range(samples.shape[0]):
        t0, y0, x0 = samples[k, 0], samples[k, 1], samples[k, 2]
        for f in range(n_in + n_out):
            for i in range(size):
                for j in range(size):
                    v = cube[t0 + f, y0 + i, x0 + j]
                    if f < n_in:
                        x[k, f, i, j] = v
                    else:
                        y[k, f - n_in, i, j] = v


@njit(nogil=True, cache=True)
def scatter_patches(pred, origins, weight, num, den):  # pragma: no cover - compiled
    """Accumulate weighted patch predictions ``pred[k]`` at ``origins[k]`` into num / den.

    ``origins`` are relative to ``num``'s first pixel and may lie outside it (a patch of
    a neighbouring block): only the part of a patch that falls on ``num`` is added. Each
    pixel receives its patches' contributions in the order of ``k``, so that a grid cut
    into blocks sums exactly as the whole grid does.
    """
    size = pred.shape[2]
    ny, nx = den.shape
    for k in range(pred.shape[0]):
        y0, x0 = origins[k, 0], origins[k, 1]
        for i in range(max(0, -y0), min(size, ny - y0)):
            for j in range(max(0, -x0), min(size, nx - x0)):
                w = weight[i, j]
                den[y0 + i, x0 + j] += w
                for s in range(pred.shape[1]):
                    num[s, y0 + i, x0 + j] += w * pred[k, s, i, j]
