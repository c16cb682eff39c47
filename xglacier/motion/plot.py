"""Flow arrows over an image, north up and east right: :func:`plot_flow`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .._validate import check_choice, check_int
from ..errors import InputError
from .flow import _axis_sign, _on_grid, flow  # noqa: F401  (flow: the doctest's)


def plot_flow(
    velocity: xr.Dataset, *, pair: int = 0, image: xr.DataArray | None = None, step: int | None = None,
    hue: str | None = None, ax: Any = None, **quiver: Any,
) -> Any:
    """Draw one pair's flow as arrows over an image (matplotlib), north up and east right.

    Axes are the array's column and row indices; a grid with ``y`` increasing has its
    first row drawn at the bottom, one with ``x`` decreasing its first column on the right.

    Parameters
    ----------
    velocity
        Output of :func:`flow`.
    pair
        Which pair to draw.
    image
        Background ``(y, x)`` DataArray on the grid of ``velocity``, default the speed.
    step
        Draw one arrow every ``step`` pixels (default: about 30 arrows across).
    hue
        Colour the arrows by this ``(y, x)`` variable of ``velocity`` (``"speed"``,
        ``"direction"``, ...), with a colour bar; default one colour (``color``, red).
    ax
        Matplotlib axes; default a new figure.
    **quiver
        Passed to ``ax.quiver`` (``color``, ``cmap``, ``scale``, ...).

    Returns
    -------
    matplotlib.axes.Axes
        The matplotlib axes.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import numpy as np, pandas as pd, xarray as xr, scipy.ndimage as ndi
    >>> img = ndi.gaussian_filter(np.random.default_rng(0).random((32, 32)), 2)
    >>> moved = img.copy()
    >>> moved[:, 16:] = np.roll(img, 1, axis=1)[:, 16:]  # the eastern half moves east
    >>> a = xr.DataArray(np.stack([img, moved]), dims=("time", "y", "x"),
    ...                  coords={"time": pd.to_datetime(["2020-01-01", "2021-01-01"]),
    ...                          "y": 30.0 * np.arange(32)[::-1], "x": 30.0 * np.arange(32)})
    >>> stable = (a.x < 450).broadcast_like(a.isel(time=0, drop=True))
    >>> ax = plot_flow(flow(a.rio.write_crs("EPSG:32643"), stable=stable), hue="speed")
    """
    import matplotlib.pyplot as plt

    if not isinstance(velocity, xr.Dataset) or "pair" not in velocity.dims:
        raise InputError(f"plot_flow: velocity is a {type(velocity).__name__} without a 'pair' "
                         "dimension; expected the Dataset returned by flow")
    n = velocity.sizes["pair"]
    pair = check_int("plot_flow", "pair", pair, low=-n, high=n - 1)
    step = check_int("plot_flow", "step", step, low=1, allow_none=True)
    sel = velocity.isel(pair=pair)
    hue = check_choice("plot_flow", "hue", hue, (None, *(k for k, v in sel.data_vars.items()
                                                         if set(v.dims) == {"y", "x"})))
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    bg = sel["speed"] if image is None else _on_grid("plot_flow", "image", image, sel, "velocity")
    ny, nx = sel.sizes["y"], sel.sizes["x"]
    step = step or max(1, max(ny, nx) // 30)
    ax.imshow(np.asarray(bg), cmap="gray" if image is not None else "viridis",
              origin="upper" if _axis_sign(sel, "y", "plot_flow") < 0 else "lower")
    if _axis_sign(sel, "x", "plot_flow") < 0:
        ax.invert_xaxis()
    rows, cols = np.mgrid[step // 2:ny:step, step // 2:nx:step]
    dxs = np.asarray(sel["dx"])[rows, cols]
    dys = np.asarray(sel["dy"])[rows, cols]
    colour = [] if hue is None else [np.asarray(sel[hue].transpose("y", "x"))[rows, cols]]
    quiver.setdefault("angles", "xy")
    quiver.setdefault(*(("color", "red") if hue is None else ("cmap", "plasma")))
    arrows = ax.quiver(cols, rows, dxs, dys, *colour, **quiver)  # in data (index) coordinates, as the image
    if hue is not None:
        label = f"{sel[hue].attrs.get('long_name', hue)} ({sel[hue].attrs.get('units', '?')})"
        ax.figure.colorbar(arrows, ax=ax, label=label, shrink=0.8)
    unit = sel["speed"].attrs["units"]
    noise = f", noise floor {float(sel['speed_noise']):.3g}" if "speed_noise" in sel else ""
    start, end = (str(pd.Index([sel[c].values])[0]) for c in ("start", "end"))  # dates or lead times
    ax.set_title(f"{start} -> {end} ({unit}{noise})")
    return ax
