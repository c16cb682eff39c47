"""Terrain derivatives of a DEM: slope in degrees with the true metric pixel size.

The gradient is Horn's (1981) 3x3 operator, a Numba kernel run on plain NumPy blocks;
on Dask input it is wired with :func:`dask.array.map_overlap` and a halo of exactly one
pixel, so the result does not depend on the chunking.

Pixel sizes in metres:

- projected CRS: the grid spacing from the coordinates, times the CRS's linear unit
  (metre, US foot, ...). The projection's own scale error (at most 0.04 % in UTM) is ignored;
- geographic CRS: the length of one grid step at each row's latitude on the CRS's
  ellipsoid (WGS 84 for EPSG:4326): ``dlat * M(lat)`` north-south and
  ``dlon * N(lat) * cos(lat)`` east-west, with ``M`` and ``N`` the meridional and
  prime-vertical radii of curvature (angles in radians).

Missing values and edges: the 3x3 window is NaN-aware. For each of the three rows
(columns) of the window the x (y) difference is central where both neighbours are
valid and one-sided where only one is; Horn's 1-2-1 weights are renormalised over the
rows (columns) that have a difference. A plane therefore gets its exact slope up to
the grid edge and next to voids; a pixel that is NaN itself, or that has no valid
neighbour along x or along y, gets NaN.
"""

from __future__ import annotations

from typing import Any

import dask.array as dsa
import numpy as np
import pyproj
import xarray as xr

from .._attrs import product
from ..errors import DimensionError, InputError
from .kernels import slope_kernel


