"""Samples with their missing-frame flags, and frames hidden at random for training.

:class:`GapSource` gathers ``(inputs, targets, gaps)`` from a :class:`~xglacier.PatchSet`:
``gaps`` says which input frames :func:`xglacier.composite` interpolated. With ``rate > 0``
(what :func:`xglacier.fit` uses, ``gap_rate``) it also hides one observed input frame in that
share of the samples, as a missing quarter would be: the frame is replaced by the linear
interpolation in time of the frames before and after it (the one before the window for the
first input) and flagged. The last input frame is never hidden: ``composite`` cannot fill a
period after the last scene (it stays NaN), so a forecast never meets an interpolated last
frame.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from .._validate import check_flag, check_int, check_number
from ..errors import InterpolatedInputWarning
from .checks import uses_gaps
from .history import history_means, invented_frames

if TYPE_CHECKING:
    from .patches import PatchSet


class GapSource:
    """``gather(index) -> (x, y, gaps)`` of a PatchSet, with frames hidden at ``rate``; with
    ``climate=True``, ``(x, y, gaps, climate)``.

    Parameters
    ----------
    ps
        The samples; ``gaps`` comes from :meth:`~xglacier.PatchSet.input_gaps`.
    rate
        Share of the samples in which one observed input frame (drawn at random, never the
        last, nor the first of a window at the start of the series) is hidden.
    seed
        Seeds the draws; each ``gather`` call draws anew (a fresh source repeats them).
    climate, period
        Also gather the ``(k, n_out, size, size)`` season means of each sample's targets over
        every year before its first target (:func:`~xglacier.forecasting.history.history_means`,
        ``period`` frames per year): the reference of ``residual="history"`` models. They are
        read from the PatchSet's cube, so frames hidden here still count in them as observed.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr, xglacier
    >>> t = pd.date_range("2020-01-01", periods=8, freq="3MS")
    >>> ramp = xr.DataArray(np.arange(8, dtype="f4")[:, None, None] * np.ones((1, 4, 4), "f4"),
    ...                     dims=("time", "y", "x"), coords={"time": t})
    >>> ps = xglacier.patches(ramp, size=4, stride=4, n_in=3, n_out=1)
    >>> x, y, gaps = GapSource(ps, rate=1.0, seed=0).gather(np.arange(len(ps)))
    >>> bool((gaps.sum(axis=1) == 1).all() and not gaps[:, -1].any())
    True
    >>> bool(np.allclose(x[:, :, 0, 0], ps.gather(np.arange(len(ps)))[0][:, :, 0, 0], atol=0.05))
    True
    """

    def __init__(self, ps: PatchSet, *, rate: float = 0.0, seed: int | None = None, climate: bool = False,
                 period: int = 4) -> None:
        self.ps = ps
        self.rate = float(check_number("GapSource", "rate", rate, low=0, high=1))
        self.rng = np.random.default_rng(check_int("GapSource", "seed", seed, low=0, allow_none=True))
        self.climate = check_flag("GapSource", "climate", climate)
        self.period = check_int("GapSource", "period", period, low=1, high=ps.n_in if climate else None)
        self.invented = invented_frames(ps.da)
        # frame times in days: interpolation weights as composite's, by time, not by position
        self.days = ps.da["time"].values.astype("datetime64[s]").astype(np.float64) / 86400.0

    def __len__(self) -> int:
        return len(self.ps)

    def gather(self, index: np.ndarray) -> tuple[np.ndarray, ...]:
        idx = np.atleast_1d(np.asarray(index, dtype=np.int64))
        x, y = self.ps.gather(idx)
        gaps = self._hide(idx, x, self.ps.input_gaps(idx))
        return (x, y, gaps, self.climate_of(idx)) if self.climate else (x, y, gaps)

    def climate_of(self, idx: np.ndarray) -> np.ndarray:
        """``(k, n_out, size, size)``: each sample's targets' season means over the years before."""
        p, cube = self.ps.plan, self.ps.load()
        out = np.empty((idx.size, p.n_out, p.size, p.size), np.float32)
        for b, (t0, y0, x0) in enumerate(p.samples[idx]):
            patch = cube[:, y0:y0 + p.size, x0:x0 + p.size]
            out[b] = history_means(patch, self.invented, int(t0) + p.n_in, range(p.n_out), self.period)
        return out

    def _hide(self, idx: np.ndarray, x: np.ndarray, gaps: np.ndarray) -> np.ndarray:
        """Hide one observed input frame in a ``rate`` share of the samples (``x`` in place)."""
        n_in = x.shape[1]
        if self.rate == 0 or n_in < 2:
            return gaps
        hide = self.rng.random(idx.size) < self.rate
        where = self.rng.integers(0, n_in - 1, idx.size)  # never the last input frame
        t0 = self.ps.plan.samples[idx, 0]
        # a first frame with nothing before it in the series cannot be interpolated: hide the next
        where = np.where((where == 0) & (t0 == 0), np.minimum(1, n_in - 2), where)
        hide &= ~((where == 0) & (t0 == 0))
        for b in np.flatnonzero(hide):
            i = int(where[b])
            after = x[b, i + 1]
            before = x[b, i - 1] if i > 0 else self._frame_before(int(idx[b]))
            if np.isnan(before).any():  # NaN left in the frame before the window: leave this one
                continue
            t = t0[b] + i
            f = (self.days[t] - self.days[t - 1]) / (self.days[t + 1] - self.days[t - 1])
            x[b, i] = before + np.float32(f) * (after - before)
            gaps[b, i] = True
        return gaps

    def _frame_before(self, sample: int) -> np.ndarray:
        """The patch of the frame before the sample's window (as ``gather`` would give it)."""
        t0, y0, x0 = self.ps.plan.samples[sample]
        size = self.ps.plan.size
        patch = self.ps.load()[t0 - 1, y0:y0 + size, x0:x0 + size].astype(np.float32)
        return np.nan_to_num(patch, nan=self.ps.fill_value) if self.ps.nan == "fill" else patch


def series_gaps(last: xr.DataArray, model: Any) -> tuple[bool, ...]:
    """Which of the frames ``last`` (a forecast's inputs) ``composite`` interpolated.

    A model that does not read gaps gets an :class:`~xglacier.errors.InterpolatedInputWarning`
    naming their dates: it builds on the invented values.
    """
    invented = invented_frames(last)
    # a model with gaps=True reads a missing frame there; any other builds on the invented values
    if invented.any() and not uses_gaps(model):
        dates = [str(t)[:10] for t in last["time"].values[invented]]
        warnings.warn(f"forecast: input frame(s) {dates} of variable {last.name!r} were interpolated "
                      "(coordinate 'interpolated': no scene in their period); the forecast builds on "
                      "them as if observed, and a seasonal model carries them into the same quarter "
                      "of the next year (a learned model with gaps=True reads them as missing)",
                      InterpolatedInputWarning, stacklevel=3)
    return tuple(bool(v) for v in invented)
