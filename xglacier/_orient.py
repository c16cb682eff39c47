"""The orientation every model of xglacier sees a scene in: rows north to south, columns west to east.

Models have a direction (glaciers flow downhill, scenes are lit from one side), and they are
trained on scenes in this orientation (``patches``, ``fine_tune``); ``forecast`` and ``segment``
show them every scene so and give the result back in the input's order.
"""

from __future__ import annotations

import xarray as xr


def view_flips(da: xr.DataArray) -> dict[str, slice]:
    """``{dim: reversing slice}`` for ``y`` if it ascends (south to north) and ``x`` if it descends
    (east to west); empty for a scene already north-up and east-right (or without coordinates).

    Examples
    --------
    >>> import numpy as np
    >>> da = xr.DataArray(np.zeros((2, 3)), dims=("y", "x"),
    ...                   coords={"y": [0.0, 30.0], "x": [60.0, 30.0, 0.0]})
    >>> sorted(view_flips(da)), view_flips(da.isel(view_flips(da)))
    (['x', 'y'], {})
    """
    return {d: slice(None, None, -1) for d, wrong in (("y", 1), ("x", -1))
            if d in da.coords and da.sizes[d] > 1 and wrong * (float(da[d][-1]) - float(da[d][0])) > 0}
