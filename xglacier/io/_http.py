"""GDAL's limits on remote reads: a server that stops answering fails a read, never hangs it."""

from __future__ import annotations

import math


def http_options(timeout: float) -> dict[str, str]:
    """GDAL options ending a remote read that receives nothing for ``timeout`` seconds (or cannot
    connect in that time): it fails, as an :class:`~xglacier.errors.AssetError`, instead of hanging its task.

    A slow transfer that still moves is not cut (less than 1 byte/s for ``timeout`` seconds is
    a stall), so large reads over a slow link are unaffected.

    >>> http_options(30)["GDAL_HTTP_LOW_SPEED_TIME"]
    '30'
    """
    t = str(max(1, math.ceil(timeout)))
    return {"GDAL_HTTP_CONNECTTIMEOUT": t, "GDAL_HTTP_LOW_SPEED_TIME": t, "GDAL_HTTP_LOW_SPEED_LIMIT": "1"}
