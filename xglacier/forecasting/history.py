"""The place's climate at a forecast origin: each frame's season over every earlier year.

A forecast made at ``origin`` (the index of its first target frame) may use every frame
before it, not only the model's ``n_in`` inputs. :func:`history_means` averages, per pixel,
the frames of a target's season (those a whole number of ``period`` frames earlier) over
every year before the origin: the long-term climatology a forecaster starts from. Frames that
:func:`xglacier.composite` interpolated (no scene in their period) are left out where the
season has an observed one: an interpolated summer is the mean of spring and autumn, not a
summer. NaN pixels are left out of each mean; a pixel never finite in its season is NaN.

It is the reference of models built with ``residual="history"`` and the forecast of the
``history_climatology`` baseline of :func:`xglacier.evaluate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr


def invented_frames(da: xr.DataArray) -> np.ndarray:
    """Which frames of ``da`` :func:`xglacier.composite` interpolated (its ``interpolated``
    coordinate along ``time``); without that coordinate, none."""
    flag = da.coords.get("interpolated")
    if flag is None or flag.dims != ("time",):
        return np.zeros(da.sizes["time"], bool)
    return np.asarray(flag.values, bool)


def season_frames(target: int, origin: int, period: int, invented: np.ndarray) -> list[int]:
    """Frames before ``origin`` in ``target``'s season: the observed ones, or all where none was.

    Examples
    --------
    >>> invented = np.array([0, 0, 1, 0, 0, 0, 0, 0], bool)
    >>> season_frames(6, 6, 2, invented), season_frames(6, 6, 4, invented), season_frames(7, 6, 4, invented)
    ([0, 4], [2], [3])
    """
    same = list(range(target % period, min(origin, target), period))
    seen = [i for i in same if not invented[i]]
    return seen or same


def history_means(cube: Any, invented: np.ndarray, origin: int, leads: Sequence[int], period: int) -> Any:
    """``(len(leads), y, x)``: the season means of the frames ``origin + lead``.

    ``cube`` is ``(time, y, x)``, NumPy or Dask (the result is of the same kind, float32);
    ``invented`` flags its interpolated frames.

    Examples
    --------
    >>> cube = np.array([1.0, 5.0, 3.0, 7.0, np.nan, 9.0])[:, None, None] * np.ones((1, 2, 2))
    >>> history_means(cube, np.zeros(6, bool), 6, [0, 1], 2)[:, 0, 0].tolist()
    [2.0, 7.0]
    """
    dask = isinstance(cube, dsa.Array)
    xp = dsa if dask else np
    out = []
    for lead in leads:
        frames = season_frames(origin + lead, origin, period, invented)
        if not frames:
            raise ValueError(f"history_means: no frame of the season of frame {origin + lead} before "
                             f"frame {origin}")
        stack = cube[frames] if dask else np.asarray(cube)[frames]
        finite = xp.isfinite(stack)
        total = xp.where(finite, stack, 0).sum(axis=0, dtype=np.float64)
        count = finite.sum(axis=0)
        out.append(xp.where(count > 0, total / xp.maximum(count, 1), np.nan).astype(np.float32))
    return xp.stack(out)
