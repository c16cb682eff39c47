"""Where square windows go along one axis: the one origin rule of patches, tiles and segment.

Forecast patches, segmentation training tiles and tiled inference all cut an axis of
``n`` pixels into windows of ``size`` pixels every ``stride`` pixels; they differ only in
what happens at the far end, which ``end`` names.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ._validate import check_choice, check_int


def window_starts(n: int, size: int, stride: int, *,
                  end: Literal["flush", "pad", "inside"] = "flush") -> np.ndarray:
    """Window origins ``0, stride, 2 * stride, ...`` along an axis of ``n`` pixels.

    ``end`` says how the last window meets the end of the axis:

    - ``"flush"``: one more window ending exactly at ``n`` when the stride does not land
      there, so every pixel is covered and no window reaches outside (patches);
    - ``"pad"``: windows on the regular grid until one reaches ``n``; the last may reach
      past ``n``, and the caller pads (tiles, tiled inference: every window on the grid);
    - ``"inside"``: only the windows that fit; the last pixels may stay uncovered.

    Examples
    --------
    >>> window_starts(105, 50, 25).tolist()
    [0, 25, 50, 55]
    >>> window_starts(105, 50, 25, end="pad").tolist()
    [0, 25, 50, 75]
    >>> window_starts(105, 50, 25, end="inside").tolist()
    [0, 25, 50]
    >>> window_starts(30, 50, 25, end="pad").tolist()
    [0]
    """
    n = check_int("window_starts", "n", n, low=1)
    size = check_int("window_starts", "size", size, low=1)
    stride = check_int("window_starts", "stride", stride, low=1)
    check_choice("window_starts", "end", end, ("flush", "pad", "inside"))
    if end == "pad":
        count = 1 + max(0, -(-(n - size) // stride))
        return np.arange(count, dtype=np.int64) * stride
    if size > n:
        return np.zeros(0, np.int64)
    starts = np.arange(0, n - size + 1, stride, dtype=np.int64)
    if end == "flush" and starts[-1] != n - size:
        starts = np.append(starts, n - size)
    return starts
