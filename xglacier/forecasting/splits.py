"""Leak-free splits of patch samples: by time (the last frames test) or by spatial blocks.

Used by :meth:`xglacier.PatchSet.split`; each function returns the (train, val, test)
indices of a :class:`~xglacier.forecasting.patches.PatchPlan`'s samples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from .patches import PatchPlan


def frames_needed(plan: PatchPlan, test: float, val: float) -> int:
    """The shortest series longer than this one whose time split has train and test windows.

    Not simply a minimum: the rounding of the fractions can make a longer series fail again.
    """
    from .patches import make_plan  # late: patches imports this module

    p = plan
    start = max(p.shape[0] + 1, p.n_in + p.n_out)
    for nt in range(start, start + 10_000):
        windows = make_plan((nt, p.size, p.size), p.size, p.size, p.n_in, p.n_out)
        train, _, test_ix = time_split(windows, test, val)
        if train.size and test_ix.size:
            return nt
    raise InputError(f"PatchSet.split: no series length gives a time split with test={test}, val={val}")


def time_split(plan: PatchPlan, test: float, val: float) -> list[np.ndarray]:
    """(train, val, test) sample indices of a time split (see :meth:`xglacier.PatchSet.split`)."""
    p = plan
    t0 = p.samples[:, 0]
    windows = np.unique(t0)
    n = windows.size
    n_test = max(1, round(test * n))
    n_val = round(val * n)
    # Targets of a window start at t0 + n_in: the first test target frame is b, the
    # first validation target frame is a; a window is training data only if all of
    # its frames come before a.
    b = windows[n - n_test] + p.n_in
    # validation: the n_val latest windows whose targets all come before b (windows may be
    # missing, e.g. those with an interpolated target frame, so they are counted, not assumed)
    end = t0 + p.n_in + p.n_out  # one past the last frame of the window
    before = windows[windows + p.n_in + p.n_out <= b]
    a = before[max(0, before.size - n_val)] + p.n_in if n_val and before.size else b
    is_test = t0 + p.n_in >= b
    is_val = ~is_test & (t0 + p.n_in >= a) & (end <= b)
    is_train = end <= a
    return [np.flatnonzero(m) for m in (is_train, is_val, is_test)]


def space_split(plan: PatchPlan, test: float, val: float, block: int, gap: int, seed: int
                ) -> list[np.ndarray]:
    """(train, val, test) sample indices of a split by spatial blocks (:meth:`xglacier.PatchSet.split`)."""
    p = plan
    _, ny, nx = p.shape
    by, bx = -(-ny // block), -(-nx // block)
    rng = np.random.default_rng(seed)
    order = rng.permutation(by * bx)
    n_test = max(1, round(test * by * bx))
    n_val = round(val * by * bx)
    label = np.zeros(by * bx, np.int8)  # 0 train, 1 val, 2 test
    label[order[:n_test]] = 2
    label[order[n_test : n_test + n_val]] = 1
    pix = np.repeat(np.repeat(label.reshape(by, bx), block, 0), block, 1)[:ny, :nx]
    out = []
    y0, x0 = p.samples[:, 1], p.samples[:, 2]
    ya, yb = np.clip(y0 - gap, 0, ny), np.clip(y0 + p.size + gap, 0, ny)
    xa, xb = np.clip(x0 - gap, 0, nx), np.clip(x0 + p.size + gap, 0, nx)
    for k in range(3):
        # summed-area table: is the widened patch made only of this split's pixels?
        sat = np.zeros((ny + 1, nx + 1), np.int64)
        sat[1:, 1:] = np.cumsum(np.cumsum(pix != k, 0), 1)
        foreign = sat[yb, xb] - sat[ya, xb] - sat[yb, xa] + sat[ya, xa]
        out.append(np.flatnonzero(foreign == 0))
    return out
