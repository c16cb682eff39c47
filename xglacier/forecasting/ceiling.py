"""How much better than seasonal persistence any forecast of the held-out year could be.

The *climate oracle* forecasts each quarter of the held-out year by the mean of the same
quarter over every earlier year. It knows the place's climate from all those years, which a
model given one year of inputs does not; it cannot know the held-out year's own weather or
which of its dates were clear. Where even it is not far below seasonal persistence, no
forecaster from these inputs can be expected to be, and a verdict on one held-out year says
more about that year than about the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .._validate import check_int, check_spatial, check_time, frames_per_year
from ..errors import DimensionError, InputError
from .axes import north_up, time_step
from .history import invented_frames
from .skill import bootstrap_means, pixel_blocks


def _block_sums(err: np.ndarray, cells: np.ndarray, n_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-block sum of the squared errors ``err`` (frames, y, x) and the count of finite ones."""
    ok = np.isfinite(err)
    flat = np.broadcast_to(cells, err.shape)[ok]
    return (np.bincount(flat, weights=err[ok], minlength=n_cells),
            np.bincount(flat, minlength=n_cells).astype(float))


def _ndsi_values(func: str, label: str, values: Any) -> np.ndarray:
    """``values`` as float64, or :class:`InputError` when they cannot be NDSI."""
    v = np.asarray(values, dtype=np.float64)
    # slack for noise or an overshooting interpolation; digital numbers, percent or a nodata
    # value such as -9999 are far outside and would give plausible but meaningless scores
    if np.isfinite(v).any() and (np.nanmin(v) < -1.5 or np.nanmax(v) > 1.5):
        raise InputError(f"{func}: {label} holds values in [{np.nanmin(v):g}, {np.nanmax(v):g}]; expected "
                         "NDSI in [-1, 1] with NaN for nodata (digital numbers, or a nodata value left in?)")
    return v


def held_out_ceiling(ndsi: xr.DataArray, *, period: int = 4, block: int = 40, n_boot: int = 1000,
                     seed: int = 0) -> dict[str, Any]:
    """Seasonal persistence against the climate oracle on the last ``period`` frames.

    Parameters
    ----------
    ndsi
        ``(time, y, x)`` composites, ``period`` per year, the held-out year last. Frames
        flagged by a boolean ``interpolated`` coordinate (as :func:`xglacier.composite`
        writes it) are left out of the oracle's means and, in the held-out year, of the
        scores. NDSI in [-1, 1] on one regular time step; a pixel and frame where either
        forecast is NaN (the target, the year before, or any earlier year of its season) is
        left out of both scores, so that they are compared on the same pixels.
    period
        Frames per year.
    block, n_boot, seed
        The block bootstrap (``block`` x ``block`` px blocks, ``n_boot`` resamples, paired
        for both forecasts) of the 95 % intervals, as :func:`xglacier.evaluate` draws them.

    Returns
    -------
    dict
        ``seasonal`` and ``oracle`` (MSE over the held-out year) with ``*_low`` and
        ``*_high``; ``ratio`` (oracle / seasonal) with its paired interval ``ratio_low`` and
        ``ratio_high``; ``years`` (earlier years averaged); ``per_frame`` (list of
        ``(time, seasonal MSE, oracle MSE)``).

    Examples
    --------
    >>> t = xr.date_range("2019-01-01", periods=6, freq="6MS")
    >>> v = np.array([0.0, 0.0, 0.4, 0.4, 0.2, 0.2])[:, None, None] * np.ones((6, 8, 8))
    >>> r = held_out_ceiling(xr.DataArray(v, dims=("time", "y", "x"), coords={"time": t}), period=2)
    >>> round(r["seasonal"], 3), round(r["oracle"], 3)
    (0.04, 0.0)
    """
    func = "held_out_ceiling"
    period = check_int(func, "period", period, low=1)
    block = check_int(func, "block", block, low=1)
    if not isinstance(ndsi, xr.DataArray):
        raise InputError(f"{func}: ndsi is a {type(ndsi).__name__}; expected a (time, y, x) xarray.DataArray")
    if ndsi.ndim != 3 or ndsi.dims[0] != "time":
        raise DimensionError(f"{func}: ndsi has dimensions {ndsi.dims}; expected (time, y, x)")
    check_spatial(ndsi, f"{func}: ndsi")
    check_time(ndsi, func=func)
    n_time = ndsi.sizes["time"]
    if n_time < 3 * period:
        raise InputError(f"{func}: ndsi has {n_time} frames; expected at least three years of {period} "
                         f"(two earlier years for the oracle's mean and the held-out year)")
    per_year = frames_per_year(ndsi.time.values)
    if per_year != period:
        have = f"{per_year} frames per year" if per_year else "no whole number of frames per year"
        raise InputError(f"{func}: ndsi has {have}, not period={period}; pass the period of the composites")
    time_step(func, ndsi)  # frame t - period must be the same season a year before
    ndsi = north_up(ndsi)  # the bootstrap's blocks start at the north-west corner either way
    v = _ndsi_values(func, "ndsi", ndsi.values)
    interp = invented_frames(ndsi)
    # a quarter without scenes has nothing to score against (evaluate leaves such targets out too)
    targets = [t for t in range(n_time - period, n_time) if not interp[t]]
    if not targets:
        raise InputError(f"{func}: every frame of the held-out year is interpolated; nothing was observed "
                         f"to score against")
    seasonal = np.stack([(v[t] - v[t - period]) ** 2 for t in targets])
    oracle = []
    for t in targets:
        earlier = [q for q in range(t % period, t, period) if not interp[q]]
        if not earlier:
            raise InputError(f"{func}: every earlier frame of the season of {str(ndsi.time.values[t])[:10]} "
                             f"is interpolated; the oracle has nothing to average")
        oracle.append((v[t] - np.mean(v[earlier], axis=0)) ** 2)
    oracle = np.stack(oracle)
    # both forecasts are scored on the same pixels: the oracle's mean is NaN wherever an
    # earlier year is, and a sum over fewer pixels divided by the seasonal count is too low
    paired = np.isfinite(seasonal) & np.isfinite(oracle)
    seasonal, oracle = np.where(paired, seasonal, np.nan), np.where(paired, oracle, np.nan)
    cells, n_cells = pixel_blocks(v.shape[1:], block)
    (s_sp, n), (s_or, _) = _block_sums(seasonal, cells, n_cells), _block_sums(oracle, cells, n_cells)
    keep = n > 0
    if not keep.any():
        raise InputError(f"{func}: the held-out year has no finite pixel")
    boot = bootstrap_means(np.stack([s_sp, s_or], axis=1)[keep], n[keep], n_boot, seed)
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_lo, ratio_hi = np.percentile(boot[:, 1] / boot[:, 0], [2.5, 97.5])
    m_sp, m_or = s_sp.sum() / n.sum(), s_or.sum() / n.sum()
    return {
        "seasonal": float(m_sp), "seasonal_low": float(lo[0]), "seasonal_high": float(hi[0]),
        "oracle": float(m_or), "oracle_low": float(lo[1]), "oracle_high": float(hi[1]),
        "ratio": float(m_or / m_sp) if m_sp > 0 else float("nan"),
        "ratio_low": float(ratio_lo), "ratio_high": float(ratio_hi),
        "years": (n_time - period) // period,
        "per_frame": [(str(ndsi.time.values[t])[:10], float(np.nanmean(a)), float(np.nanmean(b)))
                      for t, a, b in zip(targets, seasonal, oracle, strict=True)],
    }