def _slope_block(z: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    # dx, dy arrive as (rows, 1) columns; halo rows beyond the grid edge hold NaN, and so
    # does z there, so the kernel never uses them
    return slope_kernel(np.asarray(z, np.float64), np.ascontiguousarray(dx[:, 0], np.float64),
                        np.ascontiguousarray(dy[:, 0], np.float64))


def _regular_step(coord: np.ndarray, name: str, what: str) -> float:
    if coord.size < 2:
        raise InputError(f"{what}: coordinate {name!r} has {coord.size} value(s); expected at least 2")
    steps = np.diff(coord)
    step = float(np.mean(steps))
    if step == 0 or not np.allclose(steps, step, rtol=1e-6, atol=0):
        raise InputError(f"{what}: coordinate {name!r} is not regularly spaced; expected a regular grid")
    return abs(step)


def pixel_lengths(
    crs: Any, x: np.ndarray, y: np.ndarray, *, what: str = "DEM"
) -> tuple[np.ndarray, np.ndarray]:
    """East-west and north-south length in metres of one grid step, per row.

    Parameters
    ----------
    crs
        Anything :class:`pyproj.CRS` accepts (a rasterio CRS, ``"EPSG:4326"``, WKT).
    x, y
        The grid's regularly spaced pixel-centre coordinates, increasing or decreasing
        (the lengths are those of one step, per row in the order of ``y``).
    what
        How error messages name the grid.

    Returns
    -------
    dx, dy : numpy.ndarray
        ``float64`` arrays of length ``len(y)``.

    Examples
    --------
    A 0.001-degree grid on the equator and at 60 degrees north (WGS 84: a degree of
    longitude is 111.32 km and 55.80 km long there, a degree of latitude 110.57 km and
    111.41 km):

    >>> import numpy as np
    >>> lon = np.array([10.0, 10.001])
    >>> [np.round(v, 2).tolist() for v in pixel_lengths("EPSG:4326", lon, np.array([0.0005, -0.0005]))]
    [[111.32, 111.32], [110.57, 110.57]]
    >>> [np.round(v, 2).tolist() for v in pixel_lengths("EPSG:4326", lon, np.array([60.0, 59.999]))]
    [[55.8, 55.8], [111.41, 111.41]]
    """
    crs = pyproj.CRS.from_user_input(crs)
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    sx = _regular_step(x, "x", what)
    sy = _regular_step(y, "y", what)
    if crs.is_geographic:
        units = {a.unit_name for a in crs.axis_info}
        if units - {"degree"}:
            raise InputError(f"{what}: geographic CRS with axis units {sorted(units)}; expected degrees")
        ell = crs.ellipsoid
        a = ell.semi_major_metre
        e2 = 1.0 - (ell.semi_minor_metre / a) ** 2
        phi = np.radians(y)
        s2 = np.sin(phi) ** 2
        n = a / np.sqrt(1.0 - e2 * s2)  # prime vertical radius of curvature
        m = a * (1.0 - e2) / (1.0 - e2 * s2) ** 1.5  # meridional radius of curvature
        return np.radians(sx) * n * np.cos(phi), np.radians(sy) * m
    if not crs.is_projected:
        raise InputError(f"{what}: CRS {crs.name!r} is neither projected nor geographic")
    factor = crs.axis_info[0].unit_conversion_factor
    return np.full(y.size, sx * factor), np.full(y.size, sy * factor)


def slope(dem: xr.DataArray) -> xr.DataArray:
    """Slope in degrees of a DEM, on the DEM's own grid, with the true metric pixel size.

    Horn's 3x3 gradient, NaN-aware and one-sided at edges and voids (see the module
    documentation for the pixel sizes used in projected and geographic CRSs).
    Lazy and chunk-invariant on Dask input (``map_overlap`` with a one-pixel halo).

    Parameters
    ----------
    dem
        Elevation in metres, dimensions ``(y, x)``, regular grid (``y`` and ``x`` running
        either way: a flipped DEM gives the flipped slope), CRS readable with rioxarray
        (``dem.rio.crs``). Nodata as NaN.

    Returns
    -------
    xarray.DataArray
        ``float32`` named ``slope``, units ``degree``, same grid and CRS.

    Examples
    --------
    A plane rising 1 m per 10 m eastwards on a 30 m UTM grid:

    >>> import numpy as np, xarray as xr, rioxarray
    >>> x = 500000.0 + 30.0 * np.arange(5)
    >>> y = 5200000.0 - 30.0 * np.arange(4)
    >>> dem = xr.DataArray(np.tile(0.1 * x, (4, 1)), coords={"y": y, "x": x}, dims=("y", "x"))
    >>> s = slope(dem.rio.write_crs("EPSG:32632"))
    >>> round(float(s.max()), 3), round(float(np.degrees(np.arctan(0.1))), 3)
    (5.711, 5.711)
    """
    if not isinstance(dem, xr.DataArray):
        raise InputError(f"slope: expected a DataArray of elevation, got {type(dem).__name__}")
    if dem.dims != ("y", "x"):
        raise DimensionError(f"slope: DEM {dem.name!r} has dimensions {dem.dims}; expected ('y', 'x')")
    crs = dem.rio.crs
    if crs is None:
        raise InputError(f"slope: DEM {dem.name!r} has no CRS; expected one readable with dem.rio.crs")
    dx, dy = pixel_lengths(crs, dem["x"].values, dem["y"].values, what=f"slope: DEM {dem.name!r}")
    z = dem.data
    if not np.issubdtype(dem.dtype, np.floating):
        z = z.astype(np.float64)
    if isinstance(z, dsa.Array):
        ychunks = (z.chunks[0], (1,))
        data = dsa.map_overlap(
            _slope_block, z,
            dsa.from_array(dx[:, None], chunks=ychunks), dsa.from_array(dy[:, None], chunks=ychunks),
            depth=[{0: 1, 1: 1}, {0: 1, 1: 0}, {0: 1, 1: 0}],
            boundary=[np.nan, np.nan, np.nan], trim=True, align_arrays=False,
            dtype=np.float32, meta=np.array((), np.float32),
        )
    else:
        data = slope_kernel(np.asarray(z, np.float64), dx, dy)
    out = dem.copy(data=data)
    return product(out, "slope", "terrain slope", "degree", "slope",
                   history=dem.attrs.get("history"), method="horn")