def windows_ceiling(test: Any, *, period: int = 4) -> dict[str, Any]:
    """Seasonal persistence against the climate oracle on the targets of a PatchSet's windows.

    What :func:`xglacier.evaluate` scores (every sample and lead of ``test``), with the oracle
    of :func:`held_out_ceiling`: each target frame by the mean of its season over the observed
    frames before it (``interpolated`` ones left out). Both are scored on the pixels where both
    are finite (NaN nodata left out; interpolated targets are not scored); values must be
    NDSI. ``gap_share`` is the share of seasonal persistence's squared error on the targets
    whose year-earlier frame was interpolated.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr, xglacier
    >>> t = pd.date_range("2014-01-01", periods=16, freq="3MS")
    >>> season = np.tile([0.9, 0.5, 0.1, 0.6], 4).astype("f4")
    >>> cube = xr.DataArray(season[:, None, None] * np.ones((1, 8, 8), "f4"), dims=("time", "y", "x"),
    ...                     coords={"time": t, "interpolated": ("time", np.arange(16) == 10)})
    >>> cube[10] = 0.35  # an invented summer: spring and autumn's mean
    >>> c = windows_ceiling(xglacier.patches(cube, size=8, stride=8, n_in=4, n_out=4))
    >>> round(c["oracle"], 4), c["seasonal"] > 0, round(c["gap_share"], 2)
    (0.0, True, 1.0)
    """
    from .patches import PatchSet

    if not isinstance(test, PatchSet):
        raise InputError(f"windows_ceiling: test is a {type(test).__name__}; expected a PatchSet")
    period = check_int("windows_ceiling", "period", period, low=1, high=test.n_in)
    cube = _ndsi_values("windows_ceiling", "test's variable", test.load())
    invented = invented_frames(test.da)
    size, n_in, n_out = test.size, test.n_in, test.n_out
    sums = np.zeros(3)  # seasonal, oracle, seasonal on gap-led targets
    count = 0
    for t0, r, c in test.plan.samples:
        for t in range(t0 + n_in, t0 + n_in + n_out):
            if invented[t]:  # never observed: not scored (evaluate's test sets leave them out)
                continue
            same = [i for i in range(t % period, t, period) if not invented[i]]
            if not same:
                raise InputError(f"windows_ceiling: target frame {t} has no observed frame of its season "
                                 "before it")
            target = cube[t, r:r + size, c:c + size]
            sp = (cube[t - period, r:r + size, c:c + size] - target) ** 2
            orc = (cube[same, r:r + size, c:c + size].mean(axis=0) - target) ** 2
            ok = np.isfinite(sp) & np.isfinite(orc)  # both scored on the same pixels
            sums += [sp[ok].sum(), orc[ok].sum(), sp[ok].sum() if invented[t - period] else 0.0]
            count += int(ok.sum())
    if count == 0:
        raise InputError("windows_ceiling: no finite pixel in the test targets and their references")
    seasonal, oracle = sums[0] / count, sums[1] / count
    return {"seasonal": float(seasonal), "oracle": float(oracle),
            "ratio": float(oracle / seasonal) if seasonal > 0 else float("nan"),
            "gap_share": float(sums[2] / sums[0]) if sums[0] > 0 else 0.0}
